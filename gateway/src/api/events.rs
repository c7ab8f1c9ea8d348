//! Events API: list, read, review, snapshot, clip (with HTTP Range) and a live SSE feed.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::auth::{Can, ReadEvents};
use super::feeds::FeedsFull;
use super::{ApiError, AppState};
use crate::access::{Action, Principal};
use crate::events::{Event, Filter, Status, Store, Transition, workflow};

/// An event as the API shows it: the stored row with its site and, for one event, its
/// workflow history.
#[derive(serde::Serialize)]
pub struct EventView {
    #[serde(flatten)]
    event: Event,
    /// The camera's site (None for a camera no longer configured).
    site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<Transition>>,
}

pub(super) fn event_view(state: &AppState, event: Event, history: Option<Vec<Transition>>) -> EventView {
    EventView { site: state.site_of(&event.camera), event, history }
}

/// Event `id` if the principal sees its camera; one outside the scope is "not found".
async fn scoped(state: &AppState, p: &Principal, id: i64) -> Result<Event, ApiError> {
    store(state)?
        .get(id)
        .await
        .map_err(internal)?
        .filter(|e| state.sees_camera_events(p, &e.camera))
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

/// An event id from the path; anything but a number is a 400 with the usual JSON error.
pub struct EventId(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for EventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        raw.parse()
            .map(EventId)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("event id `{raw}` is not a number")))
    }
}

fn store(state: &AppState) -> Result<&Store, ApiError> {
    state
        .events
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the event store is not available"))
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "event store error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the event store failed; see the gateway log")
}

/// `GET /api/events?camera=&kind=&status=&from=&to=&limit=&before_id=`.
pub async fn list(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    query: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<EventView>>, ApiError> {
    let Query(mut filter) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    filter.cameras = state.visible_cameras(&p);
    if let Some(site) = filter.site.take() {
        let of_site: Vec<String> = state
            .registry
            .cameras()
            .into_iter()
            .filter(|e| e.camera.config.site == site)
            .map(|e| e.camera.config.id.clone())
            .filter(|id| filter.cameras.as_ref().is_none_or(|v| v.contains(id)))
            .collect();
        filter.cameras = Some(of_site);
    }
    let events = store(&state)?.list(filter).await.map_err(internal)?;
    Ok(axum::Json(events.into_iter().map(|e| event_view(&state, e, None)).collect()))
}

/// `GET /api/events/{id}`, with its workflow history.
pub async fn get(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    EventId(id): EventId,
) -> Result<axum::Json<EventView>, ApiError> {
    let event = scoped(&state, &p, id).await?;
    let history = store(&state)?.history(id).await.map_err(internal)?;
    Ok(axum::Json(event_view(&state, event, Some(history))))
}

/// Body of `PATCH /api/events/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// New status.
    pub status: Option<Status>,
    /// New note.
    pub note: Option<String>,
}

/// `PATCH /api/events/{id}` with `{"status": "confirmed", "note": "..."}`: a workflow
/// step the caller's role allows (see `events::workflow`), recorded with who and when.
pub async fn patch(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    EventId(id): EventId,
    body: Result<axum::Json<Review>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<EventView>, ApiError> {
    let axum::Json(review) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let note_given = review.note.is_some();
    let note = review.note.unwrap_or_default();
    if note.chars().count() > 2000 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "note is longer than 2000 characters"));
    }
    if !p.can(Action::Review) && !p.can(Action::Rectify) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("a {} may not review events", p.role)));
    }
    let event = scoped(&state, &p, id).await?;
    let updated = match review.status {
        Some(to) if to != event.status => {
            if !workflow::allowed(p.role, event.status, to) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("a {} may not move an event from {:?} to {:?}", p.role, event.status, to).to_lowercase(),
                ));
            }
            if workflow::needs_note(to) && note.trim().is_empty() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "say what was rectified in `note`"));
            }
            let detail = format!("{:?} → {:?}: {note}", event.status, to).to_lowercase();
            let step = Transition { from: event.status, to, by: p.who.label(), at_ms: state.now_ms(), note };
            let moved = store(&state)?.transition(id, step).await.map_err(internal)?.ok_or_else(|| {
                ApiError::new(StatusCode::CONFLICT, format!("event {id} was moved by someone else; reload it"))
            })?;
            state.audit(crate::access::audit::Record {
                actor: p.who.label(),
                client: String::new(),
                action: "event_review",
                target: format!("event:{id}"),
                site: state.site_of(&event.camera),
                detail,
            });
            moved
        }
        // A note alone: only someone who may review, and only when a note is given, so an
        // empty PATCH never wipes what a reviewer wrote.
        _ if !note_given => event,
        _ if !p.can(Action::Review) => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "only a reviewer edits a note without a review step"));
        }
        _ => {
            let updated = store(&state)?
                .patch(id, None, Some(note.clone()))
                .await
                .map_err(internal)?
                .ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
            state.audit(crate::access::audit::Record {
                actor: p.who.label(),
                client: String::new(),
                action: "event_note",
                target: format!("event:{id}"),
                site: state.site_of(&updated.camera),
                detail: note,
            });
            updated
        }
    };
    let _ = state.event_feed.send(updated.clone());
    let history = store(&state)?.history(id).await.map_err(internal)?;
    Ok(axum::Json(event_view(&state, updated, Some(history))))
}

async fn serve_file(
    state: &AppState,
    rel: Option<String>,
    what: &str,
    id: i64,
    content_type: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let rel = rel.ok_or_else(|| ApiError::not_found(format!("event {id} has no {what}")))?;
    let path = crate::events::stored_file(&state.data_dir, &rel).ok_or_else(|| {
        ApiError::not_found(format!("the {what} of event {id} is not stored under the data directory"))
    })?;
    if !path.is_file() {
        return Err(ApiError::not_found(format!("the {what} of event {id} is no longer stored")));
    }
    let resp = ServeFile::new_with_mime(path, &content_type.parse().map_err(internal)?)
        .oneshot(req)
        .await
        .map_err(internal)?;
    Ok(resp.map(Body::new))
}

/// The stored files of event `id`, if the principal sees it.
async fn scoped_files(state: &AppState, p: &Principal, id: i64) -> Result<crate::events::EventFiles, ApiError> {
    scoped(state, p, id).await?;
    store(state)?.files(id).await.map_err(internal)?.ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

/// `GET /api/events/{id}/snapshot.jpg`.
pub async fn snapshot(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    EventId(id): EventId,
    req: Request,
) -> Result<Response, ApiError> {
    let files = scoped_files(&state, &p, id).await?;
    serve_file(&state, files.snapshot, "snapshot", id, "image/jpeg", req).await
}

/// `GET /api/events/{id}/clip.mp4`, with HTTP Range so phones can seek.
pub async fn clip(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
    EventId(id): EventId,
    req: Request,
) -> Result<Response, ApiError> {
    let files = scoped_files(&state, &p, id).await?;
    serve_file(&state, files.clip, "clip (yet)", id, "video/mp4", req).await
}

/// `GET /api/events/stream`: Server-Sent Events, one `event` message per new or changed event.
pub async fn stream(
    State(state): State<AppState>,
    Can(p, _): Can<ReadEvents>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let permit = state.feeds.open(&p.who.label(), p.session.as_deref()).map_err(|e| {
        let status = match e {
            FeedsFull::Total(_) => StatusCode::SERVICE_UNAVAILABLE,
            FeedsFull::Principal(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError::new(status, e.to_string())
    })?;
    let revoked = permit.ended.clone().cancelled_owned();
    let rx = state.event_feed.subscribe();
    let shutdown = state.shutdown.clone().cancelled_owned();
    // The permit travels with the stream and is released when the client goes.
    let visible = state.visible_cameras(&p);
    let site_state = state.clone();
    let stream = futures_util::stream::unfold((rx, permit), move |(mut rx, permit)| {
        let visible = visible.clone();
        let state = site_state.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(ev) if visible.as_ref().is_some_and(|v| !v.contains(&ev.camera)) => continue,
                    Ok(ev) => {
                        let ev = event_view(&state, ev, None);
                        let data = serde_json::to_string(&ev).unwrap_or_default();
                        let msg = SseEvent::default().event("event").id(ev.event.id.to_string()).data(data);
                        return Some((Ok(msg), (rx, permit)));
                    }
                    // A slow reader skips what it missed rather than stalling the feed.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    // Graceful shutdown waits for open responses: the feed must end with the gateway, and
    // with the credential that opened it (a session's or a media token's expiry, a logout,
    // a revocation).
    let left_ms = p.expires_ms.map(|e| (e - state.now_ms()).max(0) as u64).unwrap_or(100 * 365 * 86_400_000);
    let expiry = tokio::time::sleep(Duration::from_millis(left_ms));
    let ended = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = expiry => {}
            _ = revoked => {}
        }
    };
    let stream = futures_util::StreamExt::take_until(stream, ended);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
