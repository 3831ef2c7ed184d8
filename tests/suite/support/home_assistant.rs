//! What Home Assistant does with an MQTT discovery config, done the same way here: check it
//! against the documented schema of its component (integrations/mqtt: the per-component
//! pages list every option and mark the required ones), and render its templates with a Jinja
//! engine (minijinja) given the variables Home Assistant gives them.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Options every MQTT entity takes (the "entity" and "availability" options of the docs).
const COMMON: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "unique_id",
];

/// A component's options: required, then every other one it documents.
fn schema(component: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match component {
        "light" => (
            &["command_topic"],
            &[
                "brightness_command_template",
                "brightness_command_topic",
                "brightness_scale",
                "brightness_state_topic",
                "brightness_value_template",
                "color_mode_state_topic",
                "color_mode_value_template",
                "color_temp_command_template",
                "color_temp_command_topic",
                "color_temp_kelvin",
                "color_temp_state_topic",
                "color_temp_value_template",
                "effect_command_template",
                "effect_command_topic",
                "effect_list",
                "effect_state_topic",
                "effect_value_template",
                "hs_command_template",
                "hs_command_topic",
                "hs_state_topic",
                "hs_value_template",
                "max_kelvin",
                "max_mireds",
                "min_kelvin",
                "min_mireds",
                "on_command_type",
                "optimistic",
                "payload_off",
                "payload_on",
                "retain",
                "rgb_command_template",
                "rgb_command_topic",
                "rgb_state_topic",
                "rgb_value_template",
                "schema",
                "state_topic",
                "state_value_template",
                "white_command_topic",
                "white_scale",
                "xy_command_template",
                "xy_command_topic",
                "xy_state_topic",
                "xy_value_template",
            ],
        ),
        "switch" => (
            &["command_topic"],
            &[
                "command_template",
                "device_class",
                "optimistic",
                "payload_off",
                "payload_on",
                "retain",
                "state_off",
                "state_on",
                "state_topic",
                "value_template",
            ],
        ),
        "binary_sensor" => (
            &["state_topic"],
            &[
                "device_class",
                "expire_after",
                "force_update",
                "off_delay",
                "payload_off",
                "payload_on",
                "value_template",
            ],
        ),
        "sensor" => (
            &["state_topic"],
            &[
                "device_class",
                "expire_after",
                "force_update",
                "last_reset_value_template",
                "options",
                "suggested_display_precision",
                "state_class",
                "unit_of_measurement",
                "value_template",
            ],
        ),
        "number" => (
            &["command_topic"],
            &[
                "command_template",
                "device_class",
                "max",
                "min",
                "mode",
                "optimistic",
                "payload_reset",
                "retain",
                "state_topic",
                "step",
                "unit_of_measurement",
                "value_template",
            ],
        ),
        "select" => (
            &["command_topic", "options"],
            &["command_template", "optimistic", "retain", "state_topic", "value_template"],
        ),
        "button" => (&["command_topic"], &["command_template", "device_class", "payload_press", "retain"]),
        _ => return None,
    })
}

/// The device registry options.
const DEVICE: &[&str] = &[
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
];

/// Check one config published on `topic`: the topic's form, the component's required and
/// known options, the device and origin blocks, and that every template compiles. Returns the
/// component.
pub fn check(topic: &str, config: &Value) -> String {
    let parts: Vec<&str> = topic.split('/').collect();
    let [_, component, node, object, "config"] = parts.as_slice() else {
        panic!("{topic}: not <prefix>/<component>/<node_id>/<object_id>/config");
    };
    let id_chars = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    assert!(id_chars(node) && id_chars(object), "{topic}: node and object ids must be [a-zA-Z0-9_-]");
    let (required, optional) = schema(component).unwrap_or_else(|| panic!("{topic}: unknown component {component}"));
    let Value::Object(config) = config else { panic!("{topic}: the config is not an object") };
    for key in required {
        assert!(config.contains_key(*key), "{topic}: {component} requires {key}");
    }
    for key in config.keys() {
        assert!(
            required.contains(&key.as_str()) || optional.contains(&key.as_str()) || COMMON.contains(&key.as_str()),
            "{topic}: {component} has no option {key}"
        );
    }
    for key in ["unique_id", "device", "origin"] {
        assert!(config.contains_key(key), "{topic}: {key} is needed for the entity to be managed in the UI");
    }
    let device = config["device"].as_object().unwrap_or_else(|| panic!("{topic}: device is not an object"));
    for key in device.keys() {
        assert!(DEVICE.contains(&key.as_str()), "{topic}: a device has no option {key}");
    }
    let identifiers = device["identifiers"].as_array().unwrap_or_else(|| panic!("{topic}: no device identifiers"));
    assert!(!identifiers.is_empty() && identifiers.iter().all(Value::is_string), "{topic}: identifiers");
    assert!(config["origin"]["name"].is_string(), "{topic}: the origin needs a name");
    for (key, value) in config {
        if key.ends_with("_template") {
            let template = value.as_str().unwrap_or_else(|| panic!("{topic}: {key} is not a string"));
            jinja().template_from_str(template).unwrap_or_else(|e| panic!("{topic}: {key} does not compile: {e}"));
        }
        if key.ends_with("_topic") {
            let topic_value = value.as_str().unwrap_or_default();
            assert!(!topic_value.is_empty() && !topic_value.contains(['+', '#']), "{topic}: {key} = {value}");
        }
    }
    component.to_string()
}

/// Check a whole set of configs: each one, and unique ids unique across all of them.
pub fn check_all<'a>(configs: impl IntoIterator<Item = (&'a str, &'a Value)>) {
    let mut ids = BTreeSet::new();
    for (topic, config) in configs {
        check(topic, config);
        let id = config["unique_id"].as_str().unwrap_or_default().to_string();
        assert!(ids.insert(id.clone()), "unique_id {id} is used twice");
    }
}

fn jinja() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Render `template` as Home Assistant renders a command template: with `vars` (`value`,
/// `red`, `hue`…).
pub fn render(template: &str, vars: &Map<String, Value>) -> String {
    let env = jinja();
    let compiled = env.template_from_str(template).unwrap_or_else(|e| panic!("{template}: {e}"));
    compiled.render(minijinja::Value::from_serialize(vars)).unwrap_or_else(|e| panic!("{template}: {e}"))
}

/// Render a value template against an incoming payload, as `value` and `value_json`.
pub fn render_value(template: &str, payload: &str) -> String {
    let mut vars = Map::new();
    vars.insert("value".into(), Value::String(payload.to_string()));
    if let Ok(json) = serde_json::from_str::<Value>(payload) {
        vars.insert("value_json".into(), json);
    }
    render(template, &vars)
}
