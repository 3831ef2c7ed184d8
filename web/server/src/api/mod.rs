//! The HTTP API. Routes are declared in one table ([`routes`]) that says which are public, so
//! the router is built from it and a test can walk every route and check the protected ones
//! refuse requests without credentials.

mod auth;
pub(crate) use auth::client_address;
mod docker;
pub mod error;
mod flows;
mod instances;
mod integrations;
mod logs;
pub(crate) mod mqtt;
mod system;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::Value;

use self::error::AppError;
use crate::auth::{Auth, COOKIE};
use crate::flows::Flows;
use crate::instances::{Instances, MAX_PLUGIN_BYTES};
use crate::mqtt::MqttService;
use crate::runtime::docker::DockerRuntime;
use crate::store::settings::SettingsFile;
use crate::tools::ToolRunner;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

/// The services behind [`AppState`].
#[allow(missing_debug_implementations)]
pub struct Shared {
    /// Who may use the API.
    pub auth: Auth,
    /// Instances and their runtime.
    pub instances: Instances,
    /// The MQTT client.
    pub mqtt: MqttService,
    /// Setup tools.
    pub tools: Arc<ToolRunner>,
    /// Setup flow sessions.
    pub flows: Flows,
    /// The `.env` file.
    pub settings: SettingsFile,
    /// The Docker engine, when it answers (for the container API).
    pub docker: Option<Arc<DockerRuntime>>,
    /// The embedded broker's plain listener, for our own clients, when it runs (it runs when
    /// `serve` starts without `MQTT_HOST`, and keeps running if a broker is set later).
    pub embedded_broker: Option<(String, u16)>,
    /// The embedded broker's accounts (none with an external broker).
    pub broker_accounts: Option<Arc<crate::mqtt_accounts::BrokerAccounts>>,
    /// The names this server answers to (see [`crate::guard`]).
    pub hosts: crate::guard::HostNames,
    /// The recent lines of the orchestrator's own log and of embedded instances.
    pub logs: iot2mqtt_runtime::logging::InstanceLogs,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("runtime", &self.instances.runtime_name()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("access", &self.access)
            .finish()
    }
}

impl AppState {
    /// Wrap the services.
    pub fn new(shared: Shared) -> Self {
        Self { inner: Arc::new(shared) }
    }

    /// Whether `serve` and its instances use the embedded broker now (the settings in effect
    /// name its address), not one set since.
    pub fn uses_embedded_broker(&self) -> bool {
        self.embedded_broker.as_ref().is_some_and(|(host, port)| self.mqtt.uses_broker_at(host, *port))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, login, setup status, the static page, the OAuth return, whose
    /// unguessable `state` is its credential).
    Public,
    /// A session (Bearer token or cookie).
    Session,
    /// The one-time setup token in the body (setting the first access key).
    SetupToken,
}

/// One route of the API.
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path, axum syntax (`/api/instances/{connector}/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    handler: MethodRouter<AppState>,
}

fn route(method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>) -> Route {
    Route { method, path, access, handler }
}

/// Every route.
pub fn routes() -> Vec<Route> {
    use Access::{Public, Session, SetupToken};
    vec![
        route(Method::GET, "/api/health", Public, get(system::health)),
        route(Method::GET, "/api/setup/status", Public, get(auth::setup_status)),
        route(Method::POST, "/api/setup", SetupToken, post(auth::setup)),
        route(Method::POST, "/api/auth/login", Public, post(auth::login)),
        route(Method::POST, "/api/auth/logout", Session, post(auth::logout)),
        route(Method::POST, "/api/auth/logout-everywhere", Session, post(auth::logout_everywhere)),
        route(Method::POST, "/api/auth/key", Session, post(auth::change_key)),
        route(Method::GET, "/api/mqtt/config", Session, get(mqtt::get_config)),
        route(Method::POST, "/api/mqtt/config", Session, post(mqtt::set_config)),
        route(Method::POST, "/api/mqtt/test", Session, post(mqtt::test_config)),
        route(Method::GET, "/api/mqtt/accounts", Session, get(mqtt::accounts)),
        route(Method::POST, "/api/mqtt/accounts", Session, post(mqtt::add_account)),
        route(Method::DELETE, "/api/mqtt/accounts/{name}", Session, delete(mqtt::remove_account)),
        route(Method::GET, "/api/connectors", Session, get(instances::connectors)),
        route(Method::GET, "/api/integrations", Session, get(integrations::list)),
        route(Method::GET, "/api/integrations/{name}/meta", Session, get(integrations::meta)),
        route(Method::GET, "/api/integrations/{name}/setup", Session, get(integrations::setup)),
        route(Method::GET, "/api/integrations/{name}/icon", Session, get(integrations::icon)),
        route(Method::POST, "/api/integrations/{name}/tools/execute", Session, post(integrations::execute)),
        route(Method::POST, "/api/flows", Session, post(flows::start)),
        route(Method::GET, "/api/flows/{id}", Session, get(flows::get)),
        route(Method::DELETE, "/api/flows/{id}", Session, delete(flows::cancel)),
        route(Method::POST, "/api/flows/{id}/step", Session, post(flows::step)),
        route(Method::POST, "/api/flows/{id}/action", Session, post(flows::action)),
        route(Method::GET, "/api/oauth/callback", Public, get(flows::oauth_callback)),
        route(Method::GET, "/api/instances", Session, get(instances::list)),
        route(Method::POST, "/api/instances", Session, post(instances::create)),
        route(Method::GET, "/api/instances/{connector}/{id}", Session, get(instances::get_one)),
        route(Method::PUT, "/api/instances/{connector}/{id}", Session, put(instances::update)),
        route(Method::DELETE, "/api/instances/{connector}/{id}", Session, delete(instances::remove)),
        route(Method::GET, "/api/instances/{connector}/{id}/logs", Session, get(instances::logs)),
        route(Method::GET, "/api/instances/{connector}/{id}/logs/stream", Session, get(instances::log_stream)),
        route(Method::GET, "/api/logs", Session, get(logs::own)),
        route(Method::GET, "/api/logs/stream", Session, get(logs::own_stream)),
        route(Method::POST, "/api/instances/{connector}/{id}/start", Session, post(instances::start)),
        route(Method::POST, "/api/instances/{connector}/{id}/stop", Session, post(instances::stop)),
        route(Method::POST, "/api/instances/{connector}/{id}/restart", Session, post(instances::restart)),
        route(
            Method::POST,
            "/api/instances/{connector}/{id}/plugin",
            Session,
            post(instances::upload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES + 1)),
        ),
        route(Method::GET, "/api/instances/{connector}/{id}/plugin", Session, get(instances::plugin_history)),
        route(
            Method::POST,
            "/api/integrations/{name}/plugin",
            Session,
            post(instances::update_all).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES + 1)),
        ),
        route(Method::POST, "/api/integrations/{name}/rebuild", Session, post(instances::rebuild_all)),
        route(
            Method::POST,
            "/api/instances/{connector}/{id}/plugin/rollback",
            Session,
            post(instances::rollback_plugin),
        ),
        route(Method::GET, "/api/devices", Session, get(instances::devices)),
        route(Method::POST, "/api/devices/{instance}/{device}/command", Session, post(instances::command)),
        route(Method::GET, "/api/mqtt/topics", Session, get(mqtt::topics)),
        route(Method::POST, "/api/mqtt/publish", Session, post(mqtt::publish)),
        route(Method::GET, "/api/mqtt/stream", Session, get(mqtt::stream)),
        route(Method::DELETE, "/api/mqtt/retained/{instance}", Session, delete(mqtt::clear_retained)),
        route(Method::GET, "/api/docker/containers", Session, get(docker::list)),
        route(Method::POST, "/api/docker/containers/{id}/start", Session, post(docker::start)),
        route(Method::POST, "/api/docker/containers/{id}/stop", Session, post(docker::stop)),
        route(Method::POST, "/api/docker/containers/{id}/restart", Session, post(docker::restart)),
        route(Method::DELETE, "/api/docker/containers/{id}", Session, delete(docker::remove)),
        route(Method::GET, "/api/docker/containers/{id}/logs", Session, get(docker::logs)),
        route(Method::GET, "/api/docker/containers/{id}/logs/stream", Session, get(docker::log_stream)),
    ]
}

/// The application: every route, with authentication where the table says.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        let handler = match route.access {
            Access::Session => {
                route.handler.route_layer(middleware::from_fn_with_state(state.clone(), require_session))
            }
            Access::Public | Access::SetupToken => route.handler,
        };
        router = router.route(route.path, handler);
    }
    let router = router.merge(crate::ui::router()).fallback(not_found);
    trace::layer(router.layer(middleware::from_fn_with_state(state.clone(), guard)).with_state(state))
}

/// Hold every request to [`crate::guard::check`]: a JSON error for the API, a page otherwise.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match crate::guard::check(&state.hosts, request.method(), request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), path = request.uri().path(), "refused: {refusal}");
            if request.uri().path().starts_with("/api/") {
                AppError::from(refusal).into_response()
            } else {
                crate::ui::refused(&refusal)
            }
        }
    }
}

async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

/// Let the request through only with a live session. A change made with the session cookie
/// (rather than a Bearer token, which a page of another site cannot send) must also carry the
/// session's anti-forgery token in `x-csrf-token`.
async fn require_session(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, AppError> {
    let Some((token, source)) = credential(request.headers()) else {
        return Err(AppError::Unauthorized("log in first: POST /api/auth/login".into()));
    };
    if !state.auth.verify(&token) {
        return Err(AppError::Unauthorized("the session is invalid or expired; log in again".into()));
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if source == Source::Cookie && changes {
        let csrf = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !state.auth.csrf_valid(&token, csrf) {
            return Err(AppError::Forbidden(format!(
                "a change made with the session cookie needs the session's anti-forgery token in {CSRF_HEADER}"
            )));
        }
    }
    Ok(next.run(request).await)
}

/// The header that carries the anti-forgery token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Where a request's session token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bearer,
    Cookie,
}

/// The session token of a request: `Authorization: Bearer …` or the session cookie.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    credential(headers).map(|(token, _)| token)
}

fn credential(headers: &HeaderMap) -> Option<(String, Source)> {
    if let Some(bearer) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((bearer.trim().to_string(), Source::Bearer));
    }
    cookie(headers, COOKIE).map(|value| (value, Source::Cookie))
}

/// The value of cookie `name` in a request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_string())
}

/// A JSON body, with a clear 400 when it is not JSON.
pub(crate) fn json_body(bytes: &Bytes) -> Result<Value, AppError> {
    if bytes.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| AppError::BadRequest(format!("the body is not valid JSON: {e}")))
}
