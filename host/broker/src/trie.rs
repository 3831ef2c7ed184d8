//! A topic tree: subscriptions are stored by filter level (`+` and `#` as children), retained
//! messages by topic level, so matching walks only the branches that can match instead of
//! every filter or every retained topic.

use std::collections::HashMap;

/// A tree keyed by topic levels, holding `V`s at nodes.
#[derive(Debug)]
pub(crate) struct Trie<V> {
    root: Node<V>,
}

#[derive(Debug)]
struct Node<V> {
    value: Option<V>,
    children: HashMap<String, Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self { value: None, children: HashMap::new() }
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self { root: Node::default() }
    }
}

impl<V> Trie<V> {
    /// The value at exactly `path`, created with `make` when absent.
    pub(crate) fn entry(&mut self, path: &str, make: impl FnOnce() -> V) -> &mut V {
        let mut node = &mut self.root;
        for level in path.split('/') {
            node = node.children.entry(level.to_string()).or_default();
        }
        node.value.get_or_insert_with(make)
    }

    /// Set the value at exactly `path`.
    pub(crate) fn insert(&mut self, path: &str, value: V) {
        let mut node = &mut self.root;
        for level in path.split('/') {
            node = node.children.entry(level.to_string()).or_default();
        }
        node.value = Some(value);
    }

    /// Remove the value at exactly `path` (and the branches it leaves empty).
    pub(crate) fn remove(&mut self, path: &str) -> Option<V> {
        let levels: Vec<&str> = path.split('/').collect();
        remove(&mut self.root, &levels)
    }

    /// Change the value at exactly `path`; drop it when `keep` says so afterwards.
    pub(crate) fn update(&mut self, path: &str, change: impl FnOnce(&mut V), keep: impl FnOnce(&V) -> bool) {
        let levels: Vec<&str> = path.split('/').collect();
        let mut node = &mut self.root;
        for level in &levels {
            match node.children.get_mut(*level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(value) = node.value.as_mut() {
            change(value);
            if !keep(value) {
                self.remove(path);
            }
        }
    }

    /// Every value stored under a filter that matches the topic `topic` (this trie holds
    /// filters). Topics starting with `$` are not matched by leading wildcards.
    pub(crate) fn matching_filters<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a V)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let system = topic.starts_with('$');
        filters(&self.root, &levels, 0, system, &mut visit);
    }

    /// Every value stored at a topic the filter `filter` matches (this trie holds topics).
    pub(crate) fn matching_topics<'a>(&'a self, filter: &str, mut visit: impl FnMut(&'a V)) {
        let levels: Vec<&str> = filter.split('/').collect();
        topics(&self.root, &levels, 0, &mut visit);
    }

    /// Whether nothing is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.root.value.is_none() && self.root.children.is_empty()
    }
}

fn remove<V>(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
    match levels.split_first() {
        None => node.value.take(),
        Some((first, rest)) => {
            let child = node.children.get_mut(*first)?;
            let removed = remove(child, rest);
            if child.value.is_none() && child.children.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
    }
}

fn filters<'a, V>(node: &'a Node<V>, levels: &[&str], depth: usize, system: bool, visit: &mut impl FnMut(&'a V)) {
    let leading = depth == 0 && system;
    if !leading && let Some(hash) = node.children.get("#") {
        // `#` matches the parent level too ("a/#" matches "a").
        if let Some(value) = &hash.value {
            visit(value);
        }
    }
    let Some((first, rest)) = levels.split_first() else {
        if let Some(value) = &node.value {
            visit(value);
        }
        return;
    };
    if let Some(child) = node.children.get(*first) {
        filters(child, rest, depth + 1, system, visit);
    }
    if !leading && let Some(plus) = node.children.get("+") {
        filters(plus, rest, depth + 1, system, visit);
    }
}

fn topics<'a, V>(node: &'a Node<V>, levels: &[&str], depth: usize, visit: &mut impl FnMut(&'a V)) {
    let Some((first, rest)) = levels.split_first() else {
        if let Some(value) = &node.value {
            visit(value);
        }
        return;
    };
    match *first {
        "#" => {
            if let Some(value) = &node.value
                && depth > 0
            {
                visit(value);
            }
            every(node, depth, visit);
        }
        "+" => {
            for (level, child) in &node.children {
                if depth == 0 && level.starts_with('$') {
                    continue;
                }
                topics(child, rest, depth + 1, visit);
            }
        }
        level => {
            if let Some(child) = node.children.get(level) {
                topics(child, rest, depth + 1, visit);
            }
        }
    }
}

fn every<'a, V>(node: &'a Node<V>, depth: usize, visit: &mut impl FnMut(&'a V)) {
    for (level, child) in &node.children {
        if depth == 0 && level.starts_with('$') {
            continue;
        }
        if let Some(value) = &child.value {
            visit(value);
        }
        every(child, depth + 1, visit);
    }
}

/// Whether `filter` is a valid subscription filter.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['#', '+']),
    })
}

/// Whether `topic` is a valid topic to publish to.
pub(crate) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['#', '+', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters_matching(filters: &[&str], topic: &str) -> Vec<String> {
        let mut trie = Trie::default();
        for f in filters {
            *trie.entry(f, String::new) = f.to_string();
        }
        let mut out = Vec::new();
        trie.matching_filters(topic, |v| out.push(v.clone()));
        out.sort();
        out
    }

    #[test]
    fn filter_matching() {
        let all = ["a/b/c", "a/+/c", "a/#", "#", "+/b/+", "a/b", "+", "$SYS/#", "b/#"];
        let cases: [(&str, &[&str]); 5] = [
            ("a/b/c", &["#", "+/b/+", "a/#", "a/+/c", "a/b/c"]),
            ("a/b", &["#", "a/#", "a/b"]),
            ("a", &["#", "+", "a/#"]),
            ("$SYS/x", &["$SYS/#"]),
            ("c/d", &["#"]),
        ];
        for (topic, expected) in cases {
            assert_eq!(filters_matching(&all, topic), expected.to_vec(), "topic {topic}");
        }
    }

    #[test]
    fn topic_matching() {
        let mut trie = Trie::default();
        for t in ["a/b/c", "a/x/c", "a/b", "a", "$SYS/up", "b"] {
            *trie.entry(t, String::new) = t.to_string();
        }
        let cases: [(&str, &[&str]); 6] = [
            ("a/+/c", &["a/b/c", "a/x/c"]),
            ("a/#", &["a", "a/b", "a/b/c", "a/x/c"]),
            ("#", &["a", "a/b", "a/b/c", "a/x/c", "b"]),
            ("+", &["a", "b"]),
            ("$SYS/#", &["$SYS/up"]),
            ("a/b", &["a/b"]),
        ];
        for (filter, expected) in cases {
            let mut out = Vec::new();
            trie.matching_topics(filter, |v| out.push(v.clone()));
            out.sort();
            assert_eq!(out, expected.to_vec(), "filter {filter}");
        }
    }

    #[test]
    fn removal_prunes_branches() {
        let mut trie = Trie::default();
        *trie.entry("a/b/c", || 0) = 1;
        assert_eq!(trie.remove("a/b/c"), Some(1));
        assert!(trie.is_empty());
    }

    #[test]
    fn validity() {
        for (f, ok) in [("a/#", true), ("#", true), ("a/#/b", false), ("a+/b", false), ("+/+", true), ("", false)] {
            assert_eq!(valid_filter(f), ok, "{f}");
        }
        for (t, ok) in [("a/b", true), ("a/+", false), ("", false), ("a/#", false)] {
            assert_eq!(valid_topic(t), ok, "{t}");
        }
    }
}
