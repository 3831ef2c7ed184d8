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
    /// folder already; the host watches it) or rejects it.
    pub(super) async fn await_swap(&self, instance: &InstanceId, plugin: NewPlugin) -> Result<(), RuntimeError> {
        let topics = Topics::new(&self.reports.settings().base_topic, instance);
        let (info, error) = (topics.info(), topics.instance_error());
        let sha = plugin.active.sha256.as_str();
        // Subscribed first, then the retained info checked: a report that came in between the
        // file's replacement and this call is in the cache, a later one in the stream.
        let mut live = self.reports.subscribe();
        if self.reports.get(&info).is_some_and(|cached| runs(&cached.payload, sha)) {
            return Ok(());
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
                if message.topic == info && runs(&message.payload, sha) {
                    return Ok(());
                }
                if message.topic == error
                    && let Some(reason) = rejection(&message.payload)
                {
                    return Err(RuntimeError::Plugin(reason));
                }
            }
        };
        tokio::time::timeout(SWAP_REPORT_DEADLINE, wait).await.unwrap_or_else(|_| {
            Err(RuntimeError::Plugin("the instance did not report the new plugin in time".to_string()))
        })
    }
}

/// Whether an info payload names the plugin `sha` as the running one.
fn runs(info: &str, sha: &str) -> bool {
    let payload: Value = serde_json::from_str(info).unwrap_or(Value::Null);
    payload.pointer("/plugin/sha256").and_then(Value::as_str) == Some(sha)
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
        let info = r#"{"instance_id":"a","plugin":{"name":"demo","version":"1","sha256":"abc"}}"#;
        assert!(runs(info, "abc"));
        assert!(!runs(info, "abd"));
        assert!(!runs("not json", "abc"));
        let rejected = r#"{"error_code":"PLUGIN_REJECTED","message":"no device export","severity":"error"}"#;
        assert_eq!(rejection(rejected).as_deref(), Some("no device export"));
        assert_eq!(rejection(r#"{"error_code":"PLUGIN_FAULT","message":"trap"}"#), None);
        assert_eq!(rejection("{"), None);
    }
}
