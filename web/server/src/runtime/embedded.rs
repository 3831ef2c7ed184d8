//! Instances inside this process, through `iot2mqtt-runtime`: one engine for all, a fault in
//! one plugin stays in its instance. Secrets stay in memory. A plugin is loaded once per
//! content and shared by every instance that runs it (its compiled code is mapped once).

use std::collections::HashMap;

use iot2mqtt_contract::InstanceId;
use iot2mqtt_runtime::{EngineConfig, InstanceHandle, InstanceOptions, InstanceSpec, Plugin, Runtime};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{BoxFuture, InstanceRuntime, Observed, RunSpec, RuntimeError};

/// The in-process runtime.
#[derive(Debug)]
pub struct EmbeddedRuntime {
    runtime: Runtime,
    running: Mutex<HashMap<InstanceId, InstanceHandle>>,
    plugins: Mutex<HashMap<[u8; 32], Plugin>>,
}

impl EmbeddedRuntime {
    /// A runtime whose compile cache is `cache_dir`.
    pub fn new(cache_dir: std::path::PathBuf) -> Result<Self, RuntimeError> {
        let runtime = Runtime::new(EngineConfig { cache_dir: Some(cache_dir) })
            .map_err(|e| RuntimeError::Plugin(e.to_string()))?;
        Ok(Self { runtime, running: Mutex::default(), plugins: Mutex::default() })
    }

    /// The loaded plugin of `wasm`, shared with every instance running the same bytes.
    async fn plugin(&self, wasm: Vec<u8>) -> Result<Plugin, RuntimeError> {
        let key: [u8; 32] = Sha256::digest(&wasm).into();
        let mut plugins = self.plugins.lock().await;
        if let Some(plugin) = plugins.get(&key) {
            return Ok(plugin.clone());
        }
        let plugin = self.runtime.load_plugin(wasm).await.map_err(|e| RuntimeError::Plugin(e.to_string()))?;
        plugins.insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Forget plugins no running instance uses.
    async fn prune_plugins(&self) {
        let running = self.running.lock().await;
        let in_use: Vec<String> = running.values().map(|h| h.status().plugin.sha256).collect();
        drop(running);
        self.plugins.lock().await.retain(|key, _| in_use.contains(&hex::encode(key)));
    }

    async fn start_instance(&self, spec: RunSpec) -> Result<(), RuntimeError> {
        let id = spec.config.instance_id.clone();
        if let Some(old) = self.running.lock().await.remove(&id) {
            old.stop().await;
        }
        let wasm = tokio::fs::read(&spec.plugin)
            .await
            .map_err(|e| RuntimeError::Io(format!("cannot read the plugin {}: {e}", spec.plugin.display())))?;
        let plugin = self.plugin(wasm).await?;
        let mut config = spec.config;
        config.connector_type = Some(spec.connector);
        config.merge_secrets(spec.secrets);
        let mut options = InstanceOptions::default();
        if let Some(mb) = spec.memory_mb {
            options.memory_limit = usize::try_from(mb).unwrap_or(usize::MAX >> 20) << 20;
        }
        let handle = self.runtime.start(InstanceSpec { config, mqtt: spec.mqtt, plugin, options });
        self.running.lock().await.insert(id, handle);
        self.prune_plugins().await;
        Ok(())
    }
}

impl InstanceRuntime for EmbeddedRuntime {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(self.start_instance(spec))
    }

    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let handle = self.running.lock().await.remove(instance);
            if let Some(handle) = handle {
                handle.stop().await;
            }
            self.prune_plugins().await;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.stop(instance)
    }

    fn observe<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Observed> {
        Box::pin(async move {
            let running = self.running.lock().await;
            match running.get(instance) {
                None => Observed::default(),
                Some(handle) => {
                    let status = handle.status();
                    Observed {
                        running: true,
                        restarts: status.faults,
                        crash_looping: status.crash_looping(std::time::Instant::now()),
                        last_error: status.last_error,
                    }
                }
            }
        })
    }

    fn swap<'a>(&'a self, instance: &'a InstanceId, wasm: Vec<u8>) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let running = self.running.lock().await;
            let handle =
                running.get(instance).ok_or_else(|| RuntimeError::Plugin("the instance is not running".into()))?;
            let swapped = match self.plugin(wasm.clone()).await {
                Ok(plugin) => handle.swap(plugin).await,
                // Loading again through the handle publishes the rejection on `B/error`.
                Err(_) => handle.swap_wasm(wasm).await,
            };
            let swapped = swapped.map(|_| ()).map_err(|e| RuntimeError::Plugin(e.to_string()));
            drop(running);
            self.prune_plugins().await;
            swapped
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let handles: Vec<InstanceHandle> = self.running.lock().await.drain().map(|(_, h)| h).collect();
            let stops = handles.into_iter().map(InstanceHandle::stop);
            futures_util::future::join_all(stops).await;
        })
    }
}
