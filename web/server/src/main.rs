//! The `iot2mqtt` binary: `iot2mqtt serve` runs the control plane (see the crate docs);
//! `iot2mqtt conformance` checks a running connector against the MQTT contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iot2mqtt_runtime::logging::InstanceLogs;
use iot2mqtt_server::conformance::ConformanceOptions;
use iot2mqtt_server::serve::{RuntimeChoice, ServeOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(name = "iot2mqtt", version, about = "Every device on one MQTT bus.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web API, the orchestrator and (without MQTT_HOST) the embedded broker.
    Serve(ServeArgs),
    /// Check a running connector instance against the MQTT contract, from outside, over MQTT
    /// only: one line per rule with the contract section it checks; exits 1 when one fails.
    /// The broker and login come from the MQTT_* variables unless given here.
    Conformance(ConformanceOptions),
    /// Make the Debian base image container connectors start from (iot2mqtt/base:bookworm) with
    /// debootstrap and docker import, unless it is there. Needs root and Debian's packages
    /// (this machine's apt mirror, or IOT2MQTT_DEBIAN_MIRROR).
    BaseImage,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The data directory.
    #[arg(long, env = "IOT2MQTT_PATH", default_value = "./data")]
    data_dir: PathBuf,
    /// The HTTP address.
    #[arg(long, default_value = "0.0.0.0:8765")]
    listen: SocketAddr,
    /// The connectors folder.
    #[arg(long, default_value = "./connectors")]
    connectors: PathBuf,
    /// Where instances run.
    #[arg(long, value_enum, default_value = "auto")]
    runtime: RuntimeChoice,
    /// Where the embedded MQTT broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt_listen: SocketAddr,
    /// A TLS listener for the embedded broker besides the plain one (e.g. 0.0.0.0:8883).
    #[arg(long, requires_all = ["mqtt_tls_cert", "mqtt_tls_key"])]
    mqtt_tls_listen: Option<SocketAddr>,
    /// The TLS listener's certificate chain (PEM).
    #[arg(long, requires = "mqtt_tls_listen")]
    mqtt_tls_cert: Option<PathBuf>,
    /// The TLS listener's private key (PEM).
    #[arg(long, requires = "mqtt_tls_listen")]
    mqtt_tls_key: Option<PathBuf>,
    /// Where built plugins are (default: beside the binaries, as cargo builds them).
    #[arg(long, env = "IOT2MQTT_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// The static iot2mqtt-host for the runner image (default: beside this binary).
    #[arg(long, env = "IOT2MQTT_HOST_BINARY")]
    host_binary: Option<PathBuf>,
}

fn main() -> ExitCode {
    fixed_malloc_thresholds();
    let instance_logs = InstanceLogs::default();
    iot2mqtt_runtime::logging::init_with(
        std::env::var("LOG_LEVEL").ok().as_deref(),
        std::env::var("LOG_FORMAT").ok().as_deref(),
        Some(instance_logs.clone()),
    );
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args, instance_logs)),
        Command::Conformance(args) => runtime.block_on(conformance(args)),
        Command::BaseImage => runtime.block_on(base_image()),
    }
}

async fn serve(args: ServeArgs, instance_logs: InstanceLogs) -> ExitCode {
    let mqtt_tls = match (args.mqtt_tls_listen, args.mqtt_tls_cert, args.mqtt_tls_key) {
        (Some(listen), Some(cert), Some(key)) => Some(iot2mqtt_broker::TlsListener { listen, cert, key }),
        _ => None,
    };
    let options = ServeOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        connectors: args.connectors,
        runtime: args.runtime,
        mqtt_listen: args.mqtt_listen,
        mqtt_tls,
        plugins_dir: args.plugins_dir,
        host_binary: args.host_binary,
        instance_logs,
    };
    match iot2mqtt_server::serve::run(options, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn conformance(options: ConformanceOptions) -> ExitCode {
    let json = options.json;
    let report = match iot2mqtt_server::conformance::run(options).await {
        Ok(report) => report,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                tracing::error!("cannot write the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.text());
    }
    if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn base_image() -> ExitCode {
    let Some(docker) = iot2mqtt_server::runtime::docker::connect().await else {
        tracing::error!("no Docker engine answers (is dockerd running? apt-get install docker.io)");
        return ExitCode::FAILURE;
    };
    match iot2mqtt_server::runtime::docker::base::ensure_base(&docker, &|_| {}).await {
        Ok(tag) => {
            println!("{tag}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot watch SIGTERM/SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        // Docker's or systemd's stop.
        _ = terminate.recv() => {}
        // Ctrl-C.
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
}

/// glibc raises its mmap threshold (and with it the trim threshold) each time a large block is
/// freed, so the 19 MiB argon2 block of a login would stay resident for the life of the
/// process. Fixed thresholds hand such blocks back to the system when they are freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fixed_malloc_thresholds() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, and with values glibc documents as valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_malloc_thresholds() {}
