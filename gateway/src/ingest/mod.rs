//! Camera ingest: one supervised task per camera that keeps an RTSP pull running forever.
//!
//! A connection that fails, ends, or goes silent for `stall_timeout_s` is torn down and
//! retried (at once, then backing off up to `max_backoff_s`). One camera's trouble never
//! touches another: each has its own task, pipeline and hub.

mod backoff;
mod pipeline;
mod status;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{CameraConfig, IngestConfig, redact};
use crate::hub::Hub;
pub use backoff::Backoff;
pub use pipeline::{PipelineEvent, RunningPipeline};
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
}

impl Camera {
    /// The status as the API shows it.
    pub fn report(&self) -> StatusReport {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).report(Instant::now())
    }
}

/// Runs the pull loop for one camera until `cancel` fires.
pub async fn run_camera(camera: Arc<Camera>, ingest: IngestConfig, cancel: CancellationToken) {
    let span = info_span!("camera", id = %camera.config.id);
    supervise(camera, ingest, cancel).instrument(span).await
}

async fn supervise(camera: Arc<Camera>, ingest: IngestConfig, cancel: CancellationToken) {
    let stall = Duration::from_secs_f64(ingest.stall_timeout_s);
    let mut backoff = Backoff::new(Duration::from_secs_f64(ingest.max_backoff_s));
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let url = camera.config.url.clone();
    let mut first = true;
    while !cancel.is_cancelled() {
        if !first {
            camera.state.lock().unwrap_or_else(|p| p.into_inner()).on_reconnect();
            camera.hub.metrics().reconnects.inc();
        }
        first = false;
        timeline.lock().unwrap_or_else(|p| p.into_inner()).new_connection();
        let started = Instant::now();
        let outcome = match start_pipeline(&camera, &timeline) {
            Ok(running) => {
                info!(url = %redact(&url), "connecting");
                let why = watch(&running, stall, &cancel).await;
                let stopper = tokio::task::spawn_blocking(move || running.stop());
                let _ = stopper.await;
                why
            }
            Err(e) => Some(e.to_string()),
        };
        let Some(error) = outcome else {
            break; // cancelled
        };
        let was_online = camera.state.lock().unwrap_or_else(|p| p.into_inner()).is_online();
        camera.state.lock().unwrap_or_else(|p| p.into_inner()).on_failure(error.clone());
        camera.hub.metrics().online.set(0);
        camera.hub.reset();
        if was_online && started.elapsed() >= HEALTHY_AFTER {
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

fn start_pipeline(
    camera: &Arc<Camera>,
    timeline: &Arc<Mutex<Timeline>>,
) -> Result<RunningPipeline, pipeline::PipelineError> {
    let hub = camera.hub.clone();
    let state = camera.state.clone();
    let timeline = timeline.clone();
    let id = camera.config.id.clone();
    RunningPipeline::start(&camera.config.url, camera.config.transport, move |unit| {
        let now = Instant::now();
        let pts = timeline.lock().unwrap_or_else(|p| p.into_inner()).map(unit.pts_ns, now);
        let metrics = hub.metrics();
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(unit.data.len() as u64);
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((w, h)) = unit.size {
                st.on_size(w, h);
            }
            if st.on_unit(now, unit.data.len()) {
                metrics.online.set(1);
                info!(camera = %id, "camera online");
            }
        }
        hub.publish(pts, unit.keyframe, unit.data, now);
    })
}

/// Waits until the pipeline fails, ends or stalls (returning why), or `cancel` fires (None).
async fn watch(running: &RunningPipeline, stall: Duration, cancel: &CancellationToken) -> Option<String> {
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
        let idle = running.idle_for();
        if running.has_output() {
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
