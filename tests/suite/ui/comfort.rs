//! Comfort: the colour scheme follows the system or the toggle (remembered), "/" jumps to a
//! list's search, and the UI is an installable app whose service worker keeps the shell and
//! nothing else.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{focused, press};
use crate::support::browser::Browser;
use crate::support::serve::{Runtime, Serve};

/// The page's background colour, as the browser computed it.
async fn background(browser: &Browser) -> Value {
    browser.client.execute("return getComputedStyle(document.body).backgroundColor;", vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheme_is_toggled_search_is_one_key_away_and_the_app_installs() {
    let serve = Serve::start(Runtime::Embedded).await;
    serve
        .create(json!({"connector_type": "demo", "instance_id": "porch", "devices": [{"device_id": "lamp", "kind": "light"}, {"device_id": "fan", "kind": "switch"}]}))
        .await;
    let Some(browser) = Browser::start("comfort", 1280, 900).await else { return };
    browser.log_in(&serve, "/devices").await;
    browser.wait_for_text("h1", "Devices").await;

    // "/" puts the cursor in the list's filter; typing filters the cards.
    browser.find("#device-porch-fan").await;
    browser.click("h1").await;
    press(&browser, "/").await;
    assert!(focused(&browser, "#device-filter").await, "the filter has the focus");
    press(&browser, "fan").await;
    let shown = browser
        .client
        .execute("return [...document.querySelectorAll('#devices-list > li')].filter((li) => !li.hidden).map((li) => li.id);", vec![])
        .await
        .unwrap();
    assert_eq!(shown, json!(["device-porch-fan"]));
    browser.screenshot("filtered").await;

    // The scheme: as the system (light here), then dark, kept across a reload, then light.
    let light = background(&browser).await;
    browser.click("#theme-toggle").await;
    assert_eq!(browser.attr("html", "data-theme").await.as_deref(), Some("dark"));
    let dark = background(&browser).await;
    assert_eq!(dark, json!("rgb(17, 22, 28)"), "the dark background");
    assert_ne!(light, dark);
    browser.open(&serve.url("/devices")).await;
    browser.wait_for_text("h1", "Devices").await;
    assert_eq!(browser.attr("html", "data-theme").await.as_deref(), Some("dark"), "remembered");
    browser.screenshot("dark").await;
    browser.click("#theme-toggle").await;
    assert_eq!(browser.attr("html", "data-theme").await.as_deref(), Some("light"));
    browser.click("#theme-toggle").await;
    assert_eq!(browser.attr("html", "data-theme").await, None, "as the system again");

    // Installable: a manifest, and a service worker that keeps the shell, never an API answer.
    let manifest: Value = reqwest::get(serve.url("/manifest.webmanifest")).await.unwrap().json().await.unwrap();
    assert_eq!((manifest["name"].as_str(), manifest["start_url"].as_str()), (Some("iot2mqtt"), Some("/")));
    let icon = manifest["icons"][0]["src"].as_str().unwrap();
    assert_eq!(reqwest::get(serve.url(icon)).await.unwrap().status(), StatusCode::OK);
    let script = r#"
        const done = arguments[arguments.length - 1];
        navigator.serviceWorker.ready
            .then(() => caches.keys())
            .then((keys) => Promise.all(keys.map((key) => caches.open(key).then((cache) => cache.keys()))))
            .then((lists) => done(lists.flat().map((request) => new URL(request.url).pathname)))
            .catch((error) => done("error: " + error));
    "#;
    let kept = browser.client.execute_async(script, vec![]).await.unwrap();
    let kept: Vec<String> = serde_json::from_value(kept.clone()).unwrap_or_else(|_| panic!("{kept}"));
    assert!(kept.iter().any(|p| p.starts_with("/assets/app.") && p.ends_with(".css")), "{kept:?}");
    assert!(kept.iter().all(|p| p.starts_with("/assets/")), "only the shell: {kept:?}");
    browser.assert_clean_console().await;
    browser.close().await;
}
