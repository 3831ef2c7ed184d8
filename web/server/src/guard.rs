//! What every request is held to before a handler sees it.
//!
//! - **The `Host` it names.** A page of another site can make a browser send requests to this
//!   server under the site's own name (DNS rebinding), and the browser then treats the answers
//!   as that site's. Only names this server is known by are served: IP literals, `localhost`,
//!   single-label names and the names of the local network's own domains (`.local`, `.lan`,
//!   `.home.arpa`, `.internal`, `.localhost`), which no outside party can point at an address,
//!   plus those listed in `IOT2MQTT_HOSTNAMES` (a reverse proxy's public name, say).
//! - **Where a change comes from.** A state-changing request sent by a page of another origin —
//!   another port of the same machine included (Home Assistant, Node-RED) — is refused: its
//!   `Sec-Fetch-Site` says `cross-site` or `same-site`, or its `Origin` is not this server.
//!   Requests without either header are not from a browser's page (curl, scripts with a token).
//! - **The type of a body.** A change to the JSON API must say `application/json` (a plugin
//!   upload `application/wasm` or `application/octet-stream`), so a plain HTML form of another
//!   site, which can only send form encodings, never reaches a JSON handler.

use axum::http::{HeaderMap, Method, Uri, header};
use iot2mqtt_contract::ids::is_local_name;

/// The names this server answers to besides the built-in ones.
#[derive(Debug, Clone, Default)]
pub struct HostNames {
    extra: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` header names a server this is not known as.
    #[error(
        "this server is not known as {0:?}: open it by its address, or add the name to IOT2MQTT_HOSTNAMES \
         (comma-separated)"
    )]
    UnknownHost(String),
    /// A change sent by a page of another site.
    #[error("refused: the request did not come from this site ({0})")]
    CrossSite(String),
    /// A body of the wrong type.
    #[error("send the body as {expected} (Content-Type was {found:?})")]
    WrongType {
        /// What the route takes.
        expected: &'static str,
        /// What came.
        found: String,
    },
}

impl HostNames {
    /// The built-in names and those of `IOT2MQTT_HOSTNAMES` (comma-separated, any case).
    pub fn new(configured: Option<&str>) -> Self {
        let extra = configured
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        Self { extra }
    }

    /// Whether a request naming `host` (a `Host` header: a name or address, maybe a port) is
    /// for this server.
    pub fn allows(&self, host: &str) -> bool {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        is_local_name(&name) || self.extra.contains(&name)
    }
}

/// `name:port`, `[v6]:port`, `[v6]` or `name` → the name or address.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Check a request's head; `Err` says why it must not reach a handler.
pub fn check(hosts: &HostNames, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or("(not text)"));
    if let Some(host) = host
        && !hosts.allows(host)
    {
        return Err(Refusal::UnknownHost(host.to_string()));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if matches!(fetch_site, "cross-site" | "same-site") {
        return Err(Refusal::CrossSite(format!("Sec-Fetch-Site: {fetch_site}")));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        if !authority.is_some_and(|a| host.is_some_and(|h| a.eq_ignore_ascii_case(h))) {
            return Err(Refusal::CrossSite(format!("Origin: {origin}")));
        }
    }
    if uri.path().starts_with("/api/") && has_body(headers) {
        let found = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let essence = found.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let (expected, accepted): (&'static str, &[&str]) = if uri.path().ends_with("/plugin") {
            ("application/wasm", &["application/wasm", "application/octet-stream"])
        } else {
            ("application/json", &["application/json"])
        };
        if !accepted.contains(&essence.as_str()) {
            return Err(Refusal::WrongType { expected, found: found.to_string() });
        }
    }
    Ok(())
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn host_names() {
        let hosts = HostNames::new(Some("iot.example.com, Proxy.Example.NET."));
        let cases = [
            ("127.0.0.1:8765", true),
            ("[::1]:8765", true),
            ("192.168.1.20", true),
            ("localhost:8765", true),
            ("homeserver:8765", true),
            ("homeserver.local", true),
            ("pi.lan:80", true),
            ("box.home.arpa", true),
            ("iot.example.com", true),
            ("proxy.example.net:443", true),
            ("evil.example", false),
            ("127.0.0.1.evil.example", false),
            ("localhost.evil.example", false),
            ("", false),
        ];
        for (host, expected) in cases {
            assert_eq!(hosts.allows(host), expected, "{host}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn changes_from_other_sites_and_bodies_of_other_types() {
        let hosts = HostNames::default();
        let api: Uri = "/api/instances".parse().unwrap();
        let upload: Uri = "/api/instances/demo/x/plugin".parse().unwrap();
        let json = ("content-type", "application/json; charset=utf-8");
        type Case<'a> = (Method, &'a Uri, Vec<(&'static str, &'a str)>, bool);
        let cases: Vec<Case> = vec![
            (Method::GET, &api, vec![("host", "evil.example")], false),
            (Method::GET, &api, vec![("host", "pi.local"), ("sec-fetch-site", "cross-site")], true),
            (Method::POST, &api, vec![("host", "pi.local"), ("content-length", "2"), json], true),
            (Method::POST, &api, vec![("host", "pi.local"), ("sec-fetch-site", "same-site")], false),
            (Method::POST, &api, vec![("host", "pi.local"), ("sec-fetch-site", "same-origin")], true),
            (Method::POST, &api, vec![("host", "pi.local:8765"), ("origin", "http://pi.local:8123")], false),
            (Method::POST, &api, vec![("host", "pi.local:8765"), ("origin", "http://pi.local:8765")], true),
            (Method::POST, &api, vec![("host", "pi.local"), ("origin", "null")], false),
            (Method::DELETE, &api, vec![("origin", "http://evil.example")], false),
            (Method::POST, &api, vec![("content-length", "2"), ("content-type", "text/plain")], false),
            (Method::POST, &api, vec![("content-length", "2")], false),
            (Method::POST, &api, vec![("content-length", "0")], true),
            (Method::POST, &upload, vec![("content-length", "9"), ("content-type", "application/wasm")], true),
            (Method::POST, &upload, vec![("content-length", "9"), json], false),
        ];
        for (method, uri, pairs, allowed) in cases {
            let result = check(&hosts, &method, uri, &headers(&pairs));
            assert_eq!(result.is_ok(), allowed, "{method} {uri} {pairs:?}: {result:?}");
        }
    }
}
