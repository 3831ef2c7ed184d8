//! The UI in the person's language: chosen from the browser's Accept-Language, switched (and
//! remembered) with the links at the foot of every page, dates in that language; the wizard
//! and the devices page walked in Russian, the devices page read in Chinese.

use reqwest::StatusCode;

use crate::support::browser::Browser;
use crate::support::serve::{KEY, Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_follows_the_browser_unless_the_person_chose_one() {
    let serve = Serve::start(Runtime::Embedded).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (accept, lang, title) in
        [("ru-RU,ru;q=0.9,en;q=0.5", "ru", "Вход"), ("zh-CN,zh;q=0.9", "zh", "登录"), ("de-DE", "en", "Log in")]
    {
        let page = client.get(serve.url("/login")).header("accept-language", accept).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\">")) && html.contains(title), "{accept}: {html}");
    }
    // The switcher's choice is a cookie, and it wins over the browser's languages.
    let switched = client
        .get(serve.url("/language/zh"))
        .header("referer", serve.url("/login?next=/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::SEE_OTHER);
    assert_eq!(switched.headers()["location"], "/login?next=%2Fdevices", "back where it was chosen");
    let cookie = switched.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page =
        client.get(serve.url("/login")).header("accept-language", "ru").header("cookie", cookie).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("<html lang=\"zh\">"));
    // The notice of the page it was chosen on was in the old language: it is not carried back.
    let from_notice = client
        .get(serve.url("/language/ru"))
        .header("referer", serve.url("/devices?ok=Confirmed&x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(from_notice.headers()["location"], "/devices?x=1");
    // A language we do not have changes nothing.
    let unknown = client.get(serve.url("/language/xx")).send().await.unwrap();
    assert!(unknown.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_and_the_devices_page_are_walked_in_russian() {
    let serve = Serve::start(Runtime::Embedded).await;
    let Some(browser) = Browser::start("russian", 1280, 1000).await else { return };
    browser.open(&serve.url("/login?next=/integrations")).await;
    browser.click("footer a[hreflang=ru]").await;
    browser.wait_for_text("h1", "Вход").await;
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("ru"));
    browser.type_into("#key", KEY).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("h1", "Интеграции").await;
    browser.screenshot("integrations").await;

    browser.click("button[aria-label='Добавить Demo devices']").await;
    browser.wait_for_text(".wizard", "Шаг 1 из").await;
    browser.type_into("#f-friendly_name", "Дача").await;
    browser.type_into("#f-count", "1").await;
    browser.screenshot("wizard").await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("h1", "Дача").await;
    let choices = browser.client.find_all(fantoccini::Locator::Css(".choice input")).await.unwrap();
    choices[0].click().await.unwrap();
    browser.click("form.stack button.primary").await;
    browser.wait_for_text("h1", "Review").await;
    browser.click("form.stack button.primary").await;
    browser.wait_for_text(".notice", "Экземпляр создан.").await;
    browser.screenshot("created").await;

    browser.click("nav a[href='/devices']").await;
    browser.wait_for_text("h1", "Устройства").await;
    browser.wait_for_text(".devices-list", "в сети").await;
    browser.click(".devices-list > li:first-child button[role=switch]").await;
    browser.wait_for_text("#command-result", "Подтверждено:").await;
    // Dates read as Russian ones ("5 дек. 2026 г., 22:53:12").
    browser.wait_for_text(".devices-list time", "г.").await;
    browser.screenshot("devices").await;

    // The same page in Chinese, from the switcher.
    browser.click("footer a[hreflang=zh]").await;
    browser.wait_for_text("h1", "设备").await;
    browser.wait_for_text(".devices-list", "在线").await;
    browser.screenshot("devices-zh").await;
    browser.assert_clean_console().await;
    browser.close().await;
}
