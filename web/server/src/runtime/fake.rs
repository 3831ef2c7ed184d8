//! A runtime that runs nothing and remembers what it was asked: the API's route tests use it
//! (through `Router::oneshot`) where a real runtime would add nothing but sockets and time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use iot2mqtt_contract::InstanceId;

use super::{BoxFuture, InstanceRuntime, LogLine, LogStream, NewPlugin, Observed, RunSpec, RuntimeError};
use crate::sync::lock;

/// One call the fake runtime took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `start`, with the plugin's sha256.
    Start(InstanceId, String),
    /// `stop`.
    Stop(InstanceId),
    /// `remove`.
    Remove(InstanceId),
    /// `swap`, with the new plugin's sha256.
    Swap(InstanceId, String),
}

/// The fake runtime.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    calls: Mutex<Vec<Call>>,
    running: Mutex<HashMap<InstanceId, Observed>>,
}

impl FakeRuntime {
    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: Call) {
        lock(&self.calls).push(call);
    }
}

impl InstanceRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let id = spec.config.instance_id.clone();
        self.record(Call::Start(id.clone(), spec.program.plugin().map(|p| p.sha256.clone()).unwrap_or_default()));
        lock(&self.running).insert(id, Observed { running: true, ..Observed::default() });
        Box::pin(async { Ok(()) })
    }

    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(Call::Stop(instance.clone()));
        lock(&self.running).remove(instance);
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(Call::Remove(instance.clone()));
        lock(&self.running).remove(instance);
        Box::pin(async { Ok(()) })
    }

    fn observe<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Observed> {
        let observed = lock(&self.running).get(instance).cloned().unwrap_or_default();
        Box::pin(async move { observed })
    }

    fn swap<'a>(
        &'a self,
        instance: &'a InstanceId,
        plugin: NewPlugin,
    ) -> BoxFuture<'a, Result<Option<Duration>, RuntimeError>> {
        let running = lock(&self.running).contains_key(instance);
        if running {
            self.record(Call::Swap(instance.clone(), plugin.active.sha256));
        }
        Box::pin(
            async move { if running { Ok(Some(Duration::from_millis(1))) } else { Err(RuntimeError::NotRunning) } },
        )
    }

    fn logs<'a>(&'a self, _instance: &'a InstanceId, _lines: usize) -> BoxFuture<'a, Vec<LogLine>> {
        Box::pin(async { Vec::new() })
    }

    fn follow_logs<'a>(&'a self, _instance: &'a InstanceId, _lines: usize) -> BoxFuture<'a, LogStream> {
        Box::pin(async { Box::pin(futures_util::stream::empty()) as LogStream })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        lock(&self.running).clear();
        Box::pin(async {})
    }
}
