//! Parsing of command values, shared by lights and switches.

use iot2mqtt_sdk::{Error, Value};

/// A requested power change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
    Toggle,
}

/// `true`, `false` or `"toggle"`.
pub fn parse_power(value: &Value) -> Result<Power, Error> {
    match value {
        Value::Bool(true) => Ok(Power::On),
        Value::Bool(false) => Ok(Power::Off),
        Value::String(s) if s == "toggle" => Ok(Power::Toggle),
        other => Err(Error::invalid_value(format!("power must be true, false or \"toggle\", not {other}"))),
    }
}

/// An integer from 0 to 100.
pub fn parse_brightness(value: &Value) -> Result<u8, Error> {
    value
        .as_u64()
        .filter(|b| *b <= 100)
        .and_then(|b| u8::try_from(b).ok())
        .ok_or_else(|| Error::invalid_value(format!("brightness must be an integer from 0 to 100, not {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot2mqtt_sdk::json;

    #[test]
    fn power_values() {
        let cases = [
            (json!(true), Some(Power::On)),
            (json!(false), Some(Power::Off)),
            (json!("toggle"), Some(Power::Toggle)),
            (json!("on"), None),
            (json!(1), None),
            (json!(null), None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_power(&input).ok(), expected, "input {input}");
        }
    }

    #[test]
    fn brightness_values() {
        let cases = [
            (json!(0), Some(0)),
            (json!(100), Some(100)),
            (json!(55), Some(55)),
            (json!(101), None),
            (json!(-1), None),
            (json!(50.5), None),
            (json!("50"), None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_brightness(&input).ok(), expected, "input {input}");
        }
    }
}
