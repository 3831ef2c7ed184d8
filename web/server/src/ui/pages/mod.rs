//! The page handlers: read the request, call the same services as the JSON API, build the
//! page's view model, render it. Form posts check the session's anti-forgery token first and
//! answer with a redirect (post, redirect, get), so a reload never posts twice. A form sent
//! back with errors beside its fields is a page like any other (200): the JSON API is where
//! statuses carry the outcome.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

mod containers;
mod devices;
mod edit;
mod explorer;
mod logs;
mod plugins;
mod settings;
mod wizard;

pub use containers::{container_action, containers};
pub use devices::{device_command, device_refresh, devices};
pub use edit::{edit_instance, save_instance};
pub use explorer::{clear_retained, explorer, publish};
pub use logs::{instance_log, own_log};
pub use plugins::{connector, rebuild_all, rollback_plugin, update_all, upload_plugin};
pub use settings::{add_account, broker, change_key, logout_everywhere, remove_account, settings};
pub use wizard::{add_integration, wizard, wizard_action, wizard_cancel, wizard_step};

use super::i18n::{self, Text};
use super::session::{PageSession, encode, local_path, session_of};
use super::views::devices::Notice;
use super::views::plugins::PluginPanel;
use super::views::{
    BusView, Chrome, DashboardPage, ErrorPage, InstanceExtras, InstancePage, InstancesPage, IntegrationsPage,
    LoginPage, SetupPage,
};
use crate::api::AppState;
use crate::auth::{AuthError, COOKIE, MIN_KEY_LENGTH, SESSION_LIFETIME};
use crate::guard::Refusal;

/// The words of the request being answered, in the person's language.
fn t() -> &'static Text {
    i18n::current()
}

/// Render a page; a template that fails to render is a bug, logged, and a plain 500.
fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("a page failed to render: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the server log").into_response()
        }
    }
}

/// An error page with `status`.
fn error_page(status: StatusCode, chrome: Chrome, message: String) -> Response {
    (status, render(&ErrorPage { chrome, message, back: None })).into_response()
}

/// What `GET /` may carry: the one-time setup token of the link `serve` prints.
#[derive(Debug, Deserialize)]
pub struct RootQuery {
    setup: Option<String>,
}

/// `GET /`: the first-start page when the setup link is opened, else the dashboard.
pub async fn root(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<RootQuery>) -> Response {
    if let Some(token) = query.setup.filter(|_| !state.auth.configured()) {
        return render(&SetupPage::blank(token));
    }
    match session_of(&state, &headers, "/") {
        Ok(session) => dashboard(state, session).await,
        Err(redirect) => redirect.into_response(),
    }
}

/// What MQTT says of the instances, for a page: `cached` holds the topics the page reads.
fn bus_view<'a>(state: &AppState, base: &'a str, cached: &'a [crate::mqtt::Cached]) -> BusView<'a> {
    BusView { base, connected: state.mqtt.connected(), embedded: state.uses_embedded_broker(), cached }
}

async fn dashboard(state: AppState, session: PageSession) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "dashboard");
    let instances = match state.instances.list().await {
        Ok(list) => list,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    };
    let base = state.mqtt.settings().base_topic;
    let cached = state.mqtt.topics(&format!("{base}/v1/instances/"));
    let bus = bus_view(&state, &base, &cached);
    render(&DashboardPage::build(chrome, state.instances.runtime_name(), &instances, &bus))
}

impl SetupPage {
    fn blank(token: String) -> Self {
        Self { chrome: Chrome::public(t()), token, error: None, key_error: None, confirm_error: None }
    }
}

/// `GET /setup?token=…`: the first-start page.
pub async fn setup_page(Query(query): Query<SetupForm>) -> Response {
    render(&SetupPage::blank(query.token))
}

/// The first-start form.
#[derive(Debug, Default, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    confirm: String,
}

/// The page for a request the guard refused (see `crate::guard`).
pub fn refused(refusal: &Refusal) -> Response {
    let (status, message) = match refusal {
        Refusal::CrossSite(_) => (StatusCode::FORBIDDEN, t().errors.cross_site.clone()),
        Refusal::UnknownHost(_) => (StatusCode::MISDIRECTED_REQUEST, refusal.to_string()),
        Refusal::WrongType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, refusal.to_string()),
    };
    error_page(status, Chrome::public(t()), message)
}

/// `POST /setup`: set the access key with the one-time token.
pub async fn setup(State(state): State<AppState>, Form(form): Form<SetupForm>) -> Response {
    let mut page = SetupPage::blank(form.token.clone());
    if form.key.chars().count() < MIN_KEY_LENGTH {
        page.key_error = Some(AuthError::WeakKey.to_string());
    } else if form.key != form.confirm {
        page.confirm_error = Some(t().setup.mismatch.clone());
    }
    if page.key_error.is_some() || page.confirm_error.is_some() {
        return render(&page);
    }
    let auth = state.clone();
    let result = tokio::task::spawn_blocking(move || auth.auth.setup(&form.token, &form.key)).await;
    match result {
        Ok(Ok(())) => Redirect::to("/login?done=1").into_response(),
        Ok(Err(e)) => {
            page.error = Some(e.to_string());
            render(&page)
        }
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, Chrome::public(t()), e.to_string()),
    }
}

/// What the login page may be opened with.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    expired: Option<String>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    everywhere: Option<String>,
}

/// `GET /login`
pub async fn login_page(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let t = t();
    let notice = if !state.auth.configured() {
        Some(t.login.not_configured.clone())
    } else if query.done.is_some() {
        Some(t.setup.done.clone())
    } else if query.expired.is_some() {
        Some(t.login.expired.clone())
    } else if query.everywhere.is_some() {
        Some(t.login.everywhere.clone())
    } else {
        None
    };
    let next = local_path(&query.next).to_string();
    render(&LoginPage { chrome: Chrome::public(t), next, notice, error: None })
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: check the key, set the session cookie, go where the person was going.
pub async fn login(
    State(state): State<AppState>,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = crate::api::client_address(connect);
    let next = local_path(&form.next).to_string();
    let session = match state.auth.login(client, &form.key).await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(%client, "failed login: {e}");
            let page = LoginPage { chrome: Chrome::public(t()), next, notice: None, error: Some(e.to_string()) };
            return render(&page);
        }
    };
    with_cookie(Redirect::to(&next).into_response(), &session_cookie(&session.token, &headers))
}

/// The cookie that carries session `token`.
fn session_cookie(token: &str, headers: &HeaderMap) -> String {
    let secure = if served_over_tls(headers) { "; Secure" } else { "" };
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_LIFETIME.as_secs())
}

/// The cookie that ends the session in this browser.
fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// `response` setting `cookie`.
fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so).
fn served_over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A form that only carries the anti-forgery token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A posted form: its fields, each with every value it was sent with (a multi-select sends
/// `selection` several times), the anti-forgery token apart.
fn fields_of(pairs: Vec<(String, String)>) -> (String, super::Submitted) {
    let mut csrf = String::new();
    let mut fields = super::Submitted::new();
    for (key, value) in pairs {
        if key == "csrf" {
            csrf = value;
        } else {
            fields.entry(key).or_default().push(value);
        }
    }
    (csrf, fields)
}

/// Refuse a form post whose anti-forgery token does not belong to the session.
fn forged(state: &AppState, session: &PageSession, csrf: &str) -> Option<Response> {
    (!state.auth.csrf_valid(&session.token, csrf)).then(|| {
        tracing::warn!("a form post without the session's anti-forgery token was refused");
        error_page(StatusCode::FORBIDDEN, Chrome::page(t(), &session.csrf, ""), t().errors.forged.clone())
    })
}

/// `POST /logout`
pub async fn logout(State(state): State<AppState>, session: PageSession, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    if let Err(e) = state.auth.logout(&session.token) {
        tracing::error!("the logout could not be stored: {e}");
    }
    with_cookie(Redirect::to("/login").into_response(), &cleared_cookie())
}

/// The catalog's search.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// `GET /integrations?q=…`
pub async fn integrations(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<SearchQuery>,
) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "integrations");
    match state.instances.integrations().await {
        Ok(listed) => render(&IntegrationsPage::build(chrome, listed, &query.q, state.instances.runtime_name())),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    }
}

/// What the instances page may be opened with.
#[derive(Debug, Deserialize)]
pub struct InstancesQuery {
    #[serde(default)]
    deleted: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// `GET /instances`
pub async fn instances(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<InstancesQuery>,
) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "instances");
    match state.instances.list().await {
        Ok(list) => {
            let notice = match (query.deleted, query.created) {
                (Some(_), _) => Some(t.instances.deleted.clone()),
                (None, Some(_)) => Some(t.wizard.created.clone()),
                (None, None) => None,
            };
            render(&InstancesPage::build(chrome, &state.mqtt.settings().base_topic, &list, notice))
        }
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    }
}

/// What an instance's page may be opened with.
#[derive(Debug, Deserialize)]
pub struct InstanceQuery {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    ok: Option<String>,
    #[serde(default)]
    failed: Option<String>,
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /instances/{connector}/{id}`: one instance with its devices, settings and errors.
pub async fn instance(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
    Query(query): Query<InstanceQuery>,
) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "instances");
    let view = match state.instances.get(&connector, &id).await {
        Ok(view) => view,
        Err(e) => {
            let message = e.to_string();
            return error_page(crate::api::error::AppError::from(e).status(), chrome, message);
        }
    };
    let devices = match crate::devices::list(&state.instances, &state.mqtt).await {
        Ok(devices) => devices,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    };
    let base = state.mqtt.settings().base_topic;
    let cached = state.mqtt.topics(&format!("{base}/v1/instances/{id}/"));
    let bus = bus_view(&state, &base, &cached);
    let created = query.created.map(|_| t.wizard.created.clone());
    let saved = query.saved.map(|_| t.instance.saved.clone());
    let notice = Notice::from_outcome(query.ok.or(created).or(saved), query.failed);
    let found = state.instances.catalog().get(&connector).ok();
    let has_plugin = found.as_ref().is_some_and(crate::catalog::Connector::has_plugin);
    let secret_fields = found.map(|c| c.secret_fields);
    let log = state.instances.logs(&connector, &id, crate::runtime::LOG_TAIL).await.unwrap_or_default();
    // A container connector without a plugin has nothing to upload: its folder is its version.
    let plugins = match has_plugin {
        true => state.instances.plugin_history(&connector, &id).await.ok(),
        false => None,
    }
    .map(|history| PluginPanel::build(t, &connector, &id, &history));
    let extras = InstanceExtras { secret_fields: secret_fields.as_ref(), log, plugins };
    render(&InstancePage::build(chrome, &view, &devices, &bus, notice, extras))
}

/// An instance's button: the anti-forgery token and the page to come back to.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

/// `POST /instances/{connector}/{id}/{action}`: start, stop, restart or delete; back to the
/// page the button was on (the list when it does not say).
pub async fn instance_action(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id, action)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let instances = &state.instances;
    let back = match local_path(&form.back) {
        "/" => format!("/instances#instance-{}", encode(&id)),
        page => page.to_string(),
    };
    let done = match action.as_str() {
        "start" => instances.start(&connector, &id).await.map(|_| back),
        "stop" => instances.stop(&connector, &id).await.map(|_| back),
        "restart" => instances.restart(&connector, &id).await.map(|_| back),
        "delete" => instances.delete(&connector, &id).await.map(|()| "/instances?deleted=1".to_string()),
        _ => {
            let chrome = Chrome::page(t(), &session.csrf, "instances");
            return error_page(StatusCode::NOT_FOUND, chrome, t().errors.not_found.clone());
        }
    };
    match done {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => {
            let chrome = Chrome::page(t(), &session.csrf, "instances");
            let message = e.to_string();
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// Where the browser reached this server, for OAuth redirects (`http://host:port`).
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = if served_over_tls(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}
