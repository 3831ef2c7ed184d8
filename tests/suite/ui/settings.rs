//! The broker settings on the settings page: "Test connection" tries what was typed and shows
//! the broker's answer (or why it could not be reached) before anything is saved; "Save"
//! applies the settings and says which instances restarted.

use std::net::TcpListener;

use reqwest::Method;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};
use crate::support::tls::{Pki, TlsMosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_setting_is_tested_and_refused_before_anything_is_saved() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "loft", "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    let Some(browser) = Browser::start("broker-settings", 1280, 1400).await else { return };
    browser.log_in(&serve, "/settings").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_asks_for_a_client_certificate_is_set_up_from_the_form() {
    let Some(pki) = Pki::make() else { return };
    let Some(broker) = TlsMosquitto::start(&pki, true).await else { return };
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("broker-client-certificate", 1280, 1600).await else { return };
    browser.log_in(&serve, "/settings").await;
    browser.wait_for_text("h1", "Settings").await;

    // TLS and the CA alone: the broker wants a certificate, and the outcome says so.
    browser.type_into("#mqtt-host", "localhost").await;
    browser.type_into("#mqtt-port", &broker.tls_port.to_string()).await;
    browser.click("#mqtt-tls").await;
    browser.type_into("#mqtt-ca-file", &pki.ca.display().to_string()).await;
    browser.click("#broker-test").await;
    browser.wait_for_text("#broker-outcome", "The connection failed").await;
    let outcome = browser.text("#broker-outcome").await;
    assert!(outcome.contains("client certificate"), "{outcome}");
    browser.screenshot("certificate-missing").await;

    // A key file that does not exist is named beside its field, and nothing is saved.
    let env_before = std::fs::read_to_string(serve.data().join(".env")).unwrap_or_default();
    browser.type_into("#mqtt-cert-file", &pki.client_cert.display().to_string()).await;
    browser.type_into("#mqtt-key-file", "/nonexistent/client.key").await;
    browser.click("#broker-save").await;
    let refused = browser.find("#mqtt-key-file-error").await.text().await.unwrap();
    assert!(refused.contains("/nonexistent/client.key"), "{refused}");
    assert_eq!(std::fs::read_to_string(serve.data().join(".env")).unwrap_or_default(), env_before, "nothing saved");

    // The certificate and its key: the broker accepts, the settings are saved and kept.
    browser.type_into("#mqtt-key-file", &pki.client_key.display().to_string()).await;
    browser.click("#broker-test").await;
    browser.wait_for_text("#broker-outcome", "accepted").await;
    browser.click("#broker-save").await;
    browser.wait_for_text("#broker-outcome", "Saved").await;
    let env = std::fs::read_to_string(serve.data().join(".env")).unwrap();
    assert!(env.contains(&format!("MQTT_CERT_FILE={}", pki.client_cert.display())), "{env}");
    assert!(env.contains(&format!("MQTT_KEY_FILE={}", pki.client_key.display())), "{env}");
    serve.wait_connected("with its client certificate").await;
    browser.open(&serve.url("/settings")).await;
    let broker_line = browser.text("#broker").await;
    assert!(broker_line.contains("An external broker") && broker_line.contains("over TLS"), "{broker_line}");
    assert_eq!(
        browser.attr("#mqtt-key-file", "value").await.unwrap_or_default(),
        pki.client_key.display().to_string(),
        "the form shows the saved files"
    );
    browser.screenshot("certificate-saved").await;

    // Back to the embedded broker: serve reconnects to it, not to the broker used before.
    for field in ["#mqtt-host", "#mqtt-port", "#mqtt-ca-file", "#mqtt-cert-file", "#mqtt-key-file"] {
        browser.type_into(field, "").await;
    }
    browser.click("#mqtt-tls").await;
    browser.click("#broker-save").await;
    browser.wait_for_text("#broker-outcome", "Saved").await;
    browser.wait_for_text("#broker", "The embedded broker").await;
    let (_, config) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_eq!(
        (config["broker"].clone(), config["port"].clone()),
        (json!("embedded"), json!(serve.mqtt().port)),
        "{config}"
    );
    serve.wait_connected("to the embedded broker again").await;

    // On a phone the form fits the screen: nothing scrolls sideways.
    browser.resize(375, 812).await;
    browser.open(&serve.url("/settings")).await;
    let widths = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth, \
             [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth) \
             .map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))];",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshot("phone").await;
    browser.client.execute("document.getElementById('about').scrollIntoView();", vec![]).await.unwrap();
    browser.screenshot("phone-about").await;
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "the page is wider than the screen: {widths}");
    browser.assert_clean_console().await;
    browser.close().await;
}
