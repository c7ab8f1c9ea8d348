//! Reconnection delays: at once, then doubling up to a cap.

use std::time::Duration;

/// Delay schedule for reconnecting a camera.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    max: Duration,
}

impl Backoff {
    /// A schedule capped at `max`.
    pub fn new(max: Duration) -> Self {
        Self { failures: 0, max }
    }

    /// The wait before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = match self.failures {
            // The first retry is immediate: most drops are one-off network blips.
            0 => Duration::ZERO,
            n => Duration::from_millis(250u64.saturating_mul(1 << (n - 1).min(16))),
        };
        self.failures = self.failures.saturating_add(1);
        delay.min(self.max)
    }

    /// Back to an immediate retry, after a connection proved healthy.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_doubling_to_cap() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![0, 250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::ZERO);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(5));
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }
}
