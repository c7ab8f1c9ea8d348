//! The HTTP surface: JSON API, WHEP, metrics and the web page.

mod auth;
mod error;
mod events;
mod headers;
pub mod server;
mod whep;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::ingest::{Camera, StatusReport};
use crate::live::Live;
use crate::metrics::Metrics;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Cameras by id.
    pub cameras: Arc<BTreeMap<String, Arc<Camera>>>,
    /// WHEP sessions.
    pub live: Arc<Live>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// `auth.admin_token`, when configured.
    pub admin_token: Option<Arc<str>>,
    /// `Link` headers naming STUN/TURN servers for viewers.
    pub ice_links: Arc<Vec<HeaderValue>>,
    /// When the gateway started.
    pub started: Instant,
    /// Stored events, when the store opened.
    pub events: Option<crate::events::Store>,
    /// New and changed events, for the SSE feed.
    pub event_feed: tokio::sync::broadcast::Sender<crate::events::Event>,
    /// Where snapshots and clips live.
    pub data_dir: std::path::PathBuf,
    /// Whether detection runs, and why not.
    pub detect_status: Arc<std::sync::Mutex<serde_json::Value>>,
    /// Fires at shutdown; long-lived responses (the SSE feed) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Wrong-token back-off per client address.
    pub auth_failures: Arc<std::sync::Mutex<crate::access::throttle::Throttle<std::net::IpAddr>>>,
    /// Open SSE feeds: each holds a permit, so their number is bounded.
    pub sse_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    fn camera(&self, id: &str) -> Result<Arc<Camera>, ApiError> {
        self.cameras.get(id).cloned().ok_or_else(|| ApiError::not_found(format!("no camera `{id}`")))
    }
}

/// Builds the STUN/TURN `Link` headers once.
pub fn ice_links(servers: &[crate::config::IceServerConfig]) -> Vec<HeaderValue> {
    whep::ice_links(servers)
}

/// The router for all routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/cameras", get(list_cameras))
        .route("/cameras/{id}", get(get_camera))
        .route("/cameras/{id}/whep", post(whep::offer))
        .route("/cameras/{id}/whep/{session}", axum::routing::delete(whep::end).patch(whep::patch))
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/events/{id}", get(events::get).patch(events::patch))
        .route("/events/{id}/snapshot.jpg", get(events::snapshot))
        .route("/events/{id}/clip.mp4", get(events::clip))
        .fallback(|| async { ApiError::not_found("no such API route") })
        // `layer`, not `route_layer`: unknown /api paths need the token too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // Every API body is small (an SDP offer, a review); nothing needs more.
        .layer(DefaultBodyLimit::max(64 * 1024));
    // On the main listener metrics need the token; `server.metrics_listen` serves them
    // open on an address of their own (see `metrics_router`).
    let metrics_route = get(metrics).layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .nest("/api", api)
        .route("/metrics", metrics_route)
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../../../web/index.html")) }))
        .route("/app.js", get(|| async { page(JS, include_str!("../../../web/app.js")) }))
        .route("/app.css", get(|| async { page("text/css; charset=utf-8", include_str!("../../../web/app.css")) }))
        .route("/whep.js", get(|| async { page(JS, include_str!("../../../web/whep.js")) }))
        .layer(axum::middleware::from_fn(headers::secure))
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own (`server.metrics_listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("only /metrics is served here") })
        .layer(axum::middleware::from_fn(headers::secure))
        .with_state(state)
}

const JS: &str = "text/javascript; charset=utf-8";

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
    cameras: usize,
    cameras_online: usize,
    viewers: usize,
    detect: serde_json::Value,
}

async fn health(State(state): State<AppState>) -> axum::Json<Health> {
    let online = state.cameras.values().filter(|c| c.report().state == crate::ingest::LinkState::Online).count();
    axum::Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        cameras: state.cameras.len(),
        cameras_online: online,
        viewers: state.live.viewer_count(),
        detect: state.detect_status.lock().map(|v| v.clone()).unwrap_or_default(),
    })
}

/// A camera as the API shows it.
#[derive(Serialize)]
struct CameraView {
    id: String,
    name: String,
    #[serde(flatten)]
    status: StatusReport,
    viewers: i64,
    whep: String,
}

fn view(camera: &Camera) -> CameraView {
    CameraView {
        id: camera.config.id.clone(),
        name: camera.config.name.clone(),
        status: camera.report(),
        viewers: camera.hub.metrics().viewers.get(),
        whep: format!("/api/cameras/{}/whep", camera.config.id),
    }
}

async fn list_cameras(State(state): State<AppState>) -> axum::Json<Vec<CameraView>> {
    axum::Json(state.cameras.values().map(|c| view(c)).collect())
}

async fn get_camera(State(state): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<CameraView>, ApiError> {
    let camera = state.camera(&id)?;
    Ok(axum::Json(view(&camera)))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}
