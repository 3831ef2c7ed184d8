//! A loaded plugin: its linked component ready to instantiate lanes from, the exports it has,
//! and who it says it is. `loader.rs` makes them.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::InstancePre;

use crate::bindings::exports::iot2mqtt::connector::{capabilities, device, events, handover, lanes, tools};
use crate::cache::CacheOutcome;
use crate::ctx::LaneCtx;
use crate::outcome::Fault;

/// Why a `.wasm` cannot be used as a plugin. Each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It is not a WebAssembly component this engine can compile.
    #[error("not a usable WebAssembly component: {0}")]
    Compile(String),
    /// It imports something the host does not provide (files are provided but empty, sockets
    /// only as granted; anything else is refused here).
    #[error("the plugin needs imports the host does not provide: {0}")]
    Imports(String),
    /// It does not export the `connector` world's `device` interface as `wit/` defines it.
    #[error("the plugin does not implement iot2mqtt:connector/device@0.1.0: {0}")]
    Exports(String),
    /// It compiled and linked, but failed when asked who it is.
    #[error("the plugin failed its first call: {0}")]
    Check(Fault),
    /// The compile task could not run.
    #[error("compiling was interrupted: {0}")]
    Interrupted(String),
}

/// Who a plugin says it is, and its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginAbout {
    /// Its name (`demo`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The sha256 of its `.wasm`, hex.
    pub sha256: String,
}

/// A loaded, checked plugin, ready to instantiate lanes from. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pre: InstancePre<LaneCtx>,
    pub(crate) indices: Indices,
    pub(crate) about: PluginAbout,
    pub(crate) cache: CacheOutcome,
    pub(crate) compile_time: Duration,
    pub(crate) shared: bool,
}

pub(crate) struct Indices {
    pub(crate) device: device::GuestIndices,
    pub(crate) events: Option<events::GuestIndices>,
    pub(crate) tools: Option<tools::GuestIndices>,
    pub(crate) handover: Option<handover::GuestIndices>,
    pub(crate) capabilities: Option<capabilities::GuestIndices>,
    pub(crate) lanes: Option<lanes::GuestIndices>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("about", &self.inner.about).field("cache", &self.inner.cache).finish()
    }
}

impl Plugin {
    /// Who the plugin is.
    pub fn about(&self) -> &PluginAbout {
        &self.inner.about
    }

    /// Whether it came from the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// How long compiling (or loading from the cache) took.
    pub fn compile_time(&self) -> Duration {
        self.inner.compile_time
    }

    /// Whether `other` is this very plugin (one load, shared), not merely the same content.
    pub fn is_same(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether it asked for one lane serving all the devices of an instance (`lanes.sharing`
    /// = `per-instance`) rather than a lane per device.
    pub fn shares_lane(&self) -> bool {
        self.inner.shared
    }

    /// Whether it exports setup tools.
    pub fn has_tools(&self) -> bool {
        self.inner.indices.tools.is_some()
    }

    pub(crate) fn pre(&self) -> &InstancePre<LaneCtx> {
        &self.inner.pre
    }

    pub(crate) fn indices(&self) -> &Indices {
        &self.inner.indices
    }
}
