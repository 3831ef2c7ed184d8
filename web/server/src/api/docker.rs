//! Connector containers: list, start, stop, restart, remove, logs. Every operation refuses a
//! container without the connector label.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::AppError;
use crate::runtime::LogLine;
use crate::runtime::docker::{ContainerAction, ContainerView, DockerRuntime};

type Result<T> = std::result::Result<T, AppError>;

fn docker(state: &AppState) -> Result<Arc<DockerRuntime>> {
    state.docker.clone().ok_or_else(|| AppError::Unavailable("Docker is not available on this machine".into()))
}

async fn connector_container(state: &AppState, id: &str) -> Result<(Arc<DockerRuntime>, ContainerView)> {
    let docker = docker(state)?;
    let container = docker
        .connector_container(id)
        .await
        .ok_or_else(|| AppError::NotFound(format!("no iot2mqtt connector container \"{id}\"")))?;
    Ok((docker, container))
}

/// `GET /api/docker/containers`
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ContainerView>>> {
    Ok(Json(docker(&state)?.list().await.map_err(|e| AppError::Unavailable(e.to_string()))?))
}

async fn act(state: &AppState, id: &str, action: ContainerAction) -> Result<Json<Value>> {
    let (docker, container) = connector_container(state, id).await?;
    docker.act(&container.id, action).await.map_err(|e| AppError::Unavailable(e.to_string()))?;
    Ok(Json(json!({"id": container.id, "name": container.name, "done": format!("{action:?}").to_lowercase()})))
}

/// `POST /api/docker/containers/{id}/start`
pub async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    act(&state, &id, ContainerAction::Start).await
}

/// `POST /api/docker/containers/{id}/stop`
pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    act(&state, &id, ContainerAction::Stop).await
}

/// `POST /api/docker/containers/{id}/restart`
pub async fn restart(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    act(&state, &id, ContainerAction::Restart).await
}

/// Query of `DELETE /api/docker/containers/{id}`.
#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /api/docker/containers/{id}?force=`
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<StatusCode> {
    let _done = act(&state, &id, ContainerAction::Remove { force: query.force }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the log routes.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    #[serde(default = "default_lines")]
    lines: usize,
}

fn default_lines() -> usize {
    100
}

/// `GET /api/docker/containers/{id}/logs?lines=N`: the last lines, each with a level.
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<Vec<LogLine>>> {
    let (docker, container) = connector_container(&state, &id).await?;
    let lines: Vec<LogLine> = docker.logs(&container.id, query.lines.min(10_000), false).collect().await;
    Ok(Json(lines))
}

/// `GET /api/docker/containers/{id}/logs/stream`: the last lines, then new ones (Server-Sent Events).
pub async fn log_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let (docker, container) = connector_container(&state, &id).await?;
    let lines = docker
        .logs(&container.id, query.lines.min(10_000), true)
        .map(|line| Ok(Event::default().event("log").json_data(&line).unwrap_or_default()));
    Ok(Sse::new(lines).keep_alive(KeepAlive::default()))
}
