//! The Shelly connector through the real host and a real broker, against the Gen2 simulator:
//! its HTTP requests go through `wasi:http` and the host's grants. State and meters, commands
//! to relays and dimmers, refusals, a device that stops answering, a redirect out of the grant
//! refused by the host, and the validation tool.

use std::time::Duration;

use iot2mqtt_runtime::NetGrants;
use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::shelly::{Output, ShellySim, device};
use crate::support::{Observer, TestBroker, TestInstance, plugin, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    _broker: TestBroker,
    instance: TestInstance,
    obs: Observer,
}

async fn setup(sims: &[(&str, &ShellySim)]) -> Option<Setup> {
    let broker = TestBroker::start().await?;
    let id = unique_id("shelly");
    let devices: Vec<Value> = sims.iter().map(|(name, sim)| device(name, sim)).collect();
    let config = json!({"instance_id": id, "connector_type": "shelly", "update_interval": 60,
                        "timeout_ms": 1000, "devices": devices});
    let obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let instance = TestInstance::start(&broker, "shelly", config).await;
    instance.ready().await;
    Some(Setup { _broker: broker, instance, obs })
}

impl Setup {
    async fn command(&mut self, device: &str, id: &str, values: Value) -> Value {
        let t = &self.instance.topics;
        self.obs.publish(&t.command(device), json!({"id": id, "values": values}).to_string()).await;
        self.obs.next_json(&t.command_response(device), WAIT, |r| r["cmd_id"] == id).await
    }

    async fn state(&mut self, device: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let topic = self.instance.topics.state(device);
        self.obs.next_json(&topic, WAIT, |s| matches(&s["state"])).await["state"].clone()
    }

    async fn get(&mut self, device: &str) {
        let topic = self.instance.topics.get(device);
        self.obs.publish(&topic, "{}".to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_is_read_and_switched_over_http() {
    let sim = ShellySim::start(&[Output::Relay]).await;
    let Some(mut s) = setup(&[("heater", &sim)]).await else { return };
    let state = s.state("heater", |_| true).await;
    assert_eq!(
        state,
        json!({"power": false, "power_w": 0.0, "voltage": 230.4, "current": 0.0, "energy_wh": 1523.25,
               "temperature": 44.1, "rssi": -58, "online": true})
    );

    let response = s.command("heater", "on", json!({"power": true})).await;
    assert_eq!(response["status"], "success", "{response}");
    assert!(sim.output(0), "the relay was switched on");
    assert!(sim.calls().contains(&("Switch.Set".to_string(), json!({"id": 0, "on": true}))), "{:?}", sim.calls());
    // The state after a command shows the meters the device now reports.
    let state = s.state("heater", |st| st["power"] == true).await;
    assert_eq!(state["power_w"], 60.2);

    // Switched by hand: the next read shows it.
    sim.press(0, false);
    s.get("heater").await;
    s.state("heater", |st| st["power"] == false).await;

    let t = s.instance.topics.clone();
    let meta = s.obs.next_on(&t.devices_list(), WAIT).await.json();
    assert_eq!(meta[0]["device_id"], "heater");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dimmer_and_the_values_a_device_cannot_take() {
    let sim = ShellySim::start(&[Output::Dimmer]).await;
    let Some(mut s) = setup(&[("hall", &sim)]).await else { return };
    s.state("hall", |st| st["brightness"] == 50).await;

    let response = s.command("hall", "dim", json!({"power": true, "brightness": 30})).await;
    assert_eq!(response["status"], "success", "{response}");
    assert!(sim.output(0));
    assert_eq!(sim.brightness(0), 30);
    assert!(
        sim.calls().contains(&("Light.Set".to_string(), json!({"id": 0, "on": true, "brightness": 30}))),
        "one call"
    );

    let before = sim.calls().len();
    for (n, (values, code)) in [
        (json!({"brightness": 130}), "INVALID_VALUE"),
        (json!({"power": "yes"}), "INVALID_VALUE"),
        (json!({"power_2": true}), "INVALID_VALUE"),
        (json!({"colour": "red"}), "INVALID_VALUE"),
        (json!({"rssi": -40}), "READ_ONLY"),
    ]
    .into_iter()
    .enumerate()
    {
        let response = s.command("hall", &format!("bad{n}"), values.clone()).await;
        assert_eq!(response["error"]["code"], code, "{values}: {response}");
    }
    let set_calls = sim.calls()[before..].iter().filter(|(m, _)| m.ends_with(".Set")).count();
    assert_eq!(set_calls, 0, "nothing that was refused reached the device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_answering_is_unreachable() {
    let sim = ShellySim::start(&[Output::Relay]).await;
    let Some(mut s) = setup(&[("pump", &sim)]).await else { return };
    s.state("pump", |_| true).await;
    sim.stop();
    let response = s.command("pump", "off", json!({"power": false})).await;
    assert_eq!(response["error"]["code"], "DEVICE_UNREACHABLE", "{response}");
    s.get("pump").await;
    s.state("pump", |st| st["online"] == false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_out_of_the_grant_is_refused_by_the_host() {
    let sim = ShellySim::start(&[Output::Relay]).await;
    // A second device the instance was not given: the redirect points at it.
    let elsewhere = ShellySim::start(&[Output::Relay]).await;
    let Some(mut s) = setup(&[("plug", &sim)]).await else { return };
    s.state("plug", |_| true).await;

    sim.redirect_to(&format!("http://127.0.0.1:{}/rpc", elsewhere.port()));
    let response = s.command("plug", "r", json!({"power": true})).await;
    assert_eq!(response["error"]["code"], "DEVICE_UNREACHABLE", "{response}");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused by the host"), "{message}");
    assert!(elsewhere.calls().is_empty(), "nothing reached the device outside the grant: {:?}", elsewhere.calls());
    assert!(!elsewhere.output(0));
    assert_eq!(s.instance.handle.status().faults, 0, "a refusal is an error the plugin reports, not a fault");

    // A redirect within the grant is followed.
    sim.redirect_to("/rpc/Shelly.GetStatus");
    let before = sim.calls().len();
    let response = s.command("plug", "r2", json!({"power": true})).await;
    assert_eq!(response["status"], "success", "{response}");
    assert!(sim.calls()[before..].iter().any(|(m, _)| m == "Shelly.GetStatus"), "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_tool_reads_a_device_and_refuses_gen1() {
    let sim = ShellySim::start(&[Output::Relay, Output::Relay]).await;
    let runtime = crate::support::harness::runtime();
    let shelly = runtime.load_plugin(plugin("shelly")).await.unwrap();
    let tool = |input: Value, grants: NetGrants| {
        let (runtime, shelly) = (runtime.clone(), shelly.clone());
        async move { runtime.run_tool(&shelly, "validate_device", &input, grants, Duration::from_secs(10)).await.unwrap() }
    };
    let local = || NetGrants::none().local_networks();

    let found = tool(json!({"host": "127.0.0.1", "port": sim.port()}), local()).await.unwrap();
    assert_eq!(found["device_id"], sim.id());
    assert_eq!(found["model"], "SNSW-102P16EU");
    assert_eq!(found["gen"], 2);
    assert_eq!(found["outputs"], json!([{"id": 0, "kind": "switch"}, {"id": 1, "kind": "switch"}]));

    let closed = crate::support::free_port();
    let err = tool(json!({"host": "127.0.0.1", "port": closed}), local()).await.unwrap_err();
    assert_eq!(err.code, "DEVICE_UNREACHABLE", "{}", err.message);
    assert!(err.message.contains(&format!("127.0.0.1:{closed}")), "{}", err.message);

    let err = tool(json!({"port": 80}), local()).await.unwrap_err();
    assert_eq!(err.code, "INVALID_VALUE");

    sim.set_generation(1);
    let err = tool(json!({"host": "127.0.0.1", "port": sim.port()}), local()).await.unwrap_err();
    assert!(err.message.contains("not a Gen2 Shelly"), "{}", err.message);

    // Without a grant the host refuses the request before anything is sent.
    sim.set_generation(2);
    let before = sim.calls().len();
    let err = tool(json!({"host": "127.0.0.1", "port": sim.port()}), NetGrants::none()).await.unwrap_err();
    assert!(err.message.contains("refused by the host"), "{}", err.message);
    assert_eq!(sim.calls().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_container_the_plugin_reaches_its_device_and_the_declared_hosts_are_passed_on() {
    if !require_docker() {
        return;
    }
    let sim = ShellySim::start(&[Output::Relay]).await;
    let serve = Serve::start(Runtime::Docker).await;
    let id = unique_id("shellyc");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "shelly", "update_interval": 60,
                       "devices": [device("heater", &sim)]}))
        .await;
    let state = obs.next_json(&format!("{root}/devices/heater/state"), Duration::from_secs(30), |_| true).await;
    assert_eq!(state["state"]["power"], false, "{state}");
    obs.publish(&format!("{root}/devices/heater/cmd"), json!({"id": "on", "values": {"power": true}}).to_string())
        .await;
    let done = obs.next_json(&format!("{root}/devices/heater/cmd/response"), WAIT, |r| r["cmd_id"] == "on").await;
    assert_eq!(done["status"], "success", "{done}");
    assert!(sim.output(0), "the relay was switched on from the container");

    // A connector that declares hosts: its container's host is told which, and starts with them.
    let cloud = unique_id("cloudyc");
    serve.create(json!({"instance_id": cloud, "connector_type": "cloudy", "devices": []})).await;
    let mut status = Observer::connect(serve.mqtt(), &format!("IoT2mqtt/v1/instances/{cloud}/status")).await;
    status.wait_for("the cloudy instance online", Duration::from_secs(30), |m| m.text() == "online").await;
    let out =
        std::process::Command::new("docker").args(["inspect", &format!("iot2mqtt_cloudy_{cloud}")]).output().unwrap();
    let container: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone();
    let env: Vec<&str> = container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.contains(&"IOT2MQTT_HTTP_HOSTS=api.cloudy.example,*.cloudy.example:443"), "{env:?}");
}
