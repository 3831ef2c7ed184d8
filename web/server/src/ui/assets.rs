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

/// `GET /manifest.webmanifest`: what makes the UI an installable app.
pub async fn manifest() -> Response {
    let manifest = serde_json::json!({
        "name": "iot2mqtt",
        "short_name": "iot2mqtt",
        "description": "Every device on MQTT, set up from a web page.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f4f6f8",
        "theme_color": "#0b5cad",
        "icons": [{"src": path("icon.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "any"}],
    });
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/manifest+json"))], manifest.to_string())
        .into_response()
}

/// `GET /sw.js`: the service worker. It keeps the shell (the embedded files, by their hashed
/// names) for a fast, installable app, and lets everything else through to the server: pages
/// and API answers are never cached. A new release has new names, so its worker replaces the
/// old cache.
pub async fn service_worker() -> Response {
    let files: Vec<&str> = all().iter().map(|a| a.path.as_str()).collect();
    let version = hex::encode(&Sha256::digest(files.join(" ").as_bytes())[..6]);
    let script = format!(
        r#""use strict";
const SHELL = "iot2mqtt-shell-{version}";
const FILES = {files};
self.addEventListener("install", (event) => {{
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
}});
self.addEventListener("activate", (event) => {{
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((key) => key !== SHELL).map((key) => caches.delete(key))))
    .then(() => self.clients.claim()));
}});
self.addEventListener("fetch", (event) => {{
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !FILES.includes(url.pathname)) return;
  event.respondWith(caches.match(event.request).then((kept) => kept || fetch(event.request)));
}});
"#,
        files = serde_json::to_string(&files).unwrap_or_else(|_| "[]".into()),
    );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        script,
    )
        .into_response()
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

    /// The colours of a scheme in the style sheet: `--name: #rrggbb` within the block that
    /// starts at `start`.
    fn palette(css: &str, start: &str) -> std::collections::HashMap<String, [f64; 3]> {
        let block = &css[css.find(start).expect("the scheme's block")..];
        let block = &block[..block.find('}').unwrap_or(block.len())];
        let block = block.rsplit('{').next().unwrap_or_default();
        block
            .split(';')
            .filter_map(|declaration| {
                let (name, value) = declaration.split_once(':')?;
                let hex = value.trim().strip_prefix('#')?;
                let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok().map(f64::from);
                Some((name.trim().trim_start_matches("--").to_string(), [channel(0)?, channel(2)?, channel(4)?]))
            })
            .collect()
    }

    /// WCAG 2's contrast ratio of two sRGB colours.
    fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
        let luminance = |c: [f64; 3]| {
            let linear = |v: f64| {
                let v = v / 255.0;
                if v <= 0.040_45 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
            };
            0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2])
        };
        let (l1, l2) = (luminance(a), luminance(b));
        (l1.max(l2) + 0.05) / (l1.min(l2) + 0.05)
    }

    #[test]
    fn colours_meet_wcag_aa_in_both_schemes() {
        let css = std::str::from_utf8(FILES[0].2).unwrap();
        let light = palette(css, ":root {");
        let mut dark = light.clone();
        dark.extend(palette(css, "@media (prefers-color-scheme: dark)"));
        let mut chosen = light.clone();
        chosen.extend(palette(css, ":root[data-theme=\"dark\"]"));
        assert_eq!(dark, chosen, "the dark scheme is the same whether the system or the person chose it");
        // Text at 4.5:1 on every background it is drawn on; the focus ring at 3:1 (WCAG 1.4.11).
        let text = ["text", "muted", "accent", "ok", "bad", "warn"];
        for (scheme, colours) in [("light", &light), ("dark", &dark)] {
            for background in ["bg", "surface"] {
                for foreground in text {
                    let ratio = contrast(colours[foreground], colours[background]);
                    assert!(ratio >= 4.5, "{scheme}: --{foreground} on --{background} is {ratio:.2}:1");
                }
                let ring = contrast(colours["focus"], colours[background]);
                assert!(ring >= 3.0, "{scheme}: the focus ring on --{background} is {ring:.2}:1");
            }
            let button = contrast(colours["accent-text"], colours["accent"]);
            assert!(button >= 4.5, "{scheme}: a primary button's text is {button:.2}:1");
            let danger = contrast(colours["danger-text"], colours["bad"]);
            assert!(danger >= 4.5, "{scheme}: a danger button's text is {danger:.2}:1");
        }
    }
}
