//! Wiring for `iot2mqtt serve`: open the data directory, set up authentication, start (or
//! connect to) the broker, pick the runtime, start every enabled instance, serve HTTP, and on
//! shutdown stop the instances so they publish `offline`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use iot2mqtt_broker::{Accounts, Broker, BrokerConfig};
use iot2mqtt_contract::MqttSettings;
use sha2::{Digest, Sha256};

use crate::api::{AppState, Shared, app};
use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::flows::Flows;
use crate::instances::Instances;
use crate::mqtt::MqttService;
use crate::mqtt_accounts::BrokerAccounts;
use crate::oauth::{self, OAuth};
use crate::runtime::InstanceRuntime;
use crate::runtime::docker::{self, DockerRuntime};
use crate::runtime::embedded::EmbeddedRuntime;
use crate::secrets::SecretsManager;
use crate::store::DataDir;
use crate::store::settings::SettingsFile;
use crate::tools::ToolRunner;

/// Which runtime runs instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    /// Docker when its socket answers, else embedded.
    Auto,
    /// Inside this process.
    Embedded,
    /// One container per instance.
    Docker,
}

/// What `serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The HTTP address.
    pub listen: SocketAddr,
    /// The connectors folder.
    pub connectors: PathBuf,
    /// The runtime.
    pub runtime: RuntimeChoice,
    /// Where the embedded broker listens (when `MQTT_HOST` is not set).
    pub mqtt_listen: SocketAddr,
    /// A TLS listener for the embedded broker besides the plain one.
    pub mqtt_tls: Option<iot2mqtt_broker::TlsListener>,
    /// Where built plugins are.
    pub plugins_dir: Option<PathBuf>,
    /// The static `iot2mqtt-host` for the runner image.
    pub host_binary: Option<PathBuf>,
    /// Where the process's logging keeps its own recent lines and each embedded instance's
    /// (a container's log is Docker's), for the log pages and the API.
    pub instance_logs: iot2mqtt_runtime::logging::InstanceLogs,
}

/// Run until `shutdown` completes.
pub async fn run(options: ServeOptions, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let data = DataDir::open(&options.data_dir)
        .with_context(|| format!("cannot open the data directory {}", options.data_dir.display()))?;
    let settings_secrets = Arc::new(SecretsManager::open(&data.secrets()).context("cannot open the secrets store")?);
    let settings_file = SettingsFile::new(data.dotenv()).with_secrets(settings_secrets);
    for key in settings_file.move_secrets_out().context("cannot move secrets out of .env")? {
        tracing::info!("{key} was moved from .env into the encrypted secrets store");
    }
    let env = settings_file.env().context("cannot read the settings")?;

    let (auth, setup_token) =
        Auth::open(&data.secrets(), env.get("IOT2MQTT_ACCESS_KEY")).context("cannot set up authentication")?;
    if let Some(token) = setup_token {
        let host = if options.listen.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            options.listen.ip().to_string()
        };
        let link = format!("http://{host}:{}/?setup={token}", options.listen.port());
        eprintln!("\n  No access key is set. Open this one-time link to choose one:\n\n    {link}\n");
        tracing::warn!("no access key is set: finish the setup with the one-time link printed above");
    }

    let (mqtt_settings, broker, broker_accounts) = match env.get("MQTT_HOST") {
        Some(_) => {
            let settings = MqttSettings::from_env(&env).context("invalid MQTT settings")?;
            if let Some(tls) = iot2mqtt_runtime::client_tls(&settings) {
                tls.client_config().context("invalid MQTT TLS settings")?;
            }
            (settings, None, None)
        }
        None => {
            // Every client of the embedded broker logs in: serve, each instance, and the
            // accounts people create; nobody gets in anonymously.
            let accounts = Accounts::default();
            let broker_accounts = Arc::new(
                BrokerAccounts::open(accounts.clone(), &data.secrets(), data.root())
                    .context("cannot load the MQTT accounts")?,
            );
            let config = BrokerConfig {
                listen: options.mqtt_listen,
                tls: options.mqtt_tls.clone(),
                accounts,
                ..BrokerConfig::default()
            };
            let broker = Broker::start(config)
                .await
                .with_context(|| format!("cannot start the embedded MQTT broker on {}", options.mqtt_listen))?;
            let mut settings = MqttSettings::from_env(&env).context("invalid MQTT settings")?;
            let addr = broker.local_addr();
            settings.host = if addr.ip().is_unspecified() { "127.0.0.1".into() } else { addr.ip().to_string() };
            settings.port = addr.port();
            // Our own clients reach the embedded broker on its plain listener.
            settings.tls = None;
            let (user, password) = broker_accounts.serve_login(&crate::mqtt::client_id(&settings));
            settings.username = Some(user);
            settings.password = Some(password);
            (settings, Some(broker), Some(broker_accounts))
        }
    };
    let mqtt = MqttService::start(mqtt_settings.clone());

    let docker_client = match options.runtime {
        RuntimeChoice::Embedded => None,
        _ => docker::connect().await,
    };
    let docker = match docker_client {
        Some(client) => {
            let exe_dir =
                std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)).unwrap_or_default();
            let host_binary = options.host_binary.clone().unwrap_or_else(|| exe_dir.join("iot2mqtt-host"));
            let run_dir = secrets_run_dir(&data);
            crate::store::private_dir(&run_dir)
                .with_context(|| format!("cannot use {} for containers' secrets", run_dir.display()))?;
            Some(DockerRuntime::new(client, install_tag(&data), host_binary, run_dir, mqtt.clone()))
        }
        None => None,
    };
    // One engine for the process: it checks uploads, runs setup tools and, embedded, instances.
    let engine = iot2mqtt_runtime::Runtime::new(iot2mqtt_runtime::EngineConfig {
        cache_dir: Some(data.engine_cache()),
        shared_cache_dir: None,
    })
    .context("cannot start the WebAssembly engine")?;
    // Instances run in containers or in this process; script tools run the same way.
    let (runtime, containers): (Arc<dyn InstanceRuntime>, _) = match (options.runtime, &docker) {
        (RuntimeChoice::Docker, None) => bail!("--runtime docker, but the Docker engine does not answer"),
        (RuntimeChoice::Docker | RuntimeChoice::Auto, Some(docker)) => (docker.clone(), Some(Arc::clone(docker))),
        _ => (Arc::new(EmbeddedRuntime::new(engine.clone(), options.instance_logs.clone())), None),
    };
    tracing::info!(runtime = runtime.name(), broker = %format!("{}:{}", mqtt_settings.host, mqtt_settings.port), embedded_broker = broker.is_some(), "starting");

    let embedded_broker = broker.as_ref().map(|_| (mqtt_settings.host.clone(), mqtt_settings.port));
    let secrets = SecretsManager::open(&data.secrets()).context("cannot open the secrets store")?;
    let plugins_dir = options.plugins_dir.clone().or_else(default_plugins_dir);
    let catalog = Catalog::new(options.connectors.clone(), plugins_dir);
    let oauth = OAuth::new(oauth::config_dir(data.root()));
    let mut instances = Instances::new(runtime, data, secrets, catalog, mqtt.clone(), mqtt_settings, engine)?;
    if let Some(accounts) = &broker_accounts {
        instances = instances.with_broker_accounts(Arc::clone(accounts));
    }
    let tools = Arc::new(match containers {
        Some(docker) => ToolRunner::in_containers(instances.engine(), docker),
        None => ToolRunner::new(instances.engine()),
    });
    tools.sweep().await;
    let (preparing, catalog) = (Arc::clone(&tools), instances.catalog().clone());
    tokio::spawn(async move { preparing.prepare(&catalog).await });
    let flows = Flows::new(Arc::clone(&tools), oauth);
    let state = AppState::new(Shared {
        auth,
        instances,
        mqtt: mqtt.clone(),
        tools,
        flows,
        settings: settings_file,
        docker,
        embedded_broker,
        broker_accounts,
        hosts: crate::guard::HostNames::new(env.get("IOT2MQTT_HOSTNAMES")),
        logs: options.instance_logs.clone(),
    });
    let reconciling = state.clone();
    tokio::spawn(async move { reconciling.instances.reconcile().await });

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
    axum::serve(listener, app(state.clone()).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed")?;

    tracing::info!("stopping instances");
    state.instances.shutdown().await;
    mqtt.stop();
    if let Some(broker) = broker {
        broker.stop().await;
    }
    Ok(())
}

/// A short name for this installation: a hash of its data directory's path.
fn install_tag(data: &DataDir) -> String {
    hex::encode(Sha256::digest(data.root().to_string_lossy().as_bytes()))[..12].to_string()
}

/// Where decrypted secrets for containers go: memory-backed (`/dev/shm`) where there is one,
/// so they never rest on disk; one folder per installation.
fn secrets_run_dir(data: &DataDir) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("iot2mqtt-{}", install_tag(data)))
    } else {
        tracing::warn!("no /dev/shm: decrypted secrets for containers are kept in the data directory");
        data.root().join("run")
    }
}

/// Built plugins next to the binaries (`target/<triple>/release` → `target/plugins`).
fn default_plugins_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let release = exe.parent()?;
    [release.join("plugins"), release.parent()?.parent()?.join("plugins")].into_iter().find(|dir| dir.is_dir())
}
