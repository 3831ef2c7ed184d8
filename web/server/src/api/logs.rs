//! Logs over HTTP: an instance's (through the runtime) and the orchestrator's own, as JSON, as
//! a file to download, or followed as server-sent events.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use iot2mqtt_runtime::logging::ORCHESTRATOR;

use super::AppState;
use super::instances::LogsQuery;
use crate::runtime::{LOG_TAIL, LogLine, LogStream, follow_kept};

/// The most lines one answer carries.
const MOST_LINES: usize = LOG_TAIL * 50;

/// `lines` as JSON, or with `format=text` as a file named `<name>.log`.
pub fn answer(lines: Vec<LogLine>, format: Option<&str>, name: &str) -> Response {
    if format != Some("text") {
        return Json(lines).into_response();
    }
    let text: String = lines.iter().map(|l| format!("{} {:<7} {}\n", l.timestamp, l.level, l.content)).collect();
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    let safe: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.log\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `lines` as server-sent `log` events, kept alive while nothing is logged.
pub fn events(lines: LogStream) -> Response {
    let events =
        lines.map(|line| Ok::<_, Infallible>(Event::default().event("log").json_data(&line).unwrap_or_default()));
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /api/logs?lines=N[&format=text]`: the orchestrator's own last lines.
pub async fn own(State(state): State<AppState>, Query(query): Query<LogsQuery>) -> Response {
    let lines = state.logs.tail(ORCHESTRATOR, query.lines.min(MOST_LINES)).into_iter().map(LogLine::from).collect();
    answer(lines, query.format.as_deref(), "iot2mqtt")
}

/// `GET /api/logs/stream?lines=N`: the orchestrator's own log, followed.
pub async fn own_stream(State(state): State<AppState>, Query(query): Query<LogsQuery>) -> Response {
    events(follow_kept(&state.logs, ORCHESTRATOR, query.lines.min(MOST_LINES)))
}
