//! The web UI: server-rendered pages (askama templates in `web/server/templates/`, checked at
//! compile time, escaping every value), the words from message catalogs (`i18n`), and assets
//! embedded in the binary. Pages call the same services as the JSON API; one small script
//! (`assets/app.js`) adds live updates over the API's SSE stream and in-place form posts, and
//! every page works without it.
//!
//! Security: a strict Content-Security-Policy (nothing but this origin, no inline script), the
//! session cookie HttpOnly and SameSite=Strict, and an anti-forgery token in every form.

pub mod assets;
pub mod edit;
pub mod i18n;
mod pages;
mod session;
pub mod views;
pub mod wizard;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use pages::refused;
pub use session::{PageSession, encode};

/// A posted form: every value sent under each name, in order.
pub type Submitted = std::collections::BTreeMap<String, Vec<String>>;

use crate::api::AppState;
use crate::instances::MAX_PLUGIN_BYTES;

/// Room for a multipart form's boundaries and its anti-forgery token beside a plugin.
const UPLOAD_OVERHEAD: usize = 64 << 10;

/// The policy every page is served with: nothing from elsewhere, no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The pages and their form posts.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root))
        .route("/setup", get(pages::setup_page).post(pages::setup))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/integrations", get(pages::integrations))
        .route("/integrations/{name}", get(pages::connector))
        .route("/integrations/{name}/add", post(pages::add_integration))
        .route("/integrations/{name}/rebuild", post(pages::rebuild_all))
        .route(
            "/integrations/{name}/plugin",
            post(pages::update_all).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES + UPLOAD_OVERHEAD)),
        )
        .route("/flows/{id}", get(pages::wizard).post(pages::wizard_step))
        .route("/flows/{id}/action", post(pages::wizard_action))
        .route("/flows/{id}/cancel", post(pages::wizard_cancel))
        .route("/instances", get(pages::instances))
        .route("/devices", get(pages::devices))
        .route("/devices/{instance}/{device}/command", post(pages::device_command))
        .route("/devices/{instance}/{device}/refresh", post(pages::device_refresh))
        .route("/instances/{connector}/{id}", get(pages::instance))
        .route("/instances/{connector}/{id}/edit", get(pages::edit_instance).post(pages::save_instance))
        .route(
            "/instances/{connector}/{id}/plugin",
            post(pages::upload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES + UPLOAD_OVERHEAD)),
        )
        .route("/instances/{connector}/{id}/plugin/rollback", post(pages::rollback_plugin))
        .route("/instances/{connector}/{id}/logs", get(pages::instance_log))
        .route("/logs", get(pages::own_log))
        .route("/containers", get(pages::containers))
        .route("/containers/{name}/{action}", post(pages::container_action))
        .route("/explorer", get(pages::explorer))
        .route("/explorer/publish", post(pages::publish))
        .route("/explorer/clear/{instance}", post(pages::clear_retained))
        .route("/instances/{connector}/{id}/{action}", post(pages::instance_action))
        .route("/settings", get(pages::settings))
        .route("/settings/mqtt/accounts", post(pages::add_account))
        .route("/settings/mqtt/accounts/{name}/delete", post(pages::remove_account))
        .route("/settings/key", post(pages::change_key))
        .route("/settings/mqtt", post(pages::broker))
        .route("/settings/logout-everywhere", post(pages::logout_everywhere))
        .route("/assets/{file}", get(assets::serve))
        .route("/language/{code}", get(switch_language))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
        .layer(middleware::from_fn(language))
        .layer(middleware::from_fn(security_headers))
}

/// Render the pages of `request` in the person's language (see [`i18n::choose`]).
async fn language(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let cookie = crate::api::cookie(headers, i18n::LANGUAGE_COOKIE);
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let chosen = i18n::choose(cookie.as_deref(), accept);
    i18n::with_language(chosen, next.run(request)).await
}

/// `GET /language/{code}`: remember the language chosen with the switcher (a year) and go
/// back to the page it was chosen on (without the notice it showed, which was in the old
/// language).
async fn switch_language(Path(code): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|url| {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "ok" && k != "failed")
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            if kept.is_empty() {
                url.path().to_string()
            } else {
                let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
                format!("{}?{query}", url.path())
            }
        })
        .unwrap_or_else(|| "/".into());
    let mut response = Redirect::to(session::local_path(&back)).into_response();
    if let Some((known, _)) = i18n::languages().find(|(known, _)| *known == code)
        && let Ok(value) =
            HeaderValue::from_str(&format!("{}={known}; Path=/; Max-Age=31536000; SameSite=Lax", i18n::LANGUAGE_COOKIE))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
