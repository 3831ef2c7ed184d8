//! The connectors available: one folder each under `connectors/` (folders starting with `_`
//! are templates and hidden), with a `manifest.json`, and for a WASM connector the plugin it
//! runs. Its `setup.json` (the wizard, checked strictly by `iot2mqtt-flows`) says which fields
//! are secret, which network it asks for, and which tools it has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use iot2mqtt_contract::ConnectorName;
use iot2mqtt_flows::Setup;
use iot2mqtt_flows::schema::ContainerNetwork;
use serde::{Deserialize, Serialize};

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
    /// What its plugin may reach beyond its devices' own addresses.
    #[serde(default)]
    pub network: Reach,
}

/// Hosts a connector's plugin may reach besides its devices, shown to the person before an
/// instance is created: `{"http": ["api.example.com", "*.example.net:443"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reach {
    /// Hosts for HTTP(S) requests (see `iot2mqtt_runtime::HttpHost`).
    #[serde(default)]
    pub http: Vec<String>,
}

impl Reach {
    /// The declared hosts, checked; the error names the first that is not a host.
    pub fn http_hosts(&self) -> Result<Vec<iot2mqtt_runtime::HttpHost>, String> {
        self.http
            .iter()
            .map(|h| iot2mqtt_runtime::HttpHost::parse(h).map_err(|e| format!("network.http: {e}")))
            .collect()
    }
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
    /// Its setup wizard, when it has one.
    pub setup: Option<Setup>,
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
        manifest.network.http_hosts().map_err(invalid)?;
        if manifest.kind == Kind::Container && !dir.join("Dockerfile").is_file() {
            return Err(invalid("its manifest says \"kind\": \"container\" but its folder has no Dockerfile".into()));
        }
        let setup_path = dir.join("setup.json");
        let setup = match setup_path.exists() {
            true => Some(Setup::load(&setup_path).map_err(|e| invalid(e.to_string()))?),
            false => None,
        };
        let secret_fields = setup.as_ref().map(Setup::secret_fields).unwrap_or_default();
        let network = match setup.as_ref().map(|s| s.requirements.network) {
            Some(ContainerNetwork::Bridge) => Network::Bridge,
            Some(ContainerNetwork::Host) | None => Network::Host,
        };
        Ok(Connector { name: connector, dir, manifest, secret_fields, network, setup })
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

impl Connector {
    /// Whether its instances run a plugin: every WASM connector, and a container connector
    /// whose manifest names one (its image's `iot2mqtt-host` is then its contract bridge).
    pub fn has_plugin(&self) -> bool {
        self.manifest.kind == Kind::Wasm || self.manifest.plugin.is_some()
    }

    /// Its name for people: its setup's, else its manifest's.
    pub fn display_name(&self) -> String {
        self.setup.as_ref().map_or_else(|| self.manifest.display_name.clone(), |s| s.display_name.clone())
    }

    /// Its icon's file name in its folder (`icon.svg` unless its setup names another).
    pub fn icon_file(&self) -> String {
        self.setup.as_ref().and_then(|s| s.branding.icon.clone()).unwrap_or_else(|| "icon.svg".to_string())
    }
}

/// What the catalog shows of a connector (the JSON API's `/api/integrations` and the web UI's
/// integrations page).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Its name.
    pub name: String,
    /// For people.
    pub display_name: String,
    /// What it connects.
    pub description: String,
    /// Its version.
    pub version: String,
    /// How it runs.
    pub kind: Kind,
    /// Who wrote it.
    pub author: Option<String>,
    /// Accent colour and category.
    pub branding: SummaryBranding,
    /// Where its icon is served; `None` when its folder has none.
    pub icon_url: Option<String>,
    /// Its setup flows.
    pub flows: Vec<FlowSummary>,
    /// Its setup tools.
    pub tools: Vec<String>,
    /// The network it asks for.
    pub network: Network,
    /// Hosts its plugin may reach over HTTP besides its devices (the manifest's `network.http`).
    pub reaches: Vec<String>,
    /// How many instances it has.
    pub instances: usize,
    /// Always false here (see [`Listed::Broken`]).
    pub broken: bool,
}

/// Accent colour and category of a connector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SummaryBranding {
    /// `#rrggbb`.
    pub color: Option<String>,
    /// `lighting`, `climate`…
    pub category: Option<String>,
}

/// A setup flow as the catalog lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowSummary {
    /// Its id.
    pub id: String,
    /// For people.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Started when none is asked for.
    pub default: bool,
}

/// A connector folder as the catalog lists it: usable, or broken with the reason.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Listed {
    /// A usable connector.
    Usable(Box<Summary>),
    /// A connector whose manifest or setup is broken.
    Broken {
        /// Its folder's name.
        name: String,
        /// Always true.
        broken: bool,
        /// What breaks it (file, path, problem).
        error: String,
        /// How many instances it has.
        instances: usize,
    },
}

impl Summary {
    /// The summary of `connector`, which has `instances` instances.
    pub fn of(connector: &Connector, instances: usize) -> Self {
        let manifest = &connector.manifest;
        let setup = connector.setup.as_ref();
        let branding = setup.map(|s| s.branding.clone()).unwrap_or_default();
        Self {
            name: connector.name.to_string(),
            display_name: connector.display_name(),
            description: setup
                .map(|s| s.description.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| manifest.description.clone()),
            version: manifest.version.clone(),
            kind: manifest.kind,
            author: setup.and_then(|s| s.author.clone()).or_else(|| manifest.author.clone()),
            branding: SummaryBranding { color: branding.color, category: branding.category },
            icon_url: connector
                .dir
                .join(connector.icon_file())
                .is_file()
                .then(|| format!("/api/integrations/{}/icon", connector.name)),
            flows: setup
                .map(|s| {
                    s.flows
                        .iter()
                        .map(|f| FlowSummary {
                            id: f.id.clone(),
                            name: f.name.clone(),
                            description: f.description.clone(),
                            default: f.default,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            tools: setup.map(|s| s.tools.keys().cloned().collect()).unwrap_or_default(),
            network: connector.network,
            reaches: manifest.network.http.clone(),
            instances,
            broken: false,
        }
    }
}

impl Catalog {
    /// Every connector folder, usable or broken; `counts` says how many instances each has.
    /// Blocking (it reads the folders).
    pub fn list(&self, counts: &std::collections::BTreeMap<String, usize>) -> Vec<Listed> {
        self.names()
            .into_iter()
            .map(|name| {
                let instances = counts.get(&name).copied().unwrap_or(0);
                match self.get(&name) {
                    Ok(connector) => Listed::Usable(Box::new(Summary::of(&connector, instances))),
                    Err(e) => Listed::Broken { name, broken: true, error: e.to_string(), instances },
                }
            })
            .collect()
    }
}
