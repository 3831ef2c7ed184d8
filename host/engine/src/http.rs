//! Outgoing HTTP for plugins (`wasi:http/outgoing-handler`), as far as the lane was granted.
//!
//! A request may go to an address the lane's [`NetGrants`] allow for TCP (its devices), to a
//! name among the lane's device host names, or to a host its connector's manifest declares
//! (`"network": {"http": [...]}`, see [`HttpHost`]). Everything else is refused before any
//! connection is made, logged with the reason, and answered with `HTTP-request-denied`, which
//! the plugin can report. A declared public name that resolves to a local address is refused
//! too: a manifest's cloud host must not become a way into the house's network.
//!
//! The host does TLS (system roots, or a device's pinned certificate) and sets the limits:
//! time, response size, and concurrent requests per lane. Redirects are not followed here: a
//! plugin that follows one makes a new request, checked like the first.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use iot2mqtt_contract::ids::is_local_name;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::sandbox::{NetGrants, is_local};
use crate::tls;

/// Limits on one lane's outgoing HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The longest a request may take, from connecting to the last byte of the response.
    pub timeout: Duration,
    /// The largest response body accepted; a longer one ends in an error.
    pub max_response: u64,
    /// Requests one lane may have open at once; one more is refused.
    pub concurrent: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), max_response: 4 << 20, concurrent: 4 }
    }
}

/// A host a connector's manifest declares for HTTP: `api.example.com`, `*.example.net` (any
/// name under it, not itself) or either with a port (`api.example.com:8443`; without one,
/// any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHost {
    /// Lowercase; starts with `*.` for a wildcard.
    name: String,
    port: Option<u16>,
}

impl HttpHost {
    /// Parse a manifest entry; the error names what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        if text.contains(['/', '@', '?']) {
            return Err(format!("\"{text}\" is not a host name: write the host alone, without scheme, user or path"));
        }
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p != 0);
                (
                    name.to_string(),
                    Some(port.ok_or_else(|| format!("\"{text}\": the port is not a number from 1 to 65535"))?),
                )
            }
            None => (text.clone(), None),
        };
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        };
        if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
            return Err(format!(
                "\"{text}\" is not a host name (letters, digits, '-' and '.', optionally starting with \"*.\")"
            ));
        }
        if name.starts_with("*.") && !bare.contains('.') {
            return Err(format!("\"{text}\": a wildcard must name a domain with at least two labels"));
        }
        Ok(Self { name, port })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let name_ok = match self.name.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host[..host.len() - domain.len()].ends_with('.')
            }
            None => host == self.name,
        };
        name_ok && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for HttpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Where a request may connect, once admitted.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// These addresses only (an address literal, or a device name's granted addresses).
    Granted,
    /// A declared name: any of its addresses that is not on the local network, unless the
    /// declaration itself names a local host.
    Declared { local_ok: bool },
}

/// Whether `grants` let a request reach `host`:`port`, and how; the error is the reason.
fn admit(grants: &NetGrants, host: &str, port: u16) -> Result<Route, String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return if grants.permits_tcp(SocketAddr::new(ip, port)) {
            Ok(Route::Granted)
        } else {
            Err(format!("{host}:{port} is not one of this instance's devices nor declared by its connector"))
        };
    }
    if grants.http_hosts().iter().any(|h| h.matches(&host, port)) {
        return Ok(Route::Declared { local_ok: is_local_name(&host) });
    }
    if grants.names().permits(&host) {
        return Ok(Route::Granted);
    }
    Err(format!("{host}:{port} is not one of this instance's devices nor declared by the connector's manifest"))
}

/// The `wasi:http` hooks of one lane.
pub(crate) struct HttpHooks {
    label: Arc<str>,
    grants: Arc<NetGrants>,
    limits: HttpLimits,
    open: Arc<Semaphore>,
}

impl HttpHooks {
    pub(crate) fn new(label: &str, grants: &NetGrants, limits: HttpLimits) -> Self {
        Self {
            label: label.into(),
            grants: Arc::new(grants.clone()),
            limits,
            open: Arc::new(Semaphore::new(limits.concurrent.max(1))),
        }
    }
}

type SendFuture = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>>
        + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let label = Arc::clone(&self.label);
        let grants = Arc::clone(&self.grants);
        let limits = self.limits;
        let open = Arc::clone(&self.open);
        Box::new(async move {
            let target = Target::of(&request)?;
            let route = admit(&grants, &target.host, target.port).inspect_err(|reason| {
                tracing::warn!(plugin = %label, "an HTTP request was refused: {reason}");
            });
            let route = route.map_err(|_| Error::HttpRequestDenied)?;
            let Ok(permit) = open.try_acquire_owned() else {
                tracing::warn!(plugin = %label, limit = limits.concurrent, "an HTTP request was refused: too many requests open at once");
                return Err(Error::ConnectionLimitReached);
            };
            let deadline = tokio::time::Instant::now() + limits.timeout;
            let cap = |asked: Option<Duration>| asked.map_or(limits.timeout, |d| d.min(limits.timeout));
            let options = options.unwrap_or_default();
            let connect = async {
                let stream = connect(&grants, &target, &route, &label).await?;
                let io: Box<dyn Io> = match target.tls {
                    false => Box::new(stream),
                    true => Box::new(handshake(&grants, &target, stream).await?),
                };
                hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(Error::from)
            };
            let (mut sender, conn) = tokio::time::timeout(cap(options.connect_timeout), connect)
                .await
                .map_err(|_| Error::ConnectionTimeout)??;
            let conn = tokio::spawn(conn);
            let request = target.origin_form(request)?;
            // The first byte within its own time, and the whole request within the deadline.
            let first_byte = tokio::time::timeout(cap(options.first_byte_timeout), sender.send_request(request));
            let response = tokio::time::timeout_at(deadline, first_byte)
                .await
                .map_err(|_| Error::HttpResponseTimeout)?
                .map_err(|_| Error::ConnectionReadTimeout)??;
            let (parts, incoming) = response.into_parts();
            let body = Limited {
                inner: incoming,
                left: limits.max_response,
                idle: cap(options.between_bytes_timeout),
                idle_timer: Box::pin(tokio::time::sleep(cap(options.between_bytes_timeout))),
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                _permit: permit,
            };
            let io = async move {
                match conn.await {
                    Ok(result) => result.map_err(Error::from),
                    Err(e) => Err(Error::InternalError(Some(e.to_string()))),
                }
            };
            Ok((
                http::Response::from_parts(parts, body.boxed_unsync()),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Where a request goes.
struct Target {
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    fn of(request: &http::Request<WasiBody>) -> Result<Self, Error> {
        let uri = request.uri();
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(Error::HttpProtocolError),
        };
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }

    /// The request as it goes on the wire to an origin server: path and query only.
    fn origin_form(&self, mut request: http::Request<WasiBody>) -> Result<http::Request<WasiBody>, Error> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        *request.uri_mut() =
            http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
        Ok(request)
    }
}

/// Connect to the first address of `target` that `route` allows.
async fn connect(grants: &NetGrants, target: &Target, route: &Route, label: &str) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| Error::DnsError { rcode: Some(e.to_string()), info_code: None })?
            .collect(),
    };
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|addr| match route {
            Route::Granted => grants.permits_tcp(*addr),
            Route::Declared { local_ok } => *local_ok || !is_local(addr.ip()),
        })
        .collect();
    if allowed.is_empty() {
        tracing::warn!(plugin = %label, host = %target.host, ?addrs, "an HTTP request was refused: the name resolves to addresses that are not granted");
        return Err(if addrs.is_empty() { Error::DestinationNotFound } else { Error::DestinationIpProhibited });
    }
    let mut last = None;
    for addr in allowed {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        Some(e) => Error::Connect(e),
        None => Error::DestinationUnavailable,
    })
}

/// TLS over `stream`: the device's pinned certificate when it has one, system roots otherwise.
async fn handshake(
    grants: &NetGrants,
    target: &Target,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = match target.host.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(target.host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    let config = match grants.pinned(&target.host) {
        Some(pin) => tls::pinned(pin),
        None => tls::system(),
    }
    .map_err(|e| Error::InternalError(Some(e)))?;
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map_err(|e| {
        if e.get_ref().is_some_and(|inner| inner.to_string().contains("certificate")) {
            Error::TlsCertificateError
        } else {
            Error::Tls(e)
        }
    })
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A response body within the lane's limits: its size, the time between two chunks, and the
/// request's overall deadline. It holds the request's place among the lane's open requests
/// until it is read to the end or dropped.
struct Limited {
    inner: hyper::body::Incoming,
    left: u64,
    idle: Duration,
    idle_timer: Pin<Box<tokio::time::Sleep>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Body for Limited {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.left {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(None))));
                    }
                    self.left -= len;
                }
                let next = tokio::time::Instant::now() + self.idle;
                self.idle_timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle_timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Names;

    #[test]
    fn declared_hosts_parse_and_match() {
        let exact = HttpHost::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com", 443));
        assert!(exact.matches("api.example.com", 80));
        assert!(!exact.matches("x.api.example.com", 443));
        let wild = HttpHost::parse("*.example.net:443").unwrap();
        assert!(wild.matches("eu.example.net", 443));
        assert!(wild.matches("a.b.example.net", 443));
        assert!(!wild.matches("example.net", 443));
        assert!(!wild.matches("badexample.net", 443));
        assert!(!wild.matches("eu.example.net", 80));
        for bad in ["", "*.com", "exa mple.com", "a.com:0", "a.com:x", "http://a.com", "*"] {
            assert!(HttpHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_granted_hosts_are_admitted() {
        let grants = NetGrants::none()
            .allow("192.168.1.20".parse().unwrap(), Some(80))
            .lookup("lamp.local")
            .with_http(vec![HttpHost::parse("api.example.com").unwrap(), HttpHost::parse("hub.local").unwrap()]);
        assert_eq!(admit(&grants, "192.168.1.20", 80), Ok(Route::Granted));
        assert!(admit(&grants, "192.168.1.20", 8080).is_err());
        assert!(admit(&grants, "192.168.1.21", 80).is_err());
        assert_eq!(admit(&grants, "lamp.local", 80), Ok(Route::Granted));
        assert_eq!(admit(&grants, "API.example.com.", 443), Ok(Route::Declared { local_ok: false }));
        assert_eq!(admit(&grants, "hub.local", 443), Ok(Route::Declared { local_ok: true }));
        let reason = admit(&grants, "evil.example.org", 443).unwrap_err();
        assert!(reason.contains("evil.example.org:443"), "{reason}");
        assert!(admit(&NetGrants::none(), "127.0.0.1", 80).is_err());
        assert!(admit(&NetGrants::none().with_names(Names::Any).anywhere(), "example.org", 443).is_ok());
    }
}
