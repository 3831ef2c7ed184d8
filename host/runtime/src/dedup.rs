//! Duplicate command detection (contract, section 4, rule 4): a command id seen in the last
//! five minutes is not executed again; its first outcome is answered again, once per copy.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// More ids than this and the oldest are forgotten early, so a flood cannot exhaust memory.
const MAX_REMEMBERED: usize = 10_000;

/// What is known of a command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: execute it.
    New,
    /// Its first copy is still running; it will be answered when that finishes.
    Running,
    /// Answered before: send this response again.
    Answered(Bytes),
}

#[derive(Debug)]
enum Entry {
    Running { copies: u32 },
    Answered(Bytes),
}

/// Command ids of the last [`Dedup::window`].
#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    entries: HashMap<String, Entry>,
    order: VecDeque<(Instant, String)>,
}

impl Dedup {
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, entries: HashMap::new(), order: VecDeque::new() }
    }

    /// Look `key` up, remembering it when new.
    pub(crate) fn check(&mut self, key: &str, now: Instant) -> Seen {
        self.forget_before(now);
        match self.entries.get_mut(key) {
            Some(Entry::Running { copies }) => {
                *copies += 1;
                Seen::Running
            }
            Some(Entry::Answered(payload)) => Seen::Answered(payload.clone()),
            None => {
                if self.order.len() >= MAX_REMEMBERED
                    && let Some((_, oldest)) = self.order.pop_front()
                {
                    self.entries.remove(&oldest);
                }
                self.entries.insert(key.to_string(), Entry::Running { copies: 0 });
                self.order.push_back((now, key.to_string()));
                Seen::New
            }
        }
    }

    /// Record the response of `key`; returns how many more copies arrived while it ran, each
    /// of which is owed the same response.
    pub(crate) fn answer(&mut self, key: &str, response: Bytes) -> u32 {
        match self.entries.get_mut(key) {
            Some(entry) => {
                let copies = match entry {
                    Entry::Running { copies } => *copies,
                    Entry::Answered(_) => 0,
                };
                *entry = Entry::Answered(response);
                copies
            }
            None => 0,
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window() {
        let mut d = Dedup::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(d.check("a", t0), Seen::New);
        assert_eq!(d.check("a", t0), Seen::Running);
        assert_eq!(d.check("a", t0), Seen::Running);
        assert_eq!(d.answer("a", Bytes::from_static(b"r")), 2);
        assert_eq!(d.check("a", t0 + Duration::from_secs(299)), Seen::Answered(Bytes::from_static(b"r")));
        assert_eq!(d.check("a", t0 + Duration::from_secs(300)), Seen::New);
        assert_eq!(d.check("b", t0 + Duration::from_secs(300)), Seen::New);
    }

    #[test]
    fn bounded() {
        let mut d = Dedup::new(Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..=MAX_REMEMBERED {
            assert_eq!(d.check(&i.to_string(), t0), Seen::New);
        }
        assert_eq!(d.check("0", t0), Seen::New, "the oldest id was forgotten");
        assert!(d.entries.len() <= MAX_REMEMBERED + 1);
    }
}
