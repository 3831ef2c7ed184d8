//! The conformance kit: checks a running connector instance against the MQTT contract
//! (`shared/contract.md`) from the outside, over MQTT only, whatever language or process runs
//! it. Each rule names the contract section it checks and passes, fails or is skipped with a
//! reason; the report prints one line per rule or serialises to JSON for CI.
//!
//! The kit only publishes what the contract says a connector must answer: state requests,
//! commands that set a device's values to what it already reports (unless told which command
//! to send), and commands that must not be executed. It must not touch anything outside the
//! instance's topics.

mod probe;
mod rules;

use std::fmt::Write as _;
use std::time::Duration;

use iot2mqtt_contract::InstanceId;
pub use iot2mqtt_mqtt::{ClientOptions, TlsOptions};
use serde::Serialize;
use serde_json::{Map, Value};

/// What to check, and how far to go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The instance.
    pub instance: InstanceId,
    /// `MQTT_BASE_TOPIC` of the instance.
    pub base_topic: String,
    /// The device the per-device rules use (default: the first enabled, online one).
    pub device: Option<String>,
    /// A command's values the device accepts (default: a boolean of its state, set to the
    /// value it has, so nothing changes).
    pub command: Option<Map<String, Value>>,
    /// A group to send a command to, when the instance has groups.
    pub group: Option<String>,
    /// A shell command that kills the connector's process without letting it clean up, to see
    /// its Last Will (e.g. `docker kill <container>`). The last rule run.
    pub kill: Option<String>,
    /// How long to wait for each answer.
    pub wait: Duration,
}

/// How a rule ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The connector does what the rule says.
    Pass,
    /// It does not.
    Fail,
    /// The rule could not be checked (the detail says why and what would let it run).
    Skip,
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule's name (`status`, `command.stale`, …).
    pub rule: &'static str,
    /// The contract section it checks (`§4 commands, 2`).
    pub section: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
}

/// Every rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The instance checked.
    pub instance: String,
    /// The device the per-device rules used.
    pub device: Option<String>,
    /// Rules passed.
    pub passed: usize,
    /// Rules failed.
    pub failed: usize,
    /// Rules skipped.
    pub skipped: usize,
    /// In the order they ran.
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(instance: &InstanceId) -> Self {
        Self { instance: instance.to_string(), device: None, passed: 0, failed: 0, skipped: 0, findings: Vec::new() }
    }

    fn record(&mut self, rule: &'static str, section: &'static str, outcome: Outcome, detail: impl Into<String>) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail => self.failed += 1,
            Outcome::Skip => self.skipped += 1,
        }
        self.findings.push(Finding { rule, section, outcome, detail: detail.into() });
    }

    /// No rule failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The finding of `rule`, if it ran.
    pub fn finding(&self, rule: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.rule == rule)
    }

    /// One line per rule, then the totals.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let width = self.findings.iter().map(|f| f.rule.len()).max().unwrap_or(0);
        for f in &self.findings {
            let outcome = match f.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            let _ = writeln!(out, "{outcome}  {:<width$}  {:<20}  {}", f.rule, f.section, f.detail);
        }
        let _ = writeln!(
            out,
            "{}: {} passed, {} failed, {} skipped",
            self.instance, self.passed, self.failed, self.skipped
        );
        out
    }
}

/// Connect with `options` and check `target`'s instance, rule by rule.
pub async fn check(options: ClientOptions, target: Target) -> Report {
    rules::run(options, target).await
}
