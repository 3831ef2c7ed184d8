//! Instances through the API, in both runtimes and with both brokers: create, read, update,
//! stop, start, restart, delete, devices and commands, watched on MQTT.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::observer::{retained, retained_under};
use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, TestBroker, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(30);

async fn wait_status(serve: &Serve, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, view) = serve.call(Method::GET, path, None).await;
        if status == StatusCode::OK && check(&view) {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never matched; last: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lifecycle(serve: &Serve) {
    let id = unique_id("life");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;

    let view = serve
        .create(json!({
            "instance_id": id, "connector_type": "demo", "friendly_name": "Lifecycle",
            "devices": [{"device_id": "l1", "kind": "light"}], "update_interval": 5
        }))
        .await;
    assert_eq!(view["instance_id"], id.as_str());
    assert_eq!(view["status"]["desired"], "running");
    let created_at = view["created_at"].as_str().unwrap().to_string();
    assert_eq!(obs.next_on(&format!("{root}/status"), WAIT).await.text(), "online");
    obs.next_on(&format!("{root}/devices/l1/state"), WAIT).await;
    // Home Assistant finds it (the instance publishes and reads back its discovery configs,
    // which its broker account allows).
    let discovery = format!("homeassistant/+/IoT2mqtt_{id}/+/config");
    let mut ha = Observer::connect(serve.mqtt(), &discovery).await;
    ha.wait_for("the light's discovery config", WAIT, |m| m.topic.ends_with("/l1_light/config")).await;

    let (status, body) =
        serve.call(Method::POST, "/api/instances", Some(json!({"instance_id": id, "connector_type": "demo"}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("instance_id")), "{body}");

    let one = format!("/api/instances/demo/{id}");
    wait_status(serve, &one, |v| v["status"]["running"] == true && v["status"]["mqtt_status"] == "online").await;
    let (_, list) = serve.call(Method::GET, "/api/instances", None).await;
    assert!(list.as_array().unwrap().iter().any(|i| i["instance_id"] == id.as_str()));

    // Update: keeps created_at, sets updated_at, restarts with the new devices.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, updated) = serve
        .call(
            Method::PUT,
            &one,
            Some(json!({"friendly_name": "Renamed", "devices": [
            {"device_id": "l1", "kind": "light"}, {"device_id": "s1", "kind": "switch"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["created_at"], created_at.as_str());
    assert_ne!(updated["updated_at"], created_at.as_str());
    obs.next_on(&format!("{root}/devices/s1/state"), WAIT).await;

    // Devices and commands.
    let (_, devices) = serve.call(Method::GET, "/api/devices", None).await;
    let mine: Vec<&Value> = devices.as_array().unwrap().iter().filter(|d| d["instance_id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 2, "{devices}");
    let (status, response) = serve
        .call(Method::POST, &format!("/api/devices/{id}/l1/command"), Some(json!({"values": {"power": true}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((response["status"].as_str(), &response["result"]), (Some("success"), &json!({"power": true})));
    let (status, response) = serve
        .call(Method::POST, &format!("/api/devices/{id}/l1/command"), Some(json!({"values": {"brightness": 900}})))
        .await;
    assert_eq!(
        (status, response["error"]["code"].as_str()),
        (StatusCode::OK, Some("INVALID_VALUE")),
        "the device's answer, whatever it is"
    );
    let (status, _) =
        serve.call(Method::POST, &format!("/api/devices/{id}/nope/command"), Some(json!({"values": {}}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Stop, start, restart.
    let (status, stopped) = serve.call(Method::POST, &format!("{one}/stop"), None).await;
    assert_eq!((status, stopped["status"]["desired"].as_str()), (StatusCode::OK, Some("stopped")));
    obs.wait_for("offline", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "offline").await;
    let (status, response) = serve
        .call(
            Method::POST,
            &format!("/api/devices/{id}/l1/command"),
            Some(json!({"values": {"power": true}, "timeout": 500})),
        )
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "a stopped instance does not answer: {response}");
    let (status, _) = serve.call(Method::POST, &format!("{one}/start"), None).await;
    assert_eq!(status, StatusCode::OK);
    obs.wait_for("online", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "online").await;
    let (status, restarted) = serve.call(Method::POST, &format!("{one}/restart"), None).await;
    assert_eq!((status, restarted["status"]["api_restarts"].as_u64()), (StatusCode::OK, Some(1)));
    obs.wait_for("online", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "online").await;

    // A neighbour whose id starts the same keeps its retained topics when this one is deleted.
    let neighbour = format!("{id}2");
    serve.create(json!({"instance_id": neighbour, "connector_type": "demo", "devices": [{"device_id": "x", "kind": "switch"}]})).await;
    let neighbour_status = format!("IoT2mqtt/v1/instances/{neighbour}/status");
    let mut neighbour_obs = Observer::connect(serve.mqtt(), &neighbour_status).await;
    neighbour_obs.wait_for("neighbour online", WAIT, |m| m.text() == "online").await;
    wait_status(serve, &one, |v| v["status"]["mqtt_status"] == "online").await;

    let (status, _) = serve.call(Method::DELETE, &one, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = serve.call(Method::GET, &one, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = retained_under(serve.mqtt(), &format!("{root}/#"), Duration::from_secs(1)).await;
    assert!(left.is_empty(), "every retained topic of the instance was cleared: {left:?}");
    let left = retained_under(serve.mqtt(), &discovery, Duration::from_secs(1)).await;
    assert!(left.is_empty(), "Home Assistant forgets the instance: {left:?}");
    let kept =
        retained_under(serve.mqtt(), &format!("homeassistant/+/IoT2mqtt_{id}2/+/config"), Duration::from_secs(1)).await;
    assert!(kept.iter().any(|m| m.topic.ends_with("/x_switch/config")), "the neighbour keeps its configs: {kept:?}");
    let neighbour = retained(serve.mqtt(), &neighbour_status).await.map(|m| m.text());
    assert_eq!(neighbour.as_deref(), Some("online"), "the neighbour {neighbour_status} kept its status");
    let backups = std::fs::read_dir(serve.data().join("instances/demo/.backup")).unwrap().count();
    assert_eq!(backups, 1, "the deleted file was backed up");
    if serve.runtime == Runtime::Docker {
        let inspect =
            std::process::Command::new("docker").args(["inspect", &format!("iot2mqtt_demo_{id}")]).output().unwrap();
        assert!(!inspect.status.success(), "the container was removed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_embedded_runtime_own_broker() {
    lifecycle(&Serve::start(Runtime::Embedded).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_embedded_runtime_external_broker() {
    let Some(broker) = TestBroker::start().await else { return };
    let serve = Serve::start_with(Runtime::Embedded, Some(&broker), &[]).await;
    let (_, health) = serve.call(Method::GET, "/api/health", None).await;
    assert_eq!(health["broker"], "external");
    lifecycle(&serve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_docker_runtime_own_broker() {
    if !require_docker() {
        return;
    }
    lifecycle(&Serve::start(Runtime::Docker).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_docker_runtime_external_broker() {
    if !require_docker() {
        return;
    }
    let Some(broker) = TestBroker::start().await else { return };
    lifecycle(&Serve::start_with(Runtime::Docker, Some(&broker), &[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_naming_the_field_and_nothing_is_created() {
    let serve = Serve::start(Runtime::Embedded).await;
    let cases = [
        (
            json!({"instance_id": "Bad Id", "connector_type": "demo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("instance_id"),
        ),
        (
            json!({"instance_id": "../../etc", "connector_type": "demo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("instance_id"),
        ),
        (
            json!({"instance_id": "ok1", "connector_type": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("connector_type"),
        ),
        (
            json!({"instance_id": "ok2", "connector_type": "../demo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("connector_type"),
        ),
        (
            json!({"instance_id": "ok3", "connector_type": "_template"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("connector_type"),
        ),
        (json!({"instance_id": "ok4"}), StatusCode::UNPROCESSABLE_ENTITY, Some("connector_type")),
        (
            json!({"instance_id": "ok5", "connector_type": "demo", "devices": "l1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("devices"),
        ),
        (
            json!({"instance_id": "ok6", "connector_type": "demo", "update_interval": "often"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("update_interval"),
        ),
        (
            json!({"instance_id": "ok7", "connector_type": "demo", "devices": [{"device_id": "a"}, {"device_id": "a"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("devices"),
        ),
        (json!({"connector_type": "demo"}), StatusCode::UNPROCESSABLE_ENTITY, Some("friendly_name")),
        (json!([1, 2]), StatusCode::UNPROCESSABLE_ENTITY, None),
    ];
    for (body, expected, field) in cases {
        let (status, response) = serve.call(Method::POST, "/api/instances", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {response}");
        assert_eq!(response["field"].as_str(), field, "{body}: {response}");
        assert!(response["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let post = || serve.client().post(serve.url("/api/instances")).bearer_auth(serve.token());
    let not_json = post().header("content-type", "application/json").body("{oops").send().await.unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let form = post().form(&[("connector_type", "demo")]).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a JSON route takes JSON only");
    for path in
        ["/api/instances/demo/..%2F..%2Fsecrets", "/api/instances/..%2Fsecrets/x", "/api/instances/demo/.master.key"]
    {
        let (status, _) = serve.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, list) = serve.call(Method::GET, "/api/instances", None).await;
    assert_eq!(list, json!([]), "nothing was created");
    let files = std::fs::read_dir(serve.data().join("instances")).unwrap().count();
    assert_eq!(files, 0, "no folder, no file, no half-created instance");

    // The slug rule, and a duplicate slug as a conflict on instance_id.
    let created = serve.create(json!({"connector_type": "demo", "friendly_name": "Living Room"})).await;
    assert_eq!(created["instance_id"], "living_room");
    let (status, body) = serve
        .call(
            Method::POST,
            "/api/instances",
            Some(json!({"instance_id": "auto", "connector_type": "demo", "friendly_name": "Living room"})),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("instance_id")));
}

/// A plugin that faults again and again is reported as crash-looping, with its restarts and
/// the guest's own message; the instance keeps serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_faulting_is_reported_as_crash_looping() {
    keeps_faulting(Runtime::Embedded).await;
}

/// The same in a container, where the faults are seen on the instance's MQTT `error` topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_faulting_in_a_container_is_reported_as_crash_looping() {
    if !require_docker() {
        return;
    }
    keeps_faulting(Runtime::Docker).await;
}

async fn keeps_faulting(runtime: Runtime) {
    let serve = Serve::start(runtime).await;
    let id = unique_id("loop");
    serve.create(json!({"instance_id": id, "connector_type": "trappy", "devices": [{"device_id": "x"}]})).await;
    let one = format!("/api/instances/trappy/{id}");
    let calm = wait_status(&serve, &one, |v| v["status"]["mqtt_status"] == "online").await;
    assert_eq!(calm["status"]["crash_looping"], false, "{calm}");

    let command = format!("/api/devices/{id}/x/command");
    for n in 0..iot2mqtt_runtime::CRASH_LOOP_FAULTS {
        // Restarts back off (0 s, 1 s, 2 s…); meanwhile commands are refused without a fault.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, response) =
                serve.call(Method::POST, &command, Some(json!({"values": {"panic": format!("boom {n}")}}))).await;
            assert_eq!(
                (status, response["error"]["code"].as_str()),
                (StatusCode::OK, Some("PLUGIN_FAULT")),
                "{response}"
            );
            let message = response["error"]["message"].as_str().unwrap_or_default();
            if !message.starts_with("the device's plugin is restarting") {
                assert!(message.contains(&format!("fixture trap: \"boom {n}\"")), "{response}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the plugin never came back: {response}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if n + 1 < iot2mqtt_runtime::CRASH_LOOP_FAULTS {
            let (_, view) = serve.call(Method::GET, &one, None).await;
            assert_eq!(view["status"]["crash_looping"], false, "a few faults are not a loop yet: {view}");
        }
    }
    let looping = wait_status(&serve, &one, |v| v["status"]["crash_looping"] == true).await;
    let status = &looping["status"];
    assert_eq!(status["restarts"].as_u64(), Some(iot2mqtt_runtime::CRASH_LOOP_FAULTS as u64), "{looping}");
    assert!(status["last_error"].as_str().is_some_and(|e| e.contains("fixture trap: \"boom 4\"")), "{looping}");
    assert!(status["running"] == true && status["mqtt_status"] == "online", "the instance keeps serving: {looping}");
}
