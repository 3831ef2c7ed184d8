//! Hot swap: a new plugin is compiled and initialised off the hot path, each device switches
//! between two of its jobs with its state handed over, and the MQTT session never drops. A
//! plugin that cannot load or initialise is rejected on `B/error` while the old one serves.

use std::collections::HashMap;
use std::time::Duration;

use iot2mqtt_runtime::{CacheOutcome, EngineConfig, Runtime, SwapError};
use serde_json::json;

use crate::support::{Observer, TestBroker, TestInstance, demo_config, plugin, unique_id};

const WAIT: Duration = Duration::from_secs(10);

/// A copy of a component that differs only by a custom section: a "new version" with the
/// same code and a different sha256.
pub fn new_version(wasm: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"iot2mqtt-test-version";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

async fn demo_instance() -> Option<(TestBroker, TestInstance, Observer)> {
    let broker = TestBroker::start().await?;
    let id = unique_id("swap");
    let observer = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([{"device_id": "l1", "kind": "light"}, {"device_id": "s1", "kind": "switch"}]);
    let instance = TestInstance::start(&broker, "demo", demo_config(&id, devices)).await;
    instance.ready().await;
    Some((broker, instance, observer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_under_load_hands_state_over_and_loses_nothing() {
    let Some((_broker, instance, mut obs)) = demo_instance().await else { return };
    let t = instance.topics.clone();
    obs.publish(&t.command("l1"), json!({"id": "before", "values": {"power": true, "brightness": 33}}).to_string())
        .await;
    obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "before" && r["status"] == "success").await;

    // A steady stream of commands to the switch while the plugin is replaced.
    let sender = Observer::connect(_broker.port(), "unused/#").await;
    let command_topic = t.command("s1");
    let load = tokio::spawn(async move {
        for i in 0..200 {
            sender
                .publish(
                    &command_topic,
                    json!({"id": format!("load-{i}"), "values": {"power": i % 2 == 0}}).to_string(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let original = instance.handle.status().plugin.sha256;
    let next = new_version(&plugin("demo"), "v2");
    let report = instance.handle.swap_wasm(next.clone()).await.expect("the swap succeeds");
    assert_eq!(report.devices, 2);
    load.await.unwrap();

    let responses = obs.collect(&t.command_response("s1"), Duration::from_secs(2)).await;
    let mut answered: HashMap<String, usize> = HashMap::new();
    for response in &responses {
        let response = response.json();
        assert_eq!(response["status"], "success", "{response}");
        *answered.entry(response["cmd_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    for i in 0..200 {
        assert_eq!(answered.get(&format!("load-{i}")), Some(&1), "command load-{i} answered exactly once");
    }

    // The light kept its values across the swap.
    obs.publish(&t.get("l1"), "{}").await;
    obs.next_json(&t.state("l1"), WAIT, |s| s["state"]["power"] == true && s["state"]["brightness"] == 33).await;
    let info = obs.next_json(&t.info(), WAIT, |i| i["swaps"] == 1).await;
    assert_eq!(info["plugin"]["sha256"], report.plugin.sha256);
    assert_ne!(report.plugin.sha256, original);
    assert_eq!(instance.handle.status().plugin.sha256, report.plugin.sha256);
    let statuses = obs.collect(&t.status(), Duration::from_millis(100)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline: {statuses:?}");
    let status = instance.handle.status();
    assert_eq!((status.swaps, status.reconnects), (1, 0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fails_to_initialise_is_rejected_and_the_old_one_serves() {
    let Some((_broker, instance, mut obs)) = demo_instance().await else { return };
    let t = instance.topics.clone();
    let before = instance.handle.status().plugin;
    let error = instance.handle.swap_wasm(plugin("init-fails")).await.expect_err("rejected");
    assert!(matches!(error, SwapError::Init { .. }), "{error}");
    assert!(error.to_string().contains("FIXTURE_INIT"), "{error}");
    let published = obs.next_json(&t.instance_error(), WAIT, |e| e["error_code"] == "PLUGIN_REJECTED").await;
    assert!(published["message"].as_str().unwrap().contains("always fails to initialise"), "{published}");
    assert_eq!(instance.handle.status().plugin, before);
    obs.publish(&t.command("l1"), json!({"id": "still", "values": {"power": true}}).to_string()).await;
    obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "still" && r["status"] == "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugin_binaries_are_rejected_with_a_clear_message() {
    let Some((_broker, instance, mut obs)) = demo_instance().await else { return };
    let t = instance.topics.clone();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("garbage", b"definitely not wasm".to_vec(), "not a usable WebAssembly component"),
        ("a core module", b"\0asm\x01\0\0\0".to_vec(), "not a usable WebAssembly component"),
        ("truncated", plugin("demo")[..1000].to_vec(), "not a usable WebAssembly component"),
    ];
    for (name, bytes, expected) in cases {
        let error = instance.handle.swap_wasm(bytes).await.expect_err(name);
        assert!(error.to_string().contains(expected), "{name}: {error}");
        let published = obs.next_json(&t.instance_error(), WAIT, |e| e["error_code"] == "PLUGIN_REJECTED").await;
        assert!(published["message"].as_str().unwrap().contains(expected), "{name}: {published}");
    }
    assert_eq!(instance.handle.status().swaps, 0);
    obs.publish(&t.command("s1"), json!({"id": "alive", "values": {"power": true}}).to_string()).await;
    obs.next_json(&t.command_response("s1"), WAIT, |r| r["cmd_id"] == "alive" && r["status"] == "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_in_use_is_shared_not_loaded_again() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = new_version(&plugin("demo"), &unique_id("shared"));
    let runtime =
        Runtime::new(EngineConfig { cache_dir: Some(cache.path().to_path_buf()), shared_cache_dir: None }).unwrap();
    let first = runtime.load_plugin(wasm.clone()).await.unwrap();
    let second = runtime.load_plugin(wasm.clone()).await.unwrap();
    assert!(second.is_same(&first), "a second load of plugin in use gave another copy");
    let sha = first.about().sha256.clone();
    assert!(runtime.loaded(&sha).is_some_and(|p| p.is_same(&first)));
    drop((first, second));
    assert!(runtime.loaded(&sha).is_none(), "a plugin nobody uses is still held");
    let again = runtime.load_plugin(wasm).await.unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Hit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_swaps_between_rust_and_python_and_keeps_its_values() {
    let Some((_broker, instance, mut obs)) = demo_instance().await else { return };
    let t = instance.topics.clone();
    obs.publish(&t.command("l1"), json!({"id": "set", "values": {"power": true, "brightness": 41}}).to_string()).await;
    obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "set" && r["status"] == "success").await;

    // To the Python port: the values cross in the demo's hand-over format.
    let rust = instance.handle.status().plugin.sha256;
    let report = instance.handle.swap_wasm(plugin("demo-python")).await.expect("the swap to Python succeeds");
    assert_eq!(report.devices, 2);
    obs.publish(&t.get("l1"), "{}").await;
    obs.next_json(&t.state("l1"), WAIT, |s| s["state"]["power"] == true && s["state"]["brightness"] == 41).await;
    obs.publish(&t.command("l1"), json!({"id": "py", "values": {"brightness": 7}}).to_string()).await;
    let done = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "py").await;
    assert_eq!(done["result"], json!({"brightness": 7}), "{done}");
    obs.publish(&t.command("l1"), json!({"id": "bad", "values": {"brightness": 700}}).to_string()).await;
    let refused = obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "bad").await;
    assert_eq!(refused["error"]["code"], "INVALID_VALUE", "{refused}");

    // And back to Rust, with what Python changed.
    let back = new_version(&plugin("demo"), &unique_id("back"));
    instance.handle.swap_wasm(back).await.expect("the swap back to Rust succeeds");
    obs.publish(&t.get("l1"), "{}").await;
    obs.next_json(&t.state("l1"), WAIT, |s| s["state"]["power"] == true && s["state"]["brightness"] == 7).await;
    assert_ne!(instance.handle.status().plugin.sha256, rust);
    let statuses = obs.collect(&t.status(), Duration::from_millis(100)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_the_same_plugin_at_once_compile_it_once() {
    let wasm = new_version(&plugin("demo"), &unique_id("together"));
    // No compile cache: a second compile would show as a second plugin.
    let runtime = Runtime::new(EngineConfig { cache_dir: None, shared_cache_dir: None }).unwrap();
    let loads = (0..4).map(|_| runtime.load_plugin(wasm.clone()));
    let loaded: Vec<_> = futures_util::future::join_all(loads).await.into_iter().map(Result::unwrap).collect();
    for other in &loaded[1..] {
        assert!(other.is_same(&loaded[0]), "a load that waited compiled its own copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_cached_by_content() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = new_version(&plugin("demo"), &unique_id("cache"));
    let first =
        Runtime::new(EngineConfig { cache_dir: Some(cache.path().to_path_buf()), shared_cache_dir: None }).unwrap();
    let loaded = first.load_plugin(wasm.clone()).await.unwrap();
    assert_eq!(loaded.cache_outcome(), CacheOutcome::Miss);
    let second =
        Runtime::new(EngineConfig { cache_dir: Some(cache.path().to_path_buf()), shared_cache_dir: None }).unwrap();
    let again = second.load_plugin(wasm).await.unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(again.about(), loaded.about());
    assert!(again.compile_time() < loaded.compile_time(), "{:?} vs {:?}", again.compile_time(), loaded.compile_time());
}
