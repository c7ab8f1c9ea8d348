//! Security headers on every response, and no caching of API answers or media.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The page's policy: scripts and styles from the gateway's own files only, media and
/// pictures from the gateway (and `blob:` for players), never framed by another site.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers, and `Cache-Control: private, no-store` to API and metrics
/// answers: a shared cache or a phone's disk must not keep a kitchen's pictures.
pub async fn secure(req: Request, next: Next) -> Response {
    let private = {
        let path = req.uri().path();
        path.starts_with("/api/") || path == "/api" || path == "/metrics"
    };
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    if private {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    resp
}
