//! Lanes: a plugin that asks for a shared lane (`lanes.sharing` = `per-instance`, the Python
//! SDK's default) serves all the devices of its instance from one plugin instance, so a slow
//! device delays the others; a plugin with a lane per device keeps them apart. Swaps between
//! the two regroup the devices and hand every value over.

use std::time::Duration;

use iot2mqtt_runtime::{EngineConfig, Runtime};
use serde_json::json;

use crate::support::{Observer, TestBroker, TestInstance, demo_config, plugin, unique_id};
use crate::swap::new_version;

const WAIT: Duration = Duration::from_secs(10);
/// How long every call of the slow device takes.
const SLOW_MS: u64 = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_asks_for_a_shared_lane_and_the_rust_sdk_for_one_per_device() {
    let runtime = Runtime::new(EngineConfig::default()).unwrap();
    let python = runtime.load_plugin(plugin("demo-python")).await.unwrap();
    let rust = runtime.load_plugin(plugin("demo")).await.unwrap();
    assert!(python.shares_lane(), "a Python plugin shares one lane (one interpreter) by default");
    assert!(!rust.shares_lane(), "a Rust plugin has a lane per device unless it asks");
}

/// Which of the two devices answered first when the slow one was sent its command first.
async fn first_to_answer(plugin_name: &str) -> Option<String> {
    let broker = TestBroker::start().await?;
    let id = unique_id("lanes");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([
        {"device_id": "slow", "kind": "switch", "latency_ms": SLOW_MS},
        {"device_id": "fast", "kind": "switch"},
    ]);
    let instance = TestInstance::start(&broker, plugin_name, demo_config(&id, devices)).await;
    instance.ready().await;
    let t = instance.topics.clone();
    // Sent in this order on one connection, so the instance queues the slow device's command first.
    obs.publish(&t.command("slow"), json!({"id": "to-slow", "values": {"power": true}}).to_string()).await;
    obs.publish(&t.command("fast"), json!({"id": "to-fast", "values": {"power": true}}).to_string()).await;
    let first = obs
        .wait_for("a response of either device", WAIT, |m| {
            m.topic == t.command_response("slow") || m.topic == t.command_response("fast")
        })
        .await;
    let body: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(body["status"], "success", "{body}");
    Some(body["cmd_id"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_shared_lane_a_slow_device_delays_the_others_and_with_a_lane_each_it_does_not() {
    let Some(shared) = first_to_answer("demo-python").await else { return };
    assert_eq!(shared, "to-slow", "one plugin instance serves both devices, one call at a time");
    let Some(apart) = first_to_answer("demo").await else { return };
    assert_eq!(apart, "to-fast", "each device has its own lane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_lane_swaps_to_a_new_version_of_itself_and_keeps_every_device() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("lanes-swap");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([
        {"device_id": "l1", "kind": "light"},
        {"device_id": "l2", "kind": "light"},
        {"device_id": "s1", "kind": "switch"},
    ]);
    let instance = TestInstance::start(&broker, "demo-python", demo_config(&id, devices)).await;
    instance.ready().await;
    let t = instance.topics.clone();
    for (device, brightness) in [("l1", 11), ("l2", 22)] {
        let command = json!({"id": format!("set-{device}"), "values": {"power": true, "brightness": brightness}});
        obs.publish(&t.command(device), command.to_string()).await;
        obs.next_json(&t.command_response(device), WAIT, |r| r["status"] == "success").await;
    }

    let next = new_version(&plugin("demo-python"), &unique_id("py-next"));
    let report = instance.handle.swap_wasm(next).await.expect("the swap succeeds");
    assert_eq!(report.devices, 3, "every device switched");
    for (device, brightness) in [("l1", 11), ("l2", 22)] {
        obs.publish(&t.get(device), "{}").await;
        obs.next_json(&t.state(device), WAIT, |s| s["state"]["brightness"] == brightness).await;
    }
    obs.publish(&t.command("s1"), json!({"id": "after", "values": {"power": "toggle"}}).to_string()).await;
    let done = obs.next_json(&t.command_response("s1"), WAIT, |r| r["cmd_id"] == "after").await;
    assert_eq!(done["result"], json!({"power": true}), "{done}");
}
