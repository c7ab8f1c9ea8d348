//! Lower CPU priority for detection threads, so decoding and inference yield to the live
//! relay when the machine is saturated.

/// Niceness given to the calling thread (0 is normal, 19 the lowest).
pub const DETECT_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`DETECT_NICE`]; best effort. A thread that
/// already runs lower (a gateway started with `nice -n 19`) is left as it is.
pub fn lower_this_thread() {
    // On Linux, PRIO_PROCESS with a thread id applies to that thread alone.
    // SAFETY: gettid, getpriority and setpriority take no pointers and cannot violate
    // memory safety.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now < DETECT_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, DETECT_NICE);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let inside = std::thread::spawn(|| {
            super::lower_this_thread();
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
            unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
        })
        .join()
        .expect("thread");
        assert_eq!(inside, super::DETECT_NICE.max(before));
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
