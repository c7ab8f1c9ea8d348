//! The dashboard and the parents' page: the web app built into `web/dist`, served from
//! the binary or from `server.ui_dir`.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The web app as built when the binary was compiled (read from disk in debug builds).
#[derive(rust_embed::Embed)]
#[folder = "../web/dist"]
#[allow_missing = true]
struct Built;

/// Where the web app's files come from.
#[derive(Debug, Clone)]
pub enum Ui {
    /// Built into the binary.
    Built,
    /// A directory (`server.ui_dir`).
    Dir(PathBuf),
}

/// What to run when the web app is missing; shown in the log at start and on the page.
pub const BUILD_HINT: &str = "cd web && npm ci && npm run build";

impl Ui {
    /// The files of `server.ui_dir`, or the built-in ones.
    pub fn new(dir: Option<PathBuf>) -> Ui {
        dir.map_or(Ui::Built, Ui::Dir)
    }

    /// Why the dashboard cannot be served, if it cannot.
    pub fn missing(&self) -> Option<String> {
        if self.read("index.html").is_some() {
            return None;
        }
        Some(match self {
            Ui::Built => format!("this binary was built without the web app; run `{BUILD_HINT}`, then build it again"),
            Ui::Dir(d) => format!("server.ui_dir {} has no index.html; run `{BUILD_HINT}`", d.display()),
        })
    }

    /// A file by its path under the app's root; none for anything that would leave it.
    fn read(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        let rel = Path::new(path);
        if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        match self {
            Ui::Built => Built::get(path).map(|f| f.data),
            Ui::Dir(dir) => {
                let full = dir.join(rel);
                // Only plain files: a directory or a special file is not part of the app.
                std::fs::metadata(&full).ok().filter(|m| m.is_file())?;
                std::fs::read(full).ok().map(Cow::Owned)
            }
        }
    }
}

/// A built file with its type; hashed assets are kept by browsers for a year, pages are
/// asked for again each time so a new build shows at once.
fn file(ui: &Ui, path: &str, immutable: bool) -> Option<Response> {
    let body = ui.read(path)?;
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Some(resp)
}

/// The page that says how to build the web app.
fn not_built(why: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>明厨 Mingchu</title></head><body><h1>界面尚未构建 · The dashboard is not built</h1>\
         <p>{}</p><p>请运行 Run: <code>{BUILD_HINT}</code></p>\
         <p>API、WHEP 与 /metrics 照常工作。The API, WHEP and /metrics work as usual.</p></body></html>",
        html_escape(why)
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        body,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn page(ui: &Ui, name: &str) -> Response {
    match file(ui, name, false) {
        Some(r) => r,
        None => not_built(&ui.missing().unwrap_or_else(|| format!("{name} is missing from the web app"))),
    }
}

/// `GET /s/{token}`: the parents' page (it asks `/s/{token}/info` what to show).
pub async fn share_page(State(state): State<AppState>) -> Response {
    let mut resp = page(&state.ui, "share.html");
    // The page's address carries the link's secret: never kept by a cache.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Everything outside `/api`, `/s` and `/metrics`: a built file, or the dashboard's page
/// for the app's own routes (`/sites/sunny`, `/events/12`).
pub async fn serve(State(state): State<AppState>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return super::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here").into_response();
    }
    let path = req.uri().path().trim_start_matches('/');
    if path.starts_with("assets/") {
        return file(&state.ui, path, true)
            .unwrap_or_else(|| super::ApiError::not_found(format!("no file /{path}")).into_response());
    }
    if let Some(r) = file(&state.ui, path, false).filter(|_| path != "index.html" && path != "share.html") {
        return r;
    }
    // A missing file with an extension is a broken link, not an app route.
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return super::ApiError::not_found(format!("no file /{path}")).into_response();
    }
    page(&state.ui, "index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_serves_its_files_and_nothing_outside() {
        let dir = std::env::temp_dir().join(format!("mingchu-ui-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("assets/app-1.js"), "x").unwrap();
        let ui = Ui::Dir(dir.clone());
        assert!(ui.missing().is_none());
        assert_eq!(ui.read("assets/app-1.js").as_deref(), Some(&b"x"[..]));
        for bad in ["../index.html", "assets/../../etc/passwd", "/etc/passwd", "", "assets", "./index.html"] {
            assert!(ui.read(bad).is_none(), "{bad}");
        }
        let empty = Ui::Dir(dir.join("assets"));
        assert!(empty.missing().unwrap().contains("npm run build"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    proptest::proptest! {
        /// Whatever path a request names, only files under the app's directory come back.
        #[test]
        fn no_request_path_leaves_the_app_directory(parts in proptest::collection::vec("(\\.\\.|\\.|[a-z]{1,3}|/|%2e|assets|secret)", 0..8)) {
            let root = std::env::temp_dir().join(format!("mingchu-ui-prop-{}", std::process::id()));
            let app = root.join("app");
            std::fs::create_dir_all(app.join("assets")).unwrap();
            std::fs::write(root.join("secret"), "no").unwrap();
            std::fs::write(app.join("index.html"), "ok").unwrap();
            let ui = Ui::Dir(app);
            let path = parts.join("/");
            if let Some(body) = ui.read(&path) {
                proptest::prop_assert_ne!(body.as_ref(), b"no");
            }
        }
    }
}
