//! Camera ingest: one supervised task per camera that keeps an RTSP pull running forever.
//!
//! A connection that fails, ends, or goes silent for `stall_timeout_s` is torn down and
//! retried (at once, then backing off up to `max_backoff_s`). One camera's trouble never
//! touches another: each has its own task, pipeline and hub.

mod backoff;
mod pipeline;
pub mod probe;
mod status;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::Clock;
use crate::config::{CameraConfig, IngestConfig, redact};
use crate::hub::Hub;
pub use backoff::Backoff;
pub use pipeline::{PipelineEvent, PipelineUnit, RunningPipeline};
pub use status::{CameraState, LinkState, RateMeter, StatusReport};

/// How long a fresh connection may take to deliver its first access unit.
const CONNECT_GRACE: Duration = Duration::from_secs(5);
/// How long a connection must stay healthy before the next failure retries at once again.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);
/// How often the supervisor looks at its pipeline.
const POLL: Duration = Duration::from_millis(100);

/// Maps one connection's buffer timestamps onto the gateway's media timeline, which
/// moves forward across reconnects.
#[derive(Debug, Default)]
pub struct Timeline {
    origin: Option<Instant>,
    last: Duration,
    base: Duration,
    first_pts_ns: Option<u64>,
}

impl Timeline {
    /// Starts mapping a new connection.
    pub fn new_connection(&mut self) {
        self.first_pts_ns = None;
    }

    /// The timeline position for a unit with `pts_ns` arriving at `now`.
    pub fn map(&mut self, pts_ns: Option<u64>, now: Instant) -> Duration {
        let origin = *self.origin.get_or_insert(now);
        let wall = now.saturating_duration_since(origin);
        let out = match (pts_ns, self.first_pts_ns) {
            (Some(pts), Some(first)) => self.base + Duration::from_nanos(pts.saturating_sub(first)),
            (Some(pts), None) => {
                // First unit of a connection: continue from wall time, never going back.
                self.base = wall.max(self.last + Duration::from_millis(1));
                self.first_pts_ns = Some(pts);
                self.base
            }
            // No timestamp: one nominal frame after the last, staying in the pts domain.
            (None, _) => self.last + Duration::from_millis(40),
        };
        let out = out.max(self.last);
        self.last = out;
        out
    }
}

/// A camera being pulled: its hub and status.
pub struct Camera {
    /// The camera's config entry.
    pub config: CameraConfig,
    /// Fan-out of its access units.
    pub hub: Arc<Hub>,
    /// Its status.
    pub state: Arc<Mutex<CameraState>>,
    /// The clock its status is read on.
    pub clock: Clock,
}

impl Camera {
    /// A camera not yet pulled: offline since now.
    pub fn new(config: CameraConfig, hub: Arc<Hub>, clock: Clock) -> Self {
        let state = Arc::new(Mutex::new(CameraState::new(clock.realtime())));
        Self { config, hub, state, clock }
    }

    /// A camera with new settings that keeps its hub and status (same connection).
    pub fn with_parts(config: CameraConfig, hub: Arc<Hub>, state: Arc<Mutex<CameraState>>, clock: Clock) -> Self {
        Self { config, hub, state, clock }
    }

    /// The status as the API shows it.
    pub fn report(&self) -> StatusReport {
        lock(&self.state).report(self.clock.monotonic())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called for every access unit a connection delivers, on the connection's own thread.
pub type UnitSink = Box<dyn Fn(PipelineUnit) + Send + Sync>;

/// Opens connections to cameras. The gateway's is [`RtspSource`]; tests feed their own.
pub trait Source: Send + Sync + 'static {
    /// One open connection.
    type Connection: Connection;
    /// Starts pulling `camera`; every access unit goes to `on_unit`.
    fn open(&self, camera: &CameraConfig, on_unit: UnitSink) -> Result<Self::Connection, String>;
}

/// A connection the supervisor watches.
pub trait Connection: Send + 'static {
    /// The next error or end of stream, without waiting.
    fn poll_event(&self) -> Option<PipelineEvent>;
    /// Tears the connection down; may block briefly.
    fn stop(self);
}

/// Pulls cameras with GStreamer's rtspsrc.
#[derive(Debug, Default, Clone, Copy)]
pub struct RtspSource;

impl Source for RtspSource {
    type Connection = RunningPipeline;

    fn open(&self, camera: &CameraConfig, on_unit: UnitSink) -> Result<RunningPipeline, String> {
        RunningPipeline::start(&camera.url, camera.transport, on_unit).map_err(|e| e.to_string())
    }
}

impl Connection for RunningPipeline {
    fn poll_event(&self) -> Option<PipelineEvent> {
        RunningPipeline::poll_event(self)
    }

    fn stop(self) {
        RunningPipeline::stop(self)
    }
}

/// Runs the pull loop for one camera until `cancel` fires.
pub async fn run_camera<S: Source>(
    camera: Arc<Camera>,
    ingest: IngestConfig,
    source: Arc<S>,
    cancel: CancellationToken,
) {
    let span = info_span!("camera", id = %camera.config.id);
    supervise(camera, ingest, source, cancel).instrument(span).await
}

async fn supervise<S: Source>(camera: Arc<Camera>, ingest: IngestConfig, source: Arc<S>, cancel: CancellationToken) {
    let clock = camera.clock.clone();
    let stall = Duration::from_secs_f64(ingest.stall_timeout_s);
    let mut backoff = Backoff::new(Duration::from_secs_f64(ingest.max_backoff_s));
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let url = camera.config.url.clone();
    let mut first = true;
    while !cancel.is_cancelled() {
        if !first {
            lock(&camera.state).on_reconnect();
            camera.hub.metrics().reconnects.inc();
        }
        first = false;
        lock(&camera.state).on_watch(clock.monotonic());
        lock(&timeline).new_connection();
        let started = clock.monotonic();
        let last_unit = Arc::new(Mutex::new(None));
        let outcome = match source.open(&camera.config, unit_sink(&camera, &timeline, &last_unit)) {
            Ok(running) => {
                info!(url = %redact(&url), "connecting");
                let why = watch(&running, &last_unit, started, stall, &clock, &cancel).await;
                let stopper = tokio::task::spawn_blocking(move || running.stop());
                let _ = stopper.await;
                why
            }
            Err(e) => Some(e),
        };
        let Some(error) = outcome else {
            break; // cancelled
        };
        let was_online = lock(&camera.state).is_online();
        lock(&camera.state).on_failure(error.clone(), clock.monotonic(), clock.realtime());
        camera.hub.metrics().online.set(0);
        camera.hub.reset();
        if was_online && clock.monotonic().saturating_duration_since(started) >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        warn!(%error, retry_in_ms = delay.as_millis() as u64, "camera offline");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    camera.hub.metrics().online.set(0);
}

/// What a connection does with each access unit: stamp it on the timeline, count it,
/// publish it to the hub, and note when it came for stall detection.
fn unit_sink(
    camera: &Arc<Camera>,
    timeline: &Arc<Mutex<Timeline>>,
    last_unit: &Arc<Mutex<Option<Instant>>>,
) -> UnitSink {
    let hub = camera.hub.clone();
    let state = camera.state.clone();
    let clock = camera.clock.clone();
    let timeline = timeline.clone();
    let last_unit = last_unit.clone();
    let id = camera.config.id.clone();
    Box::new(move |unit: PipelineUnit| {
        let (now, wall) = (clock.monotonic(), clock.realtime());
        *lock(&last_unit) = Some(now);
        let pts = lock(&timeline).map(unit.pts_ns, now);
        let metrics = hub.metrics();
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(unit.data.len() as u64);
        {
            let mut st = lock(&state);
            if let Some((w, h)) = unit.size {
                st.on_size(w, h);
            }
            if st.on_unit(now, wall, unit.data.len()) {
                metrics.online.set(1);
                info!(camera = %id, "camera online");
            }
        }
        hub.publish(pts, unit.keyframe, unit.data, now, wall);
    })
}

/// Waits until the connection fails, ends or stalls (returning why), or `cancel` fires (None).
async fn watch(
    running: &impl Connection,
    last_unit: &Mutex<Option<Instant>>,
    started: Instant,
    stall: Duration,
    clock: &Clock,
    cancel: &CancellationToken,
) -> Option<String> {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tick.tick() => {}
        }
        match running.poll_event() {
            Some(PipelineEvent::Error(e)) => return Some(e),
            Some(PipelineEvent::Eos) => return Some("camera ended the stream".into()),
            None => {}
        }
        let last = *lock(last_unit);
        let idle = clock.monotonic().saturating_duration_since(last.unwrap_or(started));
        if last.is_some() {
            if idle >= stall {
                return Some(format!("stalled: no video for {:.1} s", idle.as_secs_f64()));
            }
        } else if idle >= CONNECT_GRACE.max(stall) {
            return Some(format!("no video within {:.1} s of connecting", idle.as_secs_f64()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimulatedClocks;
    use crate::config::Transport;
    use crate::hub::HubLimits;
    use crate::metrics::Metrics;
    use std::time::SystemTime;

    /// What one scripted connection does.
    #[derive(Clone, Copy)]
    enum Script {
        /// Opening fails at once.
        Refuse,
        /// Sends access units at 25 fps for this long, then goes silent.
        SendFor(Duration),
    }

    /// A camera whose connections follow a script; records when each was opened.
    struct ScriptedSource {
        clock: Arc<SimulatedClocks>,
        script: Vec<Script>,
        opened: Mutex<Vec<Duration>>,
    }

    struct ScriptedConnection(tokio::task::JoinHandle<()>);

    impl Connection for ScriptedConnection {
        fn poll_event(&self) -> Option<PipelineEvent> {
            None
        }
        fn stop(self) {
            self.0.abort();
        }
    }

    impl Source for ScriptedSource {
        type Connection = ScriptedConnection;

        fn open(&self, _camera: &CameraConfig, on_unit: UnitSink) -> Result<ScriptedConnection, String> {
            let mut opened = lock(&self.opened);
            let attempt = opened.len();
            opened.push(self.clock.elapsed());
            // Past the end of the script the camera refuses.
            match self.script.get(attempt).copied().unwrap_or(Script::Refuse) {
                Script::Refuse => Err(format!("connection refused (attempt {attempt})")),
                Script::SendFor(length) => Ok(ScriptedConnection(tokio::spawn(async move {
                    let frames = (length.as_millis() / 40) as u64;
                    for i in 0..frames {
                        on_unit(PipelineUnit {
                            pts_ns: Some(i * 40_000_000),
                            keyframe: i % 50 == 0,
                            data: Arc::from(&[0u8, 0, 0, 1, 0x65][..]),
                            size: Some((640, 360)),
                        });
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                    std::future::pending::<()>().await
                }))),
            }
        }
    }

    fn scripted(script: Vec<Script>) -> (Arc<Camera>, Arc<ScriptedSource>, Arc<SimulatedClocks>) {
        let clock = Arc::new(SimulatedClocks::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
        let config = CameraConfig {
            id: "cam1".into(),
            name: "后厨".into(),
            url: "rtsp://127.0.0.1:1/cam1".into(),
            transport: Transport::Tcp,
            enabled: true,
            site: "default".into(),
        };
        let hub = Hub::new(HubLimits::default(), Metrics::new().camera("cam1"));
        let camera = Arc::new(Camera::new(config, hub, clock.clone()));
        let source = Arc::new(ScriptedSource { clock: clock.clone(), script, opened: Mutex::new(Vec::new()) });
        (camera, source, clock)
    }

    fn ingest_config() -> IngestConfig {
        IngestConfig { stall_timeout_s: 2.0, max_backoff_s: 5.0 }
    }

    #[tokio::test(start_paused = true)]
    async fn refused_connections_are_retried_at_once_then_backing_off_to_the_cap() {
        let (camera, source, _clock) = scripted(Vec::new());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_camera(camera.clone(), ingest_config(), source.clone(), cancel.clone()));
        tokio::time::sleep(Duration::from_millis(20_000)).await;
        cancel.cancel();
        task.await.expect("supervisor ends on cancel");
        let opened: Vec<u64> = lock(&source.opened).iter().map(|d| d.as_millis() as u64).collect();
        // Delays 0, 250, 500, 1000, 2000, 4000, then the 5 s cap.
        assert_eq!(opened, vec![0, 0, 250, 750, 1750, 3750, 7750, 12750, 17750]);
        let report = camera.report();
        assert_eq!(report.state, LinkState::Offline);
        assert_eq!(report.reconnects, 8);
        assert!(report.last_error.is_some_and(|e| e.contains("connection refused")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_detected_after_the_timeout_and_a_healthy_camera_retries_at_once() {
        let (camera, source, clock) = scripted(vec![
            Script::Refuse,
            Script::Refuse,
            Script::SendFor(Duration::from_secs(6)),
            Script::SendFor(Duration::ZERO),
            Script::SendFor(Duration::from_secs(1)),
        ]);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_camera(camera.clone(), ingest_config(), source.clone(), cancel.clone()));

        tokio::time::sleep(Duration::from_secs(3)).await;
        let report = camera.report();
        assert_eq!(report.state, LinkState::Online);
        assert!((report.fps - 25.0).abs() < 1.5, "fps {}", report.fps);
        assert_eq!(report.since_ms, 1_800_000_000_250, "online since the first unit");

        // Two refusals (retried at once, then after 250 ms); the third connection's last
        // unit comes at 6.21 s, and 2 s later the camera counts as stalled.
        let offline_at = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if camera.report().state == LinkState::Offline {
                break clock.elapsed();
            }
        };
        assert!(
            (Duration::from_millis(8210)..=Duration::from_millis(8350)).contains(&offline_at),
            "stall reported at {offline_at:?}"
        );
        assert!(camera.report().last_error.is_some_and(|e| e.starts_with("stalled")));

        tokio::time::sleep(Duration::from_secs(16)).await;
        cancel.cancel();
        task.await.expect("supervisor ends on cancel");
        let ms: Vec<u64> = lock(&source.opened).iter().map(|d| d.as_millis() as u64).collect();
        assert!(ms.len() >= 7, "{ms:?}");
        assert_eq!(ms[..3], [0, 0, 250]);
        let offline_ms = offline_at.as_millis() as u64;
        // Healthy for over 5 s: the backoff starts over and the retry is immediate.
        assert!(ms[3] + 10 >= offline_ms && ms[3] <= offline_ms + 10, "{ms:?} offline at {offline_ms}");
        // No video at all: given up after the 5 s connect grace, then 250 ms.
        assert!((5250..=5360).contains(&(ms[4] - ms[3])), "{ms:?}");
        // 1 s of video, stalled 2 s after its last unit, then 500 ms: a short run does not
        // reset the backoff.
        assert!((3460..=3570).contains(&(ms[5] - ms[4])), "{ms:?}");
        assert_eq!(ms[6] - ms[5], 1000, "{ms:?}");
        assert_eq!(camera.report().reconnects, ms.len() as u64 - 1);
    }

    #[test]
    fn timeline_follows_pts_and_moves_forward_across_reconnects() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.new_connection();
        let a = tl.map(Some(5_000_000_000), t0);
        let b = tl.map(Some(5_040_000_000), t0 + Duration::from_millis(41));
        assert_eq!(b - a, Duration::from_millis(40));
        // A new connection restarts its PTS at 0, three seconds later.
        tl.new_connection();
        let c = tl.map(Some(0), t0 + Duration::from_secs(3));
        assert!(c > b);
        assert!(c >= Duration::from_secs(3));
        let d = tl.map(Some(40_000_000), t0 + Duration::from_secs(3));
        assert_eq!(d - c, Duration::from_millis(40));
    }
}
