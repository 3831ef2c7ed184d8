//! Retained messages in memory, bounded in number and in bytes. Past a bound a new retained
//! message is still delivered to current subscribers but not kept, and the log says so.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

pub(crate) struct BoundedRetain {
    store: DefaultRetainStorage,
    max_messages: usize,
    max_bytes: usize,
    /// Topic → bytes kept for it (topic and payload).
    sizes: Mutex<Sizes>,
}

#[derive(Default)]
struct Sizes {
    by_topic: HashMap<String, usize>,
    total: usize,
}

impl BoundedRetain {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self { store: DefaultRetainStorage::new(), max_messages, max_bytes, sizes: Mutex::default() }
    }
}

#[async_trait]
impl RetainStorage for BoundedRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(&self, topic: &TopicName, retain: Retain, expiry: Option<Duration>) -> rmqtt::Result<()> {
        let size = topic.len() + retain.publish.payload.len();
        let clearing = retain.publish.payload.is_empty();
        {
            let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
            let old = sizes.by_topic.get(&**topic).copied();
            if clearing {
                if let Some(old) = old {
                    sizes.total -= old;
                    sizes.by_topic.remove(&**topic);
                }
            } else {
                let count = sizes.by_topic.len() + usize::from(old.is_none());
                let total = sizes.total - old.unwrap_or(0) + size;
                if count > self.max_messages || total > self.max_bytes {
                    let shown: String = topic.chars().take(200).collect();
                    tracing::warn!(
                        topic = shown,
                        retained = sizes.by_topic.len(),
                        bytes = sizes.total,
                        "a retained message was delivered but not kept: the broker holds its most retained messages ({} or {} bytes)",
                        self.max_messages,
                        self.max_bytes,
                    );
                    return Ok(());
                }
                sizes.total = total;
                sizes.by_topic.insert(topic.to_string(), size);
            }
        }
        self.store.set_with_timeout(topic, retain, expiry).await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.store.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.store.count().await
    }

    async fn max(&self) -> isize {
        self.store.max().await
    }
}
