//! Devices as people use them: every configured device with its live state from MQTT, and
//! commands sent to one of them. The JSON API and the web UI both go through here.

use std::time::Duration;

use iot2mqtt_contract::{InstanceId, Topics};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::instances::{InstanceError, Instances};
use crate::mqtt::MqttService;

/// A configured device with what MQTT last said of it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    /// Its instance.
    pub instance_id: String,
    /// The instance's connector.
    pub connector_type: Option<String>,
    /// The instance's friendly name.
    #[serde(skip)]
    pub instance_name: String,
    /// The device.
    pub device_id: String,
    /// Its name for people, when its entry has one (`friendly_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Configured enabled.
    pub enabled: bool,
    /// Its last state (`state` of its state topic).
    pub state: Option<Value>,
    /// Its availability: online (`Some(true)`), offline, or not known yet.
    pub available: Option<bool>,
    /// When its last state was published.
    pub last_update: Option<Value>,
}

/// Why a command was not sent.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such device.
    #[error("no device \"{device}\" in instance \"{instance}\"")]
    UnknownDevice {
        /// The instance asked for.
        instance: String,
        /// The device asked for.
        device: String,
    },
    /// The device did not answer in time.
    #[error("the device did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The instances could not be listed.
    #[error(transparent)]
    Instances(#[from] InstanceError),
}

/// Every configured device of every instance, with its live state.
pub async fn list(instances: &Instances, mqtt: &MqttService) -> Result<Vec<DeviceView>, InstanceError> {
    let base = mqtt.settings().base_topic;
    let mut out = Vec::new();
    for instance in instances.list().await? {
        let id = &instance.config.instance_id;
        let topics = Topics::new(&base, id);
        for device in &instance.config.devices {
            let device_id = device.device_id.as_str();
            let message =
                mqtt.get(&topics.state(device_id)).and_then(|c| serde_json::from_str::<Value>(&c.payload).ok());
            let availability = mqtt.get(&topics.availability(device_id)).map(|c| c.payload);
            out.push(DeviceView {
                instance_id: id.to_string(),
                connector_type: instance.config.connector_type.as_ref().map(ToString::to_string),
                instance_name: instance.config.friendly_name.clone().unwrap_or_else(|| id.to_string()),
                device_id: device_id.to_string(),
                friendly_name: device.extra.get("friendly_name").and_then(Value::as_str).map(str::to_string),
                enabled: device.enabled,
                state: message.as_ref().map(|m| m["state"].clone()),
                available: availability.map(|a| a == "online"),
                last_update: message.as_ref().map(|m| m["timestamp"].clone()),
            });
        }
    }
    Ok(out)
}

/// Send `values` to a device and wait up to `timeout` for its `cmd/response`.
pub async fn command(
    instances: &Instances,
    mqtt: &MqttService,
    instance: &str,
    device: &str,
    values: Map<String, Value>,
    timeout: Duration,
) -> Result<Value, CommandError> {
    let unknown = || CommandError::UnknownDevice { instance: instance.to_string(), device: device.to_string() };
    let id = InstanceId::new(instance).map_err(|_| unknown())?;
    let known = instances.list().await?.iter().any(|v| v.config.instance_id == id && v.config.device(device).is_some());
    if !known {
        return Err(unknown());
    }
    let topics = Topics::new(&mqtt.settings().base_topic, &id);
    // An instance that is still starting may not have subscribed yet, and a command published
    // now would be lost: wait, within the command's time, for its retained `online`, which it
    // publishes only once subscribed.
    let began = tokio::time::Instant::now();
    while mqtt.get(&topics.status()).is_none_or(|status| status.payload != "online") && began.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = timeout.saturating_sub(began.elapsed()).max(Duration::from_millis(100));
    mqtt.command(&topics, device, Value::Object(values), left).await.ok_or(CommandError::Timeout(timeout))
}

/// Ask a device for its state now (`B/devices/{d}/get`); the answer arrives on its state topic.
pub fn refresh(mqtt: &MqttService, instance: &InstanceId, device: &str) {
    let topics = Topics::new(&mqtt.settings().base_topic, instance);
    mqtt.publish(&topics.get(device), bytes::Bytes::from_static(b"{}"), iot2mqtt_mqtt::QoS::AtLeastOnce, false);
}
