//! Everything `iot2mqtt-host` reads at start: the environment (over `/app/.env`), the
//! instance file, the secrets file, the plugin path and the host's own knobs.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::settings::Env;
use iot2mqtt_contract::{ConnectorName, InstanceId, MqttSettings, creds, refreshed};
use iot2mqtt_runtime::InstanceOptions;

use crate::refreshed::SealedStore;

/// Why the host could not start, and the exit code that says so.
#[derive(Debug)]
pub(crate) struct StartError {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl StartError {
    /// A problem with configuration or files: exit 1.
    pub(crate) fn failure(error: anyhow::Error) -> Self {
        Self { code: 1, error }
    }

    /// `INSTANCE_NAME` missing or invalid: exit 2 (contract, section 1).
    fn usage(error: anyhow::Error) -> Self {
        Self { code: 2, error }
    }
}

/// The host's configuration.
#[derive(Debug)]
pub(crate) struct HostSettings {
    pub(crate) config: InstanceConfig,
    pub(crate) mqtt: MqttSettings,
    pub(crate) plugin: PathBuf,
    pub(crate) cache_dir: Option<PathBuf>,
    /// `IOT2MQTT_SHARED_CACHE_DIR`: compiled plugins serve wrote, read but never written.
    pub(crate) shared_cache_dir: Option<PathBuf>,
    pub(crate) options: InstanceOptions,
}

impl HostSettings {
    pub(crate) fn load() -> Result<Self, StartError> {
        let dotenv = std::env::var_os("IOT2MQTT_DOTENV").map_or_else(|| PathBuf::from("/app/.env"), PathBuf::from);
        let env = Env::load(&dotenv).context("cannot read the environment").map_err(StartError::failure)?;
        let name = env
            .get("INSTANCE_NAME")
            .ok_or_else(|| anyhow!("INSTANCE_NAME is not set: it names the instance to run"))
            .map_err(StartError::usage)?;
        let instance = InstanceId::new(name).map_err(|e| StartError::usage(anyhow!("INSTANCE_NAME: {e}")))?;
        let mut mqtt = MqttSettings::from_env(&env).map_err(|e| StartError::failure(e.into()))?;

        let dir = path(&env, "IOT2MQTT_INSTANCES_DIR", "/app/instances");
        let file = dir.join(format!("{instance}.json"));
        let mut config = InstanceConfig::load(&file).map_err(|e| StartError::failure(e.into()))?;
        if config.instance_id != instance {
            return Err(StartError::failure(anyhow!(
                "{} is for instance \"{}\", not \"{instance}\"",
                file.display(),
                config.instance_id
            )));
        }
        if let Some(connector) = env.get("CONNECTOR_TYPE") {
            let connector =
                ConnectorName::new(connector).map_err(|e| StartError::failure(anyhow!("CONNECTOR_TYPE: {e}")))?;
            config.connector_type = Some(connector);
        }
        let secrets_dir = path(&env, "IOT2MQTT_SECRETS_DIR", "/run/secrets");
        let mut secrets = read_secrets(&secrets_dir.join(format!("{instance}_creds"))).map_err(StartError::failure)?;
        let mut options = InstanceOptions::default();
        // In a container: secrets the plugin refreshes are sealed in its cache folder.
        if let Some(file) = env.get("IOT2MQTT_REFRESHED_SECRETS").filter(|f| !f.is_empty()) {
            let key_path = secrets_dir.join(refreshed::key_file(instance.as_str()));
            let key = std::fs::read_to_string(&key_path)
                .map_err(|e| {
                    anyhow!("IOT2MQTT_REFRESHED_SECRETS is set, but {} cannot be read: {e}", key_path.display())
                })
                .and_then(|text| {
                    refreshed::RefreshKey::parse(&text).map_err(|e| anyhow!("{}: {e}", key_path.display()))
                })
                .map_err(StartError::failure)?;
            let store = SealedStore::open(PathBuf::from(file), key, instance.as_str(), &mut secrets);
            options.secrets = iot2mqtt_runtime::SecretKeeper::new(std::sync::Arc::new(store));
        }
        config.merge_secrets(secrets);
        let login =
            read_secrets(&secrets_dir.join(creds::mqtt_file(instance.as_str()))).map_err(StartError::failure)?;
        if let Some(user) = login.get(creds::MQTT_USERNAME) {
            mqtt.username = Some(user.clone());
            mqtt.password =
                login.get(creds::MQTT_PASSWORD).map(|p| iot2mqtt_contract::settings::Secret::new(p.as_str()));
        }

        // Certificates are read again on every connect; check now that they can be read at all.
        if let Some(tls) = iot2mqtt_runtime::client_tls(&mqtt) {
            tls.client_config().context("MQTT_TLS").map_err(StartError::failure)?;
        }

        if let Some(mb) = env.get("IOT2MQTT_MEMORY_LIMIT_MB") {
            let mb: usize = mb
                .parse()
                .ok()
                .filter(|mb| (1..=4096).contains(mb))
                .ok_or_else(|| StartError::failure(anyhow!("IOT2MQTT_MEMORY_LIMIT_MB: must be 1 to 4096")))?;
            options.memory_limit = mb << 20;
        }
        // The hosts the connector's manifest declares for HTTP, beside its devices.
        if let Some(hosts) = env.get("IOT2MQTT_HTTP_HOSTS") {
            options.http_hosts = hosts
                .split(',')
                .filter(|h| !h.trim().is_empty())
                .map(iot2mqtt_runtime::HttpHost::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| StartError::failure(anyhow!("IOT2MQTT_HTTP_HOSTS: {e}")))?;
        }
        Ok(Self {
            config,
            mqtt,
            plugin: path(&env, "IOT2MQTT_PLUGIN", "/app/plugin/connector.wasm"),
            cache_dir: cache_dir(&env),
            shared_cache_dir: env.get("IOT2MQTT_SHARED_CACHE_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
            options,
        })
    }
}

fn path(env: &Env, name: &str, default: &str) -> PathBuf {
    PathBuf::from(env.get(name).unwrap_or(default))
}

/// `IOT2MQTT_CACHE_DIR`, else `$XDG_CACHE_HOME/iot2mqtt`, else `$HOME/.cache/iot2mqtt`, else
/// the system's temporary directory. `off` disables the cache.
fn cache_dir(env: &Env) -> Option<PathBuf> {
    match env.get("IOT2MQTT_CACHE_DIR") {
        Some("off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(
            env.get("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("iot2mqtt"),
        ),
    }
}

/// The secrets file is optional; when present it must parse.
fn read_secrets(path: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => creds::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
