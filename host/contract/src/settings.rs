//! MQTT settings and the rest of an instance's environment (contract, section 1): process
//! environment over a dotenv file, every value validated, the password kept out of `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A variable with a value that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A variable's value is not acceptable.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
    /// The dotenv file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Dotenv {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A value that must never be logged. `Debug` prints a placeholder; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An instance's environment: the process environment over the dotenv file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Env {
    /// Read `dotenv` (a missing file is fine) and lay the process environment over it.
    pub fn load(dotenv: &Path) -> Result<Self, SettingsError> {
        let mut env = Self::default();
        match dotenvy::from_path_iter(dotenv) {
            Ok(iter) => {
                for item in iter {
                    let (key, value) = item.map_err(|e| SettingsError::Dotenv {
                        path: dotenv.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    env.vars.insert(key, value);
                }
            }
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SettingsError::Dotenv { path: dotenv.display().to_string(), reason: e.to_string() });
            }
        }
        env.vars.extend(std::env::vars());
        Ok(env)
    }

    /// An environment from explicit pairs (tests, the embedded runtime).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Set `name` unless the file or the process environment already does (a value kept
    /// elsewhere, such as a password in an encrypted store).
    pub fn or_insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.entry(name.into()).or_insert_with(|| value.into());
    }

    /// A variable's value; empty values count as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// How to reach and use the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// `MQTT_HOST`
    pub host: String,
    /// `MQTT_PORT`
    pub port: u16,
    /// `MQTT_USERNAME`; credentials are used when it is set.
    pub username: Option<String>,
    /// `MQTT_PASSWORD`
    pub password: Option<Secret>,
    /// `MQTT_BASE_TOPIC`
    pub base_topic: String,
    /// `MQTT_CLIENT_PREFIX`
    pub client_prefix: String,
    /// `MQTT_QOS`: QoS of state, error, event and response publications.
    pub qos: u8,
    /// `MQTT_RETAIN`: the retain flag of state publications.
    pub retain: bool,
    /// `MQTT_KEEPALIVE`
    pub keepalive: Duration,
    /// `MQTT_TLS` and its files; `None` for plain TCP.
    pub tls: Option<TlsFiles>,
    /// `MQTT_DISCOVERY_PREFIX`: where Home Assistant discovery is published (`homeassistant`);
    /// `None` (the value `off`) publishes none for any instance.
    pub discovery_prefix: Option<String>,
}

/// The files of `MQTT_TLS`: `MQTT_CA_FILE` (the system's roots when unset) and, for brokers
/// that ask for a client certificate, `MQTT_CERT_FILE` with `MQTT_KEY_FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `MQTT_CA_FILE`
    pub ca_file: Option<PathBuf>,
    /// `MQTT_CERT_FILE`
    pub cert_file: Option<PathBuf>,
    /// `MQTT_KEY_FILE`
    pub key_file: Option<PathBuf>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 1883,
            username: None,
            password: None,
            base_topic: "IoT2mqtt".into(),
            client_prefix: "iot2mqtt".into(),
            qos: 1,
            retain: true,
            keepalive: Duration::from_secs(60),
            tls: None,
            discovery_prefix: Some("homeassistant".into()),
        }
    }
}

impl MqttSettings {
    /// Read the `MQTT_*` variables, with the contract's defaults.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let base_topic = env.get("MQTT_BASE_TOPIC").unwrap_or(&defaults.base_topic).trim_end_matches('/').to_string();
        if base_topic.is_empty() || base_topic.contains(['+', '#']) {
            return Err(invalid("MQTT_BASE_TOPIC", "must be a topic without wildcards"));
        }
        let client_prefix = env.get("MQTT_CLIENT_PREFIX").unwrap_or(&defaults.client_prefix).to_string();
        let qos = match env.get("MQTT_QOS") {
            None => defaults.qos,
            Some(v) => v.parse().ok().filter(|q| *q <= 2).ok_or_else(|| invalid("MQTT_QOS", "must be 0, 1 or 2"))?,
        };
        let retain = match env.get("MQTT_RETAIN") {
            None => defaults.retain,
            Some(v) => parse_bool(v).ok_or_else(|| invalid("MQTT_RETAIN", "must be true or false"))?,
        };
        let tls = tls_files(env)?;
        let port = match env.get("MQTT_PORT") {
            // MQTT over TLS has its own well-known port.
            None if tls.is_some() => 8883,
            None => defaults.port,
            Some(v) => {
                v.parse().ok().filter(|p| *p > 0).ok_or_else(|| invalid("MQTT_PORT", "must be a port number"))?
            }
        };
        let discovery_prefix = match env.get("MQTT_DISCOVERY_PREFIX").map(|p| p.trim_end_matches('/')) {
            None => defaults.discovery_prefix,
            Some("off" | "false" | "none") => None,
            Some(p) if p.is_empty() || p.contains(['+', '#']) => {
                return Err(invalid("MQTT_DISCOVERY_PREFIX", "must be a topic without wildcards, or off"));
            }
            Some(p) => Some(p.to_string()),
        };
        let keepalive = match env.get("MQTT_KEEPALIVE") {
            None => defaults.keepalive,
            Some(v) => v
                .parse()
                .ok()
                .filter(|s| (5..=65535).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| invalid("MQTT_KEEPALIVE", "must be 5 to 65535 seconds"))?,
        };
        Ok(Self {
            host: env.get("MQTT_HOST").unwrap_or(&defaults.host).to_string(),
            port,
            username: env.get("MQTT_USERNAME").map(str::to_string),
            password: env.get("MQTT_PASSWORD").map(Secret::new),
            base_topic,
            client_prefix,
            qos,
            retain,
            keepalive,
            tls,
            discovery_prefix,
        })
    }

    /// `{prefix}_{instance_id}`
    pub fn client_id(&self, instance: &str) -> String {
        format!("{}_{instance}", self.client_prefix)
    }
}

fn tls_files(env: &Env) -> Result<Option<TlsFiles>, SettingsError> {
    let enabled = match env.get("MQTT_TLS") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| invalid("MQTT_TLS", "must be true or false"))?,
    };
    let file = |name| env.get(name).map(PathBuf::from);
    let files =
        TlsFiles { ca_file: file("MQTT_CA_FILE"), cert_file: file("MQTT_CERT_FILE"), key_file: file("MQTT_KEY_FILE") };
    if !enabled {
        for (name, set) in [
            ("MQTT_CA_FILE", files.ca_file.is_some()),
            ("MQTT_CERT_FILE", files.cert_file.is_some()),
            ("MQTT_KEY_FILE", files.key_file.is_some()),
        ] {
            if set {
                return Err(invalid(name, "is set, but MQTT_TLS is not true"));
            }
        }
        return Ok(None);
    }
    match (&files.cert_file, &files.key_file) {
        (Some(_), None) => Err(invalid("MQTT_KEY_FILE", "must be set with MQTT_CERT_FILE")),
        (None, Some(_)) => Err(invalid("MQTT_CERT_FILE", "must be set with MQTT_KEY_FILE")),
        _ => Ok(Some(files)),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn invalid(name: &'static str, reason: &str) -> SettingsError {
    SettingsError::Invalid { name, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let s = MqttSettings::from_env(&Env::default()).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.qos, s.retain), ("localhost", 1883, 1, true));
        assert_eq!(s.client_id("demo"), "iot2mqtt_demo");
        assert_eq!(s.discovery_prefix.as_deref(), Some("homeassistant"));
        let off = MqttSettings::from_env(&Env::from_pairs([("MQTT_DISCOVERY_PREFIX", "off")])).unwrap();
        assert_eq!(off.discovery_prefix, None);
        let own = MqttSettings::from_env(&Env::from_pairs([("MQTT_DISCOVERY_PREFIX", "ha/")])).unwrap();
        assert_eq!(own.discovery_prefix.as_deref(), Some("ha"));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let cases = [
            ("MQTT_QOS", "3", "MQTT_QOS: must be 0, 1 or 2"),
            ("MQTT_PORT", "http", "MQTT_PORT: must be a port number"),
            ("MQTT_RETAIN", "maybe", "MQTT_RETAIN: must be true or false"),
            ("MQTT_BASE_TOPIC", "a/#", "MQTT_BASE_TOPIC: must be a topic without wildcards"),
            ("MQTT_KEEPALIVE", "1", "MQTT_KEEPALIVE: must be 5 to 65535 seconds"),
            ("MQTT_TLS", "sometimes", "MQTT_TLS: must be true or false"),
            ("MQTT_CA_FILE", "/ca.pem", "MQTT_CA_FILE: is set, but MQTT_TLS is not true"),
            ("MQTT_DISCOVERY_PREFIX", "ha/#", "MQTT_DISCOVERY_PREFIX: must be a topic without wildcards, or off"),
        ];
        for (name, value, expected) in cases {
            let err = MqttSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn tls_takes_its_port_and_files() {
        let env = Env::from_pairs([("MQTT_TLS", "true"), ("MQTT_CA_FILE", "/etc/ca.pem")]);
        let s = MqttSettings::from_env(&env).unwrap();
        assert_eq!(s.port, 8883);
        assert_eq!(s.tls, Some(TlsFiles { ca_file: Some("/etc/ca.pem".into()), ..TlsFiles::default() }));
        let half = Env::from_pairs([("MQTT_TLS", "true"), ("MQTT_CERT_FILE", "/c.pem")]);
        let err = MqttSettings::from_env(&half).unwrap_err();
        assert_eq!(err.to_string(), "MQTT_KEY_FILE: must be set with MQTT_CERT_FILE");
        let plain = MqttSettings::from_env(&Env::default()).unwrap();
        assert_eq!((plain.port, plain.tls), (1883, None));
    }

    #[test]
    fn password_is_redacted() {
        let s = MqttSettings::from_env(&Env::from_pairs([("MQTT_PASSWORD", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn process_environment_wins_over_dotenv() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".env");
        std::fs::write(&file, "IOT2MQTT_TEST_ONLY_DOTENV=from-file\nPATH=from-file\n").unwrap();
        let env = Env::load(&file).unwrap();
        assert_eq!(env.get("IOT2MQTT_TEST_ONLY_DOTENV"), Some("from-file"));
        assert_ne!(env.get("PATH"), Some("from-file"));
        assert!(Env::load(&dir.join("missing.env")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
