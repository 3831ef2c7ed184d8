//! What the instances service hands out: an instance with its state, and what a plugin
//! upload did.

use iot2mqtt_contract::config::InstanceConfig;
use serde::Serialize;

use crate::runtime::Observed;

/// An instance as the API shows it: its file (secrets as references) and its state.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// The instance file.
    #[serde(flatten)]
    pub config: InstanceConfig,
    /// Names of its secrets (never their values).
    pub secrets: Vec<String>,
    /// Desired and observed state.
    pub status: Status,
}

/// What a plugin upload or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSwitch {
    /// The version the instance runs now (sha256, hex).
    pub sha256: String,
    /// The one it replaced.
    pub previous: Option<String>,
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether a running instance was swapped live (else it starts with it next time).
    pub swapped: bool,
}

/// Desired and observed state of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `running` or `stopped`: what it should be.
    pub desired: &'static str,
    /// What the runtime sees.
    #[serde(flatten)]
    pub observed: Observed,
    /// Its `B/status` on MQTT: `online`, `offline` or `unknown`.
    pub mqtt_status: String,
    /// Restarts asked through the API.
    pub api_restarts: u64,
}
