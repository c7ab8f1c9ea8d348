//! The HTTP surface: JSON API, WHEP, metrics and the web page.

mod access;
mod auth;
mod cameras;
pub mod client;
mod error;
mod events;
pub mod feeds;
mod headers;
mod rules;
pub mod server;
pub mod share;
mod sites;
mod stats;
mod system;
pub mod tls;
pub mod ui;
mod whep;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::access::Principal;
use crate::ingest::Camera;
use crate::live::Live;
use crate::metrics::Metrics;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The sites, cameras and rules in force, and the owner of each camera.
    pub registry: Arc<crate::registry::Registry>,
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
    /// What retention keeps, for the system page's estimate.
    pub retention: crate::events::retention::Limits,
    /// Wall-clock time for sessions and workflow steps.
    pub clock: crate::clock::Clock,
    /// Signs short-lived media tokens.
    pub media: Arc<crate::access::media::MediaKeys>,
    /// Password checks (argon2) running at once.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// The dashboard's and the share page's files.
    pub ui: Arc<ui::Ui>,
}

impl AppState {
    /// Camera `id` if the principal may see it; one it may not see does not exist for it.
    fn camera(&self, p: &Principal, id: &str) -> Result<Arc<Camera>, ApiError> {
        self.registry
            .camera(id)
            .map(|e| e.camera)
            .filter(|c| p.sees_site(&c.config.site))
            .ok_or_else(|| ApiError::not_found(format!("no camera `{id}`")))
    }

    /// Ids of the cameras the principal sees, or None for every camera (even ones no
    /// longer configured, whose events are kept).
    fn visible_cameras(&self, p: &Principal) -> Option<Vec<String>> {
        if p.role == crate::access::Role::Admin || p.scope == crate::access::Scope::All {
            return None;
        }
        Some(self.visible(p).iter().map(|c| c.config.id.clone()).collect())
    }

    /// The cameras the principal sees.
    fn visible(&self, p: &Principal) -> Vec<Arc<Camera>> {
        self.registry.cameras().into_iter().map(|e| e.camera).filter(|c| p.sees_site(&c.config.site)).collect()
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
        self.registry.camera(camera).map(|e| e.camera.config.site.clone())
    }

    /// A site's time zone (Asia/Shanghai when unknown).
    fn site_tz(&self, site: &str) -> jiff::tz::TimeZone {
        let name = self.registry.site(site).map_or_else(|| "Asia/Shanghai".to_owned(), |s| s.site.timezone);
        jiff::tz::TimeZone::get(&name).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    fn site_ids(&self) -> Vec<String> {
        self.registry.sites().into_iter().map(|s| s.site.id).collect()
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

    /// Records a settings change by `p` in the audit trail.
    fn audit_change(
        &self,
        p: &Principal,
        client: &client::Client,
        action: &'static str,
        target: &str,
        site: &str,
        detail: &str,
    ) {
        self.audit(crate::access::audit::Record {
            actor: p.who.label(),
            client: client.ip.to_string(),
            action,
            target: target.to_owned(),
            site: (!site.is_empty()).then(|| site.to_owned()),
            detail: detail.to_owned(),
        });
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
        .route("/sites", get(sites::list).post(sites::add))
        .route("/sites/{id}", axum::routing::patch(sites::patch).delete(sites::remove))
        .route("/stats", get(stats::report))
        .route("/system", get(system::report))
        .route("/rules", get(rules::list).post(rules::add))
        .route("/rules/{id}", axum::routing::put(rules::put).delete(rules::remove))
        .route("/audit", get(access::audit))
        .route("/media-tokens", post(access::media_token))
        .route("/shares", get(share::list).post(share::create))
        .route("/shares/{id}", axum::routing::delete(share::revoke))
        .route("/cameras", get(cameras::list).post(cameras::add))
        .route("/cameras/probe", post(cameras::probe))
        .route("/cameras/{id}", get(cameras::get).patch(cameras::patch).delete(cameras::remove))
        .route("/cameras/{id}/snapshot.jpg", get(cameras::snapshot))
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
        .route("/s/{token}", get(ui::share_page))
        .route("/s/{token}/info", get(share::info))
        .route("/s/{token}/{file}", get(share::qr))
        .route("/s/{token}/cameras/{id}/whep", post(share::offer))
        .route("/s/{token}/cameras/{id}/whep/{session}", axum::routing::delete(share::end))
        .layer(DefaultBodyLimit::max(64 * 1024));
    Router::new()
        .nest("/api", api)
        .merge(shared)
        .route("/metrics", metrics_route)
        // The web app; its files are text, and worth compressing for a phone (API
        // answers are not: some carry a secret shown once).
        .fallback_service(
            Router::new()
                .fallback(ui::serve)
                .layer(tower_http::compression::CompressionLayer::new().gzip(true).compress_when(compressible()))
                .with_state(state.clone()),
        )
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

/// Compresses the web app's text files; not its pictures, already compressed.
fn compressible() -> impl tower_http::compression::Predicate {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    SizeAbove::new(1024).and(NotForContentType::IMAGES).and(NotForContentType::new("application/octet-stream"))
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
    let visible = state.visible(&p);
    let online = visible.iter().filter(|c| c.report().state == crate::ingest::LinkState::Online).count();
    let by = cameras::viewers_by_camera(&state);
    let viewers = visible.iter().map(|c| by.get(&c.config.id).copied().unwrap_or(0)).sum();
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

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}
