//! The wasmtime side of iot2mqtt: one [`Engine`] per process loads connector plugins
//! (WebAssembly components of the `connector` world in `wit/`), checks and caches them, and
//! runs each plugin instance as a sandboxed [`Lane`]: no files, no environment, network only
//! as granted, a memory cap, a CPU budget per call enforced with epoch interruption.
//!
//! This crate knows nothing of MQTT or the contract's topics: it turns calls into outcomes
//! ([`Failure`]) or faults ([`Fault`]) and leaves what to publish to `iot2mqtt-runtime`.

mod bindings;
mod cache;
mod ctx;
mod engine;
mod http;
mod lane;
mod loader;
mod outcome;
mod plugin;
mod sandbox;
mod tls;

pub use bindings::iot2mqtt::connector::types::Level;

/// What a plugin says its devices can do (`wit/capabilities.wit`), as the host receives it.
pub mod capabilities {
    pub use crate::bindings::exports::iot2mqtt::connector::capabilities::{
        Bounded, Category, Choice, Description, Entity, Kind, Light, Number, Preset, Sensor, StateClass,
    };
}
pub use cache::CacheOutcome;
pub use ctx::HostSink;
pub use engine::{Engine, EngineConfig, EngineError};
pub use http::{HttpHost, HttpLimits};
pub use lane::{DeviceInfo, Lane, LaneConfig, WakeSignal};
pub use outcome::{Failure, Fault, FaultKind};
pub use plugin::{LoadError, Plugin, PluginAbout};
pub use sandbox::{Names, NetGrants};
pub use wasmtime_wasi::sockets::SocketAddrUse;
