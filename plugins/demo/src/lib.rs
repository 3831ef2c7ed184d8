//! The demo connector: virtual devices described entirely by the instance configuration.
//!
//! Each device entry is `{"device_id", "kind": "light"|"switch"|"sensor", "enabled",
//! "latency_ms"?, "fail"?}`. Lights and switches keep their values in the plugin (and hand
//! them to a new version on hot swap); sensors drift slowly with time. `latency_ms` makes
//! every read and command of that device take that long; `fail: true` makes it unreachable.

use std::collections::BTreeMap;
use std::time::Duration;

use iot2mqtt_sdk::capabilities::{Entity, Light, Sensor};
use iot2mqtt_sdk::{
    Capabilities, Connector, DeviceConfig, DeviceInfo, Error, Instance, Object, Value, host, json, object,
};
use serde::{Deserialize, Serialize};

mod values;

use values::{Power, parse_brightness, parse_power};

/// Every virtual device this plugin instance serves, by id.
#[derive(Debug)]
struct Demo {
    devices: BTreeMap<String, Virtual>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Light,
    Switch,
    Sensor,
}

/// A device entry of the instance configuration.
#[derive(Debug, Deserialize)]
struct Entry {
    kind: Kind,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    fail: bool,
}

#[derive(Debug)]
struct Virtual {
    kind: Kind,
    latency: Duration,
    fail: bool,
    values: Values,
}

/// What a light or switch remembers; handed to a new version on hot swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Values {
    power: bool,
    brightness: u8,
}

impl Connector for Demo {
    fn init(_instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error> {
        let mut virtuals = BTreeMap::new();
        for device in devices {
            let entry: Entry = device.parse()?;
            let values = Values { power: false, brightness: 100 };
            virtuals.insert(
                device.id.clone(),
                Virtual {
                    kind: entry.kind,
                    latency: Duration::from_millis(entry.latency_ms),
                    fail: entry.fail,
                    values,
                },
            );
        }
        Ok(Self { devices: virtuals })
    }

    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        let model = match self.devices.get(&device.id).map(|d| d.kind) {
            Some(Kind::Light) => "demo-light",
            Some(Kind::Switch) => "demo-switch",
            Some(Kind::Sensor) | None => "demo-sensor",
        };
        DeviceInfo::new(&device.id).with_model(model)
    }

    fn capabilities(&self, device_id: &str) -> Option<Capabilities> {
        let device = Capabilities::new().manufacturer("iot2mqtt demo");
        Some(match self.devices.get(device_id)?.kind {
            Kind::Light => {
                device.entity(Entity::light("light", Light::new("power").brightness("brightness", 0.0, 100.0)))
            }
            Kind::Switch => device.entity(Entity::switch("switch", "power").device_class("outlet")),
            Kind::Sensor => device
                .entity(
                    Entity::sensor("temperature", Sensor::new("temperature").unit("°C").measurement())
                        .named("Temperature")
                        .device_class("temperature"),
                )
                .entity(
                    Entity::sensor("humidity", Sensor::new("humidity").unit("%").measurement())
                        .named("Humidity")
                        .device_class("humidity"),
                ),
        })
    }

    fn read_state(&mut self, device_id: &str) -> Result<Object, Error> {
        let device = self.reach(device_id)?;
        let v = device.values;
        Ok(object(match device.kind {
            Kind::Light => json!({"power": v.power, "brightness": v.brightness, "online": true}),
            Kind::Switch => json!({"power": v.power, "online": true}),
            Kind::Sensor => {
                let (temperature, humidity) = climate(host::now_ms());
                json!({"temperature": temperature, "humidity": humidity, "online": true})
            }
        }))
    }

    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error> {
        let device = self.reach(device_id)?;
        if device.kind == Kind::Sensor {
            return Err(Error::read_only(format!("{device_id} is a sensor and takes no commands")));
        }
        // Validate everything before changing anything: a command applies whole or not at all.
        let mut unknown = Vec::new();
        let mut power = None;
        let mut brightness = None;
        for (key, value) in values {
            match (key.as_str(), device.kind) {
                ("power", _) => power = Some(parse_power(value)?),
                ("brightness", Kind::Light) => brightness = Some(parse_brightness(value)?),
                _ => unknown.push(key.as_str()),
            }
        }
        let before = device.values;
        if let Some(power) = power {
            device.values.power = match power {
                Power::On => true,
                Power::Off => false,
                Power::Toggle => !before.power,
            };
        }
        if let Some(brightness) = brightness {
            device.values.brightness = brightness;
        }
        let after = device.values;
        let mut confirmed = Object::new();
        if power.is_some() {
            confirmed.insert("power".into(), Value::Bool(after.power));
        }
        if brightness.is_some() {
            confirmed.insert("brightness".into(), Value::from(after.brightness));
        }
        if after.power != before.power && device.kind == Kind::Light {
            let _ = host::push_event(device_id, "power_changed", &object(json!({"power": after.power})));
        }
        if !unknown.is_empty() {
            return Err(Error::unsupported(format!("unsupported keys: {}", unknown.join(", "))));
        }
        Ok(confirmed)
    }

    /// `suggest_devices {count, sensors}`: virtual devices to offer in the setup flow.
    fn run_tool(name: &str, input: Value) -> Result<Value, Error> {
        if name != "suggest_devices" {
            return Err(Error::unsupported(format!("the demo connector has no tool \"{name}\"")));
        }
        let count = input.get("count").and_then(Value::as_u64).unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(Error::invalid_value(format!("count must be 1 to 10, not {}", input["count"])));
        }
        let sensors = input.get("sensors").and_then(Value::as_bool).unwrap_or(true);
        let mut kinds = vec![("light", "Light"), ("switch", "Switch")];
        if sensors {
            kinds.push(("sensor", "Sensor"));
        }
        let mut devices = Vec::new();
        for (kind, label) in kinds {
            for n in 1..=count {
                devices.push(json!({"device_id": format!("{kind}{n}"), "kind": kind, "label": format!("{label} {n}")}));
            }
        }
        Ok(Value::Array(devices))
    }

    fn save_state(&self) -> Option<Vec<u8>> {
        let values: BTreeMap<&String, Values> = self.devices.iter().map(|(id, d)| (id, d.values)).collect();
        serde_json::to_vec(&values).ok()
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        let saved: BTreeMap<String, Values> =
            serde_json::from_slice(state).map_err(|e| format!("unreadable saved state: {e}"))?;
        for (id, values) in saved {
            if let Some(device) = self.devices.get_mut(&id) {
                device.values = values;
            }
        }
        Ok(())
    }
}

impl Demo {
    /// The device, after its configured latency; an error when it is unknown or set to fail.
    fn reach(&mut self, device_id: &str) -> Result<&mut Virtual, Error> {
        let device = self
            .devices
            .get_mut(device_id)
            .ok_or_else(|| Error::other("UNKNOWN_DEVICE", format!("no device \"{device_id}\"")))?;
        if !device.latency.is_zero() {
            std::thread::sleep(device.latency);
        }
        if device.fail {
            return Err(Error::unreachable(format!("{device_id} is configured to fail")));
        }
        Ok(device)
    }
}

/// A slow, smooth drift: temperature around 21.5 °C, humidity around 45 %, one cycle an hour.
fn climate(now_ms: u64) -> (f64, f64) {
    let phase = (now_ms % 3_600_000) as f64 / 3_600_000.0 * std::f64::consts::TAU;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    (round(21.5 + 1.5 * phase.sin()), round(45.0 + 5.0 * phase.cos()))
}

iot2mqtt_sdk::export!(Demo);
