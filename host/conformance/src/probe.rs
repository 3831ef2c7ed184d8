//! The kit's MQTT client: one session subscribed to everything under the instance's root,
//! keeping every message it saw (with when it saw it) so each rule can wait for what it needs,
//! and short-lived readers of a topic's retained message.

use std::time::Duration;

use bytes::Bytes;
use iot2mqtt_mqtt::{ClientEvent, ClientOptions, Message, Outbox, QoS, Session};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Messages the session may hold before the kit reads them.
const EVENTS: usize = 4096;
/// Publications the kit may have queued.
const OUTBOX: usize = 256;

/// One message as the kit saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Whether the broker sent it as a retained message.
    pub retain: bool,
}

impl Seen {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload as JSON, when it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// A connected, subscribed session and what it received, in order.
pub struct Probe {
    options: ClientOptions,
    outbox: Outbox,
    events: mpsc::Receiver<ClientEvent>,
    seen: Vec<Seen>,
    stop: Option<oneshot::Sender<()>>,
}

impl Probe {
    /// Connect with `options`, subscribe to `filter`, and return once the broker took both;
    /// the broker's refusal or why it could not be reached, after `within`.
    pub async fn connect(options: ClientOptions, filter: &str, within: Duration) -> Result<Self, String> {
        Session::probe(options.clone()).await?;
        let outbox = Outbox::new(OUTBOX);
        let (tx, mut events) = mpsc::channel(EVENTS);
        let session = Session::new(options.clone(), vec![(filter.to_string(), QoS::AtLeastOnce)], outbox.clone(), tx);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(session.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ClientEvent::Connected)) => break,
                Ok(Some(ClientEvent::Disconnected { reason })) => return Err(reason),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Err(format!("no connection to the broker within {within:?}")),
            }
        }
        Ok(Self { options, outbox, events, seen: Vec::new(), stop: Some(stop) })
    }

    /// Publish at QoS 1, not retained.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        self.outbox.push(Message {
            topic: topic.to_string(),
            payload: payload.into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            replaceable: false,
        });
    }

    /// Where the next message will be in [`Self::since`].
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Every message seen from `mark` on.
    pub fn since(&self, mark: usize) -> &[Seen] {
        &self.seen[mark.min(self.seen.len())..]
    }

    /// Every message seen.
    pub fn all(&self) -> &[Seen] {
        &self.seen
    }

    /// The first message from `mark` on that `matches`, and where it is, waiting up to
    /// `within` for it.
    pub async fn wait_for(
        &mut self,
        mark: usize,
        within: Duration,
        matches: impl Fn(&Seen) -> bool,
    ) -> Option<(usize, Seen)> {
        let deadline = Instant::now() + within;
        let mut looked = mark;
        loop {
            if let Some(at) = self.seen.get(looked..).and_then(|rest| rest.iter().position(&matches)) {
                return Some((looked + at, self.seen[looked + at].clone()));
            }
            looked = self.seen.len().max(mark);
            if !self.receive_until(deadline).await {
                return None;
            }
        }
    }

    /// Take everything that arrives during `during`.
    pub async fn settle(&mut self, during: Duration) {
        let deadline = Instant::now() + during;
        while self.receive_until(deadline).await {}
    }

    /// The retained message on `topic` as a new subscriber gets it, if any arrives within
    /// `within`.
    pub async fn retained(&self, topic: &str, within: Duration) -> Result<Option<Seen>, String> {
        let mut options = self.options.clone();
        options.client_id = format!("{}-r", options.client_id);
        let mut reader = Probe::connect(options, topic, within).await?;
        let found = reader.wait_for(0, within, |s| s.topic == topic && s.retain).await;
        reader.close();
        Ok(found.map(|(_, seen)| seen))
    }

    /// Disconnect cleanly.
    pub fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Receive one event before `deadline`; false when none came.
    async fn receive_until(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(ClientEvent::Message(publish))) => {
                self.seen.push(Seen { topic: publish.topic, payload: publish.payload, retain: publish.retain });
                true
            }
            Ok(Some(_)) => true,
            Ok(None) | Err(_) => false,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.close();
    }
}
