//! Table tests of the setup.json schema, and walks through the real connectors' flows with
//! the engine alone (tools and instance creation answered by the test).

use iot2mqtt_flows::{FlowSession, Next, Setup, ToolFailure};
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../../connectors/demo/setup.json");
const YEELIGHT: &str = include_str!("../../../connectors/yeelight/setup.json");

fn setup(text: &str) -> Setup {
    Setup::parse(text.as_bytes(), "setup.json").unwrap_or_else(|e| panic!("{e}"))
}

fn show(next: Next) -> Value {
    match next {
        Next::Show(view) => serde_json::to_value(view).unwrap_or_else(|e| panic!("{e}")),
        other => panic!("expected a step to show, got {other:?}"),
    }
}

#[test]
fn the_real_setups_are_valid() {
    for (name, text) in [("demo", DEMO), ("yeelight", YEELIGHT)] {
        let parsed = Setup::parse(text.as_bytes(), name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!parsed.flows.is_empty());
    }
}

#[test]
fn invalid_setups_are_refused_naming_file_path_and_problem() {
    let base = || serde_json::from_str::<Value>(DEMO).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base();
        f(&mut v);
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|v| v["colour"] = json!("red")), "x.json: colour: unknown field `colour`, expected one of `version`"),
        (with(&|v| v["version"] = json!("2.0")), "x.json: version: unsupported version \"2.0\""),
        (with(&|v| v["flows"] = json!([])), "x.json: flows: a setup needs at least one flow"),
        (with(&|v| v["branding"]["color"] = json!("blue")), "x.json: branding.color: \"blue\" is not #rrggbb"),
        (
            with(&|v| v["flows"][0]["steps"][0]["type"] = json!("wizard")),
            "x.json: flows[0].steps[0].type: unknown variant `wizard`",
        ),
        (
            with(&|v| v["flows"][0]["steps"][0]["fields"][0]["type"] = json!("colour")),
            "x.json: flows[0].steps[0].fields[0].type: unknown variant `colour`",
        ),
        (
            with(&|v| v["flows"][0]["steps"][0]["fields"][0]["required"] = json!("yes")),
            "x.json: flows[0].steps[0].fields[0].required: invalid type: string \"yes\", expected a boolean",
        ),
        (
            with(&|v| {
                v["flows"][0]["steps"][1].as_object_mut().unwrap().remove("tool");
            }),
            "x.json: flows[0].steps[1].tool: a tool step needs \"tool\"",
        ),
        (
            with(&|v| v["flows"][0]["steps"][1]["tool"] = json!("nope")),
            "x.json: flows[0].steps[1].tool: no tool \"nope\" is declared in \"tools\"",
        ),
        (
            with(&|v| v["flows"][0]["steps"][1]["fields"] = json!([{"name": "x", "type": "text"}])),
            "x.json: flows[0].steps[1].fields: \"fields\" does not belong in a tool step",
        ),
        (
            with(&|v| v["flows"][0]["steps"][2]["id"] = json!("about")),
            "x.json: flows[0].steps[2].id: step id \"about\" appears twice in the flow",
        ),
        (
            with(&|v| v["flows"][0]["steps"][0]["fields"][0]["pattern"] = json!("(")),
            "x.json: flows[0].steps[0].fields[0].pattern: \"(\" is not a valid regular expression",
        ),
        (
            with(&|v| v["flows"][0]["steps"][0]["fields"][0]["type"] = json!("select")),
            "x.json: flows[0].steps[0].fields[0].options: a select field needs \"options\"",
        ),
        (
            with(&|v| v["flows"][0]["steps"][0]["actions"] = json!([{"type": "goto_flow", "flow": "elsewhere"}])),
            "x.json: flows[0].steps[0].actions[0].flow: no flow \"elsewhere\"",
        ),
        (
            with(&|v| v["tools"]["suggest_devices"]["entry"] = json!("../../bin/sh")),
            "x.json: tools.suggest_devices.entry: must be \"plugin\" or a program inside the connector's folder",
        ),
        (
            with(&|v| v["multi_device"] = json!({"enabled": true, "steps": ["ghost"], "device": {}})),
            "x.json: multi_device.steps[0]: no step \"ghost\" in any flow",
        ),
        (
            with(&|v| v["flows"][0]["steps"][4].as_object_mut().unwrap().remove("instance").map(|_| ()).unwrap_or(())),
            "x.json: flows[0].steps[4].instance: a instance step needs \"instance\"",
        ),
        (json!("not an object"), "x.json: $: invalid type: string \"not an object\""),
    ];
    for (document, expected) in cases {
        let error = Setup::parse(document.to_string().as_bytes(), "x.json").unwrap_err().to_string();
        assert!(error.starts_with(expected), "expected {expected:?}\n     got {error:?}");
    }
    let broken = Setup::parse(b"{\"version\": ", "x.json").unwrap_err();
    assert_eq!((broken.file.as_str(), broken.path.as_str()), ("x.json", "version"));
    assert!(broken.problem.contains("line 1"), "{broken}");
}

#[test]
fn the_json_schema_is_generated_from_the_types_and_checked_in() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors/setup.schema.json");
    let generated = serde_json::to_string_pretty(&Setup::json_schema()).unwrap() + "\n";
    if std::env::var("IOT2MQTT_UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "connectors/setup.schema.json is out of date: run `cargo xtask schema` and commit the result"
    );
}

#[test]
fn the_demo_flow_from_form_to_instance() {
    let (mut session, next) = FlowSession::start(setup(DEMO), "demo", None).unwrap();
    let view = show(next);
    assert_eq!((view["id"].as_str(), view["type"].as_str()), (Some("about"), Some("form")));
    assert_eq!(view["fields"][1]["default"], 2);
    assert_eq!(view["progress"], json!({"step": 1, "of": 5}));

    let view = show(session.submit(&json!({"values": {"count": 20}})).unwrap());
    assert_eq!(view["errors"]["friendly_name"], "is required");
    assert_eq!(view["errors"]["count"], "must be at most 10");

    let next = session.submit(&json!({"values": {"friendly_name": "Demo house", "count": "1"}})).unwrap();
    let Next::RunTool { tool, input } = next else { panic!("{next:?}") };
    assert_eq!(
        (tool.as_str(), input),
        ("suggest_devices", json!({"count": 1, "sensors": true})),
        "templates keep types"
    );

    let view = show(
        session
            .tool_done(Err(ToolFailure { code: "timeout".into(), message: "slow".into(), retriable: true }))
            .unwrap(),
    );
    assert_eq!(view["error"]["code"], "timeout");
    let Next::RunTool { .. } = session.action("rerun_step", None).unwrap() else { panic!() };
    let suggested = json!([{"device_id": "light1", "kind": "light", "label": "Light 1"}, {"device_id": "sensor1", "kind": "sensor", "label": "Sensor 1"}]);
    let view = show(session.tool_done(Ok(suggested)).unwrap());
    assert_eq!(view["title"], "Choose the devices of Demo house");
    assert_eq!(view["items"][1]["label"], "Sensor 1");

    let view = show(session.submit(&json!({"selection": ["nope"]})).unwrap());
    assert!(view["errors"]["selection"].as_str().unwrap().contains("not one of the items"));
    let view = show(session.submit(&json!({"selection": ["light1", "sensor1"]})).unwrap());
    assert_eq!(view["summary"][1], json!({"label": "Devices", "value": 2}));

    let Next::CreateInstance(body) = session.submit(&json!({})).unwrap() else { panic!() };
    assert_eq!(
        body,
        json!({"instance_id": "auto", "friendly_name": "Demo house", "update_interval": 10, "connector_type": "demo",
               "devices": [{"device_id": "light1", "kind": "light"}, {"device_id": "sensor1", "kind": "sensor"}]})
    );
    // A duplicate id shows on the field it came from.
    let view = show(
        session
            .instance_done(Err((Some("instance_id".into()), "an instance \"demo_house\" exists already".into())))
            .unwrap(),
    );
    assert_eq!(view["id"], "about");
    assert_eq!(view["errors"]["friendly_name"], "an instance \"demo_house\" exists already");
}

#[test]
fn the_yeelight_manual_flow_collects_several_bulbs_and_refuses_duplicates() {
    let (mut session, next) = FlowSession::start(setup(YEELIGHT), "yeelight", Some("manual")).unwrap();
    assert_eq!(show(next)["id"], "address");
    let bulb = |ip: &str, id: &str| json!({"ip": ip, "port": 55443, "model": "color", "fw_ver": "18", "name": "", "suggested_id": id});
    for (ip, id) in [("192.168.1.10", "0x01"), ("192.168.1.11", "0x02")] {
        let view = show(session.submit(&json!({"values": {"host": "not an ip"}})).unwrap());
        assert_eq!(view["errors"]["host"], "must be an IP address");
        let Next::RunTool { tool, input } = session.submit(&json!({"values": {"host": ip}})).unwrap() else { panic!() };
        assert_eq!((tool.as_str(), input), ("validate_device", json!({"host": ip, "port": 55443})));
        let view = show(session.tool_done(Ok(bulb(ip, id))).unwrap());
        assert_eq!(view["id"], "name");
        assert_eq!(view["fields"][0]["default"], id);
        assert_eq!(view["title"], format!("Found a color at {ip}"));
        let view = show(session.submit(&json!({"values": {"label": format!("Lamp {ip}")}})).unwrap());
        assert_eq!(view["type"], "devices");
        if ip.ends_with(".10") {
            assert_eq!(show(session.action("add_device", None).unwrap())["id"], "address");
        }
    }
    // A third round with an id already taken is refused on the device_id field.
    show(session.action("add_device", None).unwrap());
    session.submit(&json!({"values": {"host": "192.168.1.12"}})).unwrap();
    session.tool_done(Ok(bulb("192.168.1.12", "0x01"))).unwrap();
    let view = show(session.submit(&json!({"values": {}})).unwrap());
    assert_eq!(view["id"], "name");
    assert_eq!(view["errors"]["device_id"], "a device \"0x01\" was added already");
    let view = show(session.submit(&json!({"values": {"device_id": "0x03"}})).unwrap());
    assert_eq!(view["devices"].as_array().unwrap().len(), 3);
    assert_eq!(show(session.submit(&json!({})).unwrap())["id"], "instance_name");
    let Next::CreateInstance(body) = session.submit(&json!({"values": {"friendly_name": "Living room"}})).unwrap()
    else {
        panic!()
    };
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(
        devices[0],
        json!({"device_id": "0x01", "host": "192.168.1.10", "port": 55443, "model": "color", "fw_ver": "18", "friendly_name": "Lamp 192.168.1.10"})
    );
    assert_eq!(body["config"], json!({"effect": "smooth"}));
}

#[test]
fn the_yeelight_automatic_flow_discovers_picks_and_names_each_bulb() {
    let (mut session, next) = FlowSession::start(setup(YEELIGHT), "yeelight", None).unwrap();
    let Next::RunTool { tool, input } = next else { panic!("discovery runs at once: {next:?}") };
    assert_eq!((tool.as_str(), input), ("discover_devices", json!({"timeout_ms": 3000})));
    let found = json!([
        {"device_id": "0x0a", "ip": "10.0.0.5", "port": 55443, "model": "color", "name": "", "fw_ver": "18"},
        {"device_id": "0x0b", "ip": "10.0.0.6", "port": 55443, "model": "ceiling4", "name": "Hall", "fw_ver": "5"}
    ]);
    let view = show(session.tool_done(Ok(found)).unwrap());
    assert_eq!(view["items"][0]["label"], "color (10.0.0.5)");
    assert_eq!(view["items"][1]["label"], "Hall (10.0.0.6)");
    let view = show(session.submit(&json!({"selection": ["0x0b", "0x0a"]})).unwrap());
    assert_eq!((view["id"].as_str(), view["repeat"]["index"].as_u64()), (Some("names"), Some(0)));
    assert_eq!(view["fields"][0]["default"], "Hall", "the items in their order of choice");
    let view = show(session.submit(&json!({"values": {"label": "Hall light"}})).unwrap());
    assert_eq!(
        (view["repeat"]["index"].as_u64(), view["title"].as_str()),
        (Some(1), Some("Name the color at 10.0.0.5"))
    );
    let view = show(session.submit(&json!({"values": {"label": "Desk"}})).unwrap());
    assert_eq!(view["id"], "instance_name");
    let Next::CreateInstance(body) =
        session.submit(&json!({"values": {"friendly_name": "Lights", "effect": "sudden"}})).unwrap()
    else {
        panic!()
    };
    let names: Vec<&str> =
        body["devices"].as_array().unwrap().iter().map(|d| d["friendly_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Hall light", "Desk"]);
    assert_eq!(body["devices"][1]["host"], "10.0.0.5");
    assert_eq!(body["config"]["effect"], "sudden");
}

#[test]
fn actions_switch_flows_rerun_and_reset() {
    let (mut session, _) = FlowSession::start(setup(YEELIGHT), "yeelight", None).unwrap();
    let view = show(session.tool_done(Ok(json!([]))).unwrap());
    assert_eq!(view["items"], json!([]), "finding nothing is fine");
    assert!(matches!(session.action("rerun_step", None).unwrap(), Next::RunTool { .. }));
    session.tool_done(Ok(json!([]))).unwrap();
    let view = show(session.action("goto_flow", Some("manual")).unwrap());
    assert_eq!((view["flow"].as_str(), view["id"].as_str()), (Some("manual"), Some("address")));
    assert!(session.action("open_the_pod_bay_doors", None).is_err());
    session.submit(&json!({"values": {"host": "10.0.0.1"}})).unwrap();
    let (mut demo, _) = FlowSession::start(setup(DEMO), "demo", None).unwrap();
    assert!(demo.action("reset_flow", None).is_err(), "not offered by this step");
    assert!(FlowSession::start(setup(DEMO), "demo", Some("nope")).is_err());
}

#[test]
fn conditions_hide_steps_and_fields() {
    let text = json!({
        "version": "1.0", "display_name": "c",
        "flows": [{"id": "f", "name": "f", "steps": [
            {"id": "mode", "type": "form", "fields": [
                {"name": "kind", "type": "select", "options": ["cloud", "local"], "required": true},
                {"name": "token", "type": "password", "required": true, "conditions": {"path": "form.mode.kind", "equals": "cloud"}}
            ]},
            {"id": "local_only", "type": "message", "text": "Local mode", "conditions": {"path": "form.mode.kind", "equals": "local"}},
            {"id": "done", "type": "summary", "summary": [
                {"label": "Kind", "value": "{{ form.mode.kind }}"}, {"label": "Token", "value": "{{ form.mode.token }}"}]}
        ]}]
    });
    let parsed = Setup::parse(text.to_string().as_bytes(), "c.json").unwrap();
    assert_eq!(parsed.secret_fields().into_iter().collect::<Vec<_>>(), ["token"]);
    let (mut cloud, _) = FlowSession::start(parsed.clone(), "c", None).unwrap();
    let view = show(cloud.submit(&json!({"values": {"kind": "cloud"}})).unwrap());
    assert_eq!(view["errors"]["token"], "is required");
    let view = show(cloud.submit(&json!({"values": {"kind": "cloud", "token": "s3cret"}})).unwrap());
    assert_eq!(view["id"], "done", "the local message is skipped");
    assert_eq!(view["summary"][1]["value"], "********", "a secret is never shown back: {view}");
    let (mut local, _) = FlowSession::start(parsed, "c", None).unwrap();
    let view = show(local.submit(&json!({"values": {"kind": "local"}})).unwrap());
    assert_eq!(view["id"], "local_only", "the hidden token field was not required");
}
