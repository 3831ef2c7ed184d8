//! The setup wizard's pages: start a connector's flow, show the step the session is on,
//! answer it, take its actions, cancel it.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, error_page, fields_of, forged, origin, render, t};
use crate::api::AppState;
use crate::ui::Submitted;
use crate::ui::session::{PageSession, encode};
use crate::ui::views::Chrome;
use crate::ui::wizard::{WizardPage, engine_input};

/// `POST /integrations/{name}/add`: start the connector's setup flow.
pub async fn add_integration(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    match state.flows.start(&state.instances, &name, None, &origin(&headers)).await {
        Ok(view) => Redirect::to(&format!("/flows/{}", encode(&view.id))).into_response(),
        Err(e) => {
            let chrome = Chrome::page(t(), &session.csrf, "integrations");
            let message = format!("{} {e}", t().integrations.setup_failed);
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// Where a finished flow sends the person: the new instance's page.
fn finished(view: &crate::flows::SessionView) -> Response {
    let instance = view.instance.as_ref();
    let id = instance.and_then(|i| i["instance_id"].as_str()).unwrap_or_default();
    let connector = instance.and_then(|i| i["connector_type"].as_str()).unwrap_or_default();
    Redirect::to(&format!("/instances/{}/{}?created=1", encode(connector), encode(id))).into_response()
}

/// The wizard's page of `view`, headed by the connector's name for people.
fn page(state: &AppState, chrome: Chrome, view: &crate::flows::SessionView, fields: &Submitted) -> Response {
    let mut page = WizardPage::build(chrome, view, fields);
    if let Ok(connector) = state.instances.catalog().get(&view.integration) {
        page.integration = connector.display_name();
        if page.title == view.integration {
            page.title.clone_from(&page.integration);
        }
    }
    render(&page)
}

/// `GET /flows/{id}`: the step the session is on.
pub async fn wizard(State(state): State<AppState>, session: PageSession, Path(id): Path<String>) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "integrations");
    match state.flows.get(&id).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(view) => page(&state, chrome, &view, &Submitted::new()),
        Err(_) => error_page(StatusCode::NOT_FOUND, chrome, t().wizard.ended.clone()),
    }
}

/// `POST /flows/{id}`: answer the step; a step with errors comes back with what was typed.
pub async fn wizard_step(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (csrf, fields) = fields_of(pairs);
    if let Some(refused) = forged(&state, &session, &csrf) {
        return refused;
    }
    let chrome = Chrome::page(t(), &session.csrf, "integrations");
    let current = match state.flows.get(&id).await {
        Ok(view) => view,
        Err(_) => return error_page(StatusCode::NOT_FOUND, chrome, t().wizard.ended.clone()),
    };
    let input = engine_input(current.step.as_ref(), &fields);
    match state.flows.step(&state.instances, &id, &input, &origin(&headers)).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(view) => {
            let has_errors = view.step.as_ref().and_then(|s| s.page()).is_some_and(|p| !p.errors.is_empty());
            if has_errors {
                page(&state, chrome, &view, &fields)
            } else {
                Redirect::to(&format!("/flows/{}", encode(&id))).into_response()
            }
        }
        Err(e) => {
            let message = e.to_string();
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// An action of a wizard step.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    flow: Option<String>,
}

/// `POST /flows/{id}/action`: go to another flow, start over, run the step again, add a device.
pub async fn wizard_action(
    State(state): State<AppState>,
    session: PageSession,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let flow = form.flow.as_deref().filter(|f| !f.is_empty());
    match state.flows.action(&state.instances, &id, &form.action, flow, &origin(&headers)).await {
        Ok(view) if view.status == "done" => finished(&view),
        Ok(_) => Redirect::to(&format!("/flows/{}", encode(&id))).into_response(),
        Err(e) => {
            let chrome = Chrome::page(t(), &session.csrf, "integrations");
            let message = e.to_string();
            error_page(crate::api::error::AppError::from(e).status(), chrome, message)
        }
    }
}

/// `POST /flows/{id}/cancel`: forget the session; back to the catalog.
pub async fn wizard_cancel(
    State(state): State<AppState>,
    session: PageSession,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let _ = state.flows.cancel(&id).await;
    Redirect::to("/integrations").into_response()
}
