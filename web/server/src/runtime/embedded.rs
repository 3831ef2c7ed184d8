//! Instances inside this process, through `iot2mqtt-runtime`: one engine for all (the same one
//! that validates uploads and runs setup tools), a fault in one plugin stays in its instance.
//! Secrets stay in memory. A plugin in use is loaded once and shared by every instance that
//! runs it (the engine hands out the loaded plugin by content hash).

use std::collections::HashMap;
use std::time::Duration;

use iot2mqtt_contract::InstanceId;
use iot2mqtt_runtime::logging::InstanceLogs;
use iot2mqtt_runtime::{InstanceHandle, InstanceOptions, InstanceSpec, Plugin, Runtime};
use tokio::sync::Mutex;

use super::{
    ActivePlugin, BoxFuture, InstanceRuntime, LogLine, LogStream, NewPlugin, Observed, Program, RunSpec, RuntimeError,
};

/// The in-process runtime.
#[derive(Debug)]
pub struct EmbeddedRuntime {
    runtime: Runtime,
    running: Mutex<HashMap<InstanceId, InstanceHandle>>,
    logs: InstanceLogs,
}

impl EmbeddedRuntime {
    /// A runtime on the process's engine; `logs` is where the process's logging keeps each
    /// instance's lines.
    pub fn new(runtime: Runtime, logs: InstanceLogs) -> Self {
        Self { runtime, running: Mutex::default(), logs }
    }

    /// The loaded plugin of `active`: the one in use already, or its file loaded.
    async fn plugin(&self, active: &ActivePlugin) -> Result<Plugin, RuntimeError> {
        if let Some(plugin) = self.runtime.loaded(&active.sha256) {
            return Ok(plugin);
        }
        let wasm = tokio::fs::read(&active.path)
            .await
            .map_err(|e| RuntimeError::Io(format!("cannot read the plugin {}: {e}", active.path.display())))?;
        self.runtime.load_plugin(wasm).await.map_err(|e| RuntimeError::Plugin(e.to_string()))
    }

    async fn start_instance(&self, spec: RunSpec) -> Result<(), RuntimeError> {
        let id = spec.config.instance_id.clone();
        if let Some(old) = self.running.lock().await.remove(&id) {
            old.stop().await;
        }
        let active = match &spec.program {
            Program::Plugin(active) => active,
            Program::Image { .. } => {
                return Err(RuntimeError::Unsupported(format!(
                    "connector \"{}\" runs in a container image of its own and needs Docker, but this serve \
                     runs instances in its own process (the embedded runtime): start serve where a Docker engine \
                     answers (apt-get install docker.io) with --runtime auto or docker",
                    spec.connector
                )));
            }
        };
        let plugin = self.plugin(active).await?;
        let mut config = spec.config;
        config.connector_type = Some(spec.connector);
        config.merge_secrets(spec.secrets);
        let mut options = InstanceOptions {
            http_hosts: spec.http_hosts,
            secrets: iot2mqtt_runtime::SecretKeeper::new(spec.secret_store),
            ..InstanceOptions::default()
        };
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
        Box::pin(async move {
            self.stop(instance).await?;
            self.logs.forget(instance.as_str());
            Ok(())
        })
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
                        activity: None,
                    }
                }
            }
        })
    }

    fn swap<'a>(
        &'a self,
        instance: &'a InstanceId,
        plugin: NewPlugin,
    ) -> BoxFuture<'a, Result<Option<Duration>, RuntimeError>> {
        Box::pin(async move {
            let running = self.running.lock().await;
            let handle = running.get(instance).ok_or(RuntimeError::NotRunning)?;
            // A rejection is published on `B/error` by the instance itself.
            handle.swap(plugin.loaded).await.map(|r| Some(r.pause)).map_err(|e| RuntimeError::Plugin(e.to_string()))
        })
    }

    fn logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, Vec<LogLine>> {
        let kept = self.logs.tail(instance.as_str(), lines);
        Box::pin(async move { kept.into_iter().map(LogLine::from).collect() })
    }

    fn follow_logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, LogStream> {
        let stream = super::follow_kept(&self.logs, instance.as_str(), lines);
        Box::pin(async move { stream })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let handles: Vec<InstanceHandle> = self.running.lock().await.drain().map(|(_, h)| h).collect();
            let stops = handles.into_iter().map(InstanceHandle::stop);
            futures_util::future::join_all(stops).await;
        })
    }
}
