//! `iot2mqtt serve`: the control plane. It owns the data directory (instance files written
//! atomically, secrets encrypted at rest, the plugin store), the access key and sessions, the
//! connector catalog, one runtime for instances (Docker containers or in-process), its own MQTT
//! client (state cache, commands, explorer), the embedded broker when none is configured, and
//! the HTTP API and the web UI (`ui`).
//!
//! It reaches instances only through the [`runtime::InstanceRuntime`] trait and MQTT; it never
//! links plugin code into its own logic.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod conformance;
pub mod devices;
pub mod flows;
pub mod guard;
pub mod instances;
pub mod mqtt;
pub mod mqtt_accounts;
pub mod oauth;
pub mod request;
pub mod runtime;
pub mod secrets;
pub mod serve;
pub mod store;
pub mod sync;
pub mod tools;
pub mod ui;

pub use api::{AppState, app, routes};
