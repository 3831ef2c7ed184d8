//! The embedded MQTT broker that `iot2mqtt serve` starts when no broker is configured, so a
//! single binary is a complete system. The protocol (MQTT 3.1.1 and 5.0, QoS 0/1/2,
//! persistent sessions, wills, TLS) is rmqtt's; what is ours is the policy around it:
//!
//! - [`Accounts`]: who may log in, with which client id, and where each account may publish
//!   and subscribe. Anonymous clients are refused unless a test asks otherwise.
//! - [`Limits`]: packet size, topic length and depth, queued messages and bytes and in-flight
//!   messages per client, retained messages in number and bytes, connections.
//! - Each client's queue is bounded in bytes as well as in messages (`queued.rs`).
//! - Retained messages are kept in memory (`retain.rs`), bounded by those limits.

mod accounts;
mod gate;
mod queued;
mod retain;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::sync::oneshot;

pub use crate::accounts::{Access, Account, Accounts, Login, digest, matches, within};

/// How much the broker holds and accepts. The defaults suit a house: thousands of devices,
/// a few dozen clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest packet accepted, in bytes.
    pub max_packet: u32,
    /// The longest topic or filter, in bytes.
    pub max_topic_len: usize,
    /// The most levels in a topic or filter.
    pub max_topic_levels: usize,
    /// Messages queued for one client (offline or slow) before new ones are dropped.
    pub max_queued: usize,
    /// Bytes (topic and payload) queued for one client before new messages for it are
    /// dropped. A client with nothing queued still gets one message of any allowed size.
    pub max_queued_bytes: usize,
    /// QoS 1 and 2 messages in flight to one client.
    pub max_inflight: NonZeroU16,
    /// Retained messages kept in all.
    pub max_retained: usize,
    /// Bytes of retained messages (topic and payload) kept in all.
    pub max_retained_bytes: usize,
    /// Clients at once: connected, or away with a persistent session kept for them. One more
    /// is refused with "server unavailable".
    pub max_connections: usize,
    /// Subscriptions per client.
    pub max_subscriptions: usize,
    /// How long a persistent session (clean session off) outlives its connection.
    pub session_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet: 1 << 20,
            max_topic_len: 1024,
            max_topic_levels: 32,
            max_queued: 1000,
            max_queued_bytes: 8 << 20,
            max_inflight: NonZeroU16::new(32).unwrap_or(NonZeroU16::MIN),
            max_retained: 100_000,
            max_retained_bytes: 64 << 20,
            max_connections: 1000,
            max_subscriptions: 1000,
            session_expiry: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A TLS listener's address and certificate.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// How the broker listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen (`127.0.0.1:1883` by default; port 0 picks a free one).
    pub listen: SocketAddr,
    /// A TLS listener besides the plain one.
    pub tls: Option<TlsListener>,
    /// Who may connect. Shared: changes apply to the next login and the next check.
    pub accounts: Accounts,
    /// Let clients without a user name in, with every right. Only for tests.
    pub anonymous: bool,
    /// What it holds and accepts.
    pub limits: Limits,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls: None,
            accounts: Accounts::default(),
            anonymous: false,
            limits: Limits::default(),
        }
    }
}

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The broker's thread or runtime could not be started.
    #[error("the embedded MQTT broker cannot run: {0}")]
    Runtime(String),
    /// The TLS certificate or key could not be used.
    #[error("the MQTT TLS listener cannot use {cert} / {key}: {reason}")]
    Tls {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

/// A running broker. Stops when dropped.
///
/// It runs on a thread of its own, on a single-threaded runtime: a message is read, routed
/// and written by that one thread, as in Mosquitto. On a shared multi-threaded runtime each
/// forwarded message also woke the other worker (two futex calls and a thread hand-over per
/// message, seen with strace), and the broker took 10 % more CPU per message; here a busy API
/// or instance in the same process does not delay it either.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The listeners' addresses, or why there are none.
type Listening = Result<(SocketAddr, Option<SocketAddr>), BrokerError>;

impl Broker {
    /// Bind and start accepting connections.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        install_crypto_provider();
        let (ready, listening) = oneshot::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || serve(config, ready, stopped))
            .map_err(|e| BrokerError::Runtime(e.to_string()))?;
        let (local_addr, tls_addr) =
            listening.await.map_err(|_| BrokerError::Runtime("its thread ended before it was listening".into()))??;
        tracing::info!(%local_addr, tls = ?tls_addr, "embedded MQTT broker listening");
        Ok(Self { local_addr, tls_addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address of the plain listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Stop accepting, close every connection, and wait until the broker's thread has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Broker {
    /// Stops the broker without waiting for its thread.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The broker's thread: listen, report the addresses through `ready`, serve until `stop`,
/// then close every connection. Dropping the runtime ends whatever is left.
fn serve(config: BrokerConfig, ready: oneshot::Sender<Listening>, stop: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(BrokerError::Runtime(e.to_string())));
            return;
        }
    };
    runtime.block_on(async move {
        let (scx, server, addresses) = match listen(&config).await {
            Ok(listening) => listening,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(addresses));
        tokio::select! {
            result = server.run() => {
                if let Err(e) = result {
                    tracing::error!("the embedded MQTT broker stopped: {e}");
                }
            }
            _ = stop => {}
        }
        let entries: Vec<_> = scx.extends.shared().await.iter().collect();
        for mut entry in entries {
            let _ = tokio::time::timeout(Duration::from_secs(1), entry.kick(true, true, true)).await;
        }
    });
}

/// Set up rmqtt with our policy and bind the listeners.
async fn listen(
    config: &BrokerConfig,
) -> Result<(ServerContext, MqttServer, (SocketAddr, Option<SocketAddr>)), BrokerError> {
    let limits = &config.limits;
    let scx = ServerContext::new()
        .busy_check_enable(false)
        .mqtt_max_sessions(isize::try_from(limits.max_connections).unwrap_or(isize::MAX))
        .build()
        .await;
    *scx.extends.retain_mut().await =
        Box::new(retain::BoundedRetain::new(limits.max_retained, limits.max_retained_bytes));
    let ledger = Arc::new(queued::Ledger::new(limits.max_queued_bytes));
    *scx.extends.shared_mut().await = Box::new(queued::BoundedShared::new(scx.clone(), Arc::clone(&ledger)));
    let gate = gate::Gate::new(config.accounts.clone(), config.anonymous, limits.max_topic_len);
    let register = scx.extends.hook_mgr().register();
    for (typ, handler) in gate.handlers() {
        register.add(typ, handler).await;
    }
    for typ in queued::HOOKS {
        register.add(typ, Box::new(queued::Release(Arc::clone(&ledger)))).await;
    }
    register.start().await;

    let plain = listener(config, "tcp", config.listen)
        .bind()
        .and_then(|l| l.tcp())
        .map_err(|e| BrokerError::Listen { addr: config.listen, reason: e.to_string() })?;
    let local_addr =
        plain.local_addr().map_err(|e| BrokerError::Listen { addr: config.listen, reason: e.to_string() })?;
    let mut server = MqttServer::new(scx.clone()).listener_by_id(plain, 1);
    let mut tls_addr = None;
    if let Some(tls) = &config.tls {
        let tls_error = |reason: String| BrokerError::Tls {
            cert: tls.cert.display().to_string(),
            key: tls.key.display().to_string(),
            reason,
        };
        for file in [&tls.cert, &tls.key] {
            std::fs::metadata(file).map_err(|e| tls_error(format!("{}: {e}", file.display())))?;
        }
        let secure = listener(config, "tls", tls.listen)
            .tls_cert(Some(tls.cert.display().to_string()))
            .tls_key(Some(tls.key.display().to_string()))
            .bind()
            .map_err(|e| BrokerError::Listen { addr: tls.listen, reason: e.to_string() })?
            .tls()
            .map_err(|e| tls_error(e.to_string()))?;
        tls_addr =
            Some(secure.local_addr().map_err(|e| BrokerError::Listen { addr: tls.listen, reason: e.to_string() })?);
        server = server.listener_by_id(secure, 2);
    }
    Ok((scx, server.build(), (local_addr, tls_addr)))
}

fn listener(config: &BrokerConfig, name: &str, addr: SocketAddr) -> Builder {
    let limits = &config.limits;
    Builder::new()
        .name(name)
        .laddr(addr)
        .reuseaddr(Some(true))
        .nodelay(true)
        .allow_anonymous(config.anonymous)
        .max_connections(limits.max_connections)
        .max_packet_size(limits.max_packet)
        .max_inflight(limits.max_inflight)
        .max_mqueue_len(limits.max_queued)
        .max_topic_levels(limits.max_topic_levels)
        .max_subscriptions(limits.max_subscriptions)
        .max_clientid_len(256)
        .session_expiry_interval(limits.session_expiry)
        .max_session_expiry_interval(limits.session_expiry)
        .handshake_timeout(Duration::from_secs(10))
}

/// The TLS listener's rustls needs a process-wide crypto provider; the first broker installs
/// one (a second install is refused and harmless).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rmqtt::net::tls_provider::default_provider().install_default();
    });
}
