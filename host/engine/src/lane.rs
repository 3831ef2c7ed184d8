//! A lane: one sandboxed instance of a plugin in its own store, called one function at a time.
//! Every call runs under a CPU budget (epoch ticks spent in wasm) and a wall-clock limit; a
//! call that traps, exhausts its budget or its memory cap, or never returns is a [`Fault`]
//! and leaves the lane dead: the owner builds a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use iot2mqtt_contract::codes::ErrorCode;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use wasmtime::component::{Resource, ResourceTable, ResourceTableError};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::bindings::exports::iot2mqtt::connector::capabilities::{self, Description};
use crate::bindings::exports::iot2mqtt::connector::{device, events, handover, lanes, tools};
use crate::bindings::iot2mqtt::connector::types;
use crate::ctx::{CpuMeter, HostSink, LaneCtx, parse_object, parse_value};
use crate::engine::{EPOCH_TICK, Engine};
use crate::http::{HttpHooks, HttpLimits};
use crate::outcome::{Failure, Fault, FaultKind};
use crate::plugin::Plugin;
use crate::sandbox::{MemoryCap, NetGrants, StderrTap};

/// How long `events.listen` may block before the plugin is considered hung.
const LISTEN_LIMIT: Duration = Duration::from_secs(90);
/// Host resources (sockets, streams, pollables) one plugin instance may hold at once: each
/// costs host memory, and a socket a file descriptor of the process.
pub const MAX_RESOURCES: usize = 1024;
/// The most state a plugin may hand over to its successor in a swap.
const MAX_SAVED_STATE: usize = 1 << 20;

/// What a lane is built with.
#[derive(Clone)]
pub struct LaneConfig {
    /// Names the lane in logs (`instance/device`).
    pub label: String,
    /// The network it may use.
    pub grants: NetGrants,
    /// Limits on its HTTP requests.
    pub http: HttpLimits,
    /// The most linear memory it may have, in bytes.
    pub memory_limit: usize,
    /// The most CPU time one call may spend in wasm.
    pub cpu_budget: Duration,
    /// The longest one call may take, waiting included; past it the call is abandoned.
    pub call_limit: Duration,
    /// Where logs and pushes go.
    pub sink: Arc<dyn HostSink>,
}

impl std::fmt::Debug for LaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneConfig")
            .field("label", &self.label)
            .field("grants", &self.grants)
            .field("memory_limit", &self.memory_limit)
            .field("cpu_budget", &self.cpu_budget)
            .field("call_limit", &self.call_limit)
            .finish_non_exhaustive()
    }
}

/// A device as the plugin described it after `init`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// The device's id.
    pub id: String,
    /// Its model.
    pub model: Option<String>,
    /// Whether the host should poll it.
    pub poll: bool,
    /// What it can do (`capabilities.describe`), when the plugin says.
    pub description: Option<Description>,
}

/// Raised by the lane's owner when it has work, so a plugin blocked in `events.listen`
/// returns. See `wit/events.wit`.
#[derive(Debug, Default)]
pub struct WakeSignal {
    raised: AtomicBool,
    notify: Notify,
}

impl WakeSignal {
    /// Ask the plugin to return from `listen`.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Forget an earlier request (before calling `listen` again).
    pub fn clear(&self) {
        self.raised.store(false, Ordering::Release);
    }
}

/// One instance of a plugin. See the module documentation.
pub struct Lane {
    store: Store<LaneCtx>,
    exports: Exports,
    call_limit: Duration,
    dead: Option<Fault>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("label", &self.store.data().label).field("dead", &self.dead).finish()
    }
}

struct Exports {
    device: device::Guest,
    events: Option<events::Guest>,
    tools: Option<tools::Guest>,
    handover: Option<handover::Guest>,
    capabilities: Option<capabilities::Guest>,
    lanes: Option<lanes::Guest>,
}

impl Lane {
    /// Instantiate `plugin` in a new sandbox.
    pub async fn new(engine: &Engine, plugin: &Plugin, config: LaneConfig) -> Result<Self, Fault> {
        let stderr = StderrTap::new(&config.label);
        let ctx = LaneCtx {
            label: config.label.clone(),
            wasi: config.grants.wasi_ctx(&stderr),
            table: resource_table(),
            memory: MemoryCap::new(config.memory_limit),
            cpu: CpuMeter { budget: ticks(config.cpu_budget), ..CpuMeter::default() },
            stderr,
            sink: Arc::clone(&config.sink),
            names: config.grants.names().clone(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http: HttpHooks::new(&config.label, &config.grants, config.http),
        };
        let mut store = Store::new(&engine.inner.wasm, ctx);
        store.limiter(|ctx| &mut ctx.memory);
        store.epoch_deadline_callback(|mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            cpu.ticks += 1;
            if cpu.ticks > cpu.budget {
                cpu.exceeded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        let indices = plugin.indices();
        let instance = match plugin.pre().instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(classify(&mut store, "instantiate", &e)),
        };
        let exports = (|| -> wasmtime::Result<Exports> {
            Ok(Exports {
                device: indices.device.load(&mut store, &instance)?,
                events: indices.events.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                tools: indices.tools.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                handover: indices.handover.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                capabilities: indices.capabilities.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                lanes: indices.lanes.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            })
        })()
        .map_err(|e| Fault { kind: FaultKind::Broken, message: format!("the plugin breaks the interface: {e:#}") })?;
        Ok(Self { store, exports, call_limit: config.call_limit, dead: None })
    }

    /// The fault that killed this lane, if it is dead.
    pub fn fault(&self) -> Option<&Fault> {
        self.dead.as_ref()
    }

    /// `device.about`
    pub async fn about(&mut self) -> Result<types::PluginAbout, Fault> {
        self.begin()?;
        let result = tokio::time::timeout(self.call_limit, self.exports.device.call_about(&mut self.store)).await;
        self.finish("about", result)
    }

    /// `device.init`
    pub async fn init(
        &mut self,
        instance: &Map<String, Value>,
        devices: &[(String, Map<String, Value>)],
    ) -> Result<Result<Vec<DeviceInfo>, Failure>, Fault> {
        self.begin()?;
        let instance = Value::Object(instance.clone()).to_string();
        let devices: Vec<types::DeviceConfig> = devices
            .iter()
            .map(|(id, config)| types::DeviceConfig {
                id: id.clone(),
                config: Value::Object(config.clone()).to_string(),
            })
            .collect();
        let call = self.exports.device.call_init(&mut self.store, &instance, &devices);
        let result = tokio::time::timeout(self.call_limit, call).await;
        let outcome = self.finish("init", result)?;
        Ok(outcome
            .map(|infos| {
                infos
                    .into_iter()
                    .map(|i| DeviceInfo { id: i.id, model: i.model, poll: i.poll, description: None })
                    .collect()
            })
            .map_err(Failure::from))
    }

    /// `device.read-state`: the state as a JSON object.
    pub async fn read_state(&mut self, device_id: &str) -> Result<Result<Map<String, Value>, Failure>, Fault> {
        self.begin()?;
        let call = self.exports.device.call_read_state(&mut self.store, device_id);
        let result = tokio::time::timeout(self.call_limit, call).await;
        let outcome = self.finish("read-state", result)?;
        Ok(outcome.map_err(Failure::from).and_then(|json| parse_object(&json, "read-state")))
    }

    /// `device.apply`: the confirmed values as a JSON object.
    pub async fn apply(
        &mut self,
        device_id: &str,
        values: &Map<String, Value>,
    ) -> Result<Result<Map<String, Value>, Failure>, Fault> {
        self.begin()?;
        let values = Value::Object(values.clone()).to_string();
        let call = self.exports.device.call_apply(&mut self.store, device_id, &values);
        let result = tokio::time::timeout(self.call_limit, call).await;
        let outcome = self.finish("apply", result)?;
        Ok(outcome.map_err(Failure::from).and_then(|json| parse_object(&json, "apply")))
    }

    /// `lanes.sharing`: whether the plugin wants one lane for all of an instance's devices
    /// (false when it does not say).
    pub async fn shares(&mut self) -> Result<bool, Fault> {
        self.begin()?;
        let Some(lanes) = &self.exports.lanes else { return Ok(false) };
        let result = tokio::time::timeout(self.call_limit, lanes.call_sharing(&mut self.store)).await;
        Ok(self.finish("sharing", result)? == lanes::LaneSharing::PerInstance)
    }

    /// Whether the plugin exports `events.listen`.
    pub fn can_listen(&self) -> bool {
        self.exports.events.is_some()
    }

    /// `events.listen`: `Ok(false)` when the plugin has nothing to listen for (or cannot).
    pub async fn listen(&mut self, wake: &Arc<WakeSignal>) -> Result<bool, Fault> {
        self.begin()?;
        let Some(events) = &self.exports.events else { return Ok(false) };
        let table = &mut self.store.data_mut().table;
        let pollable = table
            .push(WakePollable(Arc::clone(wake)))
            .map_err(wasmtime::Error::from)
            .and_then(|signal| subscribe(table, signal))
            .map_err(|e| Fault { kind: FaultKind::Broken, message: format!("cannot create the wake signal: {e}") })?;
        let borrowed = Resource::<DynPollable>::new_borrow(pollable.rep());
        let result = tokio::time::timeout(LISTEN_LIMIT, events.call_listen(&mut self.store, borrowed)).await;
        let _ = self.store.data_mut().table.delete(pollable);
        self.finish("listen", result)
    }

    /// `tools.run-tool`: the tool's JSON result.
    pub async fn run_tool(&mut self, name: &str, input: &Value) -> Result<Result<Value, Failure>, Fault> {
        self.begin()?;
        let Some(tools) = &self.exports.tools else {
            return Ok(Err(Failure {
                code: ErrorCode::UnsupportedProperty.into(),
                message: "the plugin has no setup tools".into(),
            }));
        };
        let input = input.to_string();
        let call = tools.call_run_tool(&mut self.store, name, &input);
        let result = tokio::time::timeout(self.call_limit, call).await;
        let outcome = self.finish("run-tool", result)?;
        Ok(outcome.map_err(Failure::from).and_then(|json| parse_value(&json, "run-tool")))
    }

    /// `capabilities.describe`; `None` when the plugin does not describe the device (or has no
    /// such export).
    pub async fn describe(&mut self, device_id: &str) -> Result<Option<Description>, Fault> {
        self.begin()?;
        let Some(capabilities) = &self.exports.capabilities else { return Ok(None) };
        let call = capabilities.call_describe(&mut self.store, device_id);
        let result = tokio::time::timeout(self.call_limit, call).await;
        self.finish("describe", result)
    }

    /// `handover.save-state`; `None` when the plugin saves nothing or cannot.
    pub async fn save_state(&mut self) -> Result<Option<Vec<u8>>, Fault> {
        self.begin()?;
        let Some(handover) = &self.exports.handover else { return Ok(None) };
        let result = tokio::time::timeout(self.call_limit, handover.call_save_state(&mut self.store)).await;
        let saved = self.finish("save-state", result)?;
        if saved.as_ref().is_some_and(|bytes| bytes.len() > MAX_SAVED_STATE) {
            tracing::warn!(lane = %self.store.data().label, "save-state handed over more than 1 MiB; nothing is handed over");
            return Ok(None);
        }
        Ok(saved)
    }

    /// `handover.restore-state`; an `Err` carries the plugin's reason.
    pub async fn restore_state(&mut self, state: &[u8]) -> Result<Result<(), String>, Fault> {
        self.begin()?;
        let Some(handover) = &self.exports.handover else {
            return Ok(Err("the plugin does not take over saved state".into()));
        };
        let result = tokio::time::timeout(self.call_limit, handover.call_restore_state(&mut self.store, state)).await;
        self.finish("restore-state", result)
    }

    fn begin(&mut self) -> Result<(), Fault> {
        if let Some(fault) = &self.dead {
            return Err(fault.clone());
        }
        let cpu = &mut self.store.data_mut().cpu;
        cpu.ticks = 0;
        cpu.host = Duration::ZERO;
        cpu.exceeded = false;
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    fn finish<R>(
        &mut self,
        what: &str,
        result: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, Fault> {
        let fault = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => classify(&mut self.store, what, &e),
            Err(_) => Fault {
                kind: FaultKind::Hung,
                message: format!("{what} did not return in time; the plugin is restarted"),
            },
        };
        self.dead = Some(fault.clone());
        Err(fault)
    }
}

fn classify(store: &mut Store<LaneCtx>, what: &str, error: &wasmtime::Error) -> Fault {
    let ctx = store.data_mut();
    let last_words = ctx.stderr.take_tail();
    let (kind, mut message) = if ctx.cpu.exceeded {
        (FaultKind::CpuBudget, format!("{what} used its whole CPU budget (an endless loop?)"))
    } else if ctx.memory.hit {
        (FaultKind::MemoryLimit, format!("{what} needed more memory than the plugin's cap"))
    } else if error.chain().any(|e| matches!(e.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full))) {
        (
            FaultKind::MemoryLimit,
            format!("{what} held more than {MAX_RESOURCES} host resources (sockets, streams, timers)"),
        )
    } else if let Some(limit) = error.chain().map(ToString::to_string).find(|e| e.contains("resource limit exceeded")) {
        (FaultKind::MemoryLimit, format!("{what} went over the plugin's limits: {limit}"))
    } else {
        (FaultKind::Trap, format!("{what} trapped: {}", root_cause(error)))
    };
    if !last_words.is_empty() {
        message.push_str(": ");
        message.push_str(&last_words);
    }
    Fault { kind, message }
}

fn root_cause(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    }
}

fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// The pollable handed to `events.listen`.
struct WakePollable(Arc<WakeSignal>);

#[wasmtime_wasi::async_trait]
impl Pollable for WakePollable {
    async fn ready(&mut self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.raised.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}
