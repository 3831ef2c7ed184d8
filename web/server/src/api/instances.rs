//! Instances, their plugins, their devices and commands.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::AppError;
use super::{AppState, json_body};
use crate::devices::{self, CommandError, DeviceView};
use crate::instances::{InstanceView, PluginHistory, PluginSwitch, Rebuilt, UpdateAll};
use crate::request::InstanceRequest;

type Result<T> = std::result::Result<T, AppError>;

/// `GET /api/connectors`: the connectors instances can be created from.
pub async fn connectors(State(state): State<AppState>) -> Json<Value> {
    let catalog = state.instances.catalog();
    let list: Vec<Value> = catalog
        .names()
        .into_iter()
        .map(|name| match catalog.get(&name) {
            Ok(c) => {
                json!({"name": name, "manifest": c.manifest, "secret_fields": c.secret_fields, "network": c.network})
            }
            Err(e) => json!({"name": name, "broken": true, "error": e.to_string()}),
        })
        .collect();
    Json(Value::Array(list))
}

/// `GET /api/instances`
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<InstanceView>>> {
    Ok(Json(state.instances.list().await?))
}

/// `POST /api/instances` → 201 with the instance.
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<InstanceView>)> {
    let request = InstanceRequest::parse(json_body(&body)?)?;
    let view = state.instances.create(request).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/instances/{connector}/{id}`
pub async fn get_one(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<InstanceView>> {
    Ok(Json(state.instances.get(&connector, &id).await?))
}

/// `PUT /api/instances/{connector}/{id}`
pub async fn update(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<InstanceView>> {
    let request = InstanceRequest::parse(json_body(&body)?)?;
    Ok(Json(state.instances.update(&connector, &id, request).await?))
}

/// `DELETE /api/instances/{connector}/{id}`
pub async fn remove(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.instances.delete(&connector, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many log lines to return.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    #[serde(default = "default_lines")]
    pub(crate) lines: usize,
    /// `text`: a file to download instead of JSON.
    #[serde(default)]
    pub(crate) format: Option<String>,
}

fn default_lines() -> usize {
    crate::runtime::LOG_TAIL
}

/// `GET /api/instances/{connector}/{id}/logs?lines=N`: the instance's last log lines, embedded
/// and in a container alike.
/// With `format=text`, a file to download (`<id>.log`).
pub async fn logs(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Response> {
    let lines = state.instances.logs(&connector, &id, query.lines).await?;
    Ok(super::logs::answer(lines, query.format.as_deref(), &id))
}

/// `GET /api/instances/{connector}/{id}/logs/stream?lines=N`: the last lines, then every new
/// one, as server-sent `log` events.
pub async fn log_stream(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Response> {
    let lines = state.instances.follow_logs(&connector, &id, query.lines).await?;
    Ok(super::logs::events(lines))
}

/// `POST /api/instances/{connector}/{id}/start`
pub async fn start(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<InstanceView>> {
    Ok(Json(state.instances.start(&connector, &id).await?))
}

/// `POST /api/instances/{connector}/{id}/stop`
pub async fn stop(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<InstanceView>> {
    Ok(Json(state.instances.stop(&connector, &id).await?))
}

/// `POST /api/instances/{connector}/{id}/restart`
pub async fn restart(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<InstanceView>> {
    Ok(Json(state.instances.restart(&connector, &id).await?))
}

/// `POST /api/instances/{connector}/{id}/plugin` with the `.wasm` as the body.
pub async fn upload_plugin(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<PluginSwitch>> {
    if body.is_empty() {
        return Err(AppError::BadRequest("the body must be the plugin's .wasm".into()));
    }
    Ok(Json(state.instances.upload_plugin(&connector, &id, body.to_vec()).await?))
}

/// `GET /api/instances/{connector}/{id}/plugin`: the pinned plugin, the previous one, and the
/// history of changes, newest first.
pub async fn plugin_history(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<PluginHistory>> {
    Ok(Json(state.instances.plugin_history(&connector, &id).await?))
}

/// `POST /api/integrations/{name}/plugin` with the `.wasm` as the body: swap every instance of
/// the connector to it, one by one, stopping at the first rejection.
pub async fn update_all(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<UpdateAll>> {
    if body.is_empty() {
        return Err(AppError::BadRequest("the body must be the plugin's .wasm".into()));
    }
    Ok(Json(state.instances.update_all(&name, body.to_vec()).await?))
}

/// `POST /api/integrations/{name}/rebuild`: a container connector's image built again from its
/// folder, and its running instances recreated from it one by one, each online before the
/// next; stops at the first that does not come back.
pub async fn rebuild_all(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Rebuilt>> {
    Ok(Json(state.instances.rebuild_all(&name).await?))
}

/// `POST /api/instances/{connector}/{id}/plugin/rollback`
pub async fn rollback_plugin(
    State(state): State<AppState>,
    Path((connector, id)): Path<(String, String)>,
) -> Result<Json<PluginSwitch>> {
    Ok(Json(state.instances.rollback_plugin(&connector, &id).await?))
}

/// `GET /api/devices`: every configured device with its live state.
pub async fn devices(State(state): State<AppState>) -> Result<Json<Vec<DeviceView>>> {
    Ok(Json(devices::list(&state.instances, &state.mqtt).await?))
}

/// `POST /api/devices/{instance}/{device}/command {"values","timeout"?}`: the device's response
/// (200 whatever its status), or 504 when none came in time.
pub async fn command(
    State(state): State<AppState>,
    Path((instance, device)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let body = json_body(&body)?;
    let values = match body.get("values") {
        Some(Value::Object(values)) => values.clone(),
        Some(_) => return Err(AppError::invalid("values", "must be an object")),
        None => return Err(AppError::invalid("values", "is required")),
    };
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => Duration::from_secs(10),
        Some(v) => v
            .as_u64()
            .filter(|ms| (1..=300_000).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| AppError::invalid("timeout", "must be 1 to 300000 milliseconds"))?,
    };
    match devices::command(&state.instances, &state.mqtt, &instance, &device, values, timeout).await {
        Ok(response) => Ok(Json(response)),
        Err(e @ CommandError::UnknownDevice { .. }) => Err(AppError::NotFound(e.to_string())),
        Err(e @ CommandError::Timeout(_)) => Err(AppError::Timeout(e.to_string())),
        Err(CommandError::Instances(e)) => Err(e.into()),
    }
}
