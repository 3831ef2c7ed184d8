//! A small HTTP client over `wasi:http`, for devices that speak HTTP (Shelly, Tasmota, WLED)
//! and for cloud services. Blocking, JSON in and out; one request at a time, or several at once
//! with [`Client::get_all`].
//!
//! The host decides where a request may go: the instance's devices and the hosts its
//! connector's manifest declares (`"network": {"http": [...]}`). It does TLS, and refuses
//! anything else with [`HttpError::Denied`]. Redirects are followed here (at most
//! [`MAX_REDIRECTS`]), each one a new request the host checks, so a redirect out of the grant
//! is refused like any other request.
//!
//! ```no_run
//! use iot2mqtt_sdk::http::Client;
//! use iot2mqtt_sdk::json;
//!
//! # fn demo() -> Result<(), iot2mqtt_sdk::Error> {
//! let client = Client::new();
//! let status: iot2mqtt_sdk::Value = client
//!     .post("http://192.168.1.40/rpc")
//!     .json(&json!({"id": 1, "method": "Switch.Set", "params": {"id": 0, "on": true}}))
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # let _ = status; Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::clocks::monotonic_clock::subscribe_duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::poll::poll;
use wasip2::io::streams::StreamError;

use crate::Error;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// The default time a request may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes written to the host per call (`wasi:io` asks for at most 4 KiB at once).
const WRITE_CHUNK: usize = 4096;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused it: the address is not granted to this plugin, or too many requests
    /// are open at once.
    Denied(String),
    /// No complete answer in time.
    Timeout,
    /// The device or service could not be reached (refused, unreachable, TLS failed).
    Unreachable(String),
    /// It answered with an error status (see [`Response::error_for_status`]).
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the log.
        body: String,
    },
    /// The request or the answer was not what HTTP or the caller expects.
    Invalid(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(why) => write!(f, "the request was refused by the host: {why}"),
            Self::Timeout => f.write_str("no answer in time"),
            Self::Unreachable(why) => f.write_str(why),
            Self::Status { status, body } if body.is_empty() => write!(f, "HTTP status {status}"),
            Self::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for HttpError {}

/// A device or service that cannot be reached is `DEVICE_UNREACHABLE`; one that answers
/// with an error, or with something unexpected, is `COMMAND_FAILED`.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(_) | HttpError::Timeout | HttpError::Unreachable(_) => Error::unreachable(e.to_string()),
            HttpError::Status { .. } | HttpError::Invalid(_) => Error::failed(e.to_string()),
        }
    }
}

/// Makes requests. Cheap to create; holds only defaults.
#[derive(Debug, Clone)]
pub struct Client {
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with [`DEFAULT_TIMEOUT`] and no default headers.
    pub fn new() -> Self {
        Self { timeout: DEFAULT_TIMEOUT, headers: Vec::new() }
    }

    /// The time each request may take, unless the request sets its own.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A header sent with every request (an API key, say).
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A request with any method (`"GET"`, `"PATCH"`).
    pub fn request(&self, method: &str, url: &str) -> RequestBuilder {
        RequestBuilder {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: self.headers.clone(),
            body: Vec::new(),
            timeout: self.timeout,
        }
    }

    /// `GET url`
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request("GET", url)
    }

    /// `POST url`
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request("POST", url)
    }

    /// `PUT url`
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request("PUT", url)
    }

    /// `DELETE url`
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request("DELETE", url)
    }

    /// `GET` every one of `urls` at once (a few devices, a few pages of an API) and read the
    /// answers in their order, each request's own error in its place; redirects are followed
    /// afterwards, one at a time. The host limits how many requests a plugin has open at once:
    /// those past it fail with [`HttpError::Denied`].
    pub fn get_all(&self, urls: &[&str]) -> Vec<Result<Response, HttpError>> {
        let requests: Vec<RequestBuilder> = urls.iter().map(|url| self.get(url)).collect();
        let started: Vec<_> = requests.iter().map(RequestBuilder::start).collect();
        requests
            .into_iter()
            .zip(started)
            .map(|(request, started)| {
                let (url, in_flight) = started?;
                let response = in_flight.finish()?;
                request.follow(url, response)
            })
            .collect()
    }
}

/// A request being put together; [`RequestBuilder::send`] sends it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
}

impl RequestBuilder {
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer <token>`
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body, with its content type.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json")
    }

    /// A form body (`application/x-www-form-urlencoded`), as OAuth token endpoints want.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let encoded: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
        self.body = encoded.join("&").into_bytes();
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The time this request may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send it and read the whole answer, following redirects.
    pub fn send(self) -> Result<Response, HttpError> {
        let (url, in_flight) = self.start()?;
        let response = in_flight.finish()?;
        self.follow(url, response)
    }

    /// Start it without waiting for the answer (the first request of [`Client::get_all`]).
    fn start(&self) -> Result<(Url, InFlight), HttpError> {
        let url = Url::parse(&self.url)?;
        let in_flight = InFlight::start(&self.method, &url, &self.headers, &self.body, self.timeout)?;
        Ok((url, in_flight))
    }

    /// Follow the redirects of `response`, the answer to this request sent to `url`.
    fn follow(self, mut url: Url, mut response: Response) -> Result<Response, HttpError> {
        let (mut method, mut body) = (self.method, self.body);
        for _ in 0..MAX_REDIRECTS {
            if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response.header("location") else {
                return Ok(response);
            };
            url = url.join(location)?;
            if response.status == 303 || (matches!(response.status, 301 | 302) && method == "POST") {
                method = "GET".to_string();
                body.clear();
            }
            response = InFlight::start(&method, &url, &self.headers, &body, self.timeout)?.finish()?;
        }
        if matches!(response.status, 301 | 302 | 303 | 307 | 308) && response.header("location").is_some() {
            return Err(HttpError::Invalid(format!("more than {MAX_REDIRECTS} redirects")));
        }
        Ok(response)
    }
}

/// An answer, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Its headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Itself when the status is 2xx, [`HttpError::Status`] otherwise.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.is_success() {
            return Ok(self);
        }
        let mut body = String::from_utf8_lossy(&self.body).trim().to_string();
        if body.len() > 200 {
            let mut cut = 200;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        Err(HttpError::Status { status: self.status, body })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Invalid(format!("the answer is not the JSON expected: {e}")))
    }
}

/// An absolute `http` or `https` URL, split as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    authority: String,
    path: String,
}

impl Url {
    fn parse(text: &str) -> Result<Self, HttpError> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(HttpError::Invalid(format!("\"{text}\" is not an http:// or https:// URL")));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(HttpError::Invalid(format!("\"{text}\" has no usable host")));
        }
        let mut path = rest[end..].split('#').next().unwrap_or_default().to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Ok(Self { https, authority: authority.to_string(), path })
    }

    /// Where a `Location` header points, from this URL.
    fn join(&self, location: &str) -> Result<Self, HttpError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Self::parse(location)
        } else if let Some(rest) = location.strip_prefix("//") {
            Self::parse(&format!("{}://{rest}", if self.https { "https" } else { "http" }))
        } else if location.starts_with('/') {
            Ok(Self { path: location.to_string(), ..self.clone() })
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            Ok(Self { path: format!("{dir}{location}"), ..self.clone() })
        }
    }
}

/// What an OAuth 2 token endpoint needs to refresh a provider's access token; see
/// [`OAuthRefresh::refresh`].
#[derive(Debug, Clone)]
pub struct OAuthRefresh<'a> {
    /// The provider's name as the setup flow stored its tokens: the secrets are
    /// `<provider>_access_token` and `<provider>_refresh_token`.
    pub provider: &'a str,
    /// The token endpoint (`https://auth.example.com/oauth/token`); the connector's manifest
    /// must declare its host.
    pub token_url: &'a str,
    /// The connector's client id at the provider.
    pub client_id: &'a str,
    /// Its client secret, for providers that want one.
    pub client_secret: Option<&'a str>,
}

impl OAuthRefresh<'_> {
    /// Trade `refresh_token` for a new access token, store the new tokens through the host
    /// (so a restart or a hot swap starts with them), and return the access token. A
    /// refused refresh is `COMMAND_FAILED` with the provider's reason; the person then signs
    /// in again through the setup flow.
    pub fn refresh(&self, client: &Client, refresh_token: &str) -> Result<String, Error> {
        let mut form =
            vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", self.client_id)];
        if let Some(secret) = self.client_secret {
            form.push(("client_secret", secret));
        }
        let answer = client.post(self.token_url).form(&form).send()?;
        if !answer.is_success() {
            let reason = answer
                .json::<serde_json::Value>()
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
            return Err(Error::failed(format!(
                "{} refused to refresh the token ({}); sign in again",
                self.provider,
                reason.unwrap_or_else(|| format!("HTTP status {}", answer.status))
            )));
        }
        let tokens: serde_json::Value = answer.json()?;
        let access = tokens
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::failed(format!("{}'s answer has no access_token", self.provider)))?;
        crate::host::store_secret(&format!("{}_access_token", self.provider), access).map_err(Error::failed)?;
        if let Some(rotated) = tokens.get("refresh_token").and_then(|t| t.as_str()) {
            crate::host::store_secret(&format!("{}_refresh_token", self.provider), rotated).map_err(Error::failed)?;
        }
        Ok(access.to_string())
    }
}

/// A request sent, its answer not read yet; its time runs from the start.
struct InFlight {
    pending: wasip2::http::types::FutureIncomingResponse,
    timer: wasip2::io::poll::Pollable,
}

impl InFlight {
    fn start(
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Self, HttpError> {
        let invalid = |what: &str| HttpError::Invalid(format!("cannot build the request: {what}"));
        let entries: Vec<(String, Vec<u8>)> =
            headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
        let fields = Fields::from_list(&entries).map_err(|e| invalid(&format!("a header is not allowed ({e:?})")))?;
        let request = OutgoingRequest::new(fields);
        let method = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        request.set_method(&method).map_err(|()| invalid("the method"))?;
        request
            .set_scheme(Some(if url.https { &Scheme::Https } else { &Scheme::Http }))
            .map_err(|()| invalid("the scheme"))?;
        request.set_authority(Some(&url.authority)).map_err(|()| invalid("the host"))?;
        request.set_path_with_query(Some(&url.path)).map_err(|()| invalid("the path"))?;
        let outgoing = request.body().map_err(|()| invalid("the body"))?;
        let options = RequestOptions::new();
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        // The host caps these at its own limits.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let pending = outgoing_handler::handle(request, Some(options)).map_err(from_code)?;
        write_body(outgoing, body)?;
        let timer = subscribe_duration(nanos);
        Ok(Self { pending, timer })
    }

    /// Wait for the answer and read it whole.
    fn finish(self) -> Result<Response, HttpError> {
        let Self { pending, timer } = self;
        let invalid = |what: &str| HttpError::Invalid(format!("cannot read the answer: {what}"));
        let ready = pending.subscribe();
        let answer = loop {
            if let Some(answer) = pending.get() {
                break answer;
            }
            poll(&[&ready, &timer]);
            if timer.ready() && !ready.ready() {
                return Err(HttpError::Timeout);
            }
        };
        drop(ready);
        let response = answer.map_err(|()| invalid("the answer was taken twice"))?.map_err(from_code)?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| invalid("the answer's body"))?;
        let body = read_body(&incoming, &timer)?;
        drop(response);
        Ok(Response { status, headers, body })
    }
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), HttpError> {
    {
        let stream = outgoing.write().map_err(|()| HttpError::Invalid("cannot write the body".into()))?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(from_code)
}

fn read_body(incoming: &IncomingBody, timer: &wasip2::io::poll::Pollable) -> Result<Vec<u8>, HttpError> {
    let stream = incoming.stream().map_err(|()| HttpError::Invalid("cannot read the body".into()))?;
    let readable = stream.subscribe();
    let mut body = Vec::new();
    loop {
        match stream.read(64 * 1024) {
            Ok(bytes) if bytes.is_empty() => {
                poll(&[&readable, timer]);
                if timer.ready() && !readable.ready() {
                    return Err(HttpError::Timeout);
                }
            }
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => return Err(stream_error(e)),
        }
    }
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Unreachable("the connection was closed".into()),
        StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
            Some(code) => from_code(code),
            // wasmtime-wasi-http 48 gives a response body's errors no code, only their text.
            None => {
                let detail = e.to_debug_string();
                if detail.contains("body size exceeds limit") {
                    HttpError::Invalid("the answer is larger than the host accepts".into())
                } else if detail.contains("timeout") {
                    HttpError::Timeout
                } else {
                    HttpError::Unreachable(format!("the answer broke off ({detail})"))
                }
            }
        },
    }
}

fn from_code(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied("this address is not granted to the plugin".into()),
        ErrorCode::ConnectionLimitReached => HttpError::Denied("too many requests open at once".into()),
        ErrorCode::DestinationIpProhibited => {
            HttpError::Denied("the name resolves to an address that is not granted to the plugin".into())
        }
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            HttpError::Timeout
        }
        ErrorCode::ConnectionRefused => HttpError::Unreachable("the connection was refused".into()),
        ErrorCode::DestinationNotFound | ErrorCode::DnsError(_) => {
            HttpError::Unreachable("the name was not found".into())
        }
        ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            HttpError::Unreachable("the address cannot be reached".into())
        }
        ErrorCode::TlsCertificateError => {
            HttpError::Unreachable("its TLS certificate is not trusted (pin a device's own with tls_sha256)".into())
        }
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => HttpError::Unreachable("TLS failed".into()),
        ErrorCode::HttpResponseBodySize(_) => HttpError::Invalid("the answer is larger than the host accepts".into()),
        other => HttpError::Unreachable(format!("{other}")),
    }
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_join() {
        let url = Url::parse("http://192.168.1.40:8080/rpc/Shelly.GetStatus?x=1#frag").unwrap();
        assert_eq!(
            url,
            Url { https: false, authority: "192.168.1.40:8080".into(), path: "/rpc/Shelly.GetStatus?x=1".into() }
        );
        assert_eq!(Url::parse("https://api.example.com").unwrap().path, "/");
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://user@x/").is_err());
        assert_eq!(url.join("/other").unwrap().path, "/other");
        assert_eq!(url.join("next").unwrap().path, "/rpc/next");
        assert_eq!(url.join("https://b.example/").unwrap().authority, "b.example");
        assert!(url.join("//c.example/p").unwrap().authority == "c.example");
    }

    #[test]
    fn errors_map_to_contract_codes() {
        assert_eq!(Error::from(HttpError::Timeout).code(), "DEVICE_UNREACHABLE");
        assert_eq!(Error::from(HttpError::Denied("x".into())).code(), "DEVICE_UNREACHABLE");
        assert_eq!(Error::from(HttpError::Status { status: 500, body: String::new() }).code(), "COMMAND_FAILED");
        let status = Response { status: 404, headers: vec![], body: b"no such method".to_vec() }.error_for_status();
        assert_eq!(status.unwrap_err().to_string(), "HTTP status 404: no such method");
        assert_eq!(form_encode("a b&c"), "a+b%26c");
    }
}
