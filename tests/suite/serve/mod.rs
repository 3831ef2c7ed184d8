//! `iot2mqtt serve`, the orchestrator, through its HTTP API, with both runtimes and both
//! brokers, watched over MQTT.

mod access;
mod broker;
mod containers;
mod durability;
mod explorer;
mod level3;
mod lifecycle;
mod plugins;
mod setup;
mod tls;
