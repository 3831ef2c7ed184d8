//! Login, logout and the first setup of the access key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::AppError;
use super::{AppState, json_body, session_token};
use crate::auth::{AuthError, COOKIE, SESSION_LIFETIME, Session};

/// `GET /api/setup/status` (public): whether an access key is set.
pub async fn setup_status(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"configured": state.auth.configured()}))
}

/// `POST /api/setup {"token","key"}`: set the first access key with the one-time token.
pub async fn setup(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, AppError> {
    let body = json_body(&body)?;
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let key = body["key"].as_str().unwrap_or_default().to_string();
    if token.is_empty() {
        return Err(AppError::Unauthorized("the one-time setup token is required".into()));
    }
    let app = state.clone();
    let result = tokio::task::spawn_blocking(move || app.auth.setup(&token, &key)).await.map_err(AppError::internal)?;
    result.map_err(auth_error)?;
    tracing::info!("the access key was set");
    Ok(Json(json!({"configured": true})))
}

/// `POST /api/auth/login {"key"}` (public) → `{"token","expires_in"}` and the session cookie.
pub async fn login(
    State(state): State<AppState>,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Result<Response, AppError> {
    let body = json_body(&body)?;
    let Some(key) = body.get("key").and_then(Value::as_str).map(str::to_string) else {
        return Err(AppError::invalid("key", "is required"));
    };
    let client = client_address(connect);
    let session = state.auth.login(client, &key).await.map_err(|e| {
        tracing::warn!(%client, "failed login: {e}");
        auth_error(e)
    })?;
    Ok(with_session(&session))
}

/// `POST /api/auth/logout`: end the session and clear the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(token) = session_token(&headers) {
        state.auth.logout(&token).map_err(auth_error)?;
    }
    Ok(cleared(Json(json!({"logged_out": true})).into_response()))
}

/// `POST /api/auth/logout-everywhere`: end every session, this one included.
pub async fn logout_everywhere(State(state): State<AppState>) -> Result<Response, AppError> {
    state.auth.log_out_everywhere().map_err(auth_error)?;
    tracing::info!("every session was ended");
    Ok(cleared(Json(json!({"logged_out": "everywhere"})).into_response()))
}

/// `POST /api/auth/key {"old_key","new_key"}`: change the access key. Every other session ends;
/// the answer carries the caller's new session (and cookie).
pub async fn change_key(
    State(state): State<AppState>,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Result<Response, AppError> {
    let body = json_body(&body)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let old = field("old_key").ok_or_else(|| AppError::invalid("old_key", "is required"))?;
    let new = field("new_key").ok_or_else(|| AppError::invalid("new_key", "is required"))?;
    let client = client_address(connect);
    let session = state.auth.change_key(client, &old, &new).await.map_err(|e| match e {
        AuthError::WeakKey => AppError::invalid("new_key", e.to_string()),
        AuthError::Invalid => AppError::invalid("old_key", "is not the current access key"),
        other => auth_error(other),
    })?;
    tracing::info!("the access key was changed; every other session ended");
    Ok(with_session(&session))
}

/// The answer to a login: the session as JSON and as the cookie.
fn with_session(session: &Session) -> Response {
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        session.token,
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Json(json!({"token": session.token, "expires_in": session.expires_in})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `response` with the session cookie cleared.
fn cleared(mut response: Response) -> Response {
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The address a request came from (loopback when the server was not told: in-process tests).
pub(crate) fn client_address(connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    connect.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.0.ip())
}

fn auth_error(error: AuthError) -> AppError {
    match error {
        AuthError::Invalid | AuthError::BadSetupToken => AppError::Unauthorized(error.to_string()),
        AuthError::RateLimited(retry_after) => AppError::TooManyRequests { retry_after, message: error.to_string() },
        AuthError::Busy => AppError::TooManyRequests { retry_after: 5, message: error.to_string() },
        AuthError::NotConfigured => AppError::Unavailable(error.to_string()),
        AuthError::WeakKey => AppError::invalid("key", error.to_string()),
        AuthError::Store(_) => AppError::internal(error),
    }
}
