//! The sandbox and fault isolation: one fixture plugin per fault. A fault ends the plugin
//! lane, never the instance: the command gets `PLUGIN_FAULT`, `B/error` says what happened
//! (with the guest's own panic message), the instance stays online, and the next command
//! runs on a fresh lane.

use std::time::Duration;

use iot2mqtt_runtime::InstanceOptions;
use serde_json::{Value, json};

use crate::support::{Observer, TestBroker, TestInstance, unique_id};

const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn fixture(
    plugin: &str,
    devices: Value,
    options: InstanceOptions,
) -> Option<(TestBroker, TestInstance, Observer)> {
    let broker = TestBroker::start().await?;
    let id = unique_id(plugin);
    let config = json!({"instance_id": id, "connector_type": plugin, "devices": devices});
    let observer = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let instance = TestInstance::start_with(&broker, plugin, config, options).await;
    instance.ready().await;
    Some((broker, instance, observer))
}

/// Send `values` to device `x` and return the response.
pub(crate) async fn command(obs: &mut Observer, instance: &TestInstance, id: &str, values: Value) -> Value {
    let t = &instance.topics;
    obs.publish(&t.command("x"), json!({"id": id, "values": values}).to_string()).await;
    obs.next_json(&t.command_response("x"), WAIT, |r| r["cmd_id"] == id).await
}

/// The fault was reported, the instance stayed online, and the device works again.
async fn survives(obs: &mut Observer, instance: &TestInstance, response: &Value, expect_in_message: &str) {
    assert_eq!(response["status"], "error", "{response}");
    assert_eq!(response["error"]["code"], "PLUGIN_FAULT", "{response}");
    let message = response["error"]["message"].as_str().unwrap();
    assert!(message.contains(expect_in_message), "{message:?} should mention {expect_in_message:?}");
    let t = &instance.topics;
    let error = obs.next_json(&t.instance_error(), WAIT, |e| e["error_code"] == "PLUGIN_FAULT").await;
    assert_eq!(error["severity"], "error");
    assert!(error["message"].as_str().unwrap().contains(expect_in_message), "{error}");
    let after = command(obs, instance, "after-fault", json!({"power": true})).await;
    assert_eq!(after["status"], "success", "the lane was rebuilt: {after}");
    let statuses = obs.collect(&t.status(), Duration::from_millis(200)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "the instance never went offline: {statuses:?}");
    let status = instance.handle.status();
    assert!(status.mqtt_connected && status.faults >= 1 && status.reconnects == 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_restarts_only_the_plugin_and_reports_the_panic_message() {
    let Some((_b, instance, mut obs)) = fixture("trap", json!([{"device_id": "x"}]), InstanceOptions::default()).await
    else {
        return;
    };
    let response = command(&mut obs, &instance, "boom", json!({"panic": "boom"})).await;
    survives(&mut obs, &instance, &response, "fixture trap: \"boom\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_interrupted_by_its_cpu_budget() {
    let options = InstanceOptions { cpu_budget: Duration::from_millis(300), ..InstanceOptions::default() };
    let Some((_b, instance, mut obs)) = fixture("endless-loop", json!([{"device_id": "x"}]), options).await else {
        return;
    };
    let started = std::time::Instant::now();
    let response = command(&mut obs, &instance, "spin", json!({"spin": true})).await;
    assert!(started.elapsed() < Duration::from_secs(5), "interrupted in {:?}", started.elapsed());
    survives(&mut obs, &instance, &response, "CPU budget").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_hits_its_cap() {
    let options = InstanceOptions { memory_limit: 16 << 20, ..InstanceOptions::default() };
    let Some((_b, instance, mut obs)) = fixture("memory-hog", json!([{"device_id": "x"}]), options).await else {
        return;
    };
    let response = command(&mut obs, &instance, "hog", json!({"hog": true})).await;
    survives(&mut obs, &instance, &response, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_holding_host_resources_without_end_hits_its_cap() {
    let Some((_b, instance, mut obs)) =
        fixture("memory-hog", json!([{"device_id": "x"}]), InstanceOptions::default()).await
    else {
        return;
    };
    let response = command(&mut obs, &instance, "hold", json!({"resources": true})).await;
    survives(&mut obs, &instance, &response, "host resources").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_reaches_only_the_devices_own_address_and_nothing_else_is_there() {
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let (allowed_port, forbidden_port) = (allowed.local_addr().unwrap().port(), forbidden.local_addr().unwrap().port());
    let devices = json!([{"device_id": "x", "host": "127.0.0.1", "port": allowed_port}]);
    let Some((_b, instance, mut obs)) = fixture("forbidden-connect", devices, InstanceOptions::default()).await else {
        return;
    };

    let denied = command(&mut obs, &instance, "deny", json!({"connect": format!("127.0.0.1:{forbidden_port}")})).await;
    assert_eq!(denied["error"]["code"], "COMMAND_FAILED", "{denied}");
    assert!(denied["error"]["message"].as_str().unwrap().contains("connect to"), "{denied}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(forbidden.accept().is_err(), "nothing reached the forbidden listener");

    let granted = command(&mut obs, &instance, "grant", json!({"connect": format!("127.0.0.1:{allowed_port}")})).await;
    assert_eq!(granted["status"], "success", "{granted}");
    allowed.set_nonblocking(false).unwrap();
    assert!(allowed.accept().is_ok(), "the device's own address was reached");

    let files = command(&mut obs, &instance, "fs", json!({"read_dir": "/"})).await;
    assert_eq!(files["error"]["code"], "COMMAND_FAILED", "no filesystem: {files}");
    let env = command(&mut obs, &instance, "env", json!({"env": true})).await;
    assert_eq!(env["result"], json!({"env": 0}), "no environment: {env}");
}
