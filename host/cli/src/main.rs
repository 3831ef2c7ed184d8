//! `iot2mqtt-host`: runs one connector instance. It reads the contract's environment and files
//! (`shared/contract.md`, section 1), loads the plugin, hands everything to
//! `iot2mqtt-runtime`, swaps the plugin when its file is replaced, and stops cleanly on
//! SIGTERM or SIGINT. No logic of the contract lives here.

mod refreshed;
mod settings;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use iot2mqtt_runtime::{EngineConfig, InstanceSpec, Runtime};
use tokio::signal::unix::{SignalKind, signal};

use crate::settings::{HostSettings, StartError};
use crate::watch::PluginWatcher;

/// glibc's malloc is slow when one thread allocates what another frees, which is how a read's
/// result travels from a plugin's lane to the instance's thread (see `ARCHITECTURE.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The contract allows five seconds from SIGTERM to exit.
const STOP_DEADLINE: Duration = Duration::from_millis(4500);

fn main() -> ExitCode {
    iot2mqtt_runtime::logging::init(
        std::env::var("LOG_LEVEL").ok().as_deref(),
        std::env::var("LOG_FORMAT").ok().as_deref(),
        std::env::var("LOG_NAME").ok().as_deref(),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError { code, error }) => {
            tracing::error!("{error:#}");
            ExitCode::from(code)
        }
    }
}

async fn run() -> Result<(), StartError> {
    let settings = HostSettings::load()?;
    let instance = settings.config.instance_id.clone();
    let runtime = Runtime::new(EngineConfig {
        cache_dir: settings.cache_dir.clone(),
        shared_cache_dir: settings.shared_cache_dir.clone(),
    })
    .context("cannot start the plugin engine")
    .map_err(StartError::failure)?;
    let wasm = std::fs::read(&settings.plugin)
        .with_context(|| format!("cannot read the plugin {}", settings.plugin.display()))
        .map_err(StartError::failure)?;
    let mut watcher = PluginWatcher::new(&settings.plugin);
    let plugin = runtime
        .load_plugin(wasm)
        .await
        .with_context(|| format!("cannot load the plugin {}", settings.plugin.display()))
        .map_err(StartError::failure)?;
    let about = plugin.about().clone();
    tracing::info!(
        %instance, plugin = %about.name, version = %about.version, sha256 = %about.sha256,
        cache = ?plugin.cache_outcome(), compile_ms = plugin.compile_time().as_millis() as u64,
        broker = %format!("{}:{}", settings.mqtt.host, settings.mqtt.port),
        "starting instance"
    );
    let handle =
        runtime.start(InstanceSpec { config: settings.config, mqtt: settings.mqtt, plugin, options: settings.options });

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM").map_err(StartError::failure)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT").map_err(StartError::failure)?;
    loop {
        tokio::select! {
            // Docker's stop, or the orchestrator's.
            _ = terminate.recv() => break,
            // Ctrl-C when run by hand.
            _ = interrupt.recv() => break,
            // The plugin file was replaced: swap without dropping the session.
            Some(wasm) = watcher.changed() => match handle.swap_wasm(wasm).await {
                Ok(report) => tracing::info!(plugin = %report.plugin.name, version = %report.plugin.version, devices = report.devices, "plugin swapped"),
                Err(e) => tracing::error!("{e}; the running plugin keeps serving"),
            },
        }
    }
    tracing::info!(%instance, "stopping");
    if tokio::time::timeout(STOP_DEADLINE, handle.stop()).await.is_err() {
        tracing::warn!(%instance, "did not stop in time");
    }
    Ok(())
}
