//! Plugins from the browser: an upload (file picker, or a file dropped on the form) or a
//! rollback on an instance's page, and a connector's page that updates all its instances.
//! Uploads are multipart forms, so they work without the page's script.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::{CsrfForm, encode, error_page, forged, render, t};
use crate::api::AppState;
use crate::instances::{InstanceError, MAX_PLUGIN_BYTES};
use crate::ui::i18n::fill;
use crate::ui::session::PageSession;
use crate::ui::views::Chrome;
use crate::ui::views::plugins::{ConnectorPage, Outcomes, switch_notice};

/// A posted plugin form: its anti-forgery token and the file.
struct Upload {
    csrf: String,
    wasm: Vec<u8>,
}

/// Read a plugin form; the error is a sentence for the person.
async fn read_upload(mut form: Multipart) -> Result<Upload, String> {
    let mut upload = Upload { csrf: String::new(), wasm: Vec::new() };
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(e.body_text()),
        };
        match field.name() {
            Some("csrf") => upload.csrf = field.text().await.map_err(|e| e.body_text())?,
            Some("plugin") => {
                let bytes = field.bytes().await.map_err(|e| e.body_text())?;
                if bytes.len() > MAX_PLUGIN_BYTES {
                    return Err(InstanceError::PluginTooLarge.to_string());
                }
                upload.wasm = bytes.to_vec();
            }
            _ => {}
        }
    }
    Ok(upload)
}

/// Back to an instance's page with `outcome` as its notice.
fn back_to_instance(connector: &str, id: &str, outcome: Result<String, String>) -> Response {
    let query = match outcome {
        Ok(text) => format!("ok={}", encode(&text)),
        Err(text) => format!("failed={}", encode(&text)),
    };
    Redirect::to(&format!("/instances/{}/{}?{query}#plugin", encode(connector), encode(id))).into_response()
}

/// `POST /instances/{connector}/{id}/plugin` (multipart: `csrf`, `plugin`)
pub async fn upload_plugin(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
    form: Multipart,
) -> Response {
    let t = t();
    let upload = match read_upload(form).await {
        Ok(upload) => upload,
        Err(why) => {
            return back_to_instance(&connector, &id, Err(fill(&t.plugin.rejected_notice, &[("reason", &why)])));
        }
    };
    if let Some(refused) = forged(&state, &session, &upload.csrf) {
        return refused;
    }
    if upload.wasm.is_empty() {
        return back_to_instance(&connector, &id, Err(t.plugin.no_file.clone()));
    }
    let outcome = match state.instances.upload_plugin(&connector, &id, upload.wasm).await {
        Ok(switch) => Ok(switch_notice(t, &switch)),
        Err(e @ InstanceError::NotFound { .. }) => {
            let chrome = Chrome::page(t, &session.csrf, "instances");
            return error_page(StatusCode::NOT_FOUND, chrome, e.to_string());
        }
        Err(e) => Err(fill(&t.plugin.rejected_notice, &[("reason", &e.to_string())])),
    };
    back_to_instance(&connector, &id, outcome)
}

/// `POST /instances/{connector}/{id}/plugin/rollback`
pub async fn rollback_plugin(
    State(state): State<AppState>,
    session: PageSession,
    Path((connector, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let t = t();
    let outcome = match state.instances.rollback_plugin(&connector, &id).await {
        Ok(switch) => Ok(switch_notice(t, &switch)),
        Err(e) => Err(fill(&t.plugin.rejected_notice, &[("reason", &e.to_string())])),
    };
    back_to_instance(&connector, &id, outcome)
}

/// `GET /integrations/{name}`
pub async fn connector(State(state): State<AppState>, session: PageSession, Path(name): Path<String>) -> Response {
    connector_page(&state, &session, &name, None).await
}

/// `POST /integrations/{name}/plugin` (multipart: `csrf`, `plugin`): update every instance.
pub async fn update_all(
    State(state): State<AppState>,
    session: PageSession,
    Path(name): Path<String>,
    form: Multipart,
) -> Response {
    let t = t();
    let chrome = || Chrome::page(t, &session.csrf, "integrations");
    let upload = match read_upload(form).await {
        Ok(upload) => upload,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, chrome(), why),
    };
    if let Some(refused) = forged(&state, &session, &upload.csrf) {
        return refused;
    }
    if upload.wasm.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, chrome(), t.plugin.no_file.clone());
    }
    match state.instances.update_all(&name, upload.wasm).await {
        Ok(update) => connector_page(&state, &session, &name, Some(&Outcomes::of_update(t, &update))).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, chrome(), e.to_string()),
    }
}

/// `POST /integrations/{name}/rebuild` (form: `csrf`): a container connector's image built
/// again and its instances recreated.
pub async fn rebuild_all(
    State(state): State<AppState>,
    session: PageSession,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let t = t();
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    match state.instances.rebuild_all(&name).await {
        Ok(rebuilt) => connector_page(&state, &session, &name, Some(&Outcomes::of_rebuild(t, &rebuilt))).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, Chrome::page(t, &session.csrf, "integrations"), e.to_string()),
    }
}

async fn connector_page(state: &AppState, session: &PageSession, name: &str, outcomes: Option<&Outcomes>) -> Response {
    let t = t();
    let chrome = Chrome::page(t, &session.csrf, "integrations");
    let connector = match state.instances.catalog().get(name) {
        Ok(connector) => connector,
        Err(e) => return error_page(StatusCode::NOT_FOUND, chrome, e.to_string()),
    };
    let all = match state.instances.list().await {
        Ok(all) => all,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, chrome, e.to_string()),
    };
    let mut instances = Vec::new();
    for view in all.into_iter().filter(|v| v.config.connector_type.as_ref() == Some(&connector.name)) {
        let id = view.config.instance_id.to_string();
        let runs = state.instances.plugin_history(name, &id).await.ok().and_then(|h| h.current);
        instances.push((view, runs));
    }
    let (rows, notice) = ConnectorPage::rows(&instances, outcomes);
    let manifest = &connector.manifest;
    render(&ConnectorPage {
        chrome,
        name: connector.name.to_string(),
        display_name: manifest.display_name.clone(),
        description: manifest.description.clone(),
        version: manifest.version.clone(),
        instances: rows,
        notice,
        has_plugin: connector.has_plugin(),
        own_image: connector.manifest.kind == crate::catalog::Kind::Container,
    })
}
