//! What the API reports about a camera: online or not, since when, rates, errors.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Frame and byte rates over a sliding window.
#[derive(Debug)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl RateMeter {
    /// A meter averaging over `window`.
    pub fn new(window: Duration) -> Self {
        Self { window, samples: VecDeque::new(), bytes: 0 }
    }

    /// Records one access unit of `bytes` at `now`.
    pub fn record(&mut self, now: Instant, bytes: usize) {
        self.samples.push_back((now, bytes));
        self.bytes += bytes;
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, b)) = self.samples.front() {
            if now.saturating_duration_since(t) <= self.window {
                break;
            }
            self.samples.pop_front();
            self.bytes -= b;
        }
    }

    /// (frames per second, bits per second) at `now`.
    pub fn rates(&mut self, now: Instant) -> (f64, f64) {
        self.expire(now);
        let secs = self.window.as_secs_f64();
        (self.samples.len() as f64 / secs, self.bytes as f64 * 8.0 / secs)
    }

    /// Forgets all samples.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.bytes = 0;
    }
}

/// Connection state of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Video is flowing.
    Online,
    /// Not connected, connecting, or stalled.
    Offline,
}

/// A camera's live status, updated by its ingest task.
#[derive(Debug)]
pub struct CameraState {
    state: LinkState,
    since: SystemTime,
    reconnects: u64,
    last_error: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    meter: RateMeter,
    /// When this camera was first watched, for its uptime share.
    watched_since: Option<Instant>,
    /// Time online before the current online spell.
    online_before: Duration,
    /// Start of the current online spell.
    online_from: Option<Instant>,
}

/// Snapshot of a camera's status as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `online` or `offline`.
    pub state: LinkState,
    /// When the state last changed, milliseconds since the UNIX epoch.
    pub since_ms: u64,
    /// Access units per second over the last 2 s.
    pub fps: f64,
    /// Video bit rate over the last 2 s.
    pub bitrate_bps: f64,
    /// Reconnection attempts since start.
    pub reconnects: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Picture width from the stream, once known.
    pub width: Option<i32>,
    /// Picture height from the stream, once known.
    pub height: Option<i32>,
    /// Share of the time since the gateway began watching the camera that it was online
    /// (0 to 1).
    pub uptime_share: f64,
}

impl CameraState {
    /// Offline with no error yet, since `wall`.
    pub fn new(wall: SystemTime) -> Self {
        Self {
            state: LinkState::Offline,
            since: wall,
            reconnects: 0,
            last_error: None,
            width: None,
            height: None,
            meter: RateMeter::new(Duration::from_secs(2)),
            watched_since: None,
            online_before: Duration::ZERO,
            online_from: None,
        }
    }

    /// Starts the uptime clock at `now` (the first connection attempt).
    pub fn on_watch(&mut self, now: Instant) {
        self.watched_since.get_or_insert(now);
    }

    /// Records an access unit that arrived at `now` (`wall` on the wall clock); returns
    /// true when this made the camera go online.
    pub fn on_unit(&mut self, now: Instant, wall: SystemTime, bytes: usize) -> bool {
        self.meter.record(now, bytes);
        if self.state == LinkState::Online {
            return false;
        }
        self.watched_since.get_or_insert(now);
        self.online_from = Some(now);
        self.state = LinkState::Online;
        self.since = wall;
        true
    }

    /// Records the picture size the stream announced.
    pub fn on_size(&mut self, width: i32, height: i32) {
        self.width = Some(width);
        self.height = Some(height);
    }

    /// Records a failure at `wall`: offline, with the reason.
    pub fn on_failure(&mut self, error: String, now: Instant, wall: SystemTime) {
        if let Some(from) = self.online_from.take() {
            self.online_before += now.saturating_duration_since(from);
        }
        if self.state != LinkState::Offline {
            self.since = wall;
        }
        self.state = LinkState::Offline;
        self.last_error = Some(error);
        self.meter.clear();
    }

    /// Counts a reconnection attempt.
    pub fn on_reconnect(&mut self) {
        self.reconnects += 1;
    }

    /// Whether the camera is online.
    pub fn is_online(&self) -> bool {
        self.state == LinkState::Online
    }

    /// The report at `now`.
    pub fn report(&mut self, now: Instant) -> StatusReport {
        let (fps, bitrate_bps) = self.meter.rates(now);
        let online = self.online_before + self.online_from.map_or(Duration::ZERO, |f| now.saturating_duration_since(f));
        let watched = self.watched_since.map_or(Duration::ZERO, |w| now.saturating_duration_since(w));
        let uptime_share =
            if watched.is_zero() { 0.0 } else { (online.as_secs_f64() / watched.as_secs_f64()).clamp(0.0, 1.0) };
        StatusReport {
            uptime_share,
            state: self.state,
            since_ms: self.since.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            fps,
            bitrate_bps,
            reconnects: self.reconnects,
            last_error: self.last_error.clone(),
            width: self.width,
            height: self.height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(2));
        for i in 0..100u64 {
            m.record(t0 + Duration::from_millis(i * 40), 1000);
        }
        let (fps, bps) = m.rates(t0 + Duration::from_millis(99 * 40));
        assert!((fps - 25.5).abs() < 1.0, "{fps}");
        assert!((bps - 204_000.0).abs() < 10_000.0, "{bps}");
        let (fps, _) = m.rates(t0 + Duration::from_secs(60));
        assert_eq!(fps, 0.0);
    }

    #[test]
    fn online_offline_transitions() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut s = CameraState::new(wall);
        let now = Instant::now();
        assert!(s.on_unit(now, wall + Duration::from_secs(1), 10));
        assert!(!s.on_unit(now, wall + Duration::from_secs(2), 10));
        assert_eq!(s.report(now).since_ms, 1_001_000, "online since the first unit");
        s.on_failure("stalled".into(), now, wall + Duration::from_secs(5));
        let r = s.report(now);
        assert_eq!(r.state, LinkState::Offline);
        assert_eq!(r.since_ms, 1_005_000);
        assert_eq!(r.last_error.as_deref(), Some("stalled"));
        assert_eq!(r.fps, 0.0);
    }

    #[test]
    fn uptime_share_counts_online_time_since_first_watched() {
        let wall = UNIX_EPOCH;
        let mut s = CameraState::new(wall);
        let t0 = Instant::now();
        s.on_watch(t0);
        assert_eq!(s.report(t0).uptime_share, 0.0);
        s.on_unit(t0 + Duration::from_secs(10), wall, 10);
        let r = s.report(t0 + Duration::from_secs(40));
        assert!((r.uptime_share - 0.75).abs() < 1e-6, "{}", r.uptime_share);
    }
}
