// Longer than 500 lines because its unit tests sit beside the state machine they test.
//! A client session: connects with a last will, subscribes after every (re)connect, sends the
//! outbox under a window of unacknowledged messages, answers and sends pings, and reconnects
//! with backoff for as long as it runs. One task owns the connection; it never waits on the
//! code that consumes its events except through a bounded channel.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::QoS;
use crate::codec::{CodecError, Connect, Packet, Publish, encode_publish};
use crate::outbox::{Message, Outbox};
use crate::tls::{self, TlsOptions};

/// Messages sent but not acknowledged, at most.
const MAX_INFLIGHT: usize = 1024;
/// The first reconnect delay; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for acknowledgements.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// Publications in flight from which the session reads acknowledgements in batches: after a
/// read that brought nothing else, the next waits [`ACK_BATCH`] (see `serve_connected`).
const STREAMING: usize = 32;
/// See [`STREAMING`].
const ACK_BATCH: Duration = Duration::from_millis(1);

/// The last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
}

/// How to connect.
#[derive(Clone)]
pub struct ClientOptions {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id.
    pub client_id: String,
    /// User name; credentials are sent when it is set.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Keepalive.
    pub keepalive: Duration,
    /// The last will.
    pub will: Option<Will>,
    /// The largest packet accepted from the broker.
    pub max_packet: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// TLS, when the broker is reached over it.
    pub tls: Option<TlsOptions>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("keepalive", &self.keepalive)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Connected and subscribed (after every reconnect).
    Connected,
    /// The connection was lost; the session reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A message on a subscribed topic.
    Message(Publish),
    /// A message larger than the client accepts arrived on `topic`; it was acknowledged and
    /// skipped, and the connection goes on.
    Skipped {
        /// Its topic.
        topic: String,
        /// Its size in bytes.
        size: usize,
    },
}

/// A client session. Build it, then `run` it in its own task.
#[derive(Debug)]
pub struct Session {
    options: ClientOptions,
    subscriptions: Vec<(String, QoS)>,
    outbox: Outbox,
    events: mpsc::Sender<ClientEvent>,
    birth: Option<watch::Receiver<Option<Message>>>,
}

enum End {
    Shutdown,
    Lost(String),
}

struct Inflight {
    pkid: u16,
    message: Message,
    sent: Instant,
    released: bool,
}

impl Session {
    /// A session that subscribes to `subscriptions`, sends what `outbox` holds, and reports to
    /// `events`.
    pub fn new(
        options: ClientOptions,
        subscriptions: Vec<(String, QoS)>,
        outbox: Outbox,
        events: mpsc::Sender<ClientEvent>,
    ) -> Self {
        Self { options, subscriptions, outbox, events, birth: None }
    }

    /// Connect once with `options` (TCP, TLS when asked, CONNECT and the broker's CONNACK) and
    /// disconnect cleanly: whether a broker takes these settings, and if not why, in the same
    /// words the log would use.
    pub async fn probe(options: ClientOptions) -> Result<(), String> {
        let (events, _) = mpsc::channel(1);
        let session = Self::new(ClientOptions { will: None, ..options }, Vec::new(), Outbox::new(1), events);
        let mut link = session.connect().await?;
        let mut out = BytesMut::new();
        Packet::Disconnect.encode(&mut out);
        let sent = match &mut link {
            Link::Tcp(stream) => stream.write_all(&out).await,
            Link::Tls(stream) => stream.write_all(&out).await,
        };
        sent.map_err(|e| tls::explain(&e))
    }

    /// A message to send first after every connect, once it is set (an instance's `online`).
    pub fn with_birth(mut self, birth: watch::Receiver<Option<Message>>) -> Self {
        self.birth = Some(birth);
        self
    }

    /// Run until `shutdown` completes; then send what the outbox holds (waiting up to a few
    /// seconds for acknowledgements) and disconnect cleanly, so the last will is not sent.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut delay = MIN_BACKOFF;
        let mut failures = 0u32;
        loop {
            let connected = tokio::select! {
                biased;
                // Stop while connecting: nothing was sent, nothing to flush.
                () = &mut shutdown => return,
                connected = self.connect() => connected,
            };
            match connected {
                Ok(stream) => {
                    delay = MIN_BACKOFF;
                    failures = 0;
                    match self.serve(stream, &mut shutdown).await {
                        End::Shutdown => return,
                        End::Lost(reason) => {
                            tracing::warn!(client = %self.options.client_id, "MQTT connection lost: {reason}");
                            let _ = self.events.send(ClientEvent::Disconnected { reason }).await;
                        }
                    }
                }
                Err(reason) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(client = %self.options.client_id, attempt = failures, "cannot connect to the MQTT broker {}:{}: {reason}", self.options.host, self.options.port);
                    }
                }
            }
            tokio::select! {
                biased;
                // Stop while waiting to reconnect.
                () = &mut shutdown => return,
                // Wait before the next attempt.
                () = sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> Result<Link, String> {
        let o = &self.options;
        let attempt = async {
            let stream = TcpStream::connect((o.host.as_str(), o.port)).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut link = match &o.tls {
                None => Link::Tcp(stream),
                Some(options) => Link::Tls(Box::new(tls::handshake(options, &o.host, stream).await?)),
            };
            match &mut link {
                Link::Tcp(stream) => self.login(stream).await?,
                Link::Tls(stream) => self.login(stream).await?,
            }
            Ok(link)
        };
        timeout(o.connect_timeout, attempt).await.unwrap_or_else(|_| Err("timed out".to_string()))
    }

    /// Send CONNECT and wait for the broker's CONNACK.
    async fn login(&self, stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> Result<(), String> {
        let o = &self.options;
        let connect = Packet::Connect(Connect {
            client_id: o.client_id.clone(),
            keepalive: u16::try_from(o.keepalive.as_secs()).unwrap_or(u16::MAX),
            clean_session: true,
            will: o.will.as_ref().map(|w| Publish {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                dup: false,
                pkid: 0,
            }),
            username: o.username.clone(),
            password: o.username.as_ref().and(o.password.as_ref()).map(|p| Bytes::from(p.clone())),
        });
        let mut out = BytesMut::new();
        connect.encode(&mut out);
        stream.write_all(&out).await.map_err(|e| tls::explain(&e))?;
        stream.flush().await.map_err(|e| tls::explain(&e))?;
        let mut buf = BytesMut::with_capacity(64);
        loop {
            if stream.read_buf(&mut buf).await.map_err(|e| tls::explain(&e))? == 0 {
                return Err("the broker closed the connection".to_string());
            }
            match Packet::decode(&mut buf, 64).map_err(|e| e.to_string())? {
                Some(Packet::ConnAck { code: 0, .. }) => return Ok(()),
                Some(Packet::ConnAck { code, .. }) => return Err(refusal(code)),
                Some(other) => return Err(format!("expected CONNACK, got {other:?}")),
                None => {}
            }
        }
    }

    async fn serve(&self, link: Link, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> End {
        let socket = link.socket();
        let (reader, writer) = link.split();
        let mut conn = Connection {
            socket,
            quiet: false,
            reader,
            writer,
            rbuf: BytesMut::with_capacity(512),
            wbuf: BytesMut::new(),
            inflight: VecDeque::new(),
            in_use: vec![0; 1024],
            received_qos2: HashSet::new(),
            next_pkid: 0,
            ping_sent: None,
            max_packet: self.options.max_packet,
            skipping: 0,
            awaiting_suback: None,
            read_after: None,
        };
        let end = self.serve_connected(&mut conn, shutdown).await;
        // Whatever was sent but not acknowledged is sent again on the next connection.
        let unacked: Vec<Message> = conn.inflight.drain(..).map(|i| i.message).collect();
        self.outbox.push_front(unacked);
        end
    }

    async fn serve_connected(&self, conn: &mut Connection, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> End {
        if !self.subscriptions.is_empty() {
            let pkid = conn.pkid();
            conn.queue(&Packet::Subscribe { pkid, filters: self.subscriptions.clone() });
            conn.awaiting_suback = Some(pkid);
        }
        let birth = self.birth.as_ref().and_then(|b| b.borrow().clone());
        if let Some(message) = birth {
            self.outbox.push_front([message]);
        }
        if let Err(e) = conn.flush().await {
            return End::Lost(e);
        }
        // Without subscriptions the session is ready now; with them, once the broker acknowledged
        // them, so that whoever sees `Connected` knows a command sent now will arrive.
        if conn.awaiting_suback.is_none() && self.events.send(ClientEvent::Connected).await.is_err() {
            return End::Shutdown;
        }
        let keepalive = self.options.keepalive;
        let check_every = (keepalive / 2).max(Duration::from_millis(500));
        let mut next_check = Instant::now() + check_every;
        loop {
            tokio::select! {
                biased;
                // Stopping: flush the outbox and say goodbye.
                () = &mut *shutdown => {
                    self.drain(conn).await;
                    return End::Shutdown;
                }
                // Packets from the broker. A broker that sets `TCP_NODELAY` answers every
                // PUBLISH with a PUBACK segment of its own, and each woke this process: at 5,000
                // states a second that was 20,000 wake-ups, a quarter of the CPU per state. So
                // while publications stream out (many in flight), a read that brought only
                // acknowledgements lets the next wait a millisecond and take them all at once;
                // a command then waits that millisecond at most. A quiet session reads at once.
                read = conn.reader.read_buf(&mut conn.rbuf), if conn.read_after.is_none() => {
                    match read {
                        Ok(0) => return End::Lost("closed by the broker".into()),
                        Ok(_) => match self.handle_incoming(conn).await {
                            Ok(true) if conn.inflight.len() >= STREAMING => {
                                conn.read_after = Some(Instant::now() + ACK_BATCH);
                                // Room for the whole batch, so that it is one read.
                                conn.rbuf.reserve(16 << 10);
                                // And no wake-up for each segment of it meanwhile. Where the
                                // option cannot be set, each segment wakes the session, as
                                // before; nothing else changes.
                                if let Err(e) = conn.set_quiet(true) {
                                    tracing::debug!("acknowledgements will wake the session one by one: {e}");
                                }
                            }
                            Ok(_) => {}
                            Err(e) => return e,
                        },
                        Err(e) => return End::Lost(e.to_string()),
                    }
                }
                () = sleep_until(conn.read_after.unwrap_or(next_check)), if conn.read_after.is_some() => {
                    conn.read_after = None;
                    if let Err(e) = conn.set_quiet(false) {
                        return End::Lost(e);
                    }
                }
                // Publications waiting, with room in the window.
                () = self.outbox.ready(), if conn.inflight.len() < MAX_INFLIGHT => {
                    conn.fill(&self.outbox);
                    if let Err(e) = conn.flush().await {
                        return End::Lost(e);
                    }
                    next_check = Instant::now() + check_every;
                }
                // Keepalive: ping when idle, give up when the broker stopped answering.
                () = sleep_until(next_check) => {
                    let now = Instant::now();
                    let stalled = conn.inflight.front().is_some_and(|i| now - i.sent > keepalive);
                    if conn.ping_sent.is_some_and(|at| now - at > check_every) || stalled {
                        return End::Lost("the broker stopped answering".into());
                    }
                    if conn.ping_sent.is_none() {
                        conn.queue(&Packet::PingReq);
                        conn.ping_sent = Some(now);
                        if let Err(e) = conn.flush().await {
                            return End::Lost(e);
                        }
                    }
                    next_check = now + check_every;
                }
            }
        }
    }

    /// Handle the packets read; `Ok(true)` when they were only acknowledgements of ours.
    async fn handle_incoming(&self, conn: &mut Connection) -> Result<bool, End> {
        let (mut acks, mut other) = (false, false);
        loop {
            if conn.skipping > 0 {
                other = true;
                let n = conn.skipping.min(conn.rbuf.len());
                conn.rbuf.advance(n);
                conn.skipping -= n;
                if conn.skipping > 0 {
                    break;
                }
            }
            let packet = match Packet::decode(&mut conn.rbuf, conn.max_packet) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(CodecError::TooLarge(_)) => match Packet::oversized_publish(&conn.rbuf, conn.max_packet) {
                    // A message too large to take: acknowledge it, skip it, say so once.
                    Ok(Some(head)) => {
                        match head.qos {
                            QoS::AtMostOnce => {}
                            QoS::AtLeastOnce => conn.queue(&Packet::PubAck(head.pkid)),
                            QoS::ExactlyOnce => conn.queue(&Packet::PubRec(head.pkid)),
                        }
                        conn.skipping = head.size;
                        other = true;
                        let skipped = ClientEvent::Skipped { topic: head.topic, size: head.size };
                        if self.events.send(skipped).await.is_err() {
                            return Err(End::Shutdown);
                        }
                        continue;
                    }
                    // Its head has not all arrived yet.
                    Ok(None) if conn.rbuf.first().is_some_and(|b| b >> 4 == 3) => break,
                    Ok(None) => return Err(End::Lost("protocol error: a packet exceeds the limit".into())),
                    Err(e) => return Err(End::Lost(format!("protocol error: {e}"))),
                },
                Err(e) => return Err(End::Lost(format!("protocol error: {e}"))),
            };
            if matches!(packet, Packet::PubAck(_) | Packet::PubComp(_)) {
                acks = true;
            } else {
                other = true;
            }
            match packet {
                Packet::Publish(publish) => {
                    let (qos, pkid) = (publish.qos, publish.pkid);
                    let first_time = qos != QoS::ExactlyOnce || conn.received_qos2.insert(pkid);
                    if first_time && self.events.send(ClientEvent::Message(publish)).await.is_err() {
                        return Err(End::Shutdown);
                    }
                    match qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => conn.queue(&Packet::PubAck(pkid)),
                        QoS::ExactlyOnce => conn.queue(&Packet::PubRec(pkid)),
                    }
                }
                Packet::PubRel(pkid) => {
                    conn.received_qos2.remove(&pkid);
                    conn.queue(&Packet::PubComp(pkid));
                }
                Packet::PubAck(pkid) | Packet::PubComp(pkid) => conn.acknowledge(pkid),
                Packet::PubRec(pkid) => {
                    if let Some(entry) = conn.inflight.iter_mut().find(|i| i.pkid == pkid) {
                        entry.released = true;
                    }
                    conn.queue(&Packet::PubRel(pkid));
                }
                Packet::SubAck { pkid, codes } => {
                    if codes.contains(&0x80) {
                        tracing::error!(client = %self.options.client_id, "the broker refused a subscription");
                    }
                    if conn.awaiting_suback == Some(pkid) {
                        conn.awaiting_suback = None;
                        if self.events.send(ClientEvent::Connected).await.is_err() {
                            return Err(End::Shutdown);
                        }
                    }
                }
                Packet::PingResp => conn.ping_sent = None,
                Packet::UnsubAck(_) => {}
                other => return Err(End::Lost(format!("unexpected packet from the broker: {other:?}"))),
            }
        }
        // Acknowledgements just queued, and room freed in the window.
        conn.fill(&self.outbox);
        conn.flush().await.map_err(End::Lost)?;
        Ok(acks && !other)
    }

    /// Send everything waiting and wait for its acknowledgements, then DISCONNECT.
    async fn drain(&self, conn: &mut Connection) {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        // Every acknowledgement is awaited now, each as it comes.
        conn.read_after = None;
        if conn.set_quiet(false).is_err() {
            return;
        }
        while !(self.outbox.is_empty() && conn.inflight.is_empty()) && Instant::now() < deadline {
            conn.fill(&self.outbox);
            if conn.flush().await.is_err() {
                return;
            }
            match timeout(deadline - Instant::now(), conn.reader.read_buf(&mut conn.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {
                    if self.handle_incoming(conn).await.is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        conn.queue(&Packet::Disconnect);
        let _ = conn.flush().await;
        let _ = conn.writer.shutdown().await;
    }
}

/// A connection to the broker, plain or over TLS.
enum Link {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Link {
    /// The TCP socket underneath.
    fn socket(&self) -> RawFd {
        match self {
            Link::Tcp(stream) => stream.as_raw_fd(),
            Link::Tls(stream) => stream.get_ref().0.as_raw_fd(),
        }
    }

    /// A reader and a writer that can be used at the same time.
    fn split(self) -> (Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>) {
        match self {
            Link::Tcp(stream) => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Link::Tls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                (Box::new(reader), Box::new(writer))
            }
        }
    }
}

struct Connection {
    /// The socket of `reader` and `writer`, open as long as they are.
    socket: RawFd,
    /// Whether received bytes are kept from waking the session (see [`crate::quiet`]).
    quiet: bool,
    reader: Box<dyn AsyncRead + Send + Unpin>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    inflight: VecDeque<Inflight>,
    /// The packet ids of `inflight`, one bit each: finding a free id does not walk the window.
    in_use: Vec<u64>,
    received_qos2: HashSet<u16>,
    next_pkid: u16,
    ping_sent: Option<Instant>,
    max_packet: usize,
    /// Bytes of a skipped oversized message still to discard.
    skipping: usize,
    /// The SUBSCRIBE whose SUBACK completes the connection.
    awaiting_suback: Option<u16>,
    /// When the next read may be: acknowledgements are being read in batches.
    read_after: Option<Instant>,
}

impl Connection {
    /// Keep received bytes from waking the session, or let them again (and at once, if some
    /// are waiting).
    fn set_quiet(&mut self, quiet: bool) -> Result<(), String> {
        if self.quiet != quiet {
            crate::quiet::set(self.socket, quiet)
                .map_err(|e| format!("cannot set the socket's low-water mark: {e}"))?;
            self.quiet = quiet;
        }
        Ok(())
    }

    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.taken(self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    fn taken(&self, pkid: u16) -> bool {
        self.in_use[usize::from(pkid) / 64] & (1 << (pkid % 64)) != 0
    }

    fn mark(&mut self, pkid: u16, taken: bool) {
        let word = &mut self.in_use[usize::from(pkid) / 64];
        if taken {
            *word |= 1 << (pkid % 64);
        } else {
            *word &= !(1 << (pkid % 64));
        }
    }

    fn queue(&mut self, packet: &Packet) {
        packet.encode(&mut self.wbuf);
    }

    /// Move messages from the outbox into the write buffer while the window has room.
    fn fill(&mut self, outbox: &Outbox) {
        while self.inflight.len() < MAX_INFLIGHT {
            let Some(message) = outbox.pop() else { break };
            let pkid = if message.qos == QoS::AtMostOnce { 0 } else { self.pkid() };
            encode_publish(&message.topic, &message.payload, message.qos, message.retain, false, pkid, &mut self.wbuf);
            if message.qos != QoS::AtMostOnce {
                self.mark(pkid, true);
                self.inflight.push_back(Inflight { pkid, message, sent: Instant::now(), released: false });
            }
        }
    }

    fn acknowledge(&mut self, pkid: u16) {
        // Acknowledgements mostly come in order: the search usually stops at the front.
        if let Some(pos) = self.inflight.iter().position(|i| i.pkid == pkid) {
            let _ = self.inflight.remove(pos);
            self.mark(pkid, false);
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // TLS holds written records until flushed; for plain TCP the flush is free.
        let result = match self.writer.write_all(&self.wbuf).await {
            Ok(()) => self.writer.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.wbuf.clear();
        if self.wbuf.capacity() > 64 << 10 {
            self.wbuf = BytesMut::new();
        }
        result
    }
}

fn refusal(code: u8) -> String {
    match code {
        1 => "the broker refused the connection: unacceptable protocol version".into(),
        2 => "the broker refused the connection: client id rejected".into(),
        3 => "the broker refused the connection: server unavailable".into(),
        4 => "the broker refused the connection: bad user name or password".into(),
        5 => "the broker refused the connection: not authorised".into(),
        other => format!("the broker refused the connection with code {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Read one whole packet (fixed header, remaining length, body) from a scripted peer.
    async fn read_packet(stream: &mut TcpStream) -> Vec<u8> {
        let mut packet = vec![stream.read_u8().await.unwrap()];
        let (mut length, mut shift) = (0usize, 0);
        loop {
            let byte = stream.read_u8().await.unwrap();
            packet.push(byte);
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let start = packet.len();
        packet.resize(start + length, 0);
        stream.read_exact(&mut packet[start..]).await.unwrap();
        packet
    }

    /// A client of the scripted broker on `listener`.
    fn options(listener: &TcpListener, client_id: &str) -> ClientOptions {
        ClientOptions {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
            client_id: client_id.into(),
            username: None,
            password: None,
            keepalive: Duration::from_secs(30),
            will: None,
            max_packet: 1 << 16,
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// A session of `subscriptions` and `outbox` against a scripted broker, connected: its
    /// events, its stop, its task, and the broker's end.
    async fn connected(
        client_id: &str,
        subscriptions: Vec<(String, QoS)>,
        outbox: Outbox,
    ) -> (mpsc::Receiver<ClientEvent>, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (events_tx, events) = mpsc::channel(8);
        let session = Session::new(options(&listener, client_id), subscriptions, outbox, events_tx);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let client = tokio::spawn(session.run(async move {
            let _ = stop_rx.await;
        }));
        let (mut peer, _) = listener.accept().await.unwrap();
        assert_eq!(read_packet(&mut peer).await[0], 0x10, "CONNECT first");
        peer.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        (events, stop_tx, client, peer)
    }

    /// `Connected` promises that the subscriptions are in place: a broker that is slow to
    /// acknowledge them delays it.
    #[tokio::test]
    async fn connected_waits_for_the_subscriptions_to_be_acknowledged() {
        let (mut events, stop_tx, client, mut peer) =
            connected("suback-test", vec![("a/#".into(), QoS::AtLeastOnce)], Outbox::new(8)).await;
        let subscribe = read_packet(&mut peer).await;
        assert_eq!(subscribe[0], 0x82, "then SUBSCRIBE");
        let pkid = [subscribe[2], subscribe[3]];

        let early = timeout(Duration::from_millis(300), events.recv()).await;
        assert!(early.is_err(), "no event before the SUBACK, got {early:?}");
        peer.write_all(&[0x90, 0x03, pkid[0], pkid[1], 0x01]).await.unwrap();
        let event = timeout(Duration::from_secs(5), events.recv()).await.expect("an event after the SUBACK");
        assert_eq!(event, Some(ClientEvent::Connected));

        stop_tx.send(()).unwrap();
        drop(peer);
        timeout(Duration::from_secs(5), client).await.expect("the session stops").unwrap();
    }

    /// While publications stream out, acknowledgements are read in batches; a command that
    /// arrives meanwhile still comes through, and the acknowledgements free the window.
    #[tokio::test]
    async fn a_command_among_batched_acknowledgements_comes_through() {
        let outbox = Outbox::new(1000);
        let (mut events, stop_tx, client, mut peer) = connected("batch-test", Vec::new(), outbox.clone()).await;
        assert_eq!(timeout(Duration::from_secs(5), events.recv()).await.unwrap(), Some(ClientEvent::Connected));

        let message = |n: usize| Message {
            topic: format!("t/{n}"),
            payload: Bytes::from_static(b"1"),
            qos: QoS::AtLeastOnce,
            retain: false,
            replaceable: false,
        };
        outbox.extend((0..100).map(message));
        let mut pkids = Vec::new();
        while pkids.len() < 100 {
            let packet = read_packet(&mut peer).await;
            assert_eq!(packet[0] >> 4, 3, "a PUBLISH");
            let topic_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            pkids.push([packet[4 + topic_len], packet[5 + topic_len]]);
        }
        // Half the acknowledgements in one write: only acknowledgements, 50 still in flight.
        let acks = |pkids: &[[u8; 2]]| pkids.iter().flat_map(|p| [0x40, 0x02, p[0], p[1]]).collect::<Vec<u8>>();
        peer.write_all(&acks(&pkids[..50])).await.unwrap();
        // A command right behind them.
        peer.write_all(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i']).await.unwrap();
        let event = timeout(Duration::from_secs(2), events.recv()).await.expect("the command comes through");
        let Some(ClientEvent::Message(publish)) = event else { panic!("expected the command, got {event:?}") };
        assert_eq!((publish.topic.as_str(), publish.payload.as_ref()), ("a/b", b"hi".as_slice()));

        // The rest acknowledged; what is queued next goes out.
        peer.write_all(&acks(&pkids[50..])).await.unwrap();
        outbox.push(message(100));
        let packet = timeout(Duration::from_secs(2), read_packet(&mut peer)).await.expect("the next publication");
        assert_eq!(&packet[4..9], b"t/100");

        stop_tx.send(()).unwrap();
        drop(peer);
        timeout(Duration::from_secs(5), client).await.expect("the session stops").unwrap();
    }
}
