//! Log pages in the browser: an instance's log followed live while it starts, filtered by level
//! and text, paused and followed again, and downloaded; and the orchestrator's own log.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};

/// How many lines of the log are shown now.
async fn shown(browser: &Browser) -> usize {
    let script = "return [...document.querySelectorAll('#log li')].filter((li) => !li.hidden).length;";
    browser.client.execute(script, vec![]).await.unwrap().as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_log_is_followed_while_it_starts_filtered_paused_and_downloaded() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "garden", "friendly_name": "Garden",
            "enabled": false, "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    let Some(browser) = Browser::start("logs", 1280, 1000).await else { return };
    browser.log_in(&serve, "/instances/demo/garden").await;
    browser.wait_for_text("h1", "Garden").await;
    browser.click("#open-log").await;
    browser.wait_for_text("h1", "Log of Garden").await;

    // Started from elsewhere: its lines arrive in the open page.
    let (status, _) = serve.call(Method::POST, "/api/instances/demo/garden/start", None).await;
    assert_eq!(status, StatusCode::OK);
    browser.wait_for_text("#log", "instance started").await;
    browser.screenshot("following").await;

    // Filters: errors only hides the start; a text filter keeps the matching lines.
    browser.click("#log-level option[value=error]").await;
    assert_eq!(shown(&browser).await, 0, "no error was logged");
    browser.click("#log-level option[value='']").await;
    browser.type_into("#log-text", "instance started").await;
    assert!(shown(&browser).await >= 1);
    let all = browser.client.execute("return document.querySelectorAll('#log li').length;", vec![]).await.unwrap();
    assert!(all.as_u64().unwrap() as usize > shown(&browser).await, "other lines are hidden: {all}");
    browser.screenshot("filtered").await;

    // Paused: new lines wait and are counted; following again shows them.
    browser.click("#log-pause").await;
    assert_eq!(browser.attr("#log-pause", "aria-pressed").await.as_deref(), Some("true"));
    let before = shown(&browser).await;
    let (status, _) = serve.call(Method::POST, "/api/instances/demo/garden/restart", None).await;
    assert_eq!(status, StatusCode::OK);
    browser.wait_for_text("#log-status", "new lines wait").await;
    assert_eq!(shown(&browser).await, before, "nothing is added while paused");
    browser.screenshot("paused").await;
    browser.click("#log-pause").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shown(&browser).await <= before {
        assert!(std::time::Instant::now() < deadline, "the waiting lines were not shown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The download is the log as a text file.
    let href = browser.attr("#log-download", "href").await.unwrap();
    let path = href.trim_start_matches(&serve.url(""));
    let response = serve.get_raw(path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_string();
    assert_eq!(disposition, "attachment; filename=\"garden.log\"");
    assert!(response.text().await.unwrap().contains("instance started"));

    // The orchestrator's own log, from the navigation.
    browser.click("nav a[href='/logs']").await;
    browser.wait_for_text("h1", "own log").await;
    browser.wait_for_text("#log", "HTTP API listening").await;
    browser.screenshot("own").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
