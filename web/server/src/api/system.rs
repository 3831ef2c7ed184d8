//! Health.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// `GET /api/health` (public).
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "mqtt_connected": state.mqtt.connected(),
        "runtime": state.instances.runtime_name(),
        "docker_available": state.docker.is_some(),
        "broker": if state.uses_embedded_broker() { "embedded" } else { "external" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
