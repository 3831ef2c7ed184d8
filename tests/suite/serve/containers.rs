//! The Docker runtime's containers: built from the runner image the orchestrator builds
//! itself, named, labelled, limited, mounted read-only; the container API refuses anything
//! that is not a connector container; logs come with levels and as a live stream.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, TestBroker, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(30);

fn inspect(name: &str) -> Value {
    let out = std::process::Command::new("docker").args(["inspect", name]).output().unwrap();
    assert!(out.status.success(), "docker inspect {name}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_built_named_labelled_limited_and_read_only() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let id = unique_id("ctr");
    let mut obs = Observer::connect(serve.mqtt(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    obs.wait_for("online", WAIT, |m| m.topic.ends_with("/status") && m.text() == "online").await;

    let name = format!("iot2mqtt_demo_{id}");
    let container = inspect(&name);
    let labels = &container["Config"]["Labels"];
    assert_eq!(
        (labels["iot2mqtt.type"].as_str(), labels["iot2mqtt.connector"].as_str()),
        (Some("connector"), Some("demo"))
    );
    assert_eq!(labels["iot2mqtt.instance"], id.as_str());
    let host = &container["HostConfig"];
    assert_eq!(host["NetworkMode"], "host");
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(host["Memory"].as_i64(), Some((64 + 48) << 20), "memory from the manifest");
    assert_eq!(host["NanoCpus"].as_i64(), Some(500_000_000), "CPU from the manifest");
    let mounts = container["Mounts"].as_array().unwrap();
    for target in ["/app/instances", "/app/plugin", "/run/secrets", "/shared-cache"] {
        let mount = mounts.iter().find(|m| m["Destination"] == target).unwrap_or_else(|| panic!("{target} mounted"));
        assert_eq!(mount["RW"], false, "{target} is read-only");
    }
    let env: Vec<&str> = container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for expected in [format!("INSTANCE_NAME={id}"), "CONNECTOR_TYPE=demo".into(), "MODE=production".into()] {
        assert!(env.contains(&expected.as_str()), "{expected} in {env:?}");
    }
    // It logged in to the embedded broker with its own account, read from a file.
    assert!(!env.iter().any(|e| e.starts_with("MQTT_PASSWORD") || e.starts_with("MQTT_USERNAME")), "{env:?}");
    let image = container["Config"]["Image"].as_str().unwrap().to_string();
    assert!(image.starts_with("iot2mqtt/runner:"), "{image}");
    let image_info = inspect(&image);
    assert!(image_info["Size"].as_i64().unwrap() < 25 << 20, "the runner image is small: {}", image_info["Size"]);

    // The API lists it, with levels in its logs, and a live stream.
    let (_, list) = serve.call(Method::GET, "/api/docker/containers", None).await;
    assert!(list.as_array().unwrap().iter().any(|c| c["name"] == name.as_str() && c["instance_id"] == id.as_str()));
    let (status, logs) = serve.call(Method::GET, &format!("/api/docker/containers/{name}/logs?lines=20"), None).await;
    assert_eq!(status, StatusCode::OK);
    let lines = logs.as_array().unwrap();
    let started = lines.iter().find(|l| l["content"].as_str().unwrap().contains("starting instance"));
    assert!(started.is_some_and(|l| l["level"] == "info"), "{logs}");
    // serve compiled the plugin into the cache every container reads: this one compiled nothing.
    let started = started.and_then(|l| l["content"].as_str()).unwrap_or_default();
    assert!(started.contains("cache=Hit"), "the container's host loaded the plugin serve compiled: {started}");
    let stream = serve
        .client()
        .get(serve.url(&format!("/api/docker/containers/{name}/logs/stream?lines=5")))
        .bearer_auth(serve.token())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.bytes_stream();
    let first = tokio::time::timeout(WAIT, body.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: log"), "{first:?}");

    // Container operations by the API.
    let (status, _) = serve.call(Method::POST, &format!("/api/docker/containers/{name}/restart"), None).await;
    assert_eq!(status, StatusCode::OK);
    obs.wait_for("online after restart", WAIT, |m| m.topic.ends_with("/status") && m.text() == "online").await;
    let (status, _) = serve.call(Method::POST, &format!("/api/docker/containers/{name}/stop"), None).await;
    assert_eq!(status, StatusCode::OK);
    obs.wait_for("offline", WAIT, |m| m.topic.ends_with("/status") && m.text() == "offline").await;
    assert_eq!(inspect(&name)["State"]["ExitCode"], 0, "SIGTERM, clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_api_refuses_containers_without_the_connector_label() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    // A container of the same image without the label: made here, not by the orchestrator.
    let id = unique_id("label");
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    let image = inspect(&format!("iot2mqtt_demo_{id}"))["Config"]["Image"].as_str().unwrap().to_string();
    let foreign = format!("foreign-{id}");
    let created = std::process::Command::new("docker").args(["create", "--name", &foreign, &image]).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    for (method, path) in [
        (Method::POST, format!("/api/docker/containers/{foreign}/start")),
        (Method::POST, format!("/api/docker/containers/{foreign}/stop")),
        (Method::POST, format!("/api/docker/containers/{foreign}/restart")),
        (Method::DELETE, format!("/api/docker/containers/{foreign}?force=true")),
        (Method::GET, format!("/api/docker/containers/{foreign}/logs")),
        (Method::GET, format!("/api/docker/containers/{foreign}/logs/stream")),
    ] {
        let (status, body) = serve.call(method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let still_there = std::process::Command::new("docker").args(["inspect", &foreign]).output().unwrap();
    assert!(still_there.status.success(), "the foreign container was not touched");
    let _ = std::process::Command::new("docker").args(["rm", "-f", &foreign]).output();
    let (_, list) = serve.call(Method::GET, "/api/docker/containers", None).await;
    assert!(list.as_array().unwrap().iter().all(|c| c["name"] != foreign.as_str()), "not listed either");
}

/// A connector that asks for Docker's bridge network gets it, and still reaches a broker the
/// orchestrator knows as `localhost`: through the host's gateway, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_connector_reaches_a_local_broker_through_the_gateway() {
    if !require_docker() {
        return;
    }
    let Some(broker) = TestBroker::start_for_containers().await else { return };
    let serve = Serve::start_with(Runtime::Docker, Some(&broker), &[]).await;
    let id = unique_id("brg");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    serve
        .create(
            json!({"instance_id": id, "connector_type": "bridged", "devices": [{"device_id": "l1", "kind": "light"}]}),
        )
        .await;

    let container = inspect(&format!("iot2mqtt_bridged_{id}"));
    let host = &container["HostConfig"];
    assert_eq!(host["NetworkMode"], "bridge");
    assert_eq!(host["ExtraHosts"], json!(["host.docker.internal:host-gateway"]));
    let env: Vec<&str> = container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.contains(&"MQTT_HOST=host.docker.internal"), "{env:?}");

    obs.wait_for("online", WAIT, |m| m.topic.ends_with("/status") && m.text() == "online").await;
    obs.wait_for("the light's state", WAIT, |m| m.topic.ends_with("/devices/l1/state")).await;
    assert!(!serve.log().contains("nothing answers there"), "no false warning");
}

/// The same connector with a broker that listens on loopback only (the embedded broker's
/// default) could never connect: the orchestrator says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_connector_and_a_loopback_only_broker_are_warned_about() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let id = unique_id("brw");
    // The check runs while the instance starts, before the create call answers.
    serve.create(json!({"instance_id": id, "connector_type": "bridged", "devices": []})).await;
    let warning = "nothing answers there: the broker listens on loopback only";
    assert!(serve.log().contains(warning), "no warning in the log:\n{}", serve.log());
    let (status, _) = serve.call(Method::DELETE, &format!("/api/instances/bridged/{id}"), None).await;
    assert!(status.is_success(), "{status}");
}
