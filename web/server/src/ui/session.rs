//! Who is looking at a page. A page needs a live session (the cookie); without one the person
//! is sent to the login page and, once logged in, back to where they were. Every form a page
//! posts carries the session's anti-forgery token, checked here before anything changes.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Redirect;

use crate::api::{AppState, session_token};

/// A logged-in person: their session and its anti-forgery token.
#[derive(Debug, Clone)]
pub struct PageSession {
    /// The session token (from the cookie).
    pub token: String,
    /// What forms and `fetch` calls must send back.
    pub csrf: String,
}

impl FromRequestParts<AppState> for PageSession {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let uri = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        session_of(state, &parts.headers, uri.path_and_query().map_or("/", |p| p.as_str()))
    }
}

/// The session of a request for `page`, or the redirect to the login page (and back to `page`
/// after it).
pub fn session_of(state: &AppState, headers: &HeaderMap, page: &str) -> Result<PageSession, Redirect> {
    match session_token(headers) {
        Some(token) if state.auth.verify(&token) => {
            let csrf = state.auth.csrf_token(&token);
            Ok(PageSession { token, csrf })
        }
        found => {
            let expired = if found.is_some() { "&expired=1" } else { "" };
            Err(Redirect::to(&format!("/login?next={}{expired}", encode(page))))
        }
    }
}

/// Whether `next` is a path of this site (so a login link cannot send a person elsewhere).
pub fn local_path(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local { next } else { "/" }
}

/// Percent-encode a path for a query value.
pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for (next, expected) in [
            ("/instances", "/instances"),
            ("/instances?x=1", "/instances?x=1"),
            ("//evil.example/", "/"),
            ("https://evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("", "/"),
        ] {
            assert_eq!(local_path(next), expected, "{next}");
        }
    }
}
