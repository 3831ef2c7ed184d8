//! The orchestrator's own MQTT client: it watches every instance's topics
//! (`{base}/v1/instances/#`), keeps the last message of each topic, streams live messages,
//! sends commands and waits for their responses, publishes for the explorer, clears an
//! instance's retained topics, and counts the plugin faults instances report on their `error`
//! topic (for runtimes that cannot see them otherwise). It reconnects to new settings without
//! a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;
use bytes::Bytes;
use iot2mqtt_contract::{InstanceId, MqttSettings, Topics};
use iot2mqtt_mqtt::{ClientEvent, ClientOptions, Message, Outbox, QoS, Session};
use iot2mqtt_runtime::FaultTimes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Topics kept, at most; the oldest go first.
const MAX_TOPICS: usize = 100_000;
/// Live messages buffered for slow stream readers.
const STREAM_BUFFER: usize = 1024;

/// The last message seen on a topic.
#[derive(Debug, Clone, Serialize)]
pub struct Cached {
    /// The topic.
    pub topic: String,
    /// The payload as text (lossy for binary payloads).
    pub payload: String,
    /// It arrived as a retained message.
    pub retained: bool,
    /// When it arrived.
    pub received: String,
    /// Messages seen on this topic since the service started (or since the topic was cleared).
    pub count: u64,
    #[serde(skip)]
    seq: u64,
}

impl Cached {
    /// A cached message as the service would hold it (for view-model tests).
    pub fn for_tests(topic: &str, payload: &str, received: &str) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            retained: false,
            received: received.into(),
            count: 1,
            seq: 0,
        }
    }
}

/// One message of the live stream.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// The topic.
    pub topic: String,
    /// The payload as text.
    pub payload: String,
    /// When it arrived.
    pub received: String,
    /// It was retained.
    pub retained: bool,
}

/// The plugin faults an instance reported on its `error` topic.
#[derive(Debug, Clone, Default)]
pub struct ReportedFaults {
    /// How many, since the orchestrator (re)started the instance.
    pub count: u64,
    /// When the last few arrived.
    pub times: FaultTimes,
    /// The last one's message.
    pub last: String,
}

/// The MQTT service.
#[derive(Clone)]
pub struct MqttService {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Mutex<MqttSettings>,
    outbox: Mutex<Outbox>,
    cache: Mutex<Cache>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    faults: Mutex<HashMap<String, ReportedFaults>>,
    live: broadcast::Sender<Arc<Live>>,
    connected: watch::Sender<bool>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Counts the sessions started: a session replaced by a newer one may still report while
    /// it winds down (a TLS session's goodbye takes a while), and must not touch what the
    /// newer one reports.
    session: AtomicU64,
}

#[derive(Default)]
struct Cache {
    topics: BTreeMap<String, Cached>,
    seq: u64,
}

impl std::fmt::Debug for MqttService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttService").field("connected", &self.connected()).finish_non_exhaustive()
    }
}

impl MqttService {
    /// Connect with `settings` (in the background; it retries for as long as it runs).
    pub fn start(settings: MqttSettings) -> Self {
        let (live, _) = broadcast::channel(STREAM_BUFFER);
        let service = Self {
            inner: Arc::new(Inner {
                settings: Mutex::new(settings),
                outbox: Mutex::new(Outbox::new(1000)),
                cache: Mutex::default(),
                waiters: Mutex::default(),
                faults: Mutex::default(),
                live,
                connected: watch::channel(false).0,
                stop: Mutex::new(None),
                session: AtomicU64::new(0),
            }),
        };
        service.connect();
        service
    }

    /// Whether connected to the broker now.
    pub fn connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Wait until connected (or `within` passes); whether it is.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let mut rx = self.inner.connected.subscribe();
        tokio::time::timeout(within, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// The settings in use.
    pub fn settings(&self) -> MqttSettings {
        lock(&self.inner.settings).clone()
    }

    /// Whether the settings in use name the broker at `host`:`port` (checked under the lock,
    /// without copying the settings: `/api/health` asks this on every call).
    pub fn uses_broker_at(&self, host: &str, port: u16) -> bool {
        let settings = lock(&self.inner.settings);
        settings.host == host && settings.port == port
    }

    /// Reconnect with new settings.
    pub fn reconfigure(&self, settings: MqttSettings) {
        *lock(&self.inner.settings) = settings;
        lock(&self.inner.cache).topics.clear();
        self.connect();
    }

    /// Disconnect.
    pub fn stop(&self) {
        if let Some(stop) = lock(&self.inner.stop).take() {
            let _ = stop.send(());
        }
    }

    fn connect(&self) {
        self.stop();
        let settings = self.settings();
        let outbox = Outbox::new(1000);
        *lock(&self.inner.outbox) = outbox.clone();
        let options = client_options(&settings, client_id(&settings));
        let mut filters = vec![(format!("{}/v1/instances/#", settings.base_topic), QoS::AtLeastOnce)];
        // The instances' Home Assistant discovery configs, to clear them with their instance.
        if let Some(prefix) = &settings.discovery_prefix {
            filters.push((format!("{prefix}/+/+/+/config"), QoS::AtLeastOnce));
        }
        let (tx, mut rx) = mpsc::channel(1024);
        let session = Session::new(options, filters, outbox, tx);
        let (stop, stopped) = oneshot::channel::<()>();
        *lock(&self.inner.stop) = Some(stop);
        let session_number = self.inner.session.fetch_add(1, Ordering::SeqCst) + 1;
        // Not connected until the new session says so.
        self.inner.connected.send_replace(false);
        tokio::spawn(session.run(async {
            let _ = stopped.await;
        }));
        let service = self.clone();
        tokio::spawn(async move {
            let current = |service: &MqttService| service.inner.session.load(Ordering::SeqCst) == session_number;
            while let Some(event) = rx.recv().await {
                if !current(&service) {
                    continue;
                }
                match event {
                    ClientEvent::Connected => {
                        service.inner.connected.send_replace(true);
                    }
                    ClientEvent::Disconnected { .. } => {
                        service.inner.connected.send_replace(false);
                    }
                    ClientEvent::Message(publish) => service.received(&publish.topic, &publish.payload, publish.retain),
                    ClientEvent::Skipped { topic, size } => {
                        tracing::warn!(topic, size, "skipped an MQTT message larger than serve accepts");
                    }
                }
            }
            if current(&service) {
                service.inner.connected.send_replace(false);
            }
        });
    }

    fn received(&self, topic: &str, payload: &Bytes, retained: bool) {
        if !self.ours(topic) {
            return;
        }
        let text = String::from_utf8_lossy(payload).into_owned();
        let now = iot2mqtt_contract::time::now();
        {
            let mut cache = lock(&self.inner.cache);
            if payload.is_empty() {
                cache.topics.remove(topic);
            } else {
                cache.seq += 1;
                let seq = cache.seq;
                let count = cache.topics.get(topic).map_or(0, |c| c.count) + 1;
                cache.topics.insert(
                    topic.to_string(),
                    Cached {
                        topic: topic.to_string(),
                        payload: text.clone(),
                        retained,
                        received: now.clone(),
                        count,
                        seq,
                    },
                );
                if cache.topics.len() > MAX_TOPICS
                    && let Some(oldest) = cache.topics.values().min_by_key(|c| c.seq).map(|c| c.topic.clone())
                {
                    cache.topics.remove(&oldest);
                }
            }
        }
        if topic.ends_with("/cmd/response")
            && let Ok(response) = serde_json::from_str::<Value>(&text)
            && let Some(id) = response.get("cmd_id").and_then(Value::as_str)
            && let Some(waiter) = lock(&self.inner.waiters).remove(id)
        {
            let _ = waiter.send(response);
        }
        // Most messages are not an instance's error: the suffix rules them out before the lock.
        if topic.ends_with("/error")
            && let Some(instance) = instance_error_topic(topic, &lock(&self.inner.settings).base_topic)
            && let Ok(error) = serde_json::from_str::<Value>(&text)
            && error.get("error_code").and_then(Value::as_str) == Some("PLUGIN_FAULT")
        {
            let mut faults = lock(&self.inner.faults);
            let reported = faults.entry(instance.to_string()).or_default();
            reported.count += 1;
            reported.times.record(Instant::now());
            reported.last = error.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        }
        let _ =
            self.inner.live.send(Arc::new(Live { topic: topic.to_string(), payload: text, received: now, retained }));
    }

    /// The plugin faults `instance` reported since it was last started (see [`Self::forget_faults`]).
    pub fn reported_faults(&self, instance: &InstanceId) -> Option<ReportedFaults> {
        lock(&self.inner.faults).get(instance.as_str()).cloned()
    }

    /// Start counting `instance`'s faults afresh (it is being started).
    pub fn forget_faults(&self, instance: &InstanceId) {
        lock(&self.inner.faults).remove(instance.as_str());
    }

    /// The cached message of a topic.
    pub fn get(&self, topic: &str) -> Option<Cached> {
        lock(&self.inner.cache).topics.get(topic).cloned()
    }

    /// Cached topics starting with `prefix`.
    pub fn topics(&self, prefix: &str) -> Vec<Cached> {
        let cache = lock(&self.inner.cache);
        cache
            .topics
            .range(prefix.to_string()..)
            .take_while(|(t, _)| t.starts_with(prefix))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Live messages from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Live>> {
        self.inner.live.subscribe()
    }

    /// Publish a message.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS, retain: bool) {
        let message = Message { topic: topic.to_string(), payload, qos, retain, replaceable: false };
        lock(&self.inner.outbox).push(message);
    }

    /// Send a command to a device and wait for its response, up to `timeout` plus a margin.
    /// `None` when no response came.
    pub async fn command(&self, topics: &Topics, device: &str, values: Value, timeout: Duration) -> Option<Value> {
        let id = format!("web-{}", hex::encode(rand::random::<[u8; 8]>()));
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.waiters).insert(id.clone(), tx);
        let payload = serde_json::json!({
            "id": id,
            "timestamp": iot2mqtt_contract::time::now(),
            "values": values,
            "timeout": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        self.publish(&topics.command(device), Bytes::from(payload.to_string()), QoS::AtLeastOnce, false);
        let answer = tokio::time::timeout(timeout + Duration::from_secs(2), rx).await.ok().and_then(Result::ok);
        lock(&self.inner.waiters).remove(&id);
        answer
    }

    /// Whether `topic` is one this service keeps: everything under the base topic, and of the
    /// discovery configs (the filter takes every one on the broker) only this installation's.
    fn ours(&self, topic: &str) -> bool {
        let settings = lock(&self.inner.settings);
        let Some(rest) = settings.discovery_prefix.as_deref().and_then(|p| topic.strip_prefix(p)) else {
            return true;
        };
        if topic.starts_with(&format!("{}/", settings.base_topic)) {
            return true;
        }
        let node = rest.split('/').nth(2).unwrap_or_default();
        node.starts_with(&iot2mqtt_runtime::discovery_node_prefix(&settings.base_topic))
    }

    /// Clear every retained topic of one instance (exactly its own: `B/…`), status included,
    /// and its Home Assistant discovery configs. The number of topics cleared.
    pub fn clear_retained(&self, instance: &InstanceId) -> usize {
        let settings = self.settings();
        let topics = Topics::new(&settings.base_topic, instance);
        let prefix = format!("{}/", topics.root());
        let mut doomed: Vec<String> = self
            .topics(&prefix)
            .into_iter()
            .filter(|c| c.retained || retained_by_contract(&c.topic[prefix.len()..]))
            .map(|c| c.topic)
            .collect();
        if let Some([configs, _]) = iot2mqtt_runtime::discovery_filters(&settings, instance) {
            let discovery_prefix = settings.discovery_prefix.clone().unwrap_or_default();
            doomed.extend(
                self.topics(&discovery_prefix)
                    .into_iter()
                    .filter(|c| iot2mqtt_broker::matches(&configs, &c.topic))
                    .map(|c| c.topic),
            );
        }
        for topic in &doomed {
            self.publish(topic, Bytes::new(), QoS::AtLeastOnce, true);
        }
        doomed.len()
    }
}

/// The instance whose own `error` topic (`{base}/v1/instances/{id}/error`) `topic` is.
fn instance_error_topic<'a>(topic: &'a str, base: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(base)?.strip_prefix("/v1/instances/")?;
    let (instance, leaf) = rest.split_once('/')?;
    (leaf == "error").then_some(instance)
}

/// Whether the contract publishes this topic (relative to `B/`) retained.
fn retained_by_contract(rest: &str) -> bool {
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(
        parts.as_slice(),
        ["status"]
            | ["meta", "devices_list"]
            | ["meta", "info"]
            | ["devices", _, "state"]
            | ["devices", _, "state", _]
            | ["devices", _, "availability"]
    )
}

/// How `serve`'s client connects with `settings`, as `client_id`.
fn client_options(settings: &MqttSettings, client_id: String) -> ClientOptions {
    ClientOptions {
        host: settings.host.clone(),
        port: settings.port,
        client_id,
        username: settings.username.clone(),
        password: settings.password.as_ref().map(|p| p.expose().to_string()),
        keepalive: settings.keepalive,
        will: None,
        max_packet: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        tls: iot2mqtt_runtime::client_tls(settings),
    }
}

/// Try `settings` without saving them: connect once, as a client of its own (so the running
/// session is not taken over), and disconnect. The error is the broker's answer or why it
/// could not be reached.
pub async fn test_connection(settings: &MqttSettings) -> Result<(), String> {
    let id = format!("{}-test-{}", client_id(settings), rand::random::<u32>());
    Session::probe(client_options(settings, id)).await
}

/// The client id `serve` connects with.
pub fn client_id(settings: &MqttSettings) -> String {
    format!("{}_web_{}", settings.client_prefix, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_error_topics() {
        for (topic, instance) in [
            ("IoT2mqtt/v1/instances/kitchen/error", Some("kitchen")),
            ("IoT2mqtt/v1/instances/kitchen/devices/l1/error", None),
            ("IoT2mqtt/v1/instances/kitchen/status", None),
            ("Other/v1/instances/kitchen/error", None),
        ] {
            assert_eq!(instance_error_topic(topic, "IoT2mqtt"), instance, "{topic}");
        }
    }

    #[test]
    fn contract_retained_topics() {
        for (topic, retained) in [
            ("status", true),
            ("meta/info", true),
            ("devices/l1/state", true),
            ("devices/l1/state/power", true),
            ("devices/l1/availability", true),
            ("devices/l1/error", false),
            ("devices/l1/events", false),
            ("devices/l1/cmd/response", false),
            ("error", false),
        ] {
            assert_eq!(retained_by_contract(topic), retained, "{topic}");
        }
    }
}
