//! The content-addressed plugin store: `plugins/<connector>/<sha256>.wasm`, written once, never
//! changed; each instance's active plugin, `plugins/<connector>/active/<id>/connector.wasm`,
//! replaced by rename so a host watching it (in its container) sees a whole new file; and each
//! instance's plugin history, `plugins/<connector>/history/<id>.json`, its last
//! [`HISTORY_LENGTH`] changes (uploads, rollbacks, updates of all instances, and rejections).

use std::path::PathBuf;

use iot2mqtt_contract::{ConnectorName, InstanceId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::write;

/// How many plugin changes an instance's history keeps.
pub const HISTORY_LENGTH: usize = 50;

/// A plugin version, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// Its content hash (sha256, hex).
    pub sha256: String,
    /// The name it gave (unknown for a file that did not load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What asked for a plugin change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    /// A plugin uploaded for this instance.
    Upload,
    /// A return to the previous version.
    Rollback,
    /// A plugin uploaded for every instance of the connector.
    UpdateAll,
}

/// How a plugin change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// The running instance switched to it live.
    Swapped,
    /// The instance was not running; it starts with it.
    Kept,
    /// It was refused; the instance runs what it ran.
    Rejected,
}

/// One entry of an instance's plugin history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginChange {
    /// When (RFC 3339).
    pub at: String,
    /// What asked for it.
    pub cause: ChangeCause,
    /// The version before (none for an instance that never had one pinned).
    pub from: Option<PluginRef>,
    /// The version asked for.
    pub to: PluginRef,
    /// How it ended.
    pub outcome: ChangeOutcome,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The longest a device waited for the swap, when the instance said (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<f64>,
}

/// The plugin store.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
}

impl PluginStore {
    /// The store rooted at `plugins/`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Keep `wasm`; its sha256. Blocking.
    pub fn put(&self, connector: &ConnectorName, wasm: &[u8]) -> std::io::Result<String> {
        let sha = hex::encode(Sha256::digest(wasm));
        let path = self.path(connector, &sha);
        if !path.exists() {
            write(&path, wasm, 0o644)?;
        }
        Ok(sha)
    }

    /// Where version `sha` is kept.
    pub fn path(&self, connector: &ConnectorName, sha: &str) -> PathBuf {
        self.dir.join(connector.as_str()).join(format!("{sha}.wasm"))
    }

    /// Read version `sha`. Blocking.
    pub fn read(&self, connector: &ConnectorName, sha: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(connector, sha))
    }

    /// The folder mounted as an instance's `/app/plugin`.
    pub fn active_dir(&self, connector: &ConnectorName, instance: &InstanceId) -> PathBuf {
        self.dir.join(connector.as_str()).join("active").join(instance.as_str())
    }

    /// Make version `sha` the instance's active plugin; the active file's path. Blocking.
    pub fn activate(&self, connector: &ConnectorName, instance: &InstanceId, sha: &str) -> std::io::Result<PathBuf> {
        let wasm = self.read(connector, sha)?;
        let active = self.active_dir(connector, instance).join("connector.wasm");
        write(&active, &wasm, 0o644)?;
        Ok(active)
    }

    /// `plugins/<connector>/history/<id>.json`
    fn history_path(&self, connector: &ConnectorName, instance: &InstanceId) -> PathBuf {
        self.dir.join(connector.as_str()).join("history").join(format!("{}.json", instance.as_str()))
    }

    /// An instance's plugin history, oldest first (empty when it has none, or when the file
    /// cannot be read: a history is worth less than an instance page). Blocking.
    pub fn history(&self, connector: &ConnectorName, instance: &InstanceId) -> Vec<PluginChange> {
        let path = self.history_path(connector, instance);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "the plugin history cannot be read: {e}");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Add `change` to an instance's history, dropping the oldest beyond [`HISTORY_LENGTH`].
    /// Blocking.
    pub fn record(
        &self,
        connector: &ConnectorName,
        instance: &InstanceId,
        change: PluginChange,
    ) -> std::io::Result<()> {
        let mut history = self.history(connector, instance);
        history.push(change);
        let excess = history.len().saturating_sub(HISTORY_LENGTH);
        history.drain(..excess);
        let bytes = serde_json::to_vec_pretty(&history).map_err(std::io::Error::other)?;
        write(&self.history_path(connector, instance), &bytes, 0o644)
    }

    /// What the history knows of version `sha` (its name and version from the latest entry
    /// that names them). Blocking.
    pub fn describe(&self, connector: &ConnectorName, instance: &InstanceId, sha: &str) -> PluginRef {
        let known = self
            .history(connector, instance)
            .into_iter()
            .rev()
            .flat_map(|c| [Some(c.to), c.from].into_iter().flatten())
            .find(|r| r.sha256 == sha && r.name.is_some());
        known.unwrap_or_else(|| PluginRef { sha256: sha.to_string(), name: None, version: None })
    }

    /// Forget an instance's history. Blocking.
    pub fn forget_history(&self, connector: &ConnectorName, instance: &InstanceId) -> std::io::Result<()> {
        match std::fs::remove_file(self.history_path(connector, instance)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Forget an instance's active plugin (the versions stay). Blocking.
    pub fn deactivate(&self, connector: &ConnectorName, instance: &InstanceId) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.active_dir(connector, instance)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
