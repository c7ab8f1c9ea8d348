//! Time, injected: the system's clocks when running, a simulated pair in tests.
//!
//! Everything that decides by time — reconnect backoff, stall detection, track ageing,
//! event start and end, retention cut-offs — reads it from a [`Clock`], so unit tests run
//! hours of camera life in milliseconds on tokio's paused time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A source of monotonic and wall-clock time.
pub trait Clocks: Send + Sync + std::fmt::Debug + 'static {
    /// Monotonic time, for intervals and deadlines.
    fn monotonic(&self) -> Instant;
    /// Wall-clock time, for what people read: event times, retention cut-offs.
    fn realtime(&self) -> SystemTime;
}

/// The clock handle passed to every task that needs time.
pub type Clock = Arc<dyn Clocks>;

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClocks;

impl Clocks for RealClocks {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }

    fn realtime(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system's clocks as a [`Clock`].
pub fn real() -> Clock {
    Arc::new(RealClocks)
}

/// Clocks that follow tokio's timer: under `#[tokio::test(start_paused = true)]` they
/// stand still until the runtime auto-advances or a test calls `tokio::time::advance`, so
/// `tokio::time::sleep` and these clocks always agree.
#[derive(Debug)]
pub struct SimulatedClocks {
    origin: tokio::time::Instant,
    wall_origin: SystemTime,
}

impl SimulatedClocks {
    /// Starts the simulated wall clock at `wall_origin`, now.
    pub fn new(wall_origin: SystemTime) -> Self {
        Self { origin: tokio::time::Instant::now(), wall_origin }
    }

    /// Time elapsed on this clock since it was made.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

impl Clocks for SimulatedClocks {
    fn monotonic(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn realtime(&self) -> SystemTime {
        self.wall_origin + self.elapsed()
    }
}

/// Milliseconds since the UNIX epoch (0 for times before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn simulated_clocks_move_with_tokio_time() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = SimulatedClocks::new(wall);
        let t0 = clock.monotonic();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.monotonic() - t0, Duration::from_secs(3600));
        assert_eq!(clock.realtime(), wall + Duration::from_secs(3600));
        assert_eq!(unix_ms(clock.realtime()), 1_800_003_600_000);
    }
}
