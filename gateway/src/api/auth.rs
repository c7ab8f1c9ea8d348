//! Bearer-token check for every `/api/*` route.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// Rejects requests without `Authorization: Bearer <admin_token>`. Browsers cannot set
/// that header on `<video src>`, `<img src>` or `EventSource`, so GET requests may carry
/// the token as `?access_token=` instead. A client address that keeps sending wrong
/// tokens is made to wait (429 with `Retry-After`), doubling after five failures.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = client
        && let Err(wait) = lock(&state.auth_failures).check(&ip, Instant::now())
    {
        return Err(ApiError::too_many("too many wrong tokens from this address; wait and try again", wait));
    }
    let from_query = || {
        if req.method() != axum::http::Method::GET {
            return None;
        }
        let query = req.uri().query()?;
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned())
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(from_query);
    match given.as_deref() {
        Some(token) if state.admin_token.as_ref().is_some_and(|t| constant_time_eq(token.as_bytes(), t.as_bytes())) => {
            Ok(next.run(req).await)
        }
        Some(_) => {
            if let Some(ip) = client {
                let wait = lock(&state.auth_failures).failed(ip, Instant::now());
                tracing::info!(client = %ip, wait_s = wait.as_secs_f64(), "wrong bearer token");
            }
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "the bearer token is not valid"))
        }
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <token>` header")),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }
}
