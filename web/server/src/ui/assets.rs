//! The UI's static files (style sheet, script, icons), embedded in the binary and served under
//! a name that carries their content hash (`/assets/app.3f9a…css`), so a browser may keep them
//! forever and a new release is fetched at once. Nothing is loaded from anywhere else.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name in `web/server/assets/` (`app.css`).
    pub name: &'static str,
    /// The path it is served under, hash included.
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const FILES: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/app.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("../../assets/icon.svg")),
];

/// Every embedded file.
pub fn all() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, content_type, bytes)| {
                let hash = hex::encode(&Sha256::digest(bytes)[..6]);
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                Asset { name, path: format!("/assets/{stem}.{hash}.{ext}"), content_type, bytes }
            })
            .collect()
    })
}

/// The path `name` is served under (for templates).
pub fn path(name: &str) -> &'static str {
    all().iter().find(|a| a.name == name).map_or("/assets/missing", |a| a.path.as_str())
}

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    match all().iter().find(|a| a.path == wanted) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let css = path("app.css");
        assert!(css.starts_with("/assets/app.") && css.ends_with(".css"), "{css}");
        assert_eq!(css.len(), "/assets/app..css".len() + 12);
        assert_eq!(path("nothing.txt"), "/assets/missing");
    }
}
