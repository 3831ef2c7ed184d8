//! Loading a plugin: compile (or take from the cache) off the async runtime, link against what
//! the host provides, check the exports, and ask the plugin who it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::InstancePre;

use crate::bindings::exports::iot2mqtt::connector::{device, events, handover, tools};
use crate::cache::{CacheOutcome, CompileCache};
use crate::engine::Engine;
use crate::lane::{Fault, HostSink, Lane, LaneConfig, LaneCtx};
use crate::sandbox::NetGrants;

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
    inner: Arc<Inner>,
}

struct Inner {
    pre: InstancePre<LaneCtx>,
    indices: Indices,
    about: PluginAbout,
    cache: CacheOutcome,
    compile_time: Duration,
}

pub(crate) struct Indices {
    pub(crate) device: device::GuestIndices,
    pub(crate) events: Option<events::GuestIndices>,
    pub(crate) tools: Option<tools::GuestIndices>,
    pub(crate) handover: Option<handover::GuestIndices>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("about", &self.inner.about).field("cache", &self.inner.cache).finish()
    }
}

/// A sink for the check call: a plugin has no business logging or pushing from `about`.
struct Discard;

impl HostSink for Discard {
    fn log(&self, _level: crate::Level, _message: &str) {}
    fn push_state(&self, _: &str, _: serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
        Err("not during loading".into())
    }
    fn push_event(&self, _: &str, _: &str, _: serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
        Err("not during loading".into())
    }
}

impl Engine {
    /// Load a plugin from its `.wasm` bytes. Compiling is done on a blocking thread, so the
    /// async runtime (and every MQTT session on it) keeps running meanwhile.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let started = Instant::now();
        let engine = self.clone();
        let hash = sha256.clone();
        let (component, cache) = tokio::task::spawn_blocking(move || {
            CompileCache::load_or_compile(engine.inner.cache.as_ref(), &engine.inner.wasm, &hash, &wasm)
        })
        .await
        .map_err(|e| LoadError::Interrupted(e.to_string()))?
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile_time = started.elapsed();
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let indices = Indices {
            device: device::GuestIndices::new(&pre).map_err(|e| LoadError::Exports(format!("{e:#}")))?,
            events: events::GuestIndices::new(&pre).ok(),
            tools: tools::GuestIndices::new(&pre).ok(),
            handover: handover::GuestIndices::new(&pre).ok(),
        };
        let mut plugin = Plugin {
            inner: Arc::new(Inner {
                pre,
                indices,
                about: PluginAbout { name: String::new(), version: String::new(), sha256 },
                cache,
                compile_time,
            }),
        };
        let config = LaneConfig {
            label: format!("plugin {}", &plugin.inner.about.sha256[..12]),
            grants: NetGrants::none(),
            memory_limit: 64 << 20,
            cpu_budget: Duration::from_secs(1),
            call_limit: Duration::from_secs(5),
            sink: Arc::new(Discard),
        };
        let mut lane = Lane::new(self, &plugin, config).await.map_err(LoadError::Check)?;
        let about = lane.about().await.map_err(LoadError::Check)?;
        if let Some(inner) = Arc::get_mut(&mut plugin.inner) {
            inner.about.name = about.name;
            inner.about.version = about.version;
        }
        Ok(plugin)
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
