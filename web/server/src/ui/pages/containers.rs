//! The containers page: the Docker runtime's containers, started, stopped, restarted and
//! removed from the browser (removal after a confirmation); in the embedded runtime, a page
//! that says there are none and why.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, encode, error_page, forged, render, t};
use crate::api::AppState;
use crate::runtime::docker::ContainerAction;
use crate::ui::i18n::fill;
use crate::ui::session::PageSession;
use crate::ui::views::Chrome;
use crate::ui::views::containers::{ContainerRow, ContainersPage};

/// What the page may be opened with: the outcome of an action.
#[derive(Debug, Deserialize)]
pub struct ContainersQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    container: String,
    #[serde(default)]
    failed: Option<String>,
}

/// `GET /containers`
pub async fn containers(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<ContainersQuery>,
) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "containers");
    let containers = match (&state.docker, state.instances.runtime_name()) {
        (Some(docker), "docker") => match docker.list().await {
            Ok(list) => {
                let mut rows: Vec<ContainerRow> = list.iter().map(ContainerRow::of).collect();
                rows.sort_by(|a, b| a.name.cmp(&b.name));
                Some(rows)
            }
            Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, chrome, e.to_string()),
        },
        _ => None,
    };
    let notice = match (query.done, query.failed) {
        (_, Some(why)) => Some((false, why)),
        (Some(action), None) => {
            Some((true, fill(&t.containers.done, &[("container", &query.container), ("action", &action)])))
        }
        (None, None) => None,
    };
    render(&ContainersPage { chrome, containers, notice })
}

/// `POST /containers/{name}/{action}`: start, stop, restart or remove one of this
/// installation's connector containers.
pub async fn container_action(
    State(state): State<AppState>,
    session: PageSession,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let t = t();
    let chrome = || Chrome::page(t, &session.csrf, "containers");
    let (what, words) = match action.as_str() {
        "start" => (ContainerAction::Start, &t.containers.start),
        "stop" => (ContainerAction::Stop, &t.containers.stop),
        "restart" => (ContainerAction::Restart, &t.containers.restart),
        "remove" => (ContainerAction::Remove { force: true }, &t.containers.remove),
        _ => return error_page(StatusCode::NOT_FOUND, chrome(), format!("no action \"{action}\"")),
    };
    let Some(docker) = &state.docker else {
        return error_page(StatusCode::CONFLICT, chrome(), t.containers.embedded.clone());
    };
    let Some(container) = docker.connector_container(&name).await else {
        return error_page(StatusCode::NOT_FOUND, chrome(), format!("no iot2mqtt container \"{name}\""));
    };
    let outcome = match docker.act(&container.id, what).await {
        Ok(()) => {
            tracing::info!(container = %container.name, ?what, "container action from the containers page");
            format!("done={}&container={}", encode(&words.to_lowercase()), encode(&container.name))
        }
        Err(e) => format!("failed={}", encode(&e.to_string())),
    };
    Redirect::to(&format!("/containers?{outcome}")).into_response()
}
