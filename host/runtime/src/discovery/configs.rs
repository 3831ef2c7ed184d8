//! The discovery configs themselves: what one device (or the instance) looks like to Home
//! Assistant, built from what its plugin said. Pure functions of their inputs, so every shape
//! is unit-tested here and checked against Home Assistant's schema in the suite.
//!
//! Every config points at the contract's topics: state is read from `B/devices/{d}/state`
//! (`value_json.state[…]`), commands go to `B/devices/{d}/cmd` in the bare-values form
//! (`{"power": true}`), availability needs both `B/status` and the device's own.

use iot2mqtt_contract::Topics;
use iot2mqtt_contract::message::Object;
use iot2mqtt_engine::capabilities::{Bounded, Category, Description, Entity, Kind, Light, StateClass};
use serde_json::{Map, Value, json};

/// One retained config: its topic under the discovery prefix and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) topic: String,
    pub(crate) payload: Value,
}

/// Where an instance's configs go and what they share.
#[derive(Debug, Clone)]
pub(crate) struct Namer {
    pub(crate) prefix: String,
    /// The node id: base topic and instance, unique per installation and broker.
    pub(crate) node: String,
    pub(crate) topics: Topics,
    pub(crate) qos: u8,
}

/// A device as discovery needs it.
#[derive(Debug)]
pub(crate) struct DeviceFacts<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) sw_version: &'a str,
    pub(crate) description: Option<&'a Description>,
    /// The last state, for devices without a description.
    pub(crate) state: Option<&'a Object>,
}

impl Namer {
    pub(crate) fn new(prefix: &str, base_topic: &str, topics: Topics, instance: &str, qos: u8) -> Self {
        let node = format!("{}{}", super::discovery_node_prefix(base_topic), safe(instance));
        Self { prefix: prefix.to_string(), node, topics, qos }
    }

    /// The filter matching every config of this instance.
    pub(crate) fn own_configs(&self) -> String {
        format!("{}/+/{}/+/config", self.prefix, self.node)
    }

    /// Home Assistant's birth and will topic.
    pub(crate) fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// Whether `topic` is one of this instance's configs.
    pub(crate) fn is_own_config(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix('/')) else { return false };
        matches!(rest.split('/').collect::<Vec<_>>().as_slice(), [_, node, _, "config"] if *node == self.node)
    }

    /// The device registry identifier of a device.
    pub(crate) fn device_identifier(&self, device: &str) -> String {
        format!("{}_{device}", self.node)
    }

    /// The instance's own config: a connectivity sensor on `B/status`, which makes the
    /// instance a device that its devices are `via`.
    pub(crate) fn instance(&self, name: &str, connector: &str) -> Config {
        let mut payload = Map::new();
        payload.insert("name".into(), json!("Connection"));
        payload.insert("unique_id".into(), json!(format!("{}_status", self.node)));
        payload.insert("object_id".into(), json!(format!("{}_status", self.node)));
        payload.insert("state_topic".into(), json!(self.topics.status()));
        payload.insert("payload_on".into(), json!("online"));
        payload.insert("payload_off".into(), json!("offline"));
        payload.insert("device_class".into(), json!("connectivity"));
        payload.insert("entity_category".into(), json!("diagnostic"));
        payload.insert(
            "device".into(),
            json!({
                "identifiers": [self.node],
                "name": name,
                "model": connector,
                "manufacturer": "iot2mqtt",
                "sw_version": env!("CARGO_PKG_VERSION"),
            }),
        );
        payload.insert("origin".into(), origin());
        Config { topic: format!("{}/binary_sensor/{}/status/config", self.prefix, self.node), payload: payload.into() }
    }

    /// A device's configs: one per entity it describes, or a sensor per numeric or boolean
    /// state key when it describes none.
    pub(crate) fn device(&self, facts: &DeviceFacts<'_>) -> Vec<Config> {
        let entities = match facts.description {
            Some(description) => description.entities.clone(),
            None => fallback(facts.state),
        };
        let mut seen = std::collections::BTreeSet::new();
        entities
            .iter()
            .filter(|entity| {
                let usable = !entity.key.is_empty() && seen.insert(safe(&entity.key));
                if !usable {
                    tracing::warn!(device = facts.id, key = %entity.key, "a described entity without a key of its own is left out");
                }
                usable
            })
            .map(|entity| self.entity(facts, entity))
            .collect()
    }

    fn entity(&self, facts: &DeviceFacts<'_>, entity: &Entity) -> Config {
        let d = facts.id;
        let object_id = format!("{}_{}", safe(d), safe(&entity.key));
        let unique_id = format!("{}_{object_id}", self.node);
        let (component, mut payload) = kind_config(&entity.kind, &self.topics.state(d), &self.topics.command(d));
        payload.insert("name".into(), entity.name.clone().map_or(Value::Null, Value::String));
        payload.insert("unique_id".into(), json!(unique_id));
        payload.insert("object_id".into(), json!(format!("{}_{object_id}", self.node)));
        if let Some(class) = &entity.device_class {
            payload.insert("device_class".into(), json!(class));
        }
        if let Some(category) = entity.category {
            let category = match category {
                Category::Config => "config",
                Category::Diagnostic => "diagnostic",
            };
            payload.insert("entity_category".into(), json!(category));
        }
        if let Some(icon) = &entity.icon {
            payload.insert("icon".into(), json!(icon));
        }
        payload.insert(
            "availability".into(),
            json!([{"topic": self.topics.status()}, {"topic": self.topics.availability(d)}]),
        );
        payload.insert("availability_mode".into(), json!("all"));
        if payload.contains_key("command_topic") {
            payload.insert("qos".into(), json!(self.qos));
        }
        let description = facts.description;
        let mut device = Map::new();
        device.insert("identifiers".into(), json!([self.device_identifier(d)]));
        device.insert("name".into(), json!(facts.name));
        if let Some(model) = description.and_then(|d| d.model.as_deref()).or(facts.model) {
            device.insert("model".into(), json!(model));
        }
        if let Some(manufacturer) = description.and_then(|d| d.manufacturer.as_deref()) {
            device.insert("manufacturer".into(), json!(manufacturer));
        }
        device.insert("sw_version".into(), json!(facts.sw_version));
        device.insert("via_device".into(), json!(self.node));
        payload.insert("device".into(), device.into());
        payload.insert("origin".into(), origin());
        Config {
            topic: format!("{}/{component}/{}/{object_id}/config", self.prefix, self.node),
            payload: payload.into(),
        }
    }
}

/// Who publishes the configs.
fn origin() -> Value {
    json!({"name": "iot2mqtt", "sw_version": env!("CARGO_PKG_VERSION")})
}

/// A sensor per numeric key and a binary sensor per boolean key of `state` (not `online`:
/// that is availability).
fn fallback(state: Option<&Object>) -> Vec<Entity> {
    let Some(state) = state else { return Vec::new() };
    let mut entities = Vec::new();
    for (key, value) in state {
        let kind = match value {
            _ if key == "online" => continue,
            Value::Bool(_) => Kind::BinarySensor(key.clone()),
            Value::Number(_) => Kind::Sensor(iot2mqtt_engine::capabilities::Sensor {
                property: key.clone(),
                unit: None,
                state_class: Some(StateClass::Measurement),
            }),
            _ => continue,
        };
        entities.push(Entity {
            key: key.clone(),
            name: Some(humane(key)),
            device_class: None,
            category: None,
            icon: None,
            kind,
        });
    }
    entities
}

/// The component and its kind-specific keys.
fn kind_config(kind: &Kind, state: &str, command: &str) -> (&'static str, Map<String, Value>) {
    let mut c = Map::new();
    let component = match kind {
        Kind::Light(light) => {
            light_config(&mut c, light, state, command);
            "light"
        }
        Kind::Switch(property) => {
            c.insert("state_topic".into(), json!(state));
            c.insert("value_template".into(), json!(on_off(property)));
            c.insert("state_on".into(), json!("ON"));
            c.insert("state_off".into(), json!("OFF"));
            c.insert("command_topic".into(), json!(command));
            c.insert("payload_on".into(), json!(command_of(property, "true")));
            c.insert("payload_off".into(), json!(command_of(property, "false")));
            "switch"
        }
        Kind::BinarySensor(property) => {
            c.insert("state_topic".into(), json!(state));
            c.insert("value_template".into(), json!(on_off(property)));
            c.insert("payload_on".into(), json!("ON"));
            c.insert("payload_off".into(), json!("OFF"));
            "binary_sensor"
        }
        Kind::Sensor(sensor) => {
            c.insert("state_topic".into(), json!(state));
            c.insert("value_template".into(), json!(value_or_none(&sensor.property)));
            if let Some(unit) = &sensor.unit {
                c.insert("unit_of_measurement".into(), json!(unit));
            }
            if let Some(class) = sensor.state_class {
                let class = match class {
                    StateClass::Measurement => "measurement",
                    StateClass::Total => "total",
                    StateClass::TotalIncreasing => "total_increasing",
                };
                c.insert("state_class".into(), json!(class));
            }
            "sensor"
        }
        Kind::Number(number) => {
            c.insert("state_topic".into(), json!(state));
            c.insert("value_template".into(), json!(value_or_none(&number.property)));
            c.insert("command_topic".into(), json!(command));
            let whole = [number.min, number.max, number.step].iter().all(|v| v.fract() == 0.0);
            let value = if whole { "{{ value | int }}" } else { "{{ value | float }}" };
            c.insert("command_template".into(), json!(command_of(&number.property, value)));
            c.insert("min".into(), json!(number.min));
            c.insert("max".into(), json!(number.max));
            c.insert("step".into(), json!(number.step));
            if let Some(unit) = &number.unit {
                c.insert("unit_of_measurement".into(), json!(unit));
            }
            "number"
        }
        Kind::Select(choice) => {
            c.insert("state_topic".into(), json!(state));
            c.insert("value_template".into(), json!(value_or_none(&choice.property)));
            c.insert("command_topic".into(), json!(command));
            c.insert("command_template".into(), json!(command_of(&choice.property, "{{ value | tojson }}")));
            c.insert("options".into(), json!(choice.options));
            "select"
        }
        Kind::Button(command_json) => {
            c.insert("command_topic".into(), json!(command));
            c.insert("payload_press".into(), json!(compact(command_json)));
            "button"
        }
    };
    (component, c)
}

/// A light in Home Assistant's default schema: one command and state topic per feature, all
/// of them the device's own `cmd` and `state`.
fn light_config(c: &mut Map<String, Value>, light: &Light, state: &str, command: &str) {
    let (on, off) = (command_of(&light.power, "true"), command_of(&light.power, "false"));
    c.insert("command_topic".into(), json!(command));
    c.insert("state_topic".into(), json!(state));
    // The default schema compares the state it reads with the command payloads.
    c.insert(
        "state_value_template".into(),
        json!(format!(
            "{{% if {} %}}{{% if {} %}}{{% raw %}}{on}{{% endraw %}}{{% else %}}{{% raw %}}{off}{{% endraw %}}{{% endif %}}{{% endif %}}",
            defined(&light.power),
            read(&light.power)
        )),
    );
    c.insert("payload_on".into(), json!(on));
    c.insert("payload_off".into(), json!(off));
    if let Some(Bounded { property, min, max }) = &light.brightness {
        let (min, max) = (min.round() as i64, max.round() as i64);
        c.insert("brightness_command_topic".into(), json!(command));
        c.insert(
            "brightness_command_template".into(),
            json!(command_of(property, &format!("{{{{ [[value | int, {min}] | max, {max}] | min }}}}"))),
        );
        c.insert("brightness_scale".into(), json!(max));
        c.insert("brightness_state_topic".into(), json!(state));
        c.insert("brightness_value_template".into(), json!(value_or_empty(property)));
    }
    if let Some(Bounded { property, min, max }) = &light.color_temp {
        // Mireds, which every Home Assistant version reads; the device speaks kelvin.
        let mireds = |kelvin: f64| (1_000_000.0 / kelvin.max(1.0)).round() as i64;
        c.insert("color_temp_command_topic".into(), json!(command));
        c.insert(
            "color_temp_command_template".into(),
            json!(command_of(property, "{{ (1000000 / value) | round | int }}")),
        );
        c.insert("color_temp_state_topic".into(), json!(state));
        c.insert(
            "color_temp_value_template".into(),
            json!(format!(
                "{{% if {} and {} > 0 %}}{{{{ (1000000 / {}) | round | int }}}}{{% endif %}}",
                defined(property),
                read(property),
                read(property)
            )),
        );
        c.insert("min_mireds".into(), json!(mireds(*max)));
        c.insert("max_mireds".into(), json!(mireds(*min)));
    }
    if let Some(property) = &light.rgb {
        c.insert("rgb_command_topic".into(), json!(command));
        c.insert(
            "rgb_command_template".into(),
            json!(command_of(property, r#"{"r": {{ red }}, "g": {{ green }}, "b": {{ blue }}}"#)),
        );
        c.insert("rgb_state_topic".into(), json!(state));
        let (r, g, b) =
            (read(&format!("{property}.r")), read(&format!("{property}.g")), read(&format!("{property}.b")));
        c.insert(
            "rgb_value_template".into(),
            json!(format!("{{% if {} %}}{{{{ {r} }}}},{{{{ {g} }}}},{{{{ {b} }}}}{{% endif %}}", defined(property))),
        );
    }
    if let Some(property) = &light.hs {
        c.insert("hs_command_topic".into(), json!(command));
        c.insert(
            "hs_command_template".into(),
            json!(command_of(property, r#"{"h": {{ hue | round | int }}, "s": {{ sat | round | int }}}"#)),
        );
        c.insert("hs_state_topic".into(), json!(state));
        let (h, s) = (read(&format!("{property}.h")), read(&format!("{property}.s")));
        c.insert(
            "hs_value_template".into(),
            json!(format!("{{% if {} %}}{{{{ {h} }}}},{{{{ {s} }}}}{{% endif %}}", defined(property))),
        );
    }
    if !light.effects.is_empty() {
        let mut template = String::new();
        for (i, preset) in light.effects.iter().enumerate() {
            let keyword = if i == 0 { "if" } else { "elif" };
            let name = Value::String(preset.name.clone());
            template.push_str(&format!(
                "{{% {keyword} value == {name} %}}{{% raw %}}{}{{% endraw %}}",
                compact(&preset.command)
            ));
        }
        template.push_str("{% endif %}");
        c.insert("effect_command_topic".into(), json!(command));
        c.insert("effect_command_template".into(), json!(template));
        c.insert("effect_list".into(), json!(light.effects.iter().map(|p| p.name.clone()).collect::<Vec<_>>()));
    }
}

/// The Jinja expression reading `property` (a dotted path) from a state message.
fn read(property: &str) -> String {
    let mut expr = "value_json.state".to_string();
    for part in property.split('.') {
        expr.push('[');
        expr.push_str(&Value::String(part.to_string()).to_string());
        expr.push(']');
    }
    expr
}

/// The Jinja test that every step of `property` is in the state message.
fn defined(property: &str) -> String {
    let parts: Vec<&str> = property.split('.').collect();
    (1..=parts.len()).map(|n| format!("{} is defined", read(&parts[..n].join(".")))).collect::<Vec<_>>().join(" and ")
}

/// `ON`/`OFF` from a boolean property; nothing when it is absent (Home Assistant ignores it).
fn on_off(property: &str) -> String {
    format!("{{% if {} %}}{{{{ 'ON' if {} else 'OFF' }}}}{{% endif %}}", defined(property), read(property))
}

/// The value, or `None` (Home Assistant's "unknown") when it is absent.
fn value_or_none(property: &str) -> String {
    format!("{{{{ {} if {} else 'None' }}}}", read(property), defined(property))
}

/// The value, or nothing when it is absent.
fn value_or_empty(property: &str) -> String {
    format!("{{% if {} %}}{{{{ {} }}}}{{% endif %}}", defined(property), read(property))
}

/// The bare-values command setting `property` (a dotted path nests) to `value`, JSON text or
/// a template fragment that renders to JSON.
fn command_of(property: &str, value: &str) -> String {
    let parts: Vec<&str> = property.split('.').collect();
    let mut text = String::new();
    for part in &parts {
        text.push('{');
        text.push_str(&Value::String((*part).to_string()).to_string());
        text.push_str(": ");
    }
    text.push_str(value);
    text.push_str(&"}".repeat(parts.len()));
    text
}

/// A plugin's command JSON, compact; `{}` when it is not JSON (the host checks before).
fn compact(json: &str) -> String {
    serde_json::from_str::<Value>(json).map(|v| v.to_string()).unwrap_or_else(|_| "{}".into())
}

/// `color_temp` → `Color temp`.
fn humane(key: &str) -> String {
    let words = key.replace(['_', '.'], " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// An id safe in a discovery topic (`[a-zA-Z0-9_-]`). A changed id gets a short hash of the
/// original, so `a.b` and `a_b` stay apart.
pub(crate) fn safe(id: &str) -> String {
    let cleaned: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if cleaned == id || id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return cleaned;
    }
    // FNV-1a: short, stable across versions and platforms.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{cleaned}_{:06x}", hash & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use iot2mqtt_contract::InstanceId;
    use iot2mqtt_engine::capabilities::{Choice, Number, Preset, Sensor};

    use super::*;

    fn namer() -> Namer {
        let id = InstanceId::new("home".to_string()).unwrap();
        Namer::new("homeassistant", "IoT2mqtt", Topics::new("IoT2mqtt", &id), "home", 1)
    }

    fn facts<'a>(description: Option<&'a Description>, state: Option<&'a Object>) -> DeviceFacts<'a> {
        DeviceFacts {
            id: "lamp",
            name: "Desk lamp",
            model: Some("demo-light"),
            sw_version: "1.0.0",
            description,
            state,
        }
    }

    fn entity(key: &str, kind: Kind) -> Entity {
        Entity { key: key.into(), name: None, device_class: None, category: None, icon: None, kind }
    }

    #[test]
    fn a_light_points_at_the_contract_topics() {
        let light = Light {
            power: "power".into(),
            brightness: Some(Bounded { property: "brightness".into(), min: 1.0, max: 100.0 }),
            color_temp: Some(Bounded { property: "color_temp".into(), min: 1700.0, max: 6500.0 }),
            rgb: Some("rgb".into()),
            hs: None,
            effects: vec![Preset { name: "sunrise".into(), command: r#"{"scene": "sunrise"}"#.into() }],
        };
        let description = Description {
            manufacturer: Some("Acme".into()),
            model: None,
            entities: vec![entity("light", Kind::Light(light))],
        };
        let configs = namer().device(&facts(Some(&description), None));
        assert_eq!(configs.len(), 1);
        let c = &configs[0];
        assert_eq!(c.topic, "homeassistant/light/IoT2mqtt_home/lamp_light/config");
        let p = &c.payload;
        assert_eq!(p["command_topic"], "IoT2mqtt/v1/instances/home/devices/lamp/cmd");
        assert_eq!(p["state_topic"], "IoT2mqtt/v1/instances/home/devices/lamp/state");
        assert_eq!(p["payload_on"], r#"{"power": true}"#);
        assert_eq!(p["brightness_scale"], 100);
        assert_eq!(p["min_mireds"], 154);
        assert_eq!(p["max_mireds"], 588);
        assert_eq!(p["effect_list"], json!(["sunrise"]));
        assert_eq!(p["unique_id"], "IoT2mqtt_home_lamp_light");
        assert_eq!(p["name"], Value::Null);
        assert_eq!(p["device"]["identifiers"], json!(["IoT2mqtt_home_lamp"]));
        assert_eq!(p["device"]["manufacturer"], "Acme");
        assert_eq!(p["device"]["model"], "demo-light");
        assert_eq!(p["device"]["via_device"], "IoT2mqtt_home");
        assert_eq!(p["availability_mode"], "all");
    }

    #[test]
    fn nested_properties_read_and_command_nested_objects() {
        assert_eq!(read("background.power"), r#"value_json.state["background"]["power"]"#);
        assert_eq!(command_of("background.power", "true"), r#"{"background": {"power": true}}"#);
        assert_eq!(defined("a.b"), r#"value_json.state["a"] is defined and value_json.state["a"]["b"] is defined"#);
    }

    #[test]
    fn without_a_description_numbers_and_booleans_become_sensors() {
        let state: Object = serde_json::from_value(
            json!({"temperature": 21.5, "door_open": false, "label": "x", "online": true, "nested": {"a": 1}}),
        )
        .unwrap();
        let configs = namer().device(&facts(None, Some(&state)));
        let topics: Vec<&str> = configs.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/sensor/IoT2mqtt_home/lamp_temperature/config",
                "homeassistant/binary_sensor/IoT2mqtt_home/lamp_door_open/config",
            ]
        );
        assert_eq!(configs[0].payload["name"], "Temperature");
        assert_eq!(configs[1].payload["name"], "Door open");
        assert!(namer().device(&facts(None, None)).is_empty());
    }

    #[test]
    fn numbers_selects_and_buttons() {
        let description = Description {
            manufacturer: None,
            model: None,
            entities: vec![
                entity(
                    "level",
                    Kind::Number(Number { property: "level".into(), min: 0.0, max: 10.0, step: 0.5, unit: None }),
                ),
                entity("mode", Kind::Select(Choice { property: "mode".into(), options: vec!["a".into(), "b".into()] })),
                entity("stop", Kind::Button(r#"{ "effect" : "stop" }"#.into())),
                entity("t", Kind::Sensor(Sensor { property: "t".into(), unit: Some("°C".into()), state_class: None })),
            ],
        };
        let configs = namer().device(&facts(Some(&description), None));
        assert_eq!(configs[0].payload["command_template"], r#"{"level": {{ value | float }}}"#);
        assert_eq!(configs[1].payload["command_template"], r#"{"mode": {{ value | tojson }}}"#);
        assert_eq!(configs[2].payload["payload_press"], r#"{"effect":"stop"}"#);
        assert_eq!(configs[3].payload["unit_of_measurement"], "°C");
        assert!(configs[3].payload.get("command_topic").is_none());
    }

    #[test]
    fn ids_are_made_safe_for_topics_without_merging() {
        assert_eq!(safe("lamp-1_a"), "lamp-1_a");
        assert!(safe("a.b").starts_with("a_b_"));
        assert_ne!(safe("a.b"), safe("a:b"));
        assert!(namer().is_own_config("homeassistant/light/IoT2mqtt_home/lamp_light/config"));
        assert!(!namer().is_own_config("homeassistant/light/IoT2mqtt_other/lamp_light/config"));
        assert!(!namer().is_own_config("homeassistant/status"));
    }
}
