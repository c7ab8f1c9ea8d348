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

use super::{ApiError, AppState};
use crate::events::{Event, Filter, Status, Store};

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

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "event store error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the event store failed; see the gateway log")
}

/// `GET /api/events?camera=&kind=&status=&from=&to=&limit=&before_id=`.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<Event>>, ApiError> {
    let Query(filter) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(axum::Json(store(&state)?.list(filter).await.map_err(internal)?))
}

/// `GET /api/events/{id}`.
pub async fn get(State(state): State<AppState>, EventId(id): EventId) -> Result<axum::Json<Event>, ApiError> {
    let event = store(&state)?.get(id).await.map_err(internal)?;
    event.map(axum::Json).ok_or_else(|| ApiError::not_found(format!("no event {id}")))
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

/// `PATCH /api/events/{id}` with `{"status": "confirmed"|"dismissed"|"new", "note": "..."}`.
pub async fn patch(
    State(state): State<AppState>,
    EventId(id): EventId,
    body: Result<axum::Json<Review>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Event>, ApiError> {
    let axum::Json(review) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if review.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "note is longer than 2000 characters"));
    }
    let event = store(&state)?.patch(id, review.status, review.note).await.map_err(internal)?;
    let event = event.ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
    let _ = state.event_feed.send(event.clone());
    Ok(axum::Json(event))
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

/// `GET /api/events/{id}/snapshot.jpg`.
pub async fn snapshot(State(state): State<AppState>, EventId(id): EventId, req: Request) -> Result<Response, ApiError> {
    let files = store(&state)?
        .files(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
    serve_file(&state, files.snapshot, "snapshot", id, "image/jpeg", req).await
}

/// `GET /api/events/{id}/clip.mp4`, with HTTP Range so phones can seek.
pub async fn clip(State(state): State<AppState>, EventId(id): EventId, req: Request) -> Result<Response, ApiError> {
    let files = store(&state)?
        .files(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
    serve_file(&state, files.clip, "clip (yet)", id, "video/mp4", req).await
}

/// `GET /api/events/stream`: Server-Sent Events, one `event` message per new or changed event.
pub async fn stream(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let permit = state.sse_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many event feeds are open; try again later")
    })?;
    let rx = state.event_feed.subscribe();
    let shutdown = state.shutdown.clone().cancelled_owned();
    // The permit travels with the stream and is released when the client goes.
    let stream = futures_util::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    let msg = SseEvent::default().event("event").id(ev.id.to_string()).data(data);
                    return Some((Ok(msg), (rx, permit)));
                }
                // A slow reader skips what it missed rather than stalling the feed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // Graceful shutdown waits for open responses: the feed must end with the gateway.
    let stream = futures_util::StreamExt::take_until(stream, shutdown);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
