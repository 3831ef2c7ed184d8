//! The page handlers: read the request, call the same services as the JSON API, build the
//! page's view model, render it. Form posts check the session's anti-forgery token first and
//! answer with a redirect (post, redirect, get), so a reload never posts twice. A form sent
//! back with errors beside its fields is a page like any other (200): the JSON API is where
//! statuses carry the outcome.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::i18n::{self, Text};
use super::session::{PageSession, encode, local_path, session_of};
use super::views::{
    BusView, Chrome, DashboardPage, DevicesPage, ErrorPage, InstancesPage, IntegrationsPage, LoginPage, Notice,
    SetupPage, control_value,
};
use super::wizard::{WizardPage, engine_input};
use crate::api::AppState;
use crate::auth::{AuthError, COOKIE, MIN_KEY_LENGTH, SESSION_LIFETIME};

fn t() -> &'static Text {
    i18n::english()
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
    (status, render(&ErrorPage { chrome, message })).into_response()
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

async fn dashboard(state: AppState, session: PageSession) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "dashboard");
    let instances = match state.instances.list().await {
        Ok(list) => list,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    };
    let settings = state.mqtt.settings();
    let cached = state.mqtt.topics(&format!("{}/v1/instances/", settings.base_topic));
    let bus = BusView {
        base: &settings.base_topic,
        connected: state.mqtt.connected(),
        embedded: state.embedded_broker,
        cached: &cached,
    };
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
    let client = connect.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.0.ip());
    let next = local_path(&form.next).to_string();
    let auth = state.clone();
    let key = form.key;
    let session = match tokio::task::spawn_blocking(move || auth.auth.login(client, &key)).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            tracing::warn!(%client, "failed login: {e}");
            let page = LoginPage { chrome: Chrome::public(t()), next, notice: None, error: Some(e.to_string()) };
            return render(&page);
        }
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, Chrome::public(t()), e.to_string()),
    };
    let secure = if served_over_tls(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        session.token,
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
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

/// Refuse a form post whose anti-forgery token does not belong to the session.
fn forged(state: &AppState, session: &PageSession, csrf: &str) -> Option<Response> {
    (!state.auth.csrf_valid(&session.token, csrf)).then(|| {
        tracing::warn!("a form post without the session's anti-forgery token was refused");
        error_page(
            StatusCode::FORBIDDEN,
            Chrome::page(t(), &session.csrf, ""),
            "this form is out of date or did not come from this site; reload the page and try again".into(),
        )
    })
}

/// `POST /logout`
pub async fn logout(State(state): State<AppState>, session: PageSession, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    state.auth.logout(&session.token);
    let mut response = Redirect::to("/login").into_response();
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
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
        Ok(listed) => render(&IntegrationsPage::build(chrome, listed, &query.q)),
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

/// `POST /instances/{connector}/{id}/{action}`: start, stop, restart or delete.
pub async fn instance_action(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id, action)): Path<(String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let instances = &state.instances;
    let done = match action.as_str() {
        "start" => instances.start(&connector, &id).await.map(|_| "/instances".to_string()),
        "stop" => instances.stop(&connector, &id).await.map(|_| "/instances".to_string()),
        "restart" => instances.restart(&connector, &id).await.map(|_| "/instances".to_string()),
        "delete" => instances.delete(&connector, &id).await.map(|()| "/instances?deleted=1".to_string()),
        _ => {
            let chrome = Chrome::page(t(), &session.csrf, "instances");
            return error_page(StatusCode::NOT_FOUND, chrome, t().errors.not_found.clone());
        }
    };
    match done {
        Ok(to) if action == "delete" => Redirect::to(&to).into_response(),
        Ok(to) => Redirect::to(&format!("{to}#instance-{}", encode(&id))).into_response(),
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

/// A form posted to the wizard: its fields in order, each with every value it was sent with
/// (a multi-select sends `selection` several times), the anti-forgery token apart.
fn fields_of(pairs: Vec<(String, String)>) -> (String, std::collections::BTreeMap<String, Vec<String>>) {
    let mut csrf = String::new();
    let mut fields = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (key, value) in pairs {
        if key == "csrf" {
            csrf = value;
        } else {
            fields.entry(key).or_default().push(value);
        }
    }
    (csrf, fields)
}

/// `POST /integrations/{name}/add`: start the connector's setup flow.
pub async fn add_integration(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    match state.flows.start(&state.instances, &name, None, &origin(&headers)).await {
        Ok(view) => Redirect::to(&format!("/flows/{}", encode(&view.id))).into_response(),
        Err(e) => {
            let chrome = Chrome::page(t(), &session.csrf, "integrations");
            let message = format!("{} {e}", t().integrations.setup_failed);
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// Where a finished flow sends the person: the new instance in the list.
fn finished(view: &crate::flows::SessionView) -> Response {
    let id = view.instance.as_ref().and_then(|i| i["instance_id"].as_str()).unwrap_or_default();
    Redirect::to(&format!("/instances?created={}#instance-{}", encode(id), encode(id))).into_response()
}

/// `GET /flows/{id}`: the step the session is on.
pub async fn wizard(State(state): State<AppState>, session: PageSession, Path(id): Path<String>) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "integrations");
    match state.flows.get(&id).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(view) => render(&WizardPage::build(chrome, &view, &Default::default())),
        Err(_) => error_page(StatusCode::NOT_FOUND, chrome, t().wizard.ended.clone()),
    }
}

/// `POST /flows/{id}`: answer the step; a step with errors comes back with what was typed.
pub async fn wizard_step(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (csrf, fields) = fields_of(pairs);
    if let Some(refused) = forged(&state, &session, &csrf) {
        return refused;
    }
    let chrome = Chrome::page(t(), &session.csrf, "integrations");
    let current = match state.flows.get(&id).await {
        Ok(view) => view,
        Err(_) => return error_page(StatusCode::NOT_FOUND, chrome, t().wizard.ended.clone()),
    };
    let input = engine_input(current.step.as_ref(), &fields);
    match state.flows.step(&state.instances, &id, &input, &origin(&headers)).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(view) => {
            let has_errors = view.step.as_ref().and_then(|s| s.page()).is_some_and(|p| !p.errors.is_empty());
            if has_errors {
                render(&WizardPage::build(chrome, &view, &fields))
            } else {
                Redirect::to(&format!("/flows/{}", encode(&id))).into_response()
            }
        }
        Err(e) => {
            let message = e.to_string();
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// An action of a wizard step.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    flow: Option<String>,
}

/// `POST /flows/{id}/action`: go to another flow, start over, run the step again, add a device.
pub async fn wizard_action(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let flow = form.flow.as_deref().filter(|f| !f.is_empty());
    match state.flows.action(&state.instances, &id, &form.action, flow, &origin(&headers)).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(_) => Redirect::to(&format!("/flows/{}", encode(&id))).into_response(),
        Err(e) => {
            let chrome = Chrome::page(t(), &session.csrf, "integrations");
            let message = e.to_string();
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// `POST /flows/{id}/cancel`: forget the session; back to the catalog.
pub async fn wizard_cancel(
    State(state): State<AppState>,
    session: PageSession,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let _ = state.flows.cancel(&id).await;
    Redirect::to("/integrations").into_response()
}

/// What the devices page may be opened with: the outcome of the last command.
#[derive(Debug, Deserialize)]
pub struct DevicesQuery {
    #[serde(default)]
    ok: Option<String>,
    #[serde(default)]
    failed: Option<String>,
}

/// `GET /devices`
pub async fn devices(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<DevicesQuery>,
) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "devices");
    let notice = match (query.ok, query.failed) {
        (_, Some(text)) => Some(Notice { ok: false, text }),
        (Some(text), None) => Some(Notice { ok: true, text }),
        (None, None) => None,
    };
    match crate::devices::list(&state.instances, &state.mqtt).await {
        Ok(list) => render(&DevicesPage::build(chrome, &state.mqtt.settings().base_topic, &list, notice)),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    }
}

/// A control's form.
#[derive(Debug, Deserialize)]
pub struct CommandForm {
    #[serde(default)]
    csrf: String,
    key: String,
    kind: String,
    #[serde(default)]
    value: String,
}

/// `POST /devices/{instance}/{device}/command`: send one value and wait for the device's
/// answer; back to the devices page with the confirmed values or the device's error.
pub async fn device_command(
    State(state): State<AppState>,
    session: PageSession,
    Path((instance, device)): Path<(String, String)>,
    Form(form): Form<CommandForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let t = t();
    let back = |key: &str, text: String| {
        let anchor = format!("device-{instance}-{device}");
        Redirect::to(&format!("/devices?{key}={}#{}", encode(&text), encode(&anchor))).into_response()
    };
    let Some(value) = control_value(&form.kind, &form.value) else {
        return back("failed", format!("{} {}: \"{}\"", t.devices.failed, form.key, form.value));
    };
    let mut values = serde_json::Map::new();
    values.insert(form.key.clone(), value);
    let timeout = std::time::Duration::from_secs(10);
    match crate::devices::command(&state.instances, &state.mqtt, &instance, &device, values, timeout).await {
        Ok(response) if response["status"] == "success" => {
            back("ok", format!("{} {device}: {}", t.devices.confirmed, response["result"]))
        }
        Ok(response) => {
            let error = &response["error"];
            let code = error["code"].as_str().unwrap_or_default();
            let message = error["message"].as_str().unwrap_or_default();
            back("failed", format!("{} {device}: {code}: {message}", t.devices.failed))
        }
        Err(crate::devices::CommandError::Timeout(_)) => back("failed", format!("{device}: {}", t.devices.timeout)),
        Err(e) => back("failed", e.to_string()),
    }
}

/// `POST /devices/{instance}/{device}/refresh`: ask the device for its state now.
pub async fn device_refresh(
    State(state): State<AppState>,
    session: PageSession,
    Path((instance, device)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    if let Ok(id) = iot2mqtt_contract::InstanceId::new(&instance) {
        crate::devices::refresh(&state.mqtt, &id, &device);
    }
    let anchor = format!("device-{instance}-{device}");
    Redirect::to(&format!("/devices?ok={}#{}", encode(&t().devices.asked), encode(&anchor))).into_response()
}
