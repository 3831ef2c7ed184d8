//! A connector plugin to copy. It runs as is: every device is a switch the plugin remembers,
//! so the whole path (MQTT command → plugin → state on MQTT) works before any device protocol
//! is written. Replace the marked parts with your device's protocol.
//!
//! Device entries in the instance file look like `{"device_id": "plug1", "host": "192.168.1.20"}`.
//! The host lets the plugin connect to each device's `host`/`ip` (and `port`, when given) and
//! nowhere else.

use std::collections::BTreeMap;

use iot2mqtt_sdk::capabilities::Entity;
use iot2mqtt_sdk::{Capabilities, Connector, DeviceConfig, DeviceInfo, Error, Instance, Object, Value, json, object};
use serde::Deserialize;

/// The plugin's state: one entry per device it serves.
#[derive(Debug)]
struct Template {
    devices: BTreeMap<String, Device>,
}

/// What a device entry of the instance file holds, besides `device_id` and `enabled`.
#[derive(Debug, Deserialize)]
struct Settings {
    /// The device's address. Optional here because the template talks to no real device.
    #[serde(default)]
    host: Option<String>,
}

#[derive(Debug)]
struct Device {
    /// Where a real plugin would connect (`std::net::TcpStream::connect((host, port))`).
    #[allow(dead_code)]
    host: Option<String>,
    power: bool,
}

impl Connector for Template {
    fn init(_instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for device in devices {
            let settings: Settings = device.parse()?;
            // A real plugin might open its connection here; a device that does not answer yet
            // is not an error: `read_state` reports it.
            map.insert(device.id.clone(), Device { host: settings.host, power: false });
        }
        Ok(Self { devices: map })
    }

    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        DeviceInfo::new(&device.id).with_model("template-switch")
    }

    /// What Home Assistant shows: here one switch on the `power` key. Describe each of your
    /// device's keys (lights, sensors with units, numbers, selects, buttons).
    fn capabilities(&self, _device_id: &str) -> Option<Capabilities> {
        Some(Capabilities::new().manufacturer("Example").entity(Entity::switch("switch", "power")))
    }

    fn read_state(&mut self, device_id: &str) -> Result<Object, Error> {
        let device = self.device(device_id)?;
        // Replace with a query to the device; map its answer to simple JSON keys.
        Ok(object(json!({"power": device.power, "online": true})))
    }

    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error> {
        let device = self.device(device_id)?;
        let mut confirmed = Object::new();
        for (key, value) in values {
            match (key.as_str(), value) {
                ("power", Value::Bool(on)) => {
                    // Replace with the command to the device.
                    device.power = *on;
                    confirmed.insert("power".into(), Value::Bool(*on));
                }
                ("power", other) => {
                    return Err(Error::invalid_value(format!("power must be true or false, not {other}")));
                }
                (other, _) => return Err(Error::unsupported(format!("unsupported key: {other}"))),
            }
        }
        Ok(confirmed)
    }
}

impl Template {
    fn device(&mut self, device_id: &str) -> Result<&mut Device, Error> {
        self.devices
            .get_mut(device_id)
            .ok_or_else(|| Error::other("UNKNOWN_DEVICE", format!("no device \"{device_id}\"")))
    }
}

iot2mqtt_sdk::export!(Template);
