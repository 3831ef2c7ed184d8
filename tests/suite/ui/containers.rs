//! The containers page: under Docker, an instance's container restarted, stopped, started and
//! removed from the browser; in the embedded runtime, a page that says there are none.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};
use crate::support::{require_docker, unique_id};

async fn log_in(browser: &Browser, serve: &Serve) {
    browser.log_in(serve, "/containers").await;
    browser.wait_for_text("h1", "Containers").await;
}

/// The container of `name` as the API lists it, once `check` holds (30 s at most).
async fn container(serve: &Serve, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = serve.call(Method::GET, "/api/docker/containers", None).await;
        let found = list.as_array().into_iter().flatten().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null);
        if check(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "{name}: {found}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_restarted_stopped_started_and_removed_from_the_browser() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let id = unique_id("shed");
    serve
        .create(
            json!({"connector_type": "demo", "instance_id": id, "devices": [{"device_id": "lamp", "kind": "light"}]}),
        )
        .await;
    let name = format!("iot2mqtt_demo_{id}");
    container(&serve, &name, |c| c["state"] == "running").await;
    let Some(browser) = Browser::start("containers", 1400, 900).await else { return };
    log_in(&browser, &serve).await;
    let row = format!("#container-{name}");
    browser.wait_for_text(&format!("{row} .state"), "running").await;
    assert!(browser.text(&row).await.contains(&format!("demo/{id}")));
    browser.screenshot("running").await;

    browser.click(&format!("{row} form[action$='/restart'] button")).await;
    browser.wait_for_text("#container-result", "restart done").await;
    browser.click(&format!("{row} form[action$='/stop'] button")).await;
    browser.wait_for_text("#container-result", "stop done").await;
    browser.wait_for_text(&format!("{row} .state"), "exited").await;
    container(&serve, &name, |c| c["state"] == "exited").await;
    browser.screenshot("stopped").await;
    browser.click(&format!("{row} form[action$='/start'] button")).await;
    browser.wait_for_text("#container-result", "start done").await;
    container(&serve, &name, |c| c["state"] == "running").await;

    // Its log is one click away.
    assert_eq!(
        browser.attr(&format!("{row} a.button"), "href").await.as_deref(),
        Some(format!("/instances/demo/{id}/logs").as_str())
    );

    browser.click(&format!("{row} details.confirm summary")).await;
    browser.wait_for_text(&format!("{row} .popover"), "Remove this container?").await;
    browser.screenshot("confirm-remove").await;
    browser.click(&format!("{row} .popover button")).await;
    browser.wait_for_text("#container-result", "remove done").await;
    container(&serve, &name, Value::is_null).await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containers_page_says_plainly_when_the_runtime_is_embedded() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("containers-embedded", 1280, 700).await else { return };
    log_in(&browser, &serve).await;
    browser.wait_for_text("#embedded-runtime", "The runtime is embedded").await;
    browser.screenshot("embedded").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_connectors_build_is_followed_on_its_page_until_it_fails() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let Some(browser) = Browser::start("container-build", 1400, 900).await else { return };
    log_in(&browser, &serve).await;
    serve.create(json!({"connector_type": "misbuilt", "instance_id": "misbuilt", "devices": []})).await;
    browser.open(&serve.url("/instances/misbuilt/misbuilt")).await;
    // Nothing is published while an image builds: the page asks again by itself.
    browser.wait_for_text("#instance-misbuilt .state", "preparing").await;
    browser.wait_for_text("#instance-misbuilt .state", "Step").await;
    assert!(
        !browser.text("main").await.contains("Upload a new version"),
        "no plugin to upload: its folder is its version"
    );
    browser.screenshot("building").await;
    browser.wait_for_text("#instance-misbuilt .state .error", "no-such-file").await;
    assert!(browser.text("#instance-misbuilt .state").await.contains("stopped"), "no longer preparing");
    // Nothing else on the page contradicts the failure: no empty device grid, no "no errors".
    browser.wait_for_text("#no-devices", "No devices yet").await;
    let errors = browser.text("section[aria-labelledby=errors-title]").await;
    assert!(errors.contains("last error is shown above") && !errors.contains("Good."), "{errors}");
    browser.screenshot("failed").await;
    browser.resize(375, 812).await;
    browser.wait_for_text("#instance-misbuilt .state .error", "no-such-file").await;
    browser.screenshot("failed-phone").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_connector_is_rebuilt_from_its_page_and_stops_at_the_first_failure() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    for id in ["first", "second"] {
        serve.create(json!({"connector_type": "misbuilt", "instance_id": id, "devices": []})).await;
    }
    let Some(browser) = Browser::start("container-rebuild", 1400, 900).await else { return };
    log_in(&browser, &serve).await;
    browser.open(&serve.url("/integrations/misbuilt")).await;
    browser.wait_for_text("#row-first .runs", "its own image").await;
    assert!(!browser.text("main").await.contains("Update all"), "no plugin to upload for a connector without one");
    browser.screenshot("before").await;
    browser.click("#rebuild-all button").await;
    browser.wait_for_text("#update-result", "The rebuild stopped at first").await;
    assert!(browser.text("#update-result").await.contains("no-such-file"), "Docker's words");
    browser.wait_for_text("#row-first .outcome", "failed").await;
    browser.wait_for_text("#row-second .outcome", "not tried").await;
    browser.screenshot("stopped").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
