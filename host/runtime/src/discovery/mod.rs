//! Home Assistant MQTT discovery: every device of the instance announced, retained, under
//! `{prefix}/{component}/{node}/{object}/config`, on the contract's own topics (see
//! `configs.rs`). This part keeps them true over time:
//!
//! - published when the instance is ready, again when Home Assistant says `online` on
//!   `{prefix}/status` and after a reconnect (a broker may have lost retained messages);
//! - updated when a device's description changes (a hot swap, a restarted worker), and for
//!   devices without a description, when their state gains a numeric or boolean key;
//! - removed (an empty retained message) when nothing owns them any more. The instance
//!   subscribes to its own configs, so what an earlier run left behind (a device since removed
//!   or disabled, discovery turned off) comes back to it and is cleared, and only once the
//!   device it belongs to is settled, so that Home Assistant never sees a live entity vanish
//!   and come back.
//!
//! Deleting an instance is the orchestrator's part: it clears the configs with the rest of
//! the instance's retained topics.

mod configs;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use iot2mqtt_mqtt::{Message, QoS};
use serde_json::Value;

use crate::report::Reporter;
pub(crate) use configs::{Config, DeviceFacts, Namer};

/// An instance's discovery filters: every config of its own, and Home Assistant's status.
/// `None` when the installation turned discovery off. For brokers that grant topics per
/// account, and for clearing a deleted instance's configs.
pub fn discovery_filters(
    settings: &iot2mqtt_contract::MqttSettings,
    instance: &iot2mqtt_contract::InstanceId,
) -> Option<[String; 2]> {
    let prefix = settings.discovery_prefix.as_deref()?;
    let topics = iot2mqtt_contract::Topics::new(&settings.base_topic, instance);
    let namer = Namer::new(prefix, &settings.base_topic, topics, instance.as_str(), settings.qos);
    Some([namer.own_configs(), namer.ha_status()])
}

/// The start every node id of an installation with `base_topic` shares (`IoT2mqtt_`): a node
/// is this and the instance id.
pub fn discovery_node_prefix(base_topic: &str) -> String {
    format!("{}_", configs::safe(base_topic))
}

/// Who a config belongs to: a device, or the instance itself (`None`).
type Owner = Option<String>;

/// One instance's discovery state.
#[derive(Debug)]
pub(crate) struct Discovery {
    namer: Namer,
    /// The instance's switch: off, every config of it is cleared and none published.
    enabled: bool,
    /// What is published now, by topic.
    published: BTreeMap<String, (Owner, Bytes)>,
    /// Configs of this instance found on the broker that it does not publish, by topic.
    found: BTreeMap<String, Owner>,
    /// Owners whose configs are all known: anything else of theirs is stale.
    settled: BTreeSet<Owner>,
    /// Devices without a description: the state keys their fallback sensors were made from.
    fallback_keys: BTreeMap<String, Vec<String>>,
}

impl Discovery {
    pub(crate) fn new(namer: Namer, enabled: bool) -> Self {
        Self {
            namer,
            enabled,
            published: BTreeMap::new(),
            found: BTreeMap::new(),
            settled: BTreeSet::new(),
            fallback_keys: BTreeMap::new(),
        }
    }

    pub(crate) fn namer(&self) -> &Namer {
        &self.namer
    }

    /// Whether the instance publishes discovery at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The filters the instance subscribes to: its own configs (to clear what is stale) and,
    /// when enabled, Home Assistant's status.
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        let mut filters = vec![self.namer.own_configs()];
        if self.enabled {
            filters.push(self.namer.ha_status());
        }
        filters
    }

    /// Whether `topic` is discovery's to handle.
    pub(crate) fn handles(&self, topic: &str) -> bool {
        topic == self.namer.ha_status() || self.namer.is_own_config(topic)
    }

    /// Make `owner`'s configs exactly `configs`: publish what is new or changed, clear what it
    /// no longer has, and from now on clear anything else of its found on the broker.
    pub(crate) fn sync(&mut self, reporter: &Reporter, owner: Owner, configs: Vec<Config>) {
        let configs = if self.enabled { configs } else { Vec::new() };
        let wanted: BTreeSet<String> = configs.iter().map(|c| c.topic.clone()).collect();
        let gone: Vec<String> = self
            .published
            .iter()
            .filter(|(topic, (o, _))| *o == owner && !wanted.contains(*topic))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in gone {
            self.published.remove(&topic);
            clear(reporter, topic);
        }
        for Config { topic, payload } in configs {
            let bytes = Bytes::from(payload.to_string());
            if self.published.get(&topic).is_some_and(|(_, old)| *old == bytes) {
                continue;
            }
            self.found.remove(&topic);
            publish(reporter, topic.clone(), bytes.clone());
            self.published.insert(topic, (owner.clone(), bytes));
        }
        self.settled.insert(owner);
    }

    /// Clear what was found on the broker and is stale: owners that are settled, and those
    /// that `current` no longer knows (a removed or disabled device).
    pub(crate) fn sweep(&mut self, reporter: &Reporter, current: impl Fn(&Owner) -> bool) {
        let stale: Vec<String> = self
            .found
            .iter()
            .filter(|(_, owner)| !self.enabled || self.settled.contains(*owner) || !current(owner))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in stale {
            self.found.remove(&topic);
            clear(reporter, topic);
        }
    }

    /// A message on one of discovery's topics. Returns whether Home Assistant came online
    /// (everything was published again).
    pub(crate) fn received(&mut self, reporter: &Reporter, topic: &str, payload: &[u8]) -> bool {
        if topic == self.namer.ha_status() {
            if payload == b"online" && self.enabled {
                tracing::info!("Home Assistant is online: publishing discovery again");
                for (topic, (_, bytes)) in &self.published {
                    publish(reporter, topic.clone(), bytes.clone());
                }
                return true;
            }
            return false;
        }
        if payload.is_empty() {
            self.found.remove(topic);
        } else if !self.published.contains_key(topic) {
            let owner = self.owner_of(payload);
            self.found.insert(topic.to_string(), owner);
        }
        false
    }

    /// Publish everything again (after a reconnect).
    pub(crate) fn republish(&self, reporter: &Reporter) {
        for (topic, (_, bytes)) in &self.published {
            publish(reporter, topic.clone(), bytes.clone());
        }
    }

    /// For a device without a description: whether its state's numeric and boolean keys
    /// differ from those its sensors were made from (and remember them).
    pub(crate) fn fallback_changed(&mut self, device: &str, state: &iot2mqtt_contract::message::Object) -> bool {
        let keys: Vec<String> = state
            .iter()
            .filter(|(k, v)| k.as_str() != "online" && (v.is_boolean() || v.is_number()))
            .map(|(k, _)| k.clone())
            .collect();
        if self.fallback_keys.get(device) == Some(&keys) {
            return false;
        }
        self.fallback_keys.insert(device.to_string(), keys);
        true
    }

    /// The owner a found config names in its `device.identifiers`.
    fn owner_of(&self, payload: &[u8]) -> Owner {
        let config: Value = serde_json::from_slice(payload).unwrap_or_default();
        let identifier = config["device"]["identifiers"][0].as_str().unwrap_or_default();
        identifier.strip_prefix(self.namer.node.as_str()).and_then(|rest| rest.strip_prefix('_')).map(str::to_string)
    }
}

fn publish(reporter: &Reporter, topic: String, payload: Bytes) {
    reporter.outbox().push(Message { topic, payload, qos: QoS::AtLeastOnce, retain: true, replaceable: true });
}

fn clear(reporter: &Reporter, topic: String) {
    tracing::debug!(%topic, "clearing a discovery config");
    publish(reporter, topic, Bytes::new());
}

#[cfg(test)]
mod tests {
    use iot2mqtt_contract::{InstanceId, Topics};
    use iot2mqtt_mqtt::Outbox;
    use serde_json::json;

    use super::*;

    fn setup(enabled: bool) -> (Discovery, Reporter, Outbox) {
        let id = InstanceId::new("home".to_string()).unwrap();
        let topics = Topics::new("IoT2mqtt", &id);
        let outbox = Outbox::new(100);
        let reporter = Reporter::new(topics.clone(), outbox.clone(), QoS::AtLeastOnce, true);
        let namer = Namer::new("homeassistant", "IoT2mqtt", topics, "home", 1);
        (Discovery::new(namer, enabled), reporter, outbox)
    }

    fn drain(outbox: &Outbox) -> Vec<(String, bool)> {
        std::iter::from_fn(|| outbox.pop()).map(|m| (m.topic, m.payload.is_empty())).collect()
    }

    fn config(topic: &str) -> Config {
        Config { topic: topic.into(), payload: json!({"device": {"identifiers": ["IoT2mqtt_home_lamp"]}}) }
    }

    const LIGHT: &str = "homeassistant/light/IoT2mqtt_home/lamp_light/config";
    const SWITCH: &str = "homeassistant/switch/IoT2mqtt_home/lamp_switch/config";
    const OLD: &str = "homeassistant/sensor/IoT2mqtt_home/gone_t/config";

    #[test]
    fn a_sync_publishes_changes_only_and_clears_what_went() {
        let (mut d, reporter, outbox) = setup(true);
        d.sync(&reporter, Some("lamp".into()), vec![config(LIGHT), config(SWITCH)]);
        assert_eq!(drain(&outbox), [(LIGHT.into(), false), (SWITCH.into(), false)]);
        d.sync(&reporter, Some("lamp".into()), vec![config(LIGHT)]);
        assert_eq!(drain(&outbox), [(SWITCH.into(), true)], "unchanged configs are not sent again");
        assert!(d.received(&reporter, "homeassistant/status", b"online"));
        assert_eq!(drain(&outbox), [(LIGHT.into(), false)]);
    }

    #[test]
    fn found_configs_are_cleared_once_their_owner_is_settled_or_gone() {
        let (mut d, reporter, outbox) = setup(true);
        let lamp_only = |owner: &Owner| owner.as_deref().is_none_or(|o| o == "lamp");
        // An earlier run's switch of the lamp, and a config of a device that is gone.
        d.received(
            &reporter,
            SWITCH,
            json!({"device": {"identifiers": ["IoT2mqtt_home_lamp"]}}).to_string().as_bytes(),
        );
        d.received(&reporter, OLD, json!({"device": {"identifiers": ["IoT2mqtt_home_gone"]}}).to_string().as_bytes());
        d.sweep(&reporter, lamp_only);
        assert_eq!(drain(&outbox), [(OLD.into(), true)], "the lamp is not settled yet");
        d.sync(&reporter, Some("lamp".into()), vec![config(LIGHT)]);
        d.sweep(&reporter, lamp_only);
        assert_eq!(drain(&outbox), [(LIGHT.into(), false), (SWITCH.into(), true)]);
        // Our own publications coming back are not stale.
        d.received(&reporter, LIGHT, b"{}");
        d.sweep(&reporter, lamp_only);
        assert!(drain(&outbox).is_empty());
    }

    #[test]
    fn switched_off_everything_found_is_cleared_and_nothing_published() {
        let (mut d, reporter, outbox) = setup(false);
        assert_eq!(d.subscriptions(), ["homeassistant/+/IoT2mqtt_home/+/config"]);
        d.received(&reporter, LIGHT, b"{}");
        d.sync(&reporter, Some("lamp".into()), vec![config(LIGHT)]);
        d.sweep(&reporter, |_| true);
        assert_eq!(drain(&outbox), [(LIGHT.into(), true)]);
        assert!(!d.received(&reporter, "homeassistant/status", b"online"));
        assert!(drain(&outbox).is_empty());
    }
}
