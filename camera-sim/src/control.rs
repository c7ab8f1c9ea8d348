//! HTTP control API for scripting faults and inspecting cameras.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use crate::camera::CameraSnapshot;
use crate::faults::FaultKind;
use crate::pipeline::validate_size;
use crate::scene_feed::SceneStatus;
use crate::server::{ServerError, SimServer};

/// Fault length when `secs` is not given.
const DEFAULT_FAULT_SECS: f64 = 5.0;
/// Longest fault accepted, one day.
const MAX_FAULT_SECS: f64 = 86_400.0;

/// The control API routes, bound to a running simulator.
pub fn router(sim: Arc<SimServer>) -> Router {
    Router::new()
        .route("/cameras", get(list_cameras))
        .route("/cameras/{name}", get(show_camera))
        .route("/cameras/{name}/faults", delete(clear_faults))
        .route("/cameras/{name}/faults/stall", post(stall))
        .route("/cameras/{name}/faults/corrupt", post(corrupt))
        .route("/cameras/{name}/faults/drop", post(drop_clients))
        .route("/cameras/{name}/faults/offline", post(offline))
        .route("/cameras/{name}/resolution", post(resolution))
        .route("/cameras/{name}/scene", post(seek_scene))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .with_state(sim)
}

/// A failed request: status plus a one-line reason, sent as `{"error": ...}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        let status = match e {
            ServerError::UnknownCamera(_) => StatusCode::NOT_FOUND,
            ServerError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Start(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text().replace('\n', " "))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;
type Sim = State<Arc<SimServer>>;

#[derive(Debug, Deserialize)]
struct SecsQuery {
    secs: Option<f64>,
}

impl SecsQuery {
    fn duration(&self) -> Result<Duration, ApiError> {
        let secs = self.secs.unwrap_or(DEFAULT_FAULT_SECS);
        if !(secs > 0.0 && secs <= MAX_FAULT_SECS) {
            return Err(ApiError::bad_request(format!("secs must be > 0 and <= {MAX_FAULT_SECS}, got {secs}")));
        }
        Duration::try_from_secs_f64(secs).map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

#[derive(Debug, Deserialize)]
struct SizeQuery {
    width: u32,
    height: u32,
}

#[derive(Debug, Deserialize)]
struct SeekQuery {
    t: f64,
}

/// A camera's place in the scene it plays.
#[derive(Debug, Serialize)]
struct SceneView {
    name: String,
    time_s: f64,
    duration_s: f64,
    showing: Vec<String>,
}

impl From<SceneStatus> for SceneView {
    fn from(s: SceneStatus) -> Self {
        Self { name: s.scene, time_s: s.time_s, duration_s: s.duration_s, showing: s.showing }
    }
}

#[derive(Debug, Serialize)]
struct FaultView {
    kind: FaultKind,
    remaining_secs: f64,
}

#[derive(Debug, Serialize)]
struct CameraView {
    name: String,
    url: String,
    width: u32,
    height: u32,
    fps: u32,
    online: bool,
    clients: usize,
    faults: Vec<FaultView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene: Option<SceneView>,
}

impl CameraView {
    fn new(snapshot: CameraSnapshot, url: String, clients: usize, scene: Option<SceneStatus>) -> Self {
        Self {
            url,
            clients,
            scene: scene.map(SceneView::from),
            faults: snapshot
                .faults
                .iter()
                .map(|f| FaultView { kind: f.kind, remaining_secs: f.remaining.as_secs_f64() })
                .collect(),
            name: snapshot.name,
            width: snapshot.width,
            height: snapshot.height,
            fps: snapshot.fps,
            online: snapshot.online,
        }
    }
}

async fn camera_views(sim: &SimServer) -> Result<Vec<CameraView>, ApiError> {
    let counts = sim.client_counts().await?;
    let now = Instant::now();
    Ok(sim
        .cameras()
        .zip(counts)
        .map(|(c, clients)| {
            let scene = sim.scene_status(c.name()).ok().flatten();
            CameraView::new(c.snapshot(now), sim.url(c), clients, scene)
        })
        .collect())
}

async fn list_cameras(State(sim): Sim) -> Result<Json<Vec<CameraView>>, ApiError> {
    Ok(Json(camera_views(&sim).await?))
}

async fn show_camera(State(sim): Sim, Path(name): Path<String>) -> Result<Json<CameraView>, ApiError> {
    sim.camera(&name)?;
    camera_views(&sim)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .map(Json)
        .ok_or_else(|| ServerError::UnknownCamera(name).into())
}

async fn timed_fault(
    sim: &SimServer,
    name: &str,
    kind: FaultKind,
    query: Result<Query<SecsQuery>, QueryRejection>,
) -> ApiResult {
    let camera = sim.camera(name)?;
    let duration = query?.duration()?;
    camera.with_faults(|f| f.start(kind, Instant::now(), duration));
    info!(camera = name, ?kind, ?duration, "fault started");
    Ok(Json(json!({
        "camera": name,
        "fault": kind,
        "secs": duration.as_secs_f64(),
    })))
}

async fn stall(
    State(sim): Sim,
    Path(name): Path<String>,
    query: Result<Query<SecsQuery>, QueryRejection>,
) -> ApiResult {
    timed_fault(&sim, &name, FaultKind::Stall, query).await
}

async fn corrupt(
    State(sim): Sim,
    Path(name): Path<String>,
    query: Result<Query<SecsQuery>, QueryRejection>,
) -> ApiResult {
    timed_fault(&sim, &name, FaultKind::Corrupt, query).await
}

async fn offline(
    State(sim): Sim,
    Path(name): Path<String>,
    query: Result<Query<SecsQuery>, QueryRejection>,
) -> ApiResult {
    sim.camera(&name)?;
    let duration = query?.duration()?;
    let dropped = sim.take_offline(&name, duration).await?;
    Ok(Json(json!({
        "camera": name,
        "fault": FaultKind::Offline,
        "secs": duration.as_secs_f64(),
        "dropped_clients": dropped,
    })))
}

async fn drop_clients(State(sim): Sim, Path(name): Path<String>) -> ApiResult {
    let dropped = sim.drop_clients(&name).await?;
    Ok(Json(json!({
        "camera": name,
        "fault": "drop",
        "dropped_clients": dropped,
    })))
}

async fn clear_faults(State(sim): Sim, Path(name): Path<String>) -> ApiResult {
    sim.clear_faults(&name).await?;
    Ok(Json(json!({ "camera": name, "faults": [] })))
}

async fn resolution(
    State(sim): Sim,
    Path(name): Path<String>,
    query: Result<Query<SizeQuery>, QueryRejection>,
) -> ApiResult {
    let camera = sim.camera(&name)?;
    let Query(SizeQuery { width, height }) = query?;
    validate_size(width, height).map_err(ApiError::bad_request)?;
    let updated = camera.set_size(width, height);
    info!(camera = %name, width, height, running_media = updated, "resolution changed");
    Ok(Json(json!({
        "camera": name,
        "width": width,
        "height": height,
        "running_media": updated,
    })))
}

async fn seek_scene(
    State(sim): Sim,
    Path(name): Path<String>,
    query: Result<Query<SeekQuery>, QueryRejection>,
) -> ApiResult {
    sim.camera(&name)?;
    let Query(SeekQuery { t }) = query?;
    if !t.is_finite() {
        return Err(ApiError::bad_request(format!("t must be a number, got {t}")));
    }
    let status = sim
        .scene_seek(&name, t)?
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no scene is playing (start with --scene)"))?;
    Ok(Json(json!({ "camera": name, "scene": SceneView::from(status) })))
}
