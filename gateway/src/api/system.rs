//! `GET /api/system`: what an installer checks — version, uptime, disk use and how many
//! days of events fit, the model and the detection load.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::auth::{Can, Configure};
use super::events::internal;
use super::{ApiError, AppState};

#[derive(Serialize)]
pub struct System {
    version: &'static str,
    uptime_s: u64,
    data_dir: String,
    disk_total_bytes: Option<u64>,
    disk_free_bytes: Option<u64>,
    /// Bytes of stored snapshots and clips.
    events_bytes: u64,
    events: u64,
    retention_days: f64,
    /// Days of events the disk holds at the rate stored so far (None before a day's worth).
    days_fit: Option<f64>,
    detect: serde_json::Value,
    /// Share of the detection workers' time spent detecting since start (0 to 1).
    detect_load: Option<f64>,
    cameras: usize,
    cameras_online: usize,
    viewers: usize,
}

/// Total and free bytes of the file system holding `path`.
fn disk(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| {
        let f = st.f_frsize as u64;
        ((st.f_blocks as u64).saturating_mul(f), (st.f_bavail as u64).saturating_mul(f))
    })
}

/// `GET /api/system` (admin).
pub async fn report(State(state): State<AppState>, Can(_p, _): Can<Configure>) -> Result<Json<System>, ApiError> {
    let (events, oldest, bytes) = match &state.events {
        Some(s) => {
            let (n, oldest) = s.span().await.map_err(internal)?;
            (n, oldest, s.total_bytes().await.map_err(internal)?)
        }
        None => (0, None, 0),
    };
    let space = disk(&state.data_dir);
    let now = state.now_ms();
    let covered_days = oldest.map(|o| (now - o) as f64 / 86_400_000.0).unwrap_or(0.0);
    let days_fit = match space {
        Some((_, free)) if covered_days >= 1.0 && bytes > 0 => {
            let per_day = bytes as f64 / covered_days;
            let budget = (free + bytes).saturating_sub(state.retention.min_free_bytes).min(state.retention.max_bytes);
            Some(budget as f64 / per_day)
        }
        _ => None,
    };
    let uptime = state.started.elapsed();
    let detect = state.detect_status.lock().map(|v| v.clone()).unwrap_or_default();
    let workers = detect.get("workers").and_then(|w| w.as_f64()).unwrap_or(1.0).max(1.0);
    let detect_load = (detect.get("state").and_then(|s| s.as_str()) == Some("on") && uptime.as_secs_f64() > 0.0)
        .then(|| (state.metrics.detect.seconds.get() / (uptime.as_secs_f64() * workers)).clamp(0.0, 1.0));
    let cameras = state.registry.cameras();
    let online = cameras.iter().filter(|c| c.camera.report().state == crate::ingest::LinkState::Online).count();
    Ok(Json(System {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: uptime.as_secs(),
        data_dir: state.data_dir.display().to_string(),
        disk_total_bytes: space.map(|s| s.0),
        disk_free_bytes: space.map(|s| s.1),
        events_bytes: bytes,
        events,
        retention_days: state.retention.max_age.as_secs_f64() / 86_400.0,
        days_fit,
        detect,
        detect_load,
        cameras: cameras.len(),
        cameras_online: online,
        viewers: state.live.viewer_count(),
    }))
}
