//! The settings page: the broker in use, people's accounts on the embedded broker (created
//! with a generated password shown once, deleted after a confirmation), and the access key
//! (changed with the old one, which ends every other session; or every session ended at once).

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, cleared_cookie, error_page, forged, render, session_cookie, t, with_cookie};
use crate::api::AppState;
use crate::auth::AuthError;
use crate::mqtt_accounts::PersonAccess;
use crate::ui::i18n::fill;
use crate::ui::session::PageSession;
use crate::ui::views::{AccountRow, BrokerForm, Chrome, CreatedAccount, KeyErrors, SettingsPage};

/// What the settings page may be opened with.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    deleted: Option<String>,
    #[serde(default)]
    key_changed: Option<String>,
}

/// `GET /settings`
pub async fn settings(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<SettingsQuery>,
) -> Response {
    let mut page = page(&state, &session);
    page.notice = if query.key_changed.is_some() {
        Some(t().settings.key_changed.clone())
    } else {
        query.deleted.map(|_| t().settings.deleted.clone())
    };
    render(&page)
}

fn page(state: &AppState, session: &PageSession) -> SettingsPage {
    let t = t();
    let settings = state.mqtt.settings();
    let accounts = state.broker_accounts.as_ref().map(|accounts| {
        accounts
            .people()
            .into_iter()
            .map(|p| AccountRow {
                name: p.name,
                access: match p.access {
                    PersonAccess::Observer => t.settings.observer.clone(),
                    PersonAccess::Full => t.settings.full.clone(),
                },
            })
            .collect()
    });
    SettingsPage {
        chrome: Chrome::page(t, &session.csrf, "settings"),
        broker: format!("{}:{}", settings.host, settings.port),
        embedded: state.uses_embedded_broker(),
        tls: settings.tls.is_some(),
        connected: state.mqtt.connected(),
        accounts,
        created: None,
        notice: None,
        error: None,
        name: String::new(),
        access: "observer".into(),
        key_errors: KeyErrors::default(),
        broker_form: broker_form(state),
        about: about(state),
    }
}

/// What this installation is: versions, where its data is, how instances run, the broker.
fn about(state: &AppState) -> Vec<(String, String)> {
    let t = t();
    let settings = state.mqtt.settings();
    let broker = if state.uses_embedded_broker() { &t.settings.broker_embedded } else { &t.settings.broker_external };
    vec![
        (t.settings.version.clone(), format!("iot2mqtt {}", env!("CARGO_PKG_VERSION"))),
        (t.settings.contract.clone(), "IoT2mqtt/v1 (MQTT 3.1.1, 5.0)".to_string()),
        (t.settings.data_dir.clone(), state.instances.data_dir().display().to_string()),
        (t.settings.runtime.clone(), state.instances.runtime_name().to_string()),
        (t.settings.broker_heading.clone(), format!("{broker} {}:{}", settings.host, settings.port)),
    ]
}

/// The broker settings in effect, as the form shows them.
fn broker_form(state: &AppState) -> BrokerForm {
    let settings = state.mqtt.settings();
    let env = state.settings.env().ok();
    let raw = |key: &str| env.as_ref().and_then(|e| e.get(key)).unwrap_or_default().to_string();
    let host = raw("MQTT_HOST");
    let embedded = state.embedded_broker.is_some() && host.is_empty();
    BrokerForm {
        port: if embedded { raw("MQTT_PORT") } else { settings.port.to_string() },
        host,
        username: raw("MQTT_USERNAME"),
        password_set: !raw("MQTT_PASSWORD").is_empty(),
        base_topic: settings.base_topic.clone(),
        client_prefix: settings.client_prefix.clone(),
        qos: settings.qos.to_string(),
        retain: settings.retain,
        keepalive: settings.keepalive.as_secs().to_string(),
        tls: !raw("MQTT_TLS").is_empty() && raw("MQTT_TLS") != "false",
        ca_file: raw("MQTT_CA_FILE"),
        cert_file: raw("MQTT_CERT_FILE"),
        key_file: raw("MQTT_KEY_FILE"),
        error: None,
        outcome: None,
    }
}

/// The broker form as posted.
#[derive(Debug, Deserialize)]
pub struct BrokerPost {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    intent: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    base_topic: String,
    #[serde(default)]
    client_prefix: String,
    #[serde(default)]
    qos: String,
    #[serde(default)]
    retain: Option<String>,
    #[serde(default)]
    keepalive: String,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
}

impl BrokerPost {
    /// The body `POST /api/mqtt/config` takes; an empty password keeps the stored one, other
    /// empty fields remove their setting.
    fn body(&self) -> Result<serde_json::Map<String, serde_json::Value>, (String, String)> {
        use serde_json::{Value, json};
        let text = |value: &str| if value.trim().is_empty() { Value::Null } else { json!(value.trim()) };
        let number = |field: &str, value: &str| -> Result<Value, (String, String)> {
            if value.trim().is_empty() {
                return Ok(Value::Null);
            }
            value
                .trim()
                .parse::<u64>()
                .map(|n| json!(n))
                .map_err(|_| (field.to_string(), "must be a whole number".to_string()))
        };
        let mut body = serde_json::Map::new();
        body.insert("host".into(), text(&self.host));
        body.insert("port".into(), number("port", &self.port)?);
        body.insert("username".into(), text(&self.username));
        if !self.password.is_empty() {
            body.insert("password".into(), json!(self.password));
        }
        body.insert("base_topic".into(), text(&self.base_topic));
        body.insert("client_prefix".into(), text(&self.client_prefix));
        body.insert("qos".into(), number("qos", &self.qos)?);
        body.insert("retain".into(), json!(self.retain.is_some()));
        body.insert("keepalive".into(), number("keepalive", &self.keepalive)?);
        body.insert("tls".into(), json!(self.tls.is_some()));
        body.insert("ca_file".into(), text(&self.ca_file));
        body.insert("cert_file".into(), text(&self.cert_file));
        body.insert("key_file".into(), text(&self.key_file));
        Ok(body)
    }

    /// The form again with what was typed (never the password).
    fn shown(&self, password_set: bool) -> BrokerForm {
        BrokerForm {
            host: self.host.clone(),
            port: self.port.clone(),
            username: self.username.clone(),
            password_set,
            base_topic: self.base_topic.clone(),
            client_prefix: self.client_prefix.clone(),
            qos: self.qos.clone(),
            retain: self.retain.is_some(),
            keepalive: self.keepalive.clone(),
            tls: self.tls.is_some(),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            error: None,
            outcome: None,
        }
    }
}

/// `POST /settings/mqtt`: "Test connection" tries the typed settings and says what the broker
/// answered; "Save" applies them and says which instances restarted.
pub async fn broker(State(state): State<AppState>, session: PageSession, Form(form): Form<BrokerPost>) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let t = t();
    let mut page = page(&state, &session);
    let mut shown = form.shown(page.broker_form.password_set);
    let body = match form.body() {
        Ok(body) => body,
        Err(error) => {
            shown.error = Some(error);
            page.broker_form = shown;
            return render(&page);
        }
    };
    let outcome = if form.intent == "test" {
        crate::api::mqtt::try_settings(&state, &body).await.map(|answer| {
            if answer["embedded"] == true {
                (true, t.settings.test_embedded.clone())
            } else if answer["ok"] == true {
                (true, fill(&t.settings.test_ok, &[("broker", answer["broker"].as_str().unwrap_or_default())]))
            } else {
                (false, fill(&t.settings.test_failed, &[("error", answer["error"].as_str().unwrap_or_default())]))
            }
        })
    } else {
        match crate::api::mqtt::plan(&state, &body) {
            Ok(planned) => crate::api::mqtt::apply(&state, planned.changes).await.map(|view| {
                let restarted: Vec<&str> =
                    view["restarted"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
                if restarted.is_empty() {
                    (true, t.settings.saved_none.clone())
                } else {
                    (true, fill(&t.settings.saved, &[("instances", &restarted.join(", "))]))
                }
            }),
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(outcome) => {
            if form.intent != "test" {
                // Saved: show what is in effect now.
                shown = broker_form(&state);
                page.connected = state.mqtt.connected();
                let settings = state.mqtt.settings();
                page.broker = format!("{}:{}", settings.host, settings.port);
                page.tls = settings.tls.is_some();
                page.embedded = state.uses_embedded_broker();
                page.about = about(&state);
            }
            shown.outcome = Some(outcome);
        }
        Err(crate::api::error::AppError::Invalid { field, message }) => {
            shown.error = Some((field.unwrap_or_default(), message));
        }
        Err(other) => shown.outcome = Some((false, other.to_string())),
    }
    page.broker_form = shown;
    render(&page)
}

/// The new-account form.
#[derive(Debug, Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    access: String,
}

/// `POST /settings/mqtt/accounts`: create an account. The answer is the page itself, with the
/// password, never stored by a browser cache and never put in a URL.
pub async fn add_account(
    State(state): State<AppState>,
    session: PageSession,
    Form(form): Form<AccountForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let mut page = page(&state, &session);
    let Some(accounts) = state.broker_accounts.as_ref() else {
        return error_page(StatusCode::CONFLICT, page.chrome, t().settings.accounts_external.clone());
    };
    let access = if form.access == "full" { PersonAccess::Full } else { PersonAccess::Observer };
    let name = form.name.trim().to_string();
    match accounts.add_person(&name, access) {
        Ok((account, password)) => {
            let settings = state.mqtt.settings();
            let command = format!(
                "mosquitto_sub -h {} -p {} -u {} -P '{}' -t '{}/#' -v",
                settings.host,
                settings.port,
                account.name,
                password.expose(),
                settings.base_topic
            );
            page = self::page(&state, &session);
            page.created =
                Some(CreatedAccount { name: account.name, password: password.expose().to_string(), command });
        }
        Err(e) => {
            page.error = Some(e.to_string());
            page.name = name;
            page.access = form.access;
        }
    }
    let mut response = render(&page);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /settings/mqtt/accounts/{name}/delete`
pub async fn remove_account(
    State(state): State<AppState>,
    session: PageSession,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let chrome = Chrome::page(t(), &session.csrf, "settings");
    let Some(accounts) = state.broker_accounts.as_ref() else {
        return error_page(StatusCode::CONFLICT, chrome, t().settings.accounts_external.clone());
    };
    match accounts.remove_person(&name) {
        Ok(()) => Redirect::to("/settings?deleted=1").into_response(),
        Err(e) => {
            let status = match e {
                crate::mqtt_accounts::AccountError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error_page(status, chrome, e.to_string())
        }
    }
}

/// The access key form.
#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    old_key: String,
    #[serde(default)]
    new_key: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /settings/key`: change the access key. This browser gets the new session; every
/// other one ends. A refusal is the page again with the reason beside its field.
pub async fn change_key(
    State(state): State<AppState>,
    session: PageSession,
    connect: Option<axum::extract::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let t = t();
    let mut page = page(&state, &session);
    if form.new_key != form.confirm {
        page.key_errors.confirm = Some(t.setup.mismatch.clone());
        return render(&page);
    }
    let client = crate::api::client_address(connect);
    match state.auth.change_key(client, &form.old_key, &form.new_key).await {
        Ok(new) => {
            tracing::info!("the access key was changed from the settings page; every other session ended");
            with_cookie(Redirect::to("/settings?key_changed=1").into_response(), &session_cookie(&new.token, &headers))
        }
        Err(e) => {
            match e {
                AuthError::Invalid => page.key_errors.old = Some(t.settings.wrong_key.clone()),
                AuthError::WeakKey => page.key_errors.new = Some(e.to_string()),
                other => page.key_errors.old = Some(other.to_string()),
            }
            render(&page)
        }
    }
}

/// `POST /settings/logout-everywhere`: end every session, this one too.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    session: PageSession,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    if let Err(e) = state.auth.log_out_everywhere() {
        let chrome = Chrome::page(t(), &session.csrf, "settings");
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string());
    }
    tracing::info!("every session was ended from the settings page");
    with_cookie(Redirect::to("/login?everywhere=1").into_response(), &cleared_cookie())
}
