//! What a lane's store holds ([`LaneCtx`]) and the host functions a plugin imports
//! (`iot2mqtt:connector/host`): logging, pushed states and events, time. Values a plugin hands
//! over are checked here before they reach the [`HostSink`].

use std::sync::Arc;

use iot2mqtt_contract::codes::ErrorCode;
use serde_json::{Map, Value};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::iot2mqtt::connector::{host, types};
use crate::outcome::Failure;
use crate::sandbox::{MemoryCap, StderrTap};

/// The longest a log line from a plugin may be; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;

/// Where a plugin's log lines, pushed states and events go.
pub trait HostSink: Send + Sync + 'static {
    /// A log line from the plugin.
    fn log(&self, level: types::Level, message: &str);
    /// A device's full state, pushed by the plugin.
    fn push_state(&self, device_id: &str, state: Map<String, Value>) -> Result<(), String>;
    /// An event of a device, pushed by the plugin.
    fn push_event(&self, device_id: &str, event: &str, data: Map<String, Value>) -> Result<(), String>;
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
}

/// CPU spent in wasm during the current call, in epoch ticks.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    pub(crate) ticks: u64,
    pub(crate) budget: u64,
    pub(crate) exceeded: bool,
}

impl WasiView for LaneCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
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

/// A JSON object a plugin returned, or the failure that says why it is not one.
pub(crate) fn parse_object(json: &str, what: &str) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure {
            code: ErrorCode::InvalidOutput.into(),
            message: format!("{what} returned JSON that is not an object"),
        }),
        Err(e) => Err(Failure {
            code: ErrorCode::InvalidOutput.into(),
            message: format!("{what} returned invalid JSON: {e}"),
        }),
    }
}
