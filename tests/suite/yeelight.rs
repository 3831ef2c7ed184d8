//! The Yeelight connector through the real host and a real broker, against the bulb
//! simulator: state, every command, combined and relative values, push updates, a bulb that
//! restarts, the rate limit, and the discovery and validation tools.

use std::time::{Duration, Instant};

use iot2mqtt_runtime::NetGrants;
use serde_json::{Value, json};

use crate::support::observer::Received;
use crate::support::yeelight::{BulbSim, Model, device};
use crate::support::{Observer, TestBroker, TestInstance, plugin, unique_id};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    _broker: TestBroker,
    instance: TestInstance,
    obs: Observer,
}

async fn setup(sims: &[(&str, &BulbSim)], extra: Value) -> Option<Setup> {
    let broker = TestBroker::start().await?;
    let id = unique_id("yee");
    let devices: Vec<Value> = sims.iter().map(|(name, sim)| device(name, sim)).collect();
    let mut config =
        json!({"instance_id": id, "connector_type": "yeelight", "update_interval": 60, "devices": devices});
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    let obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let instance = TestInstance::start(&broker, "yeelight", config).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_of_a_bulb_is_published() {
    let sim = BulbSim::start(Model::Color).await;
    sim.change_externally(&[("color_mode", "1"), ("rgb", "65280")]);
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    let state = s.state("desk", |_| true).await;
    assert_eq!(
        state,
        json!({"power": true, "brightness": 80, "color_temp": 4000, "color_mode": "rgb", "flowing": false,
               "music_mode": false, "name": "Sim", "online": true, "rgb": {"r": 0, "g": 255, "b": 0},
               "hex_color": "#00ff00", "model": "color", "fw_ver": "18"})
    );
    let t = s.instance.topics.clone();
    assert_eq!(s.obs.next_on(&t.state_key("desk", "hex_color"), WAIT).await.text(), "\"#00ff00\"");
    let list = s.obs.next_on(&t.devices_list(), WAIT).await.json();
    assert_eq!(list[0]["model"], "color");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reaches_the_bulb() {
    let sim = BulbSim::start(Model::Color).await;
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    // (values, expected prop changes on the bulb, expected result)
    type Case = (Value, Vec<(&'static str, &'static str)>, Value);
    let cases: Vec<Case> = vec![
        (json!({"power": false}), vec![("power", "off")], json!({"power": false})),
        (json!({"power": "toggle"}), vec![("power", "on")], json!({"power": true})),
        (json!({"toggle": true}), vec![("power", "off")], json!({"power": false})),
        (json!({"power": true}), vec![("power", "on")], json!({"power": true})),
        (json!({"brightness": 50}), vec![("bright", "50")], json!({"brightness": 50})),
        (json!({"brightness": "+10"}), vec![("bright", "60")], json!({"brightness": 60})),
        (json!({"brightness": "-100"}), vec![("bright", "1")], json!({"brightness": 1})),
        (json!({"brightness_step": 24}), vec![("bright", "25")], json!({"brightness": 25})),
        (json!({"color_temp": 3000}), vec![("ct", "3000"), ("color_mode", "2")], json!({"color_temp": 3000})),
        (json!({"color_temp": "+10000"}), vec![("ct", "6500")], json!({"color_temp": 6500})),
        (json!({"color": "#0000FF"}), vec![("rgb", "255"), ("color_mode", "1")], json!({"color": "#0000ff"})),
        (json!({"color": {"r": 255, "g": 0, "b": 0}}), vec![("rgb", "16711680")], json!({"color": "#ff0000"})),
        (
            json!({"color": {"h": 200, "s": 50, "v": 70}}),
            vec![("hue", "200"), ("sat", "50"), ("color_mode", "3"), ("bright", "70")],
            json!({"color": {"h": 200, "s": 50}, "brightness": 70}),
        ),
        (json!({"rgb": {"r": 1, "g": 2, "b": 3}}), vec![("rgb", "66051")], json!({"rgb": {"r": 1, "g": 2, "b": 3}})),
        (json!({"hsv": {"h": 10, "s": 90}}), vec![("hue", "10"), ("sat", "90")], json!({"hsv": {"h": 10, "s": 90}})),
        (json!({"scene": "reading"}), vec![("ct", "4000"), ("bright", "100")], json!({"scene": "reading"})),
        (json!({"effect": "rainbow"}), vec![("flowing", "1")], json!({"effect": "rainbow"})),
        (json!({"effect": "stop"}), vec![("flowing", "0")], json!({"effect": "stop"})),
        (json!({"name": "Desk lamp"}), vec![("name", "Desk lamp")], json!({"name": "Desk lamp"})),
        (json!({"music_mode": false}), vec![("music_on", "0")], json!({"music_mode": false})),
    ];
    for (n, (values, props, result)) in cases.into_iter().enumerate() {
        let response = s.command("desk", &format!("c{n}"), values.clone()).await;
        assert_eq!(response["status"], "success", "{values}: {response}");
        assert_eq!(response["result"], result, "{values}");
        for (prop, expected) in props {
            assert_eq!(sim.prop(prop), expected, "{values}: bulb property {prop}");
        }
    }
    // The published state follows.
    s.state("desk", |st| st["name"] == "Desk lamp" && st["brightness"] == 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_commands_are_ordered_and_share_one_transition() {
    let sim = BulbSim::start(Model::Color).await;
    sim.change_externally(&[("power", "off")]);
    let Some(mut s) = setup(&[("desk", &sim)], json!({"effect": "smooth", "duration_ms": 500})).await else { return };
    let before = sim.requests().len();
    let response = s
        .command("desk", "combo", json!({"brightness": 30, "power": true, "color_temp": 2700, "transition": 1000}))
        .await;
    assert_eq!(response["status"], "success", "{response}");
    let sent: Vec<(String, Vec<Value>)> =
        sim.requests()[before..].iter().filter(|(m, _)| m != "get_prop").cloned().collect();
    let methods: Vec<&str> = sent.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["set_power", "set_ct_abx", "set_bright"], "power on first");
    for (method, params) in &sent {
        assert_eq!(params[params.len() - 2..].to_vec(), [json!("smooth"), json!(1000)], "{method}");
    }
    // Without a transition, the instance's default; `transition: 0` is sudden.
    let before = sim.requests().len();
    s.command("desk", "default", json!({"brightness": 40})).await;
    s.command("desk", "sudden", json!({"brightness": 41, "transition": 0})).await;
    let sent: Vec<Vec<Value>> =
        sim.requests()[before..].iter().filter(|(m, _)| m == "set_bright").map(|(_, p)| p.clone()).collect();
    assert_eq!(sent, [vec![json!(40), json!("smooth"), json!(500)], vec![json!(41), json!("sudden"), json!(30)]]);
    // Turning off goes last.
    let before = sim.requests().len();
    s.command("desk", "off", json!({"power": false, "brightness": 10})).await;
    let methods: Vec<String> =
        sim.requests()[before..].iter().map(|(m, _)| m.clone()).filter(|m| m != "get_prop").collect();
    assert_eq!(methods, ["set_bright", "set_power"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed_and_the_rest_is_applied() {
    let sim = BulbSim::start(Model::Color).await;
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    let response = s.command("desk", "mixed", json!({"brightness": 33, "sparkle": true, "glitter": 1})).await;
    assert_eq!(response["error"]["code"], "UNSUPPORTED_PROPERTY", "{response}");
    let message = response["error"]["message"].as_str().unwrap();
    assert!(message.contains("sparkle") && message.contains("glitter"), "{message}");
    assert_eq!(sim.prop("bright"), "33", "the known key was applied");

    let before = sim.requests().len();
    let response = s.command("desk", "bad", json!({"brightness": 150, "power": true})).await;
    assert_eq!(response["error"]["code"], "INVALID_VALUE", "{response}");
    assert!(sim.requests()[before..].iter().all(|(m, _)| m == "get_prop"), "nothing was sent");

    // The bulb's own refusal: colour changes are not accepted while it is off.
    s.command("desk", "off", json!({"power": false})).await;
    let response = s.command("desk", "refused", json!({"color_temp": 3000})).await;
    assert_eq!(response["error"]["code"], "COMMAND_FAILED", "{response}");
    assert!(response["error"]["message"].as_str().unwrap().contains("the light is off"), "{response}");
    let response = s.command("desk", "music", json!({"music_mode": true})).await;
    assert_eq!(response["error"]["code"], "UNSUPPORTED_PROPERTY", "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceiling_light_has_a_background_and_a_night_light() {
    let sim = BulbSim::start(Model::Ceiling).await;
    let Some(mut s) = setup(&[("ceiling", &sim)], json!({})).await else { return };
    let state = s.state("ceiling", |_| true).await;
    assert_eq!(state["background"], json!({"power": false, "brightness": 50, "color_temp": 3000}));
    assert_eq!(state["nightlight"], json!({"active": false, "brightness": 10}));
    let response = s
        .command(
            "ceiling",
            "bg",
            json!({"background": {"power": true, "brightness": "+20", "rgb": {"r": 0, "g": 0, "b": 255}}}),
        )
        .await;
    assert_eq!(response["status"], "success", "{response}");
    assert_eq!(
        (sim.prop("bg_power"), sim.prop("bg_bright"), sim.prop("bg_rgb")),
        ("on".into(), "70".into(), "255".into())
    );
    let state = s.state("ceiling", |st| st["background"]["power"] == true).await;
    assert_eq!(state["background"]["hex_color"], "#0000ff");
    let response = s.command("ceiling", "nl", json!({"nightlight": true})).await;
    assert_eq!(response["status"], "success", "{response}");
    s.state("ceiling", |st| st["nightlight"]["active"] == true).await;
    let response = s.command("ceiling", "rgb", json!({"color": "#ff0000"})).await;
    assert_eq!(response["error"]["code"], "COMMAND_FAILED", "a white ceiling light refuses colours: {response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_is_published_within_a_second() {
    let sim = BulbSim::start(Model::Color).await;
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    s.state("desk", |st| st["power"] == true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (props, check) in [
        (vec![("power", "off")], json!({"power": false})),
        (vec![("bright", "12"), ("power", "on")], json!({"power": true, "brightness": 12})),
    ] {
        let changed = Instant::now();
        sim.change_externally(&props);
        let state = s.state("desk", |st| check.as_object().unwrap().iter().all(|(k, v)| &st[k] == v)).await;
        let took = changed.elapsed();
        assert!(took < Duration::from_secs(1), "published {took:?} after the change (poll interval 60 s): {state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulb_that_restarts_is_unavailable_meanwhile_and_recovers_by_itself() {
    let mut sim = BulbSim::start(Model::Color).await;
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    let t = s.instance.topics.clone();
    s.obs.wait_for("available", WAIT, |m| m.topic == t.availability("desk") && m.text() == "online").await;
    // The list of devices follows availability, whichever path (a push or a poll) noticed.
    let listed = |online: bool| {
        let topic = t.devices_list();
        move |m: &Received| {
            m.topic == topic
                && m.json()
                    .as_array()
                    .is_some_and(|l| l.iter().any(|d| d["device_id"] == "desk" && d["online"] == online))
        }
    };
    s.obs.wait_for("listed online", WAIT, listed(true)).await;
    s.obs.clear();
    let restart = tokio::spawn(async move {
        sim.restart(Duration::from_secs(3)).await;
        sim
    });
    s.obs.wait_for("unavailable", WAIT, |m| m.topic == t.availability("desk") && m.text() == "offline").await;
    s.state("desk", |st| st["online"] == false).await;
    s.obs.wait_for("listed offline", WAIT, listed(false)).await;
    let sim = restart.await.unwrap();
    s.obs
        .wait_for("available again", Duration::from_secs(40), |m| {
            m.topic == t.availability("desk") && m.text() == "online"
        })
        .await;
    s.obs.wait_for("listed online again", WAIT, listed(true)).await;
    let response = s.command("desk", "after", json!({"brightness": 44})).await;
    assert_eq!(response["status"], "success", "{response}");
    assert_eq!(sim.prop("bright"), "44");
    assert!(sim.connections() <= 2, "reconnecting does not pile up connections: {}", sim.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulbs_rate_limit_is_a_command_error_not_a_fault() {
    let sim = BulbSim::start(Model::Color).await;
    let Some(mut s) = setup(&[("desk", &sim)], json!({})).await else { return };
    sim.set_quota(8);
    let mut codes = Vec::new();
    for n in 0..8 {
        let response = s.command("desk", &format!("r{n}"), json!({"brightness": 10 + n})).await;
        codes.push(response["error"]["code"].as_str().unwrap_or("ok").to_string());
    }
    assert!(codes.iter().any(|c| c == "COMMAND_FAILED"), "the quota was reached: {codes:?}");
    assert_eq!(s.instance.handle.status().faults, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_and_discovery_tools() {
    let sim = BulbSim::start(Model::Ceiling).await;
    let runtime = crate::support::harness::runtime();
    let yeelight = runtime.load_plugin(plugin("yeelight")).await.unwrap();
    let local = || NetGrants::none().local_networks().with_udp(true);
    let tool = |name: &'static str, input: Value| {
        let (runtime, yeelight) = (runtime.clone(), yeelight.clone());
        async move { runtime.run_tool(&yeelight, name, &input, local(), Duration::from_secs(10)).await.unwrap() }
    };

    let valid = tool(
        "validate_device",
        json!({"host": "127.0.0.1", "port": sim.port(), "discovery_port": sim.discovery_port()}),
    )
    .await
    .unwrap();
    assert_eq!((valid["model"].as_str(), valid["device_id"].as_str()), (Some("ceiling4"), Some(sim.id())));
    assert_eq!(valid["properties"]["background"]["brightness"], 50);

    let closed = crate::support::free_port();
    let failure = tool("validate_device", json!({"host": "127.0.0.1", "port": closed})).await.unwrap_err();
    assert_eq!(failure.code, "DEVICE_UNREACHABLE");
    assert!(failure.message.contains("LAN control"), "{}", failure.message);
    let failure = tool("validate_device", json!({"port": 1})).await.unwrap_err();
    assert_eq!(failure.code, "INVALID_VALUE");

    let found =
        tool("discover_devices", json!({"timeout_ms": 500, "address": format!("127.0.0.1:{}", sim.discovery_port())}))
            .await
            .unwrap();
    assert_eq!(
        found,
        json!([{"device_id": sim.id(), "ip": "127.0.0.1", "port": sim.port(), "model": "ceiling4", "name": "Sim", "fw_ver": "18"}])
    );
    let nobody =
        tool("discover_devices", json!({"timeout_ms": 300, "address": format!("127.0.0.1:{closed}")})).await.unwrap();
    assert_eq!(nobody, json!([]), "finding nothing is not an error");

    // Without the network grant the tools cannot reach anything.
    let denied = runtime
        .run_tool(
            &yeelight,
            "validate_device",
            &json!({"host": "127.0.0.1", "port": sim.port()}),
            NetGrants::none(),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(denied.message.contains("not granted"), "{}", denied.message);
}
