//! An observing MQTT client built on rumqttc (an implementation independent of the host's
//! own), subscribed to everything under a filter, with waits that name what they expected
//! when they time out.

use std::collections::VecDeque;
use std::time::Duration;

use iot2mqtt_testkit::{Subscriber, SubscriberOptions};
use rumqttc::{AsyncClient, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// One message as the observer saw it.
pub use iot2mqtt_testkit::Publication as Received;

/// A subscribed client and what it has received but nobody consumed yet.
pub struct Observer {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    backlog: VecDeque<Received>,
}

/// A broker on loopback: its port, and the login it asks for (none for the suite's brokers;
/// an account of its own for `serve`'s embedded broker).
#[derive(Debug, Clone)]
pub struct MqttAt {
    pub port: u16,
    pub login: Option<(String, String)>,
}

impl From<u16> for MqttAt {
    fn from(port: u16) -> Self {
        Self { port, login: None }
    }
}

impl Observer {
    /// Connect to the broker at `at` and subscribe to `filter`; returns once subscribed.
    pub async fn connect(at: impl Into<MqttAt>, filter: &str) -> Self {
        let MqttAt { port, login } = at.into();
        let options = SubscriberOptions { login, ..SubscriberOptions::default() };
        let Subscriber { client, rx } = Subscriber::connect(port, &[filter.to_string()], options)
            .await
            .unwrap_or_else(|e| panic!("the observer could not subscribe: {e}"));
        Self { client, rx, backlog: VecDeque::new() }
    }

    /// Publish at QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.expect("publish");
    }

    /// Publish a retained message at QoS 1.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, true, payload.into()).await.expect("publish");
    }

    /// The next message (oldest first) that `matches`, within `within`; others stay queued.
    /// Panics with what was seen when none comes.
    pub async fn wait_for(&mut self, what: &str, within: Duration, matches: impl Fn(&Received) -> bool) -> Received {
        match self.try_wait_for(within, matches).await {
            Some(message) => message,
            None => {
                let seen: Vec<String> =
                    self.backlog.iter().rev().take(30).map(|m| format!("{} {}", m.topic, m.text())).collect();
                panic!("timed out after {within:?} waiting for {what}; last messages seen:\n{}", seen.join("\n"));
            }
        }
    }

    /// Like [`Observer::wait_for`], but `None` when nothing matching comes.
    pub async fn try_wait_for(&mut self, within: Duration, matches: impl Fn(&Received) -> bool) -> Option<Received> {
        if let Some(pos) = self.backlog.iter().position(&matches) {
            return self.backlog.remove(pos);
        }
        let deadline = Instant::now() + within;
        loop {
            match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(message)) if matches(&message) => return Some(message),
                Ok(Some(message)) => self.backlog.push_back(message),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message on exactly `topic`.
    pub async fn next_on(&mut self, topic: &str, within: Duration) -> Received {
        self.wait_for(topic, within, |m| m.topic == topic).await
    }

    /// The next message on `topic` whose JSON payload satisfies `matches`.
    pub async fn next_json(&mut self, topic: &str, within: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        let message = self
            .wait_for(topic, within, |m| {
                m.topic == topic && serde_json::from_slice::<Value>(&m.payload).is_ok_and(|v| matches(&v))
            })
            .await;
        message.json()
    }

    /// Everything that arrives on `topic` during `during` (plus what is queued already).
    pub async fn collect(&mut self, topic: &str, during: Duration) -> Vec<Received> {
        let deadline = Instant::now() + during;
        while let Ok(Some(message)) = timeout_at(deadline, self.rx.recv()).await {
            self.backlog.push_back(message);
        }
        let (matching, rest): (Vec<_>, Vec<_>) = self.backlog.drain(..).partition(|m| m.topic == topic);
        self.backlog = rest.into();
        matching
    }

    /// Everything received so far and during `during`, on any topic.
    pub async fn collect_all(&mut self, during: Duration) -> Vec<Received> {
        let deadline = Instant::now() + during;
        while let Ok(Some(message)) = timeout_at(deadline, self.rx.recv()).await {
            self.backlog.push_back(message);
        }
        self.backlog.drain(..).collect()
    }

    /// Forget everything received so far.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
        self.backlog.clear();
    }
}

/// The retained message on `topic` as a new subscriber sees it, or `None` (after 3 s).
pub async fn retained(at: impl Into<MqttAt>, topic: &str) -> Option<Received> {
    let mut observer = Observer::connect(at, topic).await;
    observer.try_wait_for(Duration::from_secs(3), |m| m.retain).await
}

/// Every retained message under `filter` a new subscriber gets within `within`.
pub async fn retained_under(at: impl Into<MqttAt>, filter: &str, within: Duration) -> Vec<Received> {
    let mut observer = Observer::connect(at, filter).await;
    observer.collect_all(within).await.into_iter().filter(|m| m.retain).collect()
}
