//! The JSON payloads an instance publishes (contract, section 3). Serialisable for the host,
//! deserialisable for the orchestrator and the tests.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codes::Severity;

/// A JSON object.
pub type Object = Map<String, Value>;

/// `B/devices/{d}/state`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMessage {
    /// When the state was read.
    pub timestamp: String,
    /// The device.
    pub device_id: String,
    /// The device's state; each top-level key also goes to `state/{key}`.
    pub state: Object,
}

/// `B/devices/{d}/error` and `B/error`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// When it happened.
    pub timestamp: String,
    /// UPPER_SNAKE_CASE.
    pub error_code: String,
    /// For people.
    pub message: String,
    /// How much it matters.
    pub severity: Severity,
    /// When the host retries on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_info: Option<RetryInfo>,
}

/// The retry schedule of a failing operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryInfo {
    /// How many attempts failed so far.
    pub attempt: u32,
    /// `None` (JSON `null`) when retries never stop.
    pub max_attempts: Option<u32>,
    /// When the next attempt is due.
    pub next_retry: String,
}

/// `B/devices/{d}/events`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// When it happened.
    pub timestamp: String,
    /// The event's name.
    pub event: String,
    /// Its data.
    pub data: Object,
}

/// The outcome of a command, as in `cmd/response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It was executed.
    Success,
    /// It was not, or it failed.
    Error,
}

/// A failure in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// UPPER_SNAKE_CASE.
    pub code: String,
    /// For people.
    pub message: String,
}

/// `B/devices/{d}/cmd/response`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The command's `id`.
    pub cmd_id: String,
    /// Success or error.
    pub status: Status,
    /// When it was answered.
    pub timestamp: String,
    /// The values the device confirmed (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Object>,
    /// What went wrong (on error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResponseError>,
}

impl CommandResponse {
    /// A success with the confirmed values.
    pub fn success(cmd_id: &str, result: Object) -> Self {
        Self {
            cmd_id: cmd_id.to_string(),
            status: Status::Success,
            timestamp: crate::time::now(),
            result: Some(result),
            error: None,
        }
    }

    /// An error with its code.
    pub fn error(cmd_id: &str, code: &str, message: &str) -> Self {
        Self {
            cmd_id: cmd_id.to_string(),
            status: Status::Error,
            timestamp: crate::time::now(),
            result: None,
            error: Some(ResponseError { code: code.to_string(), message: message.to_string() }),
        }
    }
}

/// One member's outcome in a group response: `"success"` or its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemberOutcome {
    /// Always the string `success`.
    Success(String),
    /// The member's error.
    Error(ResponseError),
}

/// `B/groups/{g}/cmd/response`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResponse {
    /// The command's `id`.
    pub cmd_id: String,
    /// `success` when every member succeeded.
    pub status: Status,
    /// When it was answered.
    pub timestamp: String,
    /// Each member's outcome.
    pub results: Map<String, Value>,
}

/// One entry of `B/meta/devices_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceListEntry {
    /// The device.
    pub device_id: String,
    /// `{instance}_{device}`.
    pub global_id: String,
    /// Its model, when known.
    pub model: Option<String>,
    /// Configured enabled.
    pub enabled: bool,
    /// Answering now.
    pub online: bool,
}

/// The plugin part of `B/meta/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The sha256 of its `.wasm`, hex.
    pub sha256: String,
}

/// `B/meta/info`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoMessage {
    /// The instance.
    pub instance_id: String,
    /// Its connector.
    pub connector_type: String,
    /// How many devices are configured.
    pub devices_count: usize,
    /// How many groups.
    pub groups_count: usize,
    /// Seconds since the instance started.
    pub uptime: u64,
    /// The running plugin (WASM host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginInfo>,
    /// Hot swaps since start (WASM host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swaps: Option<u64>,
    /// The swap to the running plugin, once every device has switched (WASM host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_swap: Option<LastSwap>,
}

/// How the latest hot swap went, in `B/meta/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastSwap {
    /// Devices that switched.
    pub devices: usize,
    /// The longest a device's jobs waited for the switch, in milliseconds.
    pub pause_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_info_writes_null_for_unbounded() {
        let message = ErrorMessage {
            timestamp: "t".into(),
            error_code: "UPDATE_ERROR".into(),
            message: "m".into(),
            severity: Severity::Warning,
            retry_info: Some(RetryInfo { attempt: 1, max_attempts: None, next_retry: "n".into() }),
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"timestamp":"t","error_code":"UPDATE_ERROR","message":"m","severity":"warning",
                   "retry_info":{"attempt":1,"max_attempts":null,"next_retry":"n"}})
        );
    }

    #[test]
    fn responses_carry_result_or_error() {
        let ok = serde_json::to_value(CommandResponse::success("1", Map::new())).unwrap();
        assert_eq!(ok["status"], "success");
        assert_eq!(ok["result"], json!({}));
        assert!(ok.get("error").is_none());
        let err = serde_json::to_value(CommandResponse::error("1", "TIMEOUT", "slow")).unwrap();
        assert_eq!(err["error"], json!({"code": "TIMEOUT", "message": "slow"}));
        assert!(err.get("result").is_none());
    }
}
