//! The instance configuration (contract, section 6): `instances/{connector}/{id}.json`.
//! Known keys are typed and validated; unknown keys belong to the connector and are kept.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ConnectorName, DeviceId, GroupId, InstanceId};
use crate::message::Object;

/// Poll interval when the configuration names none, in seconds.
pub const DEFAULT_UPDATE_INTERVAL: u64 = 10;

/// A problem with an instance file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read instance file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid JSON of the expected shape.
    #[error("invalid instance file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, with line and column.
        source: serde_json::Error,
    },
    /// It parsed, but breaks a rule.
    #[error("invalid instance configuration: {message}")]
    Invalid {
        /// The top-level key at fault (`update_interval`, `devices`, `groups`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// One instance's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// The instance id, used in every topic.
    pub instance_id: InstanceId,
    /// Always `device` for now.
    #[serde(default = "instance_type_device")]
    pub instance_type: String,
    /// The connector that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_type: Option<ConnectorName>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Whether the instance should run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds between polls of each device.
    #[serde(default = "default_update_interval")]
    pub update_interval: u64,
    /// Connection settings shared by the devices; secrets are merged in at start.
    #[serde(default)]
    pub connection: Object,
    /// The devices.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
    /// Groups of devices that take commands together.
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    /// Whether its devices are announced to Home Assistant (MQTT discovery); on by default.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub ha_discovery: bool,
    /// The plugin version the instance runs, pinned by content (written by the orchestrator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginPin>,
    /// When the instance was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The connector's own keys.
    #[serde(flatten)]
    pub extra: Object,
}

/// The plugin version an instance runs, and the one before it (for rollback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginPin {
    /// sha256 of the `.wasm`, hex.
    pub sha256: String,
    /// The version it replaced.
    #[serde(default)]
    pub previous: Option<String>,
}

/// One device of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// The device's id.
    pub device_id: DeviceId,
    /// Disabled devices are neither polled nor commanded.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The connector's keys for this device (`host`, `port`, `kind`…).
    #[serde(flatten)]
    pub extra: Object,
}

/// A group of devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// The group's id.
    pub group_id: GroupId,
    /// Its members.
    #[serde(default)]
    pub devices: Vec<DeviceId>,
    /// Other keys, kept.
    #[serde(flatten)]
    pub extra: Object,
}

impl InstanceConfig {
    /// Read, parse and validate an instance file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Self =
            serde_json::from_slice(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Parse and validate from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text)
            .map_err(|source| ConfigError::Parse { path: PathBuf::from("<inline>"), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Check the rules serde cannot: unique ids, a sane poll interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.update_interval == 0 {
            return Err(invalid("update_interval", "update_interval must be at least 1 second".into()));
        }
        let mut seen = HashSet::new();
        for device in &self.devices {
            if !seen.insert(device.device_id.as_str()) {
                return Err(invalid("devices", format!("device id \"{}\" appears twice", device.device_id)));
            }
        }
        let mut groups = HashSet::new();
        for group in &self.groups {
            if !groups.insert(group.group_id.as_str()) {
                return Err(invalid("groups", format!("group id \"{}\" appears twice", group.group_id)));
            }
        }
        Ok(())
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceEntry> {
        self.devices.iter().find(|d| d.device_id.as_str() == id)
    }

    /// The group with this id.
    pub fn group(&self, id: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.group_id.as_str() == id)
    }

    /// Merge secrets (`KEY=VALUE` pairs) into `connection`.
    pub fn merge_secrets(&mut self, secrets: impl IntoIterator<Item = (String, String)>) {
        for (key, value) in secrets {
            self.connection.insert(key, Value::String(value));
        }
    }

    /// What a plugin is given at init: the configuration without devices and groups.
    pub fn plugin_view(&self) -> Object {
        let mut view = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Object::new(),
        };
        view.remove("devices");
        view.remove("groups");
        view
    }
}

impl DeviceEntry {
    /// The whole entry as a JSON object, as a plugin sees it.
    pub fn to_object(&self) -> Object {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Object::new(),
        }
    }
}

fn invalid(field: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { field, message }
}

fn is_yes(value: &bool) -> bool {
    *value
}

fn yes() -> bool {
    true
}

fn instance_type_device() -> String {
    "device".into()
}

fn default_update_interval() -> u64 {
    DEFAULT_UPDATE_INTERVAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_seed_shape_and_keeps_unknown_keys() {
        let config = InstanceConfig::from_json(
            &json!({
                "instance_id": "yeelight_ly1skw",
                "instance_type": "device",
                "connector_type": "yeelight",
                "friendly_name": "Living Room Light",
                "devices": [{"device_id": "light1", "ip": "192.168.1.100", "enabled": true}],
                "enabled": true,
                "update_interval": 10,
                "effect": "smooth",
                "created_at": "2025-10-12T20:25:11.640083",
                "updated_at": "2025-10-12T20:25:11.640067"
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(config.devices[0].extra["ip"], "192.168.1.100");
        assert_eq!(config.extra["effect"], "smooth");
        let round_trip = serde_json::to_value(&config).unwrap();
        assert_eq!(round_trip["effect"], "smooth");
        assert_eq!(round_trip["devices"][0]["ip"], "192.168.1.100");
        let view = config.plugin_view();
        assert!(view.get("devices").is_none());
        assert_eq!(view["effect"], "smooth");
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            (json!({"instance_id": "Bad Id"}), "invalid instance id \"Bad Id\""),
            (json!({"instance_id": "ok", "update_interval": 0}), "update_interval must be at least 1"),
            (json!({"instance_id": "ok", "update_interval": "ten"}), "invalid type: string \"ten\""),
            (
                json!({"instance_id": "ok", "devices": [{"device_id": "a"}, {"device_id": "a"}]}),
                "device id \"a\" appears twice",
            ),
            (json!({"instance_id": "ok", "devices": [{"device_id": "a/b"}]}), "invalid device id \"a/b\""),
            (json!({"devices": []}), "missing field `instance_id`"),
        ];
        for (input, expected) in cases {
            let err = InstanceConfig::from_json(&input.to_string()).unwrap_err().to_string();
            assert!(err.contains(expected), "input {input}: {err}");
        }
    }
}
