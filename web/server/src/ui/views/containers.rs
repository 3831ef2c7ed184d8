//! The containers page (Docker runtime): the installation's connector containers with their
//! state, image, status and restarts, and what can be done to them.

use askama::Template;

use super::Chrome;
use crate::runtime::docker::ContainerView;

/// One container in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// Its name.
    pub name: String,
    /// Its instance (`connector/id`), or the name when it has no label.
    pub instance: String,
    /// Its instance's page.
    pub instance_link: Option<String>,
    /// Its instance's log page.
    pub log_link: Option<String>,
    /// Docker's state (`running`, `exited`…).
    pub state: String,
    /// `ok`, `bad` or `off`: the state's dot.
    pub state_class: &'static str,
    /// Running now.
    pub running: bool,
    /// Its image.
    pub image: String,
    /// Docker's words (`Up 3 minutes`).
    pub status: String,
    /// Restarts by Docker.
    pub restarts: u64,
}

impl ContainerRow {
    /// The row of `container`.
    pub fn of(container: &ContainerView) -> Self {
        let (instance, instance_link, log_link) = match (&container.connector_type, &container.instance_id) {
            (Some(connector), Some(id)) => (
                format!("{connector}/{id}"),
                Some(format!("/instances/{connector}/{id}")),
                Some(format!("/instances/{connector}/{id}/logs")),
            ),
            _ => (container.name.clone(), None, None),
        };
        let state_class = match container.state.as_str() {
            "running" => "ok",
            "restarting" | "dead" => "bad",
            _ => "off",
        };
        Self {
            name: container.name.clone(),
            instance,
            instance_link,
            log_link,
            state: container.state.clone(),
            state_class,
            running: container.state == "running" || container.state == "restarting",
            image: container.image.clone(),
            status: container.status.clone(),
            restarts: container.restarts,
        }
    }
}

/// The containers page.
#[derive(Debug, Template)]
#[template(path = "containers.html")]
pub struct ContainersPage {
    /// The frame.
    pub chrome: Chrome,
    /// The containers; `None` in the embedded runtime.
    pub containers: Option<Vec<ContainerRow>>,
    /// What was just done.
    pub notice: Option<(bool, String)>,
}
