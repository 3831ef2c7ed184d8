//! What a lane's store holds ([`LaneCtx`]) and the host functions a plugin imports
//! (`iot2mqtt:connector/host`): logging, pushed states and events, time. Values a plugin hands
//! over are checked here before they reach the [`HostSink`]: no value is larger than
//! [`MAX_VALUE`] (checked before it is parsed), log lines are cut at [`MAX_LOG_LINE`] and
//! rate-limited with the plugin's stdout and stderr, and the time the host spends on a call's
//! behalf counts against the call's CPU budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iot2mqtt_contract::codes::ErrorCode;
use serde_json::{Map, Value};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::iot2mqtt::connector::{host, types};
use crate::outcome::Failure;
use crate::sandbox::{GuardedLookup, MemoryCap, Names, StderrTap};

/// The longest a log line from a plugin may be; longer lines are cut.
pub(crate) const MAX_LOG_LINE: usize = 4096;
/// The largest JSON value a plugin may hand the host (a state, an event's data, a call's or a
/// tool's result): far above any device's state, far below what would cost the host real work.
pub const MAX_VALUE: usize = 256 << 10;

/// Where a plugin's log lines, pushed states and events go.
pub trait HostSink: Send + Sync + 'static {
    /// A log line from the plugin.
    fn log(&self, level: types::Level, message: &str);
    /// A device's full state, pushed by the plugin.
    fn push_state(&self, device_id: &str, state: Map<String, Value>) -> Result<(), String>;
    /// An event of a device, pushed by the plugin.
    fn push_event(&self, device_id: &str, event: &str, data: Map<String, Value>) -> Result<(), String>;
    /// A new value of one of the instance's secrets (`host.store-secret`), already bounded.
    fn store_secret(&self, key: &str, value: &str) -> Result<(), String> {
        let _ = (key, value);
        Err("this host keeps no secrets".into())
    }
}

/// What a lane's store holds.
pub(crate) struct LaneCtx {
    pub(crate) label: String,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) cpu: CpuMeter,
    pub(crate) stderr: StderrTap,
    pub(crate) sink: Arc<dyn HostSink>,
    /// The names it may look up.
    pub(crate) names: Names,
    /// `wasi:http`: its state, and the hooks that grant and limit requests.
    pub(crate) http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) http: crate::http::HttpHooks,
}

impl LaneCtx {
    /// Its name lookups, checked against [`LaneCtx::names`].
    pub(crate) fn lookups(&mut self) -> GuardedLookup<'_> {
        GuardedLookup {
            sockets: wasmtime_wasi::sockets::WasiSocketsCtxView { ctx: self.wasi.sockets(), table: &mut self.table },
            names: &self.names,
            label: &self.label,
        }
    }
}

/// CPU spent during the current call, in epoch ticks: in wasm, and in the host on its behalf.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    pub(crate) ticks: u64,
    pub(crate) budget: u64,
    pub(crate) exceeded: bool,
    /// Host time not yet a whole tick.
    pub(crate) host: Duration,
}

impl CpuMeter {
    /// Count host work done since `started` against the budget; past it, the call is
    /// interrupted at the next tick.
    pub(crate) fn charge(&mut self, started: Instant) {
        self.host += started.elapsed();
        let tick = crate::engine::EPOCH_TICK;
        while self.host >= tick {
            self.host -= tick;
            self.ticks += 1;
        }
    }
}

impl WasiView for LaneCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for LaneCtx {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http_ctx, table: &mut self.table, hooks: &mut self.http }
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
        let admit = self.stderr.lines.admit();
        if let Some(notice) = admit.notice() {
            self.sink.log(types::Level::Warn, &notice);
        }
        if admit.writes() {
            self.sink.log(level, &message);
        }
    }

    fn push_state(&mut self, device_id: String, state: String) -> Result<(), String> {
        let started = Instant::now();
        let result = parse_object(&state, "push-state").map_err(|f| f.message);
        let result = result.and_then(|state| self.sink.push_state(&device_id, state));
        self.cpu.charge(started);
        result
    }

    fn push_event(&mut self, device_id: String, event: String, data: String) -> Result<(), String> {
        if event.is_empty() || event.len() > 64 {
            return Err("the event name must have 1 to 64 characters".into());
        }
        let started = Instant::now();
        let result = parse_object(&data, "push-event").map_err(|f| f.message);
        let result = result.and_then(|data| self.sink.push_event(&device_id, &event, data));
        self.cpu.charge(started);
        result
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn store_secret(&mut self, key: String, value: String) -> Result<(), String> {
        if key.is_empty() || key.len() > 128 {
            return Err("a secret's name has 1 to 128 characters".into());
        }
        if value.len() > MAX_SECRET {
            return Err(format!("a secret's value is at most {MAX_SECRET} bytes"));
        }
        if value.contains(['\n', '\r']) {
            return Err("a secret's value has no line breaks".into());
        }
        let stored = self.sink.store_secret(&key, &value);
        match &stored {
            // The name only: never the value.
            Ok(()) => tracing::info!(plugin = %self.label, %key, "the plugin stored a new value of a secret"),
            Err(e) => tracing::warn!(plugin = %self.label, %key, "the plugin could not store a secret: {e}"),
        }
        stored
    }
}

/// The longest value of a secret a plugin may store.
const MAX_SECRET: usize = 16 << 10;

/// A JSON value a plugin returned, or the failure that says why it is not acceptable: too
/// large (refused before parsing) or not JSON.
pub(crate) fn parse_value(json: &str, what: &str) -> Result<Value, Failure> {
    if json.len() > MAX_VALUE {
        return Err(Failure {
            code: ErrorCode::InvalidOutput.into(),
            message: format!(
                "{what} handed over {} KiB of JSON; at most {} KiB are taken",
                json.len() >> 10,
                MAX_VALUE >> 10
            ),
        });
    }
    serde_json::from_str(json).map_err(|e| Failure {
        code: ErrorCode::InvalidOutput.into(),
        message: format!("{what} returned invalid JSON: {e}"),
    })
}

/// A JSON object a plugin returned, or the failure that says why it is not one.
pub(crate) fn parse_object(json: &str, what: &str) -> Result<Map<String, Value>, Failure> {
    match parse_value(json, what)? {
        Value::Object(map) => Ok(map),
        _ => Err(Failure {
            code: ErrorCode::InvalidOutput.into(),
            message: format!("{what} returned JSON that is not an object"),
        }),
    }
}
