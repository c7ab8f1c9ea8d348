//! Logging in and out, the caller's own account, and (for admins) accounts and machine
//! tokens.

use std::net::IpAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Can, ManageAccess, SESSION_COOKIE, cookie, lock};
use super::client::Client;
use super::{ApiError, AppState};
use crate::access::audit::{AuditFilter, Record};
use crate::access::store::{AccessError, Token, User};
use crate::access::{Principal, Role, Scope, Who, check_grant, password};

fn record(actor: String, client: Option<IpAddr>, action: &'static str, target: String, detail: String) -> Record {
    Record { actor, client: client.map(|c| c.to_string()).unwrap_or_default(), action, target, site: None, detail }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "access database error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the access database failed; see the gateway log")
}

fn access_error(e: AccessError) -> ApiError {
    match e {
        AccessError::Duplicate(name) => ApiError::new(StatusCode::CONFLICT, format!("`{name}` already exists")),
        AccessError::NotFound(what) => ApiError::not_found(format!("no {what}")),
        e => internal(e),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The session cookie for `secret`; `Secure` when the client came over HTTPS (the
/// gateway's own TLS, or a trusted proxy's).
fn session_cookie(state: &AppState, secret: &str, https: bool) -> HeaderValue {
    let max_age = state.session_limits.max_ms / 1000;
    let secure = if https { "; Secure" } else { "" };
    let v = format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("mingchu_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Body of `POST /api/session`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    name: String,
    password: String,
}

/// What the caller is, for `GET /api/me` and after a login.
#[derive(Serialize)]
pub struct Me {
    who: Who,
    role: Role,
    scope: Scope,
    expires_ms: Option<i64>,
}

impl From<Principal> for Me {
    fn from(p: Principal) -> Self {
        Me { who: p.who, role: p.role, scope: p.scope, expires_ms: p.expires_ms }
    }
}

/// `POST /api/session`: logs in with a name and password and sets the session cookie.
///
/// Failures back off per client address and per account: the sixth wrong password in a
/// row waits 1 s, each further one doubles it (up to 5 minutes), and the wait always
/// ends, so the real user is never locked out for good.
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body.map_err(|e| bad(e.body_text()))?;
    let ip = Some(client.ip);
    let account = login.name.trim().to_lowercase();
    // At most a few password checks run at once: each takes 19 MiB and most of a core
    // for tens of milliseconds, and a burst must not turn into gigabytes. Waiting here
    // holds no memory; the back-off is checked after the wait, so a burst sees the
    // failures of those ahead of it.
    let _permit = state.password_checks.acquire().await.map_err(internal)?;
    let now = Instant::now();
    let waits = [
        ip.and_then(|ip| lock(&state.login_by_ip).check(&ip, now).err()),
        lock(&state.login_by_account).check(&account, now).err(),
    ];
    if let Some(wait) = waits.into_iter().flatten().max() {
        return Err(ApiError::too_many("too many failed logins; wait and try again", wait));
    }
    // Counted as a failure before the check and cleared on success, so requests sent
    // together cannot all pass the back-off.
    if let Some(ip) = ip {
        lock(&state.login_by_ip).failed(ip, now);
    }
    lock(&state.login_by_account).failed(account.clone(), now);
    let name = login.name.trim().to_owned();
    let found = state.access.run(move |s| s.user_with_hash(&name)).await.map_err(internal)?;
    let given = login.password;
    let user = tokio::task::spawn_blocking(move || {
        // A name that does not exist costs the same time as a wrong password.
        let (user, hash) = match &found {
            Some((u, h)) => (Some(u.clone()), h.as_str()),
            None => (None, password::decoy()),
        };
        let ok = password::verify(&given, hash).unwrap_or(false);
        user.filter(|u| ok && !u.disabled)
    })
    .await
    .map_err(internal)?;
    let Some(user) = user else {
        tracing::info!(client = ?ip, name = %login.name, "failed login");
        let tried: String = login.name.trim().chars().take(64).collect();
        state.audit(record(format!("name:{tried}"), ip, "login_failed", String::new(), String::new()));
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password"));
    };
    if let Some(ip) = ip {
        lock(&state.login_by_ip).succeeded(&ip);
    }
    lock(&state.login_by_account).succeeded(&account);
    let secret = start_session(&state, &user, ip, &headers).await?;
    tracing::info!(client = ?ip, name = %user.name, "logged in");
    state.audit(record(format!("user:{}", user.name), ip, "login", String::new(), String::new()));
    let me = Me {
        who: Who::User { id: user.id, name: user.name.clone() },
        role: user.role,
        scope: user.scope.clone(),
        expires_ms: Some(state.now_ms() + state.session_limits.idle_ms.min(state.session_limits.max_ms)),
    };
    let mut resp = Json(me).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &secret, client.https));
    Ok(resp)
}

async fn start_session(
    state: &AppState,
    user: &User,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let client =
        format!("{} {}", ip.map(|i| i.to_string()).unwrap_or_default(), agent.chars().take(120).collect::<String>());
    let (id, now) = (user.id, state.now_ms());
    state.access.run(move |s| s.create_session(id, now, &client)).await.map_err(internal)
}

/// `DELETE /api/session`: logs out this browser.
pub async fn logout(
    State(state): State<AppState>,
    p: Principal,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.audit(record(p.who.label(), Some(client.ip), "logout", String::new(), String::new()));
    if let Some(secret) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) {
        state.feeds.end_session(&crate::access::store::session_key(&secret));
        state.access.run(move |s| s.end_session(&secret)).await.map_err(internal)?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cleared_cookie());
    Ok(resp)
}

/// `DELETE /api/sessions`: logs the caller's account out everywhere.
pub async fn logout_everywhere(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let Who::User { id, .. } = p.who else {
        return Err(bad("only a logged-in account has sessions"));
    };
    let label = p.who.label();
    let n = state.access.run(move |s| s.end_all_sessions(id)).await.map_err(internal)?;
    state.end_owned_by(&label);
    let mut resp = Json(serde_json::json!({ "ended": n })).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cleared_cookie());
    Ok(resp)
}

/// `GET /api/me`.
pub async fn me(p: Principal) -> Json<Me> {
    Json(p.into())
}

/// Body of `PUT /api/me/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current: String,
    new: String,
}

/// `PUT /api/me/password`: needs the current password; ends every other session and
/// starts a new one for this browser.
pub async fn change_password(
    State(state): State<AppState>,
    p: Principal,
    client: Client,
    headers: HeaderMap,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(change) = body.map_err(|e| bad(e.body_text()))?;
    let Who::User { name, .. } = p.who else {
        return Err(bad("only an account has a password"));
    };
    password::check_rule(&change.new).map_err(|e| bad(e.to_string()))?;
    // The current password is guessed no faster here than at the login.
    let _permit = state.password_checks.acquire().await.map_err(internal)?;
    let account = name.to_lowercase();
    if let Err(wait) = lock(&state.login_by_account).check(&account, Instant::now()) {
        return Err(ApiError::too_many("too many wrong passwords; wait and try again", wait));
    }
    let found = state.access.run(move |s| s.user_with_hash(&name)).await.map_err(internal)?;
    let Some((user, hash)) = found else { return Err(ApiError::not_found("no such account")) };
    let now = state.now_ms();
    let uid = user.id;
    let ok = state
        .access
        .run(move |s| {
            if !password::verify(&change.current, &hash).unwrap_or(false) {
                return Ok(false);
            }
            let new_hash = password::hash(&change.new).map_err(|e| AccessError::Task(e.to_string()))?;
            s.set_password(uid, &new_hash, now)?;
            Ok(true)
        })
        .await
        .map_err(internal)?;
    if !ok {
        lock(&state.login_by_account).failed(account, Instant::now());
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the current password is wrong"));
    }
    lock(&state.login_by_account).succeeded(&account);
    state.audit(record(
        format!("user:{}", user.name),
        Some(client.ip),
        "password_changed",
        user.name.clone(),
        String::new(),
    ));
    // The other sessions ended with the change; so do the feeds they had open (this
    // browser's reconnects with its new cookie).
    state.feeds.end_owned_by(&format!("user:{}", user.name));
    let secret = start_session(&state, &user, Some(client.ip), &headers).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &secret, client.https));
    Ok(resp)
}

/// A role and the sites it covers, as the API takes them: `sites` is `"*"` or a list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: Role,
    #[serde(default = "no_sites")]
    sites: Scope,
    password: String,
}

fn no_sites() -> Scope {
    Scope::Sites(Default::default())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok { Ok(()) } else { Err(bad("a name is 1-64 letters, digits, `-`, `_`, `.` or `@`")) }
}

/// `GET /api/users`.
pub async fn list_users(State(state): State<AppState>, _: Can<ManageAccess>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.access.run(|s| s.users()).await.map_err(internal)?))
}

/// `POST /api/users`.
pub async fn add_user(
    State(state): State<AppState>,
    Can(p, _): Can<ManageAccess>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let Json(u) = body.map_err(|e| bad(e.body_text()))?;
    check_name(&u.name)?;
    let scope = check_grant(u.role, u.sites, &state.site_ids()).map_err(|e| bad(e.to_string()))?;
    password::check_rule(&u.password).map_err(|e| bad(e.to_string()))?;
    let now = state.now_ms();
    let user = state
        .access
        .run(move |s| {
            let hash = password::hash(&u.password).map_err(|e| AccessError::Task(e.to_string()))?;
            s.add_user(&u.name, u.role, &scope, &hash, now)
        })
        .await
        .map_err(access_error)?;
    let detail = format!("{} {}", user.role, user.scope.to_stored());
    state.audit(record(p.who.label(), None, "user_added", user.name.clone(), detail));
    Ok((StatusCode::CREATED, Json(user)))
}

/// Body of `PATCH /api/users/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: Option<Role>,
    sites: Option<Scope>,
    disabled: Option<bool>,
    password: Option<String>,
}

/// `PATCH /api/users/{id}`: role, sites, disabled, or a new password (an admin's reset).
pub async fn change_user(
    State(state): State<AppState>,
    Can(p, _): Can<ManageAccess>,
    Path(id): Path<i64>,
    body: Result<Json<UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let Json(c) = body.map_err(|e| bad(e.body_text()))?;
    let current = state
        .access
        .run(move |s| s.user(id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    let role = c.role.unwrap_or(current.role);
    let scope = if c.role.is_some() || c.sites.is_some() {
        Some(check_grant(role, c.sites.unwrap_or(current.scope), &state.site_ids()).map_err(|e| bad(e.to_string()))?)
    } else {
        None
    };
    if let Some(p) = &c.password {
        password::check_rule(p).map_err(|e| bad(e.to_string()))?;
    }
    let now = state.now_ms();
    let reset = c.password.is_some();
    let scope_changed = scope.is_some();
    let user = state
        .access
        .run(move |s| {
            if let Some(p) = &c.password {
                let hash = password::hash(p).map_err(|e| AccessError::Task(e.to_string()))?;
                s.set_password(id, &hash, now)?;
            }
            s.update_user(id, c.role, scope.as_ref(), c.disabled)
        })
        .await
        .map_err(access_error)?;
    let was_reset = reset;
    let reset = if reset { ", password reset" } else { "" };
    let detail =
        format!("{} {}{}{reset}", user.role, user.scope.to_stored(), if user.disabled { ", disabled" } else { "" });
    state.audit(record(p.who.label(), None, "user_changed", user.name.clone(), detail));
    // A disabled account, or one whose role, sites or password changed, keeps no live
    // view or event feed opened under what it could do before.
    if user.disabled || scope_changed || was_reset {
        state.end_owned_by(&format!("user:{}", user.name));
    }
    Ok(Json(user))
}

/// Body of `POST /api/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
    #[serde(default = "no_sites")]
    sites: Scope,
}

/// A created token with its secret, shown this once.
#[derive(Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    token: Token,
    secret: String,
}

/// `GET /api/tokens`.
pub async fn list_tokens(State(state): State<AppState>, _: Can<ManageAccess>) -> Result<Json<Vec<Token>>, ApiError> {
    Ok(Json(state.access.run(|s| s.tokens()).await.map_err(internal)?))
}

/// `POST /api/tokens`.
pub async fn add_token(
    State(state): State<AppState>,
    Can(p, _): Can<ManageAccess>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(t) = body.map_err(|e| bad(e.body_text()))?;
    if t.name.trim().is_empty() || t.name.chars().count() > 100 {
        return Err(bad("a token name is 1-100 characters"));
    }
    let scope = check_grant(t.role, t.sites, &state.site_ids()).map_err(|e| bad(e.to_string()))?;
    let (by, now) = (p.who.label(), state.now_ms());
    let (token, secret) = state
        .access
        .run(move |s| s.create_token(t.name.trim(), t.role, &scope, &by, now))
        .await
        .map_err(access_error)?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

/// `DELETE /api/tokens/{id}`: revokes; the token stops working at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    Can(p, _): Can<ManageAccess>,
    Path(id): Path<i64>,
) -> Result<Json<Token>, ApiError> {
    let now = state.now_ms();
    let token = state.access.run(move |s| s.revoke_token(id, now)).await.map_err(access_error)?;
    state.audit(record(p.who.label(), None, "token_revoked", token.name.clone(), String::new()));
    // Live views opened with it end now, not when their viewers leave.
    state.end_owned_by(&format!("token:{}", token.name));
    Ok(Json(token))
}

/// `GET /api/audit?from=&to=&actor=&action=&before_id=&limit=&format=csv`: newest first.
/// Regulators see the entries of their sites; admins see everything.
pub async fn audit(
    State(state): State<AppState>,
    p: Principal,
    query: Result<axum::extract::Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if !p.can(crate::access::Action::ReadAudit) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("a {} may not read the audit trail", p.role)));
    }
    let axum::extract::Query(mut f) = query.map_err(|e| bad(e.body_text()))?;
    if p.role != Role::Admin {
        f.sites = Some(match &p.scope {
            Scope::All => state.site_ids(),
            Scope::Sites(s) => s.iter().cloned().collect(),
        });
    }
    let csv = f.format.as_deref() == Some("csv");
    let entries = state.access.run(move |s| s.audit(&f)).await.map_err(internal)?;
    if csv {
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"mingchu-audit.csv\"")),
        ];
        return Ok((headers, crate::access::audit::to_csv(&entries)).into_response());
    }
    Ok(Json(entries).into_response())
}

/// Body of `POST /api/media-tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaTokenRequest {
    /// The one path the token opens, e.g. `/api/events/12/clip.mp4`.
    path: String,
    /// Lifetime in seconds (default and most: 300).
    ttl_s: Option<u32>,
}

/// `POST /api/media-tokens`: a token for one path, to put in its URL as `?mt=`. It acts
/// as the caller, so it opens nothing the caller could not open.
pub async fn media_token(
    State(state): State<AppState>,
    p: Principal,
    body: Result<Json<MediaTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(r) = body.map_err(|e| bad(e.body_text()))?;
    let media = r.path.ends_with("/snapshot.jpg")
        || r.path.ends_with("/clip.mp4")
        || r.path.ends_with("/whep")
        || r.path == "/api/events/stream";
    if !r.path.starts_with("/api/") || r.path.contains(['?', '#']) || !media {
        return Err(bad("`path` must be a snapshot, clip, WHEP or event-feed path under /api/"));
    }
    let ttl = i64::from(r.ttl_s.unwrap_or(300)) * 1000;
    let (token, expires_ms) = state.media.mint(&p, &r.path, state.now_ms(), ttl);
    Ok(Json(serde_json::json!({ "token": token, "expires_ms": expires_ms, "url": format!("{}?mt={token}", r.path) })))
}
