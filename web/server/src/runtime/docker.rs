//! One container per instance, through the Docker API (bollard). The runner image is built
//! here, `FROM scratch` around the static `iot2mqtt-host` found beside this executable.
//! Containers are named `iot2mqtt_{connector}_{id}`, labelled, restart `unless-stopped`, see
//! their instance folder and plugin folder read-only and their decrypted secrets as
//! `/run/secrets/{id}_creds` from a memory-backed folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use iot2mqtt_contract::InstanceId;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{BoxFuture, InstanceRuntime, Observed, RunSpec, RuntimeError};
use crate::catalog::Network;
use crate::store::atomic::write;

/// The label every connector container carries; container operations refuse others.
pub const TYPE_LABEL: &str = "iot2mqtt.type";
/// Its value.
pub const TYPE_CONNECTOR: &str = "connector";
/// The label naming the installation (data directory) a container belongs to, so two
/// orchestrators on one Docker engine never touch each other's containers.
pub const INSTALL_LABEL: &str = "iot2mqtt.install";
/// Seconds a container gets to stop after SIGTERM.
const STOP_SECONDS: i32 = 10;
/// The runner image's recipe, from `runner-image/`.
const RUNNER_DOCKERFILE: &str = include_str!("../../../../runner-image/Dockerfile");
/// Memory a container gets beyond its plugin's cap (the host itself).
const HOST_OVERHEAD_MB: u64 = 48;
/// The most of a connector's folder that goes into a build context.
const MAX_FOLDER_BYTES: u64 = 64 << 20;
/// The recipe of a tool image, added to the connector's folder when it is built.
const TOOL_DOCKERFILE: &str = ".iot2mqtt-tool.Dockerfile";
/// Its text: the connector's folder on top of its image.
const TOOL_DOCKERFILE_TEXT: &str = "ARG BASE\nFROM ${BASE}\nCOPY . /connector/\n";

/// A file's size and modification time: enough to tell it changed.
type FileStamp = (u64, Option<std::time::SystemTime>);

/// The Docker runtime.
pub struct DockerRuntime {
    docker: Docker,
    install: String,
    host_binary: PathBuf,
    secrets_dir: PathBuf,
    image: Mutex<Option<(Option<FileStamp>, String)>>,
    building: Mutex<()>,
    names: Mutex<HashMap<InstanceId, String>>,
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

/// A connector container, as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerView {
    /// Its id.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its image.
    pub image: String,
    /// `running`, `exited`, `restarting`…
    pub state: String,
    /// Docker's human status.
    pub status: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The connector, from its label.
    pub connector_type: Option<String>,
    /// The instance, from its label.
    pub instance_id: Option<String>,
    /// All labels.
    pub labels: HashMap<String, String>,
}

impl DockerRuntime {
    /// A runtime on `docker` for the installation `install`, building its image around
    /// `host_binary`, with decrypted secrets kept under `secrets_dir` (memory-backed where
    /// possible).
    pub fn new(docker: Docker, install: String, host_binary: PathBuf, secrets_dir: PathBuf) -> Self {
        Self {
            docker,
            install,
            host_binary,
            secrets_dir,
            image: Mutex::default(),
            building: Mutex::default(),
            names: Mutex::default(),
        }
    }

    /// The Docker client (for the container API).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The installation's tag (the value of [`INSTALL_LABEL`]).
    pub fn install(&self) -> &str {
        &self.install
    }

    /// Build the runner image unless an up-to-date one exists; its tag. The host binary is read
    /// and hashed again only when its size or modification time changed.
    pub async fn ensure_image(&self) -> Result<String, RuntimeError> {
        let mut cached = self.image.lock().await;
        let stamp = tokio::fs::metadata(&self.host_binary).await.ok().map(|m| (m.len(), m.modified().ok()));
        if let Some((seen, tag)) = cached.as_ref()
            && stamp.is_some()
            && *seen == stamp
        {
            return Ok(tag.clone());
        }
        let dockerfile = RUNNER_DOCKERFILE.as_bytes();
        let binary = tokio::fs::read(&self.host_binary).await.map_err(|e| {
            RuntimeError::Io(format!(
                "cannot read {} (build it with `cargo build --release`): {e}",
                self.host_binary.display()
            ))
        })?;
        if super::elf::is_static(&binary) != Some(true) {
            return Err(RuntimeError::Io(format!(
                "{} is not a static executable; build it with `cargo build --release` in the repository",
                self.host_binary.display()
            )));
        }
        let mut hash = Sha256::new();
        hash.update(dockerfile);
        hash.update(&binary);
        let tag = format!("iot2mqtt/runner:{}", &hex::encode(hash.finalize())[..16]);
        if self.docker.inspect_image(&tag).await.is_ok() {
            *cached = Some((stamp, tag.clone()));
            return Ok(tag);
        }
        tracing::info!(%tag, "building the runner image");
        let context = build_context(dockerfile, &binary).map_err(|e| RuntimeError::Io(e.to_string()))?;
        self.build(&tag, context, "Dockerfile", &HashMap::new(), &[("iot2mqtt.type", "runner")]).await?;
        *cached = Some((stamp, tag.clone()));
        self.prune_images(&tag, &["iot2mqtt.type=runner".to_string()]).await;
        Ok(tag)
    }

    /// The image a connector's program tools run in: the connector's own image (built from
    /// the `Dockerfile` in its folder) or, without one, the runner image; with the folder at
    /// `/connector`. Tagged by the folder's content, built when that changes.
    pub async fn tool_image(&self, connector: &str, dir: &Path) -> Result<String, RuntimeError> {
        let own_image = dir.join("Dockerfile").is_file();
        let folder = dir.to_path_buf();
        let context = tokio::task::spawn_blocking(move || {
            folder_archive(&folder, &[(TOOL_DOCKERFILE, TOOL_DOCKERFILE_TEXT.as_bytes())])
        })
        .await
        .map_err(|e| RuntimeError::Io(e.to_string()))?
        .map_err(|e| RuntimeError::Io(format!("cannot pack the folder of connector \"{connector}\": {e}")))?;
        let base = if own_image { None } else { Some(self.ensure_image().await?) };
        let mut hash = Sha256::new();
        hash.update(&context);
        hash.update(base.as_deref().unwrap_or_default());
        let hash = &hex::encode(hash.finalize())[..16];
        let tag = format!("iot2mqtt/tool:{connector}-{hash}");
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let _one_build_at_a_time = self.building.lock().await;
        if self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let base = match base {
            Some(runner) => runner,
            None => {
                let own = format!("iot2mqtt/connector:{connector}-{hash}");
                tracing::info!(tag = %own, "building the image of connector {connector}");
                let labels = [("iot2mqtt.type", "connector"), ("iot2mqtt.connector", connector)];
                self.build(&own, context.clone(), "Dockerfile", &HashMap::new(), &labels).await?;
                own
            }
        };
        tracing::info!(%tag, "building the tool image of connector {connector}");
        let args = HashMap::from([("BASE".to_string(), base)]);
        let labels = [("iot2mqtt.type", "tool"), ("iot2mqtt.connector", connector)];
        self.build(&tag, context, TOOL_DOCKERFILE, &args, &labels).await?;
        for kind in ["tool", "connector"] {
            let labels = [format!("iot2mqtt.type={kind}"), format!("iot2mqtt.connector={connector}")];
            self.prune_images(&format!("iot2mqtt/{kind}:{connector}-{hash}"), &labels).await;
        }
        Ok(tag)
    }

    /// Build `context` (a tar archive) with its `dockerfile` and `args` as `tag`.
    async fn build(
        &self,
        tag: &str,
        context: Vec<u8>,
        dockerfile: &str,
        args: &HashMap<String, String>,
        labels: &[(&str, &str)],
    ) -> Result<(), RuntimeError> {
        let labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let options = BuildImageOptionsBuilder::default()
            .t(tag)
            .dockerfile(dockerfile)
            .buildargs(args)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        let mut build = self.docker.build_image(options, None, Some(bollard::body_full(Bytes::from(context))));
        while let Some(step) = build.next().await {
            let step = step.map_err(|e| RuntimeError::Docker(format!("building {tag}: {e}")))?;
            if let Some(detail) = step.error_detail {
                return Err(RuntimeError::Docker(format!("building {tag}: {}", detail.message.unwrap_or_default())));
            }
        }
        Ok(())
    }

    /// Remove images with `labels` other than `current` that no container uses (best effort:
    /// Docker refuses to remove an image in use, and that refusal is fine).
    async fn prune_images(&self, current: &str, labels: &[String]) {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), labels.to_vec());
        let options = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
        let Ok(images) = self.docker.list_images(Some(options)).await else { return };
        // By tag: an image under the current tag too only loses the old name.
        for tag in images.into_iter().flat_map(|i| i.repo_tags).filter(|t| t != current) {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().build();
            if self.docker.remove_image(&tag, Some(options), None).await.is_ok() {
                tracing::info!(image = %tag, "removed an outdated image");
            }
        }
    }

    async fn start_instance(&self, spec: RunSpec) -> Result<(), RuntimeError> {
        let image = self.ensure_image().await?;
        let id = spec.config.instance_id.clone();
        let name = container_name(spec.connector.as_str(), id.as_str());
        let secrets = self.write_secrets(&id, &spec).await?;
        let _ = self
            .docker
            .remove_container(&name, Some(RemoveContainerOptionsBuilder::default().force(true).build()))
            .await;
        let plugin_dir = spec.plugin.parent().map(Path::to_path_buf).unwrap_or_default();
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
            "IOT2MQTT_PLUGIN=/app/plugin/connector.wasm".to_string(),
            "IOT2MQTT_CACHE_DIR=/cache".to_string(),
        ];
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
        if let Some(user) = &spec.mqtt.username {
            env.push(format!("MQTT_USERNAME={user}"));
        }
        if let Some(password) = &spec.mqtt.password {
            env.push(format!("MQTT_PASSWORD={}", password.expose()));
        }
        if let Some(mb) = spec.memory_mb {
            env.push(format!("IOT2MQTT_MEMORY_LIMIT_MB={mb}"));
        }
        let mut labels = HashMap::new();
        labels.insert(TYPE_LABEL.to_string(), TYPE_CONNECTOR.to_string());
        labels.insert("iot2mqtt.connector".to_string(), spec.connector.to_string());
        labels.insert("iot2mqtt.instance".to_string(), id.to_string());
        labels.insert(INSTALL_LABEL.to_string(), self.install.clone());
        let binds = vec![
            format!("{}:/app/instances:ro", spec.instances_dir.display()),
            format!("{}:/app/plugin:ro", plugin_dir.display()),
            format!("{}:/run/secrets:ro", secrets.display()),
            format!("{}:/cache:rw", spec.cache_dir.display()),
        ];
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
            memory: spec.memory_mb.map(|mb| i64::try_from((mb + HOST_OVERHEAD_MB) << 20).unwrap_or(i64::MAX)),
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
            if matches!(tokio::time::timeout(std::time::Duration::from_secs(2), connect).await, Ok(Ok(_))) {
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
        let dir_for_task = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir_for_task)?;
            crate::store::restrict(&dir_for_task)?;
            write(&file, text.as_bytes(), 0o600)
        })
        .await
        .map_err(|e| RuntimeError::Io(e.to_string()))?
        .map_err(|e| RuntimeError::Io(format!("cannot write the secrets file: {e}")))?;
        Ok(dir)
    }

    async fn name_of(&self, id: &InstanceId) -> Option<String> {
        if let Some(name) = self.names.lock().await.get(id) {
            return Some(name.clone());
        }
        let containers = self.list().await.ok()?;
        containers.into_iter().find(|c| c.instance_id.as_deref() == Some(id.as_str())).map(|c| c.name)
    }

    /// Every connector container of this installation.
    pub async fn list(&self) -> Result<Vec<ContainerView>, RuntimeError> {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{TYPE_LABEL}={TYPE_CONNECTOR}"), format!("{INSTALL_LABEL}={}", self.install)],
        );
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers =
            self.docker.list_containers(Some(options)).await.map_err(|e| RuntimeError::Docker(e.to_string()))?;
        Ok(containers.into_iter().map(view).collect())
    }

    /// A connector container of this installation by id or name; `None` for unknown ones,
    /// containers without the connector label, and other installations' containers.
    pub async fn connector_container(&self, id: &str) -> Option<ContainerView> {
        let inspect = self.docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
        let config = inspect.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        if labels.get(TYPE_LABEL).map(String::as_str) != Some(TYPE_CONNECTOR)
            || labels.get(INSTALL_LABEL) != Some(&self.install)
        {
            return None;
        }
        let state = inspect.state.unwrap_or_default();
        Some(ContainerView {
            id: inspect.id.unwrap_or_default(),
            name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image: config.image.unwrap_or_default(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            status: state.error.unwrap_or_default(),
            created: 0,
            connector_type: labels.get("iot2mqtt.connector").cloned(),
            instance_id: labels.get("iot2mqtt.instance").cloned(),
            labels,
        })
    }

    /// Start, stop or restart a container by id.
    pub async fn act(&self, id: &str, action: ContainerAction) -> Result<(), RuntimeError> {
        let result = match action {
            ContainerAction::Start => self.docker.start_container(id, None::<StartContainerOptions>).await,
            ContainerAction::Stop => {
                self.docker
                    .stop_container(id, Some(StopContainerOptionsBuilder::default().t(STOP_SECONDS).build()))
                    .await
            }
            ContainerAction::Restart => {
                self.docker
                    .restart_container(id, Some(RestartContainerOptionsBuilder::default().t(STOP_SECONDS).build()))
                    .await
            }
            ContainerAction::Remove { force } => {
                self.docker
                    .remove_container(id, Some(RemoveContainerOptionsBuilder::default().force(force).build()))
                    .await
            }
        };
        result.map_err(|e| RuntimeError::Docker(e.to_string()))
    }

    /// A container's log lines: the last `lines`, then new ones as they come when `follow`.
    pub fn logs(&self, id: &str, lines: usize, follow: bool) -> impl Stream<Item = LogLine> + Send + use<> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(follow)
            .tail(&lines.to_string())
            .build();
        self.docker.logs(id, Some(options)).filter_map(|item| async move {
            let output = item.ok()?;
            let text = String::from_utf8_lossy(&output.into_bytes()).trim_end().to_string();
            Some(LogLine::parse(&text))
        })
    }
}

/// What can be done to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    /// Start it.
    Start,
    /// Stop it (SIGTERM, then SIGKILL after 10 s).
    Stop,
    /// Restart it.
    Restart,
    /// Remove it.
    Remove {
        /// Also when running.
        force: bool,
    },
}

/// One log line with its level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Docker's timestamp.
    pub timestamp: String,
    /// `error`, `warning`, `info` or `debug`.
    pub level: &'static str,
    /// The line.
    pub content: String,
}

impl LogLine {
    /// Split Docker's timestamp from the line and tell the level (our hosts log
    /// `… LEVEL message`; other programs are judged by their words).
    pub fn parse(text: &str) -> Self {
        let (timestamp, content) = match text.split_once(' ') {
            Some((ts, rest)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' => (ts.to_string(), rest.to_string()),
            _ => (String::new(), text.to_string()),
        };
        let words: Vec<&str> = content.split_whitespace().take(3).collect();
        let lower = content.to_ascii_lowercase();
        let level = if words.contains(&"ERROR") || lower.contains("error") || lower.contains("panic") {
            "error"
        } else if words.contains(&"WARN") || lower.contains("warn") {
            "warning"
        } else if words.contains(&"DEBUG") || words.contains(&"TRACE") {
            "debug"
        } else {
            "info"
        };
        Self { timestamp, level, content }
    }
}

impl InstanceRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn sees_plugin_faults(&self) -> bool {
        // They happen inside the container's host; only its MQTT `error` topic tells.
        false
    }

    fn start(&self, spec: RunSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(self.start_instance(spec))
    }

    fn stop<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.name_of(instance).await {
                Some(name) => self.act(&name, ContainerAction::Stop).await,
                None => Ok(()),
            }
        })
    }

    fn remove<'a>(&'a self, instance: &'a InstanceId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
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
            Observed {
                running: state.running.unwrap_or(false) && !restarting,
                restarts,
                last_error,
                crash_looping: restarting || (restarts >= 3 && !state.running.unwrap_or(false)),
            }
        })
    }

    fn swap<'a>(&'a self, _instance: &'a InstanceId, _wasm: Vec<u8>) -> BoxFuture<'a, Result<(), RuntimeError>> {
        // The new plugin file is already in the container's plugin folder; its host watches it.
        Box::pin(async { Ok(()) })
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

/// `iot2mqtt_{connector}_{id}`
pub fn container_name(connector: &str, instance: &str) -> String {
    format!("iot2mqtt_{connector}_{instance}")
}

fn view(c: ContainerSummary) -> ContainerView {
    let labels = c.labels.unwrap_or_default();
    ContainerView {
        id: c.id.unwrap_or_default(),
        name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        status: c.status.unwrap_or_default(),
        created: c.created.unwrap_or_default(),
        connector_type: labels.get("iot2mqtt.connector").cloned(),
        instance_id: labels.get("iot2mqtt.instance").cloned(),
        labels,
    }
}

/// The build context: the Dockerfile and the host binary, as a tar archive in memory.
fn build_context(dockerfile: &[u8], binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in [("Dockerfile", dockerfile, 0o644), ("iot2mqtt-host", binary, 0o755)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes)?;
    }
    archive.into_inner()
}

/// A connector's folder as a tar archive in memory, with `extra` files after it: regular files and folders in name order with fixed times and owners, so
/// the same content gives the same bytes. Symbolic links are left out (they could point
/// outside the folder).
fn folder_archive(dir: &Path, extra: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    fn add(archive: &mut tar::Builder<Vec<u8>>, dir: &Path, name: &Path, total: &mut u64) -> std::io::Result<()> {
        let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let kind = entry.file_type()?;
            let path = name.join(entry.file_name());
            let executable = std::os::unix::fs::PermissionsExt::mode(&entry.metadata()?.permissions()) & 0o100 != 0;
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_cksum();
                archive.append_data(&mut header, &path, std::io::empty())?;
                add(archive, &entry.path(), &path, total)?;
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())?;
                *total += bytes.len() as u64;
                if *total > MAX_FOLDER_BYTES {
                    return Err(std::io::Error::other(format!("it holds more than {} MiB", MAX_FOLDER_BYTES >> 20)));
                }
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(bytes.len() as u64);
                header.set_cksum();
                archive.append_data(&mut header, &path, bytes.as_slice())?;
            }
        }
        Ok(())
    }
    let mut archive = tar::Builder::new(Vec::new());
    add(&mut archive, dir, Path::new(""), &mut 0)?;
    for (name, bytes) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        archive.append_data(&mut header, name, *bytes)?;
    }
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_archives_are_reproducible_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/tool.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.path().join("sub/tool.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let first = folder_archive(dir.path(), &[("extra", b"x")]).unwrap();
        let touched = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("Dockerfile"))
            .unwrap()
            .set_modified(touched)
            .unwrap();
        assert_eq!(first, folder_archive(dir.path(), &[("extra", b"x")]).unwrap(), "same content, same bytes");
        let mut archive = tar::Archive::new(first.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("Dockerfile".to_string(), 0o644),
                ("sub".to_string(), 0o755),
                ("sub/tool.sh".to_string(), 0o755),
                ("extra".to_string(), 0o644)
            ]
        );
    }

    #[test]
    fn log_levels() {
        let cases = [
            ("2026-11-26T18:34:15.508542000Z 2026-11-26T18:34:15Z  INFO starting instance", "info"),
            ("2026-11-26T18:34:15.508542000Z 2026-11-26T18:34:15Z ERROR cannot load", "error"),
            ("2026-11-26T18:34:15.508542000Z 2026-11-26T18:34:15Z  WARN MQTT connection lost", "warning"),
            ("2026-11-26T18:34:15.508542000Z 2026-11-26T18:34:15Z DEBUG detail", "debug"),
            ("plain line without timestamp", "info"),
        ];
        for (line, level) in cases {
            assert_eq!(LogLine::parse(line).level, level, "{line}");
        }
        assert_eq!(LogLine::parse(cases[0].0).timestamp, "2026-11-26T18:34:15.508542000Z");
    }

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

    #[test]
    fn names() {
        assert_eq!(container_name("demo", "kitchen"), "iot2mqtt_demo_kitchen");
    }
}
