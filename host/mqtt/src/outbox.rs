//! The outbox: every publication of a session waits here until the connection takes it. It is
//! bounded (the oldest message goes when it is full), a newer message to the same topic
//! replaces a waiting replaceable one in place (retained state: only the latest matters), and
//! what a lost connection had sent but not seen acknowledged comes back to the front.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::QoS;

/// One publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Whether a newer message to the same topic may replace this one while both wait.
    pub replaceable: bool,
}

/// Counters of an outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Messages waiting now.
    pub queued: usize,
    /// Messages replaced by a newer one to the same topic.
    pub replaced: u64,
    /// Messages dropped because the outbox was full.
    pub dropped: u64,
}

/// A bounded, coalescing queue of publications shared by the producers and the session that
/// sends them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Messages by sequence number; `push_front` uses numbers below the current front.
    queue: BTreeMap<i64, Message>,
    /// Replaceable messages waiting, by topic.
    by_topic: HashMap<String, i64>,
    next_back: i64,
    next_front: i64,
    replaced: u64,
    dropped: u64,
}

impl Outbox {
    /// An outbox holding at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self { inner: Arc::new(Inner { capacity: capacity.max(1), state: Mutex::default(), notify: Notify::new() }) }
    }

    /// Queue a message at the back.
    pub fn push(&self, message: Message) {
        self.extend([message]);
    }

    /// Queue messages at the back, in their order: one lock and one wake-up for all of them
    /// (a state and its per-key topics).
    pub fn extend(&self, messages: impl IntoIterator<Item = Message>) {
        {
            let mut state = self.lock();
            for message in messages {
                if message.replaceable
                    && let Some(seq) = state.by_topic.get(&message.topic).copied()
                {
                    state.queue.insert(seq, message);
                    state.replaced += 1;
                    continue;
                }
                if state.queue.len() >= self.inner.capacity {
                    state.drop_oldest();
                }
                let seq = state.next_back;
                state.next_back += 1;
                if message.replaceable {
                    state.by_topic.insert(message.topic.clone(), seq);
                }
                state.queue.insert(seq, message);
            }
        }
        self.inner.notify.notify_one();
    }

    /// Put messages back at the front, in their order (they were sent but not acknowledged).
    /// A replaceable message whose topic has a newer message waiting is dropped instead.
    pub fn push_front(&self, messages: impl IntoIterator<Item = Message, IntoIter: DoubleEndedIterator>) {
        {
            let mut state = self.lock();
            for message in messages.into_iter().rev() {
                if message.replaceable && state.by_topic.contains_key(&message.topic) {
                    state.replaced += 1;
                    continue;
                }
                if state.queue.len() >= self.inner.capacity {
                    state.dropped += 1;
                    continue;
                }
                state.next_front -= 1;
                let seq = state.next_front;
                if message.replaceable {
                    state.by_topic.insert(message.topic.clone(), seq);
                }
                state.queue.insert(seq, message);
            }
        }
        self.inner.notify.notify_one();
    }

    /// Take the message at the front.
    pub fn pop(&self) -> Option<Message> {
        let mut state = self.lock();
        let (_, message) = state.queue.pop_first()?;
        if message.replaceable {
            state.by_topic.remove(&message.topic);
        }
        Some(message)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Wait until a message waits. Meant for the one session consuming this outbox.
    pub async fn ready(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if !self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Counters.
    pub fn stats(&self) -> OutboxStats {
        let state = self.lock();
        OutboxStats { queued: state.queue.len(), replaced: state.replaced, dropped: state.dropped }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the session, so poisoning is ignored.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn drop_oldest(&mut self) {
        if let Some((seq, message)) = self.queue.pop_first() {
            if self.by_topic.get(&message.topic) == Some(&seq) {
                self.by_topic.remove(&message.topic);
            }
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_power_of_two() {
                tracing::warn!(dropped = self.dropped, topic = %message.topic, "outbox full: dropping the oldest message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &'static str, replaceable: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: false,
            replaceable,
        }
    }

    fn drain(outbox: &Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.pop())
            .map(|m| format!("{}={}", m.topic, String::from_utf8_lossy(&m.payload)))
            .collect()
    }

    #[test]
    fn newer_state_replaces_older_in_place() {
        let outbox = Outbox::new(10);
        outbox.push(msg("a/state", "1", true));
        outbox.push(msg("event", "e", false));
        outbox.push(msg("a/state", "2", true));
        outbox.push(msg("event", "f", false));
        assert_eq!(drain(&outbox), ["a/state=2", "event=e", "event=f"]);
        assert_eq!(outbox.stats().replaced, 1);
    }

    #[test]
    fn full_outbox_drops_the_oldest() {
        let outbox = Outbox::new(2);
        outbox.push(msg("a", "1", false));
        outbox.push(msg("b", "2", true));
        outbox.push(msg("c", "3", false));
        assert_eq!(drain(&outbox), ["b=2", "c=3"]);
        assert_eq!(outbox.stats().dropped, 1);
        outbox.push(msg("b", "4", true));
        assert_eq!(drain(&outbox), ["b=4"]);
    }

    #[test]
    fn unacknowledged_messages_return_to_the_front_in_order() {
        let outbox = Outbox::new(10);
        outbox.push(msg("later", "x", false));
        outbox.push(msg("s", "new", true));
        outbox.push_front([msg("first", "1", false), msg("s", "old", true), msg("second", "2", false)]);
        assert_eq!(drain(&outbox), ["first=1", "second=2", "later=x", "s=new"]);
    }
}
