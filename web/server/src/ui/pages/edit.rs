//! Editing an instance's settings: the form, and its save through the instances service (the
//! same update the JSON API's `PUT` does).

use std::collections::{BTreeMap, BTreeSet};

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::{error_page, fields_of, forged, render, t};
use crate::api::AppState;
use crate::api::error::AppError;
use crate::instances::{InstanceError, InstanceView};
use crate::ui::Submitted;
use crate::ui::edit::{EditPage, input_of, request};
use crate::ui::session::{PageSession, encode};
use crate::ui::views::Chrome;

/// The instance and the secrets its connector declares, or the error page.
async fn load(
    state: &AppState,
    chrome: &Chrome,
    connector: &str,
    id: &str,
) -> Result<(InstanceView, BTreeSet<String>), Response> {
    let fail = |e: InstanceError| {
        let message = e.to_string();
        error_page(AppError::from(e).status(), Chrome::page(t(), &chrome.csrf, "instances"), message)
    };
    let instance = state.instances.get(connector, id).await.map_err(fail)?;
    let secret_fields = state.instances.catalog().get(connector).map(|c| c.secret_fields).unwrap_or_default();
    Ok((instance, secret_fields))
}

/// `GET /instances/{connector}/{id}/edit`
pub async fn edit_instance(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
) -> Response {
    let chrome = Chrome::page(t(), &session.csrf, "instances");
    match load(&state, &chrome, &connector, &id).await {
        Ok((instance, secret_fields)) => {
            render(&EditPage::build(chrome, &instance, &secret_fields, None, &BTreeMap::new(), None))
        }
        Err(page) => page,
    }
}

/// `POST /instances/{connector}/{id}/edit`: save and restart; refused values come back beside
/// their inputs.
pub async fn save_instance(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (csrf, submitted) = fields_of(pairs);
    if let Some(refused) = forged(&state, &session, &csrf) {
        return refused;
    }
    let chrome = Chrome::page(t(), &session.csrf, "instances");
    let (instance, secret_fields) = match load(&state, &chrome, &connector, &id).await {
        Ok(loaded) => loaded,
        Err(page) => return page,
    };
    let again = |chrome, errors: &BTreeMap<String, String>, error, submitted: &Submitted| {
        render(&EditPage::build(chrome, &instance, &secret_fields, Some(submitted), errors, error))
    };
    let update = match request(&chrome, &instance, &secret_fields, &submitted) {
        Ok(update) => update,
        Err(errors) => return again(chrome, &errors, None, &submitted),
    };
    match state.instances.update(&connector, &id, update).await {
        Ok(saved) => {
            let connector = saved.config.connector_type.as_ref().map(ToString::to_string).unwrap_or(connector);
            let to = format!("/instances/{}/{}?saved=1", encode(&connector), encode(saved.config.instance_id.as_str()));
            Redirect::to(&to).into_response()
        }
        Err(InstanceError::Invalid { field, message }) => match field.as_deref().and_then(input_of) {
            Some(input) => again(chrome, &BTreeMap::from([(input, message)]), None, &submitted),
            None => again(chrome, &BTreeMap::new(), Some(message), &submitted),
        },
        Err(e) => {
            let message = e.to_string();
            error_page(AppError::from(e).status(), chrome, message)
        }
    }
}
