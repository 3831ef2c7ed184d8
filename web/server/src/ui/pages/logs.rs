//! The log pages: an instance's log (its container's under Docker, the lines `serve` keeps in
//! the embedded runtime) and the orchestrator's own, both followed live over the API's
//! server-sent events, filtered and paused in the page, and downloaded as a file.

use axum::extract::{Path, State};
use axum::response::Response;
use iot2mqtt_runtime::logging::{ORCHESTRATOR, ORCHESTRATOR_LINES};

use super::{encode, error_page, render, t};
use crate::api::AppState;
use crate::runtime::{LOG_TAIL, LogLine};
use crate::ui::i18n::fill;
use crate::ui::session::PageSession;
use crate::ui::views::{Chrome, LogPage};

/// `GET /instances/{connector}/{id}/logs`
pub async fn instance_log(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "instances");
    let view = match state.instances.get(&connector, &id).await {
        Ok(view) => view,
        Err(e) => {
            let message = e.to_string();
            return error_page(crate::api::error::AppError::from(e).status(), chrome, message);
        }
    };
    let lines = state.instances.logs(&connector, &id, LOG_TAIL).await.unwrap_or_default();
    let name = view.config.friendly_name.clone().unwrap_or_else(|| id.clone());
    let api = format!("/api/instances/{}/{}/logs", encode(&connector), encode(&id));
    let intro =
        if state.instances.runtime_name() == "docker" { &t.logs.intro_container } else { &t.logs.intro_embedded };
    render(&LogPage {
        chrome,
        title: fill(&t.logs.title_instance, &[("name", &name)]),
        intro: intro.clone(),
        back: Some(format!("/instances/{}/{}", encode(&connector), encode(&id))),
        stream: format!("{api}/stream?lines={LOG_TAIL}"),
        download: format!("{api}?format=text&lines={}", LOG_TAIL * 20),
        lines,
    })
}

/// `GET /logs`: the orchestrator's own log.
pub async fn own_log(State(state): State<AppState>, session: PageSession) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "logs");
    let lines: Vec<LogLine> = state.logs.tail(ORCHESTRATOR, LOG_TAIL).into_iter().map(LogLine::from).collect();
    render(&LogPage {
        chrome,
        title: t.logs.title_own.clone(),
        intro: t.logs.intro_own.clone(),
        back: None,
        stream: format!("/api/logs/stream?lines={LOG_TAIL}"),
        download: format!("/api/logs?format=text&lines={ORCHESTRATOR_LINES}"),
        lines,
    })
}
