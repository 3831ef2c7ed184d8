//! Container connectors (`"kind": "container"`): the multi-process template copied as an
//! author would copy it, its image built by the orchestrator on the base image it makes with
//! debootstrap, created through its setup flow, run under supervisord in a container like any
//! other instance, held to the contract by the conformance kit, and kept online when one of its
//! processes dies. A Dockerfile that does not build says why; the embedded runtime says such a
//! connector needs Docker.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance::{ALL_RULES, assert_passes, kit, outcome};
use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, plugin, require, require_docker};

/// The first container connector to start makes the base image; the others wait for it
/// rather than make it a second time at once.
static FIRST_START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Making the base image fetches Debian's packages: minutes on a cold machine.
const FIRST_BUILD: Duration = Duration::from_secs(20 * 60);
const WAIT: Duration = Duration::from_secs(30);

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn ok(serve: &Serve, path: &str, body: Value) -> Value {
    let (status, reply) = serve.call(Method::POST, path, Some(body)).await;
    assert!(status == StatusCode::OK || status == StatusCode::CREATED, "{path}: {status} {reply}");
    reply
}

/// The instance's view, until `done` says it is what was awaited; every view seen.
/// Wait until each of `programs` has lines in the instance's log that start with its name (the
/// bridge's "connected" line may reach Docker's log a moment after its "online" reached the
/// broker).
async fn named_lines(serve: &Serve, path: &str, programs: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, lines) = serve.call(Method::GET, &format!("{path}/logs?lines=200"), None).await;
        let text: Vec<String> =
            lines.as_array().unwrap().iter().filter_map(|l| l["content"].as_str().map(str::to_string)).collect();
        if programs.iter().all(|program| text.iter().any(|l| l.starts_with(&format!("{program}: ")))) {
            return;
        }
        assert!(Instant::now() < deadline, "each program's lines, named {programs:?}: {text:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn views_until(serve: &Serve, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let (_, view) = serve.call(Method::GET, path, None).await;
        let finished = done(&view);
        seen.push(view);
        if finished {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "never reached; the last views: {:#?}",
            &seen[seen.len().saturating_sub(3)..]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The pid supervisord reports for `program`, once it is RUNNING.
fn running_pid(container: &str, program: &str) -> Option<String> {
    let status = std::process::Command::new("docker")
        .args(["exec", container, "supervisorctl", "-c", "/app/supervisord.conf", "status", program])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    (words.get(1) == Some(&"RUNNING")).then(|| words.get(3).map(|p| p.trim_end_matches(',').to_string()))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiprocess_connector_is_built_runs_under_supervisord_and_passes_the_conformance_kit() {
    if !require_docker() || !require("debootstrap", "apt-get install debootstrap") {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let first_start = FIRST_START.lock().await;
    // Created through its own setup flow, like any connector.
    let session = ok(&serve, "/api/flows", json!({"integration": "lamps"})).await;
    let id = "workshop";
    let mut obs = Observer::connect(serve.mqtt(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let step = format!("/api/flows/{}/step", session["id"].as_str().unwrap());
    let done = ok(&serve, &step, json!({"values": {"friendly_name": "Workshop", "lamp": "lamp1"}})).await;
    assert_eq!(done["status"], "done", "{done}");

    // Built (with the base image the first time), then started; the status tells the steps.
    let path = format!("/api/instances/lamps/{id}");
    let views = views_until(&serve, &path, FIRST_BUILD, |v| {
        v["status"]["running"] == true || v["status"]["last_error"].is_string()
    })
    .await;
    let last = views.last().unwrap();
    assert_eq!(last["status"]["running"], true, "{last:#}");
    // Built now (not by an earlier run on this engine): the steps were on the status and in the log.
    if views.len() > 1 {
        assert!(views[0]["status"]["activity"].is_string(), "a build in progress shows: {:#}", views[0]);
        assert!(serve.log().contains("building the image of connector lamps"), "the build is in serve's log");
    }
    obs.wait_for("online", WAIT * 2, |m| m.topic.ends_with("/status") && m.text() == "online").await;
    drop(first_start);

    // A container like any instance's: named, labelled, limited, read-only, its login in a file.
    let name = format!("iot2mqtt_lamps_{id}");
    let container: Value = serde_json::from_str::<Value>(&docker(&["inspect", &name])).unwrap()[0].clone();
    let image = container["Config"]["Image"].as_str().unwrap().to_string();
    assert!(image.starts_with("iot2mqtt/connector:lamps-"), "{image}");
    assert_eq!(container["Config"]["Labels"]["iot2mqtt.connector"], "lamps");
    let host = &container["HostConfig"];
    assert_eq!((host["NetworkMode"].as_str(), host["ReadonlyRootfs"].as_bool()), (Some("host"), Some(true)));
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(host["Memory"].as_i64(), Some(128 << 20), "the manifest's memory");
    assert!(host["Tmpfs"]["/tmp"].is_string(), "a private /tmp: {}", host["Tmpfs"]);
    let env: Vec<&str> = container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for expected in [format!("INSTANCE_NAME={id}"), "CONNECTOR_TYPE=lamps".into(), "MODE=production".into()] {
        assert!(env.contains(&expected.as_str()), "{expected} in {env:?}");
    }
    assert!(!env.iter().any(|e| e.starts_with("MQTT_PASSWORD") || e.starts_with("IOT2MQTT_PLUGIN")), "{env:?}");
    assert!(container["Config"]["Healthcheck"]["Test"].is_array(), "the template's HEALTHCHECK");

    named_lines(&serve, &path, &["service", "bridge"]).await;
    // The kit checks a device the devices list says is online: wait until its first read says so.
    obs.wait_for("the lamp online in the devices list", WAIT, |m| {
        m.topic.ends_with("/meta/devices_list")
            && serde_json::from_slice::<Value>(&m.payload)
                .is_ok_and(|list| list.as_array().is_some_and(|l| l.iter().any(|d| d["online"] == true)))
    })
    .await;

    // The contract, from outside; the kill takes the bridge down hard to see its Last Will.
    let kill = format!("docker exec {name} pkill -9 -f bridge.py");
    let (code, report) = kit(serve.mqtt(), 10, &["--instance", id, "--kill", &kill]).await;
    let rules: Vec<&str> = ALL_RULES.iter().copied().filter(|r| *r != "group").collect();
    assert_passes(code, &report, &rules);
    assert_eq!(outcome(&report, "group"), "skip");
    // supervisord starts the bridge again, and the instance says so.
    obs.wait_for("online again", WAIT, |m| m.topic.ends_with("/status") && m.text() == "online").await;

    // The service dies: supervisord restarts it and the instance stays online.
    let deadline = Instant::now() + WAIT;
    let before = loop {
        if let Some(pid) = running_pid(&name, "service") {
            break pid;
        }
        assert!(Instant::now() < deadline, "the service never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    obs.clear();
    docker(&["exec", &name, "pkill", "-9", "-f", "service.py"]);
    let deadline = Instant::now() + WAIT;
    loop {
        match running_pid(&name, "service") {
            Some(pid) if pid != before => break,
            _ => assert!(Instant::now() < deadline, "supervisord did not restart the service"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let command = json!({"id": "after-restart", "values": {"power": true}});
    obs.publish(&format!("IoT2mqtt/v1/instances/{id}/devices/lamp1/cmd"), command.to_string()).await;
    let response = obs
        .wait_for("the command answered", WAIT, |m| {
            m.topic.ends_with("/cmd/response") && m.json()["cmd_id"] == "after-restart"
        })
        .await;
    assert_eq!(response.json()["status"], "success", "{}", response.text());
    let statuses: Vec<String> = obs
        .collect_all(Duration::ZERO)
        .await
        .iter()
        .filter(|m| m.topic.ends_with("/status"))
        .map(|m| m.text())
        .collect();
    assert!(!statuses.iter().any(|s| s == "offline"), "the instance stayed online: {statuses:?}");

    // The author changes the folder and updates: the image is built again and the container
    // recreated from it, online again before the call returns.
    let service = serve.dir.path().join("connectors/lamps/service.py");
    let mut text = std::fs::read_to_string(&service).unwrap();
    text.push_str("\n# changed by its author\n");
    std::fs::write(&service, text).unwrap();
    let (status, rebuilt) = serve.call(Method::POST, "/api/integrations/lamps/rebuild", None).await;
    assert_eq!(status, StatusCode::OK, "{rebuilt}");
    assert_eq!(rebuilt["instances"][0]["outcome"], "recreated", "{rebuilt}");
    assert_eq!(rebuilt["stopped_at"], Value::Null);
    let rebuilt_image =
        serde_json::from_str::<Value>(&docker(&["inspect", &name])).unwrap()[0]["Config"]["Image"].clone();
    assert_ne!(rebuilt_image.as_str(), Some(image.as_str()), "a new image, tagged by the new content");
    let (status, refused) = serve.call(Method::POST, "/api/integrations/demo/rebuild", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a plugin connector is updated by upload: {refused}");

    // Stopped through the API: SIGTERM reaches the bridge first, which says offline itself.
    obs.clear();
    let (status, _) = serve.call(Method::POST, &format!("{path}/stop"), None).await;
    assert_eq!(status, StatusCode::OK);
    obs.wait_for("offline", WAIT, |m| m.topic.ends_with("/status") && m.text() == "offline").await;
    let state = docker(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(state.trim(), "0", "supervisord stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sensor_hub_bridges_two_languages_through_a_plugin_that_swaps_inside_its_container() {
    if !require_docker() || !require("debootstrap", "apt-get install debootstrap") {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let first_start = FIRST_START.lock().await;
    let session = ok(&serve, "/api/flows", json!({"integration": "sensor-hub"})).await;
    let id = "greenhouse";
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    let step = format!("/api/flows/{}/step", session["id"].as_str().unwrap());
    let done = ok(&serve, &step, json!({"values": {"friendly_name": "Greenhouse"}})).await;
    assert_eq!(done["status"], "done", "{done}");
    let path = format!("/api/instances/sensor-hub/{id}");
    let views = views_until(&serve, &path, FIRST_BUILD, |v| {
        v["status"]["running"] == true || v["status"]["last_error"].is_string()
    })
    .await;
    assert_eq!(views.last().unwrap()["status"]["running"], true, "{:#}", views.last().unwrap());
    obs.wait_for("online", WAIT * 2, |m| m.topic == format!("{root}/status") && m.text() == "online").await;
    drop(first_start);
    let name = format!("iot2mqtt_sensor-hub_{id}");
    named_lines(&serve, &path, &["climate", "relays", "bridge"]).await;

    // Both services answer through the plugin: Python's climate sensor, Perl's relay.
    let climate =
        obs.next_json(&format!("{root}/devices/climate/state"), WAIT, |s| s["state"]["temperature"].is_number()).await;
    assert_eq!(climate["state"]["fan"], false, "{climate}");
    for (device, values, key) in [("relay", json!({"power": true}), "power"), ("climate", json!({"fan": true}), "fan")]
    {
        let cmd_id = format!("set-{device}");
        obs.publish(&format!("{root}/devices/{device}/cmd"), json!({"id": cmd_id, "values": values}).to_string()).await;
        let response = obs
            .next_json(&format!("{root}/devices/{device}/cmd/response"), WAIT, |r| r["cmd_id"] == cmd_id.as_str())
            .await;
        assert_eq!(response["status"], "success", "{response}");
        let state = obs.next_json(&format!("{root}/devices/{device}/state"), WAIT, |s| s["state"][key] == true).await;
        assert_eq!(state["state"]["online"], true);
    }
    let wrong = json!({"id": "wrong", "values": {"power": "maybe"}});
    obs.publish(&format!("{root}/devices/relay/cmd"), wrong.to_string()).await;
    let refused = obs.next_json(&format!("{root}/devices/relay/cmd/response"), WAIT, |r| r["cmd_id"] == "wrong").await;
    assert_eq!(refused["error"]["code"], "INVALID_VALUE", "the Perl service's own refusal: {refused}");

    // The contract, from outside; the kill takes the bridge (iot2mqtt-host) down hard.
    let kill = format!("docker exec {name} pkill -9 -f iot2mqtt-host");
    let (code, report) = kit(serve.mqtt(), 10, &["--instance", id, "--kill", &kill]).await;
    let rules: Vec<&str> = ALL_RULES.iter().copied().filter(|r| *r != "group").collect();
    assert_passes(code, &report, &rules);
    obs.wait_for("online again", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "online").await;

    // The bridge plugin is hot-swapped inside the running container, without going offline.
    obs.clear();
    let upload = format!("{path}/plugin");
    let (status, body) = serve.call_bytes(Method::POST, &upload, "application/wasm", plugin("sensor-hub-next")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["version"].as_str(), body["swapped"].as_bool()), (Some("0.2.0"), Some(true)), "{body}");
    let info = obs.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["version"] == "0.2.0").await;
    assert_eq!(info["plugin"]["name"], "sensor-hub");
    obs.publish(
        &format!("{root}/devices/relay/cmd"),
        json!({"id": "after-swap", "values": {"power": false}}).to_string(),
    )
    .await;
    let response =
        obs.next_json(&format!("{root}/devices/relay/cmd/response"), WAIT, |r| r["cmd_id"] == "after-swap").await;
    assert_eq!(response["status"], "success", "{response}");
    let statuses: Vec<String> = obs
        .collect_all(Duration::ZERO)
        .await
        .iter()
        .filter(|m| m.topic == format!("{root}/status"))
        .map(|m| m.text())
        .collect();
    assert!(!statuses.iter().any(|s| s == "offline"), "the swap kept the session: {statuses:?}");

    // The Perl service dies: supervisord starts it again and the relay answers again.
    let before = running_pid(&name, "relays").expect("the relay service runs");
    docker(&["exec", &name, "pkill", "-9", "-f", "relays.pl"]);
    let deadline = Instant::now() + WAIT;
    while running_pid(&name, "relays").is_none_or(|pid| pid == before) {
        assert!(Instant::now() < deadline, "supervisord did not restart the relay service");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    obs.publish(
        &format!("{root}/devices/relay/cmd"),
        json!({"id": "after-kill", "values": {"power": true}}).to_string(),
    )
    .await;
    let response =
        obs.next_json(&format!("{root}/devices/relay/cmd/response"), WAIT, |r| r["cmd_id"] == "after-kill").await;
    assert_eq!(response["status"], "success", "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerfile_that_does_not_build_is_reported_with_dockers_message() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    serve.create(json!({"instance_id": "misbuilt", "connector_type": "misbuilt", "devices": []})).await;
    let views =
        views_until(&serve, "/api/instances/misbuilt/misbuilt", WAIT * 4, |v| v["status"]["last_error"].is_string())
            .await;
    let error = views.last().unwrap()["status"]["last_error"].as_str().unwrap().to_string();
    assert!(error.contains("building iot2mqtt/connector:misbuilt-"), "{error}");
    assert!(error.contains("no-such-file"), "Docker's own words: {error}");
    assert_eq!(views.last().unwrap()["status"]["running"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_runtime_refuses_a_container_connector_and_says_it_needs_docker() {
    let serve = Serve::start(Runtime::Embedded).await;
    let body = json!({"instance_id": "nodocker", "connector_type": "lamps", "devices": []});
    let (status, answer) = serve.call(Method::POST, "/api/instances", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("needs Docker") && error.contains("lamps"), "{answer:#}");
    // Nothing half-made is left behind.
    let (status, _) = serve.call(Method::GET, "/api/instances/lamps/nodocker", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
