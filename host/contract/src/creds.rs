//! The secrets file of an instance (`/run/secrets/{id}_creds`): `KEY=VALUE` lines, merged into
//! the configuration's `connection` object; and its broker login (`{id}_mqtt`), which the host
//! reads over `MQTT_USERNAME` / `MQTT_PASSWORD` and never hands to the plugin.

use std::collections::BTreeMap;

/// The key of the broker user name in an instance's MQTT login file.
pub const MQTT_USERNAME: &str = "MQTT_USERNAME";
/// The key of the broker password in an instance's MQTT login file.
pub const MQTT_PASSWORD: &str = "MQTT_PASSWORD";

/// The file beside the secrets file that holds an instance's broker login
/// (`/run/secrets/{id}_mqtt`): the same `KEY=VALUE` lines, kept out of the environment.
pub fn mqtt_file(instance: &str) -> String {
    format!("{instance}_mqtt")
}

/// Parse `KEY=VALUE` lines. Blank lines and lines starting with `#` are skipped; a line
/// without `=` is an error naming its number (never its content, which may be secret).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                map.insert(key.trim().to_string(), value.to_string());
            }
            _ => return Err(format!("line {} is not KEY=VALUE", n + 1)),
        }
    }
    Ok(map)
}

/// Write `KEY=VALUE` lines. Keys must be non-empty without `=` or line breaks, values without
/// line breaks; the error names the key.
pub fn format(secrets: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for (key, value) in secrets {
        if key.is_empty() || key.contains(['=', '\n', '\r']) || key.trim() != key {
            return Err(format!("secret name \"{key}\" cannot be written as KEY=VALUE"));
        }
        if value.contains(['\n', '\r']) {
            return Err(format!("the value of secret \"{key}\" contains a line break"));
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut map = BTreeMap::new();
        map.insert("password".to_string(), "p=ss word".to_string());
        map.insert("token".to_string(), String::new());
        let text = format(&map).unwrap();
        assert_eq!(parse(&text).unwrap(), map);
    }

    #[test]
    fn errors_never_echo_values() {
        let err = parse("# c\n\nuser=a\nsecret-without-equals\n").unwrap_err();
        assert_eq!(err, "line 4 is not KEY=VALUE");
        let mut map = BTreeMap::new();
        map.insert("k".to_string(), "hunter2\nx".to_string());
        assert!(!format(&map).unwrap_err().contains("hunter2"));
    }
}
