//! The web UI in headless Chromium: what a person does, from the first start to running
//! instances, with a screenshot of each checked state under `<target>/screenshots/` and no
//! error in the browser's console. Forms and links are used as a person would (type, click,
//! read); the API is used only to prepare what a test is not about.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::oauth::{ACCESS_TOKEN, FakeProvider};
use crate::support::serve::{KEY, Runtime, Serve};
use crate::support::yeelight::{BulbSim, Model};

mod comfort;
mod containers;
mod explorer;
mod languages;
mod logs;
mod plugins;
mod settings;

/// The one-time setup link `serve` printed.
async fn setup_link(serve: &Serve) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(link) = serve.log().split_whitespace().find(|w| w.contains("/?setup=")) {
            return link.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no setup link printed:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_choose_the_key_log_in_and_out() {
    let serve = Serve::start_unconfigured().await;
    let Some(browser) = Browser::start("first-start", 1280, 900).await else { return };
    let link = setup_link(&serve).await.replace("localhost", "127.0.0.1");
    browser.open(&link).await;
    assert_eq!(browser.text("h1").await, "Choose an access key");

    // Two different keys: the error sits beside the confirmation, nothing is set.
    browser.type_into("#key", "kitchen-lights-42").await;
    browser.type_into("#confirm", "kitchen-lights-43").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("#confirm-error", "The two keys differ.").await;
    assert_eq!(browser.find("#confirm").await.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    browser.screenshot("mismatch").await;

    browser.type_into("#key", "kitchen-lights-42").await;
    browser.type_into("#confirm", "kitchen-lights-42").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Log in").await;
    assert!(browser.text(".notice").await.contains("The access key is set"));

    // A wrong key is refused beside the field; the right one opens the dashboard.
    browser.type_into("#key", "not-the-key").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("#key-error", "invalid access key").await;
    browser.screenshot("wrong-key").await;
    browser.type_into("#key", "kitchen-lights-42").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Dashboard").await;
    browser.screenshot("dashboard-empty").await;
    assert!(browser.text("main").await.contains("No instances yet."));

    // Log out; a page asked for then sends the person to log in, and back to it after.
    browser.click("form.logout button").await;
    browser.wait_for_text("h1", "Log in").await;
    browser.open(&serve.url("/instances")).await;
    browser.wait_for_text("h1", "Log in").await;
    assert_eq!(browser.path().await, "/login?next=%2Finstances");
    browser.type_into("#key", "kitchen-lights-42").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Instances").await;
    assert_eq!(browser.path().await, "/instances");
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_watched_stopped_started_and_deleted_from_the_browser() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("instances", 1280, 900).await else { return };
    // A friendly name that is markup: it must show as text.
    let name = "<script>alert(1)</script> Kitchen";
    serve
        .create(json!({"connector_type": "demo", "instance_id": "kitchen", "friendly_name": name,
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    browser.log_in(&serve, "/").await;
    browser.wait_for_text("h1", "Dashboard").await;
    // The dashboard follows the bus: the instance's device comes online.
    browser.wait_for_text("[data-count=online]", "1 online").await;
    browser.wait_for_text("[data-count=running]", "1 running").await;
    browser.screenshot("dashboard").await;

    browser.click("nav a[href='/instances']").await;
    browser.wait_for_text("h1", "Instances").await;
    assert_eq!(browser.text("#instance-kitchen h2").await, name, "markup in a name is shown as text");
    browser.wait_for_text("#instance-kitchen .state", "online").await;
    browser.screenshot("running").await;

    browser.click("#instance-kitchen form[action$='/stop'] button").await;
    browser.wait_for_text("#instance-kitchen .state", "stopped by you").await;
    browser.wait_for_text("#instance-kitchen .state", "offline").await;
    let (_, view) = serve.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(view["status"]["desired"], "stopped", "{view}");
    browser.screenshot("stopped").await;

    browser.click("#instance-kitchen form[action$='/start'] button").await;
    browser.wait_for_text("#instance-kitchen .state", "online").await;

    browser.click("#instance-kitchen details.confirm summary").await;
    browser.wait_for_text("#instance-kitchen .popover", "Delete this instance?").await;
    browser.screenshot("confirm-delete").await;
    browser.click("#instance-kitchen .popover button").await;
    browser.wait_for_text(".notice", "The instance was deleted.").await;
    let (status, _) = serve.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    browser.screenshot("deleted").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_searches_and_shows_broken_connectors_on_a_phone() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("catalog", 375, 812).await else { return };
    browser.log_in(&serve, "/integrations").await;
    browser.wait_for_text("h1", "Integrations").await;
    let catalog = browser.text("#catalog").await;
    assert!(catalog.contains("Demo devices") && catalog.contains("Yeelight"), "{catalog}");
    // The broken connector is listed with what breaks it.
    let broken = browser.text(".integration.broken").await;
    assert!(broken.contains("This connector cannot be used:") && broken.contains("setup.json"), "{broken}");
    // What a connector's plugin may reach besides the devices is told before anything is added;
    // a manifest that declares a URL instead of a host is refused with the reason.
    let cloudy = browser
        .client
        .execute("return [...document.querySelectorAll('#catalog > li')].find(c => c.innerText.includes('Cloud service')).innerText", vec![])
        .await
        .unwrap();
    let cloudy = cloudy.as_str().unwrap_or_default();
    assert!(
        cloudy.contains("Besides your devices, it may reach: api.cloudy.example, *.cloudy.example:443"),
        "{cloudy}"
    );
    let wrong = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#catalog > li.broken')].map(c => c.innerText).join('|')",
            vec![],
        )
        .await
        .unwrap();
    let wrong = wrong.as_str().unwrap_or_default();
    assert!(
        wrong.contains("wronghost") && wrong.contains("network.http") && wrong.contains("https://api.example.com/v1"),
        "{wrong}"
    );
    browser
        .client
        .execute("[...document.querySelectorAll('#catalog > li')].find(c => c.innerText.includes('Cloud service')).scrollIntoView()", vec![])
        .await
        .unwrap();
    browser.screenshot("reaches").await;
    // A container connector says it needs Docker here, and offers no wizard that would end in an error.
    let needs_docker = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#catalog > li:has(.needs-docker)')).map(e => e.innerText).join('\\n---\\n')",
            vec![],
        )
        .await
        .unwrap();
    let needs_docker = needs_docker.as_str().unwrap_or_default();
    assert!(
        needs_docker.split("---").any(|hub| hub.contains("Sensor hub") && hub.contains("Needs Docker")),
        "{needs_docker}"
    );
    let buttons = browser
        .client
        .execute("return document.querySelectorAll('#catalog > li:has(.needs-docker) button').length", vec![])
        .await
        .unwrap();
    assert_eq!(buttons, json!(0));
    browser.screenshot("catalog").await;
    browser
        .client
        .execute("document.querySelector('#catalog > li:has(.needs-docker)').scrollIntoView()", vec![])
        .await
        .unwrap();
    browser.screenshot("needs-docker").await;

    // Typing filters as you type; the plain form does the same on the server.
    browser.type_into("#q", "yeel").await;
    browser.wait_for_text("#catalog", "Yeelight").await;
    let shown = browser
        .client
        .execute("return [...document.querySelectorAll('#catalog > li')].filter(c => !c.hidden).length", vec![])
        .await
        .unwrap();
    assert_eq!(shown, json!(1));
    browser.open(&serve.url("/integrations?q=nothing-like-this")).await;
    browser.wait_for_text("main", "No integration matches your search.").await;
    browser.screenshot("no-match").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_with_the_session_cookie_needs_the_anti_forgery_token() {
    let serve = Serve::start(Runtime::Embedded).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client.post(serve.url("/login")).form(&[("key", KEY), ("next", "/")]).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = client.get(serve.url("/instances")).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf-token\" content=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();

    // The API: a cookie-authenticated change without the token is refused; with it, it is not.
    let body = json!({"connector_type": "demo", "instance_id": "hall"});
    let forged = client.post(serve.url("/api/instances")).header("cookie", &cookie).json(&body).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (status, _) = serve.call(Method::GET, "/api/instances/demo/hall", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
    let genuine = client
        .post(serve.url("/api/instances"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(genuine.status(), StatusCode::CREATED);

    // A page's form: without the token (or with another session's) nothing happens.
    for token in ["", "not-the-token"] {
        let forged = client
            .post(serve.url("/instances/demo/hall/stop"))
            .header("cookie", &cookie)
            .form(&[("csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    let (_, view) = serve.call(Method::GET, "/api/instances/demo/hall", None).await;
    assert_eq!(view["status"]["desired"], "running", "{view}");
    let stopped = client
        .post(serve.url("/instances/demo/hall/stop"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), StatusCode::SEE_OTHER);
    let (_, view) = serve.call(Method::GET, "/api/instances/demo/hall", None).await;
    assert_eq!(view["status"]["desired"], "stopped", "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_added_through_the_wizard_with_a_field_error_corrected() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("wizard", 1280, 1000).await else { return };
    browser.log_in(&serve, "/integrations").await;
    browser.wait_for_text("h1", "Integrations").await;
    browser.click("button[aria-label='Add Demo devices']").await;
    browser.wait_for_text("h1", "Name your demo").await;
    assert!(browser.text(".wizard").await.contains("Step 1 of"), "the wizard shows where the person is");

    // No name and too many devices: both errors beside their fields, the typed count kept.
    browser.type_into("#f-count", "11").await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("#f-friendly_name-error", "required").await;
    browser.wait_for_text("#f-count-error", "at most 10").await;
    let kept = browser.find("#f-count").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("11"), "what the person typed stays");
    browser.screenshot("field-errors").await;

    browser.type_into("#f-friendly_name", "Test house").await;
    browser.type_into("#f-count", "1").await;
    browser.click("form.stack button.primary").await;
    // The tool step ran by itself; now the devices it proposed.
    browser.wait_for_text("h1", "Choose the devices of Test house").await;
    let choices = browser.client.find_all(fantoccini::Locator::Css(".choice input")).await.unwrap();
    assert!(choices.len() >= 2, "the demo proposes devices");
    choices[0].click().await.unwrap();
    choices[1].click().await.unwrap();
    browser.screenshot("choose").await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("h1", "Review").await;
    assert!(browser.text(".summary").await.contains("Test house"));
    browser.screenshot("review").await;

    // A reload keeps the wizard where it was.
    let url = browser.client.current_url().await.unwrap().to_string();
    browser.open(&url).await;
    browser.wait_for_text("h1", "Review").await;

    browser.click("form.stack button.primary").await;
    // The wizard ends on the new instance's page: its state, its devices, its settings.
    browser.wait_for_text(".notice", "The instance was created.").await;
    assert!(browser.path().await.starts_with("/instances/demo/test_house"), "{}", browser.path().await);
    browser.wait_for_text("#instance-test_house", "Test house").await;
    browser.wait_for_text("#instance-test_house .state", "online").await;
    let cards = browser.client.find_all(fantoccini::Locator::Css(".devices-list > li")).await.unwrap();
    assert_eq!(cards.len(), 2, "the two devices chosen");
    browser.screenshot("created").await;
    // A control on the instance page brings the person back to it.
    browser.click(".devices-list > li:first-child button[role=switch]").await;
    browser.wait_for_text("#command-result", "Confirmed:").await;
    assert!(browser.path().await.starts_with("/instances/demo/test_house"), "{}", browser.path().await);
    let (_, view) = serve.call(Method::GET, "/api/instances/demo/test_house", None).await;
    assert_eq!(view["devices"].as_array().map(Vec::len), Some(2), "{view}");
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_is_switched_and_dimmed_from_the_devices_page() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("devices", 1280, 900).await else { return };
    serve
        .create(json!({"connector_type": "demo", "instance_id": "hall", "friendly_name": "Hall",
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    browser.log_in(&serve, "/devices").await;
    browser.wait_for_text("h1", "Devices").await;
    browser.wait_for_text("#device-hall-lamp", "online").await;
    let switch = "#device-hall-lamp button[role=switch]";
    let before = browser.attr(switch, "aria-checked").await.unwrap();
    browser.screenshot("before").await;

    browser.click(switch).await;
    browser.wait_for_text("#command-result", "Confirmed:").await;
    let expected = if before == "true" { "false" } else { "true" };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while browser.attr(switch, "aria-checked").await.as_deref() != Some(expected) {
        assert!(std::time::Instant::now() < deadline, "the new state never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("switched").await;

    browser.type_into("#c-hall-lamp-brightness", "37").await;
    browser.click("#device-hall-lamp form:has(#c-hall-lamp-brightness) button").await;
    browser.wait_for_text("#command-result", "\"brightness\":37").await;
    let (_, devices) = serve.call(Method::GET, "/api/devices", None).await;
    let lamp = devices.as_array().unwrap().iter().find(|d| d["device_id"] == "lamp").unwrap().clone();
    assert_eq!(lamp["state"]["brightness"], 37, "{lamp}");

    // A value the device refuses comes back with its code and message.
    browser.type_into("#c-hall-lamp-brightness", "1000").await;
    browser.click("#device-hall-lamp form:has(#c-hall-lamp-brightness) button").await;
    browser.wait_for_text("#command-result", "INVALID_VALUE").await;
    browser.screenshot("refused").await;
    browser.click("#device-hall-lamp .device-foot button").await;
    browser.wait_for_text("#command-result", "Asked the device for its state.").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_sends_the_person_to_log_in_and_back() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("expired", 1024, 768).await else { return };
    // A session cookie the server no longer knows (ended, or from before a new access key).
    browser.open(&serve.url("/login")).await;
    browser.client.execute("document.cookie = 'iot2mqtt_session=v1.1.x.forged; path=/'", vec![]).await.unwrap();
    browser.open(&serve.url("/devices")).await;
    browser.wait_for_text("h1", "Log in").await;
    browser.wait_for_text(".notice", "Your session ended").await;
    browser.screenshot("ended").await;
    browser.type_into("#key", KEY).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Devices").await;
    assert_eq!(browser.path().await, "/devices");
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yeelight_bulbs_are_found_and_added_through_the_wizard() {
    let serve = Serve::start(Runtime::Embedded).await;
    let sim = BulbSim::start(Model::Color).await;
    let Some(browser) = Browser::start("yeelight-wizard", 1280, 1000).await else { return };
    browser.log_in(&serve, "/integrations").await;
    browser.wait_for_text("h1", "Integrations").await;

    // An address where no bulb answers: the check fails with the tool's reason and a retry.
    browser.click("button[aria-label='Add Yeelight']").await;
    browser.wait_for_text("h1", "Bulbs found on your network").await;
    assert!(browser.text(".wizard").await.starts_with("Yeelight"), "the wizard names the integration");
    browser.click("form:has(input[value=goto_flow]) button").await;
    browser.wait_for_text("h1", "Where is the bulb?").await;
    browser.type_into("#f-host", "127.0.0.1").await;
    browser.click("details.advanced summary").await;
    browser.type_into("#f-port", &crate::support::free_port().to_string()).await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text(".failure", "LAN control").await;
    assert!(browser.text(".failure").await.contains("Try again"), "a failure that may pass offers a retry");
    browser.screenshot("check-failed").await;
    browser.click("form:has(input[value=reset_flow]) button").await;
    browser.wait_for_text("h1", "Where is the bulb?").await;
    browser.click("form[action$='/cancel'] button").await;
    browser.wait_for_text("h1", "Integrations").await;

    // The search lists the simulator among what it found; it is picked and named.
    browser.click("button[aria-label='Add Yeelight']").await;
    browser.wait_for_text("h1", "Bulbs found on your network").await;
    browser.wait_for_text(".choices", "Sim (127.0.0.1)").await;
    browser.screenshot("found").await;
    browser.click(&format!(".choice input[value='{}']", sim.id())).await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("h1", "Name the color at 127.0.0.1").await;
    browser.type_into("#f-label", "Desk").await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("h1", "Name this group of lights").await;
    browser.type_into("#f-friendly_name", "Office").await;
    browser.click("form.stack button.primary").await;

    browser.wait_for_text(".notice", "The instance was created.").await;
    browser.wait_for_text("#instance-office .state", "online").await;
    browser.wait_for_text(".devices-list", "Desk").await;
    let (_, view) = serve.call(Method::GET, "/api/instances/yeelight/office", None).await;
    assert_eq!(view["devices"][0]["port"], u64::from(sim.port()), "{view}");
    browser.screenshot("created").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_edited_and_its_log_read_from_its_page() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("edit", 1280, 1000).await else { return };
    serve
        .create(json!({"connector_type": "demo", "instance_id": "porch", "friendly_name": "Porch",
            "connection": {"zone": "front"}, "secrets": {"api_token": "do-not-show-me"},
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    browser.log_in(&serve, "/instances/demo/porch").await;
    browser.wait_for_text("#instance-porch .state", "online").await;
    // The embedded runtime keeps the instance's log; its start is there.
    browser.open(&serve.url("/instances/demo/porch")).await;
    browser.wait_for_text(".log", "info").await;
    assert!(
        browser.text("section[aria-labelledby=config-title] .summary").await.contains("set (hidden)"),
        "a secret shows as set"
    );
    browser.screenshot("instance").await;

    browser.click("#instance-porch a[href$='/edit']").await;
    browser.wait_for_text("h1", "Edit: Porch").await;
    let secret = browser.find("#f-secret\\.api_token").await;
    assert_eq!(secret.prop("value").await.unwrap().as_deref(), Some(""), "a secret is never shown");
    assert!(!browser.text("main").await.contains("do-not-show-me"));
    assert!(browser.text("main").await.contains("Set. Leave empty to keep it."));

    // A value that is not a number is refused beside its field, the rest kept.
    browser.type_into("#f-friendly_name", "Front porch").await;
    browser.type_into("#f-conn\\.zone", "back").await;
    browser.type_into("#f-update_interval", "").await;
    browser.click("form.edit button.primary").await;
    browser.wait_for_text("#f-update_interval-error", "Enter a number.").await;
    assert_eq!(browser.find("#f-conn\\.zone").await.prop("value").await.unwrap().as_deref(), Some("back"));
    browser.screenshot("refused").await;

    browser.type_into("#f-update_interval", "30").await;
    // Home Assistant is told about the instance unless the person unticks it.
    assert!(browser.text("form.edit").await.contains("Shown in Home Assistant"));
    assert_eq!(browser.find("#f-ha_discovery").await.prop("checked").await.unwrap().as_deref(), Some("true"));
    browser.click("#f-ha_discovery").await;
    browser.click("form.edit button.primary").await;
    browser.wait_for_text(".notice", "restarted with its new settings").await;
    browser.wait_for_text("#instance-porch h1", "Front porch").await;
    let (_, view) = serve.call(Method::GET, "/api/instances/demo/porch", None).await;
    assert_eq!((view["update_interval"].as_u64(), view["connection"]["zone"].as_str()), (Some(30), Some("back")));
    assert_eq!(view["ha_discovery"], false, "{view}");
    let shown = "section[aria-labelledby=config-title] .summary > div:nth-child(3)";
    assert_eq!(browser.text(&format!("{shown} dt")).await, "Shown in Home Assistant (MQTT discovery)");
    assert_eq!(browser.text(&format!("{shown} dd")).await, "no");
    assert_eq!(view["secrets"], json!(["api_token"]), "the secret was kept: {view}");
    browser.wait_for_text("#instance-porch .state", "online").await;
    browser.screenshot("saved").await;

    // Stop from the instance's own page comes back to it.
    browser.click("#instance-porch form[action$='/stop'] button").await;
    browser.wait_for_text("#instance-porch .state", "stopped by you").await;
    assert_eq!(browser.path().await, "/instances/demo/porch");
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_step_sends_the_person_to_the_provider_and_back() {
    let serve = Serve::start(Runtime::Embedded).await;
    let provider = FakeProvider::start().await;
    provider.configure(&serve);
    let Some(browser) = Browser::start("oauth", 1280, 900).await else { return };
    browser.log_in(&serve, "/integrations").await;
    browser.wait_for_text("h1", "Integrations").await;
    browser.click("button[aria-label='Add Cloud service']").await;
    browser.wait_for_text(".wizard", "Connect with fakeprov").await;
    browser.screenshot("connect").await;

    // To the provider, which sends the browser back; the wizard goes on and ends on the instance.
    browser.click(".wizard a.button.primary").await;
    browser.wait_for_text(".notice", "The instance was created.").await;
    browser.wait_for_text("h1", "Cloudy devices.read").await;
    let summary = browser.text("section[aria-labelledby=config-title] .summary").await;
    assert!(summary.contains("fakeprov_access_token") && summary.contains("set (hidden)"), "{summary}");
    assert!(!browser.text("main").await.contains(ACCESS_TOKEN), "a token is never shown");
    browser.screenshot("connected").await;

    // A refusal at the provider: a page that says so, with the way back to the setup.
    browser.open(&serve.url("/integrations")).await;
    browser.click("button[aria-label='Add Cloud service']").await;
    browser.wait_for_text(".wizard", "Connect with fakeprov").await;
    let url = browser.find(".wizard a.button.primary").await.attr("href").await.unwrap().unwrap();
    let state = reqwest::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    browser.assert_clean_console().await;
    browser.open(&serve.url(&format!("/api/oauth/callback?state={state}&error=access_denied"))).await;
    browser.wait_for_text("main", "access_denied").await;
    // The refusal page is a 400, which the browser notes; nothing else may be there.
    for entry in browser.console_errors().await {
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(message.contains("/api/oauth/callback") && message.contains("400"), "{entry}");
    }
    browser.screenshot("denied").await;
    browser.click("main a.button.primary").await;
    browser.wait_for_text(".wizard", "Connect with fakeprov").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

/// Press `key` (a WebDriver key code) on whatever has the focus.
async fn press(browser: &Browser, key: &str) {
    // The focused element is found again if a live refresh replaced it (the focus stays).
    for _ in 0..5 {
        if browser.client.active_element().await.unwrap().send_keys(key).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot press a key on the focused element");
}

/// Whether the focused element matches `css`.
async fn focused(browser: &Browser, css: &str) -> bool {
    let script = "return document.activeElement.matches(arguments[0])";
    browser.client.execute(script, vec![json!(css)]).await.unwrap() == json!(true)
}

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_is_switched_with_the_keyboard_alone() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("keyboard", 1280, 900).await else { return };
    serve
        .create(json!({"connector_type": "demo", "instance_id": "hall", "friendly_name": "Hall",
            "devices": [{"device_id": "lamp", "kind": "light"}]}))
        .await;
    browser.open(&serve.url("/login?next=/devices")).await;
    browser.type_into("#key", KEY).await;
    press(&browser, ENTER).await;
    browser.wait_for_text("h1", "Devices").await;
    browser.wait_for_text("#device-hall-lamp", "online").await;

    // The first Tab shows the skip link; it takes the focus past the navigation.
    press(&browser, TAB).await;
    assert!(focused(&browser, "a.skip").await, "the first stop is the skip link");
    let left = browser.client.execute("return document.activeElement.getBoundingClientRect().left", vec![]).await;
    assert!(left.unwrap().as_f64().unwrap() >= 0.0, "the focused skip link is on screen");
    browser.screenshot("skip-link").await;
    press(&browser, ENTER).await;
    assert!(focused(&browser, "main").await, "the skip link moves the focus to the content");

    // Tab on to the lamp's switch; the focus is visible there; Enter switches it.
    let switch = "#device-hall-lamp button[role=switch]";
    for _ in 0..10 {
        if focused(&browser, switch).await {
            break;
        }
        press(&browser, TAB).await;
    }
    assert!(focused(&browser, switch).await, "the switch is reachable by Tab");
    let outline =
        browser.client.execute("return getComputedStyle(document.activeElement).outlineStyle", vec![]).await.unwrap();
    assert_eq!(outline, json!("solid"), "the focus is visible");
    browser.screenshot("switch-focused").await;
    press(&browser, ENTER).await;
    browser.wait_for_text("#command-result", "Confirmed:").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_account_is_made_used_and_deleted_from_the_settings_page() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("settings", 1280, 900).await else { return };
    browser.log_in(&serve, "/settings").await;
    browser.wait_for_text("h1", "Settings").await;
    browser.wait_for_text("#broker", "The embedded broker").await;
    browser.wait_for_text("#broker", "connected").await;
    // About: the version, where the data is, the runtime.
    let about = browser.text("#about").await;
    assert!(about.contains(env!("CARGO_PKG_VERSION")) && about.contains("embedded"), "{about}");
    assert!(about.contains(&serve.data().display().to_string()), "{about}");

    // A name the broker refuses: the error beside the field, what was typed kept.
    browser.type_into("#account-name", "no spaces allowed").await;
    browser.click("#accounts button.primary").await;
    browser.wait_for_text("#account-name-error", "may hold only letters").await;
    assert_eq!(browser.attr("#account-name", "value").await.as_deref(), Some("no spaces allowed"));
    browser.screenshot("account-name-refused").await;

    browser.type_into("#account-name", "home-assistant").await;
    browser.click("#account-access option[value=full]").await;
    browser.click("#accounts button.primary").await;
    browser.wait_for_text("#created", "shown this once").await;
    let password = browser.text("#created-password").await;
    assert!(password.len() >= 20, "a generated password: {password:?}");
    browser.wait_for_text("#account-home-assistant", "Full").await;
    browser.screenshot("account-created").await;

    // The account works: it may publish, and a subscriber with it hears that.
    let login = crate::support::observer::MqttAt {
        port: serve.mqtt().port,
        login: Some(("home-assistant".into(), password.clone())),
    };
    let mut watcher = crate::support::Observer::connect(login.clone(), "house/#").await;
    watcher.publish("house/hello", "from the new account").await;
    watcher.wait_for("its own message", Duration::from_secs(10), |m| m.text() == "from the new account").await;

    // Reloading the page does not show the password again.
    browser.open(&serve.url("/settings")).await;
    browser.wait_for_text("#account-home-assistant", "home-assistant").await;
    assert!(!browser.text("main").await.contains(&password), "the password is shown once only");

    browser.click("#account-home-assistant details.confirm summary").await;
    browser.wait_for_text("#account-home-assistant .popover", "Delete this account?").await;
    browser.screenshot("account-confirm-delete").await;
    browser.click("#account-home-assistant .popover button").await;
    browser.wait_for_text(".notice", "The account was deleted.").await;
    let (_, listed) = serve.call(Method::GET, "/api/mqtt/accounts", None).await;
    assert!(!listed.to_string().contains("home-assistant"), "{listed}");
    browser.screenshot("account-deleted").await;
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_key_is_changed_and_every_session_ended_from_the_settings_page() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("access-key", 1280, 1000).await else { return };
    browser.log_in(&serve, "/settings").await;
    browser.wait_for_text("h1", "Settings").await;
    let new_key = "a-new-key-for-the-house";

    // A wrong current key, then two new keys that differ: each refused beside its field.
    browser.type_into("#old-key", "not-the-key").await;
    browser.type_into("#new-key", new_key).await;
    browser.type_into("#confirm-key", new_key).await;
    browser.click("#access-key button.primary").await;
    browser.wait_for_text("#old-key-error", "not the current access key").await;
    assert_eq!(browser.attr("#old-key", "aria-invalid").await.as_deref(), Some("true"));
    browser.screenshot("wrong-old-key").await;
    browser.type_into("#old-key", KEY).await;
    browser.type_into("#new-key", new_key).await;
    browser.type_into("#confirm-key", "something-else").await;
    browser.click("#access-key button.primary").await;
    browser.wait_for_text("#confirm-key-error", "The two keys differ.").await;
    let (status, _) = serve.call(Method::GET, "/api/instances", None).await;
    assert_eq!(status, StatusCode::OK, "nothing changed yet");

    // Changed: this browser stays logged in, the other session (the suite's token) ends.
    browser.type_into("#old-key", KEY).await;
    browser.type_into("#new-key", new_key).await;
    browser.type_into("#confirm-key", new_key).await;
    browser.click("#access-key button.primary").await;
    browser.wait_for_text(".notice", "The access key was changed.").await;
    browser.screenshot("key-changed").await;
    let (status, _) = serve.call(Method::GET, "/api/instances", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the other session ended");
    let (status, _) = serve.call_as(None, Method::POST, "/api/auth/login", Some(json!({"key": KEY}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old key no longer opens");

    // Log out everywhere, after a confirmation: this browser too.
    browser.click("#sessions details.confirm summary").await;
    browser.wait_for_text("#sessions .popover", "End every session").await;
    browser.screenshot("confirm-logout-everywhere").await;
    browser.click("#sessions .popover button").await;
    browser.wait_for_text("h1", "Log in").await;
    browser.wait_for_text(".notice", "Every session was ended.").await;
    browser.open(&serve.url("/settings")).await;
    browser.wait_for_text("h1", "Log in").await;
    browser.type_into("#key", new_key).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Settings").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
