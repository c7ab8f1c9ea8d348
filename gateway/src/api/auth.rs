//! Who is asking: every `/api/*` request gets a [`Principal`] from a session cookie or a
//! bearer token, and each route states the [`Action`] it needs with [`Can`].
//!
//! Credentials never travel in URLs. A client address that keeps presenting wrong
//! tokens is made to wait (429 with `Retry-After`), doubling after five failures.
//! Cookie-authenticated requests that change something must come from the gateway's own
//! pages (`Sec-Fetch-Site` / `Origin`), so another site cannot make a logged-in browser
//! act for it.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::access::{Action, Principal, Role, Scope, Who};

/// The login session cookie.
pub const SESSION_COOKIE: &str = "mingchu_session";

/// Routes that need no principal: logging in. (Inside the `/api` router the prefix is
/// already stripped from the path.)
fn is_public(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == "/session" || path == "/api/session")
}

/// The client's address: the TCP peer, or the client a trusted proxy forwarded for.
pub fn client_ip(parts_ext: &axum::http::Extensions) -> Option<IpAddr> {
    match parts_ext.get::<super::client::Client>() {
        Some(c) => Some(c.ip),
        None => parts_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
    }
}

/// The value of `name` in the request's cookies.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Authenticates every `/api/*` request and stores the [`Principal`] for the handlers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let client = client_ip(req.extensions());
    if is_public(req.method(), req.uri().path()) {
        check_same_origin(req.method(), req.headers())?;
        return Ok(next.run(req).await);
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let principal = if let Some(token) = bearer {
        if let Some(ip) = client
            && let Err(wait) = lock(&state.auth_failures).check(&ip, Instant::now())
        {
            return Err(ApiError::too_many("too many wrong tokens from this address; wait and try again", wait));
        }
        match token_principal(&state, &token).await? {
            Some(p) => {
                if let Some(ip) = client {
                    lock(&state.auth_failures).succeeded(&ip);
                }
                p
            }
            None => {
                if let Some(ip) = client {
                    let wait = lock(&state.auth_failures).failed(ip, Instant::now());
                    tracing::info!(client = %ip, wait_s = wait.as_secs_f64(), "wrong bearer token");
                }
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the bearer token is not valid"));
            }
        }
    } else if let Some(secret) = cookie(req.headers(), SESSION_COOKIE).map(str::to_owned) {
        check_same_origin(req.method(), req.headers())?;
        let limits = state.session_limits;
        let now = state.now_ms();
        let key = crate::access::store::session_key(&secret);
        let found = state.access.run(move |s| s.session(&secret, now, limits)).await.map_err(internal)?;
        let Some(session) = found else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "your session has ended; log in again"));
        };
        Principal {
            who: Who::User { id: session.user.id, name: session.user.name },
            role: session.user.role,
            scope: session.user.scope,
            expires_ms: Some(session.expires_ms),
            session: Some(key),
        }
    } else if let Some(mt) = media_token(&req) {
        // A media token opens its one path, for GET (and a WHEP offer), until it expires.
        let full = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.0.path().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        let method_ok = req.method() == Method::GET || (req.method() == Method::POST && full.ends_with("/whep"));
        match state.media.verify(&mt, &full, state.now_ms()) {
            Some(p) if method_ok => p,
            _ => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the media token is not valid for this request")),
        }
    } else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in, or send `Authorization: Bearer <token>`"));
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The `mt` query parameter: a short-lived media token.
fn media_token(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "mt").map(|(_, v)| v.into_owned())
}

/// The principal of a bearer token: `auth.admin_token` or a machine token.
async fn token_principal(state: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    if let Some(admin) = &state.admin_token
        && constant_time_eq(token.as_bytes(), admin.trim().as_bytes())
    {
        return Ok(Some(Principal {
            who: Who::ConfigToken,
            role: Role::Admin,
            scope: Scope::All,
            expires_ms: None,
            session: None,
        }));
    }
    if !token.starts_with(crate::access::store::TOKEN_PREFIX) {
        return Ok(None);
    }
    let now = state.now_ms();
    let token = token.to_owned();
    let found = state.access.run(move |s| s.token(&token, now)).await.map_err(internal)?;
    Ok(found.map(|t| Principal {
        who: Who::Token { id: t.id, name: t.name },
        role: t.role,
        scope: t.scope,
        expires_ms: None,
        session: None,
    }))
}

/// Refuses a state-changing request a browser sent from another site.
fn check_same_origin(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refused = || ApiError::new(StatusCode::FORBIDDEN, "cross-site request refused: use the gateway's own pages");
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return if matches!(site, "same-origin" | "none") { Ok(()) } else { Err(refused()) };
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
        return if !host.is_empty() && origin_host == host { Ok(()) } else { Err(refused()) };
    }
    // Neither header: not a browser (browsers send Origin on every cross-site POST).
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "access database error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the access database failed; see the gateway log")
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in, or send `Authorization: Bearer <token>`"))
    }
}

/// A permission a route needs, named by a type so that the handler's signature says it.
pub trait Permission: Send + Sync {
    /// The action.
    const ACTION: Action;
}

macro_rules! permission {
    ($($name:ident => $action:ident),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($action), "` permission.")]
        pub struct $name;
        impl Permission for $name {
            const ACTION: Action = Action::$action;
        }
    )*};
}

permission! {
    Watch => Watch,
    ReadEvents => ReadEvents,
    ManageAccess => ManageAccess,
    ReadMetrics => ReadMetrics,
    Configure => Configure,
}

/// The principal, once its role is known to allow `P`; 403 otherwise.
pub struct Can<P>(pub Principal, pub PhantomData<P>);

impl<S: Send + Sync, P: Permission> FromRequestParts<S> for Can<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let p = Principal::from_request_parts(parts, state).await?;
        if !p.can(P::ACTION) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a {} may not do this ({:?})", p.role, P::ACTION).to_lowercase(),
            ));
        }
        Ok(Can(p, PhantomData))
    }
}

/// `/metrics` on the main listener: the `ReadMetrics` permission.
pub async fn require_metrics(_: Can<ReadMetrics>, req: Request, next: Next) -> Response {
    next.run(req).await
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    use super::*;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; mingchu_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn cross_site_changes_are_refused() {
        let with = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            h
        };
        let post = Method::POST;
        assert!(check_same_origin(&post, &with(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_same_origin(&post, &with(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_same_origin(&post, &with(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(check_same_origin(&post, &with(&[("origin", "http://gw:8080"), ("host", "gw:8080")])).is_ok());
        assert!(check_same_origin(&post, &with(&[("origin", "http://evil"), ("host", "gw:8080")])).is_err());
        assert!(check_same_origin(&Method::GET, &with(&[("sec-fetch-site", "cross-site")])).is_ok());
        assert!(check_same_origin(&post, &HeaderMap::new()).is_ok(), "not a browser");
    }
}
