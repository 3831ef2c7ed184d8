// Longer than 500 lines: one test per rule of the contract, in the contract's order.
//! One test per rule of the connector contract (`shared/contract.md`), against a real broker, with
//! the demo plugin running in-process; with `IOT2MQTT_CONTRACT_TARGET=demo-python` its Python
//! port (`plugins/demo-python`, a component built by componentize-py) in the same host; with
//! `IOT2MQTT_CONTRACT_TARGET=baseline` the Python reference connector the benchmarks compare
//! with.

use std::time::Duration;

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::offset;
use time::{OffsetDateTime, UtcOffset};

use iot2mqtt_contract::Topics;
use iot2mqtt_runtime::InstanceOptions;

use crate::support::baseline::{self, Baseline};
use crate::support::observer::{Received, retained};
use crate::support::proxy::Proxy;
use crate::support::{Observer, TestBroker, TestInstance, demo_config, unique_id};

const WAIT: Duration = Duration::from_secs(5);

fn is_wire_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else { return false };
    let bytes = text.as_bytes();
    text.len() == 24
        && text.ends_with('Z')
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && OffsetDateTime::parse(text, &Rfc3339).is_ok()
}

fn standard_devices() -> Value {
    json!([
        {"device_id": "l1", "kind": "light"},
        {"device_id": "s1", "kind": "switch"},
        {"device_id": "t1", "kind": "sensor"},
        {"device_id": "bad", "kind": "light", "fail": true},
        {"device_id": "off", "kind": "light", "enabled": false},
        {"device_id": "slow", "kind": "switch", "latency_ms": 1500}
    ])
}

/// What the tests run against: the host with the demo plugin, or the Python baseline.
enum Subject {
    Host(Box<TestInstance>),
    Baseline(Baseline),
}

impl Subject {
    /// Start `config` against whatever listens on `port` (a broker, or a proxy before one).
    async fn start(port: u16, config: Value) -> Option<Self> {
        if baseline::selected() {
            let python = baseline::python()?;
            return Some(Self::Baseline(Baseline::start(&python, port, &config)));
        }
        let plugin = match std::env::var("IOT2MQTT_CONTRACT_TARGET").as_deref() {
            Ok("demo-python") => "demo-python",
            _ => "demo",
        };
        Some(Self::Host(Box::new(TestInstance::start_on(port, plugin, config, InstanceOptions::default()).await)))
    }

    fn topics(&self) -> &Topics {
        match self {
            Self::Host(instance) => &instance.topics,
            Self::Baseline(baseline) => &baseline.topics,
        }
    }

    /// Wait until it is ready and connected (the baseline: its retained status on `broker`).
    async fn ready(&mut self, broker: u16) {
        self.wait_connected(broker, true, Duration::from_secs(10)).await;
    }

    /// Wait until it is connected, or not.
    async fn wait_connected(&mut self, broker: u16, connected: bool, within: Duration) {
        match self {
            Self::Host(instance) => {
                let mut status = instance.handle.watch_status();
                tokio::time::timeout(
                    within,
                    status.wait_for(|s| s.mqtt_connected == connected && (!connected || s.ready)),
                )
                .await
                .expect("the instance reached the connection state in time")
                .expect("the instance is running");
            }
            Self::Baseline(baseline) => {
                baseline.wait_status(broker, if connected { "online" } else { "offline" }, within).await;
            }
        }
    }

    /// The host's instance, for what only a host reports.
    fn host(&self) -> Option<&TestInstance> {
        match self {
            Self::Host(instance) => Some(instance),
            Self::Baseline(_) => None,
        }
    }
}

async fn setup(devices: Value) -> Option<(TestBroker, Subject, Observer)> {
    let broker = TestBroker::start().await?;
    let id = unique_id("c");
    let observer = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let mut instance = Subject::start(broker.port(), demo_config(&id, devices)).await?;
    instance.ready(broker.port()).await;
    Some((broker, instance, observer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_online_meta_state_and_availability() {
    let Some((broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "online");

    let list = obs.next_on(&t.devices_list(), WAIT).await.json();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bad", "l1", "off", "s1", "slow", "t1"]);
    let l1 = list.as_array().unwrap().iter().find(|d| d["device_id"] == "l1").unwrap();
    assert_eq!(l1["global_id"], format!("{}_l1", t.root().rsplit('/').next().unwrap()));
    assert_eq!(l1["model"], "demo-light");
    assert_eq!(list.as_array().unwrap().iter().find(|d| d["device_id"] == "off").unwrap()["enabled"], false);

    let info = obs.next_on(&t.info(), WAIT).await.json();
    assert_eq!(info["connector_type"], "demo");
    assert_eq!((info["devices_count"].as_u64(), info["groups_count"].as_u64()), (Some(6), Some(0)));
    assert!(info["uptime"].is_u64());
    if instance.host().is_some() {
        assert_eq!(info["plugin"]["name"], "demo");
        assert_eq!(info["plugin"]["sha256"].as_str().map(str::len), Some(64));
        assert_eq!(info["swaps"], 0);
    }

    let state = obs.next_on(&t.state("l1"), WAIT).await.json();
    assert_eq!(state["device_id"], "l1");
    assert_eq!(state["state"], json!({"power": false, "brightness": 100, "online": true}));
    assert!(is_wire_timestamp(&state["timestamp"]), "timestamp {}", state["timestamp"]);
    assert_eq!(obs.next_on(&t.state_key("l1", "power"), WAIT).await.text(), "false");
    assert_eq!(obs.next_on(&t.state_key("l1", "brightness"), WAIT).await.text(), "100");
    assert_eq!(obs.next_on(&t.availability("l1"), WAIT).await.text(), "online");

    let sensor = obs.next_on(&t.state("t1"), WAIT).await.json();
    assert!(sensor["state"]["temperature"].is_f64() && sensor["state"]["humidity"].is_f64(), "{sensor}");

    // A device that does not answer is `online: false`, not a failed start.
    let bad = obs.next_json(&t.state("bad"), WAIT, |v| v["state"]["online"] == false).await;
    assert_eq!(bad["state"]["online"], false);
    assert_eq!(obs.next_on(&t.availability("bad"), WAIT).await.text(), "offline");

    // Once the devices answered, the list says so.
    obs.next_json(&t.devices_list(), WAIT, |list| {
        list.as_array().is_some_and(|l| l.iter().any(|d| d["device_id"] == "l1" && d["online"] == true))
    })
    .await;

    // Status, state, keys, availability and meta are retained; a newcomer sees them.
    let port = broker.port();
    assert_eq!(retained(port, &t.status()).await.expect("retained status").text(), "online");
    assert_eq!(retained(port, &t.state("l1")).await.expect("retained state").json()["state"]["brightness"], 100);
    assert_eq!(retained(port, &t.state_key("l1", "power")).await.expect("retained key").text(), "false");
    assert_eq!(retained(port, &t.availability("bad")).await.expect("retained availability").text(), "offline");
    assert!(retained(port, &t.devices_list()).await.is_some());
    assert!(retained(port, &t.info()).await.is_some());
}

/// What a command should lead to.
#[derive(Debug)]
enum Expect {
    /// A response with this status and, for errors, this code.
    Response(&'static str, Option<&'static str>),
    /// An error on the device's error topic and no response at all.
    ErrorOnly(&'static str),
}

fn at(when: OffsetDateTime, offset: Option<UtcOffset>) -> String {
    match offset {
        Some(offset) => when.to_offset(offset).format(&Rfc3339).unwrap(),
        None => {
            let utc = when.to_offset(UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                utc.year(),
                u8::from(utc.month()),
                utc.day(),
                utc.hour(),
                utc.minute(),
                utc.second()
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_validated_in_the_stated_order() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    let now = OffsetDateTime::now_utc();
    let old = now - Duration::from_secs(60);
    let cases: Vec<(&str, &str, String, Expect)> = vec![
        ("not JSON", "l1", "power on".into(), Expect::ErrorOnly("INVALID_PAYLOAD")),
        ("an array", "l1", "[1,2]".into(), Expect::ErrorOnly("INVALID_PAYLOAD")),
        ("a string", "l1", "\"on\"".into(), Expect::ErrorOnly("INVALID_PAYLOAD")),
        (
            "values not an object",
            "l1",
            json!({"id": "v", "values": 5}).to_string(),
            Expect::Response("error", Some("INVALID_PAYLOAD")),
        ),
        (
            "stale, Z",
            "l1",
            json!({"id": "z", "timestamp": at(old, Some(UtcOffset::UTC)), "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("STALE_COMMAND")),
        ),
        (
            "stale, +03:00",
            "l1",
            json!({"id": "o", "timestamp": at(old, Some(offset!(+3))), "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("STALE_COMMAND")),
        ),
        (
            "stale, no offset",
            "l1",
            json!({"id": "n", "timestamp": at(old, None), "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("STALE_COMMAND")),
        ),
        (
            "fresh, +03:00",
            "l1",
            json!({"id": "fo", "timestamp": at(now, Some(offset!(+3))), "values": {"power": true}}).to_string(),
            Expect::Response("success", None),
        ),
        (
            "fresh, no offset",
            "l1",
            json!({"id": "fn", "timestamp": at(now, None), "values": {"power": false}}).to_string(),
            Expect::Response("success", None),
        ),
        (
            "unknown device",
            "nope",
            json!({"id": "u", "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("UNKNOWN_DEVICE")),
        ),
        (
            "disabled device",
            "off",
            json!({"id": "d", "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("DEVICE_DISABLED")),
        ),
        (
            "stale beats unknown",
            "nope",
            json!({"id": "su", "timestamp": at(old, Some(UtcOffset::UTC))}).to_string(),
            Expect::Response("error", Some("STALE_COMMAND")),
        ),
        (
            "value out of range",
            "l1",
            json!({"id": "r", "values": {"brightness": 150}}).to_string(),
            Expect::Response("error", Some("INVALID_VALUE")),
        ),
        (
            "read-only sensor",
            "t1",
            json!({"id": "ro", "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("READ_ONLY")),
        ),
        (
            "unreachable device",
            "bad",
            json!({"id": "ur", "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("DEVICE_UNREACHABLE")),
        ),
        ("bare values", "s1", json!({"id": "b", "power": true}).to_string(), Expect::Response("success", None)),
        (
            "timeout",
            "slow",
            json!({"id": "to", "timeout": 300, "values": {"power": true}}).to_string(),
            Expect::Response("error", Some("TIMEOUT")),
        ),
    ];
    for (name, device, payload, expect) in cases {
        obs.clear();
        obs.publish(&t.command(device), payload.clone()).await;
        match expect {
            Expect::Response(status, code) => {
                let id = serde_json::from_str::<Value>(&payload).unwrap()["id"].clone();
                let response = obs.next_json(&t.command_response(device), WAIT, |r| r["cmd_id"] == id).await;
                assert_eq!(response["status"], status, "{name}: {response}");
                assert_eq!(response["error"]["code"].as_str(), code, "{name}: {response}");
                assert!(is_wire_timestamp(&response["timestamp"]), "{name}: {response}");
                if status == "success" {
                    assert!(response["result"].is_object(), "{name}: {response}");
                }
            }
            Expect::ErrorOnly(code) => {
                let error = obs.next_json(&t.device_error(device), WAIT, |e| e["error_code"] == code).await;
                assert_eq!(error["severity"], "warning", "{name}: {error}");
                assert!(is_wire_timestamp(&error["timestamp"]), "{name}: {error}");
                let responses = obs.collect(&t.command_response(device), Duration::from_millis(300)).await;
                assert!(responses.is_empty(), "{name}: unexpected responses {responses:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_id_gets_no_response_but_takes_effect() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    obs.publish(&t.command("l1"), json!({"values": {"brightness": 42}}).to_string()).await;
    let state = obs.next_json(&t.state("l1"), WAIT, |s| s["state"]["brightness"] == 42).await;
    assert_eq!(state["state"]["brightness"], 42);
    assert!(obs.collect(&t.command_response("l1"), Duration::from_millis(300)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_answers_then_publishes_the_fresh_state_and_the_event() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    obs.publish(&t.command("l1"), json!({"id": "p1", "values": {"power": true, "brightness": 30}}).to_string()).await;
    let response = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "p1").await;
    assert_eq!(response["status"], "success");
    assert_eq!(response["result"], json!({"power": true, "brightness": 30}));
    let event = obs.next_on(&t.events("l1"), WAIT).await.json();
    assert_eq!((event["event"].as_str(), &event["data"]), (Some("power_changed"), &json!({"power": true})));
    assert!(is_wire_timestamp(&event["timestamp"]));
    obs.next_json(&t.state("l1"), WAIT, |s| s["state"] == json!({"power": true, "brightness": 30, "online": true}))
        .await;
    obs.wait_for("brightness 30", WAIT, |m| m.topic == t.state_key("l1", "brightness") && m.text() == "30").await;

    // Toggle goes back; a switch has no brightness.
    obs.publish(&t.command("l1"), json!({"id": "p2", "values": {"power": "toggle"}}).to_string()).await;
    let response = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "p2").await;
    assert_eq!(response["result"], json!({"power": false}));
    obs.publish(&t.command("s1"), json!({"id": "p3", "values": {"brightness": 5}}).to_string()).await;
    let response = obs.next_json(&t.command_response("s1"), WAIT, |r| r["cmd_id"] == "p3").await;
    assert_eq!(response["error"]["code"], "UNSUPPORTED_PROPERTY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_is_answered_again_not_executed_again() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    let command = json!({"id": "dup-1", "values": {"power": "toggle"}}).to_string();
    obs.publish(&t.command("l1"), command.clone()).await;
    obs.publish(&t.command("l1"), command.clone()).await;
    // Each waited for in full (a target with a shared lane may first finish a slow device's read).
    let responses =
        [obs.next_on(&t.command_response("l1"), WAIT).await, obs.next_on(&t.command_response("l1"), WAIT).await];
    let more = obs.collect(&t.command_response("l1"), Duration::from_millis(300)).await;
    assert!(more.is_empty(), "answered twice, not more: {more:?}");
    assert_eq!(responses[0].json()["result"], json!({"power": true}));
    assert_eq!(responses[0].json(), responses[1].json());
    obs.publish(&t.command("l1"), command).await;
    let again = obs.next_on(&t.command_response("l1"), WAIT).await.json();
    assert_eq!(again["result"], json!({"power": true}));
    let events = obs.collect(&t.events("l1"), Duration::from_millis(300)).await;
    assert_eq!(events.len(), 1, "toggled once: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_publishes_the_full_state_and_a_partial_one_only_when_asked() {
    let Some((broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    obs.next_on(&t.state("l1"), WAIT).await;
    obs.clear();
    obs.publish(&t.get("l1"), "{}").await;
    let full = obs.next_on(&t.state("l1"), WAIT).await.json();
    assert_eq!(full["state"], json!({"power": false, "brightness": 100, "online": true}));
    assert!(
        obs.collect(&t.state("l1"), Duration::from_millis(300)).await.is_empty(),
        "one publication for a plain get"
    );

    obs.publish(&t.get("l1"), json!({"properties": ["power"]}).to_string()).await;
    let states = [obs.next_on(&t.state("l1"), WAIT).await, obs.next_on(&t.state("l1"), WAIT).await];
    let more = obs.collect(&t.state("l1"), Duration::from_millis(300)).await;
    assert!(more.is_empty(), "two publications for a get with properties: {more:?}");
    assert_eq!(states[0].json()["state"], json!({"power": false, "brightness": 100, "online": true}));
    assert_eq!(states[1].json()["state"], json!({"power": false}));
    // The retained state is still the whole state.
    let kept = retained(broker.port(), &t.state("l1")).await.expect("a retained state").json();
    assert_eq!(kept["state"]["brightness"], 100);

    obs.publish(&t.get("nope"), "{}").await;
    obs.next_json(&t.device_error("nope"), WAIT, |e| e["error_code"] == "UNKNOWN_DEVICE").await;
    obs.publish(&t.get("l1"), "[]").await;
    obs.next_json(&t.device_error("l1"), WAIT, |e| e["error_code"] == "INVALID_PAYLOAD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_reach_enabled_members_and_answer_per_member() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("g");
    let mut config = demo_config(&id, standard_devices());
    config["groups"] = json!([
        {"group_id": "lights", "devices": ["l1", "s1"]},
        {"group_id": "mixed", "devices": ["l1", "t1", "off", "nope"]}
    ]);
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let Some(mut instance) = Subject::start(broker.port(), config).await else { return };
    instance.ready(broker.port()).await;
    let t = instance.topics();

    obs.publish(&t.group_command("lights"), json!({"id": "g1", "values": {"power": true}}).to_string()).await;
    let response = obs.next_json(&t.group_response("lights"), WAIT, |r| r["cmd_id"] == "g1").await;
    assert_eq!(response["status"], "success");
    assert_eq!(response["results"], json!({"l1": "success", "s1": "success"}));
    obs.next_json(&t.state("s1"), WAIT, |s| s["state"]["power"] == true).await;

    obs.publish(&t.group_command("mixed"), json!({"id": "g2", "values": {"power": false}}).to_string()).await;
    let response = obs.next_json(&t.group_response("mixed"), WAIT, |r| r["cmd_id"] == "g2").await;
    assert_eq!(response["status"], "error");
    let results = response["results"].as_object().unwrap();
    assert_eq!(results.len(), 2, "disabled and unknown members are skipped: {response}");
    assert_eq!(results["l1"], "success");
    assert_eq!(results["t1"]["code"], "READ_ONLY");

    obs.publish(&t.group_command("ghosts"), json!({"id": "g3", "values": {"power": false}}).to_string()).await;
    let response = obs.next_json(&t.group_response("ghosts"), WAIT, |r| r["cmd_id"] == "g3").await;
    assert_eq!(response["status"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_requests_are_answered_and_unknown_ones_ignored() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    obs.next_on(&t.info(), WAIT).await;
    obs.next_on(&t.devices_list(), WAIT).await;
    // The slow device answers its first read after 1.5 s; uptime passes 1 s meanwhile.
    obs.next_on(&t.state("slow"), WAIT).await;
    obs.publish(&t.meta_request("nonsense"), "").await;
    obs.publish(&t.meta_request("info"), "").await;
    let info = obs.next_on(&t.info(), WAIT).await.json();
    assert!(info["uptime"].as_u64().unwrap() >= 1, "uptime is real: {info}");
    obs.clear();
    obs.publish(&t.meta_request("devices_list"), "").await;
    let list = obs.next_on(&t.devices_list(), WAIT).await.json();
    let online: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["online"] == true)
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(online, ["l1", "s1", "slow", "t1"], "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_polls_back_off_with_retry_info_and_never_stop() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("p");
    let mut config = demo_config(
        &id,
        json!([{"device_id": "bad", "kind": "switch", "fail": true}, {"device_id": "ok", "kind": "switch"}]),
    );
    config["update_interval"] = json!(1);
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let Some(instance) = Subject::start(broker.port(), config).await else { return };
    let t = instance.topics();
    let mut last_next_retry = String::new();
    for attempt in 1..=3u64 {
        let error =
            obs.next_json(&t.device_error("bad"), Duration::from_secs(10), |e| e["error_code"] == "UPDATE_ERROR").await;
        assert_eq!(error["severity"], "warning");
        assert_eq!(error["retry_info"]["attempt"], attempt, "{error}");
        assert_eq!(error["retry_info"]["max_attempts"], Value::Null);
        let next = error["retry_info"]["next_retry"].as_str().unwrap().to_string();
        assert!(is_wire_timestamp(&json!(next)));
        assert!(next > last_next_retry, "next_retry moves on: {next} after {last_next_retry}");
        last_next_retry = next;
    }
    assert_eq!(obs.next_on(&t.availability("bad"), WAIT).await.text(), "offline");
    // The instance is alive and well.
    obs.publish(&t.command("ok"), json!({"id": "alive", "values": {"power": true}}).to_string()).await;
    obs.next_json(&t.command_response("ok"), WAIT, |r| r["status"] == "success").await;
}

/// Whether the target serves all the devices of an instance from one plugin instance: the
/// Python demo, as Python plugins do by default (one interpreter per instance).
fn shares_a_lane() -> bool {
    std::env::var("IOT2MQTT_CONTRACT_TARGET").is_ok_and(|target| target == "demo-python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_device_does_not_delay_the_others() {
    let Some((_broker, instance, mut obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    obs.next_on(&t.state("slow"), Duration::from_secs(5)).await;
    obs.clear();
    obs.publish(&t.command("slow"), json!({"id": "s", "values": {"power": true}}).to_string()).await;
    let started = std::time::Instant::now();
    obs.publish(&t.command("l1"), json!({"id": "f", "values": {"power": true}}).to_string()).await;
    // The session is never held up by a device: the instance answers at once meanwhile.
    obs.publish(&t.meta_request("info"), "").await;
    obs.next_on(&t.info(), WAIT).await;
    let answered = started.elapsed();
    assert!(answered < Duration::from_millis(1000), "the MQTT session waited {answered:?} for the slow device");
    if shares_a_lane() {
        // One plugin instance serves the instance's devices one call at a time (the documented
        // price of a shared lane): the fast device answers after the slow one, both succeed.
        let first = obs
            .wait_for("a command response", WAIT, |m| {
                m.topic == t.command_response("slow") || m.topic == t.command_response("l1")
            })
            .await;
        assert_eq!(first.topic, t.command_response("slow"), "calls in a shared lane run in the order sent");
        let fast = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "f").await;
        assert_eq!((first.json()["status"].clone(), fast["status"].clone()), (json!("success"), json!("success")));
        return;
    }
    obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "f").await;
    let fast = started.elapsed();
    let slow = obs.next_json(&t.command_response("slow"), WAIT, |r| r["cmd_id"] == "s").await;
    assert_eq!(slow["status"], "success");
    assert!(fast < Duration::from_millis(1000), "the fast device waited {fast:?} for the slow one");
    assert!(started.elapsed() >= Duration::from_millis(1400), "the slow device really was slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_broker_restart_and_announces_itself_again() {
    let Some((mut broker, instance, _obs)) = setup(standard_devices()).await else { return };
    let t = instance.topics();
    broker.restart().await;
    // The broker keeps nothing across the restart; the instance must bring its status back.
    let mut obs = Observer::connect(broker.port(), &format!("{}/#", t.root())).await;
    assert_eq!(obs.next_on(&t.status(), Duration::from_secs(15)).await.text(), "online");
    obs.publish(&t.command("l1"), json!({"id": "after", "values": {"power": true}}).to_string()).await;
    let response = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "after").await;
    assert_eq!(response["status"], "success", "subscriptions were restored");
    if let Some(host) = instance.host() {
        let status = host.handle.status();
        assert!(status.reconnects >= 1 && status.mqtt_connected, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_made_while_disconnected_are_queued_and_sent_after_reconnecting() {
    let Some(broker) = TestBroker::start().await else { return };
    let proxy = Proxy::start(broker.port()).await;
    let id = unique_id("q");
    let mut config = demo_config(
        &id,
        json!([{"device_id": "t1", "kind": "sensor"}, {"device_id": "bad", "kind": "switch", "fail": true}]),
    );
    config["update_interval"] = json!(1);
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let Some(mut instance) = Subject::start(proxy.port(), config).await else { return };
    instance.ready(broker.port()).await;
    let t = instance.topics().clone();

    proxy.cut();
    let cut = OffsetDateTime::now_utc();
    instance.wait_connected(broker.port(), false, WAIT).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let healed = OffsetDateTime::now_utc();
    obs.clear();
    proxy.heal();
    instance.wait_connected(broker.port(), true, Duration::from_secs(15)).await;
    let after = obs.collect_all(Duration::from_millis(1500)).await;

    let during = |m: &Received| {
        let stamp = m.json()["timestamp"].as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
        stamp.is_some_and(|s| s > cut && s < healed)
    };
    let errors = after.iter().filter(|m| m.topic == t.device_error("bad") && during(m)).count();
    assert!(errors >= 1, "errors raised during the outage are delivered: {after:?}");
    let states = after.iter().filter(|m| m.topic == t.state("t1") && during(m)).count();
    assert!(states <= 1, "states of the outage were coalesced to the newest: {after:?}");
    assert!(after.iter().any(|m| m.topic == t.status() && m.text() == "online"), "online again: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_too_large_to_take_is_skipped_with_one_error() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("big");
    let t = crate::support::harness::topics(&id);
    let mut obs = Observer::connect(broker.port(), &format!("{}/#", t.root())).await;
    // Over the host's 256 KiB packet limit, retained where the instance subscribes.
    obs.publish_retained(&t.meta_request("x"), vec![b'x'; 300 << 10]).await;
    obs.next_on(&t.meta_request("x"), WAIT).await;
    let instance = TestInstance::start(&broker, "demo", demo_config(&id, json!([]))).await;
    instance.ready().await;
    let error = obs.next_json(&t.instance_error(), WAIT, |e| e["error_code"] == "INVALID_PAYLOAD").await;
    assert!(error["message"].as_str().unwrap().contains("larger than this instance accepts"), "{error}");
    let later = obs.collect(&t.instance_error(), Duration::from_secs(2)).await;
    assert!(later.is_empty(), "one error, not one per reconnect: {later:?}");
    let status = instance.handle.watch_status().borrow().clone();
    assert_eq!(status.reconnects, 0, "the connection was kept");
    assert!(status.mqtt_connected);
}
