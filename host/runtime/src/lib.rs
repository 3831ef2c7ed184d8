//! Runs connector instances. An instance is one MQTT session (with its last will), one
//! sandboxed plugin lane per device, and a dispatcher that applies the connector contract
//! (`shared/contract.md`) between them: validation, commands and responses, polling with
//! backoff, meta requests, faults and hot swap. Many instances share one [`Runtime`] (one
//! wasmtime engine) in one process; a fault in one never reaches another.
//!
//! This crate reads no files and no environment: its callers (the `iot2mqtt-host` binary and
//! the orchestrator's embedded runtime) turn configuration into an [`InstanceSpec`].

mod backoff;
mod dedup;
mod discovery;
mod dispatch;
mod grants;
pub mod logging;
mod options;
mod report;
mod runtime;
mod status;
mod worker;

pub use discovery::{discovery_filters, discovery_node_prefix};
pub use iot2mqtt_engine::{
    CacheOutcome, EngineConfig, Failure, Fault, FaultKind, HttpHost, HttpLimits, LoadError, Names, NetGrants, Plugin,
    PluginAbout,
};
pub use options::{InstanceOptions, SecretKeeper, SecretStore};
pub use runtime::{InstanceHandle, InstanceSpec, Runtime, RuntimeError, client_tls};
pub use status::{CRASH_LOOP_FAULTS, CRASH_LOOP_GAP, FaultTimes, InstanceStatus, SwapError, SwapReport};
