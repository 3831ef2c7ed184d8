//! Loading a plugin: compile it (or take it from the compile cache) off the async threads,
//! link it against what a plugin may import, find its exports, and ask it who it is in a
//! throwaway lane. A plugin still in use is handed out again instead of being loaded twice.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bindings::exports::iot2mqtt::connector::{capabilities, device, events, handover, lanes, tools};
use crate::cache::CompileCache;
use crate::ctx::HostSink;
use crate::engine::Engine;
use crate::lane::{Lane, LaneConfig};
use crate::plugin::{Indices, Inner, LoadError, Plugin, PluginAbout};
use crate::sandbox::NetGrants;

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
    ///
    /// A plugin already loaded and still in use somewhere in the process (an instance, a setup
    /// tool, a validation) is handed out again rather than loaded twice: validation, tools and
    /// instances share one engine, so they share its plugins too.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(&wasm));
        if let Some(plugin) = self.loaded(&sha256) {
            return Ok(plugin);
        }
        // One load per content at a time; whoever waited finds the plugin loaded, or at worst
        // (it was dropped meanwhile) in the compile cache.
        let turn = self.turn(&sha256);
        let _turn = turn.lock().await;
        if let Some(plugin) = self.loaded(&sha256) {
            return Ok(plugin);
        }
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
            capabilities: capabilities::GuestIndices::new(&pre).ok(),
            lanes: lanes::GuestIndices::new(&pre).ok(),
        };
        let mut plugin = Plugin {
            inner: Arc::new(Inner {
                pre,
                indices,
                about: PluginAbout { name: String::new(), version: String::new(), sha256 },
                cache,
                compile_time,
                shared: false,
            }),
        };
        let config = LaneConfig {
            label: format!("plugin {}", &plugin.inner.about.sha256[..12]),
            grants: NetGrants::none(),
            http: crate::HttpLimits::default(),
            memory_limit: 64 << 20,
            cpu_budget: Duration::from_secs(1),
            call_limit: Duration::from_secs(5),
            sink: Arc::new(Discard),
        };
        let (engine, checked) = (self.clone(), plugin.clone());
        let (about, shared) = self
            .spawn(async move {
                let mut lane = Lane::new(&engine, &checked, config).await?;
                let about = lane.about().await?;
                Ok((about, lane.shares().await?))
            })
            .await
            .map_err(|e| LoadError::Interrupted(e.to_string()))?
            .map_err(LoadError::Check)?;
        if let Some(inner) = Arc::get_mut(&mut plugin.inner) {
            inner.about.name = about.name;
            inner.about.version = about.version;
            inner.shared = shared;
        }
        self.remember(&plugin);
        Ok(plugin)
    }

    /// The plugin of content `sha256` (hex), when one is loaded and still in use.
    pub fn loaded(&self, sha256: &str) -> Option<Plugin> {
        let loaded = self.inner.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.get(sha256).and_then(Weak::upgrade).map(|inner| Plugin { inner })
    }

    /// The lock that orders loads of content `sha256`.
    fn turn(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut loading = self.inner.loading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loading.retain(|_, weak| weak.strong_count() > 0);
        if let Some(turn) = loading.get(sha256).and_then(Weak::upgrade) {
            return turn;
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        loading.insert(sha256.to_string(), Arc::downgrade(&turn));
        turn
    }

    fn remember(&self, plugin: &Plugin) {
        let mut loaded = self.inner.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(plugin.inner.about.sha256.clone(), Arc::downgrade(&plugin.inner));
    }
}
