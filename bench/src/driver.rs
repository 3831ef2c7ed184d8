//! The load generator and observer: an independent MQTT client (rumqttc) that publishes
//! commands and timestamps what comes back.

use std::time::Duration;

use anyhow::Context;
use iot2mqtt_testkit::{Subscriber, SubscriberOptions};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

/// A message received, with when.
pub type Msg = iot2mqtt_testkit::Publication;

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
        let options = SubscriberOptions {
            name: "bench",
            qos: QoS::AtLeastOnce,
            keep_alive: Duration::from_secs(30),
            capacity: 100_000,
            inflight: 1000,
            nodelay: true,
            subscribe_within: Duration::from_secs(10),
            login: None,
        };
        let Subscriber { client, rx } = Subscriber::connect(port, filters, options)
            .await
            .map_err(anyhow::Error::msg)
            .context("the benchmark client could not subscribe")?;
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
