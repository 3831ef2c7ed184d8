//! The contract bridge of the sensor-hub connector (`connectors/sensor-hub`), a multi-process
//! container: a Python climate service and a Perl relay service own the devices, and this
//! plugin, run by the `iot2mqtt-host` inside the same container, reads and commands them. The
//! host does the whole MQTT contract; the services know nothing of MQTT.
//!
//! Each device entry names its service: `{"device_id": "hall", "kind": "climate", "host":
//! "127.0.0.1", "port": 8710}` (the host grants the plugin that address and no other). The
//! services speak one JSON object per line, one answer per request:
//!
//! - `{"get": "<device>"}` → `{"state": {…}}`
//! - `{"set": "<device>", "values": {…}}` → `{"applied": {…}}`
//! - either → `{"error": {"code": "INVALID_VALUE", "message": "…"}}`

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use iot2mqtt_sdk::net::LineConnection;
use iot2mqtt_sdk::{Connector, DeviceConfig, DeviceInfo, Error, Instance, Object, Value, json};
use serde::Deserialize;

/// How long connecting to a service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a service may take to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct SensorHub {
    devices: BTreeMap<String, Link>,
}

/// A device entry, besides `device_id` and `enabled`.
#[derive(Debug, Deserialize)]
struct Settings {
    kind: String,
    host: IpAddr,
    port: u16,
}

/// A device and the connection to its service (kept open, reopened when it breaks).
#[derive(Debug)]
struct Link {
    kind: String,
    addr: SocketAddr,
    connection: Option<LineConnection>,
}

impl Connector for SensorHub {
    fn init(_instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for device in devices {
            let settings: Settings = device.parse()?;
            let addr = SocketAddr::new(settings.host, settings.port);
            map.insert(device.id.clone(), Link { kind: settings.kind, addr, connection: None });
        }
        Ok(Self { devices: map })
    }

    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        let kind = self.devices.get(&device.id).map_or("device", |l| l.kind.as_str());
        DeviceInfo::new(&device.id).with_model(format!("sensor-hub-{kind}"))
    }

    fn read_state(&mut self, device_id: &str) -> Result<Object, Error> {
        let answer = self.link(device_id)?.request(&json!({"get": device_id}))?;
        let mut state = field(answer, "state")?;
        state.insert("online".into(), Value::Bool(true));
        Ok(state)
    }

    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error> {
        let answer = self.link(device_id)?.request(&json!({"set": device_id, "values": values}))?;
        field(answer, "applied")
    }
}

impl SensorHub {
    fn link(&mut self, device_id: &str) -> Result<&mut Link, Error> {
        self.devices
            .get_mut(device_id)
            .ok_or_else(|| Error::other("UNKNOWN_DEVICE", format!("no device \"{device_id}\"")))
    }
}

impl Link {
    /// Send `request` and read its answer, reconnecting once when the connection broke (the
    /// service restarted).
    fn request(&mut self, request: &Value) -> Result<Value, Error> {
        match self.exchange(request) {
            Ok(answer) => Ok(answer),
            Err(_) if self.connection.is_none() => self.exchange(request),
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, request: &Value) -> Result<Value, Error> {
        if self.connection.as_ref().is_none_or(LineConnection::is_closed) {
            let connection = LineConnection::connect(self.addr, CONNECT_TIMEOUT)
                .map_err(|e| Error::unreachable(format!("the {} service at {}: {e}", self.kind, self.addr)))?;
            self.connection = Some(connection);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(Error::unreachable(format!("no connection to {}", self.addr)));
        };
        let answered = connection
            .send_line(&request.to_string())
            .and_then(|()| connection.next_line(REPLY_TIMEOUT))
            .map_err(|e| Error::unreachable(format!("the {} service at {}: {e}", self.kind, self.addr)));
        match answered {
            Ok(Some(line)) => serde_json::from_str(&line)
                .map_err(|e| Error::failed(format!("the {} service answered {line:?}: {e}", self.kind))),
            Ok(None) => {
                self.connection = None;
                Err(Error::unreachable(format!("the {} service did not answer within {REPLY_TIMEOUT:?}", self.kind)))
            }
            Err(e) => {
                self.connection = None;
                Err(e)
            }
        }
    }
}

/// `answer[key]` as an object, or the service's error.
fn field(mut answer: Value, key: &str) -> Result<Object, Error> {
    if let Some(error) = answer.get("error") {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("COMMAND_FAILED");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("the service refused");
        return Err(Error::other(code, message));
    }
    match answer.get_mut(key).map(Value::take) {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(Error::failed(format!("the service's answer has no \"{key}\" object: {answer}"))),
    }
}

iot2mqtt_sdk::export!(SensorHub);
