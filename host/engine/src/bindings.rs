//! Host-side bindings of the `connector` world in `wit/`.
#![allow(missing_debug_implementations, clippy::all, unused_qualifications)]

wasmtime::component::bindgen!({
    world: "connector",
    path: "../../wit",
    exports: { default: async },
    additional_derives: [PartialEq],
    with: { "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll },
});
