//! What a plugin instance may touch: a WASI context with no files, no environment and no
//! arguments; network access only as its [`NetGrants`] allow; stdout and stderr captured
//! into the host's log; a cap on linear memory.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// How much of a plugin's stderr is kept to explain a fault (its panic message).
const STDERR_TAIL: usize = 4096;

/// The network a plugin instance may reach. Deny by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGrants {
    rules: Vec<Rule>,
    udp: bool,
    name_lookup: bool,
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

    /// Allow name lookups (they reveal nothing a connection could not).
    pub fn with_name_lookup(mut self, enabled: bool) -> Self {
        self.name_lookup = enabled;
        self
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
            .allow_ip_name_lookup(self.name_lookup)
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

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local and multicast addresses, and the networks this machine is
/// directly connected to (whatever their range: a LAN need not use private addresses).
fn is_local(ip: IpAddr) -> bool {
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

/// A plugin's stdout and stderr: complete lines go to the host's log, the tail is kept to
/// explain a fault (a panic prints its message there before the trap).
#[derive(Debug, Clone)]
pub(crate) struct StderrTap {
    label: Arc<str>,
    buffer: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    tail: Vec<u8>,
    line: Vec<u8>,
}

impl StderrTap {
    pub(crate) fn new(label: &str) -> Self {
        Self { label: label.into(), buffer: Arc::default() }
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

/// Caps a plugin instance's linear memory and remembers when the cap was hit, so a fault that
/// follows can be explained as what it is.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, hit: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
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
