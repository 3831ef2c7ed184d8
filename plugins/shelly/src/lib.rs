//! The Shelly connector: Gen2 and later Shelly devices (Plus, Pro, Mini) over their documented
//! RPC over HTTP. Relays (`switch:N`) and dimmers (`light:N`) are read with
//! `Shelly.GetStatus` and set with `Switch.Set` and `Light.Set`; the device is polled.
//!
//! Device entries: `{"device_id", "host" (or "ip"), "port"? (80), "model"?}`. Instance settings
//! (top level or in `connection`): `timeout_ms` (default 3000) for each request.
//! Tools: `validate_device {host, port?}` (→ the device's id, model and firmware).
//!
//! State keys: channel 0 as `power`, `brightness`, `power_w`, `voltage`, `current`,
//! `energy_wh`, `temperature`; channel N with the suffix `_N` (`power_1`); `rssi`, `online`.

mod rpc;

use std::collections::BTreeMap;
use std::time::Duration;

use iot2mqtt_sdk::capabilities::{Category, Entity, Light, Sensor, StateClass};
use iot2mqtt_sdk::http::Client;
use iot2mqtt_sdk::{Capabilities, Connector, DeviceConfig, DeviceInfo, Error, Instance, Object, Value, json};
use serde::Deserialize;

use rpc::{Channel, Kind, Rpc};

const PORT: u16 = 80;
const DEFAULT_TIMEOUT_MS: u64 = 3000;

#[derive(Debug)]
struct Shelly {
    devices: BTreeMap<String, Device>,
}

#[derive(Debug)]
struct Device {
    rpc: Rpc,
    model: Option<String>,
    /// Its channels, as its last status showed them.
    channels: Vec<Channel>,
}

#[derive(Debug, Deserialize)]
struct DeviceSettings {
    #[serde(alias = "ip")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    model: Option<String>,
}

fn default_port() -> u16 {
    PORT
}

impl Connector for Shelly {
    fn init(instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error> {
        let timeout_ms = match instance.connection().get("timeout_ms").or_else(|| instance.raw().get("timeout_ms")) {
            None => DEFAULT_TIMEOUT_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (100..=60_000).contains(ms))
                .ok_or_else(|| Error::other("INVALID_CONFIG", format!("timeout_ms must be 100 to 60000, not {v}")))?,
        };
        let client = Client::new().timeout(Duration::from_millis(timeout_ms));
        let mut map = BTreeMap::new();
        for device in devices {
            let settings: DeviceSettings = device.parse()?;
            let rpc = Rpc::new(&settings.host, settings.port, client.clone());
            map.insert(device.id.clone(), Device { rpc, model: settings.model, channels: Vec::new() });
        }
        Ok(Self { devices: map })
    }

    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        let info = DeviceInfo::new(&device.id);
        match self.devices.get(&device.id).and_then(|d| d.model.clone()) {
            Some(model) => info.with_model(model),
            None => info,
        }
    }

    /// Each relay a switch with its meters, each dimmer a light; the Wi-Fi signal.
    fn capabilities(&self, device_id: &str) -> Option<Capabilities> {
        let device = self.devices.get(device_id)?;
        let mut caps = Capabilities::new().manufacturer("Shelly");
        if let Some(model) = &device.model {
            caps = caps.model(model.clone());
        }
        let channels = if device.channels.is_empty() {
            vec![Channel { kind: Kind::Switch, id: 0 }]
        } else {
            device.channels.clone()
        };
        for channel in channels {
            let id = channel.id;
            let named = |e: Entity, name: &str| if id == 0 { e.named(name) } else { e.named(format!("{name} {id}")) };
            caps = match channel.kind {
                Kind::Light => caps.entity(Entity::light(
                    rpc::key("light", id),
                    Light::new(rpc::key("power", id)).brightness(rpc::key("brightness", id), 0.0, 100.0),
                )),
                Kind::Switch => {
                    let sensor = |base: &str, unit: &str| Sensor::new(rpc::key(base, id)).unit(unit).measurement();
                    let switch = Entity::switch(rpc::key("switch", id), rpc::key("power", id)).device_class("outlet");
                    caps.entity(if id == 0 { switch } else { switch.named(format!("Output {id}")) })
                        .entity(named(
                            Entity::sensor(rpc::key("power_w", id), sensor("power_w", "W")).device_class("power"),
                            "Power",
                        ))
                        .entity(named(
                            Entity::sensor(rpc::key("voltage", id), sensor("voltage", "V")).device_class("voltage"),
                            "Voltage",
                        ))
                        .entity(named(
                            Entity::sensor(rpc::key("current", id), sensor("current", "A")).device_class("current"),
                            "Current",
                        ))
                        .entity(named(
                            Entity::sensor(
                                rpc::key("energy_wh", id),
                                Sensor::new(rpc::key("energy_wh", id))
                                    .unit("Wh")
                                    .state_class(StateClass::TotalIncreasing),
                            )
                            .device_class("energy"),
                            "Energy",
                        ))
                        .entity(named(
                            Entity::sensor(rpc::key("temperature", id), sensor("temperature", "°C"))
                                .device_class("temperature")
                                .category(Category::Diagnostic),
                            "Temperature",
                        ))
                }
            };
        }
        Some(
            caps.entity(
                Entity::sensor("rssi", Sensor::new("rssi").unit("dBm").measurement())
                    .named("Signal")
                    .device_class("signal_strength")
                    .category(Category::Diagnostic),
            ),
        )
    }

    fn read_state(&mut self, device_id: &str) -> Result<Object, Error> {
        let device = self.device(device_id)?;
        let status = device.rpc.call("Shelly.GetStatus", Value::Null)?;
        let status =
            status.as_object().ok_or_else(|| Error::failed("Shelly.GetStatus: the result is not an object"))?;
        device.channels = rpc::channels(status);
        let mut state = rpc::state(status);
        state.insert("online".into(), json!(true));
        Ok(state)
    }

    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error> {
        let device = self.device(device_id)?;
        if device.channels.is_empty() {
            let status = device.rpc.call("Shelly.GetStatus", Value::Null)?;
            device.channels = status.as_object().map(rpc::channels).unwrap_or_default();
        }
        for (method, params) in rpc::plan(&device.channels, values)? {
            device.rpc.call(method, params)?;
        }
        Ok(values.clone())
    }

    fn run_tool(name: &str, input: Value) -> Result<Value, Error> {
        match name {
            "validate_device" => validate_device(&input),
            other => Err(Error::unsupported(format!("the Shelly connector has no tool \"{other}\""))),
        }
    }
}

impl Shelly {
    fn device(&mut self, device_id: &str) -> Result<&mut Device, Error> {
        self.devices
            .get_mut(device_id)
            .ok_or_else(|| Error::other("UNKNOWN_DEVICE", format!("no device \"{device_id}\"")))
    }
}

/// `{host, port?}` → the device's id, model, generation and firmware, and its outputs.
fn validate_device(input: &Value) -> Result<Value, Error> {
    let host = input
        .get("host")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::invalid_value("host is required"))?;
    let port = match input.get("port") {
        None | Some(Value::Null) => PORT,
        Some(Value::String(s)) if s.is_empty() => PORT,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::invalid_value(format!("port must be 1 to 65535, not {v}")))?,
    };
    let mut rpc = Rpc::new(host, port, Client::new().timeout(Duration::from_secs(4)));
    let info = rpc
        .call("Shelly.GetDeviceInfo", Value::Null)
        .map_err(|e| Error::unreachable(format!("no Shelly Gen2 device answers at {host}:{port} ({})", e.message())))?;
    let generation = info.get("gen").and_then(Value::as_u64).unwrap_or(0);
    if generation < 2 {
        return Err(Error::unsupported(format!(
            "the device at {host}:{port} is not a Gen2 Shelly (generation {generation}); Gen1 devices speak another protocol"
        )));
    }
    let status = rpc.call("Shelly.GetStatus", Value::Null)?;
    let outputs: Vec<Value> = status
        .as_object()
        .map(rpc::channels)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"id": c.id, "kind": if c.kind == Kind::Light { "light" } else { "switch" }}))
        .collect();
    let id = info.get("id").and_then(Value::as_str).unwrap_or_default();
    let suggested = if id.is_empty() { format!("shelly_{}", host.replace(['.', ':'], "_")) } else { id.to_string() };
    Ok(json!({
        "host": host,
        "port": port,
        "device_id": id,
        "suggested_id": suggested,
        "model": info.get("model").cloned().unwrap_or(Value::Null),
        "app": info.get("app").cloned().unwrap_or(Value::Null),
        "name": info.get("name").cloned().filter(|n| !n.is_null()).or_else(|| info.get("app").cloned()).unwrap_or(Value::Null),
        "fw_ver": info.get("ver").cloned().unwrap_or(Value::Null),
        "gen": generation,
        "outputs": outputs,
    }))
}

iot2mqtt_sdk::export!(Shelly);
