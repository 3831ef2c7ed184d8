//! `serve`'s embedded broker as its users meet it: nobody gets in without a login, each
//! instance has its own, and people's accounts are made, used and removed through the API.

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::observer::MqttAt;
use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, require, unique_id};

const WAIT: Duration = Duration::from_secs(15);

/// `mosquitto_pub` with these arguments; whether the broker took the message.
fn mosquitto_pub(port: u16, args: &[&str]) -> std::process::Output {
    Command::new("mosquitto_pub").args(["-p", &port.to_string(), "-q", "1"]).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_asks_everyone_for_a_login_and_people_get_accounts() {
    if !require("mosquitto_pub", "apt-get install -y mosquitto-clients") {
        return;
    }
    let serve = Serve::start(Runtime::Embedded).await;
    let port = serve.mqtt().port;
    let id = unique_id("acl");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut everything = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    everything.wait_for("online", WAIT, |m| m.topic == format!("{root}/status") && m.text() == "online").await;

    // Anonymous: refused, with the reason.
    let anonymous = mosquitto_pub(port, &["-t", &format!("{root}/devices/l1/cmd"), "-m", "{}"]);
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).to_lowercase().contains("not authori"), "{anonymous:?}");

    // An observer hears everything and can change nothing.
    let (user, password) = serve.mqtt_account("home-assistant", "observer").await;
    let (status, listed) = serve.call(Method::GET, "/api/mqtt/accounts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.to_string().contains("home-assistant") && !listed.to_string().contains(&password), "{listed}");
    let observer = MqttAt { port, login: Some((user.clone(), password.clone())) };
    let watching = Observer::connect(observer, &format!("{root}/#")).await;
    watching.publish(&format!("{root}/status"), "offline").await;
    let forged = everything.try_wait_for(Duration::from_millis(700), |m| m.text() == "offline").await;
    assert!(forged.is_none(), "an observer's publication was delivered: {forged:?}");
    assert!(serve.log().contains("MQTT publish refused"), "the refusal is logged");

    // Names are checked; a second account of one name is refused.
    for (name, expected) in [("instance-x", StatusCode::UNPROCESSABLE_ENTITY), ("home-assistant", StatusCode::CONFLICT)]
    {
        let (status, body) =
            serve.call(Method::POST, "/api/mqtt/accounts", Some(json!({"name": name, "access": "full"}))).await;
        assert_eq!(status, expected, "{name}: {body}");
    }

    // Deleted: the login no longer works.
    let (status, _) = serve.call(Method::DELETE, "/api/mqtt/accounts/home-assistant", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refused = mosquitto_pub(port, &["-u", &user, "-P", &password, "-t", "x", "-m", "1"]);
    assert!(!refused.status.success(), "a deleted account still logs in");
}
