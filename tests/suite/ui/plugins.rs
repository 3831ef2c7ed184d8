//! Plugins from the browser: an upload (picked or dropped) swapped live with its pause in the
//! history, a broken file refused with the reason, a rollback, the history after a restart of
//! `serve`, and a connector's "update all instances".

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, plugin};

const WAIT: Duration = Duration::from_secs(30);

/// Write `bytes` as `name` in the test's folder; the path a file input is given.
fn file(serve: &Serve, name: &str, bytes: &[u8]) -> PathBuf {
    let path = serve.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Drop `bytes` as a file named `name` on the drop zone `css`, as a person dragging it there.
async fn drop_file(browser: &Browser, css: &str, name: &str, bytes: &[u8]) {
    let script = r#"
        const [css, name, bytes] = arguments;
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, { type: "application/wasm" }));
        const zone = document.querySelector(css);
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        return zone.querySelector("input[type=file]").files.length;
    "#;
    let chosen = browser.client.execute(script, vec![json!(css), json!(name), json!(bytes)]).await.unwrap();
    assert_eq!(chosen, json!(1), "the dropped file is the input's file");
}

async fn choose_file(browser: &Browser, css: &str, path: &Path) {
    browser.find(css).await.send_keys(&path.display().to_string()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_is_uploaded_swapped_live_rolled_back_and_remembered() {
    let mut serve = Serve::start(Runtime::Embedded).await;
    let root = "IoT2mqtt/v1/instances/porch";
    let mut bus = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "porch", "friendly_name": "Porch",
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    bus.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["version"] == "0.1.0").await;
    let Some(browser) = Browser::start("plugins", 1280, 1400).await else { return };
    browser.log_in(&serve, "/instances/demo/porch").await;
    browser.wait_for_text("h1", "Porch").await;
    browser.wait_for_text("#plugin-current", "demo 0.1.0").await;
    browser.wait_for_text("#plugin-previous", "None yet.").await;

    // A broken file, dropped on the form: refused with the reason, nothing changes.
    drop_file(&browser, "#plugin-upload [data-dropzone]", "broken.wasm", b"not a plugin").await;
    browser.click("#plugin-upload button.primary").await;
    browser.wait_for_text("#command-result", "Rejected").await;
    assert!(browser.text("#command-result").await.contains("not a usable WebAssembly component"));
    browser.wait_for_text("#plugin-history", "rejected").await;
    browser.wait_for_text("#plugin-current", "demo 0.1.0").await;
    browser.screenshot("rejected").await;

    // The next version of demo, picked with the file input: swapped live, the pause shown.
    let next = file(&serve, "demo-next.wasm", &plugin("demo-next"));
    choose_file(&browser, "#plugin-file", &next).await;
    browser.click("#plugin-upload button.primary").await;
    browser.wait_for_text("#command-result", "Swapped to demo 0.2.0").await;
    browser.wait_for_text("#plugin-current", "demo 0.2.0").await;
    browser.wait_for_text("#plugin-previous", "demo 0.1.0").await;
    let newest = browser.text("#plugin-history tbody tr:first-child").await;
    assert!(newest.contains("swapped") && newest.contains(" ms"), "the pause is in the history: {newest}");
    browser.screenshot("swapped").await;
    bus.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["version"] == "0.2.0").await;

    // Roll back to 0.1.0.
    browser.click("#plugin-previous button").await;
    browser.wait_for_text("#command-result", "Swapped to demo 0.1.0").await;
    browser.wait_for_text("#plugin-current", "demo 0.1.0").await;
    bus.next_json(&format!("{root}/meta/info"), WAIT, |i| i["plugin"]["version"] == "0.1.0").await;
    let statuses = bus.collect(&format!("{root}/status"), Duration::from_millis(200)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline, no reconnect: {statuses:?}");

    // The history survives a restart of serve: newest first, all three changes.
    serve.stop();
    serve.spawn().await;
    browser.open(&serve.url("/instances/demo/porch")).await;
    browser.wait_for_text("#plugin-history", "rollback").await;
    // While serve went down and was away, the page's live stream broke off and could not
    // reconnect; nothing else went wrong.
    for error in browser.console_errors().await {
        let message = error["message"].as_str().unwrap_or_default();
        let expected = ["ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING"];
        assert!(expected.iter().any(|e| message.contains(e)), "{error}");
    }
    let rows = browser.client.find_all(fantoccini::Locator::Css("#plugin-history tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 3, "rejected, swapped, rolled back");
    assert!(browser.text("#plugin-history tbody tr:last-child").await.contains("rejected"));
    browser.screenshot("history-after-restart").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_of_a_connector_is_updated_and_a_rejection_stops_the_update() {
    let serve = Serve::start(Runtime::Embedded).await;
    for id in ["attic", "cellar"] {
        serve
            .create(json!({"connector_type": "demo", "instance_id": id, "devices": [{"device_id": "lamp", "kind": "light"}]}))
            .await;
    }
    let Some(browser) = Browser::start("update-all", 1280, 1000).await else { return };
    browser.log_in(&serve, "/integrations").await;
    browser.wait_for_text("h1", "Integrations").await;
    browser.click("a[href='/integrations/demo']").await;
    browser.wait_for_text("h1", "Demo").await;

    let next = file(&serve, "demo-next.wasm", &plugin("demo-next"));
    choose_file(&browser, "#update-file", &next).await;
    browser.click("#update-all button.primary").await;
    browser.wait_for_text("#update-result", "Every instance (2) now has").await;
    for id in ["attic", "cellar"] {
        browser.wait_for_text(&format!("#row-{id} .runs"), "demo 0.2.0").await;
        browser.wait_for_text(&format!("#row-{id} .outcome"), "swapped").await;
    }
    browser.screenshot("updated").await;

    // A plugin that cannot start: the first instance refuses it, the second is not tried.
    let failing = file(&serve, "init-fails.wasm", &plugin("init-fails"));
    choose_file(&browser, "#update-file", &failing).await;
    browser.click("#update-all button.primary").await;
    browser.wait_for_text("#update-result", "stopped at attic").await;
    browser.wait_for_text("#row-attic .outcome", "rejected").await;
    browser.wait_for_text("#row-cellar .outcome", "not tried").await;
    for id in ["attic", "cellar"] {
        browser.wait_for_text(&format!("#row-{id} .runs"), "demo 0.2.0").await;
    }
    browser.screenshot("stopped").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
