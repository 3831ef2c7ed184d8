//! The instances service: instance files, their secrets and plugins, and the runtime that runs
//! them. It owns the desired state (an instance's `enabled`, on disk) and asks the runtime for
//! the observed one. Every change goes through here, one at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{ConnectorName, InstanceId, MqttSettings, Topics};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::catalog::{Catalog, CatalogError, Connector};
use crate::error::AppError;
use crate::mqtt::MqttService;
use crate::request::InstanceRequest;
use crate::runtime::{InstanceRuntime, Observed, RunSpec};
use crate::secrets::{MASK, REFERENCE, SecretsManager};
use crate::store::DataDir;
use crate::store::instances::{InstanceStore, StoredInstance};
use crate::store::plugins::PluginStore;

/// The largest plugin accepted by upload.
pub const MAX_PLUGIN_BYTES: usize = 32 << 20;
/// How long a container's host gets to report a swapped plugin.
const SWAP_REPORT_DEADLINE: Duration = Duration::from_secs(20);

/// An instance as the API shows it: its file (secrets as references) and its state.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// The instance file.
    #[serde(flatten)]
    pub config: Value,
    /// Names of its secrets (never their values).
    pub secrets: Vec<String>,
    /// Desired and observed state.
    pub status: Status,
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

/// The instances service.
pub struct Instances {
    runtime: Arc<dyn InstanceRuntime>,
    store: InstanceStore,
    secrets: Arc<SecretsManager>,
    plugins: PluginStore,
    catalog: Catalog,
    data: DataDir,
    mqtt: MqttService,
    validator: iot2mqtt_runtime::Runtime,
    settings: std::sync::Mutex<MqttSettings>,
    errors: std::sync::Mutex<HashMap<InstanceId, String>>,
    restarts: std::sync::Mutex<HashMap<InstanceId, u64>>,
    serial: Mutex<()>,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances").field("runtime", &self.runtime.name()).finish_non_exhaustive()
    }
}

impl Instances {
    /// The service over `data`, running instances on `runtime`.
    pub fn new(
        runtime: Arc<dyn InstanceRuntime>,
        data: DataDir,
        secrets: SecretsManager,
        catalog: Catalog,
        mqtt: MqttService,
        settings: MqttSettings,
    ) -> anyhow::Result<Self> {
        let validator =
            iot2mqtt_runtime::Runtime::new(iot2mqtt_runtime::EngineConfig { cache_dir: Some(data.cache("validate")) })?;
        Ok(Self {
            runtime,
            store: InstanceStore::new(data.instances()),
            plugins: PluginStore::new(data.plugins()),
            secrets: Arc::new(secrets),
            catalog,
            data,
            mqtt,
            validator,
            settings: std::sync::Mutex::new(settings),
            errors: std::sync::Mutex::default(),
            restarts: std::sync::Mutex::default(),
            serial: Mutex::new(()),
        })
    }

    /// The runtime's name.
    pub fn runtime_name(&self) -> &'static str {
        self.runtime.name()
    }

    /// The catalog of connectors.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Start every enabled instance on disk (after a start, a reboot, a restored backup).
    pub async fn reconcile(&self) {
        let (found, broken) = match blocking({
            let store = self.store.clone();
            move || store.list()
        })
        .await
        {
            Ok(listed) => listed,
            Err(e) => return tracing::error!("cannot list instances: {e}"),
        };
        for file in broken {
            tracing::warn!(path = %file.path.display(), "skipping an unusable instance file: {}", file.error);
        }
        for instance in found.into_iter().filter(|i| i.config.enabled) {
            let id = instance.config.instance_id.clone();
            if let Err(e) = self.start_stored(&instance).await {
                tracing::error!(instance = %id, "cannot start: {e}");
            }
        }
    }

    /// How many instances each connector has.
    pub async fn counts(&self) -> Result<BTreeMap<String, usize>, AppError> {
        let store = self.store.clone();
        let (found, _) = blocking(move || store.list()).await.map_err(AppError::internal)?;
        let mut counts = BTreeMap::new();
        for instance in found {
            *counts.entry(instance.connector.to_string()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The engine that checks uploaded plugins; setup tools run on it too.
    pub fn sandbox(&self) -> iot2mqtt_runtime::Runtime {
        self.validator.clone()
    }

    /// Every instance.
    pub async fn list(&self) -> Result<Vec<InstanceView>, AppError> {
        let store = self.store.clone();
        let (found, _) = blocking(move || store.list()).await.map_err(AppError::internal)?;
        let mut views = Vec::with_capacity(found.len());
        for instance in found {
            views.push(self.view(&instance).await?);
        }
        Ok(views)
    }

    /// One instance.
    pub async fn get(&self, connector: &str, id: &str) -> Result<InstanceView, AppError> {
        let instance = self.find(connector, id).await?;
        self.view(&instance).await
    }

    /// Create an instance from an API body.
    pub async fn create(&self, body: Value) -> Result<InstanceView, AppError> {
        let request = InstanceRequest::parse(body)?;
        let connector_name =
            request.connector_type.clone().ok_or_else(|| AppError::invalid("connector_type", "is required"))?;
        let connector = self.connector(&connector_name, "connector_type")?;
        let id = request.resolve_id()?;
        let _serial = self.serial.lock().await;
        if self.lookup(&id).await?.is_some() {
            return Err(AppError::Conflict {
                field: Some("instance_id".into()),
                message: format!("an instance \"{id}\" exists already"),
            });
        }
        let wasm = blocking({
            let (catalog, connector) = (self.catalog.clone(), connector.clone());
            move || catalog.plugin(&connector)
        })
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
        let sha = self.keep_plugin(&connector.name, wasm).await?;
        let now = iot2mqtt_contract::time::now();
        let (config, secrets) =
            build_config(&id, &connector, request, BTreeMap::new(), Some(now.clone()), now, json!({"sha256": sha}))?;
        self.save(&connector.name, &config, Some(&secrets)).await?;
        let stored = StoredInstance { connector: connector.name.clone(), config };
        if stored.config.enabled {
            self.start_or_record(&stored).await;
        }
        tracing::info!(instance = %id, connector = %connector.name, "instance created");
        self.view(&stored).await
    }

    /// Replace an instance's configuration and restart it.
    pub async fn update(&self, connector: &str, id: &str, body: Value) -> Result<InstanceView, AppError> {
        let _serial = self.serial.lock().await;
        let old = self.find(connector, id).await?;
        let mut request = InstanceRequest::parse(body)?;
        if request.connector_type.as_deref().is_some_and(|c| c != old.connector.as_str()) {
            return Err(AppError::invalid("connector_type", "an instance cannot change its connector"));
        }
        if request.instance_id.as_ref().is_some_and(|i| *i != old.config.instance_id) {
            return Err(AppError::invalid("instance_id", "an instance cannot change its id"));
        }
        request.instance_id = Some(old.config.instance_id.clone());
        let connector = self.connector(old.connector.as_str(), "connector_type")?;
        let previous_secrets = self.load_secrets(&old.config.instance_id).await?;
        let plugin = old.config.extra.get("plugin").cloned().unwrap_or(Value::Null);
        let now = iot2mqtt_contract::time::now();
        let (config, secrets) = build_config(
            &old.config.instance_id,
            &connector,
            request,
            previous_secrets,
            old.config.created_at.clone(),
            now,
            plugin,
        )?;
        self.save(&connector.name, &config, Some(&secrets)).await?;
        let stored = StoredInstance { connector: connector.name.clone(), config };
        if stored.config.enabled {
            self.start_or_record(&stored).await;
        } else {
            self.runtime.stop(&stored.config.instance_id).await.map_err(AppError::internal)?;
        }
        self.view(&stored).await
    }

    /// Stop and delete an instance: its file is backed up, its secrets, plugin folder and
    /// retained topics go.
    pub async fn delete(&self, connector: &str, id: &str) -> Result<(), AppError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        let id = instance.config.instance_id.clone();
        self.runtime.remove(&id).await.map_err(AppError::internal)?;
        let (store, plugins, connector) = (self.store.clone(), self.plugins.clone(), instance.connector.clone());
        let cache = self.data.cache(id.as_str());
        let id_for_files = id.clone();
        let backup = blocking(move || {
            let backup = store.remove(&connector, &id_for_files)?;
            plugins.deactivate(&connector, &id_for_files)?;
            let _ = std::fs::remove_dir_all(cache);
            Ok::<_, std::io::Error>(backup)
        })
        .await
        .map_err(AppError::internal)?;
        let secrets_id = id.clone();
        self.secrets_blocking(move |s| s.remove(&secrets_id)).await?;
        let cleared = self.mqtt.clear_retained(&id);
        tracing::info!(instance = %id, backup = %backup.display(), cleared, "instance deleted");
        Ok(())
    }

    /// Start (and mark to run at every start).
    pub async fn start(&self, connector: &str, id: &str) -> Result<InstanceView, AppError> {
        let _serial = self.serial.lock().await;
        let mut instance = self.find(connector, id).await?;
        if !instance.config.enabled {
            instance.config.enabled = true;
            self.save(&instance.connector, &instance.config, None).await?;
        }
        self.start_or_record(&instance).await;
        self.view(&instance).await
    }

    /// Stop (and keep stopped across starts).
    pub async fn stop(&self, connector: &str, id: &str) -> Result<InstanceView, AppError> {
        let _serial = self.serial.lock().await;
        let mut instance = self.find(connector, id).await?;
        if instance.config.enabled {
            instance.config.enabled = false;
            self.save(&instance.connector, &instance.config, None).await?;
        }
        self.runtime.stop(&instance.config.instance_id).await.map_err(AppError::internal)?;
        self.view(&instance).await
    }

    /// Restart.
    pub async fn restart(&self, connector: &str, id: &str) -> Result<InstanceView, AppError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        *lock(&self.restarts).entry(instance.config.instance_id.clone()).or_default() += 1;
        self.start_or_record(&instance).await;
        self.view(&instance).await
    }

    /// Replace an instance's plugin with `wasm`: validate it, keep it, swap it live. The
    /// version it replaces is kept for `rollback`.
    pub async fn upload_plugin(&self, connector: &str, id: &str, wasm: Vec<u8>) -> Result<Value, AppError> {
        if wasm.len() > MAX_PLUGIN_BYTES {
            return Err(AppError::TooLarge(format!("a plugin may have at most {MAX_PLUGIN_BYTES} bytes")));
        }
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        self.switch_plugin(instance, wasm, None).await
    }

    /// Go back to the plugin version used before the last upload.
    pub async fn rollback_plugin(&self, connector: &str, id: &str) -> Result<Value, AppError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        let previous = plugin_field(&instance.config, "previous")
            .ok_or_else(|| AppError::Invalid { field: None, message: "there is no previous plugin version".into() })?;
        let wasm = blocking({
            let (plugins, connector, sha) = (self.plugins.clone(), instance.connector.clone(), previous.clone());
            move || plugins.read(&connector, &sha)
        })
        .await
        .map_err(|e| AppError::internal(format!("the previous plugin version is missing: {e}")))?;
        self.switch_plugin(instance, wasm, Some(previous)).await
    }

    /// Restart every running instance with new MQTT settings.
    pub async fn reconfigure(&self, settings: MqttSettings) {
        *lock(&self.settings) = settings;
        self.reconcile().await;
    }

    /// Stop everything (the orchestrator is going down).
    pub async fn shutdown(&self) {
        self.runtime.shutdown().await;
    }

    async fn switch_plugin(
        &self,
        mut instance: StoredInstance,
        wasm: Vec<u8>,
        expected: Option<String>,
    ) -> Result<Value, AppError> {
        let plugin = self
            .validator
            .load_plugin(wasm.clone())
            .await
            .map_err(|e| AppError::Invalid { field: None, message: e.to_string() })?;
        let sha = self.keep_plugin(&instance.connector, wasm.clone()).await?;
        debug_assert!(expected.is_none_or(|e| e == sha));
        let current = plugin_field(&instance.config, "sha256");
        let id = instance.config.instance_id.clone();
        let running = self.runtime.observe(&id).await.running;
        let mut live = self.mqtt.subscribe();
        self.activate(&instance.connector, &id, &sha).await?;
        if running {
            let swapped = match self.runtime.name() {
                "docker" => self.await_container_swap(&id, &sha, &mut live).await,
                _ => self.runtime.swap(&id, wasm).await.map_err(|e| e.to_string()),
            };
            if let Err(message) = swapped {
                if let Some(current) = &current {
                    let _ = self.activate(&instance.connector, &id, current).await;
                }
                return Err(AppError::Invalid { field: None, message });
            }
        }
        instance.config.extra.insert("plugin".into(), json!({"sha256": sha, "previous": current}));
        instance.config.updated_at = Some(iot2mqtt_contract::time::now());
        self.save(&instance.connector, &instance.config, None).await?;
        let about = plugin.about();
        tracing::info!(instance = %id, plugin = %about.name, version = %about.version, %sha, "plugin replaced");
        Ok(
            json!({"sha256": sha, "previous": current, "name": about.name, "version": about.version, "swapped": running}),
        )
    }

    /// Wait until a container's host reports the new plugin on MQTT, or rejects it.
    async fn await_container_swap(
        &self,
        id: &InstanceId,
        sha: &str,
        live: &mut tokio::sync::broadcast::Receiver<Arc<crate::mqtt::Live>>,
    ) -> Result<(), String> {
        let topics = Topics::new(&self.mqtt.settings().base_topic, id);
        let (info, error) = (topics.info(), topics.instance_error());
        let wait = async {
            loop {
                let Ok(message) = live.recv().await else { continue };
                let payload: Value = serde_json::from_str(&message.payload).unwrap_or(Value::Null);
                if message.topic == info && payload.pointer("/plugin/sha256").and_then(Value::as_str) == Some(sha) {
                    return Ok(());
                }
                if message.topic == error && payload["error_code"] == "PLUGIN_REJECTED" {
                    return Err(payload["message"].as_str().unwrap_or("the plugin was rejected").to_string());
                }
            }
        };
        tokio::time::timeout(SWAP_REPORT_DEADLINE, wait)
            .await
            .unwrap_or_else(|_| Err("the instance did not report the new plugin in time".to_string()))
    }

    async fn start_or_record(&self, instance: &StoredInstance) {
        let id = instance.config.instance_id.clone();
        match self.start_stored(instance).await {
            Ok(()) => {
                lock(&self.errors).remove(&id);
            }
            Err(e) => {
                tracing::error!(instance = %id, "cannot start: {e}");
                lock(&self.errors).insert(id, e.to_string());
            }
        }
    }

    async fn start_stored(&self, instance: &StoredInstance) -> Result<(), AppError> {
        let connector =
            self.catalog.get(instance.connector.as_str()).map_err(|e| AppError::Unavailable(e.to_string()))?;
        let id = &instance.config.instance_id;
        let sha = match plugin_field(&instance.config, "sha256") {
            Some(sha) if self.plugins.path(&connector.name, &sha).exists() => sha,
            _ => {
                tracing::warn!(instance = %id, "its plugin version is not in the store; using the connector's current one");
                let wasm = blocking({
                    let (catalog, connector) = (self.catalog.clone(), connector.clone());
                    move || catalog.plugin(&connector)
                })
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?;
                self.keep_plugin(&connector.name, wasm).await?
            }
        };
        let plugin = self.activate(&connector.name, id, &sha).await?;
        let secrets = self.load_secrets(id).await?;
        let spec = RunSpec {
            connector: connector.name.clone(),
            config: instance.config.clone(),
            secrets,
            plugin,
            mqtt: lock(&self.settings).clone(),
            instances_dir: self.store.connector_dir(&connector.name),
            cache_dir: self.data.cache(id.as_str()),
            memory_mb: connector.manifest.resources.memory_mb,
            cpus: connector.manifest.resources.cpus,
            network: connector.network,
        };
        self.mqtt.forget_faults(id);
        self.runtime.start(spec).await.map_err(|e| AppError::Unavailable(e.to_string()))
    }

    async fn view(&self, instance: &StoredInstance) -> Result<InstanceView, AppError> {
        let id = &instance.config.instance_id;
        let mut observed = self.runtime.observe(id).await;
        if !self.runtime.sees_plugin_faults()
            && let Some(faults) = self.mqtt.reported_faults(id)
        {
            observed.restarts += faults.count;
            observed.crash_looping |= faults.times.in_a_row(std::time::Instant::now());
            observed.last_error.get_or_insert(faults.last);
        }
        if let Some(error) = lock(&self.errors).get(id) {
            observed.last_error.get_or_insert_with(|| error.clone());
        }
        let topics = Topics::new(&self.mqtt.settings().base_topic, id);
        let mqtt_status = self.mqtt.get(&topics.status()).map_or_else(|| "unknown".to_string(), |c| c.payload);
        let secrets = self.load_secrets(id).await.map(|s| s.into_keys().collect()).unwrap_or_default();
        let mut config = serde_json::to_value(&instance.config).map_err(AppError::internal)?;
        config["connector_type"] = json!(instance.connector);
        Ok(InstanceView {
            config,
            secrets,
            status: Status {
                desired: if instance.config.enabled { "running" } else { "stopped" },
                observed,
                mqtt_status,
                api_restarts: lock(&self.restarts).get(id).copied().unwrap_or(0),
            },
        })
    }

    fn connector(&self, name: &str, field: &str) -> Result<Connector, AppError> {
        self.catalog.get(name).map_err(|e| match e {
            CatalogError::Unknown(_) => AppError::invalid(field, e.to_string()),
            CatalogError::Invalid { .. } => AppError::invalid(field, e.to_string()),
        })
    }

    async fn find(&self, connector: &str, id: &str) -> Result<StoredInstance, AppError> {
        let not_found = || AppError::NotFound(format!("no instance \"{id}\" of connector \"{connector}\""));
        let connector = ConnectorName::new(connector).map_err(|_| not_found())?;
        let id = InstanceId::new(id).map_err(|_| not_found())?;
        match self.lookup(&id).await? {
            Some(found) if found.connector == connector => Ok(found),
            _ => Err(not_found()),
        }
    }

    async fn lookup(&self, id: &InstanceId) -> Result<Option<StoredInstance>, AppError> {
        let (store, id) = (self.store.clone(), id.clone());
        blocking(move || store.find(&id)).await.map_err(AppError::internal)
    }

    async fn keep_plugin(&self, connector: &ConnectorName, wasm: Vec<u8>) -> Result<String, AppError> {
        let (plugins, connector) = (self.plugins.clone(), connector.clone());
        blocking(move || plugins.put(&connector, &wasm)).await.map_err(AppError::internal)
    }

    async fn activate(
        &self,
        connector: &ConnectorName,
        id: &InstanceId,
        sha: &str,
    ) -> Result<std::path::PathBuf, AppError> {
        let (plugins, connector, id, sha) = (self.plugins.clone(), connector.clone(), id.clone(), sha.to_string());
        blocking(move || plugins.activate(&connector, &id, &sha)).await.map_err(AppError::internal)
    }

    async fn save(
        &self,
        connector: &ConnectorName,
        config: &InstanceConfig,
        secrets: Option<&BTreeMap<String, String>>,
    ) -> Result<(), AppError> {
        if let Some(secrets) = secrets {
            let (id, secrets) = (config.instance_id.clone(), secrets.clone());
            self.secrets_blocking(move |s| s.store(&id, &secrets)).await?;
        }
        let (store, connector, config) = (self.store.clone(), connector.clone(), config.clone());
        blocking(move || store.write(&connector, &config)).await.map_err(AppError::internal)
    }

    async fn load_secrets(&self, id: &InstanceId) -> Result<BTreeMap<String, String>, AppError> {
        let id = id.clone();
        self.secrets_blocking(move |s| s.load(&id)).await
    }

    async fn secrets_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SecretsManager) -> Result<T, crate::secrets::SecretsError> + Send + 'static,
    ) -> Result<T, AppError> {
        let secrets = Arc::clone(&self.secrets);
        blocking(move || f(&secrets)).await.map_err(AppError::internal)
    }
}

/// Build the instance file and its secrets from a request. Fields the connector declares
/// secret, and the request's `secrets`, go to the secrets (replaced by references in the file);
/// a masked or referenced secret keeps its previous value.
fn build_config(
    id: &InstanceId,
    connector: &Connector,
    request: InstanceRequest,
    previous: BTreeMap<String, String>,
    created_at: Option<String>,
    updated_at: String,
    plugin: Value,
) -> Result<(InstanceConfig, BTreeMap<String, String>), AppError> {
    let mut secrets = BTreeMap::new();
    let mut connection = request.connection;
    for (key, value) in connection.iter_mut() {
        let declared = connector.secret_fields.contains(key) || request.secrets.contains_key(key);
        let Value::String(text) = value else { continue };
        let is_placeholder = text == MASK || text.starts_with(REFERENCE);
        if is_placeholder {
            if let Some(old) = previous.get(key) {
                secrets.insert(key.clone(), old.clone());
            }
            *value = Value::String(format!("{REFERENCE}{key}"));
        } else if declared {
            secrets.insert(key.clone(), std::mem::take(text));
            *value = Value::String(format!("{REFERENCE}{key}"));
        }
    }
    for (key, value) in request.secrets {
        connection.insert(key.clone(), Value::String(format!("{REFERENCE}{key}")));
        secrets.insert(key, value);
    }
    let mut file = Map::new();
    file.insert("instance_id".into(), json!(id));
    file.insert("instance_type".into(), json!("device"));
    file.insert("connector_type".into(), json!(connector.name));
    if let Some(name) = request.friendly_name {
        file.insert("friendly_name".into(), json!(name));
    }
    file.insert("enabled".into(), json!(request.enabled));
    file.insert(
        "update_interval".into(),
        json!(request.update_interval.unwrap_or(iot2mqtt_contract::config::DEFAULT_UPDATE_INTERVAL)),
    );
    file.insert("connection".into(), Value::Object(connection));
    file.insert("devices".into(), Value::Array(request.devices));
    file.insert("groups".into(), Value::Array(request.groups));
    for (key, value) in request.extra {
        file.entry(key).or_insert(value);
    }
    if !plugin.is_null() {
        file.insert("plugin".into(), plugin);
    }
    file.insert("created_at".into(), json!(created_at.unwrap_or_else(|| updated_at.clone())));
    file.insert("updated_at".into(), json!(updated_at));
    let config: InstanceConfig =
        serde_json::from_value(Value::Object(file)).map_err(|e| AppError::invalid("devices", e.to_string()))?;
    config.validate().map_err(|e| {
        let message = e.to_string();
        let field = if message.contains("group") {
            "groups"
        } else if message.contains("update_interval") {
            "update_interval"
        } else {
            "devices"
        };
        AppError::invalid(field, message)
    })?;
    Ok((config, secrets))
}

fn plugin_field(config: &InstanceConfig, key: &str) -> Option<String> {
    config.extra.get("plugin").and_then(|p| p.get(key)).and_then(Value::as_str).map(str::to_string)
}

/// Run file work off the async threads; a panic in it is a panic here.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
