use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, Object};

/// The instance configuration a plugin is started with: the instance file without its
/// devices and groups, secrets merged into `connection`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    raw: Object,
}

impl Instance {
    pub(crate) fn parse_json(text: &str) -> Result<Self, Error> {
        match serde_json::from_str(text) {
            Ok(Value::Object(raw)) => Ok(Self { raw }),
            Ok(_) => Err(invalid_config("the instance configuration is not a JSON object")),
            Err(e) => Err(invalid_config(format!("the instance configuration is not JSON: {e}"))),
        }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        self.raw.get("instance_id").and_then(Value::as_str).unwrap_or_default()
    }

    /// The `connection` object (empty when absent), with the instance's secrets merged in.
    pub fn connection(&self) -> &Object {
        static EMPTY: std::sync::OnceLock<Object> = std::sync::OnceLock::new();
        match self.raw.get("connection") {
            Some(Value::Object(map)) => map,
            _ => EMPTY.get_or_init(Object::new),
        }
    }

    /// Every key of the configuration.
    pub fn raw(&self) -> &Object {
        &self.raw
    }

    /// The value of `key`, deserialised; `None` when absent or null.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        get(&self.raw, key, "the instance configuration")
    }

    /// The whole configuration as the plugin's own type.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.raw.clone()))
            .map_err(|e| invalid_config(format!("the instance configuration: {e}")))
    }
}

/// One device's entry from the instance configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// The device's id.
    pub id: String,
    raw: Object,
}

impl DeviceConfig {
    pub(crate) fn parse_json(id: String, text: &str) -> Result<Self, Error> {
        match serde_json::from_str(text) {
            Ok(Value::Object(raw)) => Ok(Self { id, raw }),
            Ok(_) => Err(invalid_config(format!("device \"{id}\": its entry is not a JSON object"))),
            Err(e) => Err(invalid_config(format!("device \"{id}\": its entry is not JSON: {e}"))),
        }
    }

    /// Build one by hand (tests of a plugin's logic).
    pub fn new(id: impl Into<String>, raw: Object) -> Self {
        Self { id: id.into(), raw }
    }

    /// Every key of the entry, `device_id` and `enabled` included.
    pub fn raw(&self) -> &Object {
        &self.raw
    }

    /// The value of `key`, deserialised; `None` when absent or null.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        get(&self.raw, key, &format!("device \"{}\"", self.id))
    }

    /// The value of `key`, which must be present.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.get(key)?.ok_or_else(|| invalid_config(format!("device \"{}\": \"{key}\" is required", self.id)))
    }

    /// The whole entry as the plugin's own type.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.raw.clone()))
            .map_err(|e| invalid_config(format!("device \"{}\": {e}", self.id)))
    }
}

fn get<T: DeserializeOwned>(raw: &Object, key: &str, what: &str) -> Result<Option<T>, Error> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| invalid_config(format!("{what}: \"{key}\": {e}"))),
    }
}

fn invalid_config(message: impl Into<String>) -> Error {
    Error::other("INVALID_CONFIG", message)
}
