//! The body of `POST /api/instances` and `PUT /api/instances/{connector}/{id}`, parsed field
//! by field so that every rejection names its field.

use std::collections::BTreeMap;

use iot2mqtt_contract::InstanceId;
use iot2mqtt_contract::command::kind;
use iot2mqtt_contract::config::{DeviceEntry, GroupEntry};
use iot2mqtt_contract::ids::slugify;
use serde_json::{Map, Value};

/// A rejected field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as a path (`devices[1].device_id`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn reject(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// A parsed instance request.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRequest {
    /// The id asked for; `None` means "derive it from the friendly name".
    pub instance_id: Option<InstanceId>,
    /// The connector.
    pub connector_type: Option<String>,
    /// For people.
    pub friendly_name: Option<String>,
    /// Connection settings (`config` in the seed's body, `connection` in the file).
    pub connection: Map<String, Value>,
    /// Device entries.
    pub devices: Vec<DeviceEntry>,
    /// Group entries.
    pub groups: Vec<GroupEntry>,
    /// Poll interval.
    pub update_interval: Option<u64>,
    /// Run it.
    pub enabled: bool,
    /// Announce its devices to Home Assistant.
    pub ha_discovery: bool,
    /// Secrets given separately.
    pub secrets: BTreeMap<String, String>,
    /// Other keys, kept for the connector.
    pub extra: Map<String, Value>,
}

const SERVER_KEYS: [&str; 4] = ["created_at", "updated_at", "plugin", "instance_type"];

impl InstanceRequest {
    /// Parse a request body.
    pub fn parse(body: Value) -> Result<Self, FieldError> {
        let Value::Object(mut body) = body else { return Err(reject("", "the body must be a JSON object")) };
        let instance_id = match body.remove("instance_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() || s == "auto" => None,
            Some(Value::String(s)) => Some(InstanceId::new(s).map_err(|e| reject("instance_id", e.to_string()))?),
            Some(other) => return Err(reject("instance_id", format!("must be a string, not {}", kind(&other)))),
        };
        let connector_type = optional_string(&mut body, "connector_type")?;
        let friendly_name = optional_string(&mut body, "friendly_name")?;
        let mut connection = object(&mut body, "config")?;
        connection.extend(object(&mut body, "connection")?);
        let devices = array(&mut body, "devices")?;
        for (i, device) in devices.iter().enumerate() {
            let Value::Object(entry) = device else { return Err(reject(format!("devices[{i}]"), "must be an object")) };
            match entry.get("device_id") {
                Some(Value::String(id)) => {
                    iot2mqtt_contract::DeviceId::new(id.clone())
                        .map_err(|e| reject(format!("devices[{i}].device_id"), e.to_string()))?;
                }
                Some(other) => {
                    return Err(reject(
                        format!("devices[{i}].device_id"),
                        format!("must be a string, not {}", kind(other)),
                    ));
                }
                None => return Err(reject(format!("devices[{i}].device_id"), "is required")),
            }
            if let Some(enabled) = entry.get("enabled").filter(|v| !v.is_boolean()) {
                return Err(reject(
                    format!("devices[{i}].enabled"),
                    format!("must be true or false, not {}", kind(enabled)),
                ));
            }
        }
        let devices = entries(devices, "devices")?;
        let groups = entries(array(&mut body, "groups")?, "groups")?;
        let update_interval = match body.remove("update_interval") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| reject("update_interval", "must be a whole number of seconds, at least 1"))?,
            ),
            Some(other) => return Err(reject("update_interval", format!("must be a number, not {}", kind(&other)))),
        };
        let enabled = match body.remove("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(other) => return Err(reject("enabled", format!("must be true or false, not {}", kind(&other)))),
        };
        let ha_discovery = match body.remove("ha_discovery") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(reject("ha_discovery", format!("must be true or false, not {}", kind(&other))));
            }
        };
        let mut secrets = BTreeMap::new();
        for (key, value) in object(&mut body, "secrets")? {
            match value {
                Value::String(s) => {
                    secrets.insert(key, s);
                }
                other => {
                    return Err(reject(format!("secrets.{key}"), format!("must be a string, not {}", kind(&other))));
                }
            }
        }
        for key in SERVER_KEYS {
            body.remove(key);
        }
        Ok(Self {
            instance_id,
            connector_type,
            friendly_name,
            connection,
            devices,
            groups,
            update_interval,
            enabled,
            ha_discovery,
            secrets,
            extra: body,
        })
    }

    /// The instance id: the one asked for, or the slug of the friendly name spelt in ASCII
    /// ("Дача" gives `dacha`, "客厅" gives `ke_ting`).
    pub fn resolve_id(&self) -> Result<InstanceId, FieldError> {
        if let Some(id) = &self.instance_id {
            return Ok(id.clone());
        }
        let name = self
            .friendly_name
            .as_deref()
            .ok_or_else(|| reject("friendly_name", "is required when instance_id is empty or \"auto\""))?;
        slugify(&deunicode::deunicode(name))
            .ok_or_else(|| reject("friendly_name", "gives no usable id; choose an instance_id"))
    }
}

fn optional_string(body: &mut Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(reject(key, format!("must be a string, not {}", kind(&other)))),
    }
}

fn object(body: &mut Map<String, Value>, key: &str) -> Result<Map<String, Value>, FieldError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(reject(key, format!("must be an object, not {}", kind(&other)))),
    }
}

fn array(body: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, FieldError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(reject(key, format!("must be a list, not {}", kind(&other)))),
    }
}

/// Typed entries of a list whose items were checked (or need no check beyond their type).
fn entries<T: serde::de::DeserializeOwned>(items: Vec<Value>, key: &str) -> Result<Vec<T>, FieldError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| serde_json::from_value(item).map_err(|e| reject(format!("{key}[{i}]"), e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (json!([]), "", "the body must be a JSON object"),
            (json!({"instance_id": "Bad Id"}), "instance_id", "invalid instance id"),
            (json!({"instance_id": 5}), "instance_id", "must be a string, not a number"),
            (json!({"connector_type": true}), "connector_type", "must be a string"),
            (json!({"config": []}), "config", "must be an object, not an array"),
            (json!({"devices": {}}), "devices", "must be a list"),
            (
                json!({"devices": [{"device_id": "ok"}, {"device_id": "no/pe"}]}),
                "devices[1].device_id",
                "invalid device id",
            ),
            (json!({"devices": [{"name": "x"}]}), "devices[0].device_id", "is required"),
            (json!({"devices": [{"device_id": "a", "enabled": "yes"}]}), "devices[0].enabled", "must be true or false"),
            (json!({"update_interval": 0}), "update_interval", "at least 1"),
            (json!({"update_interval": "10"}), "update_interval", "must be a number"),
            (json!({"enabled": 1}), "enabled", "must be true or false"),
            (json!({"ha_discovery": "no"}), "ha_discovery", "must be true or false"),
            (json!({"secrets": {"password": 5}}), "secrets.password", "must be a string"),
            (json!({"groups": [{"devices": []}]}), "groups[0]", "missing field `group_id`"),
            (json!({"groups": [{"group_id": "g", "devices": ["a/b"]}]}), "groups[0]", "invalid device id"),
        ];
        for (body, field, message) in cases {
            let err = InstanceRequest::parse(body.clone()).unwrap_err();
            assert_eq!(err.field, field, "{body}");
            assert!(err.message.contains(message), "{body}: {err}");
        }
    }

    #[test]
    fn ids_come_from_the_slug_rule() {
        let cases = [
            (json!({"friendly_name": "Living Room"}), Ok("living_room")),
            (json!({"instance_id": "auto", "friendly_name": "Kitchen 2"}), Ok("kitchen_2")),
            (json!({"instance_id": "", "friendly_name": "x"}), Ok("x")),
            (json!({"instance_id": "given", "friendly_name": "x"}), Ok("given")),
            (json!({}), Err("friendly_name")),
            (json!({"friendly_name": "!!!"}), Err("friendly_name")),
            (json!({"friendly_name": "Дача"}), Ok("dacha")),
            (json!({"friendly_name": "客厅"}), Ok("ke_ting")),
            (json!({"friendly_name": "Café"}), Ok("cafe")),
        ];
        for (body, expected) in cases {
            let got = InstanceRequest::parse(body.clone()).unwrap().resolve_id();
            match expected {
                Ok(id) => assert_eq!(got.unwrap().as_str(), id, "{body}"),
                Err(field) => assert_eq!(got.unwrap_err().field, field, "{body}"),
            }
        }
    }

    #[test]
    fn server_managed_keys_are_dropped_and_unknown_keys_kept() {
        let request = InstanceRequest::parse(json!({"created_at": "x", "plugin": {}, "effect": "smooth"})).unwrap();
        assert!(request.extra.get("created_at").is_none() && request.extra.get("plugin").is_none());
        assert_eq!(request.extra["effect"], "smooth");
    }
}
