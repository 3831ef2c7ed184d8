//! Instance files: `instances/<connector>/<id>.json`, one per instance, written atomically
//! under the directory's lock. Ids are unique across connectors (they name MQTT topics).

use std::path::{Path, PathBuf};

use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{ConnectorName, InstanceId};

use super::atomic::{DirLock, write};

/// An instance file on disk.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    /// The connector folder it lives in.
    pub connector: ConnectorName,
    /// Its content.
    pub config: InstanceConfig,
}

/// A file in `instances/` that cannot be used.
#[derive(Debug, Clone)]
pub struct BrokenInstance {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// The instance files.
#[derive(Debug, Clone)]
pub struct InstanceStore {
    dir: PathBuf,
}

impl InstanceStore {
    /// The store rooted at `instances/`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `instances/<connector>/`: what an instance's container sees as `/app/instances`.
    pub fn connector_dir(&self, connector: &ConnectorName) -> PathBuf {
        self.dir.join(connector.as_str())
    }

    /// Every instance, and the files that could not be read.
    pub fn list(&self) -> std::io::Result<(Vec<StoredInstance>, Vec<BrokenInstance>)> {
        let mut found = Vec::new();
        let mut broken = Vec::new();
        for connector_dir in read_dir_sorted(&self.dir)? {
            let Some(name) = connector_dir.file_name().and_then(|n| n.to_str()) else { continue };
            let Ok(connector) = ConnectorName::new(name) else { continue };
            if !connector_dir.is_dir() {
                continue;
            }
            for file in read_dir_sorted(&connector_dir)? {
                let is_json = file.extension().is_some_and(|e| e == "json");
                let hidden = file.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if !is_json || hidden {
                    continue;
                }
                match InstanceConfig::load(&file) {
                    Ok(config) if file.file_stem().is_some_and(|s| s == config.instance_id.as_str()) => {
                        found.push(StoredInstance { connector: connector.clone(), config });
                    }
                    Ok(config) => broken.push(BrokenInstance {
                        error: format!("the file is named after another id than \"{}\"", config.instance_id),
                        path: file,
                    }),
                    Err(e) => broken.push(BrokenInstance { path: file, error: e.to_string() }),
                }
            }
        }
        Ok((found, broken))
    }

    /// The instance with this id, in whatever connector folder it is.
    pub fn find(&self, id: &InstanceId) -> std::io::Result<Option<StoredInstance>> {
        for connector_dir in read_dir_sorted(&self.dir)? {
            let path = connector_dir.join(format!("{id}.json"));
            if !path.exists() {
                continue;
            }
            let Some(connector) =
                connector_dir.file_name().and_then(|n| n.to_str()).and_then(|n| ConnectorName::new(n).ok())
            else {
                continue;
            };
            let config = InstanceConfig::load(&path).map_err(std::io::Error::other)?;
            return Ok(Some(StoredInstance { connector, config }));
        }
        Ok(None)
    }

    /// Write an instance file (atomically, under the folder's lock). Blocking.
    pub fn write(&self, connector: &ConnectorName, config: &InstanceConfig) -> std::io::Result<()> {
        let dir = self.connector_dir(connector);
        let _lock = DirLock::acquire(&dir)?;
        let bytes = serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?;
        write(&dir.join(format!("{}.json", config.instance_id)), &bytes, 0o644)
    }

    /// Move an instance file to `.backup/<id>_<utc time>.json`; the backup's path. Blocking.
    pub fn remove(&self, connector: &ConnectorName, id: &InstanceId) -> std::io::Result<PathBuf> {
        let dir = self.connector_dir(connector);
        let _lock = DirLock::acquire(&dir)?;
        let file = dir.join(format!("{id}.json"));
        let stamp = iot2mqtt_contract::time::now().replace([':', '.'], "-");
        let backup = dir.join(".backup").join(format!("{id}_{stamp}.json"));
        let bytes = std::fs::read(&file)?;
        write(&backup, &bytes, 0o600)?;
        std::fs::remove_file(&file)?;
        Ok(backup)
    }
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            Ok(paths)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
