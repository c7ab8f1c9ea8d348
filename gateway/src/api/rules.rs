//! Rules and their zones: listed for every role that reads events, changed by admins;
//! a change reaches every camera's analysis within a second, without a restart.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::auth::{Can, Configure, ReadEvents};
use super::cameras::registry_error;
use super::error::Body;
use super::{ApiError, AppState};
use crate::registry::RuleEntry;
use crate::rules::RuleConfig;

#[derive(Serialize)]
struct Rules {
    /// The model's roles and the labels each covers (empty while detection is off).
    roles: std::collections::BTreeMap<String, Vec<String>>,
    labels: Vec<String>,
    rules: Vec<RuleEntry>,
}

/// `GET /api/rules`.
pub async fn list(State(state): State<AppState>, Can(_p, _): Can<ReadEvents>) -> Json<serde_json::Value> {
    let (roles, labels) = match state.registry.model() {
        Some(m) => (m.roles.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), m.labels.clone()),
        None => (Default::default(), Vec::new()),
    };
    let body = Rules { roles, labels, rules: state.registry.rules() };
    Json(serde_json::to_value(body).unwrap_or_default())
}

/// `POST /api/rules`.
pub async fn add(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Body(b): Body<RuleConfig>,
) -> Result<(StatusCode, Json<RuleEntry>), ApiError> {
    let rule = b;
    let e = state.registry.put_rule(rule, true).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "rule_added", &e.rule.id, "", &serde_json::to_string(&e.rule).unwrap_or_default());
    Ok((StatusCode::CREATED, Json(e)))
}

/// `PUT /api/rules/{id}`: the whole rule, as `GET` shows it.
pub async fn put(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
    Body(b): Body<RuleConfig>,
) -> Result<Json<RuleEntry>, ApiError> {
    let rule = b;
    if rule.id != id {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "`id`: a rule's id cannot change"));
    }
    let e = state.registry.put_rule(rule, false).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "rule_changed", &id, "", &serde_json::to_string(&e.rule).unwrap_or_default());
    Ok(Json(e))
}

/// `DELETE /api/rules/{id}`.
pub async fn remove(
    State(state): State<AppState>,
    Can(p, _): Can<Configure>,
    client: super::client::Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.remove_rule(&id).await.map_err(registry_error)?;
    state.audit_change(&p, &client, "rule_removed", &id, "", "");
    Ok(StatusCode::NO_CONTENT)
}
