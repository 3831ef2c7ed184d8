//! How instances run. One trait, two runtimes: `docker` (one container per instance, built
//! from `runner-image/` around the static `iot2mqtt-host`) and `embedded` (instances inside
//! this process, through `iot2mqtt-runtime`). A cluster backend would be a third module.

pub mod docker;
mod elf;
pub mod embedded;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{ConnectorName, InstanceId, MqttSettings};
use serde::Serialize;

use crate::catalog::Network;

/// A boxed future, so the trait can be used as `dyn InstanceRuntime`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything needed to run one instance.
#[derive(Clone)]
pub struct RunSpec {
    /// The instance's connector.
    pub connector: ConnectorName,
    /// The instance file as stored (secrets as references).
    pub config: InstanceConfig,
    /// The instance's secrets, decrypted.
    pub secrets: BTreeMap<String, String>,
    /// Its active plugin file.
    pub plugin: PathBuf,
    /// The broker and topics.
    pub mqtt: MqttSettings,
    /// The folder of the connector's instance files (`/app/instances` in a container).
    pub instances_dir: PathBuf,
    /// Where its host may cache compiled plugins.
    pub cache_dir: PathBuf,
    /// Memory cap, MiB.
    pub memory_mb: Option<u64>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Host or bridge networking (containers only).
    pub network: Network,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("connector", &self.connector)
            .field("instance", &self.config.instance_id)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

/// What a runtime sees of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Running now.
    pub running: bool,
    /// Restarts the runtime did on its own (container restarts, plugin faults).
    pub restarts: u64,
    /// The last error it knows of.
    pub last_error: Option<String>,
    /// Failing again and again.
    pub crash_looping: bool,
}

/// A runtime failed to do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The plugin could not be loaded or was rejected.
    #[error("{0}")]
    Plugin(String),
    /// Docker refused or failed.
    #[error("docker: {0}")]
    Docker(String),
    /// Files could not be prepared.
    #[error("{0}")]
    Io(String),
}

/// Runs instances. Implementations keep whatever handles they need, keyed by instance id.
pub trait InstanceRuntime: Send + Sync + 'static {
    /// `embedded` or `docker`.
    fn name(&self) -> &'static str;
    /// Whether [`observe`](Self::observe) counts plugin faults itself; when not, they are
    /// counted from the instance's MQTT `error` topic.
    fn sees_plugin_faults(&self) -> bool {
        true
    }
    /// Start the instance, replacing a running one of the same id.
    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// Stop it (a stopped container is kept).
    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Stop it and remove what the runtime created for it.
    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// What it looks like now.
    fn observe<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Observed>;
    /// Swap the running plugin to `wasm` (its file was replaced already).
    fn swap<'a>(&'a self, instance: &'a InstanceId, wasm: Vec<u8>) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Stop everything: the orchestrator is going down.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
