// Longer than 500 lines: one test per onboarding path, sharing the helpers below.
//! Onboarding through the HTTP API: the connector catalog, setup flows walked to a running
//! instance (the demo connector, and Yeelight against the bulb simulator, found by multicast),
//! the tool runner's limits (timeout, exit status, output, masked secrets, network) as
//! subprocesses and, under Docker, in a container of the connector's image, and an OAuth step
//! against a fake provider.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::oauth::{ACCESS_TOKEN, FakeProvider, REFRESH_TOKEN};
use crate::support::serve::{Runtime, Serve};
use crate::support::yeelight::{BulbSim, Model};
use crate::support::{Observer, process_running, require, require_docker};

const WAIT: Duration = Duration::from_secs(30);

/// `POST path` with `body`, expecting 200 (or 201 for a new session); the body.
async fn ok(serve: &Serve, path: &str, body: Value) -> Value {
    let (status, reply) = serve.call(Method::POST, path, Some(body)).await;
    assert!(status == StatusCode::OK || status == StatusCode::CREATED, "{path}: {status} {reply}");
    reply
}

async fn step(serve: &Serve, session: &Value, body: Value) -> Value {
    ok(serve, &format!("/api/flows/{}/step", session["id"].as_str().unwrap()), body).await
}

/// Run `tool` of `connector` through the tool API, expecting 200; the outcome.
async fn execute(serve: &Serve, connector: &str, tool: &str, input: Value) -> Value {
    let path = format!("/api/integrations/{connector}/tools/execute");
    let (status, body) = serve.call(Method::POST, &path, Some(json!({"tool": tool, "input": input}))).await;
    assert_eq!(status, StatusCode::OK, "{connector}/{tool}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_connectors_and_names_what_is_broken() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve.create(json!({"instance_id": "one", "connector_type": "demo", "devices": []})).await;
    let (status, list) = serve.call(Method::GET, "/api/integrations", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let by_name: HashMap<&str, &Value> =
        list.as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c)).collect();
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "boxed",
            "bridged",
            "broken",
            "cloudy",
            "demo",
            "lamps",
            "misbuilt",
            "probe",
            "scripted",
            "sensor-hub",
            "shelly",
            "tokened",
            "trappy",
            "unbuildable",
            "wronghost",
            "yeelight"
        ],
        "_template is hidden"
    );
    let demo = by_name["demo"];
    assert_eq!(demo["display_name"], "Demo devices");
    assert_eq!(demo["instances"], 1);
    assert_eq!(demo["flows"][0]["id"], "default");
    assert_eq!(demo["branding"]["color"], "#1f6feb");
    assert_eq!(by_name["yeelight"]["tools"], json!(["discover_devices", "validate_device"]));
    let broken = by_name["broken"];
    assert_eq!(broken["broken"], true);
    let error = broken["error"].as_str().unwrap();
    assert!(error.contains("setup.json") && error.contains("flows[0].steps[0]") && error.contains("tool"), "{error}");
    // Hosts a plugin may reach besides its devices are part of the catalog; a URL is not a host.
    assert_eq!(by_name["cloudy"]["reaches"], json!(["api.cloudy.example", "*.cloudy.example:443"]));
    assert_eq!(by_name["demo"]["reaches"], json!([]));
    let wrong = by_name["wronghost"]["error"].as_str().unwrap();
    assert!(
        wrong.contains("network.http") && wrong.contains("\"https://api.example.com/v1\" is not a host name"),
        "{wrong}"
    );

    let (status, meta) = serve.call(Method::GET, "/api/integrations/yeelight/meta", None).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["setup"]["multi_device"]["max_devices"], 32);
    assert_eq!(meta["icon_url"], "/api/integrations/yeelight/icon");
    let (status, setup) = serve.call(Method::GET, "/api/integrations/demo/setup", None).await;
    assert_eq!((status, setup["version"].as_str()), (StatusCode::OK, Some("1.0")));
    let icon = serve
        .client()
        .get(serve.url("/api/integrations/yeelight/icon"))
        .bearer_auth(serve.token())
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.text().await.unwrap().contains("<svg"));
    for (path, expected) in [
        ("/api/integrations/nothing/meta", StatusCode::NOT_FOUND),
        ("/api/integrations/_template/meta", StatusCode::NOT_FOUND),
        ("/api/integrations/broken/meta", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/integrations/probe/icon", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = serve.call(Method::GET, path, None).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_flow_through_the_api_to_a_running_instance() {
    let serve = Serve::start(Runtime::Embedded).await;
    let session = ok(&serve, "/api/flows", json!({"integration": "demo"})).await;
    assert_eq!((session["status"].as_str(), session["step"]["id"].as_str()), (Some("step"), Some("about")));
    let fields = session["step"]["fields"].as_array().unwrap();
    assert_eq!(fields.iter().find(|f| f["name"] == "count").unwrap()["default"], 2, "defaults come resolved");

    let refused = step(&serve, &session, json!({"values": {"count": 99}})).await;
    assert_eq!(refused["step"]["id"], "about");
    assert_eq!(refused["step"]["errors"]["friendly_name"], "is required");
    assert!(refused["step"]["errors"]["count"].as_str().unwrap().contains("10"), "{refused}");

    // The tool step runs by itself: the next thing shown is the select fed by its result.
    let pick =
        step(&serve, &session, json!({"values": {"friendly_name": "Flow House", "count": 1, "sensors": false}})).await;
    assert_eq!(pick["step"]["id"], "pick", "{pick}");
    assert_eq!(pick["step"]["title"], "Choose the devices of Flow House");
    let values: Vec<&str> =
        pick["step"]["items"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["light1", "switch1"]);
    let review = step(&serve, &session, json!({"selection": ["light1", "switch1"]})).await;
    assert_eq!(review["step"]["summary"][1], json!({"label": "Devices", "value": 2}));

    let id = "flow_house";
    let mut obs = Observer::connect(serve.mqtt(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let done = step(&serve, &session, json!({})).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["instance"]["instance_id"], id);
    assert_eq!(done["instance"]["update_interval"], 10);
    let devices: Vec<&str> =
        done["instance"]["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(devices, ["light1", "switch1"]);
    obs.next_on(&format!("IoT2mqtt/v1/instances/{id}/devices/light1/state"), WAIT).await;
    let (_, again) = serve.call(Method::GET, &format!("/api/flows/{}", session["id"].as_str().unwrap()), None).await;
    assert_eq!(again["status"], "done");
    let (status, _) = serve
        .call(Method::POST, &format!("/api/flows/{}/step", session["id"].as_str().unwrap()), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished flow takes no more steps");

    // The same name again: the 409 comes back as an error on the name field.
    let second = ok(&serve, "/api/flows", json!({"integration": "demo"})).await;
    step(&serve, &second, json!({"values": {"friendly_name": "Flow House", "count": 1}})).await;
    step(&serve, &second, json!({"selection": ["light1"]})).await;
    let clash = step(&serve, &second, json!({})).await;
    assert_eq!(clash["status"], "step");
    assert_eq!(clash["step"]["id"], "about");
    assert!(clash["step"]["errors"]["friendly_name"].as_str().unwrap().contains("exists already"), "{clash}");

    // Requests the flow cannot take.
    let path = format!("/api/flows/{}", second["id"].as_str().unwrap());
    for (method, path, body, expected) in [
        (Method::POST, "/api/flows".to_string(), json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, "/api/flows".to_string(), json!({"integration": "nothing"}), StatusCode::NOT_FOUND),
        (Method::POST, "/api/flows".to_string(), json!({"integration": "broken"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            Method::POST,
            "/api/flows".to_string(),
            json!({"integration": "demo", "flow": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (Method::POST, format!("{path}/step"), json!({"values": 3}), StatusCode::BAD_REQUEST),
        (Method::POST, format!("{path}/action"), json!({"action": "goto_flow"}), StatusCode::UNPROCESSABLE_ENTITY),
        (Method::GET, "/api/flows/0123".to_string(), Value::Null, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = serve.call(method, &path, (!body.is_null()).then_some(body)).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, _) =
        serve.call_bytes(Method::POST, &format!("{path}/step"), "application/json", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = serve.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = serve.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_yeelight_flows_find_and_add_bulbs() {
    let serve = Serve::start(Runtime::Embedded).await;
    let sim = BulbSim::start(Model::Color).await;

    // Automatic: the multicast search finds the simulator (and any other running now).
    let session = ok(&serve, "/api/flows", json!({"integration": "yeelight"})).await;
    assert_eq!(session["step"]["id"], "search", "{session}");
    let items = session["step"]["items"].as_array().unwrap();
    let found =
        items.iter().find(|i| i["value"] == sim.id()).unwrap_or_else(|| panic!("{} not in {items:?}", sim.id()));
    assert_eq!(found["label"], "Sim (127.0.0.1)");
    let names = step(&serve, &session, json!({"selection": [sim.id()]})).await;
    assert_eq!(names["step"]["title"], "Name the color at 127.0.0.1");
    let group = step(&serve, &session, json!({"values": {"label": "Desk"}})).await;
    assert_eq!(group["step"]["id"], "instance_name");
    let mut obs = Observer::connect(serve.mqtt(), "IoT2mqtt/v1/instances/office/#").await;
    let done = step(&serve, &session, json!({"values": {"friendly_name": "Office", "effect": "sudden"}})).await;
    assert_eq!(done["status"], "done", "{done}");
    let device = &done["instance"]["devices"][0];
    assert_eq!((device["host"].as_str(), device["port"].as_u64()), (Some("127.0.0.1"), Some(u64::from(sim.port()))));
    assert_eq!(device["friendly_name"], "Desk");
    assert_eq!(done["instance"]["connection"]["effect"], "sudden");
    let state =
        obs.next_json(&format!("IoT2mqtt/v1/instances/office/devices/{}/state", sim.id()), WAIT, |_| true).await;
    assert_eq!(state["state"]["power"], true, "{state}");

    // Manual: an address, checked by the tool, then more bulbs; a repeated id is refused.
    let other = BulbSim::start(Model::Ceiling).await;
    let session = ok(&serve, "/api/flows", json!({"integration": "yeelight", "flow": "manual"})).await;
    assert_eq!(session["step"]["id"], "address");
    let closed = crate::support::free_port();
    let failed = step(&serve, &session, json!({"values": {"host": "127.0.0.1", "port": closed}})).await;
    assert_eq!(failed["step"]["id"], "check");
    assert_eq!(failed["step"]["error"]["code"], "tool_failed", "{failed}");
    assert!(failed["step"]["error"]["message"].as_str().unwrap().contains("LAN control"));
    let id = format!("/api/flows/{}", session["id"].as_str().unwrap());
    ok(&serve, &format!("{id}/action"), json!({"action": "reset_flow"}))
        .await
        .get("step")
        .filter(|s| s["id"] == "address")
        .expect("reset goes back to the address");
    let named = step(&serve, &session, json!({"values": {"host": "127.0.0.1", "port": other.port()}})).await;
    assert_eq!(named["step"]["id"], "name", "{named}");
    assert_eq!(named["step"]["title"], "Found a ceiling4 at 127.0.0.1");
    let default_id = named["step"]["fields"][0]["default"].as_str().unwrap();
    assert_eq!(default_id, other.id(), "the bulb's own id is suggested");
    let devices = step(&serve, &session, json!({"values": {"device_id": "ceiling", "label": "Ceiling"}})).await;
    assert_eq!((devices["step"]["type"].as_str(), devices["step"]["can_add"].as_bool()), (Some("devices"), Some(true)));
    ok(&serve, &format!("{id}/action"), json!({"action": "add_device"})).await;
    step(&serve, &session, json!({"values": {"host": "127.0.0.1", "port": sim.port()}})).await;
    let duplicate = step(&serve, &session, json!({"values": {"device_id": "ceiling", "label": "Again"}})).await;
    assert!(duplicate["step"]["errors"]["device_id"].as_str().unwrap().contains("ceiling"), "{duplicate}");
    step(&serve, &session, json!({"values": {"device_id": "lamp", "label": "Lamp"}})).await;
    let group = step(&serve, &session, json!({})).await;
    assert_eq!(group["step"]["id"], "instance_name", "{group}");
    let done = step(&serve, &session, json!({"values": {"friendly_name": "Hall"}})).await;
    let ids: Vec<&str> =
        done["instance"]["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ceiling", "lamp"], "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_tools_run_within_their_limits() {
    if !require("python3", "apt-get install python3") {
        return;
    }
    let serve = Serve::start(Runtime::Embedded).await;
    let run = |tool: &'static str, input: Value| execute(&serve, "scripted", tool, input);
    let password = "correct-horse-battery";

    let echo = run("echo", json!({"host": "h", "password": password})).await;
    assert_eq!(echo["ok"], true, "{echo}");
    assert_eq!(echo["result"]["echo"]["host"], "h");
    assert_eq!(echo["result"]["echo"]["password"], "********");
    assert_eq!(echo["result"]["note"], "password was ********");

    let marker = format!("hang-{}", std::process::id());
    let hang = run("hang", json!({"marker": marker})).await;
    assert_eq!((hang["ok"].as_bool(), hang["error"]["code"].as_str()), (Some(false), Some("timeout")), "{hang}");
    assert_eq!(hang["error"]["retriable"], true);
    // The sandbox has exited; the tool inside it goes with its process group a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process_running(&marker) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process_running(&marker), "the timed-out tool was killed");

    let crash = run("crash", json!({"password": password})).await;
    assert_eq!(crash["error"]["code"], "tool_failed", "{crash}");
    let message = crash["error"]["message"].as_str().unwrap();
    assert!(message.contains("exited with status 3") && message.contains("cannot log in with ********"), "{message}");

    let garbage = run("garbage", json!({})).await;
    assert_eq!(garbage["error"]["code"], "invalid_output", "{garbage}");
    assert!(garbage["error"]["message"].as_str().unwrap().contains("not one JSON object"));

    let refused = run("refuse", json!({"password": password})).await;
    assert_eq!(
        refused["error"],
        json!({"code": "tool_failed", "message": "wrong password ******** (auth)", "retriable": false})
    );

    // Network: "none" runs in an empty network namespace, "local" reaches this machine.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let denied = run("reach_none", json!({"port": port})).await;
    assert_eq!(denied["result"]["connected"], false, "{denied}");
    let allowed = run("reach_local", json!({"port": port})).await;
    assert_eq!(allowed["result"]["connected"], true, "{allowed}");

    // The same through the plugin sandbox.
    for (tool, connected) in [("reach_none", false), ("reach_local", true)] {
        let (_, body) = serve
            .call(
                Method::POST,
                "/api/integrations/probe/tools/execute",
                Some(json!({"tool": tool, "input": {"connect": format!("127.0.0.1:{port}")}})),
            )
            .await;
        assert_eq!(body["result"]["connected"], connected, "{tool}: {body}");
    }

    for (path, body, expected) in [
        ("/api/integrations/scripted/tools/execute", json!({"input": {}}), StatusCode::BAD_REQUEST),
        ("/api/integrations/scripted/tools/execute", json!({"tool": "echo", "input": [1]}), StatusCode::BAD_REQUEST),
        ("/api/integrations/scripted/tools/execute", json!({"tool": "nope"}), StatusCode::NOT_FOUND),
        ("/api/integrations/scripted/tools/execute", json!({"tool": "lost"}), StatusCode::NOT_FOUND),
        ("/api/integrations/scripted/tools/execute", json!({"tool": "escape"}), StatusCode::NOT_FOUND),
        ("/api/integrations/nothing/tools/execute", json!({"tool": "echo"}), StatusCode::NOT_FOUND),
    ] {
        let (status, reply) = serve.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }

    // A flow step shows a secret as a mask, and nothing logged it.
    let session = ok(&serve, "/api/flows", json!({"integration": "scripted"})).await;
    let review = step(&serve, &session, json!({"values": {"password": password}})).await;
    assert_eq!(review["step"]["summary"][0]["value"], "********", "{review}");
    assert!(!review.to_string().contains(password));
    assert!(!serve.log().contains(password), "the log holds the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_tools_run_in_a_container_of_their_connectors_image_under_docker() {
    if !require_docker() || !require("busybox", "apt-get install busybox-static") {
        return;
    }
    // Its tool image is built when serve starts, before any tool asks for it.
    let tool_images = || {
        docker(&["images", "-q", "--filter", "label=iot2mqtt.type=tool", "--filter", "label=iot2mqtt.connector=boxed"])
    };
    for image in tool_images().lines() {
        docker(&["rmi", "--force", image]);
    }
    let mut serve = Serve::start(Runtime::Docker).await;
    let deadline = std::time::Instant::now() + WAIT;
    while tool_images().trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no tool image was built ahead:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let password = "correct-horse-battery";

    // No network: only loopback, in a container, in the connector's folder (read-only; /tmp is
    // not), secrets masked.
    let echo = execute(&serve, "boxed", "echo", json!({"host": "h", "password": password})).await;
    assert_eq!(echo["ok"], true, "{echo}");
    let result = &echo["result"];
    assert_eq!((result["container"].as_bool(), result["cwd"].as_str()), (Some(true), Some("/connector")), "{echo}");
    assert_eq!(result["interfaces"], "lo ", "{echo}");
    assert_eq!((result["writable"].as_bool(), result["scratch"].as_bool()), (Some(false), Some(true)), "only /tmp");
    assert_eq!(result["request"], json!({"tool": "echo", "input": {"host": "h", "password": "********"}}));
    let images =
        docker(&["images", "--filter", "label=iot2mqtt.connector=boxed", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|i| i.starts_with("iot2mqtt/connector:boxed-")), "built from its Dockerfile: {images}");

    // "local" is the host's network (the LAN, multicast); "internet" is Docker's bridge.
    let local = execute(&serve, "boxed", "local", json!({})).await;
    let seen: Vec<&str> = local["result"]["interfaces"].as_str().unwrap().split_whitespace().collect();
    // Containers of other tests come and go (their veth pairs); the machine's own stay.
    for interface in host_interfaces().into_iter().filter(|i| !i.starts_with("veth")) {
        assert!(seen.contains(&interface.as_str()), "{interface} is missing from {seen:?}");
    }
    assert!(seen.len() > 1, "{seen:?}");
    let internet = execute(&serve, "boxed", "internet", json!({})).await;
    assert_eq!(internet["result"]["interfaces"], "eth0 lo ", "{internet}");

    let hang = execute(&serve, "boxed", "hang", json!({})).await;
    assert_eq!((hang["ok"].as_bool(), hang["error"]["code"].as_str()), (Some(false), Some("timeout")), "{hang}");
    let crash = execute(&serve, "boxed", "crash", json!({"password": password})).await;
    assert_eq!(crash["error"]["code"], "tool_failed", "{crash}");
    let message = crash["error"]["message"].as_str().unwrap();
    assert!(message.contains("exited with status 3") && message.contains("cannot log in with ********"), "{message}");
    let garbage = execute(&serve, "boxed", "garbage", json!({})).await;
    assert_eq!(garbage["error"]["code"], "invalid_output", "{garbage}");

    // An image that does not build: the tool cannot run, and says why.
    let unbuilt = execute(&serve, "unbuildable", "echo", json!({})).await;
    assert_eq!(unbuilt["error"]["code"], "executor_error", "{unbuilt}");
    let message = unbuilt["error"]["message"].as_str().unwrap();
    assert!(message.contains("image is not available") && message.contains("no-such-program"), "{message}");

    // A connector without a Dockerfile has the runner image, which has no Python.
    let python = execute(&serve, "scripted", "echo", json!({"password": password})).await;
    assert_eq!(python["error"]["code"], "executor_error", "{python}");
    assert!(python["error"]["message"].as_str().unwrap().contains("Dockerfile"), "{python}");

    let left = docker(&["ps", "--all", "--filter", "label=iot2mqtt.type=tool", "--format", "{{.Names}}"]);
    assert!(
        !left.lines().any(|n| n.starts_with("iot2mqtt_tool_boxed_") || n.starts_with("iot2mqtt_tool_scripted_")),
        "{left}"
    );
    assert!(!serve.log().contains(password), "the log holds the secret");

    // A tool container a killed serve left behind is removed at the next start; another
    // installation's is not touched.
    let image = tool_images().lines().next().unwrap().to_string();
    let ours = install_tag(&serve.data());
    let leftover = format!("iot2mqtt_tool_boxed_left-{}", std::process::id());
    let foreign = format!("iot2mqtt_tool_boxed_foreign-{}", std::process::id());
    for (name, install) in [(&leftover, ours.as_str()), (&foreign, "someone-else")] {
        let labels = ["--label", "iot2mqtt.type=tool", "--label", &format!("iot2mqtt.install={install}")];
        docker(&[&["create", "--name", name.as_str()][..], &labels, &[image.as_str(), "true"]].concat());
    }
    serve.stop();
    serve.spawn().await;
    let names = docker(&["ps", "--all", "--format", "{{.Names}}"]);
    let remaining: Vec<&str> = names.lines().collect();
    // Whatever the outcome, neither stays behind this test.
    let _ = std::process::Command::new("docker").args(["rm", "--force", &leftover, &foreign]).output();
    assert!(!remaining.contains(&leftover.as_str()), "the leftover was removed: {remaining:?}");
    assert!(remaining.contains(&foreign.as_str()), "another installation's container stays: {remaining:?}");
}

/// The installation label `serve` gives its containers: a hash of its data directory.
fn install_tag(data: &std::path::Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data.to_string_lossy().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_string()
}

/// `docker args…`'s output.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// This machine's network interfaces.
fn host_interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_step_keeps_its_tokens_as_secrets() {
    let serve = Serve::start(Runtime::Embedded).await;
    let provider = FakeProvider::start().await;

    let unconfigured = ok(&serve, "/api/flows", json!({"integration": "cloudy"})).await;
    assert_eq!(unconfigured["step"]["error"]["code"], "oauth_not_configured", "{unconfigured}");
    assert!(unconfigured["step"]["error"]["message"].as_str().unwrap().contains("config/oauth/fakeprov.json"));

    provider.configure(&serve);

    let session = ok(&serve, "/api/flows", json!({"integration": "cloudy"})).await;
    let view = &session["step"];
    assert_eq!((view["type"].as_str(), view["connected"].as_bool()), (Some("oauth"), Some(false)), "{view}");
    let early = step(&serve, &session, json!({})).await;
    assert!(early["step"]["errors"]["oauth"].as_str().unwrap().contains("authorise"), "{early}");
    let authorize_url = early["step"]["authorize_url"].as_str().unwrap().to_string();
    let url = reqwest::Url::parse(&authorize_url).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["redirect_uri"], serve.url("/api/oauth/callback"));

    // The browser: to the provider, which sends it back to the (public) callback, which sends
    // it on to the wizard.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let to_callback = browser.get(&authorize_url).send().await.unwrap();
    let callback = to_callback.headers()[reqwest::header::LOCATION].to_str().unwrap().to_string();
    let back = browser.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let wizard = format!("/flows/{}", session["id"].as_str().unwrap());
    assert_eq!(back.headers()[reqwest::header::LOCATION], wizard.as_str());
    assert!(provider.challenges.lock().unwrap().is_empty(), "the code was exchanged");

    let (_, done) = serve.call(Method::GET, &format!("/api/flows/{}", session["id"].as_str().unwrap()), None).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["instance"]["friendly_name"], "Cloudy devices.read");
    let secrets = done["instance"]["secrets"].as_array().unwrap();
    assert!(secrets.contains(&json!("fakeprov_access_token")) && secrets.contains(&json!("fakeprov_refresh_token")));
    let (_, instances) = serve.call(Method::GET, "/api/instances", None).await;
    for text in [done.to_string(), instances.to_string(), serve.log()] {
        assert!(!text.contains(ACCESS_TOKEN) && !text.contains(REFRESH_TOKEN), "a token leaked: {text}");
    }
    for file in files_under(&serve.data()) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(ACCESS_TOKEN), "{} holds the token in clear", file.display());
    }

    // The same state again, no state, or a refusal: a page that says so.
    let replay = browser.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let no_state = browser.get(serve.url("/api/oauth/callback?code=x")).send().await.unwrap();
    assert_eq!(no_state.status(), StatusCode::BAD_REQUEST);
    let denied_session = ok(&serve, "/api/flows", json!({"integration": "cloudy"})).await;
    let state = reqwest::Url::parse(denied_session["step"]["authorize_url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let denied =
        browser.get(serve.url(&format!("/api/oauth/callback?state={state}&error=access_denied"))).send().await.unwrap();
    assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
    let denied = denied.text().await.unwrap();
    assert!(denied.contains("access_denied") && denied.contains("Back to the setup"), "{denied}");
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
