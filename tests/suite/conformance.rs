//! The conformance kit (`iot2mqtt conformance`) run as a connector's author runs it, from
//! outside over MQTT, against the connectors the product has: the demo and Yeelight plugins in
//! `iot2mqtt-host` processes (killed at the end to see their Last Will), the Python reference
//! connector, and an impostor that only says it is online, which must fail.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::baseline::{self, Baseline};
use crate::support::observer::MqttAt;
use crate::support::yeelight::{BulbSim, Model, device};
use crate::support::{Observer, TestBroker, binary, plugins_dir, unique_id};

/// Every rule the kit has, in the order it runs them.
pub const ALL_RULES: [&str; 18] = [
    "status",
    "meta.info",
    "meta.devices_list",
    "state",
    "get",
    "state.keys",
    "get.properties",
    "command.success",
    "command.invalid_payload",
    "error.shape",
    "command.stale",
    "command.duplicate",
    "command.without_id",
    "command.unknown_device",
    "group",
    "meta.unknown",
    "timestamps",
    "will",
];

/// Run the kit against the broker at `at`, waiting `wait` seconds for each answer; its exit
/// code and its JSON report.
pub async fn kit(at: impl Into<MqttAt>, wait: u32, args: &[&str]) -> (i32, Value) {
    let MqttAt { port, login } = at.into();
    let mut command = tokio::process::Command::new(binary("iot2mqtt"));
    command.args(["conformance", "--json", "--wait", &wait.to_string(), "--broker"]);
    command.arg(format!("127.0.0.1:{port}")).args(args);
    command.env_remove("MQTT_USERNAME").env_remove("MQTT_PASSWORD").env("LOG_LEVEL", "warn");
    if let Some((user, password)) = login {
        command.args(["--username", &user, "--password", &password]);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the kit finishes within two minutes")
        .expect("the kit runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the kit's report is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

pub fn outcome<'a>(report: &'a Value, rule: &str) -> &'a str {
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["rule"] == rule))
        .map_or("missing", |f| f["outcome"].as_str().unwrap_or("missing"))
}

/// Every rule of `rules` passed and none failed.
pub fn assert_passes(code: i32, report: &Value, rules: &[&str]) {
    let pretty = serde_json::to_string_pretty(report).unwrap();
    assert_eq!(report["failed"], 0, "the kit found failures:\n{pretty}");
    assert_eq!(code, 0, "the kit exits 0 when nothing failed:\n{pretty}");
    for rule in rules {
        assert_eq!(outcome(report, rule), "pass", "rule {rule}:\n{pretty}");
    }
}

/// An `iot2mqtt-host` process running `plugin` with `config` against the broker on `port`.
fn host(port: u16, plugin: &str, config: &Value, dir: &Path) -> Child {
    let id = config["instance_id"].as_str().unwrap();
    std::fs::write(dir.join(format!("{id}.json")), config.to_string()).unwrap();
    Command::new(binary("iot2mqtt-host"))
        .env_clear()
        .envs(iot2mqtt_testkit::instance_env(id, port, dir))
        .env("IOT2MQTT_PLUGIN", plugins_dir().join(format!("{plugin}.wasm")))
        .env("IOT2MQTT_CACHE_DIR", std::env::temp_dir().join("iot2mqtt-test-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iot2mqtt-host")
}

async fn wait_online(port: u16, id: &str) {
    let mut observer = Observer::connect(port, &format!("IoT2mqtt/v1/instances/{id}/status")).await;
    observer.wait_for("the instance online", Duration::from_secs(30), |m| m.text() == "online").await;
}

#[tokio::test]
async fn the_demo_connector_passes_every_rule_and_its_will_is_seen_when_killed() {
    let Some(broker) = TestBroker::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let id = unique_id("conf-demo");
    let config = json!({"instance_id": id, "connector_type": "demo", "devices": [
        {"device_id": "l1", "kind": "light"},
        {"device_id": "t1", "kind": "sensor"},
        {"device_id": "off", "kind": "light", "enabled": false}
    ], "groups": [{"group_id": "all", "devices": ["l1"]}]});
    let mut child = host(broker.port(), "demo", &config, dir.path());
    wait_online(broker.port(), &id).await;
    let kill = format!("kill -9 {}", child.id());
    let (code, report) = kit(broker.port(), 5, &["--instance", &id, "--group", "all", "--kill", &kill]).await;
    let _ = child.wait();
    assert_passes(code, &report, &ALL_RULES);
    assert_eq!(report["device"], "l1", "the first enabled, online device is used");
}

#[tokio::test]
async fn the_yeelight_connector_passes_on_its_simulator() {
    let Some(broker) = TestBroker::start().await else { return };
    let sim = BulbSim::start(Model::Color).await;
    let dir = tempfile::tempdir().unwrap();
    let id = unique_id("conf-yee");
    let config = json!({"instance_id": id, "connector_type": "yeelight", "update_interval": 60,
        "devices": [device("bulb", &sim)]});
    let mut child = host(broker.port(), "yeelight", &config, dir.path());
    wait_online(broker.port(), &id).await;
    let (code, report) = kit(broker.port(), 5, &["--instance", &id, "--command", r#"{"brightness": 40}"#]).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut rules = ALL_RULES.to_vec();
    rules.retain(|r| !matches!(*r, "group" | "will"));
    assert_passes(code, &report, &rules);
    assert_eq!(outcome(&report, "will"), "skip", "no --kill, no will rule");
}

#[tokio::test]
async fn the_python_reference_connector_passes() {
    let Some(python) = baseline::python() else { return };
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("conf-py");
    let config = json!({"instance_id": id, "connector_type": "demo", "devices": [
        {"device_id": "l1", "kind": "light"}, {"device_id": "s1", "kind": "switch"}
    ], "groups": [{"group_id": "g", "devices": ["l1", "s1"]}]});
    let mut reference = Baseline::start(&python, broker.port(), &config);
    reference.wait_status(broker.port(), "online", Duration::from_secs(20)).await;
    let kill = format!("kill -9 {}", reference.pid());
    let (code, report) = kit(broker.port(), 5, &["--instance", &id, "--group", "g", "--kill", &kill]).await;
    assert_passes(code, &report, &ALL_RULES);
}

#[tokio::test]
async fn an_instance_that_only_says_it_is_online_fails_with_the_rules_it_breaks() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("conf-fake");
    let observer = Observer::connect(broker.port(), "unused/#").await;
    observer.publish_retained(&format!("IoT2mqtt/v1/instances/{id}/status"), "online").await;
    let (code, report) = kit(broker.port(), 1, &["--instance", &id]).await;
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(code, 1, "a failure exits 1:\n{pretty}");
    assert_eq!(outcome(&report, "status"), "pass", "{pretty}");
    for rule in ["meta.info", "meta.devices_list", "command.unknown_device", "meta.unknown", "timestamps"] {
        assert_eq!(outcome(&report, rule), "fail", "rule {rule}:\n{pretty}");
    }
    let detail = report["findings"][1]["detail"].as_str().unwrap();
    assert!(detail.contains("meta/info"), "the failure names the topic: {detail}");
}

#[tokio::test]
async fn the_kit_says_plainly_when_it_cannot_reach_the_broker() {
    let port = crate::support::free_port();
    let (code, report) = kit(port, 1, &["--instance", "nowhere"]).await;
    assert_eq!(code, 1);
    assert_eq!(outcome(&report, "connect"), "fail");
    let detail = report["findings"][0]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
}
