//! The devices page and what its controls post: a command with one value, a refresh.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, error_page, forged, render, t};
use crate::api::AppState;
use crate::ui::session::{PageSession, encode, local_path};
use crate::ui::views::Chrome;
use crate::ui::views::devices::{DevicesPage, Notice, control_value};

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
    let notice = Notice::from_outcome(query.ok, query.failed);
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
    #[serde(default)]
    back: String,
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
    let page = if form.back.is_empty() { "/devices" } else { local_path(&form.back) };
    let back = |key: &str, text: String| {
        let anchor = format!("device-{instance}-{device}");
        Redirect::to(&format!("{page}?{key}={}#{}", encode(&text), encode(&anchor))).into_response()
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
