//! Process CPU and memory from /proc, and percentiles, for the benchmarks.

use std::time::{Duration, Instant};

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY-free: the tick rate is 100 on every Linux this runs on (USER_HZ).
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Share of one core a process used over `window` (100.0 = one full core).
pub async fn cpu_percent(pid: u32, window: Duration) -> Option<f64> {
    let t0 = Instant::now();
    let c0 = cpu_time(pid)?;
    tokio::time::sleep(window).await;
    let c1 = cpu_time(pid)?;
    Some((c1 - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0)
}

/// The `p`-th percentile (0..=100) of `values`, by nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v.get(rank.min(v.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_some());
        assert!(rss_mib(pid).unwrap_or(0.0) > 1.0);
    }
}
