//! The MQTT explorer page: the topic tree under the base topic, a topic's last message, a
//! publish form, and clearing an instance's retained messages after a confirmation.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iot2mqtt_contract::InstanceId;
use iot2mqtt_mqtt::QoS;
use serde::Deserialize;

use super::{CsrfForm, encode, error_page, forged, render, t};
use crate::api::AppState;
use crate::ui::i18n::fill;
use crate::ui::session::PageSession;
use crate::ui::views::Chrome;
use crate::ui::views::explorer::{COMMAND_TEMPLATE, ExplorerPage, selected, tree};

/// What the explorer may be opened with.
#[derive(Debug, Default, Deserialize)]
pub struct ExplorerQuery {
    /// The topic shown.
    #[serde(default)]
    topic: String,
    /// The tree's filter.
    #[serde(default)]
    q: String,
    /// A message was just published there.
    #[serde(default)]
    published: Option<String>,
    /// Retained messages were just cleared: how many.
    #[serde(default)]
    cleared: Option<usize>,
    /// Of this instance.
    #[serde(default)]
    instance: String,
    /// The topic of a refused publication.
    #[serde(default)]
    refused: Option<String>,
}

/// `GET /explorer`
pub async fn explorer(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<ExplorerQuery>,
) -> Response {
    let t = t();
    let base = state.mqtt.settings().base_topic;
    let cached = state.mqtt.topics(&format!("{base}/"));
    let shown = (!query.topic.is_empty()).then_some(query.topic.as_str());
    let notice = if let Some(topic) = &query.published {
        Some((true, fill(&t.explorer.published, &[("topic", topic)])))
    } else if let Some(count) = query.cleared {
        Some((true, fill(&t.explorer.cleared, &[("count", &count.to_string()), ("instance", &query.instance)])))
    } else {
        query.refused.as_ref().map(|_| (false, t.explorer.bad_topic.clone()))
    };
    // The form is for the topic shown; on a command topic it offers the contract's payload.
    let payload = if query.topic.ends_with("/cmd") { COMMAND_TEMPLATE.to_string() } else { String::new() };
    let mut instances: Vec<String> = match state.instances.list().await {
        Ok(all) => all.into_iter().map(|v| v.config.instance_id.to_string()).collect(),
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Chrome::page(t, &session.csrf, "explorer"),
                e.to_string(),
            );
        }
    };
    instances.sort();
    render(&ExplorerPage {
        chrome: Chrome::page(t, &session.csrf, "explorer"),
        live_prefix: format!("{base}/"),
        rows: tree(&base, &cached, &query.q, shown),
        selected: shown.and_then(|topic| selected(&cached, topic)),
        topic: query.topic.clone(),
        payload,
        template: COMMAND_TEMPLATE,
        filter: query.q,
        base,
        instances,
        notice,
    })
}

/// The publish form.
#[derive(Debug, Deserialize)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: Option<String>,
}

/// `POST /explorer/publish`: publish, then show the topic (its message arrives with the live
/// refresh).
pub async fn publish(State(state): State<AppState>, session: PageSession, Form(form): Form<PublishForm>) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let topic = form.topic.trim();
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Redirect::to(&format!("/explorer?refused=1&topic={}", encode(topic))).into_response();
    }
    let qos = QoS::from_u8(form.qos.min(2)).unwrap_or(QoS::AtLeastOnce);
    let retain = form.retain.as_deref() == Some("true");
    state.mqtt.publish(topic, bytes::Bytes::from(form.payload.clone()), qos, retain);
    tracing::info!(topic, retain, "published from the MQTT explorer");
    Redirect::to(&format!("/explorer?published={0}&topic={0}#message", encode(topic))).into_response()
}

/// `POST /explorer/clear/{instance}`
pub async fn clear_retained(
    State(state): State<AppState>,
    session: PageSession,
    Path(instance): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let Ok(id) = InstanceId::new(&instance) else {
        let chrome = Chrome::page(t(), &session.csrf, "explorer");
        return error_page(StatusCode::NOT_FOUND, chrome, format!("no instance \"{instance}\""));
    };
    let cleared = state.mqtt.clear_retained(&id);
    tracing::info!(instance = %id, cleared, "retained messages cleared from the MQTT explorer");
    Redirect::to(&format!("/explorer?cleared={cleared}&instance={}#clear", encode(&instance))).into_response()
}
