use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::iot2mqtt::connector::host;
use crate::cache::CompileCache;
use crate::ctx::LaneCtx;
use crate::sandbox::Lookups;

/// How often the epoch advances. A call's CPU budget is counted in these ticks, and a plugin
/// that computes without pause yields to other tasks once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the engine is set up.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Where compiled components are cached; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Compiled components another, trusted process wrote (serve's own cache, mounted
    /// read-only into each instance's container), looked up after `cache_dir` and never
    /// written: a plugin is compiled once for every container that runs it.
    pub shared_cache_dir: Option<PathBuf>,
}

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0:#}")]
pub struct EngineError(wasmtime::Error);

/// One per process: the compiler, the linker with everything a plugin may import, the compile
/// cache and the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Declared first: dropped first, before the engine its tasks use.
    threads: PluginThreads,
    pub(crate) wasm: wasmtime::Engine,
    pub(crate) linker: Linker<LaneCtx>,
    pub(crate) cache: Option<CompileCache>,
    /// Plugins loaded and still in use, by sha256 (see [`Engine::load`]).
    pub(crate) loaded: Mutex<HashMap<String, Weak<crate::plugin::Inner>>>,
    /// Loads in progress, by sha256: a second load of the same content waits for the first
    /// instead of compiling it again (a Python component takes seconds and hundreds of MB).
    pub(crate) loading: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    _ticker: Ticker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("cache", &self.inner.cache).finish_non_exhaustive()
    }
}

impl Engine {
    /// Create the engine and start its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Small virtual reservations keep thousands of instances within one address space.
            .memory_reservation(64 << 20)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(1 << 20)
            .max_wasm_stack(512 << 10)
            .async_stack_size(1 << 20);
        let wasm = wasmtime::Engine::new(&wasm_config).map_err(EngineError)?;
        let mut linker = Linker::new(&wasm);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(EngineError)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(EngineError)?;
        host::add_to_linker::<LaneCtx, HasSelf<LaneCtx>>(&mut linker, |ctx| ctx).map_err(EngineError)?;
        // Name lookups only for the names a lane was granted: ours replaces wasmtime-wasi's.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::add_to_linker::<LaneCtx, Lookups>(&mut linker, |ctx| {
            ctx.lookups()
        })
        .map_err(EngineError)?;
        linker.allow_shadowing(false);
        let ticker = Ticker::start(&wasm).map_err(|e| EngineError(e.into()))?;
        let threads = PluginThreads::start().map_err(|e| EngineError(e.into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                threads,
                wasm,
                linker,
                cache: config.cache_dir.map(|dir| CompileCache::new(dir, config.shared_cache_dir)),
                loaded: Mutex::default(),
                loading: Mutex::default(),
                _ticker: ticker,
            }),
        })
    }
}

impl Engine {
    /// Run `future` on the plugin threads (see [`PluginThreads`]).
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(future)
    }

    /// The plugin threads' runtime, to spawn on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.inner.threads.handle()
    }
}

/// The threads plugin code runs on: a tokio runtime of its own, so that plugins computing up
/// to their CPU budget, and the host work done on their behalf (parsing what they hand over),
/// never hold the threads that serve HTTP and MQTT.
struct PluginThreads(Option<tokio::runtime::Runtime>);

impl PluginThreads {
    fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("iot2mqtt-plugin")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is taken only when dropped"),
        }
    }
}

impl Drop for PluginThreads {
    fn drop(&mut self) {
        // Dropped from async code too (the last engine handle going away in a task).
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("iot2mqtt-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
