//! Editing an instance: a form of its settings (name, read interval, whether it runs, its
//! connection settings, its secrets shown as set or not set, and each device's settings),
//! turned into the same update request the JSON API takes. The instances service checks it;
//! what it refuses comes back beside the field with the rest of the input intact.
//!
//! A setting's input follows the type of its stored value: a boolean is a checkbox, a number a
//! number input, a string a text input, a list or an object JSON in a text area. A secret is
//! never shown: its input is empty, left empty it keeps the stored value, and a set secret can
//! be removed.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use serde_json::{Map, Value};

use super::Submitted;
use super::views::Chrome;
use super::wizard::Input;
use crate::instances::InstanceView;
use crate::request::InstanceRequest;
use crate::secrets::REFERENCE;

/// The edit page of an instance.
#[derive(Debug, Template)]
#[template(path = "edit.html")]
pub struct EditPage {
    /// The frame.
    pub chrome: Chrome,
    /// The instance's name.
    pub title: String,
    /// Its page (where "Cancel" and a save lead).
    pub back: String,
    /// A problem with the whole form.
    pub error: Option<String>,
    /// Name, read interval, whether it runs.
    pub general: Vec<Input>,
    /// Its connection settings.
    pub connection: Vec<Input>,
    /// Its secrets: a masked input each, and a "remove" checkbox for those that are set.
    pub secrets: Vec<SecretInput>,
    /// Each device's settings.
    pub devices: Vec<DeviceInputs>,
}

/// A secret's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretInput {
    /// The new value (empty: keep).
    pub input: Input,
    /// "Remove", when it is set.
    pub clear: Option<Input>,
}

/// A device's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInputs {
    /// Its id.
    pub id: String,
    /// Its settings, "runs" first.
    pub inputs: Vec<Input>,
}

/// Where a value is in the instance, and how its input is named.
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    Connection(&'a str),
    Device(usize, &'a str),
}

impl Place<'_> {
    fn name(self) -> String {
        match self {
            Place::Connection(key) => format!("conn.{key}"),
            Place::Device(index, key) => format!("dev.{index}.{key}"),
        }
    }
}

/// The form's inputs of `instance`: its stored values, or what the person sent (`submitted`)
/// beside `errors` (keyed by input name).
fn inputs(
    chrome: &Chrome,
    instance: &InstanceView,
    secret_fields: &BTreeSet<String>,
    submitted: Option<&Submitted>,
    errors: &BTreeMap<String, String>,
) -> (Vec<Input>, Vec<Input>, Vec<SecretInput>, Vec<DeviceInputs>) {
    let t = &chrome.t.edit;
    let config = &instance.config;
    let sent = |name: &str| submitted.map(|s| s.get(name).and_then(|v| v.last()).cloned().unwrap_or_default());
    let ticked = |name: &str| submitted.map(|s| s.contains_key(name));
    let error = |name: &str| errors.get(name).cloned();
    let input = |name: String, label: String, value: &Value| {
        let mut input = value_input(name, label, value);
        if let Some(text) = sent(&input.name) {
            input.value = text;
        }
        if input.kind == "checkbox" {
            input.checked = ticked(&input.name).unwrap_or(input.checked);
        }
        input.error = error(&input.name);
        input
    };

    let mut general = vec![
        input("friendly_name".into(), t.name.clone(), &Value::from(config.friendly_name.clone().unwrap_or_default())),
        input(
            "update_interval".into(),
            chrome.t.instance.update_interval.clone(),
            &Value::from(config.update_interval),
        ),
        input("enabled".into(), chrome.t.instance.enabled.clone(), &Value::Bool(config.enabled)),
        input("ha_discovery".into(), chrome.t.instance.ha_discovery.clone(), &Value::Bool(config.ha_discovery)),
    ];
    general[1].min = Some(1.0);

    let mut connection = Vec::new();
    let mut secrets = Vec::new();
    let mut secret_names: BTreeSet<&str> = secret_fields.iter().map(String::as_str).collect();
    for (key, value) in &config.connection {
        if is_secret(value) {
            secret_names.insert(key);
        } else if !secret_fields.contains(key) {
            connection.push(input(Place::Connection(key).name(), key.clone(), value));
        }
    }
    for key in secret_names {
        let set = config.connection.get(key).is_some_and(is_secret);
        let name = format!("secret.{key}");
        let mut field = value_input(name.clone(), key.to_string(), &Value::from(""));
        field.kind = "password";
        field.secret = true;
        field.hint = Some(if set { t.secret_hint_set.clone() } else { t.secret_hint_unset.clone() });
        field.error = error(&name);
        let clear = set.then(|| {
            let mut clear = input(format!("clear.{key}"), format!("{} {key}", t.clear), &Value::Bool(false));
            clear.checked = ticked(&clear.name).unwrap_or(false);
            clear
        });
        secrets.push(SecretInput { input: field, clear });
    }

    let devices = config
        .devices
        .iter()
        .enumerate()
        .map(|(index, device)| {
            let runs = Place::Device(index, "enabled").name();
            let mut inputs = vec![input(runs, t.device_enabled.clone(), &Value::Bool(device.enabled))];
            inputs.extend(
                device.extra.iter().map(|(key, value)| input(Place::Device(index, key).name(), key.clone(), value)),
            );
            DeviceInputs { id: device.device_id.to_string(), inputs }
        })
        .collect();
    (general, connection, secrets, devices)
}

/// A stored reference to a secret.
fn is_secret(value: &Value) -> bool {
    value.as_str().is_some_and(|v| v.starts_with(REFERENCE))
}

/// The input of a value of `value`'s type, holding it.
fn value_input(name: String, label: String, value: &Value) -> Input {
    let (kind, text) = match value {
        Value::Bool(_) => ("checkbox", "true".to_string()),
        Value::Number(n) => ("number", n.to_string()),
        Value::String(s) => ("text", s.clone()),
        Value::Null => ("text", String::new()),
        other => ("textarea", other.to_string()),
    };
    Input {
        name,
        kind,
        label,
        hint: None,
        value: text,
        checked: value.as_bool().unwrap_or(false),
        required: false,
        placeholder: String::new(),
        options: Vec::new(),
        min: None,
        max: None,
        step: None,
        error: None,
        secret: false,
    }
}

/// The value the person sent for a setting stored as `old`, or why it is not one.
fn parse_value(chrome: &Chrome, old: &Value, sent: Option<&str>, ticked: bool) -> Result<Value, String> {
    let t = &chrome.t.edit;
    let text = sent.unwrap_or_default().trim();
    match old {
        Value::Bool(_) => Ok(Value::Bool(ticked)),
        Value::Number(_) => {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::from(n));
            }
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| t.not_number.clone())
        }
        Value::String(_) => Ok(Value::String(sent.unwrap_or_default().to_string())),
        Value::Null if text.is_empty() => Ok(Value::Null),
        Value::Null => Ok(Value::String(text.to_string())),
        _ => serde_json::from_str(text).map_err(|e| format!("{}: {e}", t.not_json)),
    }
}

/// The update request of what the person sent, or the errors beside the inputs.
pub fn request(
    chrome: &Chrome,
    instance: &InstanceView,
    secret_fields: &BTreeSet<String>,
    submitted: &Submitted,
) -> Result<InstanceRequest, BTreeMap<String, String>> {
    let config = &instance.config;
    let sent = |name: &str| submitted.get(name).and_then(|v| v.last()).map(String::as_str);
    let mut errors = BTreeMap::new();
    // A value the form did not send is kept; an unticked checkbox sends nothing, so a boolean
    // is always read.
    let mut value = |name: String, old: &Value| match sent(&name) {
        None if !old.is_boolean() => Some(old.clone()),
        text => match parse_value(chrome, old, text, text.is_some()) {
            Ok(value) => Some(value),
            Err(error) => {
                errors.insert(name, error);
                None
            }
        },
    };

    let friendly_name = sent("friendly_name").map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
    let update_interval = value("update_interval".into(), &Value::from(config.update_interval));

    let mut connection = Map::new();
    let mut secrets = BTreeMap::new();
    for (key, old) in &config.connection {
        if is_secret(old) || secret_fields.contains(key) {
            continue;
        }
        if let Some(new) = value(Place::Connection(key).name(), old) {
            connection.insert(key.clone(), new);
        }
    }
    let secret_names: BTreeSet<&String> =
        config.connection.iter().filter(|(_, v)| is_secret(v)).map(|(k, _)| k).chain(secret_fields).collect();
    for key in secret_names {
        let new = sent(&format!("secret.{key}")).unwrap_or_default();
        let set = config.connection.get(key).is_some_and(is_secret);
        if !new.is_empty() {
            secrets.insert(key.clone(), new.to_string());
        } else if set && sent(&format!("clear.{key}")).is_none() {
            connection.insert(key.clone(), Value::String(format!("{REFERENCE}{key}")));
        }
    }

    let mut devices = config.devices.clone();
    for (index, device) in devices.iter_mut().enumerate() {
        device.enabled = sent(&Place::Device(index, "enabled").name()).is_some();
        for (key, old) in device.extra.iter_mut() {
            if let Some(new) = value(Place::Device(index, key).name(), old) {
                *old = new;
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(InstanceRequest {
        instance_id: Some(config.instance_id.clone()),
        connector_type: config.connector_type.as_ref().map(ToString::to_string),
        friendly_name,
        connection,
        devices,
        groups: config.groups.clone(),
        update_interval: update_interval.and_then(|v| v.as_u64()),
        enabled: sent("enabled").is_some(),
        ha_discovery: sent("ha_discovery").is_some(),
        secrets,
        extra: config.extra.clone(),
    })
}

/// The input a field the instances service refused belongs to (`connection.host` is the
/// `conn.host` input); `None` for one the form does not show.
pub fn input_of(field: &str) -> Option<String> {
    if let Some(key) = field.strip_prefix("connection.") {
        return Some(format!("conn.{key}"));
    }
    matches!(field, "friendly_name" | "update_interval" | "enabled" | "ha_discovery").then(|| field.to_string())
}

impl EditPage {
    /// The form of `instance`; after a refused save, `submitted` and `errors` are what the
    /// person sent and what is wrong with it.
    pub fn build(
        chrome: Chrome,
        instance: &InstanceView,
        secret_fields: &BTreeSet<String>,
        submitted: Option<&Submitted>,
        errors: &BTreeMap<String, String>,
        error: Option<String>,
    ) -> Self {
        let (general, connection, secrets, devices) = inputs(&chrome, instance, secret_fields, submitted, errors);
        let config = &instance.config;
        let connector = config.connector_type.as_ref().map(ToString::to_string).unwrap_or_default();
        Self {
            title: config.friendly_name.clone().unwrap_or_else(|| config.instance_id.to_string()),
            back: format!("/instances/{connector}/{}", config.instance_id),
            error,
            general,
            connection,
            secrets,
            devices,
            chrome,
        }
    }
}

#[cfg(test)]
mod tests {
    use iot2mqtt_contract::config::InstanceConfig;
    use serde_json::json;

    use super::*;
    use crate::instances::Status;
    use crate::runtime::Observed;
    use crate::ui::i18n;

    fn instance() -> InstanceView {
        let config: InstanceConfig = serde_json::from_value(json!({
            "instance_id": "house",
            "connector_type": "demo",
            "friendly_name": "House",
            "update_interval": 10,
            "enabled": true,
            "connection": { "host": "10.0.0.2", "port": 55443, "tls": false, "token": "secret://token", "tags": ["a"] },
            "devices": [{ "device_id": "lamp", "enabled": true, "kind": "light", "brightness_max": 100 }]
        }))
        .unwrap();
        InstanceView {
            config,
            secrets: vec!["token".into()],
            status: Status {
                desired: "running",
                observed: Observed::default(),
                mqtt_status: "online".into(),
                api_restarts: 0,
            },
        }
    }

    fn chrome() -> Chrome {
        Chrome::page(i18n::english(), "", "instances")
    }

    fn form(pairs: &[(&str, &str)]) -> Submitted {
        let mut submitted = Submitted::new();
        for (k, v) in pairs {
            submitted.entry((*k).to_string()).or_default().push((*v).to_string());
        }
        submitted
    }

    #[test]
    fn inputs_follow_the_stored_types_and_never_hold_a_secret() {
        let declared = BTreeSet::from(["api_key".to_string()]);
        let page = EditPage::build(chrome(), &instance(), &declared, None, &BTreeMap::new(), None);
        let kinds: Vec<(&str, &str, &str)> =
            page.connection.iter().map(|i| (i.name.as_str(), i.kind, i.value.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("conn.host", "text", "10.0.0.2"),
                ("conn.port", "number", "55443"),
                ("conn.tls", "checkbox", "true"),
                ("conn.tags", "textarea", "[\"a\"]"),
            ]
        );
        let secrets: Vec<(&str, bool, &str)> =
            page.secrets.iter().map(|s| (s.input.name.as_str(), s.clear.is_some(), s.input.value.as_str())).collect();
        assert_eq!(secrets, [("secret.api_key", false, ""), ("secret.token", true, "")]);
        assert_eq!(page.devices[0].inputs[0].name, "dev.0.enabled");
        assert!(page.devices[0].inputs[0].checked);
        assert_eq!(page.back, "/instances/demo/house");
    }

    #[test]
    fn a_form_becomes_the_update_request() {
        let sent = form(&[
            ("friendly_name", " Home "),
            ("update_interval", "30"),
            ("conn.host", "10.0.0.3"),
            ("conn.port", "55444"),
            ("conn.tags", "[\"a\", \"b\"]"),
            ("secret.api_key", "new-key"),
            ("dev.0.kind", "light"),
            ("dev.0.brightness_max", "255"),
        ]);
        let declared = BTreeSet::from(["api_key".to_string()]);
        let request = request(&chrome(), &instance(), &declared, &sent).unwrap();
        assert_eq!(request.friendly_name.as_deref(), Some("Home"));
        assert_eq!(request.update_interval, Some(30));
        assert!(!request.enabled, "an unticked box turns it off");
        assert_eq!(request.connection["port"], json!(55444));
        assert_eq!(request.connection["tls"], json!(false));
        assert_eq!(request.connection["tags"], json!(["a", "b"]));
        assert_eq!(request.connection["token"], json!("secret://token"), "an empty secret input keeps it");
        assert_eq!(request.secrets.get("api_key").map(String::as_str), Some("new-key"));
        assert!(!request.devices[0].enabled);
        assert_eq!(request.devices[0].extra["brightness_max"], json!(255));
    }

    #[test]
    fn a_secret_can_be_removed() {
        let sent = form(&[("update_interval", "10"), ("clear.token", "true")]);
        let request = request(&chrome(), &instance(), &BTreeSet::new(), &sent).unwrap();
        assert!(!request.connection.contains_key("token"));
        assert!(request.secrets.is_empty());
        assert_eq!(request.connection["port"], json!(55443), "a value the form did not send is kept");
    }

    #[test]
    fn bad_values_are_refused_beside_their_inputs_with_the_rest_kept() {
        let sent = form(&[("update_interval", "soon"), ("conn.port", "1"), ("conn.tags", "[oops"), ("conn.host", "h")]);
        let errors = request(&chrome(), &instance(), &BTreeSet::new(), &sent).unwrap_err();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["conn.tags", "update_interval"]);
        let page = EditPage::build(chrome(), &instance(), &BTreeSet::new(), Some(&sent), &errors, None);
        assert_eq!(page.general[1].value, "soon");
        assert!(page.general[1].error.is_some());
        assert_eq!(page.connection[0].value, "h", "what the person typed stays");
        assert!(!page.connection[2].checked, "an unticked box stays unticked");
    }

    #[test]
    fn refused_fields_find_their_inputs() {
        assert_eq!(input_of("connection.host").as_deref(), Some("conn.host"));
        assert_eq!(input_of("update_interval").as_deref(), Some("update_interval"));
        assert_eq!(input_of("devices"), None);
    }
}
