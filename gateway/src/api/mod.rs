//! The HTTP surface: JSON API, WHEP, metrics and the web page.

mod access;
mod auth;
pub mod client;
mod error;
mod events;
pub mod feeds;
mod headers;
pub mod server;
pub mod share;
pub mod tls;
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

use crate::access::Principal;
use crate::ingest::{Camera, StatusReport};
use crate::live::Live;
use crate::metrics::Metrics;
use auth::{Can, Watch};
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
    /// Open SSE feeds, bounded in total and per principal.
    pub feeds: Arc<feeds::Feeds>,
    /// Accounts, sessions and machine tokens.
    pub access: crate::access::store::AccessStore,
    /// How long login sessions last.
    pub session_limits: crate::access::store::SessionLimits,
    /// Failed-login back-off per client address.
    pub login_by_ip: Arc<std::sync::Mutex<crate::access::throttle::Throttle<std::net::IpAddr>>>,
    /// Failed-login back-off per account name.
    pub login_by_account: Arc<std::sync::Mutex<crate::access::throttle::Throttle<String>>>,
    /// The sites, as configured.
    pub sites: Arc<Vec<crate::config::SiteConfig>>,
    /// Wall-clock time for sessions and workflow steps.
    pub clock: crate::clock::Clock,
    /// Signs short-lived media tokens.
    pub media: Arc<crate::access::media::MediaKeys>,
    /// Password checks (argon2) running at once.
    pub password_checks: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Camera `id` if the principal may see it; one it may not see does not exist for it.
    fn camera(&self, p: &Principal, id: &str) -> Result<Arc<Camera>, ApiError> {
        self.cameras
            .get(id)
            .filter(|c| p.sees_site(&c.config.site))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no camera `{id}`")))
    }

    /// Ids of the cameras the principal sees, or None for every camera (even ones no
    /// longer configured, whose events are kept).
    fn visible_cameras(&self, p: &Principal) -> Option<Vec<String>> {
        if p.role == crate::access::Role::Admin || p.scope == crate::access::Scope::All {
            return None;
        }
        Some(self.cameras.values().filter(|c| p.sees_site(&c.config.site)).map(|c| c.config.id.clone()).collect())
    }

    /// Whether the principal sees events of `camera`.
    fn sees_camera_events(&self, p: &Principal, camera: &str) -> bool {
        match self.visible_cameras(p) {
            None => true,
            Some(cams) => cams.iter().any(|c| c == camera),
        }
    }

    /// The site of a camera, if it is configured.
    fn site_of(&self, camera: &str) -> Option<String> {
        self.cameras.get(camera).map(|c| c.config.site.clone())
    }

    /// A site's time zone (Asia/Shanghai when unknown).
    fn site_tz(&self, site: &str) -> jiff::tz::TimeZone {
        let name = self.sites.iter().find(|s| s.id == site).map(|s| s.timezone.as_str()).unwrap_or("Asia/Shanghai");
        jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    fn site_ids(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.id.clone()).collect()
    }

    /// Ends what `owner` (a principal's label) has open: live views and event feeds.
    fn end_owned_by(&self, owner: &str) {
        let views = self.live.end_owned_by(owner);
        let feeds = self.feeds.end_owned_by(owner);
        if views + feeds > 0 {
            tracing::info!(owner, views, feeds, "ended what a withdrawn credential had open");
        }
    }

    fn now_ms(&self) -> i64 {
        crate::clock::unix_ms(self.clock.realtime())
    }

    /// Appends to the audit trail in the background; a failure is logged, never shown to
    /// the client whose request already succeeded.
    fn audit(&self, r: crate::access::audit::Record) {
        let access = self.access.clone();
        let now = self.now_ms();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = access.record(&r, now) {
                tracing::warn!(error = %e, action = r.action, "cannot write the audit trail");
            }
        });
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
        .route("/session", post(access::login).delete(access::logout))
        .route("/sessions", axum::routing::delete(access::logout_everywhere))
        .route("/me", get(access::me))
        .route("/me/password", axum::routing::put(access::change_password))
        .route("/users", get(access::list_users).post(access::add_user))
        .route("/users/{id}", axum::routing::patch(access::change_user))
        .route("/tokens", get(access::list_tokens).post(access::add_token))
        .route("/tokens/{id}", axum::routing::delete(access::revoke_token))
        .route("/sites", get(list_sites))
        .route("/audit", get(access::audit))
        .route("/media-tokens", post(access::media_token))
        .route("/shares", get(share::list).post(share::create))
        .route("/shares/{id}", axum::routing::delete(share::revoke))
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
        // `layer`, not `route_layer`: unknown /api paths need a principal too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        // Every API body is small (an SDP offer, a review); nothing needs more.
        .layer(DefaultBodyLimit::max(64 * 1024));
    // On the main listener metrics need the token; `server.metrics_listen` serves them
    // open on an address of their own (see `metrics_router`).
    let metrics_route = get(metrics)
        .layer(axum::middleware::from_fn(auth::require_metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    // The parents' pages: no login, the token in the path is the only key.
    let shared = Router::new()
        .route("/s/{token}", get(share::page))
        .route("/s/{token}/info", get(share::info))
        .route("/s/{token}/{file}", get(share::qr))
        .route("/s/{token}/cameras/{id}/whep", post(share::offer))
        .route("/s/{token}/cameras/{id}/whep/{session}", axum::routing::delete(share::end))
        .layer(DefaultBodyLimit::max(64 * 1024));
    Router::new()
        .nest("/api", api)
        .merge(shared)
        .route("/metrics", metrics_route)
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../../../web/index.html")) }))
        .route("/app.js", get(|| async { page(JS, include_str!("../../../web/app.js")) }))
        .route("/app.css", get(|| async { page("text/css; charset=utf-8", include_str!("../../../web/app.css")) }))
        .route("/whep.js", get(|| async { page(JS, include_str!("../../../web/whep.js")) }))
        .route("/share.js", get(|| async { page(JS, include_str!("../../../web/share.js")) }))
        .route("/tile.js", get(|| async { page(JS, include_str!("../../../web/tile.js")) }))
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

/// `GET /api/health`: counts of what the principal sees (a school's reviewer learns
/// nothing about other sites' cameras or viewers).
async fn health(State(state): State<AppState>, p: Principal) -> axum::Json<Health> {
    let visible: Vec<_> = state.cameras.values().filter(|c| p.sees_site(&c.config.site)).collect();
    let online = visible.iter().filter(|c| c.report().state == crate::ingest::LinkState::Online).count();
    let viewers = visible.iter().map(|c| c.hub.metrics().viewers.get().max(0) as usize).sum();
    axum::Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        cameras: visible.len(),
        cameras_online: online,
        viewers,
        detect: state.detect_status.lock().map(|v| v.clone()).unwrap_or_default(),
    })
}

/// A camera as the API shows it.
#[derive(Serialize)]
struct CameraView {
    id: String,
    name: String,
    site: String,
    #[serde(flatten)]
    status: StatusReport,
    viewers: i64,
    whep: String,
}

fn view(camera: &Camera) -> CameraView {
    CameraView {
        id: camera.config.id.clone(),
        name: camera.config.name.clone(),
        site: camera.config.site.clone(),
        status: camera.report(),
        viewers: camera.hub.metrics().viewers.get(),
        whep: format!("/api/cameras/{}/whep", camera.config.id),
    }
}

async fn list_cameras(State(state): State<AppState>, Can(p, _): Can<Watch>) -> axum::Json<Vec<CameraView>> {
    axum::Json(state.cameras.values().filter(|c| p.sees_site(&c.config.site)).map(|c| view(c)).collect())
}

async fn get_camera(
    State(state): State<AppState>,
    Can(p, _): Can<Watch>,
    Path(id): Path<String>,
) -> Result<axum::Json<CameraView>, ApiError> {
    let camera = state.camera(&p, &id)?;
    Ok(axum::Json(view(&camera)))
}

/// A site as the API shows it, with its cameras' state.
#[derive(Serialize)]
struct SiteView {
    #[serde(flatten)]
    site: crate::config::SiteConfig,
    cameras: usize,
    cameras_online: usize,
}

async fn list_sites(State(state): State<AppState>, Can(p, _): Can<Watch>) -> axum::Json<Vec<SiteView>> {
    let views = state
        .sites
        .iter()
        .filter(|s| p.sees_site(&s.id))
        .map(|s| {
            let cams: Vec<_> = state.cameras.values().filter(|c| c.config.site == s.id).collect();
            let online = cams.iter().filter(|c| c.report().state == crate::ingest::LinkState::Online).count();
            SiteView { site: s.clone(), cameras: cams.len(), cameras_online: online }
        })
        .collect();
    axum::Json(views)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}
