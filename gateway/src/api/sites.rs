//! Sites: the regulator's home page (each site's cameras, today's open violations, the
//! last one, its 7-day record), and adding or changing sites for admins.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{Can, Configure, Watch};
use super::cameras::registry_error;
use super::error::Body;
use super::events::{EventView, event_view, internal};
use super::{ApiError, AppState};
use crate::config::{SiteConfig, SiteKind};
use crate::events::stats::{Compliance, start_of_day};
use crate::events::{Filter, Status};
use crate::registry::SiteEntry;

const DAY_MS: i64 = 86_400_000;

/// A site as the API shows it.
#[derive(Serialize)]
pub struct SiteView {
    #[serde(flatten)]
    site: SiteEntry,
    cameras: usize,
    cameras_online: usize,
    /// Violations that started today (site time) and are not yet resolved: `new` or
    /// `confirmed`.
    open_today: u64,
    /// The newest violation.
    last_event: Option<EventView>,
    /// The last 7 days.
    week: Compliance,
}

/// `GET /api/sites`: the sites in scope with their figures.
pub async fn list(State(state): State<AppState>, Can(p, _): Can<Watch>) -> Result<Json<Vec<SiteView>>, ApiError> {
    let now = state.now_ms();
    let cameras = state.registry.cameras();
    let sites: Vec<SiteEntry> = state.registry.sites().into_iter().filter(|s| p.sees_site(&s.site.id)).collect();
    let visible: Vec<String> =
        cameras.iter().filter(|c| p.sees_site(&c.camera.config.site)).map(|c| c.camera.config.id.clone()).collect();
    let rows = match &state.events {
        Some(store) if !visible.is_empty() => {
            store.stat_rows(now - 7 * DAY_MS, now + 1, Some(visible)).await.map_err(internal)?
        }
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for s in sites {
        let ids: Vec<String> =
            cameras.iter().filter(|c| c.camera.config.site == s.site.id).map(|c| c.camera.config.id.clone()).collect();
        let online = cameras
            .iter()
            .filter(|c| {
                c.camera.config.site == s.site.id && c.camera.report().state == crate::ingest::LinkState::Online
            })
            .count();
        let today = start_of_day(now, &state.site_tz(&s.site.id));
        let mut week = Compliance::default();
        let mut open_today = 0;
        for r in rows.iter().filter(|r| ids.contains(&r.camera)) {
            week.add(r.status);
            if r.start_ms >= today && matches!(r.status, Status::New | Status::Confirmed) {
                open_today += 1;
            }
        }
        let last_event = match &state.events {
            Some(store) if !ids.is_empty() => store
                .list(Filter { cameras: Some(ids.clone()), limit: Some(1), ..Default::default() })
                .await
                .map_err(internal)?
                .into_iter()
                .next()
                .map(|e| event_view(&state, e, None)),
            _ => None,
        };
        out.push(SiteView {
            cameras: ids.len(),
            cameras_online: online,
            open_today,
            last_event,
            week: week.finish(ids.len(), 7.0),
            site: s,
        });
    }
    Ok(Json(out))
}

/// Body of `POST /api/sites` and `PATCH /api/sites/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    id: Option<String>,
    name: Option<String>,
    kind: Option<SiteKind>,
    address: Option<String>,
    district: Option<String>,
    contact: Option<String>,
    timezone: Option<String>,
}

fn apply(site: &mut SiteConfig, b: SiteBody) {
    if let Some(v) = b.name {
        site.name = v.trim().to_owned();
    }
    if let Some(v) = b.kind {
        site.kind = v;
    }
    if let Some(v) = b.address {
        site.address = v.trim().to_owned();
    }
    if let Some(v) = b.district {
        site.district = v.trim().to_owned();
    }
    if let Some(v) = b.contact {
        site.contact = v.trim().to_owned();
    }
    if let Some(v) = b.timezone {
        site.timezone = v.trim().to_owned();
    }
}

/// `POST /api/sites`.
pub async fn add(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Body(b): Body<SiteBody>,
) -> Result<(StatusCode, Json<SiteEntry>), ApiError> {
    let mut b = b;
    let id = b.id.take().unwrap_or_default().trim().to_owned();
    let mut site = SiteConfig {
        id,
        name: String::new(),
        kind: SiteKind::default(),
        address: String::new(),
        district: String::new(),
        contact: String::new(),
        timezone: "Asia/Shanghai".into(),
    };
    apply(&mut site, b);
    let e = state.registry.put_site(site, true).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "site_added", &e.site.id, &e.site.id, &e.site.name);
    Ok((StatusCode::CREATED, Json(e)))
}

/// `PATCH /api/sites/{id}`.
pub async fn patch(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
    Body(b): Body<SiteBody>,
) -> Result<Json<SiteEntry>, ApiError> {
    if b.id.as_ref().is_some_and(|x| *x != id) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "`id`: a site's id cannot change"));
    }
    let mut site = state.registry.site(&id).ok_or_else(|| ApiError::not_found(format!("no site `{id}`")))?.site;
    apply(&mut site, b);
    let e = state.registry.put_site(site, false).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "site_changed", &id, &id, "");
    Ok(Json(e))
}

/// `DELETE /api/sites/{id}`: only a site without cameras.
pub async fn remove(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.remove_site(&id).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "site_removed", &id, &id, "");
    Ok(StatusCode::NO_CONTENT)
}
