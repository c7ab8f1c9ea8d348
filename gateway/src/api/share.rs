//! Share links: created by admins and regulators for one site (`/api/shares`), opened by
//! parents at `/s/{token}` with no login: that site's chosen cameras live, nothing else.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::{ApiError, AppState};
use crate::access::audit::Record;
use crate::access::share::{Availability, MAX_DAYS, NewShare, ShareLink, check_schedule};
use crate::access::{Action, Principal, Role, Scope, Who};
use crate::rules::ScheduleEntry;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "access database error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the access database failed; see the gateway log")
}

fn may_share(p: &Principal) -> Result<(), ApiError> {
    if p.can(Action::Share) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, format!("a {} may not create share links", p.role)))
    }
}

/// Body of `POST /api/shares`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    site: String,
    /// Default: every camera of the site.
    #[serde(default)]
    cameras: Vec<String>,
    #[serde(default)]
    label: String,
    /// Default 7, at most 366.
    expires_in_days: Option<f64>,
    #[serde(default)]
    schedule: Vec<ScheduleEntry>,
    max_viewers: Option<u32>,
}

/// A created link: the stored fields, its URL (shown once) and its QR codes.
#[derive(Serialize)]
pub struct CreatedShare {
    #[serde(flatten)]
    link: ShareLink,
    /// `/s/{token}`.
    path: String,
    /// The full address, as the QR code carries it.
    url: String,
    qr_svg: String,
    qr_png: String,
}

/// `POST /api/shares`.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    client: Client,
    headers: HeaderMap,
    body: Result<Json<CreateShare>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedShare>), ApiError> {
    may_share(&p)?;
    let Json(c) = body.map_err(|e| bad(e.body_text()))?;
    if state.registry.site(&c.site).is_none() || !p.sees_site(&c.site) {
        return Err(ApiError::not_found(format!("no site `{}`", c.site)));
    }
    let of_site: Vec<String> = state
        .registry
        .cameras()
        .iter()
        .filter(|e| e.camera.config.site == c.site)
        .map(|e| e.camera.config.id.clone())
        .collect();
    let cameras = if c.cameras.is_empty() { of_site.clone() } else { c.cameras };
    if let Some(x) = cameras.iter().find(|x| !of_site.contains(x)) {
        return Err(bad(format!("camera `{x}` is not a camera of site `{}`", c.site)));
    }
    if cameras.is_empty() {
        return Err(bad(format!("site `{}` has no cameras to share", c.site)));
    }
    let days = c.expires_in_days.unwrap_or(7.0);
    if !(days.is_finite() && days > 0.0 && days <= MAX_DAYS) {
        return Err(bad(format!("`expires_in_days` must be more than 0 and at most {MAX_DAYS}")));
    }
    check_schedule(&c.schedule).map_err(bad)?;
    if c.label.chars().count() > 100 {
        return Err(bad("`label` is longer than 100 characters"));
    }
    if c.max_viewers == Some(0) {
        return Err(bad("`max_viewers` must be at least 1"));
    }
    let now = state.now_ms();
    let new = NewShare {
        site: c.site,
        cameras,
        label: c.label,
        expires_ms: now + (days * 86_400_000.0) as i64,
        schedule: c.schedule,
        max_viewers: c.max_viewers,
    };
    let by = p.who.label();
    let (link, token) = state.access.run(move |s| s.create_share(&new, &by, now)).await.map_err(internal)?;
    state.audit(Record {
        actor: p.who.label(),
        action: "share_created",
        target: format!("share:{}", link.id),
        site: Some(link.site.clone()),
        detail: link.label.clone(),
        ..Default::default()
    });
    let path = format!("/s/{token}");
    // The QR code carries the full address, as the phone that scans it needs.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let scheme = if client.https { "https" } else { "http" };
    let url = format!("{scheme}://{host}{path}");
    let (qr_svg, qr_png) = (format!("{path}/qr.svg"), format!("{path}/qr.png"));
    Ok((StatusCode::CREATED, Json(CreatedShare { link, path, url, qr_svg, qr_png })))
}

/// `GET /api/shares`: the links of the sites in scope, with how many watch each now.
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    may_share(&p)?;
    let links = state.access.run(|s| s.shares()).await.map_err(internal)?;
    let now = state.now_ms();
    let out = links
        .into_iter()
        .filter(|l| p.sees_site(&l.site))
        .map(|l| {
            let viewers = state.live.count_owned_by(&format!("share:{}", l.id));
            let availability = l.availability(now, &state.site_tz(&l.site));
            let mut v = serde_json::to_value(&l).unwrap_or_default();
            v["viewers"] = viewers.into();
            v["availability"] = serde_json::to_value(availability).unwrap_or_default();
            v
        })
        .collect();
    Ok(Json(out))
}

/// `DELETE /api/shares/{id}`: revokes; its live views end at once.
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<i64>,
) -> Result<Json<ShareLink>, ApiError> {
    may_share(&p)?;
    let found = state.access.run(move |s| s.share(id)).await.map_err(internal)?;
    if !found.is_some_and(|l| p.sees_site(&l.site)) {
        return Err(ApiError::not_found(format!("no share link {id}")));
    }
    let now = state.now_ms();
    let link = state.access.run(move |s| s.revoke_share(id, now)).await.map_err(internal)?;
    let ended = state.live.end_owned_by(&format!("share:{id}"));
    state.audit(Record {
        actor: p.who.label(),
        action: "share_revoked",
        target: format!("share:{id}"),
        site: Some(link.site.clone()),
        detail: format!("{ended} live view(s) ended"),
        ..Default::default()
    });
    Ok(Json(link))
}

/// A parent's principal for a link: watch its site, nothing else.
fn share_principal(link: &ShareLink) -> Principal {
    Principal {
        who: Who::Share { id: link.id },
        role: Role::Operator,
        scope: Scope::Sites([link.site.clone()].into()),
        expires_ms: Some(link.expires_ms),
        session: None,
    }
}

/// The link for `token` if it can be watched now; otherwise an answer saying why.
async fn open_link(state: &AppState, token: String) -> Result<ShareLink, ApiError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("no such share link"));
    }
    let link = state.access.run(move |s| s.share_by_token(&token)).await.map_err(internal)?;
    let link = link.ok_or_else(|| ApiError::not_found("no such share link"))?;
    match link.availability(state.now_ms(), &state.site_tz(&link.site)) {
        Availability::Open => Ok(link),
        Availability::Closed { .. } => Err(ApiError::new(StatusCode::FORBIDDEN, "not open now")),
        Availability::Expired | Availability::Revoked => Err(ApiError::new(StatusCode::GONE, "this link has ended")),
    }
}

/// What the parents' page shows.
#[derive(Serialize)]
struct Info {
    site: String,
    label: String,
    availability: Availability,
    expires_ms: i64,
    cameras: Vec<CameraInfo>,
}

#[derive(Serialize)]
struct CameraInfo {
    id: String,
    name: String,
    online: bool,
}

/// `GET /s/{token}/info`: the site's name, the link's state and its cameras. An ended
/// link answers 410 with its state, so the page can say so.
pub async fn info(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let valid = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let link = if valid { state.access.run(move |s| s.share_by_token(&token)).await.ok().flatten() } else { None };
    let Some(link) = link else {
        return ApiError::not_found("no such share link").into_response();
    };
    let availability = link.availability(state.now_ms(), &state.site_tz(&link.site));
    let ended = matches!(availability, Availability::Expired | Availability::Revoked);
    let site = state.registry.site(&link.site).map(|s| s.site.name).unwrap_or_default();
    let cameras = if ended {
        Vec::new()
    } else {
        link.cameras
            .iter()
            .filter_map(|id| state.registry.camera(id))
            .map(|e| e.camera)
            .map(|c| CameraInfo {
                id: c.config.id.clone(),
                name: c.config.name.clone(),
                online: c.report().state == crate::ingest::LinkState::Online,
            })
            .collect()
    };
    let body = Info { site, label: link.label.clone(), availability, expires_ms: link.expires_ms, cameras };
    let status = if ended { StatusCode::GONE } else { StatusCode::OK };
    (status, [(header::CACHE_CONTROL, "private, no-store")], Json(body)).into_response()
}

/// `POST /s/{token}/cameras/{id}/whep`: a parent starts watching one of the link's cameras.
pub async fn offer(
    State(state): State<AppState>,
    client: Client,
    Path((token, camera_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let link = open_link(&state, token.clone()).await?;
    if !link.cameras.contains(&camera_id) {
        return Err(ApiError::not_found(format!("no camera `{camera_id}`")));
    }
    let owner = format!("share:{}", link.id);
    let cap = link.max_viewers.map(|m| m as usize);
    // Said early with the link's own words; the cap is enforced where the view is added,
    // so that offers arriving together cannot overshoot it.
    if let Some(max) = cap
        && state.live.count_owned_by(&owner) >= max
    {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this link's viewer limit is reached; try later"));
    }
    let p = share_principal(&link);
    let mut resp = super::whep::start(&state, &p, client.ip, cap, &camera_id, &headers, &body).await?;
    // The session resource lives under the link, as the page knows no other path.
    if let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let Some(session) = loc.rsplit('/').next()
        && let Ok(v) = HeaderValue::from_str(&format!("/s/{token}/cameras/{camera_id}/whep/{session}"))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `DELETE /s/{token}/cameras/{id}/whep/{session}`: the parent leaves. Works on an ended
/// link too, so a page closed after the expiry still releases its viewer.
pub async fn end(
    State(state): State<AppState>,
    Path((token, camera_id, session)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let valid = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let link = if valid { state.access.run(move |s| s.share_by_token(&token)).await.map_err(internal)? } else { None };
    let link = link.ok_or_else(|| ApiError::not_found("no such share link"))?;
    let owned = state.live.sessions().iter().any(|s| s.id == session && s.owner == format!("share:{}", link.id));
    if owned && state.live.end_viewer(&camera_id, &session) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!("no WHEP session `{session}`")))
    }
}

/// `GET /s/{token}/qr.svg` and `/qr.png`: the link as a QR code, for a class group chat.
pub async fn qr(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path((token, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let valid = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let found = if valid {
        let t = token.clone();
        state.access.run(move |s| s.share_by_token(&t)).await.map_err(internal)?
    } else {
        None
    };
    if found.is_none() {
        return Err(ApiError::not_found("no such share link"));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let scheme = if client.https { "https" } else { "http" };
    let url = format!("{scheme}://{host}/s/{token}");
    let code = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| internal(format!("QR code: {e}")))?;
    match file.as_str() {
        "qr.svg" => {
            let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
            Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
        }
        "qr.png" => {
            let img = code.render::<image::Luma<u8>>().min_dimensions(512, 512).build();
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).map_err(internal)?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png.into_inner()).into_response())
        }
        _ => Err(ApiError::not_found("no such file")),
    }
}

/// Ends parents' live views whose link was revoked, expired or left its schedule; run
/// every second, so a revoked link's views end within a second or two.
pub async fn reap(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sessions = state.live.sessions();
        let mut ids: Vec<i64> =
            sessions.iter().filter_map(|s| s.owner.strip_prefix("share:")).filter_map(|x| x.parse().ok()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let link = state.access.run(move |s| s.share(id)).await.ok().flatten();
            let open =
                link.is_some_and(|l| l.availability(state.now_ms(), &state.site_tz(&l.site)) == Availability::Open);
            if !open {
                let n = state.live.end_owned_by(&format!("share:{id}"));
                tracing::info!(share = id, ended = n, "share link no longer open: its live views ended");
            }
        }
    }
}
