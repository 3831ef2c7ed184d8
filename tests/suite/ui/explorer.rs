//! The MQTT explorer in the browser: the topic tree with counts, a message pretty-printed, a
//! command published with the template and its response seen arriving, a refused topic, and an
//! instance's retained messages cleared after a confirmation.

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_published_from_the_explorer_and_its_response_arrives() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "hall",
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    let Some(browser) = Browser::start("explorer", 1280, 1100).await else { return };
    browser.log_in(&serve, "/explorer").await;
    browser.wait_for_text("h1", "MQTT explorer").await;
    let root = "IoT2mqtt/v1/instances/hall";
    browser.wait_for_text("#topics", "hall").await;

    // The device's state, pretty-printed.
    browser.click(&format!("#topics li[data-topic='{root}/devices/lamp/state'] a")).await;
    browser.wait_for_text("#message-topic", &format!("{root}/devices/lamp/state")).await;
    browser.wait_for_text("#message-payload", "\"power\"").await;
    assert!(browser.text("#message-payload").await.contains('\n'), "pretty-printed");

    // A command from the template, on the device's cmd topic.
    browser.type_into("#publish-topic", &format!("{root}/devices/lamp/cmd")).await;
    browser.click("#use-template").await;
    let template = browser.find("#publish-payload").await.prop("value").await.unwrap().unwrap_or_default();
    assert!(template.contains("\"values\""), "the contract's command form: {template}");
    browser.type_into("#publish-payload", r#"{"id": "from-explorer", "values": {"power": false}}"#).await;
    browser.screenshot("command").await;
    browser.click("#publish button.primary").await;
    browser.wait_for_text("#explorer-result", "Published to").await;
    let response = format!("{root}/devices/lamp/cmd/response");
    browser.wait_for_text("#topics", "response").await;
    browser.click(&format!("#topics li[data-topic='{response}'] a")).await;
    browser.wait_for_text("#message-payload", "from-explorer").await;
    assert!(browser.text("#message-payload").await.contains("success"));
    browser.screenshot("response").await;

    // A wildcard is no topic to publish to.
    browser.type_into("#publish-topic", "IoT2mqtt/#").await;
    browser.click("#publish button.primary").await;
    browser.wait_for_text("#explorer-result", "without + or #").await;

    // Clear the instance's retained messages, after a confirmation.
    browser.click("#clear-hall summary").await;
    browser.wait_for_text("#clear-hall .popover", "Clear every retained message").await;
    browser.click("#clear-hall .popover button").await;
    browser.wait_for_text("#explorer-result", "retained messages of hall were cleared").await;
    browser.screenshot("cleared").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
