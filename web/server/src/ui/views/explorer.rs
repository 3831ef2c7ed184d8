//! The MQTT explorer: the topic tree under the base topic with message counts, a topic's last
//! message, a publish form (with the contract's command payload as a template on `…/cmd`
//! topics), and clearing an instance's retained topics.

use std::collections::BTreeMap;

use askama::Template;
use serde_json::Value;

use super::Chrome;
use crate::mqtt::Cached;

/// How deep the tree is indented at most (deeper rows share the last step).
pub const MAX_DEPTH: usize = 10;

/// The command payload offered on `…/cmd` topics (the contract's full form).
pub const COMMAND_TEMPLATE: &str =
    "{\n  \"id\": \"explorer-1\",\n  \"values\": {\"power\": true},\n  \"timeout\": 10\n}";

/// One row of the topic tree: a level of the topic names, with the messages under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    /// How deep (0 for the base topic's children).
    pub depth: usize,
    /// This level's name.
    pub name: String,
    /// The topic up to this level.
    pub topic: String,
    /// Messages on this topic itself (0 when it is only a level of others).
    pub own: u64,
    /// Messages on it and every topic under it.
    pub total: u64,
    /// A message was seen on this topic itself.
    pub leaf: bool,
    /// Its last message was retained.
    pub retained: bool,
    /// It is the one shown.
    pub selected: bool,
}

/// The message shown beside the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its topic.
    pub topic: String,
    /// The payload, pretty-printed when it is JSON.
    pub payload: String,
    /// It is JSON.
    pub json: bool,
    /// It was retained.
    pub retained: bool,
    /// When it arrived (RFC 3339).
    pub received: String,
    /// Messages seen on the topic.
    pub count: u64,
}

/// The explorer page.
#[derive(Debug, Template)]
#[template(path = "explorer.html")]
pub struct ExplorerPage {
    /// The frame.
    pub chrome: Chrome,
    /// The base topic.
    pub base: String,
    /// The topics whose messages refresh the page.
    pub live_prefix: String,
    /// The filter as typed.
    pub filter: String,
    /// The tree, in order.
    pub rows: Vec<TreeRow>,
    /// The topic shown.
    pub selected: Option<Selected>,
    /// The publish form's topic.
    pub topic: String,
    /// Its payload.
    pub payload: String,
    /// The command template, offered on `…/cmd` topics.
    pub template: &'static str,
    /// Instances whose retained topics can be cleared.
    pub instances: Vec<String>,
    /// What just happened.
    pub notice: Option<(bool, String)>,
}

/// The tree of `cached` topics, filtered by `filter` (a topic shows when its name contains
/// it), with `selected` marked. Topics are sorted by name; every level is a row.
pub fn tree(base: &str, cached: &[Cached], filter: &str, selected: Option<&str>) -> Vec<TreeRow> {
    let filter = filter.trim().to_lowercase();
    let mut topics: BTreeMap<&str, &Cached> = BTreeMap::new();
    for message in cached {
        if filter.is_empty() || message.topic.to_lowercase().contains(&filter) {
            topics.insert(message.topic.as_str(), message);
        }
    }
    // Every level of every topic, with the counts of what is under it.
    let mut levels: BTreeMap<String, TreeRow> = BTreeMap::new();
    for (topic, message) in &topics {
        let relative = topic.strip_prefix(base).map(|r| r.trim_start_matches('/')).unwrap_or(topic);
        let prefix = if relative.len() < topic.len() { format!("{base}/") } else { String::new() };
        let parts: Vec<&str> = relative.split('/').collect();
        for depth in 0..parts.len() {
            let path = format!("{prefix}{}", parts[..=depth].join("/"));
            let row = levels.entry(path.clone()).or_insert_with(|| TreeRow {
                depth: depth.min(MAX_DEPTH),
                name: parts[depth].to_string(),
                selected: selected == Some(path.as_str()),
                topic: path,
                own: 0,
                total: 0,
                leaf: false,
                retained: false,
            });
            row.total += message.count;
            if depth + 1 == parts.len() {
                row.own = message.count;
                row.leaf = true;
                row.retained = message.retained;
            }
        }
    }
    // In tree order: a level's rows right after it ("a/b" before "a/b/c" before "a/c").
    let mut rows: Vec<TreeRow> = levels.into_values().collect();
    rows.sort_by(|a, b| a.topic.split('/').cmp(b.topic.split('/')));
    rows
}

/// The message of `topic`, pretty-printed when it is JSON.
pub fn selected(cached: &[Cached], topic: &str) -> Option<Selected> {
    let message = cached.iter().find(|c| c.topic == topic)?;
    let parsed = serde_json::from_str::<Value>(&message.payload).ok().filter(|v| v.is_object() || v.is_array());
    let (payload, json) = match parsed {
        Some(value) => (serde_json::to_string_pretty(&value).unwrap_or_else(|_| message.payload.clone()), true),
        None => (message.payload.clone(), false),
    };
    Some(Selected {
        topic: message.topic.clone(),
        payload,
        json,
        retained: message.retained,
        received: message.received.clone(),
        count: message.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(topic: &str, payload: &str) -> Cached {
        Cached::for_tests(topic, payload, "2026-12-05T10:00:00.000Z")
    }

    #[test]
    fn topics_make_a_tree_with_counts_in_order() {
        let list = [
            cached("B/v1/instances/a/status", "online"),
            cached("B/v1/instances/a/devices/lamp/state", r#"{"power":true}"#),
            cached("B/v1/instances/a/devices/lamp/state/power", "true"),
            cached("B/v1/instances/b/status", "offline"),
        ];
        let rows = tree("B", &list, "", Some("B/v1/instances/a/status"));
        let names: Vec<(usize, &str, u64)> = rows.iter().map(|r| (r.depth, r.name.as_str(), r.total)).collect();
        assert_eq!(
            names,
            [
                (0, "v1", 4),
                (1, "instances", 4),
                (2, "a", 3),
                (3, "devices", 2),
                (4, "lamp", 2),
                (5, "state", 2),
                (6, "power", 1),
                (3, "status", 1),
                (2, "b", 1),
                (3, "status", 1),
            ]
        );
        assert!(rows[7].selected && rows[7].leaf && rows[5].leaf && !rows[4].leaf);
        let filtered = tree("B", &list, "Lamp", None);
        assert!(filtered.iter().filter(|r| r.leaf).all(|r| r.topic.contains("lamp")), "{filtered:?}");
        assert!(!filtered.iter().any(|r| r.name == "b" || r.name == "status"), "{filtered:?}");
    }

    #[test]
    fn json_payloads_are_pretty_printed() {
        let list = [cached("t/json", r#"{"a":1}"#), cached("t/text", "online")];
        let json = selected(&list, "t/json").unwrap();
        assert!(json.json && json.payload.contains("\n  \"a\": 1"), "{json:?}");
        let text = selected(&list, "t/text").unwrap();
        assert!(!text.json && text.payload == "online");
        assert!(selected(&list, "t/none").is_none());
    }
}
