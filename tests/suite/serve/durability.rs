//! What must survive: instance files through `kill -9`, instances through a restart, secrets
//! through everything (encrypted at rest, never in responses, logs or MQTT).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, TestBroker, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_files_are_whole_after_kill_9_at_any_moment() {
    let mut serve = Serve::start(Runtime::Embedded).await;
    let id = unique_id("atomic");
    serve.create(json!({"instance_id": id, "connector_type": "demo", "enabled": false, "devices": [{"device_id": "d0", "kind": "switch"}]})).await;
    let file = serve.data().join(format!("instances/demo/{id}.json"));
    for round in 0..6u64 {
        // Rewrite the file as fast as the API allows, and kill the server in the middle.
        let writer = {
            let client = serve.client().clone();
            let (url, token) = (serve.url(&format!("/api/instances/demo/{id}")), serve.token().to_string());
            tokio::spawn(async move {
                for n in 0..10_000u64 {
                    let devices: Vec<Value> =
                        (0..=(n % 40)).map(|d| json!({"device_id": format!("d{d}"), "kind": "switch"})).collect();
                    let body = json!({"enabled": false, "friendly_name": format!("write {n}"), "devices": devices});
                    if client.put(&url).bearer_auth(&token).json(&body).send().await.is_err() {
                        return n;
                    }
                }
                10_000
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + round * 97)).await;
        serve.kill();
        let writes = writer.await.unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("round {round}: torn file ({e}):\n{text}"));
        assert_eq!(parsed["instance_id"], id.as_str());
        let n: u64 =
            parsed["friendly_name"].as_str().map_or(0, |s| s.trim_start_matches("write ").parse().unwrap_or(0));
        assert_eq!(parsed["devices"].as_array().unwrap().len() as u64, n % 40 + 1, "round {round}: one write, whole");
        assert!(writes > 0, "round {round}: the API was written to");
        let leftovers: Vec<String> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.len() <= 1, "at most the write that was cut short: {leftovers:?}");
        serve.spawn().await;
    }
}

async fn reconcile(runtime: Runtime) {
    // An external broker outlives the server, so the instances' last words can be watched.
    let Some(broker) = TestBroker::start().await else { return };
    let mut serve = Serve::start_with(runtime, Some(&broker), &[]).await;
    let (on, off) = (unique_id("on"), unique_id("off"));
    serve
        .create(json!({"instance_id": on, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    serve.create(json!({"instance_id": off, "connector_type": "demo", "enabled": false, "devices": [{"device_id": "l1", "kind": "light"}]})).await;
    let status = |id: &str| format!("IoT2mqtt/v1/instances/{id}/status");
    let mut obs = Observer::connect(broker.port(), "IoT2mqtt/v1/instances/#").await;
    obs.wait_for("online", WAIT, |m| m.topic == status(&on) && m.text() == "online").await;

    // A clean stop: every instance publishes offline.
    serve.stop();
    obs.wait_for("offline", WAIT, |m| m.topic == status(&on) && m.text() == "offline").await;
    // A start brings back what is enabled, and only that.
    serve.spawn().await;
    obs.wait_for("online again", WAIT, |m| m.topic == status(&on) && m.text() == "online").await;
    let (_, list) = serve.call(Method::GET, "/api/instances", None).await;
    let off_view = list.as_array().unwrap().iter().find(|i| i["instance_id"] == off.as_str()).unwrap().clone();
    assert_eq!(off_view["status"]["desired"], "stopped");
    assert_eq!(off_view["status"]["running"], false, "a disabled instance stays stopped: {off_view}");
    let seen = obs.collect(&status(&off), Duration::from_millis(200)).await;
    assert!(seen.iter().all(|m| m.text() != "online"), "{off} never came online: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_every_enabled_instance_back_embedded() {
    reconcile(Runtime::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_every_enabled_instance_back_docker() {
    if !require_docker() {
        return;
    }
    reconcile(Runtime::Docker).await;
}

async fn secrets_stay_secret(runtime: Runtime) {
    const SECRET: &str = "planted-secret-7f3a9c";
    let serve = Serve::start(runtime).await;
    let id = unique_id("secret");
    let mut everything = Observer::connect(serve.mqtt(), "#").await;
    let view = serve
        .create(json!({
            "instance_id": id, "connector_type": "probe",
            "config": {"user": "me", "password": SECRET},
            "secrets": {"token": format!("{SECRET}-token")},
            "devices": [{"device_id": "x"}]
        }))
        .await;
    let root = format!("IoT2mqtt/v1/instances/{id}");
    everything.wait_for("online", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "online").await;

    // The instance received the secrets, decrypted, merged into its connection.
    let (status, response) = serve
        .call(Method::POST, &format!("/api/devices/{id}/x/command"), Some(json!({"values": {"connection_keys": true}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let keys = response["result"]["connection_keys"].as_array().unwrap().clone();
    for key in ["user", "password", "token"] {
        assert!(keys.iter().any(|k| k == key), "{key} reached the instance: {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.as_str().is_some_and(|k| k.starts_with("MQTT"))), "the broker login is the host's");

    // Responses show names and references only.
    assert_eq!(view["connection"]["password"], "secret://password");
    assert_eq!(view["secrets"], json!(["password", "token"]));
    let (_, one) = serve.call(Method::GET, &format!("/api/instances/probe/{id}"), None).await;
    let (_, devices) = serve.call(Method::GET, "/api/devices", None).await;
    let (_, topics) = serve.call(Method::GET, "/api/mqtt/topics", None).await;
    for body in [&view, &one, &devices, &topics] {
        assert!(!body.to_string().contains(SECRET), "a response leaks the secret: {body}");
    }
    // Nothing at rest in clear: grep the whole data directory.
    for entry in walk(&serve.data()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{} holds the secret in clear", entry.display());
    }
    let secret_file = serve.data().join(format!("secrets/instances/{id}.secret"));
    assert!(secret_file.exists(), "the secrets are stored, encrypted");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(serve.data().join("secrets/.master.key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // Not logged, not published.
    assert!(!serve.log().contains(SECRET), "the log leaks the secret");
    for message in everything.collect_all(Duration::from_millis(300)).await {
        assert!(!message.text().contains(SECRET), "{} leaks the secret", message.topic);
    }
    // Deleting removes them.
    let (status, _) = serve.call(Method::DELETE, &format!("/api/instances/probe/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!secret_file.exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret_embedded() {
    secrets_stay_secret(Runtime::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret_docker() {
    if !require_docker() {
        return;
    }
    secrets_stay_secret(Runtime::Docker).await;
}
