//! The orchestrator's `.env`: MQTT settings (and other globals) as `KEY=VALUE` lines. Updates
//! rewrite only the keys they change and keep every other line as it was. The broker password
//! ([`SECRET_KEYS`]) is kept in the encrypted secrets store instead, never in `.env`; one found
//! there (written by hand, or by an older version) is moved at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use iot2mqtt_contract::settings::Env;
use iot2mqtt_contract::{MqttSettings, SettingsError};

use super::atomic::write;
use crate::secrets::SecretsManager;

/// The settings kept in the secrets store rather than in `.env`.
pub const SECRET_KEYS: [&str; 1] = ["MQTT_PASSWORD"];

/// The variables a settings update may change.
pub const MQTT_KEYS: [&str; 15] = [
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
    "MQTT_DISCOVERY_PREFIX",
    "LOG_LEVEL",
];

/// The `.env` file, and the secrets store for [`SECRET_KEYS`].
#[derive(Debug, Clone)]
pub struct SettingsFile {
    path: PathBuf,
    secrets: Option<Arc<SecretsManager>>,
}

impl SettingsFile {
    /// `.env` alone (secret keys then stay in it: tests, tools).
    pub fn new(path: PathBuf) -> Self {
        Self { path, secrets: None }
    }

    /// Keep [`SECRET_KEYS`] in `secrets` rather than in the file.
    pub fn with_secrets(mut self, secrets: Arc<SecretsManager>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The environment: the process's over the file's, over the stored secrets.
    pub fn env(&self) -> Result<Env, SettingsError> {
        let mut env = Env::load(&self.path)?;
        for (key, value) in self.stored()? {
            env.or_insert(key, value);
        }
        Ok(env)
    }

    fn stored(&self) -> Result<BTreeMap<String, String>, SettingsError> {
        let Some(secrets) = &self.secrets else { return Ok(BTreeMap::new()) };
        secrets
            .load_settings()
            .map_err(|e| SettingsError::Dotenv { path: "the secrets store".into(), reason: e.to_string() })
    }

    /// Move secret keys written into `.env` (by hand, or by an older version) into the
    /// secrets store; the keys moved. Blocking.
    pub fn move_secrets_out(&self) -> anyhow::Result<Vec<&'static str>> {
        if self.secrets.is_none() {
            return Ok(Vec::new());
        }
        let mut found = BTreeMap::new();
        match dotenvy::from_path_iter(&self.path) {
            Ok(items) => {
                for item in items {
                    let (key, value) = item?;
                    if let Some(secret) = SECRET_KEYS.iter().find(|k| **k == key) {
                        found.insert(*secret, Some(value));
                    }
                }
            }
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let moved = found.keys().copied().collect();
        if !found.is_empty() {
            self.update(&found)?;
        }
        Ok(moved)
    }

    /// Whether the process environment sets `key` (and so overrides the file).
    pub fn overridden(key: &str) -> bool {
        std::env::var_os(key).is_some_and(|v| !v.is_empty())
    }

    /// The MQTT settings in effect.
    pub fn mqtt(&self) -> Result<MqttSettings, SettingsError> {
        MqttSettings::from_env(&self.env()?)
    }

    /// Set (or, with `None`, remove) keys, keeping the file's other lines; secret keys go to
    /// the secrets store. Blocking.
    pub fn update(&self, changes: &BTreeMap<&str, Option<String>>) -> std::io::Result<()> {
        let mut changes = changes.clone();
        if let Some(secrets) = &self.secrets {
            let mut stored = secrets.load_settings().map_err(std::io::Error::other)?;
            let before = stored.clone();
            for key in SECRET_KEYS {
                match changes.get(key) {
                    Some(Some(value)) => {
                        stored.insert(key.to_string(), value.clone());
                    }
                    Some(None) => {
                        stored.remove(key);
                    }
                    None => continue,
                }
                changes.insert(key, None);
            }
            if stored != before {
                secrets.store_settings(&stored).map_err(std::io::Error::other)?;
            }
        }
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
        for (key, value) in &changes {
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

    #[test]
    fn the_password_lives_in_the_secrets_store() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-settings-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(&path, "MQTT_HOST=broker.lan\nMQTT_PASSWORD='old secret'\n").unwrap();
        let secrets = Arc::new(SecretsManager::open(&dir.join("secrets")).unwrap());
        let file = SettingsFile::new(path.clone()).with_secrets(secrets);
        assert_eq!(file.move_secrets_out().unwrap(), ["MQTT_PASSWORD"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "MQTT_HOST=broker.lan\n", "the password left .env");
        assert_eq!(file.env().unwrap().get("MQTT_PASSWORD"), Some("old secret"));
        let mut changes = BTreeMap::new();
        changes.insert("MQTT_PASSWORD", Some("new secret".to_string()));
        file.update(&changes).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("secret"));
        let stored = std::fs::read_to_string(dir.join("secrets/settings.secret")).unwrap();
        assert!(!stored.contains("new secret"), "encrypted at rest");
        assert_eq!(file.env().unwrap().get("MQTT_PASSWORD"), Some("new secret"));
        changes.insert("MQTT_PASSWORD", None);
        file.update(&changes).unwrap();
        assert_eq!(file.env().unwrap().get("MQTT_PASSWORD"), None);
        assert!(file.move_secrets_out().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
