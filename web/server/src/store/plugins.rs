//! The content-addressed plugin store: `plugins/<connector>/<sha256>.wasm`, written once, never
//! changed; and each instance's active plugin, `plugins/<connector>/active/<id>/connector.wasm`,
//! replaced by rename so a host watching it (in its container) sees a whole new file.

use std::path::PathBuf;

use iot2mqtt_contract::{ConnectorName, InstanceId};
use sha2::{Digest, Sha256};

use super::atomic::write;

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

    /// Forget an instance's active plugin (the versions stay). Blocking.
    pub fn deactivate(&self, connector: &ConnectorName, instance: &InstanceId) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.active_dir(connector, instance)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
