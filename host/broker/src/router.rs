//! Who is connected, who subscribed to what, and what is retained. Routing a publication
//! looks the subscribers up under the lock and hands copies to their queues without waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use iot2mqtt_mqtt::QoS;
use iot2mqtt_mqtt::codec::{Packet, Publish};
use tokio::sync::mpsc;

use crate::BrokerConfig;
use crate::trie::Trie;

/// What a connection's writer is asked to send.
#[derive(Debug)]
pub(crate) enum Out {
    /// A control packet (acknowledgements, SUBACK, PINGRESP…).
    Packet(Packet),
    /// A message to deliver; the writer assigns its packet id.
    Deliver(Publish),
    /// Close the connection (taken over by a newer one with the same client id).
    Close,
}

/// A registered connection.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) key: u64,
    pub(crate) tx: mpsc::Sender<Out>,
    pub(crate) taken_over: Arc<AtomicBool>,
}

pub(crate) struct Router {
    pub(crate) config: BrokerConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_key: u64,
    clients: HashMap<String, Client>,
    senders: HashMap<u64, mpsc::Sender<Out>>,
    subscriptions: Trie<HashMap<u64, QoS>>,
    retained: Trie<Publish>,
    dropped: u64,
}

impl Router {
    pub(crate) fn new(config: BrokerConfig) -> Self {
        Self { config, state: Mutex::default() }
    }

    /// Register a connection under `client_id`, taking over (closing) an older one.
    pub(crate) fn connect(&self, client_id: &str, tx: mpsc::Sender<Out>) -> Client {
        let mut state = self.lock();
        state.next_key += 1;
        let client = Client { key: state.next_key, tx: tx.clone(), taken_over: Arc::new(AtomicBool::new(false)) };
        if let Some(old) = state.clients.insert(client_id.to_string(), client.clone()) {
            old.taken_over.store(true, Ordering::Release);
            let _ = old.tx.try_send(Out::Close);
        }
        state.senders.insert(client.key, tx);
        client
    }

    /// Forget a connection and its subscriptions.
    pub(crate) fn disconnect(&self, client_id: &str, key: u64, filters: &[String]) {
        let mut state = self.lock();
        if state.clients.get(client_id).is_some_and(|c| c.key == key) {
            state.clients.remove(client_id);
        }
        state.senders.remove(&key);
        for filter in filters {
            state.subscriptions.update(
                filter,
                |subs| {
                    subs.remove(&key);
                },
                |subs| !subs.is_empty(),
            );
        }
    }

    /// Subscribe; the retained messages the filter matches, to deliver after the SUBACK.
    pub(crate) fn subscribe(&self, key: u64, filter: &str, qos: QoS) -> Vec<Publish> {
        let mut state = self.lock();
        state.subscriptions.entry(filter, HashMap::new).insert(key, qos);
        let mut retained = Vec::new();
        state.retained.matching_topics(filter, |message| {
            let mut copy = message.clone();
            copy.qos = copy.qos.min(qos);
            copy.retain = true;
            retained.push(copy);
        });
        retained
    }

    pub(crate) fn unsubscribe(&self, key: u64, filter: &str) {
        self.lock().subscriptions.update(
            filter,
            |subs| {
                subs.remove(&key);
            },
            |subs| !subs.is_empty(),
        );
    }

    /// Store (or clear) a retained message and deliver to every matching subscriber once,
    /// at the highest QoS among its matching subscriptions, capped by the message's.
    pub(crate) fn publish(&self, message: &Publish) {
        let mut state = self.lock();
        if message.retain {
            if message.payload.is_empty() {
                state.retained.remove(&message.topic);
            } else {
                let mut kept = message.clone();
                kept.dup = false;
                kept.pkid = 0;
                state.retained.insert(&message.topic, kept);
            }
        }
        let mut targets: HashMap<u64, QoS> = HashMap::new();
        state.subscriptions.matching_filters(&message.topic, |subs| {
            for (key, qos) in subs {
                let qos = (*qos).min(message.qos);
                targets.entry(*key).and_modify(|q| *q = (*q).max(qos)).or_insert(qos);
            }
        });
        let mut dropped = 0;
        for (key, qos) in targets {
            let Some(tx) = state.senders.get(&key) else { continue };
            let delivery = Publish {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos,
                retain: false,
                dup: false,
                pkid: 0,
            };
            if tx.try_send(Out::Deliver(delivery)).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            state.dropped += dropped;
            tracing::warn!(dropped = state.dropped, topic = %message.topic, "a client is too slow: messages dropped");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in another connection's task: every
        // update above is a single map operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
