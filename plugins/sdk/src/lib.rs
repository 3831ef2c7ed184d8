//! The iot2mqtt plugin SDK: write a connector's device logic as a [`Connector`], export it with
//! [`export!`], build for `wasm32-wasip2`, and the iot2mqtt host does the rest (MQTT, the
//! contract, polling, retries, hot swap).
//!
//! This crate owns the glue between device logic and the WIT interface in `wit/`. It must not
//! grow device protocols (those belong to plugins) nor anything of the MQTT contract (that
//! belongs to the host): a plugin never sees a topic.
//!
//! ```no_run
//! use iot2mqtt_sdk::{Connector, DeviceConfig, Error, Instance, Object, json};
//!
//! struct Lamp { on: bool }
//!
//! impl Connector for Lamp {
//!     fn init(_instance: &Instance, _devices: &[DeviceConfig]) -> Result<Self, Error> {
//!         Ok(Lamp { on: false })
//!     }
//!     fn read_state(&mut self, _device: &str) -> Result<Object, Error> {
//!         Ok(iot2mqtt_sdk::object(json!({"power": self.on, "online": true})))
//!     }
//!     fn apply(&mut self, _device: &str, values: &Object) -> Result<Object, Error> {
//!         self.on = values.get("power").and_then(|v| v.as_bool()).ok_or_else(|| Error::invalid_value("power must be a boolean"))?;
//!         Ok(iot2mqtt_sdk::object(json!({"power": self.on})))
//!     }
//! }
//!
//! iot2mqtt_sdk::export!(Lamp);
//! ```

pub mod bindings;
pub mod capabilities;
mod config;
mod error;
#[doc(hidden)]
pub mod glue;
pub mod host;
pub mod http;
mod listen;
pub mod net;

pub use capabilities::Capabilities;
pub use config::{DeviceConfig, Instance};
pub use error::Error;
pub use listen::{Wake, Woken};
pub use serde_json::{self, Map, Value, json};
pub use wasip2;

/// A JSON object: what states, command values and results are.
pub type Object = Map<String, Value>;

/// Turn a JSON value into an object; anything that is not an object becomes an empty one.
/// Meant for `object(json!({...}))` literals.
pub fn object(value: Value) -> Object {
    match value {
        Value::Object(map) => map,
        _ => Object::new(),
    }
}

/// What the host should know about one device after [`Connector::init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's id.
    pub id: String,
    /// Its model, shown in `meta/devices_list`.
    pub model: Option<String>,
    /// Whether the host reads it every `update_interval` seconds.
    pub poll: bool,
}

impl DeviceInfo {
    /// A polled device without a known model.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), model: None, poll: true }
    }

    /// The same, with a model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The same, not polled: the plugin pushes every change itself.
    pub fn push_only(mut self) -> Self {
        self.poll = false;
        self
    }
}

/// A connector's device logic. Implement the three required methods; the others have
/// defaults that suit a simple polled device.
///
/// The host calls one method at a time. A plugin instance may serve only some devices of its
/// instance (the host isolates devices from each other), so keep per-device state keyed by id.
pub trait Connector: Sized + 'static {
    /// Whether one plugin instance serves all the enabled devices of an instance (one
    /// connection to a hub, one cache) instead of one plugin instance per device. Off by
    /// default: with it on, a slow call delays every device of the instance and a fault
    /// restarts them all.
    const SHARED_LANE: bool = false;

    /// Build the connector for `devices` (the enabled devices this plugin instance serves).
    /// A device that cannot be reached now is not an error here: let `read_state` fail.
    fn init(instance: &Instance, devices: &[DeviceConfig]) -> Result<Self, Error>;

    /// Describe a device for the host. By default: polled, model unknown.
    fn describe(&self, device: &DeviceConfig) -> DeviceInfo {
        DeviceInfo::new(&device.id)
    }

    /// What the device can do, for Home Assistant discovery (see [`capabilities`]). By
    /// default nothing is said, and the host offers one sensor per numeric or boolean state key.
    fn capabilities(&self, _device_id: &str) -> Option<Capabilities> {
        None
    }

    /// Read a device's state now. Include `"online"`.
    fn read_state(&mut self, device_id: &str) -> Result<Object, Error>;

    /// Apply a command's values and return the values the device confirmed.
    fn apply(&mut self, device_id: &str, values: &Object) -> Result<Object, Error>;

    /// Wait for notifications from devices and push them with [`host::push_state`]. Return
    /// `true` to be called again. By default there is nothing to listen for.
    fn listen(&mut self, _wake: &Wake<'_>) -> bool {
        false
    }

    /// Run a setup tool (see `setup.json`). Runs without `init`, in a fresh instance.
    fn run_tool(name: &str, _input: Value) -> Result<Value, Error> {
        Err(Error::unsupported(format!("this connector has no tool \"{name}\"")))
    }

    /// Save what a new version of this plugin needs to go on after a hot swap.
    fn save_state(&self) -> Option<Vec<u8>> {
        None
    }

    /// Take over what the previous version saved. Called after `init`; called once for each
    /// instance of the previous version that served some of these devices when the two
    /// versions spread devices differently ([`Connector::SHARED_LANE`]), so merge.
    fn restore_state(&mut self, _state: &[u8]) -> Result<(), String> {
        Err("this plugin does not take over saved state".to_string())
    }
}

/// Export a [`Connector`] as the plugin's implementation of the `connector` world.
/// Use it once, at the root of the plugin crate: `iot2mqtt_sdk::export!(MyConnector);`
#[macro_export]
macro_rules! export {
    ($connector:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            use $crate::bindings::exports::iot2mqtt::connector as __exports;
            use $crate::bindings::iot2mqtt::connector::types as __types;

            struct __Iot2mqttPlugin;

            ::std::thread_local! {
                static __STATE: ::core::cell::RefCell<::core::option::Option<$connector>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl __exports::device::Guest for __Iot2mqttPlugin {
                fn about() -> __types::PluginAbout {
                    $crate::glue::about(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                }
                fn init(
                    instance: String,
                    devices: Vec<__types::DeviceConfig>,
                ) -> Result<Vec<__types::DeviceInfo>, __types::Error> {
                    $crate::glue::init::<$connector>(&__STATE, instance, devices)
                }
                fn read_state(device_id: String) -> Result<String, __types::Error> {
                    $crate::glue::read_state::<$connector>(&__STATE, device_id)
                }
                fn apply(device_id: String, values: String) -> Result<String, __types::Error> {
                    $crate::glue::apply::<$connector>(&__STATE, device_id, values)
                }
            }

            impl __exports::events::Guest for __Iot2mqttPlugin {
                fn listen(wake: &$crate::wasip2::io::poll::Pollable) -> bool {
                    $crate::glue::listen::<$connector>(&__STATE, wake)
                }
            }

            impl __exports::tools::Guest for __Iot2mqttPlugin {
                fn run_tool(name: String, input: String) -> Result<String, __types::Error> {
                    $crate::glue::run_tool::<$connector>(name, input)
                }
            }

            impl __exports::capabilities::Guest for __Iot2mqttPlugin {
                fn describe(device_id: String) -> Option<__exports::capabilities::Description> {
                    $crate::glue::describe::<$connector>(&__STATE, device_id)
                }
            }

            impl __exports::lanes::Guest for __Iot2mqttPlugin {
                fn sharing() -> __exports::lanes::LaneSharing {
                    if <$connector as $crate::Connector>::SHARED_LANE {
                        __exports::lanes::LaneSharing::PerInstance
                    } else {
                        __exports::lanes::LaneSharing::PerDevice
                    }
                }
            }

            impl __exports::handover::Guest for __Iot2mqttPlugin {
                fn save_state() -> Option<Vec<u8>> {
                    $crate::glue::save_state::<$connector>(&__STATE)
                }
                fn restore_state(state: Vec<u8>) -> Result<(), String> {
                    $crate::glue::restore_state::<$connector>(&__STATE, state)
                }
            }

    $crate::bindings::export_connector_world!(__Iot2mqttPlugin with_types_in $crate::bindings);
        };
    };
}
