//! One container per instance, through the Docker API (bollard). The runner image is built
//! here, `FROM scratch` around the static `iot2mqtt-host` found beside this executable.
//! Containers are named `iot2mqtt_{connector}_{id}`, labelled, restart `unless-stopped`, see
//! their instance folder and plugin folder read-only and their decrypted secrets as
//! `/run/secrets/{id}_creds` from a memory-backed folder. Secrets its plugin refreshes are
//! sealed in its cache folder and taken into the store before the next container starts.
//!
//! What happens inside a container (a plugin fault, a hot swap) is told by its host on MQTT;
//! `reports.rs` reads it there, so the runtime answers `observe` and `swap` like any other.

pub mod base;
mod containers;
mod images;
mod reports;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder, StartContainerOptions,
};
pub use containers::{ContainerAction, ContainerView, container_name};
use futures_util::StreamExt as _;
use iot2mqtt_contract::{InstanceId, refreshed};
use tokio::sync::Mutex;

use super::{BoxFuture, InstanceRuntime, LogLine, LogStream, NewPlugin, Observed, Program, RunSpec, RuntimeError};
use crate::catalog::Network;
use crate::mqtt::MqttService;
use crate::store::atomic::write;

/// The label every connector container carries; container operations refuse others.
pub const TYPE_LABEL: &str = "iot2mqtt.type";
/// Its value.
pub const TYPE_CONNECTOR: &str = "connector";
/// The label naming the installation (data directory) a container belongs to, so two
/// orchestrators on one Docker engine never touch each other's containers.
pub const INSTALL_LABEL: &str = "iot2mqtt.install";
/// Where serve's compile cache is mounted, read-only, in every instance's container.
const SHARED_CACHE: &str = "/shared-cache";
/// The container's copies of the MQTT TLS files, in its secrets folder.
const TLS_CA: &str = "mqtt_ca.pem";
const TLS_CERT: &str = "mqtt_cert.pem";
const TLS_KEY: &str = "mqtt_key.pem";

/// Take into the store the secrets the instance's previous container refreshed (a token its
/// plugin renewed), as far as the store still holds what they replaced, and give them to the
/// next one; the file is then removed. A file that cannot be opened is said so and dropped; one
/// the store cannot take (an error writing it) is kept, and the next container's host uses it.
async fn take_refreshed(spec: &mut RunSpec) {
    let id = spec.config.instance_id.clone();
    let path = spec.cache_dir.join(refreshed::FILE);
    let store = Arc::clone(&spec.secret_store);
    let instance = id.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let key = refreshed::RefreshKey::from_bytes(&store.refresh_key());
        let entries = match key.unseal(instance.as_str(), &text) {
            Ok(entries) => entries,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(format!("{e}; they are dropped"));
            }
        };
        store.take_refreshed(&entries).map_err(|e| format!("{e}; they are kept for the next start"))?;
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), "cannot remove the refreshed secrets, which are taken: {e}");
        }
        Ok(Some(entries))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match taken {
        Ok(None) => {}
        Ok(Some(entries)) => {
            let taken = refreshed::apply(&mut spec.secrets, &entries);
            tracing::info!(instance = %id, secrets = ?taken, "kept the secrets the plugin refreshed in its container");
        }
        Err(e) => {
            tracing::warn!(instance = %id, "the secrets its plugin refreshed in its container were not taken: {e}")
        }
    }
}

/// Copy the TLS files a container's host needs into its secrets folder: the CA file, or this
/// machine's root certificates when none is set (the runner image has none of its own), and the
/// client certificate and key when there are.
fn write_tls_files(dir: &Path, tls: &iot2mqtt_contract::TlsFiles) -> std::io::Result<()> {
    let ca = match &tls.ca_file {
        Some(path) => std::fs::read(path).map_err(|e| named(path, e))?,
        None => system_roots_pem().into_bytes(),
    };
    write(&dir.join(TLS_CA), &ca, 0o600)?;
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        write(&dir.join(TLS_CERT), &std::fs::read(cert).map_err(|e| named(cert, e))?, 0o600)?;
        write(&dir.join(TLS_KEY), &std::fs::read(key).map_err(|e| named(key, e))?, 0o600)?;
    }
    Ok(())
}

fn named(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// This machine's root certificates as one PEM bundle.
fn system_roots_pem() -> String {
    use base64::Engine as _;
    let mut pem = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// Seconds a container gets to stop after SIGTERM.
const STOP_SECONDS: i32 = 10;
/// Memory a container gets beyond its plugin's cap (the host itself).
const HOST_OVERHEAD_MB: u64 = 48;

/// A file's size and modification time: enough to tell it changed.
type FileStamp = (u64, Option<std::time::SystemTime>);

/// An instance whose image is being built before its container can start.
#[derive(Debug, Clone)]
struct Preparing {
    /// Which start this is; a later start or a stop makes it stale.
    generation: u64,
    /// The step it is at.
    activity: String,
    /// Why it failed, once it did.
    error: Option<String>,
}

/// The Docker runtime.
pub struct DockerRuntime {
    me: Weak<DockerRuntime>,
    docker: Docker,
    install: String,
    host_binary: PathBuf,
    secrets_dir: PathBuf,
    image: Mutex<Option<(Option<FileStamp>, String)>>,
    building: Mutex<()>,
    names: Mutex<HashMap<InstanceId, String>>,
    reports: MqttService,
    preparing: std::sync::Mutex<HashMap<InstanceId, Preparing>>,
    generations: AtomicU64,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("host_binary", &self.host_binary).finish_non_exhaustive()
    }
}

/// Connect to the local Docker engine; `None` when it does not answer.
pub async fn connect() -> Option<Docker> {
    let docker = Docker::connect_with_local_defaults().ok()?;
    let docker = docker.negotiate_version().await.ok()?;
    docker.ping().await.ok()?;
    Some(docker)
}

impl DockerRuntime {
    /// A runtime on `docker` for the installation `install`, building its image around
    /// `host_binary`, with decrypted secrets kept under `secrets_dir` (memory-backed where
    /// possible). What the containers' hosts report (faults, swaps) is read from `reports`.
    pub fn new(
        docker: Docker,
        install: String,
        host_binary: PathBuf,
        secrets_dir: PathBuf,
        reports: MqttService,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            docker,
            install,
            host_binary,
            secrets_dir,
            image: Mutex::default(),
            building: Mutex::default(),
            names: Mutex::default(),
            reports,
            preparing: std::sync::Mutex::default(),
            generations: AtomicU64::new(0),
        })
    }

    /// The Docker client (for the container API).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The installation's tag (the value of [`INSTALL_LABEL`]).
    pub fn install(&self) -> &str {
        &self.install
    }

    async fn start_instance(&self, spec: RunSpec) -> Result<(), RuntimeError> {
        let id = spec.config.instance_id.clone();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = match &spec.program {
            Program::Plugin(_) => {
                self.forget_preparing(&id);
                let image = self.ensure_image().await?;
                return self.create(spec, image).await;
            }
            Program::Image { dir, .. } => dir.clone(),
        };
        let packed = self.pack(spec.connector.as_str(), &dir).await?;
        if self.docker.inspect_image(&packed.tag).await.is_ok() {
            self.forget_preparing(&id);
            return self.create(spec, packed.tag.clone()).await;
        }
        // Building may take minutes (the base image the first time): it goes on in a task of
        // its own, told on the instance's status, and a later start or a stop makes it stale.
        self.set_preparing(&id, Preparing { generation, activity: "waiting to build its image".into(), error: None });
        let Some(this) = self.me.upgrade() else {
            return Err(RuntimeError::Docker("the runtime is going down".into()));
        };
        tokio::spawn(async move {
            let progress = |line: &str| this.progress(&id, generation, line);
            let built = this.connector_image(spec.connector.as_str(), &packed, &progress).await;
            let started = match built {
                Ok(image) if this.current(&id, generation) => this.create(spec, image).await,
                Ok(_) => return,
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => this.finish_preparing(&id, generation),
                Err(e) => {
                    tracing::error!(instance = %id, "cannot start: {e}");
                    this.fail_preparing(&id, generation, e.to_string());
                }
            }
        });
        Ok(())
    }

    fn set_preparing(&self, id: &InstanceId, preparing: Preparing) {
        crate::sync::lock(&self.preparing).insert(id.clone(), preparing);
    }

    fn forget_preparing(&self, id: &InstanceId) {
        crate::sync::lock(&self.preparing).remove(id);
    }

    fn current(&self, id: &InstanceId, generation: u64) -> bool {
        crate::sync::lock(&self.preparing).get(id).is_some_and(|p| p.generation == generation)
    }

    fn progress(&self, id: &InstanceId, generation: u64, line: &str) {
        if let Some(p) = crate::sync::lock(&self.preparing).get_mut(id).filter(|p| p.generation == generation) {
            p.activity = line.to_string();
        }
    }

    fn finish_preparing(&self, id: &InstanceId, generation: u64) {
        let mut preparing = crate::sync::lock(&self.preparing);
        if preparing.get(id).is_some_and(|p| p.generation == generation) {
            preparing.remove(id);
        }
    }

    fn fail_preparing(&self, id: &InstanceId, generation: u64, error: String) {
        if let Some(p) = crate::sync::lock(&self.preparing).get_mut(id).filter(|p| p.generation == generation) {
            p.error = Some(error);
        }
    }

    /// Create and start the instance's container from `image`, replacing any it had.
    async fn create(&self, mut spec: RunSpec, image: String) -> Result<(), RuntimeError> {
        let id = spec.config.instance_id.clone();
        let name = container_name(spec.connector.as_str(), id.as_str());
        // The old container goes first, so that nothing refreshes a secret after it is taken.
        let _ = self
            .docker
            .remove_container(&name, Some(RemoveContainerOptionsBuilder::default().force(true).build()))
            .await;
        take_refreshed(&mut spec).await;
        let secrets = self.write_secrets(&id, &spec).await?;
        let plugin_dir = spec.program.plugin().map(|p| p.path.parent().map(Path::to_path_buf).unwrap_or_default());
        let own_image = matches!(spec.program, Program::Image { .. });
        tokio::fs::create_dir_all(&spec.cache_dir).await.map_err(|e| RuntimeError::Io(e.to_string()))?;
        let mut env = vec![
            format!("INSTANCE_NAME={id}"),
            format!("CONNECTOR_TYPE={}", spec.connector),
            "MODE=production".to_string(),
            format!("MQTT_PORT={}", spec.mqtt.port),
            format!("MQTT_BASE_TOPIC={}", spec.mqtt.base_topic),
            format!("MQTT_CLIENT_PREFIX={}", spec.mqtt.client_prefix),
            format!("MQTT_QOS={}", spec.mqtt.qos),
            format!("MQTT_RETAIN={}", spec.mqtt.retain),
            format!("MQTT_KEEPALIVE={}", spec.mqtt.keepalive.as_secs()),
            format!("MQTT_DISCOVERY_PREFIX={}", spec.mqtt.discovery_prefix.as_deref().unwrap_or("off")),
            "IOT2MQTT_CACHE_DIR=/cache".to_string(),
            format!("IOT2MQTT_REFRESHED_SECRETS=/cache/{}", refreshed::FILE),
        ];
        if plugin_dir.is_some() {
            env.push("IOT2MQTT_PLUGIN=/app/plugin/connector.wasm".to_string());
            env.push(format!("IOT2MQTT_SHARED_CACHE_DIR={SHARED_CACHE}"));
        }
        let mut extra_hosts = None;
        let loopback = matches!(spec.mqtt.host.as_str(), "localhost" | "127.0.0.1" | "::1");
        match (spec.network, loopback) {
            (Network::Bridge, true) => {
                env.push("MQTT_HOST=host.docker.internal".to_string());
                extra_hosts = Some(vec!["host.docker.internal:host-gateway".to_string()]);
                self.check_gateway_reaches_broker(&id, spec.mqtt.port).await;
            }
            _ => env.push(format!("MQTT_HOST={}", spec.mqtt.host)),
        }
        if let Some(mb) = spec.memory_mb {
            env.push(format!("IOT2MQTT_MEMORY_LIMIT_MB={mb}"));
        }
        if !spec.http_hosts.is_empty() {
            let hosts: Vec<String> = spec.http_hosts.iter().map(ToString::to_string).collect();
            env.push(format!("IOT2MQTT_HTTP_HOSTS={}", hosts.join(",")));
        }
        // TLS: the variables name files beside the secrets (written by `write_secrets`).
        if let Some(tls) = &spec.mqtt.tls {
            env.push("MQTT_TLS=true".to_string());
            env.push(format!("MQTT_CA_FILE=/run/secrets/{TLS_CA}"));
            if tls.cert_file.is_some() {
                env.push(format!("MQTT_CERT_FILE=/run/secrets/{TLS_CERT}"));
                env.push(format!("MQTT_KEY_FILE=/run/secrets/{TLS_KEY}"));
            }
        }
        let mut labels = HashMap::new();
        labels.insert(TYPE_LABEL.to_string(), TYPE_CONNECTOR.to_string());
        labels.insert("iot2mqtt.connector".to_string(), spec.connector.to_string());
        labels.insert("iot2mqtt.instance".to_string(), id.to_string());
        labels.insert(INSTALL_LABEL.to_string(), self.install.clone());
        let mut binds = vec![
            format!("{}:/app/instances:ro", spec.instances_dir.display()),
            format!("{}:/run/secrets:ro", secrets.display()),
            format!("{}:/cache:rw", spec.cache_dir.display()),
        ];
        if let Some(dir) = &plugin_dir {
            binds.push(format!("{}:/app/plugin:ro", dir.display()));
            binds.push(format!("{}:{SHARED_CACHE}:ro", spec.shared_cache_dir.display()));
        }
        // A connector's own image runs programs (supervisord, Python) that write their pid
        // and socket files: they get private, memory-backed /tmp and /run; the rest stays
        // read-only. The runner image writes nothing.
        let tmpfs = own_image.then(|| {
            HashMap::from([
                ("/tmp".to_string(), "rw,nosuid,nodev,size=64m".to_string()),
                ("/run".to_string(), "rw,nosuid,nodev,size=16m".to_string()),
            ])
        });
        let overhead = if own_image { 0 } else { HOST_OVERHEAD_MB };
        let host_config = HostConfig {
            binds: Some(binds),
            network_mode: Some(match spec.network {
                Network::Host => "host".to_string(),
                Network::Bridge => "bridge".to_string(),
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: spec.memory_mb.map(|mb| i64::try_from((mb + overhead) << 20).unwrap_or(i64::MAX)),
            tmpfs,
            nano_cpus: spec.cpus.map(|cpus| (cpus * 1e9) as i64),
            extra_hosts,
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(image),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(host_config),
            stop_timeout: Some(i64::from(STOP_SECONDS)),
            ..ContainerCreateBody::default()
        };
        self.docker
            .create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body)
            .await
            .map_err(|e| RuntimeError::Docker(format!("creating {name}: {e}")))?;
        self.docker
            .start_container(&name, None::<StartContainerOptions>)
            .await
            .map_err(|e| RuntimeError::Docker(format!("starting {name}: {e}")))?;
        self.reports.forget_faults(&id);
        self.names.lock().await.insert(id, name);
        Ok(())
    }

    /// A container on the bridge network reaches a broker on this machine through the bridge's
    /// gateway; say so loudly when the broker does not listen there (it listens on loopback
    /// only, as the embedded broker does by default), since the instance could never connect.
    async fn check_gateway_reaches_broker(&self, id: &InstanceId, port: u16) {
        let options = None::<bollard::query_parameters::InspectNetworkOptions>;
        let Ok(bridge) = self.docker.inspect_network("bridge", options).await else { return };
        let configs = bridge.ipam.and_then(|ipam| ipam.config).unwrap_or_default();
        for gateway in configs.iter().filter_map(gateway) {
            let connect = tokio::net::TcpStream::connect((gateway, port));
            if matches!(tokio::time::timeout(Duration::from_secs(2), connect).await, Ok(Ok(_))) {
                return;
            }
            tracing::warn!(
                instance = %id,
                "this instance runs on Docker's bridge network and reaches the MQTT broker as \
                 host.docker.internal ({gateway}:{port}), but nothing answers there: the broker listens on \
                 loopback only. Let it listen beyond loopback (e.g. `serve --mqtt-listen 0.0.0.0:{port}`)"
            );
        }
    }

    /// Write the instance's decrypted secrets where only its container sees them.
    async fn write_secrets(&self, id: &InstanceId, spec: &RunSpec) -> Result<PathBuf, RuntimeError> {
        let dir = self.secrets_dir.join(id.as_str());
        let text = iot2mqtt_contract::creds::format(&spec.secrets).map_err(RuntimeError::Io)?;
        let file = dir.join(format!("{id}_creds"));
        // The broker login goes in a file of its own, never in the container's environment.
        let mut login = std::collections::BTreeMap::new();
        if let Some(user) = &spec.mqtt.username {
            login.insert(iot2mqtt_contract::creds::MQTT_USERNAME.to_string(), user.clone());
        }
        if let Some(password) = &spec.mqtt.password {
            login.insert(iot2mqtt_contract::creds::MQTT_PASSWORD.to_string(), password.expose().to_string());
        }
        let login = iot2mqtt_contract::creds::format(&login).map_err(RuntimeError::Io)?;
        let login_file = dir.join(iot2mqtt_contract::creds::mqtt_file(id.as_str()));
        let key = refreshed::RefreshKey::text(&spec.secret_store.refresh_key());
        let key_file = dir.join(refreshed::key_file(id.as_str()));
        let dir_for_task = dir.clone();
        let tls = spec.mqtt.tls.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir_for_task)?;
            crate::store::restrict(&dir_for_task)?;
            write(&file, text.as_bytes(), 0o600)?;
            write(&login_file, login.as_bytes(), 0o600)?;
            write(&key_file, key.as_bytes(), 0o600)?;
            if let Some(tls) = tls {
                write_tls_files(&dir_for_task, &tls)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| RuntimeError::Io(e.to_string()))?
        .map_err(|e| RuntimeError::Io(format!("cannot write the secrets file: {e}")))?;
        Ok(dir)
    }

    /// What Docker says of the instance's container, with the faults its host reported.
    async fn observe_container(&self, instance: &InstanceId) -> Observed {
        let Some(name) = self.name_of(instance).await else { return Observed::default() };
        let Ok(inspect) = self.docker.inspect_container(&name, None::<InspectContainerOptions>).await else {
            return Observed::default();
        };
        let state = inspect.state.unwrap_or_default();
        let restarts = u64::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(0);
        let restarting = state.restarting.unwrap_or(false);
        let last_error = state.error.filter(|e| !e.is_empty()).or_else(|| {
            state.exit_code.filter(|code| *code != 0).map(|code| format!("the container exited with code {code}"))
        });
        let container = Observed {
            running: state.running.unwrap_or(false) && !restarting,
            restarts,
            last_error,
            crash_looping: restarting || (restarts >= 3 && !state.running.unwrap_or(false)),
            activity: None,
        };
        self.with_reported_faults(instance, container)
    }

    async fn name_of(&self, id: &InstanceId) -> Option<String> {
        if let Some(name) = self.names.lock().await.get(id) {
            return Some(name.clone());
        }
        let containers = self.list().await.ok()?;
        containers.into_iter().find(|c| c.instance_id.as_deref() == Some(id.as_str())).map(|c| c.name)
    }
}

impl InstanceRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(self.start_instance(spec))
    }

    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.forget_preparing(instance);
            match self.name_of(instance).await {
                Some(name) => self.act(&name, ContainerAction::Stop).await,
                None => Ok(()),
            }
        })
    }

    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.forget_preparing(instance);
            if let Some(name) = self.name_of(instance).await {
                let _ = self.act(&name, ContainerAction::Stop).await;
                self.act(&name, ContainerAction::Remove { force: true }).await?;
            }
            self.names.lock().await.remove(instance);
            let _ = tokio::fs::remove_dir_all(self.secrets_dir.join(instance.as_str())).await;
            Ok(())
        })
    }

    fn observe<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Observed> {
        Box::pin(async move {
            let mut observed = self.observe_container(instance).await;
            // An image being built: what it is at, or why it failed (the container, if any,
            // is the one from before).
            match crate::sync::lock(&self.preparing).get(instance).cloned() {
                Some(Preparing { error: Some(error), .. }) => observed.last_error = Some(error),
                Some(Preparing { activity, .. }) => observed.activity = Some(activity),
                None => {}
            }
            observed
        })
    }

    fn swap<'a>(
        &'a self,
        instance: &'a InstanceId,
        plugin: NewPlugin,
    ) -> BoxFuture<'a, Result<Option<Duration>, RuntimeError>> {
        Box::pin(self.await_swap(instance, plugin))
    }

    fn logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, Vec<LogLine>> {
        Box::pin(async move {
            let Some(name) = self.name_of(instance).await else { return Vec::new() };
            DockerRuntime::logs(self, &name, lines, false).collect().await
        })
    }

    fn follow_logs<'a>(&'a self, instance: &'a InstanceId, lines: usize) -> BoxFuture<'a, LogStream> {
        Box::pin(async move {
            match self.name_of(instance).await {
                Some(name) => Box::pin(DockerRuntime::logs(self, &name, lines, true)) as LogStream,
                None => Box::pin(futures_util::stream::empty()) as LogStream,
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Ok(containers) = self.list().await else { return };
            let stops =
                containers.iter().filter(|c| c.state == "running").map(|c| self.act(&c.id, ContainerAction::Stop));
            futures_util::future::join_all(stops).await;
        })
    }
}

/// A network's gateway: as configured, or else the first address of its subnet (Docker's
/// default, not always written out).
fn gateway(config: &bollard::models::IpamConfig) -> Option<std::net::IpAddr> {
    if let Some(gateway) = config.gateway.as_deref().and_then(|g| g.parse().ok()) {
        return Some(gateway);
    }
    let (network, _) = config.subnet.as_deref()?.split_once('/')?;
    let network: std::net::Ipv4Addr = network.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(network).checked_add(1)?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_are_read_or_derived() {
        let config = |subnet: Option<&str>, gateway: Option<&str>| bollard::models::IpamConfig {
            subnet: subnet.map(str::to_string),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        };
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(gateway(&config(Some("172.17.0.0/16"), None)), ip("172.17.0.1"));
        assert_eq!(gateway(&config(Some("172.17.0.0/16"), Some("172.17.0.254"))), ip("172.17.0.254"));
        assert_eq!(gateway(&config(Some("fd00::/64"), None)), None);
        assert_eq!(gateway(&config(None, None)), None);
    }
}
