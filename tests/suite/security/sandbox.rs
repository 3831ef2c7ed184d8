//! Name lookups: a plugin may look up the host names of its configuration and no other, so
//! it cannot send data out as DNS queries.
//!
//! A plugin's memory is one budget: every linear memory and table it creates counts against
//! the same cap, and the number of core instances, memories and tables is capped, so a
//! component cannot multiply the per-memory limit by declaring more of them. The hostile
//! components are built here from a stub of our WIT world (every export `unreachable`), with
//! the extra memories, tables or instances written in as text.

use iot2mqtt_engine::{Engine, EngineConfig, FaultKind, LoadError};
use iot2mqtt_runtime::InstanceOptions;
use serde_json::json;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};

use crate::faults::{command, fixture};
use crate::support::repo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_looks_up_only_the_names_of_its_configuration() {
    let devices = json!([{"device_id": "x", "host": "localhost", "port": 9}]);
    let Some((_b, instance, mut obs)) = fixture("forbidden-connect", devices, InstanceOptions::default()).await else {
        return;
    };
    let granted = command(&mut obs, &instance, "mine", json!({"lookup": "localhost"})).await;
    assert_eq!(granted["status"], "success", "{granted}");
    assert!(granted["result"]["addresses"].as_array().is_some_and(|a| !a.is_empty()), "{granted}");
    // A name this machine resolves (its own), so a refusal cannot be a failed lookup.
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(std::net::ToSocketAddrs::to_socket_addrs(&(own.as_str(), 9)).is_ok(), "{own} resolves here");
    for (i, name) in [own.as_str(), "c2VjcmV0.exfiltrate.example"].into_iter().enumerate() {
        let refused = command(&mut obs, &instance, &format!("exfil-{i}"), json!({"lookup": name})).await;
        assert_eq!(refused["error"]["code"], "COMMAND_FAILED", "{name}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(name), "{refused}");
    }
}

/// A component of the `connector` world with `core` added to its core module and `outer`
/// added at the top of the component.
fn component(core: &str, outer: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(repo().join("wit")).unwrap();
    let world = resolve.select_world(&[package], Some("connector")).unwrap();
    let stub = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    let text = wasmprinter::print_bytes(&stub).unwrap();
    let end = text.rfind(')').unwrap();
    let mut module = wat::parse_str(format!("{}{core}\n{}", &text[..end], &text[end..])).unwrap();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).unwrap();
    let bytes = ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap();
    let text = wasmprinter::print_bytes(&bytes).unwrap();
    let first = text.find('\n').unwrap();
    wat::parse_str(format!("{}\n{outer}\n{}", &text[..first], &text[first..])).unwrap()
}

/// How the engine's load (which instantiates the plugin and asks its `about`) ends.
async fn load(core: &str, outer: &str) -> (FaultKind, String) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    match engine.load(component(core, outer)).await {
        Err(LoadError::Check(fault)) => (fault.kind, fault.message),
        Err(other) => panic!("refused before it ran: {other}"),
        Ok(_) => panic!("the stub's `about` is unreachable: it cannot load"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stub_itself_instantiates() {
    let (kind, message) = load("", "").await;
    assert_eq!(kind, FaultKind::Trap, "it got as far as calling `about`: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_memories_of_10_mib_exceed_one_64_mib_budget() {
    let (kind, message) = load(&"(memory 160)\n".repeat(7), "").await;
    assert_eq!(kind, FaultKind::MemoryLimit, "{message}");
    assert!(message.contains("memory"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_count_against_the_same_budget() {
    // 37.5 MiB of memory and 40 tables of 90,000 elements (29 MB): each fine alone.
    let core = format!("(memory 600)\n{}", "(table 90000 funcref)\n".repeat(40));
    let (kind, message) = load(&core, "").await;
    assert_eq!(kind, FaultKind::MemoryLimit, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_instances_and_memories_are_counted() {
    let empty = format!("(core module $e)\n{}", "(core instance (instantiate $e))\n".repeat(100));
    let (kind, message) = load("", &empty).await;
    assert_eq!(kind, FaultKind::MemoryLimit, "{message}");
    assert!(message.contains("instance count"), "{message}");
    let memories = format!("(core module $m (memory 1))\n{}", "(core instance (instantiate $m))\n".repeat(20));
    let (kind, message) = load("", &memories).await;
    assert_eq!(kind, FaultKind::MemoryLimit, "{message}");
    assert!(message.contains("memory count"), "{message}");
}

/// Values a plugin hands the host are bounded before they are parsed, and its output is
/// rate-limited: a flood of log lines leaves a notice, not the flood, in the instance's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_values_are_refused_before_parsing_and_a_log_flood_is_cut() {
    use crate::support::serve::{Runtime, Serve};
    use reqwest::{Method, StatusCode};

    let serve = Serve::start(Runtime::Embedded).await;
    serve.create(json!({"instance_id": "noisy", "connector_type": "probe", "devices": [{"device_id": "x"}]})).await;
    let command = |values: serde_json::Value| {
        serve.call(Method::POST, "/api/devices/noisy/x/command", Some(json!({"values": values})))
    };
    let (status, small) = command(json!({"push_kib": 4})).await;
    assert_eq!(status, StatusCode::OK, "{small}");
    let (_, big) = command(json!({"push_kib": 8192})).await;
    let message = big["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 256 KiB"), "an 8 MiB state is refused unparsed: {big}");

    let (status, spam) = command(json!({"spam": 5000})).await;
    assert_eq!(status, StatusCode::OK, "{spam}");
    let (_, lines) = serve.call(Method::GET, "/api/instances/probe/noisy/logs?lines=500", None).await;
    let lines: Vec<&str> = lines.as_array().unwrap().iter().map(|l| l["content"].as_str().unwrap()).collect();
    let spammed = lines.iter().filter(|l| l.contains("spam line")).count();
    assert!((1..=260).contains(&spammed), "{spammed} of 5000 lines were logged");
    assert!(lines.iter().any(|l| l.contains("lines are dropped")), "the drop is said: {lines:?}");
}
