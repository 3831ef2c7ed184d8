//! The generic half of [`crate::export!`]: converts between WIT types and the SDK's, and keeps
//! the connector in the plugin's single instance slot. Not for direct use.

use std::cell::RefCell;
use std::thread::LocalKey;

use serde_json::Value;
use wasip2::io::poll::Pollable;

use crate::bindings::exports::iot2mqtt::connector::capabilities as described;
use crate::bindings::iot2mqtt::connector::types as wit;
use crate::capabilities as caps;
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

pub fn describe<C: Connector>(slot: &'static Slot<C>, device_id: String) -> Option<described::Description> {
    let capabilities = slot.with_borrow(|s| s.as_ref().and_then(|c| c.capabilities(&device_id)))?;
    Some(described::Description {
        manufacturer: capabilities.manufacturer,
        model: capabilities.model,
        entities: capabilities.entities.into_iter().map(entity).collect(),
    })
}

fn entity(entity: caps::Entity) -> described::Entity {
    let bounded = |b: caps::Bounded| described::Bounded { property: b.property, min: b.min, max: b.max };
    let kind = match entity.kind {
        caps::Kind::Light(light) => described::Kind::Light(described::Light {
            power: light.power,
            brightness: light.brightness.map(bounded),
            color_temp: light.color_temp.map(bounded),
            rgb: light.rgb,
            hs: light.hs,
            effects: light
                .effects
                .into_iter()
                .map(|(name, command)| described::Preset { name, command: Value::Object(command).to_string() })
                .collect(),
        }),
        caps::Kind::Switch(property) => described::Kind::Switch(property),
        caps::Kind::BinarySensor(property) => described::Kind::BinarySensor(property),
        caps::Kind::Sensor(sensor) => described::Kind::Sensor(described::Sensor {
            property: sensor.property,
            unit: sensor.unit,
            state_class: sensor.state_class.map(|class| match class {
                caps::StateClass::Measurement => described::StateClass::Measurement,
                caps::StateClass::Total => described::StateClass::Total,
                caps::StateClass::TotalIncreasing => described::StateClass::TotalIncreasing,
            }),
        }),
        caps::Kind::Number(n) => described::Kind::Number(described::Number {
            property: n.property,
            min: n.min,
            max: n.max,
            step: n.step,
            unit: n.unit,
        }),
        caps::Kind::Select { property, options } => described::Kind::Select(described::Choice { property, options }),
        caps::Kind::Button(command) => described::Kind::Button(Value::Object(command).to_string()),
    };
    described::Entity {
        key: entity.key,
        name: entity.name,
        device_class: entity.device_class,
        category: entity.category.map(|c| match c {
            caps::Category::Config => described::Category::Config,
            caps::Category::Diagnostic => described::Category::Diagnostic,
        }),
        icon: entity.icon,
        kind,
    }
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
