//! Many instances in one process share one engine, and a faulty plugin stays within its own;
//! many devices of one instance are each read on schedule.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Observer, TestBroker, TestInstance, demo_config, unique_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_share_one_engine_and_faults_stay_home() {
    let Some(broker) = TestBroker::start().await else { return };
    let mut instances = Vec::new();
    for _ in 0..20 {
        let id = unique_id("many");
        let devices = json!([{"device_id": "l1", "kind": "light"}]);
        instances.push(TestInstance::start(&broker, "demo", demo_config(&id, devices)).await);
    }
    let faulty_id = unique_id("faulty");
    let faulty = TestInstance::start(
        &broker,
        "trap",
        json!({"instance_id": faulty_id, "connector_type": "trap", "devices": [{"device_id": "x"}]}),
    )
    .await;
    for instance in instances.iter().chain([&faulty]) {
        instance.ready().await;
    }
    let mut obs = Observer::connect(broker.port(), "IoT2mqtt/v1/instances/#").await;
    obs.publish(&faulty.topics.command("x"), json!({"id": "boom", "values": {"panic": "x"}}).to_string()).await;
    obs.next_json(&faulty.topics.command_response("x"), Duration::from_secs(5), |r| {
        r["error"]["code"] == "PLUGIN_FAULT"
    })
    .await;
    for (n, instance) in instances.iter().enumerate() {
        let id = format!("c{n}");
        obs.publish(&instance.topics.command("l1"), json!({"id": id, "values": {"power": true}}).to_string()).await;
    }
    for (n, instance) in instances.iter().enumerate() {
        let id = format!("c{n}");
        let r =
            obs.next_json(&instance.topics.command_response("l1"), Duration::from_secs(5), |r| r["cmd_id"] == id).await;
        assert_eq!(r["status"], "success");
        assert_eq!(instance.handle.status().faults, 0);
    }
    assert_eq!(faulty.handle.status().faults, 1);
}

/// A thousand devices read every second: all at once at the start, then ten at each 10 ms
/// slot of the interval, while the session reads acknowledgements in batches. Every device is
/// published each round, and a command sent among the reads is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_devices_read_every_second_are_each_published_each_round() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("reads");
    let devices: Vec<Value> = (0..1000).map(|i| json!({"device_id": format!("d{i}"), "kind": "sensor"})).collect();
    let mut config = demo_config(&id, Value::Array(devices));
    config["update_interval"] = json!(1);
    config["devices"][0]["kind"] = json!("light");
    let instance = TestInstance::start(&broker, "demo", config).await;
    instance.ready().await;
    let mut obs = Observer::connect(broker.port(), &format!("{}/devices/+/state", instance.topics.root())).await;
    // Past the first round, in which every device is read at once: wait until each has
    // published a state live (not the retained one a new subscription is sent).
    let mut seen: HashSet<String> = HashSet::new();
    while seen.len() < 1000 {
        let state = obs.wait_for("a live state of every device", Duration::from_secs(10), |m| !m.retain).await;
        seen.insert(state.topic);
    }
    obs.clear();
    let states = obs.collect_all(Duration::from_secs(4)).await;
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    for state in states.iter().filter(|s| !s.retain) {
        let device = state.topic.rsplit('/').nth(1).unwrap_or_default();
        *per_device.entry(device).or_default() += 1;
    }
    let behind: Vec<(&&str, &usize)> = per_device.iter().filter(|(_, count)| **count < 2).collect();
    assert_eq!(per_device.len(), 1000, "every device was published within 4 s");
    assert!(behind.is_empty(), "read fewer than twice in 4 s: {behind:?}");

    let mut commands = Observer::connect(broker.port(), &instance.topics.command_response("d0")).await;
    commands
        .publish(&instance.topics.command("d0"), json!({"id": "among", "values": {"power": true}}).to_string())
        .await;
    let response = commands
        .next_json(&instance.topics.command_response("d0"), Duration::from_secs(5), |r| r["cmd_id"] == "among")
        .await;
    assert_eq!(response["status"], "success");
}
