//! How instances run. One trait, two runtimes: `docker` (one container per instance, built
//! from `runner-image/` around the static `iot2mqtt-host`) and `embedded` (instances inside
//! this process, through `iot2mqtt-runtime`), and `fake` (nothing runs; for the API's tests).
//! A cluster backend would be one more module: nothing outside this folder names a runtime.

pub mod docker;
mod elf;
pub mod embedded;
pub mod fake;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{ConnectorName, InstanceId, MqttSettings};
use iot2mqtt_runtime::Plugin;
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
    /// What it runs.
    pub program: Program,
    /// The broker and topics.
    pub mqtt: MqttSettings,
    /// The folder of the connector's instance files (`/app/instances` in a container).
    pub instances_dir: PathBuf,
    /// Where its host may cache compiled plugins.
    pub cache_dir: PathBuf,
    /// serve's own compile cache, which a container's host may read (never write): the
    /// plugin is compiled once, by serve, for every container that runs it.
    pub shared_cache_dir: PathBuf,
    /// Memory cap, MiB.
    pub memory_mb: Option<u64>,
    /// Hosts its plugin may reach over HTTP besides its devices (the manifest's, checked).
    pub http_hosts: Vec<iot2mqtt_runtime::HttpHost>,
    /// Its secrets in the store: where its plugin's refreshed secrets go (at once when
    /// embedded; from the container's sealed file before a new container starts).
    pub secret_store: Arc<crate::secrets::InstanceSecrets>,
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
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// What an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A WebAssembly plugin in `iot2mqtt-host` (in the runner image, or in this process).
    Plugin(ActivePlugin),
    /// Its connector's own image, built from the `Dockerfile` in the connector's folder
    /// (`"kind": "container"`), with the connector's plugin when it has one: an
    /// `iot2mqtt-host` inside the image is then its contract bridge.
    Image {
        /// The connector's folder.
        dir: PathBuf,
        /// The plugin its bridge runs, if any.
        plugin: Option<ActivePlugin>,
    },
}

impl Program {
    /// The plugin it runs, if any.
    pub fn plugin(&self) -> Option<&ActivePlugin> {
        match self {
            Self::Plugin(plugin) => Some(plugin),
            Self::Image { plugin, .. } => plugin.as_ref(),
        }
    }
}

/// The plugin version an instance runs: its content hash and the file the instance sees (for
/// a container, the file in the folder it mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePlugin {
    /// sha256 of the `.wasm`, hex.
    pub sha256: String,
    /// The file.
    pub path: PathBuf,
}

/// A plugin to swap an instance to: checked and loaded on the process's engine, its file
/// already in the instance's plugin folder.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The version and its file.
    pub active: ActivePlugin,
    /// The loaded plugin.
    pub loaded: Plugin,
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
    /// What the runtime is doing for it before it can run (building its image), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
}

/// A log followed: its lines as they come.
pub type LogStream = Pin<Box<dyn futures_util::Stream<Item = LogLine> + Send>>;

/// The orchestrator's own log, or an instance's in the embedded runtime, followed from
/// `logs`: the kept lines, then each new one.
pub fn follow_kept(logs: &iot2mqtt_runtime::logging::InstanceLogs, key: &str, lines: usize) -> LogStream {
    use futures_util::StreamExt as _;
    let mut following = logs.follow(key, lines);
    let kept = futures_util::stream::iter(std::mem::take(&mut following.kept).into_iter().map(LogLine::from));
    let live =
        futures_util::stream::unfold(following, |mut f| async move { f.next().await.map(|r| (LogLine::from(r), f)) });
    Box::pin(kept.chain(live))
}

impl From<iot2mqtt_runtime::logging::LogRecord> for LogLine {
    fn from(record: iot2mqtt_runtime::logging::LogRecord) -> Self {
        Self { timestamp: record.at, level: record.level, content: record.text }
    }
}

/// One log line with its level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// When, RFC 3339 (empty when the line did not say).
    pub timestamp: String,
    /// `error`, `warning`, `info` or `debug`.
    pub level: &'static str,
    /// The line.
    pub content: String,
}

impl LogLine {
    /// Split a container log line's timestamp from the line and tell the level (our hosts log
    /// `… LEVEL message`; other programs are judged by their words).
    pub fn parse(text: &str) -> Self {
        let (timestamp, content) = match text.split_once(' ') {
            Some((ts, rest)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' => (ts.to_string(), rest.to_string()),
            _ => (String::new(), text.to_string()),
        };
        let words: Vec<&str> = content.split_whitespace().take(3).collect();
        let lower = content.to_ascii_lowercase();
        let level = if words.contains(&"ERROR") || lower.contains("error") || lower.contains("panic") {
            "error"
        } else if words.contains(&"WARN") || lower.contains("warn") {
            "warning"
        } else if words.contains(&"DEBUG") || words.contains(&"TRACE") {
            "debug"
        } else {
            "info"
        };
        Self { timestamp, level, content }
    }
}

/// How many lines of an instance's log a page shows at most.
pub const LOG_TAIL: usize = 200;

/// A runtime failed to do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The plugin could not be loaded or was rejected.
    #[error("{0}")]
    Plugin(String),
    /// The instance is not running (a swap needs a running instance).
    #[error("the instance is not running")]
    NotRunning,
    /// Docker refused or failed.
    #[error("docker: {0}")]
    Docker(String),
    /// Files could not be prepared.
    #[error("{0}")]
    Io(String),
    /// This runtime cannot run it.
    #[error("{0}")]
    Unsupported(String),
}

/// Runs instances. Implementations keep whatever handles they need, keyed by instance id.
pub trait InstanceRuntime: Send + Sync + 'static {
    /// Its name, for people (`embedded`, `docker`): shown by the API and in logs, never
    /// branched on.
    fn name(&self) -> &'static str;
    /// Start the instance, replacing a running one of the same id.
    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// Stop it (a stopped container is kept).
    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Stop it and remove what the runtime created for it.
    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// What it looks like now, plugin faults and the restarts they caused included.
    fn observe<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Observed>;
    /// Swap the running instance's plugin to `plugin` without dropping its MQTT session, and
    /// return once it runs the new one, with the longest a device waited for it when the
    /// instance said; an error says why it still runs the old one.
    fn swap<'a>(
        &'a self,
        instance: &'a InstanceId,
        plugin: NewPlugin,
    ) -> BoxFuture<'a, Result<Option<Duration>, RuntimeError>>;
    /// The last `lines` lines of the instance's log, oldest first (empty when it has none).
    fn logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, Vec<LogLine>>;
    /// The last `lines` lines of the instance's log, then every new line as it comes.
    fn follow_logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, LogStream>;
    /// Stop everything: the orchestrator is going down.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
