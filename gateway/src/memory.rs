//! The process's memory as a user graphs it: resident size, open files and what the
//! allocator holds, read from `/proc` and glibc.

/// One reading of the process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Resident set size.
    pub resident: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Bytes the program has allocated and not freed (glibc heaps and mmapped blocks).
    pub heap_in_use: u64,
    /// Bytes free inside glibc's heaps: held by the allocator, not given back.
    pub heap_free: u64,
}

/// Blocks at least this large are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: i32 = 256 << 10;

/// Most malloc arenas; each one keeps the memory freed into it.
const ARENA_MAX: i32 = 4;

/// Bounds what glibc's allocator keeps after a free; call first thing in `main`,
/// before any thread starts.
///
/// By default glibc raises its mmap threshold to the largest block freed so far, so
/// after the first large free, picture-sized blocks come from the heaps. A block made
/// on one thread and freed on another then stays as free space in its arena (up to
/// 8 × cores of them), never returned: in a 70-minute soak, heap in use stayed at
/// 135 MiB while the heap held free grew from 100 to 127 MiB. A fixed threshold gives
/// every large block its own mapping, returned to the system when freed; four arenas
/// bound what small blocks leave behind.
///
/// That makes a large allocation cost a system call and page faults, so the pictures
/// do not go through the allocator per frame: the decoder fills its own pool's buffers
/// (`sampler::Decoder`) and a sampled picture keeps the converter's buffer
/// (`sampler::Pixels`).
pub fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Reads the process's memory now; a figure that cannot be read is 0.
pub fn read() -> Reading {
    let (heap_in_use, heap_free) = heap();
    Reading {
        resident: resident_bytes().unwrap_or(0),
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
        heap_in_use,
        heap_free,
    }
}

/// Resident set size from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).ok()?))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> (u64, u64) {
    // SAFETY: mallinfo2 only reads the allocator's counters (under its own locks).
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) as u64, info.fordblks as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap() -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = read();
        assert!(r.resident > 1 << 20, "{r:?}");
        assert!(r.open_fds >= 3, "{r:?}");
        let before = read().heap_in_use;
        let block = vec![1u8; 64 << 20];
        let during = read().heap_in_use;
        assert!(during >= before + (60 << 20), "64 MiB allocated: {before} → {during}");
        drop(block);
    }
}
