//! What the instances service hands out: an instance with its state, and what a plugin
//! upload did.

use iot2mqtt_contract::config::InstanceConfig;
use serde::Serialize;

use crate::runtime::Observed;
use crate::store::plugins::{PluginChange, PluginRef};

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
    /// The longest a device waited for the swap (milliseconds), when the instance said.
    pub pause_ms: Option<f64>,
}

/// An instance's plugins and their history.
#[derive(Debug, Clone, Serialize)]
pub struct PluginHistory {
    /// The version pinned (what it runs, or starts with).
    pub current: Option<PluginRef>,
    /// The version a rollback returns to.
    pub previous: Option<PluginRef>,
    /// Since when it has the current version (RFC 3339).
    pub since: Option<String>,
    /// Changes, newest first.
    pub changes: Vec<PluginChange>,
}

/// What "update all instances" did.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateAll {
    /// The uploaded plugin's hash.
    pub sha256: String,
    /// The instance whose rejection stopped the update.
    pub stopped_at: Option<String>,
    /// Each instance of the connector, in the order they were taken.
    pub instances: Vec<UpdateStep>,
}

/// One instance in an update of all.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateStep {
    /// The instance.
    pub instance: String,
    /// The version it runs (or starts with) afterwards.
    pub runs: Option<String>,
    /// What the update did to it.
    pub outcome: UpdateOutcome,
    /// Why it was rejected.
    pub detail: Option<String>,
}

/// What an update of all did to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Swapped live.
    Swapped,
    /// Not running: it starts with the new plugin.
    Kept,
    /// It refused the plugin; the update stopped here.
    Rejected,
    /// After a rejection: left as it was.
    NotTried,
}

/// The result of rebuilding a container connector's image and recreating its instances.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    /// The instance whose failure stopped the rebuild.
    pub stopped_at: Option<String>,
    /// Each instance of the connector, in the order they were taken.
    pub instances: Vec<RebuildStep>,
}

/// One instance in a rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildStep {
    /// The instance.
    pub instance: String,
    /// What the rebuild did to it.
    pub outcome: RebuildOutcome,
    /// Why it failed.
    pub detail: Option<String>,
}

/// What a rebuild did to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildOutcome {
    /// Its container was recreated from the new image and it said `online` again.
    Recreated,
    /// Stopped: it starts from the new image when it is started.
    Kept,
    /// It did not come back; the rebuild stopped here.
    Failed,
    /// After a failure: left as it was.
    NotTried,
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
