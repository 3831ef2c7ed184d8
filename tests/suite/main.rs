//! The integration suite. Every test talks to real parts: a TestBroker it starts on a free
//! port, plugins compiled from `plugins/` and `tests/fixtures/plugins/` by the build script,
//! and, for process-level rules, the real `iot2mqtt-host` binary.
//!
//! A missing tool (mosquitto) fails the test under `CI=true` and is a loud skip otherwise.

// A test binary reports failure by panicking, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod broker;
mod codes;
mod conformance;
mod contract;
mod discovery;
mod faults;
mod lanes;
mod many;
mod process;
mod python_net;
mod security;
mod serve;
mod shelly;
mod swap;
mod ui;
mod yeelight;
