//! The Yeelight LAN protocol (one JSON object per line on TCP port 55443): requests, replies,
//! `props` notifications, and the bulb's properties turned into the state iot2mqtt publishes.

use std::collections::BTreeMap;

use iot2mqtt_sdk::{Object, Value, json};

/// Every property read with `get_prop`, in this order.
pub const PROPS: [&str; 20] = [
    "power",
    "bright",
    "ct",
    "rgb",
    "hue",
    "sat",
    "color_mode",
    "flowing",
    "music_on",
    "name",
    "nl_br",
    "active_mode",
    "bg_power",
    "bg_bright",
    "bg_ct",
    "bg_rgb",
    "bg_hue",
    "bg_sat",
    "bg_lmode",
    "bg_flowing",
];

/// One request line.
pub fn request(id: u64, method: &str, params: &[Value]) -> String {
    json!({"id": id, "method": method, "params": params}).to_string()
}

/// A line from the bulb.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to request `id`: its result, or the bulb's error message.
    Reply { id: u64, result: Result<Vec<Value>, String> },
    /// Properties that changed, whoever changed them.
    Props(Object),
    /// Anything else (ignored).
    Other,
}

/// Parse a line from the bulb.
pub fn parse(line: &str) -> Incoming {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(line) else { return Incoming::Other };
    if message.get("method").and_then(Value::as_str) == Some("props") {
        return match message.get("params") {
            Some(Value::Object(params)) => Incoming::Props(params.clone()),
            _ => Incoming::Other,
        };
    }
    let Some(id) = message.get("id").and_then(Value::as_u64) else { return Incoming::Other };
    let result = match (message.get("result"), message.get("error")) {
        (Some(Value::Array(result)), _) => Ok(result.clone()),
        (_, Some(error)) => {
            Err(error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_string))
        }
        _ => Err(format!("unexpected reply {line}")),
    };
    Incoming::Reply { id, result }
}

/// The bulb's properties, as text (the bulb sends strings in replies, numbers in notifications).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(BTreeMap<String, String>);

impl Props {
    /// From a `get_prop` result (values in [`PROPS`] order; `""` when unsupported).
    pub fn from_get_prop(values: &[Value]) -> Self {
        let mut props = Self::default();
        for (name, value) in PROPS.iter().zip(values) {
            props.set(name, value);
        }
        props
    }

    /// Take what a notification changed.
    pub fn merge(&mut self, changed: &Object) {
        for (name, value) in changed {
            self.set(name, value);
        }
    }

    fn set(&mut self, name: &str, value: &Value) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if text.is_empty() {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_string(), text);
        }
    }

    /// A property, when the bulb has it.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A numeric property.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.text(name)?.parse().ok()
    }

    /// Whether an on/off property is on.
    pub fn on(&self, name: &str) -> Option<bool> {
        self.text(name).map(|v| v == "on" || v == "1")
    }

    /// Whether the bulb has a background light (ceiling lights).
    pub fn has_background(&self) -> bool {
        self.text("bg_power").is_some()
    }
}

/// What the configuration or discovery told about a bulb.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `color`, `ceiling4`…
    pub model: Option<String>,
    /// Firmware version.
    pub fw_ver: Option<String>,
}

/// The state published for a bulb.
pub fn state(props: &Props, identity: &Identity) -> Object {
    let mut state = Object::new();
    state.insert("power".into(), json!(props.on("power").unwrap_or(false)));
    state.insert("brightness".into(), json!(props.int("bright").unwrap_or(0)));
    state.insert("color_temp".into(), json!(props.int("ct").unwrap_or(0)));
    let mode = match props.int("color_mode") {
        Some(1) => "rgb",
        Some(2) => "ct",
        Some(3) => "hsv",
        _ => "unknown",
    };
    state.insert("color_mode".into(), json!(mode));
    state.insert("flowing".into(), json!(props.on("flowing").unwrap_or(false)));
    state.insert("music_mode".into(), json!(props.on("music_on").unwrap_or(false)));
    state.insert("name".into(), json!(props.text("name").unwrap_or_default()));
    state.insert("online".into(), json!(true));
    if mode == "rgb"
        && let Some(rgb) = props.int("rgb")
    {
        let (r, g, b) = split_rgb(rgb);
        state.insert("rgb".into(), json!({"r": r, "g": g, "b": b}));
        state.insert("hex_color".into(), json!(hex(r, g, b)));
    }
    if mode == "hsv" {
        state.insert(
            "hsv".into(),
            json!({"h": props.int("hue").unwrap_or(0), "s": props.int("sat").unwrap_or(0), "v": props.int("bright").unwrap_or(0)}),
        );
    }
    if let Some(active) = props.text("active_mode") {
        state.insert(
            "nightlight".into(),
            json!({"active": active == "1", "brightness": props.int("nl_br").unwrap_or(0)}),
        );
    }
    if props.has_background() {
        let mut background = Object::new();
        background.insert("power".into(), json!(props.on("bg_power").unwrap_or(false)));
        background.insert("brightness".into(), json!(props.int("bg_bright").unwrap_or(0)));
        background.insert("color_temp".into(), json!(props.int("bg_ct").unwrap_or(0)));
        if props.int("bg_lmode") == Some(1)
            && let Some(rgb) = props.int("bg_rgb")
        {
            let (r, g, b) = split_rgb(rgb);
            background.insert("rgb".into(), json!({"r": r, "g": g, "b": b}));
            background.insert("hex_color".into(), json!(hex(r, g, b)));
        }
        state.insert("background".into(), Value::Object(background));
    }
    if let Some(model) = &identity.model {
        state.insert("model".into(), json!(model));
    }
    if let Some(fw) = &identity.fw_ver {
        state.insert("fw_ver".into(), json!(fw));
    }
    state
}

/// `0xRRGGBB` as an integer → (r, g, b).
pub fn split_rgb(rgb: i64) -> (u8, u8, u8) {
    let rgb = rgb.clamp(0, 0xFF_FFFF);
    (((rgb >> 16) & 0xFF) as u8, ((rgb >> 8) & 0xFF) as u8, (rgb & 0xFF) as u8)
}

/// `#rrggbb`
pub fn hex(r: u8, g: u8, b: u8) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_errors_and_notifications() {
        assert_eq!(parse(r#"{"id":1,"result":["ok"]}"#), Incoming::Reply { id: 1, result: Ok(vec![json!("ok")]) });
        assert_eq!(
            parse(r#"{"id":2,"error":{"code":-1,"message":"unsupported method"}}"#),
            Incoming::Reply { id: 2, result: Err("unsupported method".into()) }
        );
        let Incoming::Props(p) = parse(r#"{"method":"props","params":{"power":"on","bright":10}}"#) else { panic!() };
        assert_eq!(p["bright"], 10);
        assert_eq!(parse("garbage"), Incoming::Other);
    }

    #[test]
    fn state_of_a_colour_bulb() {
        let mut values = vec![json!(""); PROPS.len()];
        for (i, v) in [(0, "on"), (1, "42"), (2, "4000"), (3, "16711680"), (6, "1"), (7, "0"), (8, "0"), (9, "Desk")] {
            values[i] = json!(v);
        }
        let props = Props::from_get_prop(&values);
        let identity = Identity { model: Some("color".into()), fw_ver: Some("18".into()) };
        let state = state(&props, &identity);
        assert_eq!(
            Value::Object(state),
            json!({"power": true, "brightness": 42, "color_temp": 4000, "color_mode": "rgb", "flowing": false,
                   "music_mode": false, "name": "Desk", "online": true, "rgb": {"r": 255, "g": 0, "b": 0},
                   "hex_color": "#ff0000", "model": "color", "fw_ver": "18"})
        );
    }

    #[test]
    fn state_of_a_ceiling_light_follows_notifications() {
        let mut values = vec![json!(""); PROPS.len()];
        for (i, v) in [
            (0, "off"),
            (1, "80"),
            (2, "3000"),
            (6, "2"),
            (10, "5"),
            (11, "1"),
            (12, "on"),
            (13, "60"),
            (14, "2700"),
            (15, "255"),
            (18, "1"),
        ] {
            values[i] = json!(v);
        }
        let mut props = Props::from_get_prop(&values);
        props.merge(json!({"power": "on", "bg_power": "off"}).as_object().unwrap());
        let state = state(&props, &Identity::default());
        assert_eq!(state["power"], true);
        assert_eq!(state["nightlight"], json!({"active": true, "brightness": 5}));
        assert_eq!(
            state["background"],
            json!({"power": false, "brightness": 60, "color_temp": 2700, "rgb": {"r": 0, "g": 0, "b": 255}, "hex_color": "#0000ff"})
        );
        assert!(state.get("rgb").is_none(), "ct mode has no rgb");
    }
}
