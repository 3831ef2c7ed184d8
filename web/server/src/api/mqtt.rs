//! MQTT settings and the explorer: topics, publishing, the live stream, clearing an instance's
//! retained topics.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use iot2mqtt_contract::InstanceId;
use iot2mqtt_mqtt::QoS;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_stream::wrappers::BroadcastStream;

use super::error::AppError;
use super::{AppState, json_body};
use crate::mqtt_accounts::{AccountError, BrokerAccounts, PersonAccess};
use crate::secrets::MASK;
use crate::store::settings::{MQTT_KEYS, SettingsFile};

/// `GET /api/mqtt/config`: the settings in effect; the password is never returned.
pub async fn get_config(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(config_view(&state)?))
}

fn config_view(state: &AppState) -> Result<Value, AppError> {
    let settings = state.mqtt.settings();
    let overridden: Vec<&str> = MQTT_KEYS.iter().copied().filter(|k| SettingsFile::overridden(k)).collect();
    Ok(json!({
        "host": settings.host,
        "port": settings.port,
        "username": settings.username,
        "password": settings.password.as_ref().map(|_| MASK),
        "base_topic": settings.base_topic,
        "client_prefix": settings.client_prefix,
        "qos": settings.qos,
        "retain": settings.retain,
        "keepalive": settings.keepalive.as_secs(),
        "tls": settings.tls.is_some(),
        "ca_file": settings.tls.as_ref().and_then(|t| t.ca_file.as_ref()),
        "cert_file": settings.tls.as_ref().and_then(|t| t.cert_file.as_ref()),
        "key_file": settings.tls.as_ref().and_then(|t| t.key_file.as_ref()),
        "discovery_prefix": settings.discovery_prefix.as_deref().unwrap_or("off"),
        "broker": if state.uses_embedded_broker() { "embedded" } else { "external" },
        "overridden_by_env": overridden,
    }))
}

/// The fields of `POST /api/mqtt/config` and the variables they set.
const FIELDS: [(&str, &str); 14] = [
    ("host", "MQTT_HOST"),
    ("port", "MQTT_PORT"),
    ("username", "MQTT_USERNAME"),
    ("password", "MQTT_PASSWORD"),
    ("base_topic", "MQTT_BASE_TOPIC"),
    ("client_prefix", "MQTT_CLIENT_PREFIX"),
    ("qos", "MQTT_QOS"),
    ("retain", "MQTT_RETAIN"),
    ("keepalive", "MQTT_KEEPALIVE"),
    ("tls", "MQTT_TLS"),
    ("ca_file", "MQTT_CA_FILE"),
    ("cert_file", "MQTT_CERT_FILE"),
    ("key_file", "MQTT_KEY_FILE"),
    ("discovery_prefix", "MQTT_DISCOVERY_PREFIX"),
];

/// `POST /api/mqtt/config`: change settings (posting the mask keeps the password); the
/// service reconnects and running instances restart with the new settings.
pub async fn set_config(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, AppError> {
    let Value::Object(body) = json_body(&body)? else {
        return Err(AppError::invalid("", "the body must be a JSON object"));
    };
    let planned = plan(&state, &body)?;
    Ok(Json(apply(&state, planned.changes).await?))
}

/// `POST /api/mqtt/test`: try settings (the same body as `POST /api/mqtt/config`) without
/// saving them: `{"ok":true}`, or `{"ok":false,"error"}` with the broker's answer or why it
/// could not be reached. With the embedded broker in use and no host given there is nothing
/// to try (`{"ok":true,"embedded":true}`).
pub async fn test_config(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, AppError> {
    let Value::Object(body) = json_body(&body)? else {
        return Err(AppError::invalid("", "the body must be a JSON object"));
    };
    Ok(Json(try_settings(&state, &body).await?))
}

/// Try the settings `body` would make; the answer of `POST /api/mqtt/test`.
pub(crate) async fn try_settings(state: &AppState, body: &Map<String, Value>) -> Result<Value, AppError> {
    let Some(settings) = plan(state, body)?.external else {
        return Ok(json!({"ok": true, "embedded": true}));
    };
    Ok(match crate::mqtt::test_connection(&settings).await {
        Ok(()) => json!({"ok": true, "broker": format!("{}:{}", settings.host, settings.port)}),
        Err(error) => json!({"ok": false, "error": error}),
    })
}

/// What a body of settings would change, checked before anything is written.
pub(crate) struct Planned {
    /// The `.env` changes (`None` removes a key).
    pub(crate) changes: BTreeMap<&'static str, Option<String>>,
    /// The settings a client would use, when the broker is an external one.
    external: Option<iot2mqtt_contract::MqttSettings>,
}

/// Check `body` against the settings in effect: what it changes, and the resulting settings.
pub(crate) fn plan(state: &AppState, body: &Map<String, Value>) -> Result<Planned, AppError> {
    let mut changes: BTreeMap<&'static str, Option<String>> = BTreeMap::new();
    for (field, key) in FIELDS {
        match body.get(field) {
            None => {}
            Some(Value::String(s)) if field == "password" && s == MASK => {}
            Some(Value::Null) => {
                changes.insert(key, None);
            }
            Some(Value::String(s))
                if s.is_empty() && matches!(field, "username" | "password" | "ca_file" | "cert_file" | "key_file") =>
            {
                changes.insert(key, None);
            }
            Some(Value::String(s)) => {
                changes.insert(key, Some(s.clone()));
            }
            Some(Value::Number(n)) if matches!(field, "port" | "qos" | "keepalive") => {
                changes.insert(key, Some(n.to_string()));
            }
            Some(Value::Bool(b)) if matches!(field, "retain" | "tls") => {
                changes.insert(key, Some(b.to_string()));
            }
            Some(other) => return Err(AppError::invalid(field, format!("has the wrong type: {other}"))),
        }
    }
    if let Some(unknown) = body.keys().find(|k| !FIELDS.iter().any(|(field, _)| field == k)) {
        return Err(AppError::invalid(unknown, "is not an MQTT setting"));
    }
    // Check the result before writing anything.
    let mut env: BTreeMap<String, String> = MQTT_KEYS
        .iter()
        .filter_map(|k| state.settings.env().ok()?.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    for (key, value) in &changes {
        match value {
            Some(v) => env.insert(key.to_string(), v.clone()),
            None => env.remove(*key),
        };
    }
    // The discovery prefix matters with the embedded broker too.
    if let Some(Some(prefix)) = changes.get("MQTT_DISCOVERY_PREFIX") {
        let pairs = [("MQTT_DISCOVERY_PREFIX", prefix.as_str())];
        if let Err(iot2mqtt_contract::SettingsError::Invalid { reason, .. }) =
            iot2mqtt_contract::MqttSettings::from_env(&iot2mqtt_contract::settings::Env::from_pairs(pairs))
        {
            return Err(AppError::invalid("discovery_prefix", reason));
        }
    }
    let mut external = None;
    if state.embedded_broker.is_none() || env.contains_key("MQTT_HOST") {
        let checked = iot2mqtt_contract::MqttSettings::from_env(&iot2mqtt_contract::settings::Env::from_pairs(env))
            .map_err(|e| match e {
                iot2mqtt_contract::SettingsError::Invalid { name, reason } => {
                    AppError::invalid(&field_of(name), reason)
                }
                other => AppError::invalid("", other.to_string()),
            })?;
        // Certificates that cannot be read are refused now, not at the next connect.
        if let Some(tls) = iot2mqtt_runtime::client_tls(&checked) {
            tls.client_config().map_err(|e| AppError::invalid(tls_field(&e), e.to_string()))?;
        }
        external = Some(checked);
    }
    Ok(Planned { changes, external })
}

/// Write `changes` to the settings and reconnect everything with the result; the settings in
/// effect afterwards, with `restarted`: the running instances that restarted with them.
pub(crate) async fn apply(
    state: &AppState,
    changes: BTreeMap<&'static str, Option<String>>,
) -> Result<Value, AppError> {
    let file = state.settings.clone();
    tokio::task::spawn_blocking(move || file.update(&changes))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    let mut settings = state.settings.mqtt().map_err(|e| AppError::invalid("", e.to_string()))?;
    let broker_set = state.settings.env().ok().is_some_and(|env| env.get("MQTT_HOST").is_some());
    if let Some((host, port)) = state.embedded_broker.clone().filter(|_| !broker_set) {
        // Back to the embedded broker (or still on it): its address, whatever was used before.
        settings.host = host;
        settings.port = port;
        // Our own clients reach the embedded broker on its plain listener.
        settings.tls = None;
    }
    if let Some(accounts) = &state.broker_accounts {
        // The embedded broker knows serve by its own login, whatever the file says.
        let (user, password) = accounts.serve_login(&crate::mqtt::client_id(&settings));
        settings.username = Some(user);
        settings.password = Some(password);
    }
    tracing::info!(host = %settings.host, port = settings.port, "MQTT settings changed; reconnecting");
    let running = state.instances.running().await;
    state.mqtt.reconfigure(settings.clone());
    state.instances.reconfigure(settings).await;
    let mut view = config_view(state)?;
    view["restarted"] = json!(running);
    Ok(view)
}

/// `GET /api/mqtt/accounts`: people's accounts on the embedded broker (never a password).
pub async fn accounts(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(json!(broker_accounts(&state)?.people())))
}

/// `POST /api/mqtt/accounts {"name","access":"observer"|"full"}`: create one; the answer holds
/// its generated password, the only time it is shown.
pub async fn add_account(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), AppError> {
    let accounts = broker_accounts(&state)?;
    let body = json_body(&body)?;
    let name = body["name"].as_str().ok_or_else(|| AppError::invalid("name", "is required"))?;
    let access = match body["access"].as_str() {
        Some("observer") => PersonAccess::Observer,
        Some("full") => PersonAccess::Full,
        _ => return Err(AppError::invalid("access", "must be \"observer\" or \"full\"")),
    };
    let (account, password) = accounts.add_person(name, access).map_err(account_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": account.name, "access": account.access, "password": password.expose() })),
    ))
}

/// `DELETE /api/mqtt/accounts/{name}`
pub async fn remove_account(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, AppError> {
    broker_accounts(&state)?.remove_person(&name).map_err(account_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn broker_accounts(state: &AppState) -> Result<&BrokerAccounts, AppError> {
    state.broker_accounts.as_deref().ok_or_else(|| AppError::Conflict {
        field: None,
        message: "the broker is an external one: manage its accounts there".into(),
    })
}

fn account_error(e: AccountError) -> AppError {
    match e {
        AccountError::InvalidName(message) => AppError::invalid("name", message),
        AccountError::Exists(_) => AppError::Conflict { field: Some("name".into()), message: e.to_string() },
        AccountError::NotFound(_) => AppError::NotFound(e.to_string()),
        AccountError::Io(e) => AppError::internal(e),
    }
}

fn tls_field(error: &iot2mqtt_mqtt::TlsError) -> &'static str {
    match error {
        iot2mqtt_mqtt::TlsError::File { what: "MQTT_CERT_FILE", .. } => "cert_file",
        iot2mqtt_mqtt::TlsError::File { what: "MQTT_KEY_FILE", .. } => "key_file",
        iot2mqtt_mqtt::TlsError::File { .. } | iot2mqtt_mqtt::TlsError::NoRoots => "ca_file",
        iot2mqtt_mqtt::TlsError::Config(_) => "tls",
    }
}

fn field_of(variable: &str) -> String {
    variable.trim_start_matches("MQTT_").to_ascii_lowercase()
}

/// Query of `GET /api/mqtt/topics`.
#[derive(Debug, Deserialize)]
pub struct TopicsQuery {
    /// Only topics starting with this.
    #[serde(default)]
    prefix: String,
}

/// `GET /api/mqtt/topics?prefix=`: the last message of every topic seen.
pub async fn topics(State(state): State<AppState>, Query(query): Query<TopicsQuery>) -> Json<Value> {
    Json(json!(state.mqtt.topics(&query.prefix)))
}

/// `POST /api/mqtt/publish {"topic","payload","qos"?,"retain"?}`
pub async fn publish(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, AppError> {
    let body = json_body(&body)?;
    let topic = body["topic"].as_str().ok_or_else(|| AppError::invalid("topic", "is required"))?;
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(AppError::invalid("topic", "must be a topic without wildcards"));
    }
    let payload = match &body["payload"] {
        Value::Null => Bytes::new(),
        Value::String(s) => Bytes::from(s.clone()),
        other => Bytes::from(other.to_string()),
    };
    let qos = match &body["qos"] {
        Value::Null => QoS::AtMostOnce,
        value => value
            .as_u64()
            .and_then(|q| u8::try_from(q).ok())
            .and_then(QoS::from_u8)
            .ok_or_else(|| AppError::invalid("qos", "must be 0, 1 or 2"))?,
    };
    let retain = match &body["retain"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(AppError::invalid("retain", "must be true or false")),
    };
    state.mqtt.publish(topic, payload, qos, retain);
    Ok(Json(json!({"published": true})))
}

/// `GET /api/mqtt/stream`: every message as it arrives (Server-Sent Events).
pub async fn stream(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let messages = BroadcastStream::new(state.mqtt.subscribe()).filter_map(|message| async move {
        let message = message.ok()?;
        Some(Ok(Event::default().event("message").json_data(&*message).unwrap_or_default()))
    });
    Sse::new(messages).keep_alive(KeepAlive::default())
}

/// `DELETE /api/mqtt/retained/{instance}`: clear an instance's retained topics.
pub async fn clear_retained(
    State(state): State<AppState>,
    Path(instance): Path<String>,
) -> Result<Json<Value>, AppError> {
    let id = InstanceId::new(&instance).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(Json(json!({"cleared": state.mqtt.clear_retained(&id)})))
}
