//! `serve` against a broker that speaks only TLS: its own client, the instances it runs in
//! this process, and the instances it runs in containers (which get the CA as a file, not a
//! variable) all connect with `MQTT_TLS` and `MQTT_CA_FILE`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::tls::{Pki, TlsMosquitto};
use crate::support::{Observer, require_docker, unique_id};

const WAIT: Duration = Duration::from_secs(30);

async fn over_tls(runtime: Runtime) {
    let Some(pki) = Pki::make() else { return };
    let Some(broker) = TlsMosquitto::start(&pki, false).await else { return };
    let (port, ca) = (broker.tls_port.to_string(), pki.ca.display().to_string());
    let env =
        [("MQTT_HOST", "localhost"), ("MQTT_PORT", port.as_str()), ("MQTT_TLS", "true"), ("MQTT_CA_FILE", ca.as_str())];
    let serve = Serve::start_with(runtime, None, &env).await;

    serve.wait_connected("over TLS").await;
    let (_, config) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_eq!((config["tls"].clone(), config["ca_file"].clone()), (json!(true), json!(ca)), "{config}");

    let id = unique_id("tls");
    let mut obs = Observer::connect(broker.port, &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    obs.wait_for("online over TLS", WAIT, |m| m.topic.ends_with("/status") && m.text() == "online").await;

    if runtime == Runtime::Docker {
        let out =
            std::process::Command::new("docker").args(["inspect", &format!("iot2mqtt_demo_{id}")]).output().unwrap();
        let container: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone();
        let env: Vec<&str> = container["Config"]["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(env.contains(&"MQTT_TLS=true"), "{env:?}");
        assert!(env.contains(&"MQTT_CA_FILE=/run/secrets/mqtt_ca.pem"), "the CA is a file beside the secrets: {env:?}");
    }

    // Settings naming a file that cannot be read are refused before anything changes.
    let (status, body) =
        serve.call(Method::POST, "/api/mqtt/config", Some(json!({"ca_file": "/nonexistent/ca.pem"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("/nonexistent/ca.pem"), "{body}");
    let (_, config) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_eq!(config["ca_file"], json!(ca), "the settings are unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_its_embedded_instances_connect_over_tls() {
    over_tls(Runtime::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_the_ca_as_a_file_and_connect_over_tls() {
    if !require_docker() {
        return;
    }
    over_tls(Runtime::Docker).await;
}
