//! Health and the status page.

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde_json::{Value, json};

use super::AppState;

/// `GET /api/health` (public).
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "mqtt_connected": state.mqtt.connected(),
        "runtime": state.instances.runtime_name(),
        "docker_available": state.docker.is_some(),
        "broker": if state.embedded_broker { "embedded" } else { "external" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /`: a plain status page (its data comes from the API once logged in).
pub async fn page() -> Html<&'static str> {
    Html(include_str!("../../assets/index.html"))
}
