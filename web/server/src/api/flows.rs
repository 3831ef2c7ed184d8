//! Setup flow sessions, and the return from OAuth providers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::error::AppError;
use super::{AppState, json_body};
use crate::flows::SessionView;

type Result<T> = std::result::Result<T, AppError>;

/// `POST /api/flows {"integration", "flow"?}` → 201 with the session and its first step.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<SessionView>)> {
    let body = json_body(&body)?;
    let integration = match body.get("integration") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(AppError::invalid("integration", "is required: the connector to set up")),
    };
    let flow = match body.get("flow") {
        None | Some(Value::Null) => None,
        Some(Value::String(flow)) => Some(flow.as_str()),
        Some(_) => return Err(AppError::invalid("flow", "must be a flow's id")),
    };
    let session = state.flows.start(&state.instances, &integration, flow, &origin(&headers)).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `GET /api/flows/{id}`
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionView>> {
    Ok(Json(state.flows.get(&id).await?))
}

/// `POST /api/flows/{id}/step`: `{"values"}` for a form, `{"selection"}` for a select, `{}` otherwise.
pub async fn step(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SessionView>> {
    let input = json_body(&body)?;
    Ok(Json(state.flows.step(&state.instances, &id, &input, &origin(&headers)).await?))
}

/// `POST /api/flows/{id}/action {"action", "flow"?}`
pub async fn action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SessionView>> {
    let body = json_body(&body)?;
    let Some(action) = body.get("action").and_then(Value::as_str) else {
        return Err(AppError::invalid(
            "action",
            "is required: goto_flow, open_url, reset_flow, rerun_step or add_device",
        ));
    };
    let flow = body.get("flow").and_then(Value::as_str);
    Ok(Json(state.flows.action(&state.instances, &id, action, flow, &origin(&headers)).await?))
}

/// `DELETE /api/flows/{id}`
pub async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    state.flows.cancel(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an OAuth provider sends the browser back with.
#[derive(Debug, Deserialize)]
pub struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /api/oauth/callback?state&code` (public: the unguessable `state` is the credential).
pub async fn oauth_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<Callback>,
) -> Response {
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty()) else {
        return page("The provider sent no state back; start the step again.", None);
    };
    let outcome = state
        .flows
        .oauth_callback(
            &state.instances,
            &oauth_state,
            query.code.as_deref(),
            query.error.as_deref(),
            &origin(&headers),
        )
        .await;
    match (outcome.ok, outcome.session) {
        // Back to the wizard, which shows the next step (or the new instance).
        (true, Some(id)) => Redirect::to(&format!("/flows/{}", crate::ui::encode(&id))).into_response(),
        (_, session) => page(&outcome.message, session.as_deref()),
    }
}

/// Why the return from the provider did not work, as a page of the UI with a way back to the
/// setup when it is still there.
fn page(message: &str, session: Option<&str>) -> Response {
    let t = crate::ui::i18n::english();
    let page = crate::ui::views::ErrorPage {
        chrome: crate::ui::views::Chrome::public(t),
        message: message.to_string(),
        back: session.map(|id| (format!("/flows/{}", crate::ui::encode(id)), t.errors.back_to_setup.clone())),
    };
    let html = askama::Template::render(&page).unwrap_or_else(|_| message.to_string());
    let headers =
        [(header::CACHE_CONTROL, "no-store"), (header::CONTENT_SECURITY_POLICY, crate::ui::CONTENT_SECURITY_POLICY)];
    (StatusCode::BAD_REQUEST, headers, Html(html)).into_response()
}

/// This server as the browser reached it: `X-Forwarded-Proto` (behind a proxy) or http, and
/// the Host header.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}")
}
