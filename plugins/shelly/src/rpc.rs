//! Shelly's Gen2 RPC over HTTP (`POST /rpc` with `{"id", "method", "params"}`), and what its
//! `Shelly.GetStatus` answer means as a device state.

use iot2mqtt_sdk::http::Client;
use iot2mqtt_sdk::{Error, Object, Value, json};

/// The kind of an output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A relay (`switch:N`): on/off, with power metering on PM models.
    Switch,
    /// A dimmer (`light:N`): on/off and brightness.
    Light,
}

impl Kind {
    fn component(self) -> &'static str {
        match self {
            Self::Switch => "switch",
            Self::Light => "light",
        }
    }

    fn set_method(self) -> &'static str {
        match self {
            Self::Switch => "Switch.Set",
            Self::Light => "Light.Set",
        }
    }
}

/// One output channel of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub kind: Kind,
    pub id: u8,
}

/// A device's RPC endpoint.
#[derive(Debug, Clone)]
pub struct Rpc {
    url: String,
    client: Client,
    next_id: u64,
}

impl Rpc {
    pub fn new(host: &str, port: u16, client: Client) -> Self {
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        Self { url: format!("http://{host}:{port}/rpc"), client, next_id: 1 }
    }

    /// Call `method` with `params`; the answer's `result`, or the device's error.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = json!({"id": id, "method": method});
        if !params.is_null() {
            frame["params"] = params;
        }
        let response = self.client.post(&self.url).json(&frame).send()?;
        if response.status == 401 {
            return Err(Error::failed("the device asks for a password; turn off authentication in its web page"));
        }
        let answer: Value = response.error_for_status()?.json()?;
        if let Some(error) = answer.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error");
            return Err(Error::failed(format!("{method}: {message}")));
        }
        answer.get("result").cloned().ok_or_else(|| Error::failed(format!("{method}: the answer has no result")))
    }
}

/// The key of `base` for a channel: `power` for channel 0, `power_1` for channel 1.
pub fn key(base: &str, id: u8) -> String {
    if id == 0 { base.to_string() } else { format!("{base}_{id}") }
}

/// The channels a `Shelly.GetStatus` result has, in order.
pub fn channels(status: &Object) -> Vec<Channel> {
    let mut found: Vec<Channel> = status
        .keys()
        .filter_map(|name| {
            let (component, id) = name.split_once(':')?;
            let kind = match component {
                "switch" => Kind::Switch,
                "light" => Kind::Light,
                _ => return None,
            };
            Some(Channel { kind, id: id.parse().ok()? })
        })
        .collect();
    found.sort_by_key(|c| (c.id, c.kind.component()));
    found
}

/// A state from a `Shelly.GetStatus` result.
pub fn state(status: &Object) -> Object {
    let mut state = Object::new();
    for channel in channels(status) {
        let Some(part) = status.get(&format!("{}:{}", channel.kind.component(), channel.id)) else {
            continue;
        };
        let id = channel.id;
        let mut put = |base: &str, value: Option<&Value>| {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                state.insert(key(base, id), value.clone());
            }
        };
        put("power", part.get("output"));
        put("brightness", part.get("brightness"));
        put("power_w", part.get("apower"));
        put("voltage", part.get("voltage"));
        put("current", part.get("current"));
        put("energy_wh", part.pointer("/aenergy/total"));
        put("temperature", part.pointer("/temperature/tC"));
    }
    if let Some(rssi) = status.get("wifi").and_then(|w| w.get("rssi")).filter(|v| !v.is_null()) {
        state.insert("rssi".into(), rssi.clone());
    }
    state
}

/// What to send to change `values`, one call per channel: `(method, params)`. The error names
/// the first value that cannot be set.
pub fn plan(channels: &[Channel], values: &Object) -> Result<Vec<(&'static str, Value)>, Error> {
    let mut calls: Vec<(Channel, Object)> = Vec::new();
    for (name, value) in values {
        let (base, id) = match name.rsplit_once('_').and_then(|(b, n)| Some((b, n.parse::<u8>().ok()?))) {
            Some((base, id)) if base == "power" || base == "brightness" => (base, id),
            _ => (name.as_str(), 0),
        };
        let channel = match base {
            "power" | "brightness" => channels.iter().find(|c| c.id == id).copied(),
            "power_w" | "voltage" | "current" | "energy_wh" | "temperature" | "rssi" | "online" => {
                return Err(Error::read_only(format!("{name} is measured by the device and cannot be set")));
            }
            _ => return Err(Error::invalid_value(format!("{name} is not a setting of a Shelly"))),
        };
        let channel = channel.ok_or_else(|| Error::invalid_value(format!("{name}: the device has no channel {id}")))?;
        let param = match base {
            "power" => {
                json!(value.as_bool().ok_or_else(|| Error::invalid_value(format!("{name} must be true or false")))?)
            }
            _ if channel.kind != Kind::Light => {
                return Err(Error::invalid_value(format!("{name}: channel {id} is a relay, without brightness")));
            }
            _ => json!(
                value
                    .as_f64()
                    .filter(|b| (0.0..=100.0).contains(b))
                    .ok_or_else(|| Error::invalid_value(format!("{name} must be a number from 0 to 100")))?
                    .round() as u8
            ),
        };
        let field = if base == "power" { "on" } else { "brightness" };
        match calls.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, params)) => {
                params.insert(field.into(), param);
            }
            None => {
                let mut params = Object::new();
                params.insert("id".into(), json!(channel.id));
                params.insert(field.into(), param);
                calls.push((channel, params));
            }
        }
    }
    Ok(calls.into_iter().map(|(c, params)| (c.kind.set_method(), Value::Object(params))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Object {
        iot2mqtt_sdk::object(json!({
            "switch:0": {"id": 0, "output": true, "apower": 12.5, "voltage": 230.1, "current": 0.05,
                          "aenergy": {"total": 1234.5}, "temperature": {"tC": 41.2, "tF": 106.2}},
            "light:1": {"id": 1, "output": false, "brightness": 40},
            "wifi": {"rssi": -61},
            "sys": {"uptime": 100}
        }))
    }

    #[test]
    fn a_status_becomes_a_state() {
        assert_eq!(
            Value::Object(state(&status())),
            json!({"power": true, "power_w": 12.5, "voltage": 230.1, "current": 0.05, "energy_wh": 1234.5,
                   "temperature": 41.2, "power_1": false, "brightness_1": 40, "rssi": -61})
        );
    }

    #[test]
    fn commands_become_one_call_per_channel() {
        let channels = channels(&status());
        let calls =
            plan(&channels, &iot2mqtt_sdk::object(json!({"power": false, "power_1": true, "brightness_1": 70})))
                .unwrap();
        assert_eq!(
            calls,
            vec![
                ("Switch.Set", json!({"id": 0, "on": false})),
                ("Light.Set", json!({"id": 1, "on": true, "brightness": 70})),
            ]
        );
        for (bad, code) in [
            (json!({"power": "on"}), "INVALID_VALUE"),
            (json!({"brightness": 50}), "INVALID_VALUE"),
            (json!({"brightness_1": 150}), "INVALID_VALUE"),
            (json!({"power_3": true}), "INVALID_VALUE"),
            (json!({"power_w": 3}), "READ_ONLY"),
            (json!({"colour": 3}), "INVALID_VALUE"),
        ] {
            let err = plan(&channels, &iot2mqtt_sdk::object(bad.clone())).unwrap_err();
            assert_eq!(err.code(), code, "{bad}: {}", err.message());
        }
    }
}
