//! Everything an instance publishes, in the contract's shapes (section 3). The reporter also
//! remembers each device's last state and availability, so availability is published on
//! changes only and `meta/devices_list` can say who is online. Plugin lanes (pushing state)
//! and the dispatcher (polls, commands) share it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use iot2mqtt_contract::message::{
    CommandResponse, ErrorMessage, EventMessage, GroupResponse, Object, RetryInfo, StateMessage,
};
use iot2mqtt_contract::{Severity, Topics};
use iot2mqtt_mqtt::{Message, Outbox, QoS};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

/// Publishes an instance's messages into its session's outbox.
#[derive(Debug)]
pub(crate) struct Reporter {
    topics: Topics,
    outbox: Outbox,
    qos: QoS,
    retain: bool,
    devices: Mutex<HashMap<String, DeviceView>>,
    /// Woken when a device's availability changed, whoever reported it (a poll, a command, a
    /// push from the plugin), so `meta/devices_list` follows without rescanning on every read.
    availability_changed: Notify,
}

/// What the reporter knows of a device.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeviceView {
    /// Whether it answers; `None` before the first read.
    pub(crate) online: Option<bool>,
    /// Its last published state.
    pub(crate) state: Option<Object>,
    /// When that was.
    pub(crate) updated: Option<String>,
}

impl Reporter {
    pub(crate) fn new(topics: Topics, outbox: Outbox, qos: QoS, retain: bool) -> Self {
        Self { topics, outbox, qos, retain, devices: Mutex::default(), availability_changed: Notify::new() }
    }

    /// Completes once some device's availability changed since the last call (changes made
    /// meanwhile are coalesced into one wake-up).
    pub(crate) async fn availability_changed(&self) {
        self.availability_changed.notified().await;
    }

    pub(crate) fn topics(&self) -> &Topics {
        &self.topics
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// `B/status`, the birth-and-will message.
    pub(crate) fn status_message(&self, online: bool) -> Message {
        Message {
            topic: self.topics.status(),
            payload: Bytes::from_static(if online { b"online" } else { b"offline" }),
            qos: QoS::AtLeastOnce,
            retain: true,
            replaceable: true,
        }
    }

    /// A device's full state: the state topic, one topic per key, and availability when it
    /// changed (from the state's `online`, true when absent).
    pub(crate) fn state(&self, device: &str, mut state: Object) {
        let online = state.get("online").and_then(Value::as_bool).unwrap_or(true);
        state.entry("online").or_insert(Value::Bool(online));
        let timestamp = iot2mqtt_contract::time::now();
        // Published first, then kept: the state is moved in, not copied.
        self.publish_state(device, &timestamp, &state, self.retain, true);
        let changed = {
            let mut devices = self.lock();
            // The device is known after its first state: no key to allocate for the lookup.
            if !devices.contains_key(device) {
                devices.insert(device.to_string(), DeviceView::default());
            }
            let Some(view) = devices.get_mut(device) else { return };
            let changed = view.online != Some(online);
            view.online = Some(online);
            view.state = Some(state);
            view.updated = Some(timestamp);
            changed
        };
        if changed {
            self.availability(device, online);
        }
    }

    /// Only some keys of a state, not retained, so the retained full state stays whole.
    pub(crate) fn partial_state(&self, device: &str, state: &Object, keys: &[String]) {
        let partial: Object = keys.iter().filter_map(|k| state.get(k).map(|v| (k.clone(), v.clone()))).collect();
        let message =
            StateMessage { timestamp: iot2mqtt_contract::time::now(), device_id: device.into(), state: partial };
        self.push(self.topics.state(device), &message, self.qos, false, false);
    }

    /// The device stopped answering: availability `offline` and its last state with
    /// `online: false`, once per outage.
    pub(crate) fn unavailable(&self, device: &str) {
        let (changed, state) = {
            let mut devices = self.lock();
            let view = devices.entry(device.to_string()).or_default();
            let changed = view.online != Some(false);
            view.online = Some(false);
            let mut state = view.state.clone().unwrap_or_default();
            state.insert("online".into(), Value::Bool(false));
            view.state = Some(state.clone());
            (changed, state)
        };
        if changed {
            self.publish_state(device, &iot2mqtt_contract::time::now(), &state, self.retain, true);
            self.availability(device, false);
        }
    }

    /// The device's last state, if it was read.
    pub(crate) fn state_of(&self, device: &str) -> Option<Object> {
        self.lock().get(device).and_then(|d| d.state.clone())
    }

    /// Whether the device answers (`false` before its first read), without copying its state.
    pub(crate) fn online(&self, device: &str) -> bool {
        self.lock().get(device).and_then(|d| d.online).unwrap_or(false)
    }

    pub(crate) fn device_error(
        &self,
        device: &str,
        code: &str,
        message: &str,
        severity: Severity,
        retry: Option<RetryInfo>,
    ) {
        let payload = error_message(code, message, severity, retry);
        self.push(self.topics.device_error(device), &payload, self.qos, false, false);
    }

    pub(crate) fn instance_error(&self, code: &str, message: &str, severity: Severity) {
        let payload = error_message(code, message, severity, None);
        self.push(self.topics.instance_error(), &payload, self.qos, false, false);
    }

    pub(crate) fn event(&self, device: &str, event: &str, data: Object) {
        let payload = EventMessage { timestamp: iot2mqtt_contract::time::now(), event: event.into(), data };
        self.push(self.topics.events(device), &payload, self.qos, false, false);
    }

    /// A command response; returns its bytes for answering duplicates.
    pub(crate) fn response(&self, device: &str, response: &CommandResponse) -> Bytes {
        let bytes = to_bytes(response);
        self.response_bytes(self.topics.command_response(device), bytes.clone());
        bytes
    }

    pub(crate) fn group_response(&self, group: &str, response: &GroupResponse) -> Bytes {
        let bytes = to_bytes(response);
        self.response_bytes(self.topics.group_response(group), bytes.clone());
        bytes
    }

    pub(crate) fn response_bytes(&self, topic: String, payload: Bytes) {
        self.outbox.push(Message { topic, payload, qos: self.qos, retain: false, replaceable: false });
    }

    /// A retained meta message (`meta/devices_list`, `meta/info`).
    pub(crate) fn meta(&self, topic: String, payload: &impl Serialize) {
        self.push(topic, payload, QoS::AtLeastOnce, true, true);
    }

    fn availability(&self, device: &str, online: bool) {
        self.outbox.push(Message {
            topic: self.topics.availability(device),
            payload: Bytes::from_static(if online { b"online" } else { b"offline" }),
            qos: QoS::AtLeastOnce,
            retain: true,
            replaceable: true,
        });
        self.availability_changed.notify_one();
    }

    fn publish_state(&self, device: &str, timestamp: &str, state: &Object, retain: bool, replaceable: bool) {
        // Every payload of the state goes into one buffer, and each message takes a slice of
        // it: one allocation for the payloads of all of them instead of two each.
        let mut buffer = Vec::with_capacity(128 + 32 * state.len());
        let mut ends = Vec::with_capacity(state.len() + 1);
        for value in state.values() {
            write_json(&mut buffer, value);
            ends.push(buffer.len());
        }
        write_json(&mut buffer, &StateView { timestamp, device_id: device, state });
        ends.push(buffer.len());
        let buffer = Bytes::from(buffer);
        let mut start = 0;
        let mut payload = |end: usize| {
            let slice = buffer.slice(start..end);
            start = end;
            slice
        };
        let mut messages = Vec::with_capacity(ends.len());
        for (key, &end) in state.keys().zip(&ends) {
            let topic = self.topics.state_key(device, key);
            messages.push(Message { topic, payload: payload(end), qos: self.qos, retain, replaceable });
        }
        let whole = payload(buffer.len());
        messages.push(Message { topic: self.topics.state(device), payload: whole, qos: self.qos, retain, replaceable });
        // Built before the outbox's lock is taken.
        self.outbox.extend(messages);
    }

    fn push(&self, topic: String, payload: &impl Serialize, qos: QoS, retain: bool, replaceable: bool) {
        self.outbox.push(Message { topic, payload: to_bytes(payload), qos, retain, replaceable });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, DeviceView>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`StateMessage`] of borrowed parts, serialised the same way (a test checks).
#[derive(Serialize)]
struct StateView<'a> {
    timestamp: &'a str,
    device_id: &'a str,
    state: &'a Object,
}

fn error_message(code: &str, message: &str, severity: Severity, retry_info: Option<RetryInfo>) -> ErrorMessage {
    ErrorMessage {
        timestamp: iot2mqtt_contract::time::now(),
        error_code: code.into(),
        message: message.into(),
        severity,
        retry_info,
    }
}

fn to_bytes(payload: &impl Serialize) -> Bytes {
    let mut buffer = Vec::with_capacity(128);
    write_json(&mut buffer, payload);
    Bytes::from(buffer)
}

/// Append `payload` as JSON. Serialising these plain values cannot fail (every map key is a
/// string, and a `Vec` takes every write); should it, the buffer is left as it was.
fn write_json(buffer: &mut Vec<u8>, payload: &impl Serialize) {
    let before = buffer.len();
    if serde_json::to_writer(&mut *buffer, payload).is_err() {
        buffer.truncate(before);
    }
}

/// The QoS of the contract's `MQTT_QOS` setting.
pub(crate) fn qos(level: u8) -> QoS {
    QoS::from_u8(level).unwrap_or(QoS::AtLeastOnce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_state_serialises_as_the_contracts_state_message() {
        let state: Object = serde_json::from_value(serde_json::json!({"power": true, "online": true})).unwrap();
        let owned = StateMessage { timestamp: "t".into(), device_id: "d".into(), state: state.clone() };
        let borrowed = StateView { timestamp: "t", device_id: "d", state: &state };
        assert_eq!(serde_json::to_string(&owned).unwrap(), serde_json::to_string(&borrowed).unwrap());
    }

    #[test]
    fn a_state_publishes_each_key_and_the_whole_from_one_buffer() {
        let id = iot2mqtt_contract::InstanceId::new("house").unwrap();
        let outbox = Outbox::new(100);
        let reporter = Reporter::new(Topics::new("IoT2mqtt", &id), outbox.clone(), QoS::AtLeastOnce, true);
        let state: Object =
            serde_json::from_value(serde_json::json!({"temperature": 21.5, "label": "hall \"A\"", "on": true}))
                .unwrap();
        reporter.state("d1", state);

        let sent: Vec<Message> = std::iter::from_fn(|| outbox.pop()).collect();
        let pairs: Vec<(&str, &str)> =
            sent.iter().map(|m| (m.topic.as_str(), std::str::from_utf8(&m.payload).unwrap())).collect();
        let root = "IoT2mqtt/v1/instances/house/devices/d1";
        // In the state's order (the map keeps it), `online` added last.
        let keys = [("temperature", "21.5"), ("label", r#""hall \"A\"""#), ("on", "true"), ("online", "true")];
        for (i, (key, payload)) in keys.iter().enumerate() {
            assert_eq!(pairs[i], (format!("{root}/state/{key}").as_str(), *payload));
        }
        let (topic, whole) = pairs[keys.len()];
        assert_eq!(topic, format!("{root}/state"));
        let whole: StateMessage = serde_json::from_str(whole).unwrap();
        assert_eq!(whole.device_id, "d1");
        assert_eq!(whole.state.len(), 4);
        assert_eq!(whole.state["label"], "hall \"A\"");
        // The device's first state also makes it available.
        assert_eq!(pairs[keys.len() + 1..], [(format!("{root}/availability").as_str(), "online")]);
        assert!(sent.iter().all(|m| m.retain && m.replaceable && m.qos == QoS::AtLeastOnce));
    }
}
