//! What the host offers a plugin besides WASI: logging, pushing state and events at any time,
//! keeping refreshed secrets, and the time.

use crate::Object;
use crate::bindings::iot2mqtt::connector::host as wit;
use crate::bindings::iot2mqtt::connector::types::Level;

/// Publish a device's full state now (see `host.push-state` in `wit/host.wit`).
pub fn push_state(device_id: &str, state: &Object) -> Result<(), String> {
    wit::push_state(device_id, &serde_json::to_string(state).unwrap_or_default())
}

/// Publish an event of a device now (see `host.push-event`).
pub fn push_event(device_id: &str, event: &str, data: &Object) -> Result<(), String> {
    wit::push_event(device_id, event, &serde_json::to_string(data).unwrap_or_default())
}

/// Keep a new value of one of the instance's secrets (a refreshed OAuth token): stored
/// encrypted by the orchestrator and given to every later `init` in `connection` (see
/// `host.store-secret`). Only a secret the instance has may be replaced.
pub fn store_secret(key: &str, value: &str) -> Result<(), String> {
    wit::store_secret(key, value)
}

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> u64 {
    wit::now_ms()
}

/// Log a line at `trace` level.
pub fn trace(message: impl AsRef<str>) {
    wit::log(Level::Trace, message.as_ref());
}

/// Log a line at `debug` level.
pub fn debug(message: impl AsRef<str>) {
    wit::log(Level::Debug, message.as_ref());
}

/// Log a line at `info` level.
pub fn info(message: impl AsRef<str>) {
    wit::log(Level::Info, message.as_ref());
}

/// Log a line at `warn` level.
pub fn warn(message: impl AsRef<str>) {
    wit::log(Level::Warn, message.as_ref());
}

/// Log a line at `error` level.
pub fn error(message: impl AsRef<str>) {
    wit::log(Level::Error, message.as_ref());
}
