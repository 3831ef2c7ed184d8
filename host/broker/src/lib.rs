//! The embedded MQTT 3.1.1 broker that `iot2mqtt serve` starts when no broker is configured,
//! so a single binary is a complete system. It does what the connector contract needs and
//! no more: QoS 0 and 1 (QoS 2 publications are accepted and delivered at most at QoS 1),
//! retained messages, last wills, wildcards, keepalive, optional user/password. Sessions are
//! clean: a client that asks for a persistent session is told none was present.
//!
//! One task per connection reads; one per connection writes from a bounded queue; routing
//! holds a lock only to look subscribers up in a topic tree and hand messages to their queues.

mod connection;
mod router;
mod trie;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::router::Router;

/// How the broker listens and what it allows.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen (`127.0.0.1:1883` by default; port 0 picks a free one).
    pub listen: SocketAddr,
    /// When set, clients must log in with these credentials.
    pub credentials: Option<(String, String)>,
    /// The largest packet accepted.
    pub max_packet: usize,
    /// Messages queued for one slow client before new ones are dropped.
    pub max_queued: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            credentials: None,
            max_packet: 1 << 20,
            max_queued: 10_000,
        }
    }
}

/// A running broker. Stops when dropped.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Broker {
    /// Bind and start accepting connections.
    pub async fn start(config: BrokerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let router = Arc::new(Router::new(config));
        let task = tokio::spawn(accept(listener, router, stopped));
        tracing::info!(%local_addr, "embedded MQTT broker listening");
        Ok(Self { local_addr, stop, task: Some(task) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting and close every connection.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept(listener: TcpListener, router: Arc<Router>, mut stopped: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // Shut down: connections see the same signal, deliver what they hold, and close.
            _ = stopped.changed() => break,
            // A new client.
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(Arc::clone(&router), stream, peer, stopped.clone()));
                }
                Err(e) => {
                    tracing::warn!("accepting an MQTT connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Forget connections that ended.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(3), drained).await.is_err() {
        tracing::warn!("some MQTT connections did not close in time");
    }
}
