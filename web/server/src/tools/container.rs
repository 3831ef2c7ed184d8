//! Script tools under the Docker runtime: every call is a short-lived container of the
//! connector's tool image ([`DockerRuntime::tool_image`]: its own image with its folder at
//! `/connector`), the request on stdin, and only the network the tool asks for: none at all;
//! the host's for `local` (the LAN, broadcast and multicast discovery); Docker's bridge for
//! `internet` (out through NAT, off the LAN's broadcast domain). The file system is read-only
//! but for `/tmp`, capabilities are dropped, no new privileges can be gained, memory and
//! processes are capped, and the container is removed however the call ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use iot2mqtt_flows::schema::ToolNetwork;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use super::{Call, KILL_GRACE, Limited, Ran, Sink, Tail};
use crate::catalog::Connector;
use crate::runtime::docker::{DockerRuntime, INSTALL_LABEL, TYPE_LABEL};

/// The value of [`TYPE_LABEL`] on tool containers.
const TYPE_TOOL: &str = "tool";
/// Where the connector's folder is in a tool container.
const FOLDER: &str = "/connector";
/// A tool container's memory cap.
const MEMORY_BYTES: i64 = 256 << 20;
/// A tool container's process cap.
const MAX_PROCESSES: i64 = 256;

/// Runs script tools in containers.
pub(super) struct Containers {
    runtime: Arc<DockerRuntime>,
}

impl Containers {
    pub(super) fn new(runtime: Arc<DockerRuntime>) -> Self {
        Self { runtime }
    }

    /// Build `connector`'s tool image unless it is there; a failure is logged (and told again
    /// to the first tool that needs the image).
    pub(super) async fn prepare(&self, connector: &Connector) {
        if let Err(e) = self.runtime.tool_image(connector.name.as_str(), &connector.dir).await {
            tracing::warn!(connector = %connector.name, "cannot build the connector's tool image: {e}");
        }
    }

    /// Make `call` in a container of `connector`'s tool image. An error is why it could not be
    /// run at all.
    pub(super) async fn run(&self, connector: &Connector, call: &Call<'_>) -> Result<Ran, String> {
        let Call { program, name, network, timeout, request } = *call;
        let image = self
            .runtime
            .tool_image(connector.name.as_str(), &connector.dir)
            .await
            .map_err(|e| format!("the connector's image is not available: {e}"))?;
        let folder = connector.dir.canonicalize().map_err(|e| format!("{}: {e}", connector.dir.display()))?;
        let entry = program
            .strip_prefix(&folder)
            .map_err(|_| format!("{} is not in the connector's folder", program.display()))?;
        let entry = format!("{FOLDER}/{}", entry.display());

        let docker = self.runtime.docker().clone();
        let container = format!("iot2mqtt_tool_{}_{:08x}", connector.name, rand::thread_rng().r#gen::<u32>());
        let mut labels = HashMap::new();
        labels.insert(TYPE_LABEL.to_string(), TYPE_TOOL.to_string());
        labels.insert(INSTALL_LABEL.to_string(), self.runtime.install().to_string());
        labels.insert("iot2mqtt.connector".to_string(), connector.name.to_string());
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(vec![entry.clone()]),
            cmd: Some(Vec::new()),
            working_dir: Some(FOLDER.to_string()),
            env: Some(vec!["LANG=C.UTF-8".into(), "HOME=/tmp".into(), format!("IOT2MQTT_TOOL={name}")]),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some(
                    match network {
                        ToolNetwork::None => "none",
                        ToolNetwork::Local => "host",
                        ToolNetwork::Internet => "bridge",
                    }
                    .to_string(),
                ),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([("/tmp".to_string(), "rw,nosuid,size=64m".to_string())])),
                memory: Some(MEMORY_BYTES),
                pids_limit: Some(MAX_PROCESSES),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        docker
            .create_container(Some(CreateContainerOptionsBuilder::default().name(&container).build()), body)
            .await
            .map_err(|e| format!("cannot create a container of {image}: {e}"))?;
        let removal = Removal { docker: docker.clone(), container: Some(container.clone()) };

        let ran = drive(&docker, &container, &image, &entry, timeout, request).await;
        removal.now().await;
        ran
    }

    /// Remove tool containers of this installation that a killed `serve` left behind.
    pub(super) async fn sweep(&self) {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{TYPE_LABEL}={TYPE_TOOL}"), format!("{INSTALL_LABEL}={}", self.runtime.install())],
        );
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let docker = self.runtime.docker();
        let Ok(containers) = docker.list_containers(Some(options)).await else { return };
        for id in containers.into_iter().filter_map(|c| c.id) {
            tracing::info!(container = %id, "removing a tool container left behind");
            let _ =
                docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
        }
    }
}

/// Start the created `container` with `request` on stdin, and collect what it prints until it
/// exits or `timeout` passes.
async fn drive(
    docker: &Docker,
    container: &str,
    image: &str,
    entry: &str,
    timeout: Duration,
    request: &[u8],
) -> Result<Ran, String> {
    let attach = AttachContainerOptionsBuilder::default().stream(true).stdin(true).stdout(true).stderr(true).build();
    let AttachContainerResults { mut output, mut input } = docker
        .attach_container(container, Some(attach))
        .await
        .map_err(|e| format!("cannot attach to the tool's container: {e}"))?;
    let cannot_start = |why: &str| {
        format!(
            "the connector's image {image} cannot start {entry}: {why}. A script needs its interpreter in \
             that image: give the connector a Dockerfile that provides it"
        )
    };
    docker.start_container(container, None::<StartContainerOptions>).await.map_err(|e| cannot_start(&e.to_string()))?;

    let run = async {
        let write = async {
            // A tool that does not read its input ends early; that is its choice.
            let _ = input.write_all(request).await;
            let _ = input.shutdown().await;
        };
        let read = async {
            let (mut out, mut err) = (Limited::default(), Tail::default());
            while let Some(Ok(frame)) = output.next().await {
                match frame {
                    LogOutput::StdOut { message } => out.push(&message),
                    LogOutput::StdErr { message } => err.push(&message),
                    _ => {}
                }
            }
            (out, err)
        };
        let (_, (out, err), code) = tokio::join!(write, read, exit_code(docker, container));
        (out, err, code)
    };
    let ran = match tokio::time::timeout(timeout, run).await {
        Ok((out, err, code)) => {
            let (code, stderr) = (code?, err.into_inner());
            // Some container runtimes report a failed exec from inside the started container.
            let said = String::from_utf8_lossy(&stderr);
            if code != 0 && said.starts_with(&format!("exec {entry}:")) {
                return Err(cannot_start(said.trim()));
            }
            Ran::Exited { code: Some(code), stdout: out.into_inner(), stderr }
        }
        Err(_) => {
            terminate(docker, container).await;
            Ran::TimedOut
        }
    };
    Ok(ran)
}

/// The container's exit code, once it has exited.
async fn exit_code(docker: &Docker, container: &str) -> Result<i64, String> {
    match docker.wait_container(container, None::<WaitContainerOptions>).next().await {
        Some(Ok(exit)) => Ok(exit.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(format!("lost the tool's container: {e}")),
        None => Err("lost the tool's container".to_string()),
    }
}

/// SIGTERM to the container, SIGKILL after the grace.
async fn terminate(docker: &Docker, container: &str) {
    let kill = |signal: &str| KillContainerOptionsBuilder::default().signal(signal).build();
    let _ = docker.kill_container(container, Some(kill("SIGTERM"))).await;
    if tokio::time::timeout(KILL_GRACE, exit_code(docker, container)).await.is_err() {
        let _ = docker.kill_container(container, Some(kill("SIGKILL"))).await;
    }
}

/// Removes a tool container: now, or when dropped (the request was abandoned).
struct Removal {
    docker: Docker,
    container: Option<String>,
}

impl Removal {
    async fn now(mut self) {
        if let Some(container) = self.container.take() {
            remove(&self.docker, &container).await;
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else { return };
        let docker = self.docker.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { remove(&docker, &container).await });
        }
    }
}

async fn remove(docker: &Docker, container: &str) {
    if let Err(e) =
        docker.remove_container(container, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await
    {
        tracing::warn!(container, "cannot remove a tool container: {e}");
    }
}
