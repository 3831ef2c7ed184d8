//! A lane: one sandboxed instance of a plugin in its own store, called one function at a time.
//! Every call runs under a CPU budget (epoch ticks spent in wasm) and a wall-clock limit; a
//! call that traps, exhausts its budget or its memory cap, or never returns is a [`Fault`]
//! and leaves the lane dead: the owner builds a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::exports::iot2mqtt::connector::{device, events, handover, tools};
use crate::bindings::iot2mqtt::connector::{host, types};
use crate::engine::{EPOCH_TICK, Engine};
use crate::plugin::Plugin;
use crate::sandbox::{MemoryCap, NetGrants, StderrTap};

/// The longest a log line from a plugin may be; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;
/// How long `events.listen` may block before the plugin is considered hung.
const LISTEN_LIMIT: Duration = Duration::from_secs(90);

/// Where a plugin's log lines, pushed states and events go.
pub trait HostSink: Send + Sync + 'static {
    /// A log line from the plugin.
    fn log(&self, level: types::Level, message: &str);
    /// A device's full state, pushed by the plugin.
    fn push_state(&self, device_id: &str, state: Map<String, Value>) -> Result<(), String>;
    /// An event of a device, pushed by the plugin.
    fn push_event(&self, device_id: &str, event: &str, data: Map<String, Value>) -> Result<(), String>;
}

/// What a lane is built with.
#[derive(Clone)]
pub struct LaneConfig {
    /// Names the lane in logs (`instance/device`).
    pub label: String,
    /// The network it may use.
    pub grants: NetGrants,
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

/// A failure the plugin reported: an outcome, with the contract's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// UPPER_SNAKE_CASE.
    pub code: String,
    /// The plugin's message.
    pub message: String,
}

/// Why a lane died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access.
    Trap,
    /// A call spent its whole CPU budget (an endless loop).
    CpuBudget,
    /// The plugin needed more memory than its cap.
    MemoryLimit,
    /// A call did not return within its wall-clock limit.
    Hung,
    /// The plugin could not be instantiated or broke the interface.
    Broken,
}

/// A lane died. The plugin instance is gone; nothing more can be called on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// For people: what the plugin was doing and what went wrong, with its last words on
    /// stderr (a panic's message) when there are any.
    pub message: String,
}

/// A device as the plugin described it after `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's id.
    pub id: String,
    /// Its model.
    pub model: Option<String>,
    /// Whether the host should poll it.
    pub poll: bool,
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
}

/// What a lane's store holds.
pub(crate) struct LaneCtx {
    label: String,
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    cpu: CpuMeter,
    stderr: StderrTap,
    sink: Arc<dyn HostSink>,
}

#[derive(Debug, Default)]
struct CpuMeter {
    ticks: u64,
    budget: u64,
    exceeded: bool,
}

impl WasiView for LaneCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Lane {
    /// Instantiate `plugin` in a new sandbox.
    pub async fn new(engine: &Engine, plugin: &Plugin, config: LaneConfig) -> Result<Self, Fault> {
        let stderr = StderrTap::new(&config.label);
        let ctx = LaneCtx {
            label: config.label.clone(),
            wasi: config.grants.wasi_ctx(&stderr),
            table: ResourceTable::new(),
            memory: MemoryCap::new(config.memory_limit),
            cpu: CpuMeter { budget: ticks(config.cpu_budget), ..CpuMeter::default() },
            stderr,
            sink: Arc::clone(&config.sink),
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
            .map(|infos| infos.into_iter().map(|i| DeviceInfo { id: i.id, model: i.model, poll: i.poll }).collect())
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
                code: "UNSUPPORTED_PROPERTY".into(),
                message: "the plugin has no setup tools".into(),
            }));
        };
        let input = input.to_string();
        let call = tools.call_run_tool(&mut self.store, name, &input);
        let result = tokio::time::timeout(self.call_limit, call).await;
        let outcome = self.finish("run-tool", result)?;
        Ok(outcome.map_err(Failure::from).and_then(|json| {
            serde_json::from_str(&json).map_err(|e| Failure {
                code: "INVALID_OUTPUT".into(),
                message: format!("run-tool returned invalid JSON: {e}"),
            })
        }))
    }

    /// `handover.save-state`; `None` when the plugin saves nothing or cannot.
    pub async fn save_state(&mut self) -> Result<Option<Vec<u8>>, Fault> {
        self.begin()?;
        let Some(handover) = &self.exports.handover else { return Ok(None) };
        let result = tokio::time::timeout(self.call_limit, handover.call_save_state(&mut self.store)).await;
        self.finish("save-state", result)
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

fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

fn parse_object(json: &str, what: &str) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure {
            code: "INVALID_OUTPUT".into(),
            message: format!("{what} returned JSON that is not an object"),
        }),
        Err(e) => Err(Failure { code: "INVALID_OUTPUT".into(), message: format!("{what} returned invalid JSON: {e}") }),
    }
}

impl From<types::Error> for Failure {
    fn from(error: types::Error) -> Self {
        let (code, message) = match error {
            types::Error::InvalidValue(m) => ("INVALID_VALUE".to_string(), m),
            types::Error::ReadOnly(m) => ("READ_ONLY".to_string(), m),
            types::Error::Unreachable(m) => ("DEVICE_UNREACHABLE".to_string(), m),
            types::Error::Unsupported(m) => ("UNSUPPORTED_PROPERTY".to_string(), m),
            types::Error::Failed(m) => ("COMMAND_FAILED".to_string(), m),
            types::Error::Other(types::CodedError { code, message }) => (code, message),
        };
        let valid = code.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Self { code, message }
        } else {
            Self { code: "PLUGIN_ERROR".into(), message: format!("{code}: {message}") }
        }
    }
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

impl types::Host for LaneCtx {}

impl host::Host for LaneCtx {
    fn log(&mut self, level: types::Level, mut message: String) {
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.sink.log(level, &message);
    }

    fn push_state(&mut self, device_id: String, state: String) -> Result<(), String> {
        let state = parse_object(&state, "push-state").map_err(|f| f.message)?;
        self.sink.push_state(&device_id, state)
    }

    fn push_event(&mut self, device_id: String, event: String, data: String) -> Result<(), String> {
        if event.is_empty() {
            return Err("the event name is empty".into());
        }
        let data = parse_object(&data, "push-event").map_err(|f| f.message)?;
        self.sink.push_event(&device_id, &event, data)
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
