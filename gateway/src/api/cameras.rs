//! Cameras: their status for every role; adding, changing, testing and removing them
//! for admins; a fresh picture for drawing zones.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Can, Configure, Watch};
use super::error::Body;
use super::{ApiError, AppState};
use crate::config::{CameraConfig, Transport};
use crate::ingest::{Camera, StatusReport};
use crate::registry::{CameraEntry, RegistryError};

/// A camera as the API shows it.
#[derive(Serialize)]
pub struct CameraView {
    id: String,
    name: String,
    site: String,
    #[serde(flatten)]
    status: StatusReport,
    viewers: usize,
    whep: String,
    enabled: bool,
    /// From the config file: read-only in the dashboard.
    provisioned: bool,
    /// The RTSP URL with its password hidden (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<Transport>,
}

/// Viewers per camera, from the live sessions open now.
pub fn viewers_by_camera(state: &AppState) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for s in state.live.sessions() {
        *by.entry(s.camera).or_insert(0) += 1;
    }
    by
}

fn view(camera: &Camera, provisioned: bool, viewers: &HashMap<String, usize>, admin: bool) -> CameraView {
    let c = &camera.config;
    CameraView {
        id: c.id.clone(),
        name: c.name.clone(),
        site: c.site.clone(),
        status: camera.report(),
        viewers: viewers.get(&c.id).copied().unwrap_or(0),
        whep: format!("/api/cameras/{}/whep", c.id),
        enabled: c.enabled,
        provisioned,
        url: admin.then(|| crate::config::redact(&c.url)),
        transport: admin.then_some(c.transport),
    }
}

fn entry_view(state: &AppState, e: &CameraEntry, admin: bool) -> CameraView {
    view(&e.camera, e.provisioned, &viewers_by_camera(state), admin)
}

/// Maps a refused change to its status.
pub fn registry_error(e: RegistryError) -> ApiError {
    let status = match &e {
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::Provisioned(_) | RegistryError::Conflict(_) => StatusCode::CONFLICT,
        RegistryError::Invalid { .. } => StatusCode::BAD_REQUEST,
        RegistryError::Store(_) | RegistryError::Task(_) => {
            tracing::warn!(error = %e, "settings change failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    ApiError::new(status, e.to_string())
}

/// `GET /api/cameras`: every camera in scope with its status.
pub async fn list(State(state): State<AppState>, Can(p, _): Can<Watch>) -> Json<Vec<CameraView>> {
    let viewers = viewers_by_camera(&state);
    let admin = p.can(crate::access::Action::Configure);
    Json(
        state
            .registry
            .cameras()
            .iter()
            .filter(|e| p.sees_site(&e.camera.config.site))
            .map(|e| view(&e.camera, e.provisioned, &viewers, admin))
            .collect(),
    )
}

/// `GET /api/cameras/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Can(p, _): Can<Watch>,
    Path(id): Path<String>,
) -> Result<Json<CameraView>, ApiError> {
    state.camera(&p, &id)?;
    let e = state.registry.camera(&id).ok_or_else(|| ApiError::not_found(format!("no camera `{id}`")))?;
    Ok(Json(entry_view(&state, &e, p.can(crate::access::Action::Configure))))
}

/// Body of `POST /api/cameras`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCamera {
    id: String,
    name: String,
    site: String,
    url: String,
    #[serde(default)]
    transport: Transport,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/cameras`: adds a camera; it connects at once.
pub async fn add(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Body(body): Body<NewCamera>,
) -> Result<(StatusCode, Json<CameraView>), ApiError> {
    let b = body;
    let cfg = CameraConfig {
        id: b.id.trim().to_owned(),
        name: b.name.trim().to_owned(),
        url: b.url.trim().to_owned(),
        transport: b.transport,
        enabled: b.enabled,
        site: b.site,
    };
    let e = state.registry.add_camera(cfg).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "camera_added", &e.camera.config.id, &e.camera.config.site, "");
    Ok((StatusCode::CREATED, Json(entry_view(&state, &e, true))))
}

/// Body of `PATCH /api/cameras/{id}`: what changes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPatch {
    name: Option<String>,
    site: Option<String>,
    url: Option<String>,
    transport: Option<Transport>,
    enabled: Option<bool>,
}

/// `PATCH /api/cameras/{id}`.
pub async fn patch(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
    Body(body): Body<CameraPatch>,
) -> Result<Json<CameraView>, ApiError> {
    let b = body;
    let old = state.registry.camera(&id).ok_or_else(|| ApiError::not_found(format!("no camera `{id}`")))?;
    let mut cfg = old.camera.config.clone();
    if let Some(n) = b.name {
        cfg.name = n.trim().to_owned();
    }
    if let Some(s) = b.site {
        cfg.site = s;
    }
    // The URL shown has its password hidden: sent back unchanged, it keeps the old one.
    if let Some(u) = b.url.filter(|u| *u != crate::config::redact(&cfg.url)) {
        cfg.url = u.trim().to_owned();
    }
    if let Some(t) = b.transport {
        cfg.transport = t;
    }
    if let Some(e) = b.enabled {
        cfg.enabled = e;
    }
    let what = describe_change(&old.camera.config, &cfg);
    let e = state.registry.update_camera(cfg).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "camera_changed", &id, &e.camera.config.site, &what);
    Ok(Json(entry_view(&state, &e, true)))
}

fn describe_change(old: &CameraConfig, new: &CameraConfig) -> String {
    let mut parts = Vec::new();
    if old.name != new.name {
        parts.push(format!("name {} → {}", old.name, new.name));
    }
    if old.site != new.site {
        parts.push(format!("site {} → {}", old.site, new.site));
    }
    if old.url != new.url {
        parts.push(format!("url → {}", crate::config::redact(&new.url)));
    }
    if old.transport != new.transport {
        parts.push(format!("transport → {:?}", new.transport).to_lowercase());
    }
    if old.enabled != new.enabled {
        parts.push(if new.enabled { "enabled".into() } else { "disabled".into() });
    }
    parts.join("; ")
}

/// `DELETE /api/cameras/{id}`: its viewers end; its events stay.
pub async fn remove(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let site = state.registry.camera(&id).map(|e| e.camera.config.site.clone()).unwrap_or_default();
    state.registry.remove_camera(&id).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "camera_removed", &id, &site, "");
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/cameras/probe`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    url: String,
    #[serde(default)]
    transport: Transport,
}

#[derive(Serialize)]
pub struct ProbeView {
    codec: &'static str,
    width: u32,
    height: u32,
    /// The first picture, as a `data:` URL.
    snapshot: String,
    took_ms: u64,
}

/// Connection tests running at once: each holds an RTSP connection and a decoder.
static PROBES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `POST /api/cameras/probe`: connects once and shows the first picture, codec and size,
/// before anything is saved.
pub async fn probe(Can(_p, _): Can<Configure>, Body(body): Body<ProbeRequest>) -> Result<Json<ProbeView>, ApiError> {
    let b = body;
    let url = b.url.trim().to_owned();
    crate::config::check_rtsp_url(&url).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, format!("`url`: {m}")))?;
    let _slot = PROBES
        .try_acquire()
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "two connection tests are running; try again"))?;
    let found =
        tokio::task::spawn_blocking(move || crate::ingest::probe::probe(&url, b.transport, Duration::from_secs(10)))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    use base64::Engine as _;
    Ok(Json(ProbeView {
        codec: found.codec,
        width: found.still.width,
        height: found.still.height,
        snapshot: format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&found.still.jpeg)
        ),
        took_ms: found.took.as_millis() as u64,
    }))
}

/// `GET /api/cameras/{id}/snapshot.jpg`: the newest keyframe, decoded now.
pub async fn snapshot(
    State(state): State<AppState>,
    Can(p, _): Can<Watch>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let camera = state.camera(&p, &id)?;
    let unit = camera.hub.keyframe().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("camera `{id}` has sent no picture yet"))
    })?;
    let _slot = PROBES
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping"))?;
    let still = tokio::task::spawn_blocking(move || {
        crate::sampler::still::decode_keyframe(unit.data.clone(), Duration::from_secs(5))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], still.jpeg).into_response())
}
