//! What an instance tells about itself: its [`InstanceStatus`] (connection, plugin, faults),
//! the crash-loop rule ([`FaultTimes`]), and what a hot swap did or why it did not.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use iot2mqtt_engine::{Failure, LoadError, PluginAbout};

/// Why a hot swap did not happen. The old plugin keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The new `.wasm` is not a usable plugin.
    #[error("the new plugin was rejected: {0}")]
    Load(#[from] LoadError),
    /// The new plugin failed to initialise a device.
    #[error("the new plugin was rejected: device \"{device}\": {failure}")]
    Init {
        /// The device.
        device: String,
        /// What the plugin said (or the fault).
        failure: Failure,
    },
    /// The instance has stopped.
    #[error("the instance is not running")]
    Stopped,
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// The plugin now running.
    pub plugin: PluginAbout,
    /// How many devices switched.
    pub devices: usize,
    /// The longest a device's jobs waited for the switch.
    pub pause: Duration,
}

/// What an instance reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Connected to the broker now.
    pub mqtt_connected: bool,
    /// Connected at least once.
    pub connected_once: bool,
    /// Reconnections after the first connection.
    pub reconnects: u64,
    /// Devices initialised and `online` announced.
    pub ready: bool,
    /// The plugin running.
    pub plugin: PluginAbout,
    /// Hot swaps so far.
    pub swaps: u64,
    /// Plugin faults so far (each one restarts the plugin of the device it happened in).
    pub faults: u64,
    /// When the last few faults happened.
    pub recent_faults: FaultTimes,
    /// The last fault or rejection.
    pub last_error: Option<String>,
    /// The longest a device waited for the latest swap to complete.
    pub last_swap_pause: Duration,
    /// Devices switched to the plugin of the latest swap so far.
    pub switched: usize,
}

/// Faults in a row that make a crash loop (see [`InstanceStatus::crash_looping`]).
pub const CRASH_LOOP_FAULTS: usize = 5;
/// Faults at most this far apart are in a row: the longest restart delay, plus the time after
/// which a restarted plugin counts as healthy again.
pub const CRASH_LOOP_GAP: Duration = crate::backoff::MAX_DELAY.saturating_add(crate::worker::HEALTHY_AFTER);

impl InstanceStatus {
    /// The plugin keeps faulting (see [`FaultTimes::in_a_row`]).
    pub fn crash_looping(&self, now: Instant) -> bool {
        self.recent_faults.in_a_row(now)
    }

    pub(crate) fn record_fault(&mut self, at: Instant, message: String) {
        self.faults += 1;
        self.last_error = Some(message);
        self.recent_faults.record(at);
    }
}

/// When the last few plugin faults happened (at most [`CRASH_LOOP_FAULTS`]): what tells a
/// crash loop, wherever the faults are seen (in this process, or on an instance's MQTT
/// `error` topic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultTimes(VecDeque<Instant>);

impl FaultTimes {
    /// A fault happened `at`.
    pub fn record(&mut self, at: Instant) {
        if self.0.len() == CRASH_LOOP_FAULTS {
            self.0.pop_front();
        }
        self.0.push_back(at);
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A crash loop: the last [`CRASH_LOOP_FAULTS`] faults came each within [`CRASH_LOOP_GAP`]
    /// of the one before, and the last within that gap before `now`. Restarts back off up to
    /// five minutes, so a plugin that never recovers stays in the loop; one that runs quietly
    /// for a gap leaves it.
    pub fn in_a_row(&self, now: Instant) -> bool {
        let Some(last) = self.0.back() else { return false };
        self.0.len() >= CRASH_LOOP_FAULTS
            && now.saturating_duration_since(*last) <= CRASH_LOOP_GAP
            && self.0.iter().zip(self.0.iter().skip(1)).all(|(a, b)| b.saturating_duration_since(*a) <= CRASH_LOOP_GAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> InstanceStatus {
        InstanceStatus {
            mqtt_connected: true,
            connected_once: true,
            reconnects: 0,
            ready: true,
            plugin: PluginAbout { name: "p".into(), version: "1".into(), sha256: String::new() },
            swaps: 0,
            faults: 0,
            recent_faults: FaultTimes::default(),
            last_error: None,
            last_swap_pause: Duration::ZERO,
            switched: 0,
        }
    }

    #[test]
    fn a_crash_loop_is_faults_in_a_row_and_ends_when_they_stop() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut s = status();
        // Restarts back off: 0 s, 1 s, 2 s, 4 s… then every five minutes.
        for (n, secs) in [0, 1, 3, 7].into_iter().enumerate() {
            s.record_fault(at(secs), format!("fault {n}"));
        }
        assert!(!s.crash_looping(at(8)), "not yet");
        s.record_fault(at(15), "the last straw".into());
        assert!(s.crash_looping(at(16)));
        assert_eq!((s.faults, s.last_error.as_deref()), (CRASH_LOOP_FAULTS as u64, Some("the last straw")));
        // A plugin that never recovers keeps faulting at the longest delay: still a loop.
        for n in 1..=10 {
            s.record_fault(at(15 + 300 * n), "again".into());
        }
        assert!(s.crash_looping(at(15 + 300 * 10 + 1)));
        assert_eq!(s.recent_faults.len(), CRASH_LOOP_FAULTS);
        // Quiet for a gap: out of the loop.
        assert!(!s.crash_looping(at(15 + 300 * 10) + CRASH_LOOP_GAP + Duration::from_secs(1)));

        // Rare faults, each after a healthy stretch, are not a loop.
        let mut rare = status();
        for n in 0..10u32 {
            rare.record_fault(start + (CRASH_LOOP_GAP + Duration::from_secs(1)) * n, "rare".into());
        }
        assert!(!rare.crash_looping(start + (CRASH_LOOP_GAP + Duration::from_secs(1)) * 9));
    }
}
