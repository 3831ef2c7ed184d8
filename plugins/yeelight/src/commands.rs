//! From a command's values to the bulb requests that carry it out, in a sensible order: power
//! on first, then scene or effect, colour, brightness, background, name and music, power off
//! last. Everything is validated before anything is sent.

use iot2mqtt_sdk::{Error, Object, Value, json};

use crate::protocol::{Props, split_rgb};
use crate::scenes;

/// How changes are shown: the instance's default, or the command's `transition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Smooth (fade) rather than sudden.
    pub smooth: bool,
    /// Fade duration, ms (at least 30, the bulb's minimum).
    pub duration_ms: u64,
}

impl Transition {
    fn params(self) -> [Value; 2] {
        if self.smooth { [json!("smooth"), json!(self.duration_ms.max(30))] } else { [json!("sudden"), json!(30)] }
    }
}

/// One bulb request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: &'static str,
    /// Its parameters.
    pub params: Vec<Value>,
}

/// What a command turns into.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Requests, in order.
    pub requests: Vec<Request>,
    /// The values the command sets, as the response reports them.
    pub confirmed: Object,
    /// Keys nobody understands.
    pub unknown: Vec<String>,
}

const KNOWN: [&str; 15] = [
    "power",
    "toggle",
    "brightness",
    "brightness_step",
    "color_temp",
    "color",
    "rgb",
    "hsv",
    "scene",
    "effect",
    "music_mode",
    "background",
    "transition",
    "name",
    "nightlight",
];

/// Build the plan for `values` against the bulb's current `props`.
pub fn plan(values: &Object, props: &Props, default: Transition) -> Result<Plan, Error> {
    let mut plan =
        Plan { unknown: values.keys().filter(|k| !KNOWN.contains(&k.as_str())).cloned().collect(), ..Plan::default() };
    let transition = match values.get("transition") {
        None => default,
        Some(v) => {
            let ms = v.as_u64().ok_or_else(|| invalid("transition", v, "a number of milliseconds"))?;
            Transition { smooth: ms > 0, duration_ms: ms }
        }
    };
    let [effect, duration] = transition.params();

    let is_on = props.on("power").unwrap_or(false);
    let mut power = match values.get("power") {
        None => None,
        Some(Value::Bool(on)) => Some(*on),
        Some(Value::String(s)) if s == "toggle" => Some(!is_on),
        Some(other) => return Err(invalid("power", other, "true, false or \"toggle\"")),
    };
    if let Some(toggle) = values.get("toggle") {
        if !matches!(toggle, Value::Bool(true) | Value::Null) {
            return Err(invalid("toggle", toggle, "true"));
        }
        power = Some(!is_on);
    }
    let colour_keys: Vec<&str> =
        ["color", "rgb", "hsv", "color_temp"].into_iter().filter(|k| values.contains_key(*k)).collect();
    if colour_keys.len() > 1 {
        return Err(Error::invalid_value(format!("{} cannot be combined in one command", colour_keys.join(" and "))));
    }
    if values.contains_key("scene") && values.contains_key("effect") {
        return Err(Error::invalid_value("scene and effect cannot be combined in one command"));
    }

    if power == Some(true) {
        plan.push("set_power", vec![json!("on"), effect.clone(), duration.clone()]);
        plan.confirm("power", json!(true));
    }
    if let Some(scene) = values.get("scene") {
        let name = scene.as_str().ok_or_else(|| invalid("scene", scene, "a scene name"))?;
        let params = scenes::scene(name).ok_or_else(|| {
            Error::invalid_value(format!("unknown scene \"{name}\"; one of {}", scenes::SCENES.join(", ")))
        })?;
        plan.push("set_scene", params);
        plan.confirm("scene", json!(name));
    }
    if let Some(fx) = values.get("effect") {
        let name = fx.as_str().ok_or_else(|| invalid("effect", fx, "an effect name"))?;
        match name {
            "stop" => plan.push("stop_cf", vec![]),
            other => {
                let params = scenes::effect(other).ok_or_else(|| {
                    Error::invalid_value(format!(
                        "unknown effect \"{other}\"; one of {}, stop",
                        scenes::EFFECTS.join(", ")
                    ))
                })?;
                plan.push("start_cf", params);
            }
        }
        plan.confirm("effect", json!(name));
    }
    let mut brightness_from_colour = None;
    if let Some(value) = values.get("color") {
        match parse_colour(value)? {
            Colour::Rgb(rgb) => {
                plan.push("set_rgb", vec![json!(rgb), effect.clone(), duration.clone()]);
                plan.confirm("color", json!(hex_of(rgb)));
            }
            Colour::Hsv(h, s, v) => {
                plan.push("set_hsv", vec![json!(h), json!(s), effect.clone(), duration.clone()]);
                plan.confirm("color", json!({"h": h, "s": s}));
                brightness_from_colour = v;
            }
        }
    }
    if let Some(value) = values.get("rgb") {
        let rgb = parse_rgb(value).ok_or_else(|| invalid("rgb", value, "{r,g,b}, [r,g,b] or 0xRRGGBB as a number"))?;
        plan.push("set_rgb", vec![json!(rgb), effect.clone(), duration.clone()]);
        let (r, g, b) = split_rgb(rgb);
        plan.confirm("rgb", json!({"r": r, "g": g, "b": b}));
    }
    if let Some(value) = values.get("hsv") {
        let (h, s, v) = parse_hsv(value).ok_or_else(|| invalid("hsv", value, "{h: 0-359, s: 0-100, v?: 1-100}"))?;
        plan.push("set_hsv", vec![json!(h), json!(s), effect.clone(), duration.clone()]);
        plan.confirm("hsv", json!({"h": h, "s": s}));
        brightness_from_colour = v;
    }
    if let Some(value) = values.get("color_temp") {
        let current = props.int("ct").unwrap_or(4000);
        let ct = relative(value, current)
            .ok_or_else(|| invalid("color_temp", value, "kelvin, or \"+N\"/\"-N\""))?
            .clamp(1700, 6500);
        plan.push("set_ct_abx", vec![json!(ct), effect.clone(), duration.clone()]);
        plan.confirm("color_temp", json!(ct));
    }
    let current_bright = props.int("bright").unwrap_or(100);
    let mut brightness = brightness_from_colour;
    if let Some(value) = values.get("brightness") {
        let b = match value {
            Value::Number(_) => {
                let b = value
                    .as_i64()
                    .filter(|b| (1..=100).contains(b))
                    .ok_or_else(|| invalid("brightness", value, "1 to 100"))?;
                Some(b)
            }
            _ => relative(value, current_bright).map(|b| b.clamp(1, 100)),
        };
        brightness = Some(b.ok_or_else(|| invalid("brightness", value, "1 to 100, or \"+N\"/\"-N\""))?);
    }
    if let Some(step) = values.get("brightness_step") {
        let step = step.as_i64().ok_or_else(|| invalid("brightness_step", step, "a whole number, + or -"))?;
        brightness = Some((brightness.unwrap_or(current_bright) + step).clamp(1, 100));
    }
    if let Some(b) = brightness {
        plan.push("set_bright", vec![json!(b), effect.clone(), duration.clone()]);
        plan.confirm("brightness", json!(b));
    }
    if let Some(background) = values.get("background") {
        background_plan(&mut plan, background, props, &effect, &duration)?;
    }
    if let Some(name) = values.get("name") {
        let name =
            name.as_str().filter(|n| n.len() <= 64).ok_or_else(|| invalid("name", name, "text of at most 64 bytes"))?;
        plan.push("set_name", vec![json!(name)]);
        plan.confirm("name", json!(name));
    }
    if let Some(music) = values.get("music_mode") {
        match music {
            Value::Bool(false) => {
                plan.push("set_music", vec![json!(0)]);
                plan.confirm("music_mode", json!(false));
            }
            Value::Bool(true) => {
                return Err(Error::unsupported(
                    "music_mode: true needs the bulb to connect back to a listening socket, which plugins may not open",
                ));
            }
            other => return Err(invalid("music_mode", other, "true or false")),
        }
    }
    if let Some(nightlight) = values.get("nightlight") {
        let on = nightlight.as_bool().ok_or_else(|| invalid("nightlight", nightlight, "true or false"))?;
        if props.text("active_mode").is_none() {
            return Err(Error::unsupported("nightlight: this light has no night light"));
        }
        plan.push("set_power", vec![json!("on"), effect.clone(), duration.clone(), json!(if on { 5 } else { 1 })]);
        plan.confirm("nightlight", json!(on));
    }
    if power == Some(false) {
        plan.push("set_power", vec![json!("off"), effect, duration]);
        plan.confirm("power", json!(false));
    }
    Ok(plan)
}

fn background_plan(
    plan: &mut Plan,
    value: &Value,
    props: &Props,
    effect: &Value,
    duration: &Value,
) -> Result<(), Error> {
    let Value::Object(bg) = value else { return Err(invalid("background", value, "an object")) };
    if !props.has_background() {
        return Err(Error::unsupported("background: this light has no background light"));
    }
    let mut confirmed = Object::new();
    let power = match bg.get("power") {
        None => None,
        Some(Value::Bool(on)) => Some(*on),
        Some(Value::String(s)) if s == "toggle" => Some(!props.on("bg_power").unwrap_or(false)),
        Some(other) => return Err(invalid("background.power", other, "true, false or \"toggle\"")),
    };
    if power == Some(true) {
        plan.push("bg_set_power", vec![json!("on"), effect.clone(), duration.clone()]);
        confirmed.insert("power".into(), json!(true));
    }
    if let Some(v) = bg.get("rgb") {
        let rgb = parse_rgb(v).ok_or_else(|| invalid("background.rgb", v, "{r,g,b}"))?;
        plan.push("bg_set_rgb", vec![json!(rgb), effect.clone(), duration.clone()]);
        let (r, g, b) = split_rgb(rgb);
        confirmed.insert("rgb".into(), json!({"r": r, "g": g, "b": b}));
    }
    if let Some(v) = bg.get("hsv") {
        let (h, s, _) = parse_hsv(v).ok_or_else(|| invalid("background.hsv", v, "{h,s}"))?;
        plan.push("bg_set_hsv", vec![json!(h), json!(s), effect.clone(), duration.clone()]);
        confirmed.insert("hsv".into(), json!({"h": h, "s": s}));
    }
    if let Some(v) = bg.get("color_temp") {
        let ct = relative(v, props.int("bg_ct").unwrap_or(4000))
            .ok_or_else(|| invalid("background.color_temp", v, "kelvin"))?
            .clamp(1700, 6500);
        plan.push("bg_set_ct_abx", vec![json!(ct), effect.clone(), duration.clone()]);
        confirmed.insert("color_temp".into(), json!(ct));
    }
    if let Some(v) = bg.get("brightness") {
        let b = relative(v, props.int("bg_bright").unwrap_or(100))
            .ok_or_else(|| invalid("background.brightness", v, "1 to 100"))?
            .clamp(1, 100);
        plan.push("bg_set_bright", vec![json!(b), effect.clone(), duration.clone()]);
        confirmed.insert("brightness".into(), json!(b));
    }
    if power == Some(false) {
        plan.push("bg_set_power", vec![json!("off"), effect.clone(), duration.clone()]);
        confirmed.insert("power".into(), json!(false));
    }
    if let Some(unknown) =
        bg.keys().find(|k| !["power", "rgb", "hsv", "color_temp", "brightness"].contains(&k.as_str()))
    {
        plan.unknown.push(format!("background.{unknown}"));
    }
    plan.confirm("background", Value::Object(confirmed));
    Ok(())
}

impl Plan {
    fn push(&mut self, method: &'static str, params: Vec<Value>) {
        self.requests.push(Request { method, params });
    }

    fn confirm(&mut self, key: &str, value: Value) {
        self.confirmed.insert(key.into(), value);
    }
}

enum Colour {
    Rgb(i64),
    Hsv(i64, i64, Option<i64>),
}

fn parse_colour(value: &Value) -> Result<Colour, Error> {
    if let Some(text) = value.as_str() {
        let hex = text.strip_prefix('#').filter(|h| h.len() == 6);
        return hex
            .and_then(|h| i64::from_str_radix(h, 16).ok())
            .map(Colour::Rgb)
            .ok_or_else(|| invalid("color", value, "\"#RRGGBB\", {r,g,b} or {h,s,v?}"));
    }
    if value.get("h").is_some() {
        return parse_hsv(value)
            .map(|(h, s, v)| Colour::Hsv(h, s, v))
            .ok_or_else(|| invalid("color", value, "{h: 0-359, s: 0-100, v?: 1-100}"));
    }
    parse_rgb(value).map(Colour::Rgb).ok_or_else(|| invalid("color", value, "\"#RRGGBB\", {r,g,b} or {h,s,v?}"))
}

fn parse_rgb(value: &Value) -> Option<i64> {
    let byte = |v: Option<&Value>| v.and_then(Value::as_i64).filter(|c| (0..=255).contains(c));
    let (r, g, b) = match value {
        Value::Object(o) => (byte(o.get("r"))?, byte(o.get("g"))?, byte(o.get("b"))?),
        Value::Array(a) if a.len() == 3 => (byte(a.first())?, byte(a.get(1))?, byte(a.get(2))?),
        Value::Number(n) => return n.as_i64().filter(|v| (0..=0xFF_FFFF).contains(v)),
        _ => return None,
    };
    let rgb = (r << 16) | (g << 8) | b;
    // The bulb refuses pure black; it means "off", which is what power is for.
    (rgb > 0).then_some(rgb)
}

fn parse_hsv(value: &Value) -> Option<(i64, i64, Option<i64>)> {
    let (h, s, v) = match value {
        Value::Object(o) => (o.get("h")?.as_i64()?, o.get("s")?.as_i64()?, o.get("v").map(|v| v.as_i64())),
        Value::Array(a) if (2..=3).contains(&a.len()) => (a[0].as_i64()?, a[1].as_i64()?, a.get(2).map(Value::as_i64)),
        _ => return None,
    };
    let v = match v {
        None => None,
        Some(Some(v)) if (1..=100).contains(&v) => Some(v),
        Some(_) => return None,
    };
    ((0..=359).contains(&h) && (0..=100).contains(&s)).then_some((h, s, v))
}

/// An absolute number, or `"+N"`/`"-N"` relative to `current`.
fn relative(value: &Value, current: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let delta: i64 = s.trim().parse().ok()?;
            (s.trim().starts_with('+') || s.trim().starts_with('-')).then_some(current + delta)
        }
        _ => None,
    }
}

fn hex_of(rgb: i64) -> String {
    let (r, g, b) = split_rgb(rgb);
    crate::protocol::hex(r, g, b)
}

fn invalid(key: &str, value: &Value, expected: &str) -> Error {
    Error::invalid_value(format!("{key} must be {expected}, not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PROPS;

    fn props(pairs: &[(&str, &str)]) -> Props {
        let values: Vec<Value> =
            PROPS.iter().map(|p| json!(pairs.iter().find(|(k, _)| k == p).map_or("", |(_, v)| *v))).collect();
        Props::from_get_prop(&values)
    }

    const SMOOTH: Transition = Transition { smooth: true, duration_ms: 300 };

    fn methods(plan: &Plan) -> Vec<&'static str> {
        plan.requests.iter().map(|r| r.method).collect()
    }

    #[test]
    fn order_power_on_first_and_off_last() {
        let off = props(&[("power", "off"), ("bright", "50")]);
        let values = json!({"brightness": 80, "power": true, "color": "#00ff00"});
        let plan = plan(values.as_object().unwrap(), &off, SMOOTH).unwrap();
        assert_eq!(methods(&plan), ["set_power", "set_rgb", "set_bright"]);
        let values = json!({"power": false, "brightness": 10});
        let plan = plan_of(values, &props(&[("power", "on")]));
        assert_eq!(methods(&plan), ["set_bright", "set_power"]);
        assert_eq!(plan.requests[1].params, vec![json!("off"), json!("smooth"), json!(300)]);
    }

    fn plan_of(values: Value, props: &Props) -> Plan {
        plan(values.as_object().unwrap(), props, SMOOTH).unwrap()
    }

    #[test]
    fn relative_values_and_clamping() {
        let p = props(&[("power", "on"), ("bright", "95"), ("ct", "6400")]);
        let cases = [
            (json!({"brightness": "+10"}), "set_bright", json!(100)),
            (json!({"brightness": "-200"}), "set_bright", json!(1)),
            (json!({"brightness_step": -15}), "set_bright", json!(80)),
            (json!({"color_temp": "+500"}), "set_ct_abx", json!(6500)),
            (json!({"color_temp": 1000}), "set_ct_abx", json!(1700)),
            (json!({"color_temp": "-400"}), "set_ct_abx", json!(6000)),
        ];
        for (values, method, first) in cases {
            let plan = plan_of(values.clone(), &p);
            assert_eq!(plan.requests[0].method, method, "{values}");
            assert_eq!(plan.requests[0].params[0], first, "{values}");
        }
    }

    #[test]
    fn colours_in_every_form() {
        let p = props(&[("power", "on")]);
        let cases = [
            (json!({"color": "#FF8000"}), "set_rgb", json!(0xFF8000)),
            (json!({"color": {"r": 0, "g": 0, "b": 255}}), "set_rgb", json!(255)),
            (json!({"color": {"h": 120, "s": 100}}), "set_hsv", json!(120)),
            (json!({"rgb": [1, 2, 3]}), "set_rgb", json!(0x010203)),
            (json!({"rgb": 65280}), "set_rgb", json!(65280)),
            (json!({"hsv": {"h": 10, "s": 20}}), "set_hsv", json!(10)),
        ];
        for (values, method, first) in cases {
            let plan = plan_of(values.clone(), &p);
            assert_eq!((plan.requests[0].method, &plan.requests[0].params[0]), (method, &first), "{values}");
        }
        let plan = plan_of(json!({"color": {"h": 10, "s": 20, "v": 30}}), &p);
        assert_eq!(methods(&plan), ["set_hsv", "set_bright"], "v sets brightness");
        assert_eq!(plan_of(json!({"transition": 0, "color": "#010101"}), &p).requests[0].params[1], "sudden");
    }

    #[test]
    fn invalid_values_are_refused_before_anything_is_sent() {
        let p = props(&[("power", "on"), ("bright", "50")]);
        for values in [
            json!({"brightness": 0}),
            json!({"brightness": 101}),
            json!({"brightness": "half"}),
            json!({"power": "on"}),
            json!({"color": "red"}),
            json!({"color": "#12345"}),
            json!({"rgb": {"r": 300, "g": 0, "b": 0}}),
            json!({"hsv": {"h": 400, "s": 0}}),
            json!({"scene": "disco"}),
            json!({"effect": "explode"}),
            json!({"color": "#ffffff", "color_temp": 3000}),
            json!({"transition": "slow"}),
            json!({"background": {"power": true}}),
        ] {
            let error = plan(values.as_object().unwrap(), &p, SMOOTH).unwrap_err();
            assert!(matches!(error, Error::InvalidValue(_) | Error::Unsupported(_)), "{values}: {error}");
        }
    }

    #[test]
    fn scenes_effects_background_and_unknown_keys() {
        let ceiling = props(&[("power", "on"), ("bg_power", "off"), ("bg_bright", "40"), ("active_mode", "0")]);
        let plan = plan_of(
            json!({"scene": "reading", "background": {"power": true, "brightness": "+20"}, "wat": 1}),
            &ceiling,
        );
        assert_eq!(methods(&plan), ["set_scene", "bg_set_power", "bg_set_bright"]);
        assert_eq!(plan.requests[2].params[0], json!(60));
        assert_eq!(plan.unknown, ["wat"]);
        assert_eq!(methods(&plan_of(json!({"effect": "stop"}), &ceiling)), ["stop_cf"]);
        assert_eq!(methods(&plan_of(json!({"effect": "rainbow"}), &ceiling)), ["start_cf"]);
        let plan = plan_of(json!({"nightlight": true}), &ceiling);
        assert_eq!(plan.requests[0].params[3], json!(5));
    }
}
