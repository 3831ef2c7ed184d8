//! Instances inside this process, through `iot2mqtt-runtime`: one engine for all, a fault in
//! one plugin stays in its instance. Secrets stay in memory.

use std::collections::HashMap;

use iot2mqtt_contract::InstanceId;
use iot2mqtt_runtime::{EngineConfig, InstanceHandle, InstanceOptions, InstanceSpec, Runtime};
use tokio::sync::Mutex;

use super::{BoxFuture, InstanceRuntime, Observed, RunSpec, RuntimeError};

/// The in-process runtime.
#[derive(Debug)]
pub struct EmbeddedRuntime {
    runtime: Runtime,
    running: Mutex<HashMap<InstanceId, InstanceHandle>>,
}

impl EmbeddedRuntime {
    /// A runtime whose compile cache is `cache_dir`.
    pub fn new(cache_dir: std::path::PathBuf) -> Result<Self, RuntimeError> {
        let runtime = Runtime::new(EngineConfig { cache_dir: Some(cache_dir) })
            .map_err(|e| RuntimeError::Plugin(e.to_string()))?;
        Ok(Self { runtime, running: Mutex::default() })
    }

    async fn start_instance(&self, spec: RunSpec) -> Result<(), RuntimeError> {
        let id = spec.config.instance_id.clone();
        if let Some(old) = self.running.lock().await.remove(&id) {
            old.stop().await;
        }
        let wasm = tokio::fs::read(&spec.plugin)
            .await
            .map_err(|e| RuntimeError::Io(format!("cannot read the plugin {}: {e}", spec.plugin.display())))?;
        let plugin = self.runtime.load_plugin(wasm).await.map_err(|e| RuntimeError::Plugin(e.to_string()))?;
        let mut config = spec.config;
        config.connector_type = Some(spec.connector);
        config.merge_secrets(spec.secrets);
        let mut options = InstanceOptions::default();
        if let Some(mb) = spec.memory_mb {
            options.memory_limit = usize::try_from(mb).unwrap_or(usize::MAX >> 20) << 20;
        }
        let handle = self.runtime.start(InstanceSpec { config, mqtt: spec.mqtt, plugin, options });
        self.running.lock().await.insert(id, handle);
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
                        last_error: status.last_error,
                        crash_looping: status.faults >= 5 && !status.ready,
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
            handle.swap_wasm(wasm).await.map(|_| ()).map_err(|e| RuntimeError::Plugin(e.to_string()))
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
