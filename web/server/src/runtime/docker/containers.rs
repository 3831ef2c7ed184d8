//! The container API of the Docker runtime: list this installation's connector containers,
//! start, stop, restart or remove one, and read its log. It refuses containers without the
//! connector label and those of other installations.

use std::collections::HashMap;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::{DockerRuntime, INSTALL_LABEL, STOP_SECONDS, TYPE_CONNECTOR, TYPE_LABEL};
use crate::runtime::{LogLine, RuntimeError};

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
    /// How many times Docker restarted it.
    pub restarts: u64,
}

impl DockerRuntime {
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
        let mut views: Vec<ContainerView> = containers.into_iter().map(view).collect();
        for container in &mut views {
            if let Ok(inspect) = self.docker.inspect_container(&container.id, None::<InspectContainerOptions>).await {
                container.restarts = u64::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(0);
            }
        }
        Ok(views)
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
            restarts: u64::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(0),
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
        restarts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn names() {
        assert_eq!(container_name("demo", "kitchen"), "iot2mqtt_demo_kitchen");
    }
}
