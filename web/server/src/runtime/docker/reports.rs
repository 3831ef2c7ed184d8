//! What a container's host tells on MQTT, read for the Docker runtime: the plugin faults it
//! counted (its `B/error` topic) and the outcome of a hot swap (its retained `B/meta/info`
//! naming the new plugin, or `PLUGIN_REJECTED` on `B/error`). In the embedded runtime the same
//! facts come from the instance handle.

use std::time::{Duration, Instant};

use iot2mqtt_contract::{ErrorCode, InstanceId, Topics};
use serde_json::Value;

use super::DockerRuntime;
use crate::runtime::{NewPlugin, Observed, RuntimeError};

/// How long a container's host gets to report a swapped plugin: it notices the replaced file,
/// loads (maybe compiles) the plugin and initialises every device first.
const SWAP_REPORT_DEADLINE: Duration = Duration::from_secs(20);

impl DockerRuntime {
    /// `container` (what Docker sees) with the plugin faults the instance reported on MQTT.
    pub(super) fn with_reported_faults(&self, instance: &InstanceId, mut observed: Observed) -> Observed {
        if let Some(faults) = self.reports.reported_faults(instance) {
            observed.restarts += faults.count;
            observed.crash_looping |= faults.times.in_a_row(Instant::now());
            observed.last_error.get_or_insert(faults.last);
        }
        observed
    }

    /// Wait until the container's host runs `plugin` (its file is in the container's plugin
    /// folder already; the host watches it) or rejects it. The host names the new plugin in
    /// its retained info at once, and adds the swap's pause when every device has switched.
    pub(super) async fn await_swap(
        &self,
        instance: &InstanceId,
        plugin: NewPlugin,
    ) -> Result<Option<Duration>, RuntimeError> {
        let topics = Topics::new(&self.reports.settings().base_topic, instance);
        let (info, error) = (topics.info(), topics.instance_error());
        let sha = plugin.active.sha256.as_str();
        // Subscribed first, then the retained info checked: a report that came in between the
        // file's replacement and this call is in the cache, a later one in the stream.
        let mut live = self.reports.subscribe();
        let mut runs_it = false;
        if let Some(cached) = self.reports.get(&info) {
            match swapped(&cached.payload, sha) {
                Swapped::Done(pause) => return Ok(pause),
                Swapped::Switching => runs_it = true,
                Swapped::No => {}
            }
        }
        let wait = async {
            loop {
                let message = match live.recv().await {
                    Ok(message) => message,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(RuntimeError::Plugin("the MQTT service stopped".into()));
                    }
                };
                if message.topic == info {
                    match swapped(&message.payload, sha) {
                        Swapped::Done(pause) => return Ok(pause),
                        Swapped::Switching => runs_it = true,
                        Swapped::No => {}
                    }
                }
                if message.topic == error
                    && !runs_it
                    && let Some(reason) = rejection(&message.payload)
                {
                    return Err(RuntimeError::Plugin(reason));
                }
            }
        };
        match tokio::time::timeout(SWAP_REPORT_DEADLINE, wait).await {
            Ok(outcome) => outcome,
            // It runs the plugin, and a device has not switched yet: the pause is unknown.
            Err(_) if runs_it => Ok(None),
            Err(_) => Err(RuntimeError::Plugin("the instance did not report the new plugin in time".to_string())),
        }
    }
}

/// What an info payload says of the swap to plugin `sha`.
#[derive(Debug, PartialEq)]
enum Swapped {
    /// It runs another plugin.
    No,
    /// It runs `sha`; devices are still switching.
    Switching,
    /// It runs `sha` on every device, after this pause (`None`: a host that does not say).
    Done(Option<Duration>),
}

/// Read what an info payload says of the swap to `sha`.
fn swapped(info: &str, sha: &str) -> Swapped {
    let payload: Value = serde_json::from_str(info).unwrap_or(Value::Null);
    if payload.pointer("/plugin/sha256").and_then(Value::as_str) != Some(sha) {
        return Swapped::No;
    }
    match payload.pointer("/last_swap/pause_ms").and_then(Value::as_f64) {
        Some(ms) => Swapped::Done(Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0))),
        None if payload.get("swaps").is_none() => Swapped::Done(None),
        None => Swapped::Switching,
    }
}

/// The reason of a `PLUGIN_REJECTED` error payload; `None` for any other payload.
fn rejection(error: &str) -> Option<String> {
    let payload: Value = serde_json::from_str(error).ok()?;
    (payload["error_code"] == ErrorCode::PluginRejected.as_str())
        .then(|| payload["message"].as_str().unwrap_or("the plugin was rejected").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_from_the_hosts_payloads() {
        let info = r#"{"instance_id":"a","plugin":{"name":"demo","version":"1","sha256":"abc"},"swaps":1}"#;
        assert_eq!(swapped(info, "abc"), Swapped::Switching);
        assert_eq!(swapped(info, "abd"), Swapped::No);
        assert_eq!(swapped("not json", "abc"), Swapped::No);
        let done = r#"{"plugin":{"sha256":"abc"},"swaps":1,"last_swap":{"devices":2,"pause_ms":1.5}}"#;
        assert_eq!(swapped(done, "abc"), Swapped::Done(Some(Duration::from_micros(1500))));
        let silent = r#"{"plugin":{"sha256":"abc"}}"#;
        assert_eq!(swapped(silent, "abc"), Swapped::Done(None));
        let rejected = r#"{"error_code":"PLUGIN_REJECTED","message":"no device export","severity":"error"}"#;
        assert_eq!(rejection(rejected).as_deref(), Some("no device export"));
        assert_eq!(rejection(r#"{"error_code":"PLUGIN_FAULT","message":"trap"}"#), None);
        assert_eq!(rejection("{"), None);
    }
}
