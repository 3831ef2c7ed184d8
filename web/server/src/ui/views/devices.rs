//! The devices page's view model: a card per device, a control per key of its state.

use askama::Template;
use serde_json::Value;

use super::Chrome;

/// The devices page.
#[derive(Debug, Template)]
#[template(path = "devices.html")]
pub struct DevicesPage {
    /// The frame.
    pub chrome: Chrome,
    /// The topics whose messages change this page.
    pub live_prefix: String,
    /// The outcome of the last command.
    pub notice: Option<Notice>,
    /// One card per device.
    pub cards: Vec<DeviceCard>,
    /// Where the cards' forms come back to.
    pub back: &'static str,
}

/// A line about what just happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Good news.
    pub ok: bool,
    /// What to say.
    pub text: String,
}

impl Notice {
    /// The outcome a command's redirect carried (`?ok=…` or `?failed=…`); a failure wins.
    pub fn from_outcome(ok: Option<String>, failed: Option<String>) -> Option<Self> {
        match (ok, failed) {
            (_, Some(text)) => Some(Self { ok: false, text }),
            (Some(text), None) => Some(Self { ok: true, text }),
            (None, None) => None,
        }
    }
}

/// A device with controls for its state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCard {
    /// Its instance.
    pub instance: String,
    /// The instance's friendly name.
    pub instance_name: String,
    /// The device's id.
    pub device: String,
    /// Its name for people (its id when it has none).
    pub name: String,
    /// Online, offline or not known, in words.
    pub availability: String,
    /// `ok`, `bad` or `off`.
    pub availability_class: &'static str,
    /// One control per key of its state.
    pub controls: Vec<Control>,
    /// When its state was last published.
    pub last_update: Option<String>,
}

/// A control for one key of a device's state, chosen from its value: a boolean is a switch,
/// a number an input, a `#rrggbb` string a colour picker, other text an input; anything else
/// (objects, lists) is shown read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The state's key.
    pub key: String,
    /// `switch`, `number`, `color`, `text` or `readonly`.
    pub kind: &'static str,
    /// The value as text.
    pub value: String,
    /// A switch that is on.
    pub on: bool,
}

impl DevicesPage {
    /// The page of `devices`.
    pub fn build(chrome: Chrome, base: &str, devices: &[crate::devices::DeviceView], notice: Option<Notice>) -> Self {
        let cards = cards(chrome.t, devices);
        Self { chrome, live_prefix: format!("{base}/v1/instances/"), notice, cards, back: "/devices" }
    }
}

/// A card for each enabled device of `devices`.
pub fn cards(t: &crate::ui::i18n::Text, devices: &[crate::devices::DeviceView]) -> Vec<DeviceCard> {
    devices
        .iter()
        .filter(|d| d.enabled)
        .map(|d| {
            let (availability, availability_class) = match d.available {
                Some(true) => (t.devices.online.clone(), "ok"),
                Some(false) => (t.devices.offline.clone(), "bad"),
                None => (t.devices.unknown.clone(), "off"),
            };
            DeviceCard {
                instance: d.instance_id.clone(),
                instance_name: d.instance_name.clone(),
                device: d.device_id.clone(),
                name: d.friendly_name.clone().unwrap_or_else(|| d.device_id.clone()),
                availability,
                availability_class,
                controls: d
                    .state
                    .as_ref()
                    .and_then(Value::as_object)
                    .map(|state| state.iter().filter(|(k, _)| *k != "online").map(|(k, v)| control(k, v)).collect())
                    .unwrap_or_default(),
                last_update: d.last_update.as_ref().and_then(Value::as_str).map(str::to_string),
            }
        })
        .collect()
}

/// The control for `key` with value `value`.
pub fn control(key: &str, value: &Value) -> Control {
    let (kind, text, on) = match value {
        Value::Bool(b) => ("switch", b.to_string(), *b),
        Value::Number(n) => ("number", n.to_string(), false),
        Value::String(s) if is_colour(s) => ("color", s.to_lowercase(), false),
        Value::String(s) => ("text", s.clone(), false),
        other => ("readonly", other.to_string(), false),
    };
    Control { key: key.to_string(), kind, value: text, on }
}

fn is_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value a control's form sends, typed by the control's kind; `None` when it is not one.
pub fn control_value(kind: &str, text: &str) -> Option<Value> {
    match kind {
        "switch" => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        "number" => {
            let number: f64 = text.trim().parse().ok().filter(|n: &f64| n.is_finite())?;
            if number.fract() == 0.0 && number.abs() < 9.0e15 {
                Some(Value::from(number as i64))
            } else {
                serde_json::Number::from_f64(number).map(Value::Number)
            }
        }
        "color" if is_colour(text) => Some(Value::String(text.to_lowercase())),
        "text" => Some(Value::String(text.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_failure_wins_over_a_confirmation() {
        let ok = || Some("fine".to_string());
        let bad = || Some("refused".to_string());
        assert_eq!(Notice::from_outcome(ok(), None), Some(Notice { ok: true, text: "fine".into() }));
        assert_eq!(Notice::from_outcome(ok(), bad()), Some(Notice { ok: false, text: "refused".into() }));
        assert_eq!(Notice::from_outcome(None, None), None);
    }

    #[test]
    fn controls_come_from_the_state() {
        let cases = [
            (json!(true), "switch", "true"),
            (json!(42), "number", "42"),
            (json!(21.5), "number", "21.5"),
            (json!("#FF8800"), "color", "#ff8800"),
            (json!("warm"), "text", "warm"),
            (json!({"r": 1}), "readonly", "{\"r\":1}"),
        ];
        for (value, kind, text) in cases {
            let control = control("k", &value);
            assert_eq!((control.kind, control.value.as_str()), (kind, text), "{value}");
        }
    }

    #[test]
    fn a_control_sends_a_value_of_its_kind() {
        assert_eq!(control_value("switch", "true"), Some(json!(true)));
        assert_eq!(control_value("switch", "maybe"), None);
        assert_eq!(control_value("number", "80"), Some(json!(80)));
        assert_eq!(control_value("number", "0.5"), Some(json!(0.5)));
        assert_eq!(control_value("number", "lots"), None);
        assert_eq!(control_value("color", "#00FF00"), Some(json!("#00ff00")));
        assert_eq!(control_value("color", "green"), None);
        assert_eq!(control_value("readonly", "x"), None);
    }
}
