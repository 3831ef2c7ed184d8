//! The connectors available: one folder each under `connectors/` (folders starting with `_`
//! are templates and hidden), with a `manifest.json`, and for a WASM connector the plugin it
//! runs. What the orchestrator needs of a connector's `setup.json` here is which fields are
//! secret and which network the connector asks for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use iot2mqtt_contract::ConnectorName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A connector that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// No such folder (or a hidden one).
    #[error("unknown connector \"{0}\"")]
    Unknown(String),
    /// Its manifest or setup is invalid.
    #[error("connector \"{name}\": {reason}")]
    Invalid {
        /// The connector.
        name: String,
        /// What is wrong, naming the file.
        reason: String,
    },
}

/// A connector's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Its name: the folder's name.
    pub name: String,
    /// For people.
    pub display_name: String,
    /// Semver.
    pub version: String,
    /// What it connects.
    #[serde(default)]
    pub description: String,
    /// How it runs.
    #[serde(default)]
    pub kind: Kind,
    /// For `wasm`: the plugin, `<name>.wasm` in the connector's folder or the plugins directory.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Resource limits of each instance.
    #[serde(default)]
    pub resources: Resources,
    /// Who wrote it.
    #[serde(default)]
    pub author: Option<String>,
    /// Where to read more.
    #[serde(default)]
    pub homepage: Option<String>,
}

/// How a connector's instances run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A WebAssembly plugin in `iot2mqtt-host`.
    #[default]
    Wasm,
    /// A container image of its own (Level 3, supervisord).
    Container,
}

/// Limits of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory, MiB (the plugin's memory cap, and the container's limit).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// CPUs (fractions allowed) for the container.
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// The network an instance's container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network: discovery and a broker on 127.0.0.1 work (the default).
    #[default]
    Host,
    /// Docker's bridge network.
    Bridge,
}

/// A usable connector.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Its name.
    pub name: ConnectorName,
    /// Its folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Names of setup fields that hold secrets.
    pub secret_fields: BTreeSet<String>,
    /// The network it asks for.
    pub network: Network,
}

/// The connectors folder and where built plugins are.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    plugins_dir: Option<PathBuf>,
}

impl Catalog {
    /// The catalog of `dir`, finding plugins there or in `plugins_dir`.
    pub fn new(dir: PathBuf, plugins_dir: Option<PathBuf>) -> Self {
        Self { dir, plugins_dir }
    }

    /// The connectors folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One connector.
    pub fn get(&self, name: &str) -> Result<Connector, CatalogError> {
        let unknown = || CatalogError::Unknown(name.to_string());
        let connector = ConnectorName::new(name).map_err(|_| unknown())?;
        if name.starts_with('_') {
            return Err(unknown());
        }
        let dir = self.dir.join(name);
        let manifest_path = dir.join("manifest.json");
        let invalid = |reason: String| CatalogError::Invalid { name: name.to_string(), reason };
        let text = std::fs::read(&manifest_path).map_err(|_| unknown())?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| invalid(format!("{}: {e}", manifest_path.display())))?;
        if manifest.name != name {
            return Err(invalid(format!("manifest.json names \"{}\", not the folder's name", manifest.name)));
        }
        let (secret_fields, network) = setup_hints(&dir.join("setup.json")).map_err(invalid)?;
        Ok(Connector { name: connector, dir, manifest, secret_fields, network })
    }

    /// Every connector folder's name, hidden ones excluded.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("manifest.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// The plugin of a WASM connector. Blocking.
    pub fn plugin(&self, connector: &Connector) -> Result<Vec<u8>, CatalogError> {
        let name = connector.manifest.plugin.clone().unwrap_or_else(|| connector.name.to_string());
        let file = format!("{}.wasm", name.trim_end_matches(".wasm"));
        let mut candidates = vec![connector.dir.join(&file)];
        if let Some(dir) = &self.plugins_dir {
            candidates.push(dir.join(&file));
        }
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                return Ok(bytes);
            }
        }
        Err(CatalogError::Invalid {
            name: connector.name.to_string(),
            reason: format!(
                "its plugin {file} is in none of {} (build it with `cargo xtask plugins`)",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// Secret field names and the network requirement of a `setup.json` (absent: none, host).
fn setup_hints(path: &Path) -> Result<(BTreeSet<String>, Network), String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(_) => return Ok((BTreeSet::new(), Network::Host)),
    };
    let setup: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut secrets = BTreeSet::new();
    collect_secret_fields(&setup, &mut secrets);
    let network = match setup.pointer("/requirements/network").and_then(Value::as_str) {
        None | Some("host") => Network::Host,
        Some("bridge") => Network::Bridge,
        Some(other) => {
            return Err(format!("{}: requirements.network \"{other}\" is not host or bridge", path.display()));
        }
    };
    Ok((secrets, network))
}

fn collect_secret_fields(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            let secret = map.get("type").and_then(Value::as_str) == Some("password")
                || map.get("secret").and_then(Value::as_bool) == Some(true);
            if let (true, Some(name)) = (secret, map.get("name").and_then(Value::as_str)) {
                out.insert(name.to_string());
            }
            map.values().for_each(|v| collect_secret_fields(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secret_fields(v, out)),
        _ => {}
    }
}
