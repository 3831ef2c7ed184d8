//! What a plugin instance may touch: a WASI context with no files, no environment and no
//! arguments; network access only as its [`NetGrants`] allow, name lookups included (a lookup
//! is a message to the outside: a plugin free to look up any name could send data out as DNS
//! queries); stdout and stderr captured into the host's log; one memory budget for all its
//! memories and tables.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use iot2mqtt_contract::ids::is_local_name;

use crate::http::HttpHost;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, SocketError};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// How much of a plugin's stderr is kept to explain a fault (its panic message).
const STDERR_TAIL: usize = 4096;

/// The network a plugin instance may reach. Deny by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGrants {
    rules: Vec<Rule>,
    udp: bool,
    names: Names,
    /// Hosts the connector declares for HTTP (its manifest's `network.http`).
    http: Vec<HttpHost>,
    /// Certificates pinned by SHA-256, by host (lowercase), for devices with their own.
    pins: Vec<(String, [u8; 32])>,
}

/// The names a plugin may look up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Names {
    /// None.
    #[default]
    None,
    /// These (its configuration's host names), in lowercase.
    Listed(Vec<String>),
    /// Names of the local network only (see `iot2mqtt_contract::ids::is_local_name`).
    Local,
    /// Any (a tool granted the internet, which could send data anywhere anyway).
    Any,
}

impl Names {
    /// Whether `name` may be looked up. Addresses written as names need no lookup.
    pub fn permits(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Self::None => false,
            Self::Listed(names) => names.contains(&name),
            Self::Local => is_local_name(&name),
            Self::Any => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// One address, on one port or on any.
    Host { ip: IpAddr, port: Option<u16> },
    /// Loopback, private, link-local and multicast addresses: the local network.
    LocalNetworks,
    /// Anywhere.
    Anywhere,
}

impl NetGrants {
    /// No network at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// TCP (and UDP when enabled) to `ip`, on `port` or on any port when `None`.
    pub fn allow(mut self, ip: IpAddr, port: Option<u16>) -> Self {
        let rule = Rule::Host { ip, port };
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
        self
    }

    /// The local network: loopback, private, link-local and multicast addresses.
    pub fn local_networks(mut self) -> Self {
        self.rules.push(Rule::LocalNetworks);
        self
    }

    /// Any address.
    pub fn anywhere(mut self) -> Self {
        self.rules.push(Rule::Anywhere);
        self
    }

    /// Allow UDP to the granted addresses as well.
    pub fn with_udp(mut self, enabled: bool) -> Self {
        self.udp = enabled;
        self
    }

    /// Allow looking up `name` (a host name of the configuration).
    pub fn lookup(mut self, name: &str) -> Self {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match &mut self.names {
            Names::Listed(names) if !names.contains(&name) => names.push(name),
            Names::Listed(_) | Names::Local | Names::Any => {}
            Names::None => self.names = Names::Listed(vec![name]),
        }
        self
    }

    /// Allow looking up names as `names` says, replacing what was allowed.
    pub fn with_names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    /// The names it may look up.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Allow HTTP requests to `hosts` as well (a connector's declared hosts).
    pub fn with_http(mut self, hosts: Vec<HttpHost>) -> Self {
        self.http = hosts;
        self
    }

    /// The hosts declared for HTTP.
    pub fn http_hosts(&self) -> &[HttpHost] {
        &self.http
    }

    /// Trust, for TLS to `host`, exactly the certificate whose SHA-256 is `pin`.
    pub fn pin(mut self, host: &str, pin: [u8; 32]) -> Self {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.pins.retain(|(h, _)| *h != host);
        self.pins.push((host, pin));
        self
    }

    /// The certificate pinned for `host`, if any.
    pub(crate) fn pinned(&self, host: &str) -> Option<[u8; 32]> {
        self.pins.iter().find(|(h, _)| h == host).map(|(_, pin)| *pin)
    }

    /// Whether a TCP connection to `addr` is allowed.
    pub(crate) fn permits_tcp(&self, addr: SocketAddr) -> bool {
        self.matches(addr)
    }

    /// Whether anything at all is granted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the plugin may use `addr` for `use_`.
    pub fn permits(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        match use_ {
            // The implicit wildcard bind that precedes a connect or a send.
            SocketAddrUse::TcpBind => !self.is_empty() && addr.ip().is_unspecified(),
            SocketAddrUse::UdpBind => self.udp && !self.is_empty() && addr.ip().is_unspecified(),
            // Plugins are clients; they never accept connections.
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
            SocketAddrUse::TcpConnect => self.matches(addr),
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => self.udp && self.matches(addr),
        }
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.rules.iter().any(|rule| match rule {
            Rule::Host { ip: allowed, port } => canonical(*allowed) == ip && port.is_none_or(|p| p == addr.port()),
            Rule::LocalNetworks => is_local(ip),
            Rule::Anywhere => true,
        })
    }

    /// A WASI context with these grants and nothing else.
    pub(crate) fn wasi_ctx(&self, stderr: &StderrTap) -> WasiCtx {
        let grants = self.clone();
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stderr.clone())
            .stderr(stderr.clone())
            .allow_tcp(!self.is_empty())
            .allow_udp(self.udp && !self.is_empty())
            .allow_ip_name_lookup(self.names != Names::None)
            .socket_addr_check(move |addr, use_| {
                let allowed = grants.permits(addr, use_);
                if !allowed {
                    tracing::debug!(%addr, ?use_, "plugin network access denied");
                }
                Box::pin(async move { allowed })
            });
        builder.build()
    }
}

/// `wasi:sockets/ip-name-lookup` as wasmtime-wasi implements it, for the names a lane was
/// granted only; it replaces wasmtime-wasi's own in the engine's linker.
pub(crate) struct GuardedLookup<'a> {
    pub(crate) sockets: WasiSocketsCtxView<'a>,
    pub(crate) names: &'a Names,
    pub(crate) label: &'a str,
}

/// The [`HasData`] of [`GuardedLookup`].
pub(crate) struct Lookups;

impl HasData for Lookups {
    type Data<'a> = GuardedLookup<'a>;
}

impl ip_name_lookup::Host for GuardedLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if name.parse::<IpAddr>().is_err() && !self.names.permits(&name) {
            tracing::warn!(plugin = %self.label, %name, "a name lookup the plugin was not granted was refused");
            return Err(ErrorCode::PermanentResolverFailure.into());
        }
        ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name)
    }
}

impl network::Host for GuardedLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, error)
    }
}

impl network::HostNetwork for GuardedLookup<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, network)
    }
}

impl ip_name_lookup::HostResolveAddressStream for GuardedLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.sockets, stream)
    }

    fn subscribe(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<Resource<DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.sockets, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local and multicast addresses, and the networks this machine is
/// directly connected to (whatever their range: a LAN need not use private addresses).
pub(crate) fn is_local(ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_multicast(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
        }
    };
    special
        || connected_networks()
            .iter()
            .any(|(network, mask)| matches!(ip, IpAddr::V4(v4) if u32::from(v4) & mask == *network))
}

/// The IPv4 networks with a direct route (no gateway), read once from `/proc/net/route`.
fn connected_networks() -> &'static [(u32, u32)] {
    static NETWORKS: std::sync::OnceLock<Vec<(u32, u32)>> = std::sync::OnceLock::new();
    NETWORKS.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        text.lines().skip(1).filter_map(parse_route).collect()
    })
}

/// One line of `/proc/net/route` (little-endian hex) → (network, mask) for direct routes.
fn parse_route(line: &str) -> Option<(u32, u32)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok()).map(u32::swap_bytes);
    let (destination, gateway, mask) = (hex(1)?, hex(2)?, hex(7)?);
    (gateway == 0 && mask != 0).then_some((destination & mask, mask))
}

/// Lines of output a plugin may write at once, then per second (its log calls, stdout and
/// stderr together); beyond, lines are dropped and the number dropped is logged.
const LINE_BURST: f64 = 200.0;
const LINES_PER_SECOND: f64 = 50.0;

/// The output rate limit of one plugin instance (a token bucket).
#[derive(Debug, Clone)]
pub(crate) struct LineBudget(Arc<Mutex<Bucket>>);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    dropped: u64,
}

impl LineBudget {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Bucket { tokens: LINE_BURST, at: std::time::Instant::now(), dropped: 0 })))
    }

    /// Whether one more line may be written.
    pub(crate) fn admit(&self) -> Admit {
        self.admit_at(std::time::Instant::now())
    }

    fn admit_at(&self, now: std::time::Instant) -> Admit {
        let mut bucket = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.duration_since(bucket.at).as_secs_f64() * LINES_PER_SECOND;
        bucket.tokens = (bucket.tokens + refill).min(LINE_BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return if bucket.dropped == 1 { Admit::FirstDropped } else { Admit::Dropped };
        }
        bucket.tokens -= 1.0;
        Admit::Write { dropped: std::mem::take(&mut bucket.dropped) }
    }
}

/// What [`LineBudget::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Write it; `dropped` lines were dropped since the last one written.
    Write { dropped: u64 },
    /// Drop it, the first of a run: say that lines are being dropped.
    FirstDropped,
    /// Drop it.
    Dropped,
}

impl Admit {
    /// The line to log about dropping, if any.
    pub(crate) fn notice(self) -> Option<String> {
        match self {
            Self::Write { dropped: 0 } | Self::Dropped => None,
            Self::Write { dropped } => Some(format!("{dropped} lines of this plugin's output were dropped")),
            Self::FirstDropped => Some(format!(
                "this plugin writes more than {LINE_BURST} lines at once or {LINES_PER_SECOND} a second: lines are dropped"
            )),
        }
    }

    /// Whether the line is written.
    pub(crate) fn writes(self) -> bool {
        matches!(self, Self::Write { .. })
    }
}

/// A plugin's stdout and stderr: complete lines go to the host's log (within the plugin's
/// [`LineBudget`]), the tail is kept to explain a fault (a panic prints its message there
/// before the trap).
#[derive(Debug, Clone)]
pub(crate) struct StderrTap {
    label: Arc<str>,
    buffer: Arc<Mutex<Captured>>,
    pub(crate) lines: LineBudget,
}

#[derive(Debug, Default)]
struct Captured {
    tail: Vec<u8>,
    line: Vec<u8>,
}

impl StderrTap {
    pub(crate) fn new(label: &str) -> Self {
        Self { label: label.into(), buffer: Arc::default(), lines: LineBudget::new() }
    }

    /// The last bytes written, as text, and forget them.
    pub(crate) fn take_tail(&self) -> String {
        let mut captured = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let tail = std::mem::take(&mut captured.tail);
        String::from_utf8_lossy(&tail).trim().to_string()
    }

    fn write(&self, bytes: &[u8]) {
        let mut captured = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        captured.tail.extend_from_slice(bytes);
        if captured.tail.len() > STDERR_TAIL {
            let excess = captured.tail.len() - STDERR_TAIL;
            captured.tail.drain(..excess);
        }
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut captured.line);
                let admit = self.lines.admit();
                if let Some(notice) = admit.notice() {
                    tracing::warn!(target: "iot2mqtt.plugin", plugin = %self.label, "{notice}");
                }
                if !admit.writes() {
                    continue;
                }
                tracing::warn!(target: "iot2mqtt.plugin", plugin = %self.label, "{}", String::from_utf8_lossy(&line));
            } else if captured.line.len() < STDERR_TAIL {
                captured.line.push(b);
            }
        }
    }
}

impl IsTerminal for StderrTap {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTap {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTap {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Core instances one plugin instance may create (a component is several core modules).
const MAX_INSTANCES: usize = 64;
/// Linear memories one plugin instance may create.
const MAX_MEMORIES: usize = 8;
/// Tables one plugin instance may create.
const MAX_TABLES: usize = 64;
/// What one table element is charged (a function reference on the host).
const TABLE_ELEMENT_BYTES: usize = 8;

/// One memory budget for everything a plugin instance allocates inside wasmtime: all its linear
/// memories and all its tables count against the same limit, and the number of core instances,
/// memories and tables is capped. Remembers when the budget was hit, so a fault that follows can
/// be explained as what it is.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    limit: usize,
    used: usize,
    /// The growth last allowed, taken back when wasmtime reports that it failed after all.
    pending: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, used: 0, pending: 0, hit: false }
    }

    /// Charge growing from `current` to `desired` bytes, if the budget allows it.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let growth = desired.saturating_sub(current);
        let allowed = self.used.checked_add(growth).is_some_and(|total| total <= self.limit);
        if allowed {
            self.used += growth;
            self.pending = growth;
        } else {
            self.hit = true;
        }
        allowed
    }

    fn grow_failed(&mut self) {
        self.used -= std::mem::take(&mut self.pending);
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_by_default() {
        let none = NetGrants::none();
        for use_ in [SocketAddrUse::TcpBind, SocketAddrUse::TcpConnect, SocketAddrUse::UdpSend] {
            assert!(!none.permits(addr("0.0.0.0:0"), use_));
            assert!(!none.permits(addr("192.168.1.2:55443"), use_));
        }
    }

    #[test]
    fn exact_hosts() {
        let grants = NetGrants::none()
            .allow(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)), Some(55443))
            .allow(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), None);
        let cases = [
            ("192.168.1.2:55443", SocketAddrUse::TcpConnect, true),
            ("192.168.1.2:80", SocketAddrUse::TcpConnect, false),
            ("192.168.1.3:55443", SocketAddrUse::TcpConnect, false),
            ("10.0.0.9:1", SocketAddrUse::TcpConnect, true),
            ("[::ffff:192.168.1.2]:55443", SocketAddrUse::TcpConnect, true),
            ("0.0.0.0:0", SocketAddrUse::TcpBind, true),
            ("192.168.1.2:0", SocketAddrUse::TcpBind, false),
            ("0.0.0.0:8080", SocketAddrUse::TcpListen, false),
            ("192.168.1.2:55443", SocketAddrUse::UdpSend, false),
        ];
        for (a, use_, expected) in cases {
            assert_eq!(grants.permits(addr(a), use_), expected, "{a} {use_:?}");
        }
    }

    #[test]
    fn local_networks() {
        let grants = NetGrants::none().local_networks().with_udp(true);
        let cases = [
            ("239.255.255.250:1982", SocketAddrUse::UdpSend, true),
            ("192.168.7.7:1982", SocketAddrUse::UdpReceive, true),
            ("127.0.0.1:1883", SocketAddrUse::TcpConnect, true),
            ("8.8.8.8:53", SocketAddrUse::UdpSend, false),
            ("[fe80::1]:80", SocketAddrUse::TcpConnect, true),
            ("[2001:db8::1]:80", SocketAddrUse::TcpConnect, false),
        ];
        for (a, use_, expected) in cases {
            assert_eq!(grants.permits(addr(a), use_), expected, "{a} {use_:?}");
        }
    }

    #[test]
    fn name_lookups_are_granted_per_name() {
        let grants = NetGrants::none().lookup("Bulb.lan.").lookup("bridge.example.com");
        assert!(grants.names().permits("bulb.lan") && grants.names().permits("BRIDGE.example.com."));
        assert!(!grants.names().permits("c2VjcmV0.evil.example"), "anything else is refused");
        assert!(!NetGrants::none().names().permits("bulb.lan"));
        let local = NetGrants::none().with_names(Names::Local);
        assert!(local.names().permits("printer.local") && !local.names().permits("printer.example.com"));
        assert!(NetGrants::none().with_names(Names::Any).names().permits("anything.example"));
    }

    #[test]
    fn direct_routes_are_local_networks() {
        let cases = [
            ("eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0", Some((0xC000_0200, 0xFFFF_FF00))),
            ("eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0", None),
            ("garbage", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_route(line), expected, "{line}");
        }
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        use wasmtime::ResourceLimiter;
        let mut cap = MemoryCap::new(10 << 20);
        assert!(cap.memory_growing(0, 6 << 20, None).unwrap(), "a first memory");
        assert!(!cap.memory_growing(0, 6 << 20, None).unwrap(), "a second one does not fit beside it");
        assert!(cap.hit);
        assert!(cap.table_growing(0, 1000, None).unwrap());
        assert!(!cap.table_growing(1000, 1 << 20, None).unwrap(), "8 MiB of table elements do not fit");
        assert!(cap.memory_growing(6 << 20, 8 << 20, None).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("failed")).unwrap();
        assert!(cap.memory_growing(6 << 20, 8 << 20, None).unwrap(), "a failed growth is given back");
        assert!(!cap.memory_growing(8 << 20, 10 << 20, None).unwrap());
    }

    #[test]
    fn output_is_rate_limited_and_drops_are_counted() {
        let budget = LineBudget::new();
        let start = std::time::Instant::now();
        let decisions: Vec<Admit> = (0..1000).map(|_| budget.admit_at(start)).collect();
        let admitted = decisions.iter().filter(|a| a.writes()).count();
        assert!((200..=210).contains(&admitted), "a burst of 200: {admitted}");
        assert_eq!(decisions.iter().filter(|a| **a == Admit::FirstDropped).count(), 1, "one notice per run");
        let later = start + std::time::Duration::from_millis(100);
        assert!(matches!(budget.admit_at(later), Admit::Write { dropped } if dropped >= 790), "the next says how many");
    }

    #[test]
    fn stderr_keeps_the_tail() {
        let tap = StderrTap::new("t");
        tap.write(&vec![b'x'; STDERR_TAIL]);
        tap.write(b"panicked at src/lib.rs: boom\n");
        let tail = tap.take_tail();
        assert!(tail.ends_with("panicked at src/lib.rs: boom"));
        assert!(tail.len() <= STDERR_TAIL);
        assert_eq!(tap.take_tail(), "");
    }
}
