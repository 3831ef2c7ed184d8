// Just over 500 lines: every operation on instances goes through this one serialized service.
//! The instances service: instance files, their secrets and plugins, and the runtime that runs
//! them. It owns the desired state (an instance's `enabled`, on disk) and asks the runtime for
//! the observed one. Every change goes through here, one at a time.

mod error;
mod file;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iot2mqtt_contract::config::{InstanceConfig, PluginPin};
use iot2mqtt_contract::{ConnectorName, InstanceId, MqttSettings, Topics};
use sha2::Digest as _;
use tokio::sync::Mutex;

use crate::catalog::{Catalog, CatalogError, Connector, Kind};
use crate::mqtt::MqttService;
use crate::mqtt_accounts::BrokerAccounts;
use crate::request::InstanceRequest;
use crate::runtime::{ActivePlugin, InstanceRuntime, LOG_TAIL, LogLine, LogStream, NewPlugin, Program, RunSpec};
use crate::secrets::{InstanceSecrets, SecretsManager};
use crate::store::DataDir;
use crate::store::instances::{InstanceStore, StoredInstance};
use crate::store::plugins::{ChangeCause, ChangeOutcome, PluginChange, PluginRef, PluginStore};
use crate::sync::lock;

/// The largest plugin accepted by upload.
pub const MAX_PLUGIN_BYTES: usize = 32 << 20;
/// How long one instance of a rebuild may take to be built, started and online again (the
/// first build of the base image included).
pub const REBUILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub use error::InstanceError;
use file::build_config;
pub use view::{
    InstanceView, PluginHistory, PluginSwitch, RebuildOutcome, RebuildStep, Rebuilt, Status, UpdateAll, UpdateOutcome,
    UpdateStep,
};

/// The instances service.
pub struct Instances {
    runtime: Arc<dyn InstanceRuntime>,
    store: InstanceStore,
    secrets: Arc<SecretsManager>,
    plugins: PluginStore,
    catalog: Catalog,
    data: DataDir,
    mqtt: MqttService,
    engine: iot2mqtt_runtime::Runtime,
    settings: std::sync::Mutex<MqttSettings>,
    /// The embedded broker's accounts, where each instance gets its own login.
    broker: Option<Arc<BrokerAccounts>>,
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
        engine: iot2mqtt_runtime::Runtime,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            runtime,
            store: InstanceStore::new(data.instances()),
            plugins: PluginStore::new(data.plugins()),
            secrets: Arc::new(secrets),
            catalog,
            data,
            mqtt,
            engine,
            settings: std::sync::Mutex::new(settings),
            broker: None,
            errors: std::sync::Mutex::default(),
            restarts: std::sync::Mutex::default(),
            serial: Mutex::new(()),
        })
    }

    /// Give each instance its own login to the embedded broker.
    pub fn with_broker_accounts(mut self, broker: Arc<BrokerAccounts>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The runtime's name.
    pub fn runtime_name(&self) -> &'static str {
        self.runtime.name()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.root()
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
    pub async fn counts(&self) -> Result<BTreeMap<String, usize>, InstanceError> {
        let store = self.store.clone();
        let (found, _) = blocking(move || store.list()).await.map_err(InstanceError::internal)?;
        let mut counts = BTreeMap::new();
        for instance in found {
            *counts.entry(instance.connector.to_string()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The process's engine: it checks uploaded plugins, runs setup tools and (embedded)
    /// the instances.
    pub fn engine(&self) -> iot2mqtt_runtime::Runtime {
        self.engine.clone()
    }

    /// Every connector of the catalog, usable or broken, with its number of instances.
    pub async fn integrations(&self) -> Result<Vec<crate::catalog::Listed>, InstanceError> {
        let counts = self.counts().await?;
        let catalog = self.catalog.clone();
        Ok(blocking(move || catalog.list(&counts)).await)
    }

    /// Every instance.
    pub async fn list(&self) -> Result<Vec<InstanceView>, InstanceError> {
        let store = self.store.clone();
        let (found, _) = blocking(move || store.list()).await.map_err(InstanceError::internal)?;
        let mut views = Vec::with_capacity(found.len());
        for instance in found {
            views.push(self.view(&instance).await?);
        }
        Ok(views)
    }

    /// One instance.
    pub async fn get(&self, connector: &str, id: &str) -> Result<InstanceView, InstanceError> {
        let instance = self.find(connector, id).await?;
        self.view(&instance).await
    }

    /// Create an instance.
    pub async fn create(&self, request: InstanceRequest) -> Result<InstanceView, InstanceError> {
        let connector_name =
            request.connector_type.clone().ok_or_else(|| InstanceError::invalid("connector_type", "is required"))?;
        let connector = self.connector(&connector_name, "connector_type")?;
        if connector.manifest.kind == Kind::Container && self.runtime.name() != "docker" {
            return Err(InstanceError::invalid(
                "connector_type",
                format!(
                    "connector \"{}\" runs in a container image of its own and needs Docker, but this serve runs \
                     instances in its own process: start serve where a Docker engine answers",
                    connector.name
                ),
            ));
        }
        let id = request.resolve_id()?;
        let _serial = self.serial.lock().await;
        if self.lookup(&id).await?.is_some() {
            return Err(InstanceError::Exists(id));
        }
        let pin = match connector.has_plugin() {
            true => Some(PluginPin { sha256: self.connector_plugin(&connector).await?, previous: None }),
            false => None,
        };
        let now = iot2mqtt_contract::time::now();
        let (config, secrets) = build_config(&id, &connector, request, BTreeMap::new(), Some(now.clone()), now, pin)?;
        self.save(&connector.name, &config, Some(&secrets)).await?;
        let stored = StoredInstance { connector: connector.name.clone(), config };
        if stored.config.enabled {
            self.start_or_record(&stored).await;
        }
        tracing::info!(instance = %id, connector = %connector.name, "instance created");
        self.view(&stored).await
    }

    /// Replace an instance's configuration and restart it.
    pub async fn update(
        &self,
        connector: &str,
        id: &str,
        mut request: InstanceRequest,
    ) -> Result<InstanceView, InstanceError> {
        let _serial = self.serial.lock().await;
        let old = self.find(connector, id).await?;
        if request.connector_type.as_deref().is_some_and(|c| c != old.connector.as_str()) {
            return Err(InstanceError::invalid("connector_type", "an instance cannot change its connector"));
        }
        if request.instance_id.as_ref().is_some_and(|i| *i != old.config.instance_id) {
            return Err(InstanceError::invalid("instance_id", "an instance cannot change its id"));
        }
        request.instance_id = Some(old.config.instance_id.clone());
        let connector = self.connector(old.connector.as_str(), "connector_type")?;
        let previous_secrets = self.load_secrets(&old.config.instance_id).await?;
        // What the edit starts from: a secret it leaves as it was keeps a plugin's refresh.
        let loaded = previous_secrets.clone();
        let now = iot2mqtt_contract::time::now();
        let (config, secrets) = build_config(
            &old.config.instance_id,
            &connector,
            request,
            previous_secrets,
            old.config.created_at.clone(),
            now,
            old.config.plugin.clone(),
        )?;
        let id = old.config.instance_id.clone();
        self.secrets_blocking(move |s| {
            s.update(&id, |now| {
                merge_edit(&loaded, &secrets, now);
                Ok::<(), std::convert::Infallible>(())
            })
            .map(|_| ())
        })
        .await?;
        self.save(&connector.name, &config, None).await?;
        let stored = StoredInstance { connector: connector.name.clone(), config };
        if stored.config.enabled {
            self.start_or_record(&stored).await;
        } else {
            self.runtime.stop(&stored.config.instance_id).await.map_err(InstanceError::internal)?;
        }
        self.view(&stored).await
    }

    /// Stop and delete an instance: its file is backed up, its secrets, plugin folder and
    /// retained topics go.
    pub async fn delete(&self, connector: &str, id: &str) -> Result<(), InstanceError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        let id = instance.config.instance_id.clone();
        self.runtime.remove(&id).await.map_err(InstanceError::internal)?;
        let (store, plugins, connector) = (self.store.clone(), self.plugins.clone(), instance.connector.clone());
        let cache = self.data.cache(id.as_str());
        let id_for_files = id.clone();
        let backup = blocking(move || {
            let backup = store.remove(&connector, &id_for_files)?;
            plugins.deactivate(&connector, &id_for_files)?;
            plugins.forget_history(&connector, &id_for_files)?;
            let _ = std::fs::remove_dir_all(cache);
            Ok::<_, std::io::Error>(backup)
        })
        .await
        .map_err(InstanceError::internal)?;
        let secrets_id = id.clone();
        self.secrets_blocking(move |s| s.remove(&secrets_id)).await?;
        let cleared = self.mqtt.clear_retained(&id);
        if let Some(broker) = &self.broker {
            broker.forget_instance(&id);
        }
        tracing::info!(instance = %id, backup = %backup.display(), cleared, "instance deleted");
        Ok(())
    }

    /// The last `lines` lines of the instance's log (at most [`crate::runtime::LOG_TAIL`] × 50).
    pub async fn logs(&self, connector: &str, id: &str, lines: usize) -> Result<Vec<LogLine>, InstanceError> {
        let instance = self.find(connector, id).await?;
        Ok(self.runtime.logs(&instance.config.instance_id, lines.min(LOG_TAIL * 50)).await)
    }

    /// The last `lines` lines of an instance's log, then every new one.
    pub async fn follow_logs(&self, connector: &str, id: &str, lines: usize) -> Result<LogStream, InstanceError> {
        let instance = self.find(connector, id).await?;
        Ok(self.runtime.follow_logs(&instance.config.instance_id, lines.min(LOG_TAIL * 50)).await)
    }

    /// Start (and mark to run at every start).
    pub async fn start(&self, connector: &str, id: &str) -> Result<InstanceView, InstanceError> {
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
    pub async fn stop(&self, connector: &str, id: &str) -> Result<InstanceView, InstanceError> {
        let _serial = self.serial.lock().await;
        let mut instance = self.find(connector, id).await?;
        if instance.config.enabled {
            instance.config.enabled = false;
            self.save(&instance.connector, &instance.config, None).await?;
        }
        self.runtime.stop(&instance.config.instance_id).await.map_err(InstanceError::internal)?;
        self.view(&instance).await
    }

    /// Restart.
    pub async fn restart(&self, connector: &str, id: &str) -> Result<InstanceView, InstanceError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        *lock(&self.restarts).entry(instance.config.instance_id.clone()).or_default() += 1;
        self.start_or_record(&instance).await;
        self.view(&instance).await
    }

    /// Replace an instance's plugin with `wasm`: validate it, keep it, swap it live. The
    /// version it replaces is kept for `rollback`; the attempt goes in the instance's history.
    pub async fn upload_plugin(&self, connector: &str, id: &str, wasm: Vec<u8>) -> Result<PluginSwitch, InstanceError> {
        if wasm.len() > MAX_PLUGIN_BYTES {
            return Err(InstanceError::PluginTooLarge);
        }
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        self.switch_plugin(instance, wasm, ChangeCause::Upload).await
    }

    /// Go back to the plugin version used before the last upload.
    pub async fn rollback_plugin(&self, connector: &str, id: &str) -> Result<PluginSwitch, InstanceError> {
        let _serial = self.serial.lock().await;
        let instance = self.find(connector, id).await?;
        let previous = instance.config.plugin.as_ref().and_then(|pin| pin.previous.clone()).ok_or_else(|| {
            InstanceError::Invalid { field: None, message: "there is no previous plugin version".into() }
        })?;
        let wasm = blocking({
            let (plugins, connector, sha) = (self.plugins.clone(), instance.connector.clone(), previous.clone());
            move || plugins.read(&connector, &sha)
        })
        .await
        .map_err(|e| InstanceError::internal(format!("the previous plugin version is missing: {e}")))?;
        self.switch_plugin(instance, wasm, ChangeCause::Rollback).await
    }

    /// Swap every instance of `connector` to `wasm`, one by one in the order of their ids,
    /// stopping at the first rejection. The answer says what each instance runs afterwards.
    pub async fn update_all(&self, connector: &str, wasm: Vec<u8>) -> Result<UpdateAll, InstanceError> {
        if wasm.len() > MAX_PLUGIN_BYTES {
            return Err(InstanceError::PluginTooLarge);
        }
        let _serial = self.serial.lock().await;
        let name = ConnectorName::new(connector).map_err(|e| InstanceError::invalid("connector", e.to_string()))?;
        let store = self.store.clone();
        let (stored, _) = blocking(move || store.list()).await.map_err(InstanceError::internal)?;
        let mut instances: Vec<StoredInstance> = stored.into_iter().filter(|i| i.connector == name).collect();
        instances.sort_by(|a, b| a.config.instance_id.as_str().cmp(b.config.instance_id.as_str()));
        let mut steps = Vec::with_capacity(instances.len());
        let mut stopped_at = None;
        for instance in instances {
            let id = instance.config.instance_id.to_string();
            let before = instance.config.plugin.as_ref().map(|pin| pin.sha256.clone());
            if stopped_at.is_some() {
                steps.push(UpdateStep { instance: id, runs: before, outcome: UpdateOutcome::NotTried, detail: None });
                continue;
            }
            match self.switch_plugin(instance, wasm.clone(), ChangeCause::UpdateAll).await {
                Ok(switch) => {
                    let outcome = if switch.swapped { UpdateOutcome::Swapped } else { UpdateOutcome::Kept };
                    steps.push(UpdateStep { instance: id, runs: Some(switch.sha256), outcome, detail: None });
                }
                Err(e) => {
                    stopped_at = Some(id.clone());
                    steps.push(UpdateStep {
                        instance: id,
                        runs: before,
                        outcome: UpdateOutcome::Rejected,
                        detail: Some(e.to_string()),
                    });
                }
            }
        }
        let sha256 = hex::encode(sha2::Sha256::digest(&wasm));
        Ok(UpdateAll { sha256, stopped_at, instances: steps })
    }

    /// Rebuild a container connector's image from its folder and recreate its running
    /// instances one at a time, each after the previous one said `online` again; stop at the
    /// first that does not (within [`REBUILD_DEADLINE`]). Stopped instances are left stopped.
    pub async fn rebuild_all(&self, connector: &str) -> Result<Rebuilt, InstanceError> {
        let found = self.connector(connector, "connector")?;
        if found.manifest.kind != Kind::Container {
            return Err(InstanceError::invalid(
                "connector",
                format!("connector \"{connector}\" runs a plugin; update it by uploading a new one"),
            ));
        }
        let store = self.store.clone();
        let (stored, _) = blocking(move || store.list()).await.map_err(InstanceError::internal)?;
        let mut instances: Vec<StoredInstance> = stored.into_iter().filter(|i| i.connector == found.name).collect();
        instances.sort_by(|a, b| a.config.instance_id.as_str().cmp(b.config.instance_id.as_str()));
        let mut steps = Vec::with_capacity(instances.len());
        let mut stopped_at = None;
        for instance in instances {
            let id = instance.config.instance_id.clone();
            let outcome = match (&stopped_at, instance.config.enabled) {
                (Some(_), _) => Ok(RebuildOutcome::NotTried),
                (None, false) => Ok(RebuildOutcome::Kept),
                (None, true) => self.recreate(&instance).await.map(|()| RebuildOutcome::Recreated),
            };
            let (outcome, detail) = match outcome {
                Ok(outcome) => (outcome, None),
                Err(why) => {
                    stopped_at = Some(id.to_string());
                    (RebuildOutcome::Failed, Some(why))
                }
            };
            tracing::info!(instance = %id, ?outcome, "rebuild of connector {connector}");
            steps.push(RebuildStep { instance: id.to_string(), outcome, detail });
        }
        Ok(Rebuilt { stopped_at, instances: steps })
    }

    /// Start `instance` again (its image built anew when its folder changed) and wait until
    /// it is running and says `online`; why not, otherwise.
    async fn recreate(&self, instance: &StoredInstance) -> Result<(), String> {
        let id = &instance.config.instance_id;
        let status = Topics::new(&self.mqtt.settings().base_topic, id).status();
        let mut live = self.mqtt.subscribe();
        {
            let _serial = self.serial.lock().await;
            self.start_stored(instance).await.map_err(|e| e.to_string())?;
        }
        let deadline = tokio::time::Instant::now() + REBUILD_DEADLINE;
        // Built and started: the runtime no longer reports work in progress.
        loop {
            let observed = self.runtime.observe(id).await;
            match (observed.activity, observed.last_error, observed.running) {
                (Some(_), _, _) => {}
                (None, Some(error), false) => return Err(error),
                (None, _, true) => break,
                (None, None, false) => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("not running after {} s", REBUILD_DEADLINE.as_secs()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        // Its new container announces itself.
        loop {
            match tokio::time::timeout_at(deadline, live.recv()).await {
                Ok(Ok(message)) if message.topic == status && message.payload == "online" && !message.retained => {
                    return Ok(());
                }
                Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err("the MQTT service stopped".into());
                }
                Err(_) => return Err(format!("it did not say online within {} s", REBUILD_DEADLINE.as_secs())),
            }
        }
    }

    /// An instance's plugins: the one pinned, the previous one, and the history of changes
    /// (newest first).
    pub async fn plugin_history(&self, connector: &str, id: &str) -> Result<PluginHistory, InstanceError> {
        let instance = self.find(connector, id).await?;
        let plugins = self.plugins.clone();
        let (connector, id) = (instance.connector.clone(), instance.config.instance_id.clone());
        let pin = instance.config.plugin.clone();
        let created = instance.config.created_at.clone();
        blocking(move || {
            let mut changes = plugins.history(&connector, &id);
            let current = pin.as_ref().map(|p| plugins.describe(&connector, &id, &p.sha256));
            let previous =
                pin.as_ref().and_then(|p| p.previous.as_deref()).map(|sha| plugins.describe(&connector, &id, sha));
            let since = current.as_ref().and_then(|c| {
                changes
                    .iter()
                    .rev()
                    .find(|change| change.to.sha256 == c.sha256 && change.outcome != ChangeOutcome::Rejected)
                    .map(|change| change.at.clone())
            });
            changes.reverse();
            Ok::<_, std::io::Error>(PluginHistory { current, previous, since: since.or(created), changes })
        })
        .await
        .map_err(InstanceError::internal)
        .map(|mut history| {
            let id = &instance.config.instance_id;
            history.current = history.current.map(|r| self.named(id, r));
            history.previous = history.previous.map(|r| self.named(id, r));
            history
        })
    }

    /// `plugin` with its name and version when the history did not know them: from this
    /// process's engine when it has the plugin loaded, else from what the instance said of it
    /// on MQTT (its retained info).
    fn named(&self, id: &InstanceId, mut plugin: PluginRef) -> PluginRef {
        if plugin.name.is_some() {
            return plugin;
        }
        if let Some(loaded) = self.engine.loaded(&plugin.sha256) {
            plugin.name = Some(loaded.about().name.clone());
            plugin.version = Some(loaded.about().version.clone());
            return plugin;
        }
        let topic = Topics::new(&lock(&self.settings).base_topic, id).info();
        let info = self.mqtt.get(&topic).and_then(|c| serde_json::from_str::<serde_json::Value>(&c.payload).ok());
        if let Some(info) = info.filter(|i| i["plugin"]["sha256"] == plugin.sha256.as_str()) {
            plugin.name = info["plugin"]["name"].as_str().map(str::to_string);
            plugin.version = info["plugin"]["version"].as_str().map(str::to_string);
        }
        plugin
    }

    /// The ids of the instances running now, sorted.
    pub async fn running(&self) -> Vec<String> {
        let store = self.store.clone();
        let Ok((found, _)) = blocking(move || store.list()).await else { return Vec::new() };
        let mut running = Vec::new();
        for instance in found {
            if self.runtime.observe(&instance.config.instance_id).await.running {
                running.push(instance.config.instance_id.to_string());
            }
        }
        running.sort();
        running
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

    /// Switch `instance` to `wasm`, recording the attempt (whatever its outcome) in its history.
    async fn switch_plugin(
        &self,
        mut instance: StoredInstance,
        wasm: Vec<u8>,
        cause: ChangeCause,
    ) -> Result<PluginSwitch, InstanceError> {
        let id = instance.config.instance_id.clone();
        let current = instance.config.plugin.as_ref().map(|pin| pin.sha256.clone());
        let from = current.as_ref().map(|sha| self.named(&id, self.plugins.describe(&instance.connector, &id, sha)));
        let mut change = PluginChange {
            at: iot2mqtt_contract::time::now(),
            cause,
            from,
            to: PluginRef { sha256: hex::encode(sha2::Sha256::digest(&wasm)), name: None, version: None },
            outcome: ChangeOutcome::Rejected,
            reason: None,
            pause_ms: None,
        };
        let outcome = self.try_switch(&mut instance, wasm, current, &mut change).await;
        if let Err(e) = &outcome {
            change.reason = Some(e.to_string());
        }
        let (plugins, connector) = (self.plugins.clone(), instance.connector.clone());
        if let Err(e) = blocking(move || plugins.record(&connector, &id, change)).await {
            tracing::warn!(instance = %instance.config.instance_id, "the plugin history could not be written: {e}");
        }
        outcome
    }

    async fn try_switch(
        &self,
        instance: &mut StoredInstance,
        wasm: Vec<u8>,
        current: Option<String>,
        change: &mut PluginChange,
    ) -> Result<PluginSwitch, InstanceError> {
        let connector = self.connector(instance.connector.as_str(), "connector_type")?;
        if !connector.has_plugin() {
            return Err(InstanceError::PluginRejected(format!(
                "connector \"{}\" runs its own image and no plugin; update its folder and restart its instances",
                connector.name
            )));
        }
        let plugin =
            self.engine.load_plugin(wasm.clone()).await.map_err(|e| InstanceError::PluginRejected(e.to_string()))?;
        let about = plugin.about().clone();
        change.to.name = Some(about.name.clone());
        change.to.version = Some(about.version.clone());
        let sha = self.keep_plugin(&instance.connector, wasm).await?;
        let id = instance.config.instance_id.clone();
        let running = self.runtime.observe(&id).await.running;
        let path = self.activate(&instance.connector, &id, &sha).await?;
        let mut pause = None;
        if running {
            let new = NewPlugin { active: ActivePlugin { sha256: sha.clone(), path }, loaded: plugin.clone() };
            match self.runtime.swap(&id, new).await {
                Ok(seen) => pause = seen,
                Err(e) => {
                    if let Some(current) = &current {
                        let _ = self.activate(&instance.connector, &id, current).await;
                    }
                    return Err(InstanceError::PluginRejected(e.to_string()));
                }
            }
        }
        instance.config.plugin = Some(PluginPin { sha256: sha.clone(), previous: current.clone() });
        instance.config.updated_at = Some(iot2mqtt_contract::time::now());
        self.save(&instance.connector, &instance.config, None).await?;
        change.outcome = if running { ChangeOutcome::Swapped } else { ChangeOutcome::Kept };
        change.pause_ms = pause.map(|p| p.as_secs_f64() * 1000.0);
        tracing::info!(instance = %id, plugin = %about.name, version = %about.version, %sha, ?pause, "plugin replaced");
        Ok(PluginSwitch {
            sha256: sha,
            previous: current,
            name: about.name,
            version: about.version,
            swapped: running,
            pause_ms: change.pause_ms,
        })
    }

    async fn start_or_record(&self, instance: &StoredInstance) {
        let id = instance.config.instance_id.clone();
        match self.start_stored(instance).await {
            Ok(()) => {
                tracing::info!(instance = %id, runtime = self.runtime.name(), "instance started");
                lock(&self.errors).remove(&id);
            }
            Err(e) => {
                tracing::error!(instance = %id, "cannot start: {e}");
                lock(&self.errors).insert(id, e.to_string());
            }
        }
    }

    async fn start_stored(&self, instance: &StoredInstance) -> Result<(), InstanceError> {
        let connector =
            self.catalog.get(instance.connector.as_str()).map_err(|e| InstanceError::Unavailable(e.to_string()))?;
        let id = &instance.config.instance_id;
        let plugin = match connector.has_plugin() {
            true => {
                let sha = match instance.config.plugin.as_ref().map(|pin| pin.sha256.clone()) {
                    Some(sha) if self.plugins.path(&connector.name, &sha).exists() => sha,
                    _ => {
                        tracing::warn!(instance = %id, "its plugin version is not in the store; using the connector's current one");
                        self.connector_plugin(&connector).await?
                    }
                };
                Some(ActivePlugin { path: self.activate(&connector.name, id, &sha).await?, sha256: sha })
            }
            false => None,
        };
        let program = match (connector.manifest.kind, plugin) {
            (Kind::Container, plugin) => Program::Image { dir: connector.dir.clone(), plugin },
            (Kind::Wasm, Some(plugin)) => Program::Plugin(plugin),
            (Kind::Wasm, None) => {
                return Err(InstanceError::Unavailable(format!("connector \"{}\" has no plugin", connector.name)));
            }
        };
        if self.runtime.name() == "docker"
            && let Some(active) = program.plugin()
        {
            self.precompile(id, &active.path).await;
        }
        let secrets = self.load_secrets(id).await?;
        let mut mqtt = lock(&self.settings).clone();
        if let Some(broker) = &self.broker {
            let (user, password) = broker.instance_login(&mqtt, id);
            mqtt.username = Some(user);
            mqtt.password = Some(password);
        }
        let spec = RunSpec {
            connector: connector.name.clone(),
            config: instance.config.clone(),
            secrets,
            program,
            mqtt,
            instances_dir: self.store.connector_dir(&connector.name),
            cache_dir: self.data.cache(id.as_str()),
            shared_cache_dir: self.data.engine_cache(),
            memory_mb: connector.manifest.resources.memory_mb,
            http_hosts: connector.manifest.network.http_hosts().map_err(InstanceError::Unavailable)?,
            secret_store: Arc::new(InstanceSecrets::new(Arc::clone(&self.secrets), id.clone())),
            cpus: connector.manifest.resources.cpus,
            network: connector.network,
        };
        self.runtime.start(spec).await.map_err(|e| InstanceError::Unavailable(e.to_string()))
    }

    /// Compile a container's plugin here, once per content, into serve's cache, which every
    /// container reads: a Python plugin takes seconds and hundreds of MB to compile, once,
    /// not once per container. A failure is the container's to report.
    async fn precompile(&self, id: &InstanceId, path: &std::path::Path) {
        let loaded = match tokio::fs::read(path).await {
            Ok(wasm) => self.engine.load_plugin(wasm).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = loaded {
            tracing::warn!(instance = %id, "cannot compile the plugin ahead of its container: {e}");
        }
    }

    async fn view(&self, instance: &StoredInstance) -> Result<InstanceView, InstanceError> {
        let id = &instance.config.instance_id;
        let mut observed = self.runtime.observe(id).await;
        if let Some(error) = lock(&self.errors).get(id) {
            observed.last_error.get_or_insert_with(|| error.clone());
        }
        let topics = Topics::new(&self.mqtt.settings().base_topic, id);
        let mqtt_status = self.mqtt.get(&topics.status()).map_or_else(|| "unknown".to_string(), |c| c.payload);
        // Every secret has its reference in the file, so the names need no decryption.
        let secrets = instance
            .config
            .connection
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|v| v.starts_with(crate::secrets::REFERENCE)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut config = instance.config.clone();
        config.connector_type = Some(instance.connector.clone());
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

    fn connector(&self, name: &str, field: &str) -> Result<Connector, InstanceError> {
        self.catalog.get(name).map_err(|e| match e {
            CatalogError::Unknown(_) => InstanceError::invalid(field, e.to_string()),
            CatalogError::Invalid { .. } => InstanceError::invalid(field, e.to_string()),
        })
    }

    async fn find(&self, connector: &str, id: &str) -> Result<StoredInstance, InstanceError> {
        let not_found = || InstanceError::NotFound { connector: connector.to_string(), id: id.to_string() };
        let connector = ConnectorName::new(connector).map_err(|_| not_found())?;
        let id = InstanceId::new(id).map_err(|_| not_found())?;
        match self.lookup(&id).await? {
            Some(found) if found.connector == connector => Ok(found),
            _ => Err(not_found()),
        }
    }

    async fn lookup(&self, id: &InstanceId) -> Result<Option<StoredInstance>, InstanceError> {
        let (store, id) = (self.store.clone(), id.clone());
        blocking(move || store.find(&id)).await.map_err(InstanceError::internal)
    }

    /// Keep the plugin the connector ships; its hash.
    async fn connector_plugin(&self, connector: &Connector) -> Result<String, InstanceError> {
        let wasm = blocking({
            let (catalog, connector) = (self.catalog.clone(), connector.clone());
            move || catalog.plugin(&connector)
        })
        .await
        .map_err(|e| InstanceError::Unavailable(e.to_string()))?;
        self.keep_plugin(&connector.name, wasm).await
    }

    async fn keep_plugin(&self, connector: &ConnectorName, wasm: Vec<u8>) -> Result<String, InstanceError> {
        let (plugins, connector) = (self.plugins.clone(), connector.clone());
        blocking(move || plugins.put(&connector, &wasm)).await.map_err(InstanceError::internal)
    }

    async fn activate(
        &self,
        connector: &ConnectorName,
        id: &InstanceId,
        sha: &str,
    ) -> Result<std::path::PathBuf, InstanceError> {
        let (plugins, connector, id, sha) = (self.plugins.clone(), connector.clone(), id.clone(), sha.to_string());
        blocking(move || plugins.activate(&connector, &id, &sha)).await.map_err(InstanceError::internal)
    }

    async fn save(
        &self,
        connector: &ConnectorName,
        config: &InstanceConfig,
        secrets: Option<&BTreeMap<String, String>>,
    ) -> Result<(), InstanceError> {
        if let Some(secrets) = secrets {
            let (id, secrets) = (config.instance_id.clone(), secrets.clone());
            self.secrets_blocking(move |s| s.store(&id, &secrets)).await?;
        }
        let (store, connector, config) = (self.store.clone(), connector.clone(), config.clone());
        blocking(move || store.write(&connector, &config)).await.map_err(InstanceError::internal)
    }

    async fn load_secrets(&self, id: &InstanceId) -> Result<BTreeMap<String, String>, InstanceError> {
        let id = id.clone();
        self.secrets_blocking(move |s| s.load(&id)).await
    }

    async fn secrets_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SecretsManager) -> Result<T, crate::secrets::SecretsError> + Send + 'static,
    ) -> Result<T, InstanceError> {
        let secrets = Arc::clone(&self.secrets);
        blocking(move || f(&secrets)).await.map_err(InstanceError::internal)
    }
}

/// Run file work off the async threads; a panic in it is a panic here.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// What an edit stores: `edited` (built from `loaded`, what was stored when the edit began),
/// except that a secret the edit left as it was keeps what is stored now, which a plugin may
/// have refreshed meanwhile.
fn merge_edit(
    loaded: &BTreeMap<String, String>,
    edited: &BTreeMap<String, String>,
    now: &mut BTreeMap<String, String>,
) {
    let merged = edited
        .iter()
        .map(|(key, value)| {
            let kept = (loaded.get(key) == Some(value)).then(|| now.get(key)).flatten();
            (key.clone(), kept.unwrap_or(value).clone())
        })
        .collect();
    *now = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot2mqtt_runtime::SecretStore;

    #[test]
    fn a_plugin_replaces_only_secrets_its_instance_has_and_they_stay_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(SecretsManager::open(dir.path()).unwrap());
        let id = InstanceId::new("cloud_1").unwrap();
        let secrets = BTreeMap::from([
            ("prov_access_token".to_string(), "a1".to_string()),
            ("prov_refresh_token".to_string(), "r1".to_string()),
        ]);
        manager.store(&id, &secrets).unwrap();
        let store = InstanceSecrets::new(Arc::clone(&manager), id.clone());

        store.replace("prov_access_token", "a2-secret-value").unwrap();
        let err = store.replace("password", "x").unwrap_err();
        assert!(err.contains("\"password\" is not one of this instance's secrets"), "{err}");
        let now = SecretsManager::open(dir.path()).unwrap().load(&id).unwrap();
        assert_eq!(now.get("prov_access_token").map(String::as_str), Some("a2-secret-value"));
        assert_eq!(now.get("prov_refresh_token").map(String::as_str), Some("r1"));
        assert!(!now.contains_key("password"));
        // Nothing on disk holds the value in the clear.
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(!bytes.windows(15).any(|w| w == b"a2-secret-value"), "{}", entry.display());
        }
    }

    #[test]
    fn an_edit_keeps_tokens_a_plugin_refreshed_meanwhile_unless_it_changed_them() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        // The edit began with these, changed the password, dropped "old" and set "refresh".
        let loaded = map(&[("access", "a1"), ("refresh", "r1"), ("password", "p1"), ("old", "o1")]);
        let edited = map(&[("access", "a1"), ("refresh", "r9"), ("password", "p2")]);
        // Meanwhile the plugin refreshed both tokens.
        let mut now = map(&[("access", "a2"), ("refresh", "r2"), ("password", "p1"), ("old", "o1")]);
        merge_edit(&loaded, &edited, &mut now);
        assert_eq!(now, map(&[("access", "a2"), ("refresh", "r9"), ("password", "p2")]));

        // Through the store: an edit and a plugin's refresh, one after the other, both stay.
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(SecretsManager::open(dir.path()).unwrap());
        let id = InstanceId::new("cloud_2").unwrap();
        manager.store(&id, &loaded).unwrap();
        let plugin = InstanceSecrets::new(Arc::clone(&manager), id.clone());
        plugin.replace("access", "a2").unwrap();
        let merged = manager.update(&id, |now| {
            merge_edit(&loaded, &edited, now);
            Ok::<(), String>(())
        });
        assert_eq!(merged.unwrap(), Ok(()));
        assert_eq!(manager.load(&id).unwrap(), map(&[("access", "a2"), ("refresh", "r9"), ("password", "p2")]));
        // A refusal stores nothing.
        let refused = manager.update(&id, |now| {
            now.clear();
            Err("no")
        });
        assert_eq!(refused.unwrap(), Err("no"));
        assert_eq!(manager.load(&id).unwrap().len(), 3);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }
}
