//! MQTT settings and the explorer: topics, publishing, the live stream, clearing retained
//! topics.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, TestBroker, unique_id};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_never_return_the_password_and_a_change_reconnects() {
    let Some(broker) = TestBroker::start().await else { return };
    let serve = Serve::start_with(Runtime::Embedded, Some(&broker), &[]).await;
    let id = unique_id("cfg");
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    let mut obs = Observer::connect(broker.port(), "#").await;
    obs.wait_for("online", WAIT, |m| m.topic == format!("IoT2mqtt/v1/instances/{id}/status") && m.text() == "online")
        .await;

    let (status, config) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((config["port"].as_u64(), config["password"].is_null()), (Some(u64::from(broker.port())), true));

    let (status, config) = serve
        .call(Method::POST, "/api/mqtt/config", Some(json!({"password": "broker-pass", "base_topic": "Moved"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["password"], "********");
    assert_eq!(config["base_topic"], "Moved");
    let dotenv = std::fs::read_to_string(serve.data().join(".env")).unwrap();
    assert!(dotenv.contains("MQTT_BASE_TOPIC=Moved") && !dotenv.contains("broker-pass"), "{dotenv}");
    // Instances restart with the new settings: they appear under the new base topic.
    obs.wait_for("online under the new base", WAIT, |m| {
        m.topic == format!("Moved/v1/instances/{id}/status") && m.text() == "online"
    })
    .await;

    // Posting the mask keeps the password; an invalid value is refused, naming it.
    let (status, _) =
        serve.call(Method::POST, "/api/mqtt/config", Some(json!({"password": "********", "qos": 1}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, kept) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_eq!(kept["password"], "********", "the password is kept: {kept}");
    for (body, field) in [
        (json!({"qos": 3}), "qos"),
        (json!({"port": 0}), "port"),
        (json!({"keepalive": "x"}), "keepalive"),
        (json!({"colour": 1}), "colour"),
    ] {
        let (status, response) = serve.call(Method::POST, "/api/mqtt/config", Some(body.clone())).await;
        assert_eq!(
            (status, response["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{body}: {response}"
        );
    }
    let (_, config) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert!(!config.to_string().contains("broker-pass"));
    assert!(!serve.log().contains("broker-pass"), "the password is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_lists_publishes_streams_and_clears() {
    let serve = Serve::start(Runtime::Embedded).await;
    let id = unique_id("exp");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    obs.wait_for("state", WAIT, |m| m.topic == format!("{root}/devices/l1/state")).await;

    // The server's cache is another subscriber: it may get the state a moment after us.
    let wanted = [format!("{root}/status"), format!("{root}/devices/l1/state")];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, topics) = serve.call(Method::GET, &format!("/api/mqtt/topics?prefix={root}/"), None).await;
        let names: Vec<String> =
            topics.as_array().unwrap().iter().filter_map(|t| t["topic"].as_str().map(String::from)).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the topic list never held {wanted:?}: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stream = serve.client().get(serve.url("/api/mqtt/stream")).bearer_auth(serve.token()).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.bytes_stream();
    let (status, _) = serve
        .call(Method::POST, "/api/mqtt/publish", Some(json!({"topic": format!("{root}/devices/l1/cmd"), "payload": {"id": "x1", "values": {"power": true}}, "qos": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let response = obs.next_json(&format!("{root}/devices/l1/cmd/response"), WAIT, |r| r["cmd_id"] == "x1").await;
    assert_eq!(response["status"], "success", "the published command was executed");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains("cmd/response") {
        let chunk =
            tokio::time::timeout_at(deadline, body.next()).await.expect("the stream delivers").unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    for (body, field) in [
        (json!({"topic": "a/#", "payload": "x"}), "topic"),
        (json!({"payload": "x"}), "topic"),
        (json!({"topic": "a", "qos": 5}), "qos"),
    ] {
        let (status, response) = serve.call(Method::POST, "/api/mqtt/publish", Some(body)).await;
        assert_eq!((status, response["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)));
    }

    // Clearing retained topics of the instance removes them from the broker.
    let (status, cleared) = serve.call(Method::DELETE, &format!("/api/mqtt/retained/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cleared["cleared"].as_u64().unwrap() >= 5, "{cleared}");
    // The clearing messages are on their way through the server's outbox: look until they landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left =
            crate::support::observer::retained_under(serve.mqtt(), &format!("{root}/#"), Duration::from_millis(500))
                .await;
        if left.iter().all(|m| !m.topic.ends_with("/devices/l1/state")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still retained: {left:?}");
    }
}
