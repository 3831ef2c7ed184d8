//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): the
//! suite does what a person does on a page (type, click, read), saves a screenshot of what it
//! checked under `<target>/screenshots/`, and fails on any error in the browser's console.
//! Without Chromium the test fails under `CI=true` and is a loud skip otherwise.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{free_port, require};

/// A browser session and the chromedriver behind it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// The test's name, the prefix of its screenshots.
    name: String,
}

impl Browser {
    /// Start chromedriver and a headless Chromium window of `width`×`height`; `None` (after a
    /// loud message) when they are not installed and this is not CI.
    pub async fn start(name: &str, width: u32, height: u32) -> Option<Self> {
        if !require("chromedriver", "apt-get install chromium chromium-driver")
            || !require("chromium", "apt-get install chromium chromium-driver")
        {
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": super::which("chromium").unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}"), "--lang=en-GB"],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => {
                    return Some(Self { client, driver, name: name.to_string() });
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last:?}");
    }

    /// Open `url` and wait until the page has loaded.
    /// Log in to `serve` with its access key, as a person does, and land on `next`.
    pub async fn log_in(&self, serve: &super::serve::Serve, next: &str) {
        self.open(&serve.url(&format!("/login?next={next}"))).await;
        self.type_into("#key", super::serve::KEY).await;
        self.click("button[type=submit]").await;
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css`, waiting for it up to ten seconds.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css} on the page: {e}", self.name))
    }

    /// Type `text` into the field `css` (found again if the page replaced it meanwhile).
    pub async fn type_into(&self, css: &str, text: &str) {
        for _ in 0..5 {
            let field = self.find(css).await;
            if field.clear().await.is_ok() && field.send_keys(text).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{}: cannot type into {css}", self.name);
    }

    /// Click `css` (found again if the page replaced it meanwhile).
    pub async fn click(&self, css: &str) {
        let mut last = None;
        for _ in 0..5 {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{}: click {css}: {last:?}", self.name);
    }

    /// An attribute of `css`, found again if a live refresh replaced it meanwhile.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let mut last = None;
        for _ in 0..5 {
            match self.find(css).await.attr(name).await {
                Ok(value) => return value,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{}: attribute {name} of {css}: {last:?}", self.name);
    }

    /// The text of `css`, found again if a live refresh replaced it meanwhile.
    pub async fn text(&self, css: &str) -> String {
        let mut last = None;
        for _ in 0..5 {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{}: text of {css}: {last:?}", self.name);
    }

    /// Wait until the text of `css` contains `expected` (the page may update itself).
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if found.contains(expected) {
                return;
            }
            if std::time::Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!("{}: {css} never read {expected:?}; it reads {found:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The path of the page shown now, with its query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Make the window `width`×`height` (a phone's, to see a page as it lays out there).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap_or_else(|e| panic!("resize to {width}x{height}: {e}"));
    }

    /// Save a screenshot as `<target>/screenshots/<test>-<what>.png`; its path.
    pub async fn screenshot(&self, what: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{what}.png", self.name));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The errors and warnings the browser logged since the last look (a script error, a
    /// resource that did not load, a Content-Security-Policy violation).
    pub async fn console_errors(&self) -> Vec<Value> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap_or(Value::Null);
        let entries = entries.as_array().cloned().unwrap_or_default();
        entries.into_iter().filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING").collect()
    }

    /// Fail on any error or warning the browser logged since the last look.
    pub async fn assert_clean_console(&self) {
        let bad = self.console_errors().await;
        assert!(bad.is_empty(), "{}: the browser console has errors: {bad:#?}", self.name);
    }

    /// Close the window and stop chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Where screenshots go: `<target>/screenshots`.
pub fn screenshots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().map(|t| t.join("screenshots")).unwrap()
}

/// chromedriver's log of the browser console (the legacy endpoint chromedriver still serves).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}
