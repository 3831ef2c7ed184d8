//! Device I/O over `wasi:sockets`, for plugins that talk to devices on the network. Each
//! connection exposes a pollable, so [`crate::Connector::listen`] can wait on its devices and
//! on the host's wake signal at once (see [`crate::Wake::wait`]).
//!
//! The host grants a plugin only its devices' own addresses; anything else fails with
//! [`NetError::Denied`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use wasip2::clocks::monotonic_clock::subscribe_duration;
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;
use wasip2::sockets::udp::{IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream, UdpSocket};
use wasip2::sockets::udp_create_socket::create_udp_socket;

/// The longest line [`LineConnection`] accepts before giving up on the peer.
const MAX_LINE: usize = 64 * 1024;

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The sandbox does not grant this address.
    Denied(SocketAddr),
    /// Nothing happened in time.
    Timeout,
    /// The peer closed the connection.
    Closed,
    /// Anything else, as the system reported it.
    Io(String),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(addr) => write!(f, "network access to {addr} is not granted to this plugin"),
            Self::Timeout => f.write_str("timed out"),
            Self::Closed => f.write_str("the connection was closed"),
            Self::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for NetError {}

fn map(code: ErrorCode, addr: SocketAddr) -> NetError {
    match code {
        ErrorCode::AccessDenied => NetError::Denied(addr),
        ErrorCode::Timeout => NetError::Timeout,
        ErrorCode::ConnectionRefused => NetError::Io(format!("{addr} refused the connection")),
        ErrorCode::ConnectionReset | ErrorCode::ConnectionAborted => NetError::Closed,
        ErrorCode::RemoteUnreachable => NetError::Io(format!("{addr} is unreachable")),
        other => NetError::Io(format!("{addr}: {other:?}")),
    }
}

/// A TCP connection carrying one message per line (`\r\n` or `\n`), as many LAN device
/// protocols do.
pub struct LineConnection {
    // Streams are children of the socket and must be dropped before it: fields drop in order.
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
    peer: SocketAddr,
    buffer: Vec<u8>,
    closed: bool,
}

impl fmt::Debug for LineConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineConnection").field("peer", &self.peer).field("closed", &self.closed).finish()
    }
}

impl LineConnection {
    /// Connect to `peer`, giving up after `timeout`.
    pub fn connect(peer: SocketAddr, timeout: Duration) -> Result<Self, NetError> {
        let network = instance_network();
        let socket = create_tcp_socket(family(peer.ip())).map_err(|e| map(e, peer))?;
        socket.start_connect(&network, to_wasi(peer)).map_err(|e| map(e, peer))?;
        let ready = socket.subscribe();
        let timer = subscribe_duration(nanos(timeout));
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) => {
                    if poll(&[&ready, &timer]) == [1] {
                        return Err(NetError::Timeout);
                    }
                }
                Err(e) => return Err(map(e, peer)),
            }
        };
        drop(ready);
        Ok(Self { input, output, _socket: socket, peer, buffer: Vec::new(), closed: false })
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the peer closed the connection (or it failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Send one line (`\r\n` is appended).
    pub fn send_line(&mut self, line: &str) -> Result<(), NetError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        for chunk in bytes.chunks(4096) {
            if let Err(e) = self.output.blocking_write_and_flush(chunk) {
                self.closed = true;
                return Err(stream_error(e));
            }
        }
        Ok(())
    }

    /// The next line, waiting up to `timeout`; `None` when none came.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, NetError> {
        let timer = subscribe_duration(nanos(timeout));
        loop {
            if let Some(line) = self.take_line()? {
                return Ok(Some(line));
            }
            if self.fill()? == 0 {
                let readable = self.input.subscribe();
                if poll(&[&readable, &timer]) == [1] {
                    return Ok(None);
                }
            }
        }
    }

    /// Every complete line already received, without waiting.
    pub fn ready_lines(&mut self) -> Result<Vec<String>, NetError> {
        while self.fill()? > 0 {}
        let mut lines = Vec::new();
        while let Some(line) = self.take_line()? {
            lines.push(line);
        }
        Ok(lines)
    }

    /// A pollable that is ready when bytes arrive (or the connection closes).
    pub fn readable(&self) -> Pollable {
        self.input.subscribe()
    }

    /// Read what is available now; the number of bytes.
    fn fill(&mut self) -> Result<usize, NetError> {
        match self.input.read(8192) {
            Ok(bytes) => {
                self.buffer.extend_from_slice(&bytes);
                Ok(bytes.len())
            }
            Err(e) => {
                self.closed = true;
                Err(stream_error(e))
            }
        }
    }

    fn take_line(&mut self) -> Result<Option<String>, NetError> {
        let Some(end) = self.buffer.iter().position(|b| *b == b'\n') else {
            if self.buffer.len() > MAX_LINE {
                self.closed = true;
                return Err(NetError::Io(format!("{} sent a line longer than {MAX_LINE} bytes", self.peer)));
            }
            return Ok(None);
        };
        let raw: Vec<u8> = self.buffer.drain(..=end).collect();
        let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
        Ok(Some(line))
    }
}

/// A UDP socket for request/response exchanges such as discovery.
pub struct Datagrams {
    incoming: IncomingDatagramStream,
    outgoing: OutgoingDatagramStream,
    _socket: UdpSocket,
}

impl fmt::Debug for Datagrams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagrams").finish_non_exhaustive()
    }
}

impl Datagrams {
    /// A socket bound to an ephemeral port of every IPv4 interface.
    pub fn bind_v4() -> Result<Self, NetError> {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let network = instance_network();
        let socket = create_udp_socket(IpAddressFamily::Ipv4).map_err(|e| map(e, any))?;
        socket.start_bind(&network, to_wasi(any)).map_err(|e| map(e, any))?;
        loop {
            match socket.finish_bind() {
                Ok(()) => break,
                Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
                Err(e) => return Err(map(e, any)),
            }
        }
        let (incoming, outgoing) = socket.stream(None).map_err(|e| map(e, any))?;
        Ok(Self { incoming, outgoing, _socket: socket })
    }

    /// Send one datagram to `peer`.
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), NetError> {
        loop {
            match self.outgoing.check_send() {
                Ok(0) => self.outgoing.subscribe().block(),
                Ok(_) => break,
                Err(e) => return Err(map(e, peer)),
            }
        }
        let datagram = OutgoingDatagram { data: data.to_vec(), remote_address: Some(to_wasi(peer)) };
        self.outgoing.send(&[datagram]).map(|_| ()).map_err(|e| map(e, peer))
    }

    /// Every datagram received within `window`, with its sender.
    pub fn receive_for(&mut self, window: Duration) -> Result<Vec<(SocketAddr, Vec<u8>)>, NetError> {
        let timer = subscribe_duration(nanos(window));
        let mut received = Vec::new();
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        loop {
            let batch = self.incoming.receive(16).map_err(|e| map(e, any))?;
            if batch.is_empty() {
                let readable = self.incoming.subscribe();
                if poll(&[&readable, &timer]) == [1] {
                    return Ok(received);
                }
                continue;
            }
            received.extend(batch.into_iter().map(|d| (from_wasi(d.remote_address), d.data)));
        }
    }
}

fn stream_error(e: StreamError) -> NetError {
    match e {
        StreamError::Closed => NetError::Closed,
        StreamError::LastOperationFailed(error) => NetError::Io(error.to_debug_string()),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn family(ip: IpAddr) -> IpAddressFamily {
    match ip {
        IpAddr::V4(_) => IpAddressFamily::Ipv4,
        IpAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

fn to_wasi(addr: SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port: v4.port(), address: (a, b, c, d) })
        }
        SocketAddr::V6(v6) => {
            let s = v6.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: v6.scope_id(),
            })
        }
    }
}

fn from_wasi(addr: IpSocketAddress) -> SocketAddr {
    match addr {
        IpSocketAddress::Ipv4(v4) => {
            let (a, b, c, d) = v4.address;
            SocketAddr::from((Ipv4Addr::new(a, b, c, d), v4.port))
        }
        IpSocketAddress::Ipv6(v6) => {
            let (a, b, c, d, e, f, g, h) = v6.address;
            SocketAddr::from((Ipv6Addr::new(a, b, c, d, e, f, g, h), v6.port))
        }
    }
}

/// Resolve a host name (or parse an address) to IP addresses.
pub fn resolve(host: &str) -> Result<Vec<IpAddr>, NetError> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let network = instance_network();
    let stream = wasip2::sockets::ip_name_lookup::resolve_addresses(&network, host).map_err(|e| map(e, any))?;
    let mut out = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => out.push(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
            Ok(Some(IpAddress::Ipv6((a, b, c, d, e, f, g, h)))) => {
                out.push(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)))
            }
            Ok(None) => return Ok(out),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(map(e, any)),
        }
    }
}
