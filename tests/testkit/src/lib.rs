//! What the integration suite (`tests/`) and the benchmarks (`bench/`) both need, written once:
//!
//! - [`Subscriber`]: an MQTT client independent of the host's own (rumqttc), subscribed to a
//!   set of filters, that resubscribes after a reconnect and hands every publication to a
//!   channel, stamped with the time it arrived;
//! - [`instance_env`]: the environment an instance process (`iot2mqtt-host` or the Python
//!   baseline) is started with, its files in one folder.
//!
//! It is test tooling: connecting returns its failure as text for the caller to assert or
//! report; [`Publication::json`] panics on a payload that is not JSON, as a test should.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// One publication as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Whether it came as a retained message.
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

impl Publication {
    /// The payload as JSON; panics, naming the topic, when it is not.
    #[allow(clippy::panic)]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {:?}", self.topic, self.payload))
    }

    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// How a [`Subscriber`] connects.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// A prefix for its client id (a counter and the process id follow).
    pub name: &'static str,
    /// The QoS it subscribes with.
    pub qos: QoS,
    /// Keepalive.
    pub keep_alive: Duration,
    /// rumqttc's request queue.
    pub capacity: usize,
    /// The most outgoing QoS 1/2 messages in flight.
    pub inflight: u16,
    /// Disable Nagle (latency measurements need it; see the design guide's pitfalls).
    pub nodelay: bool,
    /// How long to wait for the broker's acknowledgement of the subscriptions.
    pub subscribe_within: Duration,
    /// User name and password, for a broker that asks for them.
    pub login: Option<(String, String)>,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        Self {
            name: "observer",
            qos: QoS::AtLeastOnce,
            keep_alive: Duration::from_secs(5),
            capacity: 1024,
            inflight: 100,
            nodelay: false,
            subscribe_within: Duration::from_secs(10),
            login: None,
        }
    }
}

/// A connected, subscribed client: publish with [`Subscriber::client`], read what arrives from
/// [`Subscriber::rx`]. Its event loop stops when the receiver is dropped.
#[derive(Debug)]
pub struct Subscriber {
    /// For publishing.
    pub client: AsyncClient,
    /// What arrives, in order.
    pub rx: mpsc::UnboundedReceiver<Publication>,
}

impl Subscriber {
    /// Connect to the broker on `127.0.0.1:port`, subscribe to `filters`, and return once the
    /// broker acknowledged every subscription.
    pub async fn connect(port: u16, filters: &[String], options: SubscriberOptions) -> Result<Self, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}-{}-{}", options.name, std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut mqtt = MqttOptions::new(id, "127.0.0.1", port);
        mqtt.set_keep_alive(options.keep_alive).set_max_packet_size(1 << 20, 1 << 20);
        mqtt.set_inflight(options.inflight);
        if let Some((user, password)) = &options.login {
            mqtt.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, options.capacity);
        if options.nodelay {
            let mut network = eventloop.network_options();
            network.set_tcp_nodelay(true);
            eventloop.set_network_options(network);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        let filters = filters.to_vec();
        let wanted = filters.len();
        let qos = options.qos;
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // rumqttc does not resubscribe after reconnecting: do it here.
                        for filter in &filters {
                            let _ = subscriber.try_subscribe(filter.clone(), qos);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let publication =
                            Publication { topic: p.topic, payload: p.payload, retain: p.retain, at: Instant::now() };
                        if tx.send(publication).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        for _ in 0..wanted {
            tokio::time::timeout(options.subscribe_within, subscribed_rx.recv())
                .await
                .map_err(|_| format!("the broker on port {port} did not acknowledge the subscriptions in time"))?;
        }
        Ok(Self { client, rx })
    }
}

/// The environment of an instance process with id `id`, against the broker on
/// `127.0.0.1:port`, whose instance file, secrets and `.env` are in `dir`.
pub fn instance_env(id: &str, port: u16, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("INSTANCE_NAME", id.to_string()),
        ("MQTT_HOST", "127.0.0.1".to_string()),
        ("MQTT_PORT", port.to_string()),
        ("IOT2MQTT_INSTANCES_DIR", dir.display().to_string()),
        ("IOT2MQTT_SECRETS_DIR", dir.display().to_string()),
        ("IOT2MQTT_DOTENV", dir.join(".env").display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_finds_everything_in_its_folder() {
        let env = instance_env("kitchen", 1884, Path::new("/tmp/x"));
        let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("INSTANCE_NAME"), Some("kitchen"));
        assert_eq!(get("MQTT_PORT"), Some("1884"));
        assert_eq!(get("IOT2MQTT_DOTENV"), Some("/tmp/x/.env"));
    }
}
