use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{Pollable, poll};

/// The host's signal that it has other work for the plugin, given to [`crate::Connector::listen`].
#[derive(Debug)]
pub struct Wake<'a> {
    pollable: &'a Pollable,
}

/// Why [`Wake::wait`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Woken {
    /// The host has work: return from `listen` now.
    Work,
    /// These of the given sources are ready (indices into the slice passed to `wait`).
    Ready(Vec<usize>),
    /// The timeout passed.
    Timeout,
}

impl<'a> Wake<'a> {
    pub(crate) fn new(pollable: &'a Pollable) -> Self {
        Self { pollable }
    }

    /// Whether the host is waiting for `listen` to return.
    pub fn requested(&self) -> bool {
        self.pollable.ready()
    }

    /// Block until the host has work, one of `sources` is ready, or `timeout` has passed.
    /// Host work wins over ready sources, so a busy device never starves commands.
    pub fn wait(&self, sources: &[&Pollable], timeout: Duration) -> Woken {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let timer = monotonic_clock::subscribe_duration(nanos);
        let mut all: Vec<&Pollable> = Vec::with_capacity(sources.len() + 2);
        all.push(self.pollable);
        all.push(&timer);
        all.extend_from_slice(sources);
        let ready = poll(&all);
        if ready.contains(&0) {
            return Woken::Work;
        }
        let sources: Vec<usize> = ready.iter().filter(|&&i| i >= 2).map(|&i| i as usize - 2).collect();
        if sources.is_empty() { Woken::Timeout } else { Woken::Ready(sources) }
    }
}
