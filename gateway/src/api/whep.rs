//! WHEP (draft-ietf-wish-whep): POST an SDP offer, get an answer and a session resource.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Can, Watch};
use super::{ApiError, AppState};
use crate::live::LiveError;

/// `POST /api/cameras/{id}/whep`.
pub async fn offer(
    State(state): State<AppState>,
    Can(p, _): Can<Watch>,
    client: super::client::Client,
    Path(camera_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    start(&state, &p, client.ip, None, &camera_id, &headers, &body).await
}

/// Starts a viewer of `camera_id` for `p` (a share link's parents come here too), with at
/// most `owner_cap` views of `p` at once.
pub async fn start(
    state: &AppState,
    p: &crate::access::Principal,
    client: std::net::IpAddr,
    owner_cap: Option<usize>,
    camera_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let camera = state.camera(p, camera_id)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim().to_ascii_lowercase().starts_with("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/sdp, not `{content_type}`"),
        ));
    }
    let offer = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad SDP offer: the body is not UTF-8"))?;
    // The view is written to the audit trail before it starts, and its end filled in
    // however it ends (the viewer leaves, is reaped, or the gateway stops).
    let record = crate::access::audit::Record {
        actor: p.who.label(),
        client: client.to_string(),
        action: "live_view",
        target: camera_id.to_owned(),
        site: Some(camera.config.site.clone()),
        detail: String::new(),
    };
    let now = state.now_ms();
    let view = state.access.run(move |s| s.record(&record, now)).await.ok();
    let (access, clock) = (state.access.clone(), state.clock.clone());
    let on_end: Box<dyn FnOnce() + Send> = Box::new(move || {
        let Some(id) = view else { return };
        let end = move || {
            let _ = access.end_view(id, crate::clock::unix_ms(clock.realtime()));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(end)),
            Err(_) => end(),
        }
    });
    let added = state.live.add_viewer(&camera, offer, &p.who.label(), owner_cap, on_end);
    if added.is_err()
        && let Some(id) = view
    {
        // A refused offer is a view that ended as it began.
        let _ = state.access.run(move |s| s.end_view(id, now)).await;
    }
    let (session, answer) = added.map_err(|e| {
        let status = match e {
            LiveError::BadOffer(_) => {
                state.metrics.whep_rejected();
                StatusCode::BAD_REQUEST
            }
            LiveError::Full(_) | LiveError::OwnerFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            LiveError::Socket { .. } | LiveError::Certificate => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    })?;
    let location = format!("/api/cameras/{camera_id}/whep/{session}");
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    for link in state.ice_links.iter() {
        h.append(header::LINK, link.clone());
    }
    Ok(resp)
}

/// `DELETE /api/cameras/{id}/whep/{session}`: the viewer leaves.
pub async fn end(
    State(state): State<AppState>,
    Can(p, _): Can<Watch>,
    Path((camera_id, session)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.camera(&p, &camera_id)?;
    // Only the viewer itself (or an admin) ends a view.
    let mine = p.role == crate::access::Role::Admin
        || state.live.sessions().iter().any(|s| s.id == session && s.owner == p.who.label());
    if mine && state.live.end_viewer(&camera_id, &session) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!("no WHEP session `{session}` on camera `{camera_id}`")))
    }
}

/// `PATCH /api/cameras/{id}/whep/{session}`: trickle ICE is not needed with an ICE-lite
/// server (it learns the viewer's address from its checks), so it is declined as WHEP says.
pub async fn patch() -> Response {
    let mut resp =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "trickle ICE is not supported; send all candidates in the offer")
            .into_response();
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    resp
}

/// Renders `webrtc.ice_servers` as WHEP `Link` headers.
pub(super) fn ice_links(servers: &[crate::config::IceServerConfig]) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for s in servers {
        for url in &s.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(cred)) = (&s.username, &s.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    user.replace('"', ""),
                    cred.replace('"', "")
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&link) {
                out.push(v);
            }
        }
    }
    out
}
