//! The connector catalog and its setup tools.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::AppError;
use super::{AppState, json_body};
use crate::catalog::{CatalogError, Connector, Listed, Summary};

type Result<T> = std::result::Result<T, AppError>;

/// `GET /api/integrations`: every connector, a broken one with the reason instead of its setup.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Listed>>> {
    Ok(Json(state.instances.integrations().await?))
}

/// `GET /api/integrations/{name}/meta`: the manifest, the validated setup, branding and icon.
pub async fn meta(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>> {
    let connector = connector(&state, &name).await?;
    let counts = state.instances.counts().await?;
    let mut body = json!(Summary::of(&connector, counts.get(&name).copied().unwrap_or(0)));
    body["manifest"] = json!(connector.manifest);
    body["setup"] = json!(connector.setup);
    Ok(Json(body))
}

/// `GET /api/integrations/{name}/setup`: the validated `setup.json`.
pub async fn setup(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>> {
    let connector = connector(&state, &name).await?;
    let setup = connector.setup.ok_or_else(|| AppError::NotFound(format!("connector \"{name}\" has no setup.json")))?;
    Ok(Json(json!(setup)))
}

/// `GET /api/integrations/{name}/icon`
pub async fn icon(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    let connector = connector(&state, &name).await?;
    let file = connector.icon_file();
    let path = connector.dir.join(&file);
    let inside = path.canonicalize().ok().zip(connector.dir.canonicalize().ok()).is_some_and(|(p, d)| p.starts_with(d));
    let bytes = match inside {
        true => tokio::fs::read(&path).await.ok(),
        false => None,
    };
    let bytes = bytes.ok_or_else(|| AppError::NotFound(format!("connector \"{name}\" has no icon {file}")))?;
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    };
    let headers = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "private, max-age=300"),
        // An SVG opened on its own runs no script and loads nothing.
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; sandbox"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, bytes).into_response())
}

/// `POST /api/integrations/{name}/tools/execute {"tool", "input"}` →
/// `{"ok": true, "result"}` or `{"ok": false, "error": {"code", "message", "retriable"}}`.
pub async fn execute(State(state): State<AppState>, Path(name): Path<String>, body: Bytes) -> Result<Json<Value>> {
    let body = json_body(&body)?;
    let tool = match body.get("tool") {
        Some(Value::String(tool)) if !tool.is_empty() => tool.clone(),
        Some(_) => return Err(AppError::BadRequest("\"tool\" must be a tool's name".into())),
        None => {
            return Err(AppError::BadRequest("the body needs \"tool\": the name of a tool of this connector".into()));
        }
    };
    let input = match body.get("input") {
        None | Some(Value::Null) => json!({}),
        Some(input @ Value::Object(_)) => input.clone(),
        Some(_) => return Err(AppError::BadRequest("\"input\" must be a JSON object".into())),
    };
    let connector = connector(&state, &name).await?;
    let outcome = state
        .tools
        .execute(state.instances.catalog(), &connector, &tool, input)
        .await
        .map_err(|e| AppError::NotFound(e.to_string()))?;
    Ok(Json(match outcome {
        Ok(result) => json!({"ok": true, "result": result}),
        Err(error) => json!({"ok": false, "error": error}),
    }))
}

async fn connector(state: &AppState, name: &str) -> Result<Connector> {
    let catalog = state.instances.catalog().clone();
    let name = name.to_string();
    let found = tokio::task::spawn_blocking(move || catalog.get(&name)).await.map_err(AppError::internal)?;
    found.map_err(|e| match e {
        CatalogError::Unknown(_) => AppError::NotFound(e.to_string()),
        CatalogError::Invalid { .. } => AppError::Invalid { field: None, message: e.to_string() },
    })
}
