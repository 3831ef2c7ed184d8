//! The generic half of [`crate::export!`]: converts between WIT types and the SDK's, and keeps
//! the connector in the plugin's single instance slot. Not for direct use.

use std::cell::RefCell;
use std::thread::LocalKey;

use serde_json::Value;
use wasip2::io::poll::Pollable;

use crate::bindings::iot2mqtt::connector::types as wit;
use crate::{Connector, DeviceConfig, Error, Instance, Object, Wake};

/// The slot a plugin's connector lives in between calls.
pub type Slot<C> = LocalKey<RefCell<Option<C>>>;

pub fn about(package: &str, version: &str) -> wit::PluginAbout {
    let name = package.strip_prefix("iot2mqtt-plugin-").unwrap_or(package);
    wit::PluginAbout { name: name.to_string(), version: version.to_string() }
}

pub fn init<C: Connector>(
    slot: &'static Slot<C>,
    instance: String,
    devices: Vec<wit::DeviceConfig>,
) -> Result<Vec<wit::DeviceInfo>, wit::Error> {
    let instance = Instance::parse_json(&instance)?;
    let devices =
        devices.into_iter().map(|d| DeviceConfig::parse_json(d.id, &d.config)).collect::<Result<Vec<_>, Error>>()?;
    let connector = C::init(&instance, &devices)?;
    let infos = devices
        .iter()
        .map(|d| {
            let info = connector.describe(d);
            wit::DeviceInfo { id: info.id, model: info.model, poll: info.poll }
        })
        .collect();
    slot.with_borrow_mut(|s| *s = Some(connector));
    Ok(infos)
}

pub fn read_state<C: Connector>(slot: &'static Slot<C>, device_id: String) -> Result<String, wit::Error> {
    let state = with(slot, |c| c.read_state(&device_id))?;
    Ok(Value::Object(state).to_string())
}

pub fn apply<C: Connector>(slot: &'static Slot<C>, device_id: String, values: String) -> Result<String, wit::Error> {
    let values = parse_object(&values, "the command's values")?;
    let result = with(slot, |c| c.apply(&device_id, &values))?;
    Ok(Value::Object(result).to_string())
}

pub fn listen<C: Connector>(slot: &'static Slot<C>, wake: &Pollable) -> bool {
    let wake = Wake::new(wake);
    slot.with_borrow_mut(|s| s.as_mut().is_some_and(|c| c.listen(&wake)))
}

pub fn run_tool<C: Connector>(name: String, input: String) -> Result<String, wit::Error> {
    let input: Value =
        serde_json::from_str(&input).map_err(|e| Error::invalid_value(format!("the tool's input is not JSON: {e}")))?;
    Ok(C::run_tool(&name, input)?.to_string())
}

pub fn save_state<C: Connector>(slot: &'static Slot<C>) -> Option<Vec<u8>> {
    slot.with_borrow(|s| s.as_ref().and_then(Connector::save_state))
}

pub fn restore_state<C: Connector>(slot: &'static Slot<C>, state: Vec<u8>) -> Result<(), String> {
    slot.with_borrow_mut(|s| match s {
        Some(c) => c.restore_state(&state),
        None => Err("restore-state was called before init".to_string()),
    })
}

fn with<C: Connector, R>(slot: &'static Slot<C>, f: impl FnOnce(&mut C) -> Result<R, Error>) -> Result<R, Error> {
    slot.with_borrow_mut(|s| match s {
        Some(c) => f(c),
        None => Err(Error::other("NOT_INITIALISED", "the plugin was called before init")),
    })
}

fn parse_object(text: &str, what: &str) -> Result<Object, Error> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid_value(format!("{what} is not a JSON object"))),
        Err(e) => Err(Error::invalid_value(format!("{what} is not JSON: {e}"))),
    }
}
