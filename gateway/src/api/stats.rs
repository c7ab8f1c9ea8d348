//! `GET /api/stats`: violations per day by kind, the sites ranked, review times and
//! camera uptime over a period, as JSON or CSV.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Can, ReadEvents};
use super::events::internal;
use super::{ApiError, AppState};
use crate::events::stats::{Compliance, Day, ReviewTimes, per_day, review_times};

const DAY_MS: i64 = 86_400_000;

/// The query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    site: Option<String>,
    /// UNIX ms; default 7 days before `to`.
    from: Option<i64>,
    /// UNIX ms; default now.
    to: Option<i64>,
    /// `csv` for a spreadsheet.
    format: Option<String>,
}

#[derive(Serialize)]
struct SiteRank {
    site: String,
    name: String,
    cameras: usize,
    #[serde(flatten)]
    record: Compliance,
}

#[derive(Serialize)]
struct CameraUptime {
    id: String,
    name: String,
    site: String,
    state: crate::ingest::LinkState,
    /// Share of the time since the gateway started watching it that it was online.
    uptime_share: f64,
}

#[derive(Serialize)]
struct Report {
    from_ms: i64,
    to_ms: i64,
    timezone: String,
    days: Vec<Day>,
    sites: Vec<SiteRank>,
    review: ReviewTimes,
    cameras: Vec<CameraUptime>,
}

/// `GET /api/stats?site=&from=&to=&format=csv`.
pub async fn report(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let to = q.to.unwrap_or_else(|| state.now_ms() + 1);
    // Default: today and the six days before it, in the (first) site's time zone.
    let from = q.from.unwrap_or_else(|| {
        let tz = state.site_tz(q.site.as_deref().unwrap_or(""));
        crate::events::stats::start_of_day(to - 6 * DAY_MS, &tz)
    });
    if from >= to || to - from > 366 * DAY_MS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "`from` must be before `to`, at most 366 days apart"));
    }
    let sites: Vec<_> = state
        .registry
        .sites()
        .into_iter()
        .filter(|s| p.sees_site(&s.site.id) && q.site.as_ref().is_none_or(|x| *x == s.site.id))
        .collect();
    if let Some(x) = &q.site
        && sites.is_empty()
    {
        return Err(ApiError::not_found(format!("no site `{x}`")));
    }
    let cameras: Vec<_> = state
        .registry
        .cameras()
        .into_iter()
        .map(|e| e.camera)
        .filter(|c| sites.iter().any(|s| s.site.id == c.config.site))
        .collect();
    let ids: Vec<String> = cameras.iter().map(|c| c.config.id.clone()).collect();
    let store = state
        .events
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the event store is not available"))?;
    let rows =
        if ids.is_empty() { Vec::new() } else { store.stat_rows(from, to, Some(ids)).await.map_err(internal)? };
    let tz_name = sites.first().map_or_else(|| "Asia/Shanghai".to_owned(), |s| s.site.timezone.clone());
    let tz = state.site_tz(sites.first().map_or("", |s| s.site.id.as_str()));
    let site_of = |camera: &str| cameras.iter().find(|c| c.config.id == camera).map(|c| c.config.site.clone());
    if q.format.as_deref() == Some("csv") {
        let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for r in &rows {
            let day = jiff::Timestamp::from_millisecond(r.start_ms)
                .map(|t| t.to_zoned_datetime(tz.clone()).date().to_string())
                .unwrap_or_default();
            *counts.entry((day, site_of(&r.camera).unwrap_or_default(), r.kind.clone())).or_default() += 1;
        }
        let mut out = String::from("day,site,site_name,kind,violations\r\n");
        for ((day, site, kind), n) in counts {
            let name = sites.iter().find(|s| s.site.id == site).map(|s| s.site.name.clone()).unwrap_or_default();
            let f = crate::csv::field;
            out.push_str(&format!("{day},{},{},{},{n}\r\n", f(&site), f(&name), f(&kind)));
        }
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"mingchu-stats.csv\"")),
        ];
        return Ok((headers, out).into_response());
    }
    let days_in = (to - from) as f64 / DAY_MS as f64;
    let mut ranked: Vec<SiteRank> = sites
        .iter()
        .map(|s| {
            let ids: Vec<&str> =
                cameras.iter().filter(|c| c.config.site == s.site.id).map(|c| c.config.id.as_str()).collect();
            let mut record = Compliance::default();
            for r in rows.iter().filter(|r| ids.contains(&r.camera.as_str())) {
                record.add(r.status);
            }
            SiteRank {
                site: s.site.id.clone(),
                name: s.site.name.clone(),
                cameras: ids.len(),
                record: record.finish(ids.len(), days_in),
            }
        })
        .collect();
    // Most violations per camera-day first: the kitchens that need a visit.
    ranked.sort_by(|a, b| b.record.per_camera_day.unwrap_or(0.0).total_cmp(&a.record.per_camera_day.unwrap_or(0.0)));
    let uptime = cameras
        .iter()
        .map(|c| {
            let r = c.report();
            CameraUptime {
                id: c.config.id.clone(),
                name: c.config.name.clone(),
                site: c.config.site.clone(),
                state: r.state,
                uptime_share: r.uptime_share,
            }
        })
        .collect();
    Ok(Json(Report {
        from_ms: from,
        to_ms: to,
        timezone: tz_name,
        days: per_day(&rows, from, to, &tz),
        sites: ranked,
        review: review_times(&rows),
        cameras: uptime,
    })
    .into_response())
}
