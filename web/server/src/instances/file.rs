//! An instance file and its secrets, built from a request: the connector's secret fields leave
//! the file for the encrypted store, and the file is checked by the contract's rules before it
//! is written.

use std::collections::BTreeMap;

use iot2mqtt_contract::InstanceId;
use iot2mqtt_contract::config::{ConfigError, InstanceConfig, PluginPin};
use serde_json::Value;

use super::InstanceError;
use crate::catalog::Connector;
use crate::request::InstanceRequest;
use crate::secrets::{MASK, REFERENCE};

/// Build the instance file and its secrets from a request. Fields the connector declares
/// secret, and the request's `secrets`, go to the secrets (replaced by references in the file);
/// a masked or referenced secret keeps its previous value.
pub(super) fn build_config(
    id: &InstanceId,
    connector: &Connector,
    request: InstanceRequest,
    previous: BTreeMap<String, String>,
    created_at: Option<String>,
    updated_at: String,
    plugin: Option<PluginPin>,
) -> Result<(InstanceConfig, BTreeMap<String, String>), InstanceError> {
    let mut secrets = BTreeMap::new();
    let mut connection = request.connection;
    for (key, value) in connection.iter_mut() {
        let declared = connector.secret_fields.contains(key) || request.secrets.contains_key(key);
        let Value::String(text) = value else { continue };
        let is_placeholder = text == MASK || text.starts_with(REFERENCE);
        if is_placeholder {
            if let Some(old) = previous.get(key) {
                secrets.insert(key.clone(), old.clone());
            }
            *value = Value::String(format!("{REFERENCE}{key}"));
        } else if declared {
            secrets.insert(key.clone(), std::mem::take(text));
            *value = Value::String(format!("{REFERENCE}{key}"));
        }
    }
    for (key, value) in request.secrets {
        connection.insert(key.clone(), Value::String(format!("{REFERENCE}{key}")));
        secrets.insert(key, value);
    }
    let config = InstanceConfig {
        instance_id: id.clone(),
        instance_type: "device".into(),
        connector_type: Some(connector.name.clone()),
        friendly_name: request.friendly_name,
        enabled: request.enabled,
        ha_discovery: request.ha_discovery,
        update_interval: request.update_interval.unwrap_or(iot2mqtt_contract::config::DEFAULT_UPDATE_INTERVAL),
        connection,
        devices: request.devices,
        groups: request.groups,
        plugin,
        created_at: Some(created_at.unwrap_or_else(|| updated_at.clone())),
        updated_at: Some(updated_at),
        extra: request.extra,
    };
    config.validate().map_err(|e| match e {
        ConfigError::Invalid { field, message } => InstanceError::invalid(field, message),
        other => InstanceError::invalid("devices", other.to_string()),
    })?;
    Ok((config, secrets))
}
