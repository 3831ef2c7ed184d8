//! The connector contract (`shared/contract.md`) as types: ids, topics, payloads, timestamps,
//! command parsing and validation, the instance configuration and the MQTT settings.
//!
//! Everything here is pure: no I/O beyond reading the files it is pointed at, no MQTT client,
//! no async. The host, the orchestrator and the test suite share it, so a rule of the
//! contract is written once.

pub mod atomic;
pub mod codes;
pub mod command;
pub mod config;
pub mod creds;
pub mod ids;
pub mod message;
pub mod refreshed;
pub mod settings;
pub mod time;
pub mod topics;

pub use codes::{ErrorCode, Severity};
pub use command::{Command, CommandError, GetRequest};
pub use config::{ConfigError, DeviceEntry, GroupEntry, InstanceConfig};
pub use ids::{ConnectorName, DeviceId, GroupId, IdError, InstanceId};
pub use settings::{Env, MqttSettings, Secret, SettingsError, TlsFiles};
pub use topics::{Inbound, Topics};
