//! The broker settings on the settings page: "Test connection" tries what was typed and shows
//! the broker's answer (or why it could not be reached) before anything is saved; "Save"
//! applies the settings and says which instances restarted.

use std::net::TcpListener;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::serve::{KEY, Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_setting_is_tested_and_refused_before_anything_is_saved() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "loft", "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    let Some(browser) = Browser::start("broker-settings", 1280, 1400).await else { return };
    browser.open(&serve.url("/login?next=/settings")).await;
    browser.type_into("#key", KEY).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Settings").await;
    let env_before = std::fs::read_to_string(serve.data().join(".env")).unwrap_or_default();

    // Nobody listens on this port: the connection is refused, and the form keeps what was typed.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    browser.type_into("#mqtt-host", "127.0.0.1").await;
    browser.type_into("#mqtt-port", &closed.to_string()).await;
    browser.click("#broker-test").await;
    browser.wait_for_text("#broker-outcome", "The connection failed").await;
    assert!(
        browser.text("#broker-outcome").await.to_lowercase().contains("refused"),
        "{}",
        browser.text("#broker-outcome").await
    );
    assert_eq!(browser.attr("#mqtt-port", "value").await.unwrap_or_default(), closed.to_string());
    browser.screenshot("refused").await;

    // A broker that answers and refuses the login: its answer is shown.
    browser.type_into("#mqtt-port", &serve.mqtt().port.to_string()).await;
    browser.type_into("#mqtt-username", "nobody-here").await;
    browser.type_into("#mqtt-password", "wrong").await;
    browser.click("#broker-test").await;
    browser.wait_for_text("#broker-outcome", "user name or password").await;
    browser.screenshot("bad-login").await;
    assert_eq!(std::fs::read_to_string(serve.data().join(".env")).unwrap_or_default(), env_before, "nothing saved");

    // A port out of range is refused beside its field, and nothing is saved.
    browser.type_into("#mqtt-port", "70000").await;
    browser.click("#broker-save").await;
    let refused = browser.find("#mqtt-port-error").await.text().await.unwrap();
    assert!(!refused.is_empty(), "the port's error is beside it");
    assert_eq!(std::fs::read_to_string(serve.data().join(".env")).unwrap_or_default(), env_before, "nothing saved");

    // Back to the embedded broker: saved, and the running instance restarted with it.
    browser.type_into("#mqtt-host", "").await;
    browser.type_into("#mqtt-port", "").await;
    browser.type_into("#mqtt-username", "").await;
    browser.click("#broker-test").await;
    browser.wait_for_text("#broker-outcome", "embedded broker is used").await;
    browser.click("#broker-save").await;
    browser.wait_for_text("#broker-outcome", "Restarted with the new settings: loft").await;
    browser.screenshot("saved").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
