//! Bindings generated from `wit/` (the `connector` world). Connector authors never use these
//! directly: the [`crate::Connector`] trait and [`crate::export!`] wrap them.
#![allow(unsafe_code, missing_debug_implementations, clippy::all)]

wit_bindgen::generate!({
    world: "connector",
    path: "../../wit",
    // `events.listen` hands over a `wasi:io/poll` pollable; use the `wasip2` crate's type so a
    // plugin can poll it together with its own sockets and timers.
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
    pub_export_macro: true,
    export_macro_name: "export_connector_world",
    default_bindings_module: "iot2mqtt_sdk::bindings",
});
