//! Home Assistant MQTT discovery, as Home Assistant would use it: every config checked against
//! the documented schema of its component, every command template rendered and published, the
//! device's state seen to change and read back through the value templates. Then the
//! lifecycle: Home Assistant restarting, devices removed, disabled and renamed, discovery
//! switched off, and a swap to a plugin that describes its device differently.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::support::home_assistant::{check, check_all, render, render_value};
use crate::support::yeelight::{BulbSim, Model, device};
use crate::support::{Observer, TestBroker, TestInstance, demo_config, plugin, unique_id};

const WAIT: Duration = Duration::from_secs(10);
/// How long retained configs take to arrive once a subscriber is subscribed.
const SETTLE: Duration = Duration::from_millis(700);

/// The configs under `homeassistant/` as a subscriber finds them: topic → config.
async fn configs(obs: &mut Observer, count: usize) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while found.len() < count && tokio::time::Instant::now() < deadline {
        if let Some(m) = obs.try_wait_for(Duration::from_millis(200), |m| m.topic.ends_with("/config")).await {
            if m.payload.is_empty() {
                found.remove(&m.topic);
            } else {
                found.insert(m.topic.clone(), m.json());
            }
        }
    }
    assert_eq!(found.len(), count, "configs found: {:#?}", found.keys().collect::<Vec<_>>());
    found
}

/// The config whose topic ends with `suffix`.
fn config<'a>(configs: &'a BTreeMap<String, Value>, suffix: &str) -> &'a Value {
    configs
        .iter()
        .find(|(topic, _)| topic.ends_with(suffix))
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no config ending with {suffix} among {:#?}", configs.keys().collect::<Vec<_>>()))
}

/// Home Assistant's side of one entity: publish what a command template renders, then read
/// the state topic until `template` renders `expected` from the device's state.
struct Driver<'a> {
    obs: &'a mut Observer,
}

impl Driver<'_> {
    async fn command(&mut self, topic: &Value, payload: String) {
        self.obs.publish(topic.as_str().expect("a command topic"), payload).await;
    }

    async fn command_template(&mut self, config: &Value, topic_key: &str, template_key: &str, vars: Value) {
        let Value::Object(vars) = vars else { unreachable!() };
        let template = config[template_key].as_str().unwrap_or_else(|| panic!("{template_key} in {config}"));
        let payload = render(template, &vars);
        serde_json::from_str::<Value>(&payload)
            .unwrap_or_else(|e| panic!("{template_key} rendered {payload}, which is not JSON: {e}"));
        self.command(&config[topic_key], payload).await;
    }

    /// Wait until the state topic carries a message from which `template` renders `expected`.
    async fn reads(&mut self, config: &Value, topic_key: &str, template_key: &str, expected: &str) {
        let topic = config[topic_key].as_str().unwrap_or_else(|| panic!("{topic_key} in {config}")).to_string();
        let template =
            config[template_key].as_str().unwrap_or_else(|| panic!("{template_key} in {config}")).to_string();
        let what = format!("{template_key} to read {expected}");
        self.obs.wait_for(&what, WAIT, |m| m.topic == topic && render_value(&template, &m.text()) == expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_devices_appear_in_home_assistant_and_obey_it() {
    let Some(broker) = TestBroker::start().await else { return };
    let mut obs = Observer::connect(broker.port(), "#").await;
    let id = unique_id("ha");
    let devices = json!([
        {"device_id": "lamp", "kind": "light", "friendly_name": "Desk lamp"},
        {"device_id": "plug", "kind": "switch"},
        {"device_id": "climate", "kind": "sensor"},
    ]);
    let instance = TestInstance::start(&broker, "demo", demo_config(&id, devices)).await;
    instance.ready().await;
    // The instance's connectivity, a light, a switch, a temperature and a humidity.
    let all = configs(&mut obs, 5).await;
    check_all(all.iter().map(|(t, c)| (t.as_str(), c)));
    let t = &instance.topics;

    let lamp = config(&all, "/lamp_light/config");
    assert_eq!(lamp["command_topic"], t.command("lamp"));
    assert_eq!(lamp["state_topic"], t.state("lamp"));
    assert_eq!(lamp["device"]["name"], "Desk lamp");
    assert_eq!(lamp["device"]["model"], "demo-light");
    assert_eq!(lamp["device"]["manufacturer"], "iot2mqtt demo");
    assert_eq!(lamp["device"]["sw_version"], "0.1.0");
    let availability: Vec<&Value> = lamp["availability"].as_array().unwrap().iter().map(|a| &a["topic"]).collect();
    assert_eq!(availability, [&json!(t.status()), &json!(t.availability("lamp"))]);
    assert_eq!(lamp["availability_mode"], "all");
    let status = config(&all, "/status/config");
    assert_eq!(status["state_topic"], t.status());
    assert_eq!(lamp["device"]["via_device"], status["device"]["identifiers"][0]);

    let mut ha = Driver { obs: &mut obs };
    // On, dimmed, off: each as Home Assistant sends it, each read back.
    ha.command(&lamp["command_topic"], lamp["payload_on"].as_str().unwrap().to_string()).await;
    ha.reads(lamp, "state_topic", "state_value_template", lamp["payload_on"].as_str().unwrap()).await;
    ha.command_template(lamp, "brightness_command_topic", "brightness_command_template", json!({"value": 40})).await;
    ha.reads(lamp, "brightness_state_topic", "brightness_value_template", "40").await;
    ha.command(&lamp["command_topic"], lamp["payload_off"].as_str().unwrap().to_string()).await;
    ha.reads(lamp, "state_topic", "state_value_template", lamp["payload_off"].as_str().unwrap()).await;

    let plug = config(&all, "/plug_switch/config");
    assert_eq!(plug["device_class"], "outlet");
    ha.command(&plug["command_topic"], plug["payload_on"].as_str().unwrap().to_string()).await;
    ha.reads(plug, "state_topic", "value_template", "ON").await;
    ha.command(&plug["command_topic"], plug["payload_off"].as_str().unwrap().to_string()).await;
    ha.reads(plug, "state_topic", "value_template", "OFF").await;

    let temperature = config(&all, "/climate_temperature/config");
    assert_eq!(
        (&temperature["unit_of_measurement"], &temperature["device_class"]),
        (&json!("°C"), &json!("temperature"))
    );
    assert_eq!(temperature["state_class"], "measurement");
    let reading = ha.obs.next_json(&t.state("climate"), WAIT, |_| true).await;
    let template = temperature["value_template"].as_str().unwrap();
    assert_eq!(render_value(template, &reading.to_string()), reading["state"]["temperature"].to_string());
    // A state without the key reads as unknown, not as an error.
    assert_eq!(render_value(template, r#"{"state": {"online": true}}"#), "None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yeelight_bulb_takes_colours_scenes_and_effects_from_home_assistant() {
    let sim = BulbSim::start(Model::Color).await;
    let Some(broker) = TestBroker::start().await else { return };
    let mut obs = Observer::connect(broker.port(), "#").await;
    let id = unique_id("ha-yee");
    let config_json = json!({"instance_id": id, "connector_type": "yeelight", "update_interval": 60, "devices": [device("desk", &sim)]});
    let instance = TestInstance::start(&broker, "yeelight", config_json).await;
    instance.ready().await;
    // The connection, the light, the stop button, and whether an effect runs.
    let all = configs(&mut obs, 4).await;
    check_all(all.iter().map(|(t, c)| (t.as_str(), c)));
    let light = config(&all, "/desk_light/config");
    assert_eq!(light["device"]["manufacturer"], "Yeelight");
    assert_eq!(light["device"]["model"], "color");
    let effects: Vec<&str> = light["effect_list"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(effects.contains(&"sunrise") && effects.contains(&"disco"), "{effects:?}");

    let mut ha = Driver { obs: &mut obs };
    let vars = json!({"red": 10, "green": 200, "blue": 30});
    ha.command_template(light, "rgb_command_topic", "rgb_command_template", vars).await;
    ha.reads(light, "rgb_state_topic", "rgb_value_template", "10,200,30").await;
    assert_eq!(sim.prop("rgb"), (10 * 65536 + 200 * 256 + 30).to_string());

    ha.command_template(light, "hs_command_topic", "hs_command_template", json!({"hue": 120.4, "sat": 55.6})).await;
    ha.reads(light, "hs_state_topic", "hs_value_template", "120,56").await;

    // 370 mireds is 2703 K, as Home Assistant's colour temperature slider sends it.
    ha.command_template(light, "color_temp_command_topic", "color_temp_command_template", json!({"value": 370})).await;
    ha.reads(light, "color_temp_state_topic", "color_temp_value_template", "370").await;
    assert_eq!(sim.prop("ct"), "2703");

    ha.command_template(light, "brightness_command_topic", "brightness_command_template", json!({"value": 0})).await;
    ha.reads(light, "brightness_state_topic", "brightness_value_template", "1").await;

    let running = config(&all, "/desk_flowing/config");
    ha.command_template(light, "effect_command_topic", "effect_command_template", json!({"value": "disco"})).await;
    ha.reads(running, "state_topic", "value_template", "ON").await;
    let stop = config(&all, "/desk_stop_effect/config");
    ha.command(&stop["command_topic"], stop["payload_press"].as_str().unwrap().to_string()).await;
    ha.reads(running, "state_topic", "value_template", "OFF").await;

    ha.command_template(light, "effect_command_topic", "effect_command_template", json!({"value": "sunrise"})).await;
    ha.reads(running, "state_topic", "value_template", "ON").await;
    assert!(sim.requests().iter().any(|(method, _)| method == "set_scene"), "the scene reached the bulb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_coming_online_gets_every_config_again() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("ha-birth");
    let instance =
        TestInstance::start(&broker, "demo", demo_config(&id, json!([{"device_id": "lamp", "kind": "light"}]))).await;
    instance.ready().await;
    let mut obs = Observer::connect(broker.port(), "homeassistant/+/+/+/config").await;
    let first = configs(&mut obs, 2).await;
    obs.clear();
    // Home Assistant's birth message, as it sends it after a restart.
    obs.publish("homeassistant/status", "online").await;
    let again = configs(&mut obs, 2).await;
    assert_eq!(first, again);
    // Its last will is no reason to publish anything.
    obs.clear();
    obs.publish("homeassistant/status", "offline").await;
    let quiet = obs.try_wait_for(Duration::from_secs(1), |m| m.topic.ends_with("/config")).await;
    assert!(quiet.is_none(), "nothing is published for offline: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_disabled_and_renamed_devices_update_their_configs() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("ha-life");
    let devices = json!([
        {"device_id": "lamp", "kind": "light"},
        {"device_id": "plug", "kind": "switch"},
        {"device_id": "climate", "kind": "sensor"},
    ]);
    let instance = TestInstance::start(&broker, "demo", demo_config(&id, devices)).await;
    instance.ready().await;
    let mut obs = Observer::connect(broker.port(), "homeassistant/#").await;
    let before = configs(&mut obs, 5).await;
    instance.handle.stop().await;

    // The lamp renamed, the plug disabled, the climate sensor removed.
    let devices = json!([
        {"device_id": "lamp", "kind": "light", "friendly_name": "Reading lamp"},
        {"device_id": "plug", "kind": "switch", "enabled": false},
    ]);
    let instance = TestInstance::start(&broker, "demo", demo_config(&id, devices)).await;
    instance.ready().await;
    let plug = before.keys().find(|t| t.contains("/plug_")).unwrap().clone();
    let cleared: Vec<String> =
        before.keys().filter(|t| t.contains("/plug_") || t.contains("/climate_")).cloned().collect();
    for topic in &cleared {
        obs.wait_for(&format!("{topic} cleared"), WAIT, |m| m.topic == *topic && m.payload.is_empty()).await;
    }
    let lamp = before.keys().find(|t| t.contains("/lamp_light/")).unwrap().clone();
    let renamed =
        obs.wait_for("the lamp renamed", WAIT, |m| m.topic == lamp && m.text().contains("Reading lamp")).await;
    check(&lamp, &renamed.json());
    // Nothing of the removed devices is left for a new Home Assistant to find.
    let retained = crate::support::observer::retained_under(broker.port(), "homeassistant/#", SETTLE).await;
    let left: Vec<&str> = retained.iter().filter(|m| !m.payload.is_empty()).map(|m| m.topic.as_str()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&plug.as_str()));
    instance.handle.stop().await;

    // Discovery switched off for the instance: everything of it goes.
    let mut off = demo_config(&id, json!([{"device_id": "lamp", "kind": "light"}]));
    off["ha_discovery"] = json!(false);
    let instance = TestInstance::start(&broker, "demo", off).await;
    instance.ready().await;
    for topic in &left {
        obs.wait_for(&format!("{topic} cleared"), WAIT, |m| m.topic == *topic && m.payload.is_empty()).await;
    }
    let retained = crate::support::observer::retained_under(broker.port(), "homeassistant/#", SETTLE).await;
    assert!(retained.iter().all(|m| m.payload.is_empty()), "{retained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_a_plugin_without_a_description_turns_its_state_into_sensors() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("ha-swap");
    let instance =
        TestInstance::start(&broker, "demo", demo_config(&id, json!([{"device_id": "plug", "kind": "switch"}]))).await;
    instance.ready().await;
    let mut obs = Observer::connect(broker.port(), "homeassistant/#").await;
    let before = configs(&mut obs, 2).await;
    let switch = config(&before, "/plug_switch/config");
    assert_eq!(switch["name"], Value::Null, "the device's main feature is named after the device");

    // The trap fixture says nothing about its devices: its `power` is read as a binary sensor.
    instance.handle.swap_wasm(plugin("trap")).await.expect("the swap succeeds");
    let topic = before.keys().find(|t| t.contains("/plug_switch/")).unwrap().clone();
    obs.wait_for("the switch removed", WAIT, |m| m.topic == topic && m.payload.is_empty()).await;
    let sensor = obs
        .wait_for("a sensor of power", WAIT, |m| {
            m.topic.contains("/binary_sensor/") && m.topic.ends_with("/plug_power/config")
        })
        .await;
    let sensor_config = sensor.json();
    assert_eq!(check(&sensor.topic, &sensor_config), "binary_sensor");
    assert_eq!(sensor_config["name"], "Power");
    let mut vars = Map::new();
    vars.insert("value_json".into(), json!({"state": {"power": true}}));
    assert_eq!(render(sensor_config["value_template"].as_str().unwrap(), &vars), "ON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_selects_take_values_from_home_assistant() {
    let Some(broker) = TestBroker::start().await else { return };
    let mut obs = Observer::connect(broker.port(), "#").await;
    let id = unique_id("ha-thermo");
    let file = json!({"instance_id": id, "connector_type": "thermostat", "devices": [{"device_id": "hall"}]});
    let instance = TestInstance::start(&broker, "thermostat", file).await;
    instance.ready().await;
    // The connection, the target, the mode and the room's temperature.
    let all = configs(&mut obs, 4).await;
    check_all(all.iter().map(|(t, c)| (t.as_str(), c)));
    let target = config(&all, "/hall_target/config");
    assert_eq!((&target["min"], &target["max"], &target["step"]), (&json!(5.0), &json!(30.0), &json!(0.5)));
    let mode = config(&all, "/hall_mode/config");
    assert_eq!(mode["options"], json!(["off", "heat", "auto"]));

    let mut ha = Driver { obs: &mut obs };
    // Home Assistant sends a number as text of a float, whatever the step.
    ha.command_template(target, "command_topic", "command_template", json!({"value": 21.5})).await;
    ha.reads(target, "state_topic", "value_template", "21.5").await;
    ha.command_template(mode, "command_topic", "command_template", json!({"value": "heat"})).await;
    ha.reads(mode, "state_topic", "value_template", "heat").await;
}
