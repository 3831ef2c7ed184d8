//! Hot swap from the API: an uploaded plugin is validated, stored by content, swapped live in
//! either runtime, and the previous version comes back with a rollback.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, plugin, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(30);

async fn upload_and_rollback(runtime: Runtime) {
    let serve = Serve::start(runtime).await;
    let id = unique_id("up");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    let info = obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["name"] == "demo").await;
    let demo_sha = info["plugin"]["sha256"].as_str().unwrap().to_string();
    let path = format!("/api/instances/demo/{id}/plugin");

    // Invalid uploads change nothing.
    let (status, body) = serve.call_bytes(Method::POST, &path, "application/wasm", b"not a plugin".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not a usable WebAssembly component"), "{body}");
    let (status, body) = serve.call_bytes(Method::POST, &path, "application/wasm", plugin("init-fails")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a plugin that cannot initialise is refused: {body}");

    // A real one swaps live, without reconnecting.
    let (status, body) = serve.call_bytes(Method::POST, &path, "application/wasm", plugin("template")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["name"].as_str(), body["previous"].as_str()), (Some("template"), Some(demo_sha.as_str())));
    let new_sha = body["sha256"].as_str().unwrap().to_string();
    assert!(serve.data().join(format!("plugins/demo/{new_sha}.wasm")).exists(), "stored by content");
    let info = obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["sha256"] == new_sha.as_str()).await;
    assert_eq!(info["plugin"]["name"], "template");
    let (status, response) = serve
        .call(Method::POST, &format!("/api/devices/{id}/l1/command"), Some(json!({"values": {"power": true}})))
        .await;
    assert_eq!((status, response["status"].as_str()), (StatusCode::OK, Some("success")));

    let (status, body) = serve.call(Method::POST, &format!("{path}/rollback"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sha256"], demo_sha.as_str());
    obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["sha256"] == demo_sha.as_str()).await;
    let statuses = obs.collect(&format!("{root}/status"), Duration::from_millis(100)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline: {statuses:?}");
    let (_, view) = serve.call(Method::GET, &format!("/api/instances/demo/{id}"), None).await;
    assert_eq!(view["plugin"]["sha256"], demo_sha.as_str(), "the file records the version in use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_upload_and_rollback_embedded() {
    upload_and_rollback(Runtime::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_upload_and_rollback_docker() {
    if !require_docker() {
        return;
    }
    upload_and_rollback(Runtime::Docker).await;
}

/// The demo's Python port replaces the Rust demo by upload: validated and compiled by serve,
/// swapped live, the lights' values handed over.
async fn upload_python(runtime: Runtime) {
    let serve = Serve::start(runtime).await;
    let id = unique_id("py");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["name"] == "demo").await;
    let device = format!("/api/devices/{id}/l1/command");
    let command = |values: serde_json::Value| serve.call(Method::POST, &device, Some(json!({"values": values})));
    let (status, set) = command(json!({"power": true, "brightness": 41})).await;
    assert_eq!((status, set["status"].as_str()), (StatusCode::OK, Some("success")), "{set}");

    let path = format!("/api/instances/demo/{id}/plugin");
    let (status, body) = serve.call_bytes(Method::POST, &path, "application/wasm", plugin("demo-python")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let python_sha = body["sha256"].as_str().unwrap().to_string();
    obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["sha256"] == python_sha.as_str()).await;
    obs.clear();
    // The Python plugin answers with the values the Rust one handed over.
    let (status, after) = command(json!({"power": "toggle"})).await;
    assert_eq!((status, after["status"].as_str()), (StatusCode::OK, Some("success")), "{after}");
    let state = obs.next_json(&format!("{root}/devices/l1/state"), WAIT, |s| s["state"]["power"] == false).await;
    assert_eq!(state["state"]["brightness"], 41, "the brightness crossed the swap: {state}");
    let statuses = obs.collect(&format!("{root}/status"), Duration::from_millis(100)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_is_uploaded_and_swapped_in_embedded() {
    upload_python(Runtime::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_is_uploaded_and_swapped_in_a_container() {
    if !require_docker() {
        return;
    }
    upload_python(Runtime::Docker).await;
}
