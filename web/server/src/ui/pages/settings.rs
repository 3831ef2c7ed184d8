//! The settings page: the broker in use and people's accounts on the embedded broker (created
//! with a generated password shown once, deleted after a confirmation).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, error_page, forged, render, t};
use crate::api::AppState;
use crate::mqtt_accounts::PersonAccess;
use crate::ui::session::PageSession;
use crate::ui::views::{AccountRow, Chrome, CreatedAccount, SettingsPage};

/// What the settings page may be opened with.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    deleted: Option<String>,
}

/// `GET /settings`
pub async fn settings(
    State(state): State<AppState>,
    session: PageSession,
    Query(query): Query<SettingsQuery>,
) -> Response {
    let mut page = page(&state, &session);
    page.notice = query.deleted.map(|_| t().settings.deleted.clone());
    render(&page)
}

fn page(state: &AppState, session: &PageSession) -> SettingsPage {
    let t = t();
    let settings = state.mqtt.settings();
    let accounts = state.broker_accounts.as_ref().map(|accounts| {
        accounts
            .people()
            .into_iter()
            .map(|p| AccountRow {
                name: p.name,
                access: match p.access {
                    PersonAccess::Observer => t.settings.observer.clone(),
                    PersonAccess::Full => t.settings.full.clone(),
                },
            })
            .collect()
    });
    SettingsPage {
        chrome: Chrome::page(t, &session.csrf, "settings"),
        broker: format!("{}:{}", settings.host, settings.port),
        embedded: state.embedded_broker,
        tls: settings.tls.is_some(),
        connected: state.mqtt.connected(),
        accounts,
        created: None,
        notice: None,
        error: None,
        name: String::new(),
        access: "observer".into(),
    }
}

/// The new-account form.
#[derive(Debug, Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    access: String,
}

/// `POST /settings/mqtt/accounts`: create an account. The answer is the page itself, with the
/// password, never stored by a browser cache and never put in a URL.
pub async fn add_account(
    State(state): State<AppState>,
    session: PageSession,
    Form(form): Form<AccountForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let mut page = page(&state, &session);
    let Some(accounts) = state.broker_accounts.as_ref() else {
        return error_page(StatusCode::CONFLICT, page.chrome, t().settings.accounts_external.clone());
    };
    let access = if form.access == "full" { PersonAccess::Full } else { PersonAccess::Observer };
    let name = form.name.trim().to_string();
    match accounts.add_person(&name, access) {
        Ok((account, password)) => {
            let settings = state.mqtt.settings();
            let command = format!(
                "mosquitto_sub -h {} -p {} -u {} -P '{}' -t '{}/#' -v",
                settings.host,
                settings.port,
                account.name,
                password.expose(),
                settings.base_topic
            );
            page = self::page(&state, &session);
            page.created =
                Some(CreatedAccount { name: account.name, password: password.expose().to_string(), command });
        }
        Err(e) => {
            page.error = Some(e.to_string());
            page.name = name;
            page.access = form.access;
        }
    }
    let mut response = render(&page);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /settings/mqtt/accounts/{name}/delete`
pub async fn remove_account(
    State(state): State<AppState>,
    session: PageSession,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = forged(&state, &session, &form.csrf) {
        return refused;
    }
    let chrome = Chrome::page(t(), &session.csrf, "settings");
    let Some(accounts) = state.broker_accounts.as_ref() else {
        return error_page(StatusCode::CONFLICT, chrome, t().settings.accounts_external.clone());
    };
    match accounts.remove_person(&name) {
        Ok(()) => Redirect::to("/settings?deleted=1").into_response(),
        Err(e) => {
            let status = match e {
                crate::mqtt_accounts::AccountError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error_page(status, chrome, e.to_string())
        }
    }
}
