//! The load generator and observer: an independent MQTT client (rumqttc) that publishes
//! commands and timestamps what comes back.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// A message received, with when.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// When it arrived.
    pub at: Instant,
}

/// A connected client with its subscriptions.
#[derive(Debug)]
pub struct Driver {
    /// For publishing.
    pub client: AsyncClient,
    /// What arrives.
    pub rx: mpsc::UnboundedReceiver<Msg>,
}

impl Driver {
    /// Connect to the broker on `port` and subscribe to `filters` at QoS 1.
    pub async fn connect(port: u16, filters: &[String]) -> anyhow::Result<Self> {
        Self::connect_with(port, filters, QoS::AtLeastOnce).await
    }

    /// The same, subscribing at `qos` (QoS 0 to count without the counter's acknowledgements
    /// slowing the broker down).
    pub async fn connect_with(port: u16, filters: &[String], qos: QoS) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("bench-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(1 << 20, 1 << 20).set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 100_000);
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        let filters = filters.to_vec();
        let wanted = filters.len();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = subscriber.try_subscribe(filter.clone(), qos);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(Msg { topic: p.topic, payload: p.payload, at: Instant::now() }).is_err() {
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
            tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv())
                .await
                .context("the benchmark client could not subscribe")?;
        }
        Ok(Self { client, rx })
    }

    /// Publish at QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await?;
        Ok(())
    }

    /// Wait for a message on `topic` whose payload is `payload` (or any, with `None`).
    pub async fn wait_for(&mut self, topic: &str, payload: Option<&str>, within: Duration) -> anyhow::Result<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .with_context(|| format!("nothing on {topic} within {within:?}"))?
                .context("the benchmark client stopped")?;
            if msg.topic == topic && payload.is_none_or(|p| msg.payload.as_ref() == p.as_bytes()) {
                return Ok(msg);
            }
        }
    }

    /// Drop what arrived so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// The size of a QoS 1 PUBLISH packet carrying `topic` and `payload` on the wire.
pub fn publish_packet_size(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}
