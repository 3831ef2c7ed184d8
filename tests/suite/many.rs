//! Many instances in one process share one engine, and a faulty plugin stays within its own.

use std::time::Duration;

use serde_json::json;

use crate::support::{Observer, TestBroker, TestInstance, demo_config, unique_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_share_one_engine_and_faults_stay_home() {
    let Some(broker) = TestBroker::start().await else { return };
    let mut instances = Vec::new();
    for _ in 0..20 {
        let id = unique_id("many");
        let devices = json!([{"device_id": "l1", "kind": "light"}]);
        instances.push(TestInstance::start(&broker, "demo", demo_config(&id, devices)).await);
    }
    let faulty_id = unique_id("faulty");
    let faulty = TestInstance::start(
        &broker,
        "trap",
        json!({"instance_id": faulty_id, "connector_type": "trap", "devices": [{"device_id": "x"}]}),
    )
    .await;
    for instance in instances.iter().chain([&faulty]) {
        instance.ready().await;
    }
    let mut obs = Observer::connect(broker.port(), "IoT2mqtt/v1/instances/#").await;
    obs.publish(&faulty.topics.command("x"), json!({"id": "boom", "values": {"panic": "x"}}).to_string()).await;
    obs.next_json(&faulty.topics.command_response("x"), Duration::from_secs(5), |r| {
        r["error"]["code"] == "PLUGIN_FAULT"
    })
    .await;
    for (n, instance) in instances.iter().enumerate() {
        let id = format!("c{n}");
        obs.publish(&instance.topics.command("l1"), json!({"id": id, "values": {"power": true}}).to_string()).await;
    }
    for (n, instance) in instances.iter().enumerate() {
        let id = format!("c{n}");
        let r =
            obs.next_json(&instance.topics.command_response("l1"), Duration::from_secs(5), |r| r["cmd_id"] == id).await;
        assert_eq!(r["status"], "success");
        assert_eq!(instance.handle.status().faults, 0);
    }
    assert_eq!(faulty.handle.status().faults, 1);
}
