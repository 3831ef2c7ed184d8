//! A TCP proxy in front of the broker that a test can cut and heal: a network partition
//! between one client and the broker while everyone else (the observer) stays connected.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections from its own port to the broker's.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    up: Mutex<bool>,
    links: Mutex<Vec<JoinHandle<()>>>,
}

impl Proxy {
    /// Start forwarding to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared { up: Mutex::new(true), links: Mutex::default() });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*accepting.up.lock().unwrap() {
                    continue; // dropped at once: the connection is refused in effect
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
                accepting.links.lock().unwrap().push(link);
            }
        });
        Self { port, shared, accept }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        *self.shared.up.lock().unwrap() = false;
        for link in self.shared.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accept connections again.
    pub fn heal(&self) {
        *self.shared.up.lock().unwrap() = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
