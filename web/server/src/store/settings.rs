//! The orchestrator's `.env`: MQTT settings (and other globals) as `KEY=VALUE` lines. Updates
//! rewrite only the keys they change and keep every other line as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;

use iot2mqtt_contract::settings::Env;
use iot2mqtt_contract::{MqttSettings, SettingsError};

use super::atomic::write;

/// The variables a settings update may change.
pub const MQTT_KEYS: [&str; 14] = [
    "MQTT_HOST",
    "MQTT_PORT",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "MQTT_BASE_TOPIC",
    "MQTT_CLIENT_PREFIX",
    "MQTT_QOS",
    "MQTT_RETAIN",
    "MQTT_KEEPALIVE",
    "MQTT_TLS",
    "MQTT_CA_FILE",
    "MQTT_CERT_FILE",
    "MQTT_KEY_FILE",
    "LOG_LEVEL",
];

/// The `.env` file.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The environment: the process's over the file's.
    pub fn env(&self) -> Result<Env, SettingsError> {
        Env::load(&self.path)
    }

    /// Whether the process environment sets `key` (and so overrides the file).
    pub fn overridden(key: &str) -> bool {
        std::env::var_os(key).is_some_and(|v| !v.is_empty())
    }

    /// The MQTT settings in effect.
    pub fn mqtt(&self) -> Result<MqttSettings, SettingsError> {
        MqttSettings::from_env(&self.env()?)
    }

    /// Set (or, with `None`, remove) keys in the file, keeping other lines. Blocking.
    pub fn update(&self, changes: &BTreeMap<&str, Option<String>>) -> std::io::Result<()> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut out = String::new();
        let mut done = std::collections::BTreeSet::new();
        for line in text.lines() {
            let key = line.split_once('=').map(|(k, _)| k.trim().trim_start_matches("export ").trim());
            match key.and_then(|k| changes.get_key_value(k)) {
                Some((key, Some(value))) => {
                    out.push_str(&format!("{key}={}\n", quote(value)));
                    done.insert(*key);
                }
                Some((key, None)) => {
                    done.insert(*key);
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        for (key, value) in changes {
            if let (false, Some(value)) = (done.contains(key), value) {
                out.push_str(&format!("{key}={}\n", quote(value)));
            }
        }
        write(&self.path, out.as_bytes(), 0o600)
    }
}

/// Quote a value so dotenv parsers read it back unchanged.
fn quote(value: &str) -> String {
    if value.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c)) && !value.is_empty() {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_other_lines() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(&path, "# comment\nTZ=Europe/Berlin\nMQTT_PORT=1883\n").unwrap();
        let file = SettingsFile::new(path.clone());
        let mut changes = BTreeMap::new();
        changes.insert("MQTT_PORT", Some("1884".to_string()));
        changes.insert("MQTT_PASSWORD", Some("p a'ss".to_string()));
        file.update(&changes).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# comment\nTZ=Europe/Berlin\nMQTT_PORT=1884\n"), "{text}");
        let env = Env::load(&path).unwrap();
        assert_eq!(env.get("MQTT_PASSWORD"), Some("p a'ss"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
