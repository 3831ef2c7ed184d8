//! The API's routes through `Router::oneshot`, on the fake runtime: no HTTP socket, no broker,
//! no container. What needs a real runtime, broker or plugin is in the integration suite
//! (`tests/suite/serve`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use iot2mqtt_contract::{InstanceId, MqttSettings};
use iot2mqtt_runtime::{EngineConfig, Runtime};
use iot2mqtt_server::api::{Access, AppState, Shared};
use iot2mqtt_server::auth::Auth;
use iot2mqtt_server::catalog::Catalog;
use iot2mqtt_server::flows::Flows;
use iot2mqtt_server::instances::Instances;
use iot2mqtt_server::mqtt::MqttService;
use iot2mqtt_server::oauth::OAuth;
use iot2mqtt_server::runtime::fake::{Call, FakeRuntime};
use iot2mqtt_server::secrets::SecretsManager;
use iot2mqtt_server::store::DataDir;
use iot2mqtt_server::store::settings::SettingsFile;
use iot2mqtt_server::tools::ToolRunner;
use iot2mqtt_server::{app, routes};
use serde_json::{Value, json};

const KEY: &str = "a long enough access key";

/// The app over a fresh data directory, with the demo connector (its plugin a placeholder: the
/// fake runtime never loads it).
struct TestApp {
    router: Router,
    runtime: Arc<FakeRuntime>,
    token: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let connectors = dir.path().join("connectors");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../connectors/demo");
        std::fs::create_dir_all(connectors.join("demo")).unwrap();
        for file in ["manifest.json", "setup.json"] {
            std::fs::copy(repo.join(file), connectors.join("demo").join(file)).unwrap();
        }
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::write(plugins.join("demo.wasm"), b"placeholder").unwrap();

        let data = DataDir::open(&dir.path().join("data")).unwrap();
        let (auth, _) = Auth::open(&data.secrets(), Some(KEY)).unwrap();
        // Nothing listens on port 1: the MQTT service keeps trying, and nothing here needs it.
        let settings = MqttSettings { host: "127.0.0.1".into(), port: 1, ..MqttSettings::default() };
        let mqtt = MqttService::start(settings.clone());
        let engine = Runtime::new(EngineConfig { cache_dir: None, shared_cache_dir: None }).unwrap();
        let runtime = Arc::new(FakeRuntime::default());
        let secrets = SecretsManager::open(&data.secrets()).unwrap();
        let dotenv = data.dotenv();
        let catalog = Catalog::new(connectors, Some(plugins));
        let instances =
            Instances::new(runtime.clone(), data, secrets, catalog, mqtt.clone(), settings, engine.clone()).unwrap();
        let tools = Arc::new(ToolRunner::new(engine));
        let flows = Flows::new(Arc::clone(&tools), OAuth::new(dir.path().join("oauth")));
        let state = AppState::new(Shared {
            auth,
            instances,
            mqtt,
            tools,
            flows,
            settings: SettingsFile::new(dotenv),
            docker: None,
            embedded_broker: None,
            broker_accounts: None,
            hosts: iot2mqtt_server::guard::HostNames::default(),
            logs: iot2mqtt_runtime::logging::InstanceLogs::default(),
        });
        Self { router: app(state), runtime, token: None, _dir: dir }
    }

    async fn logged_in() -> Self {
        let mut app = Self::new().await;
        let (status, body) = app.call(Method::POST, "/api/auth/login", Some(json!({"key": KEY}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.token = Some(body["token"].as_str().unwrap().to_string());
        app
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.request(method, path, body, None).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, body)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        request_id: Option<&str>,
    ) -> axum::response::Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        tower::ServiceExt::oneshot(self.router.clone(), request.body(body).unwrap()).await.unwrap()
    }
}

fn id(text: &str) -> InstanceId {
    InstanceId::new(text).unwrap()
}

#[tokio::test]
async fn protected_routes_refuse_a_request_without_a_session() {
    let app = TestApp::new().await;
    for route in routes().into_iter().filter(|r| r.access == Access::Session) {
        let path = route.path.replace("{connector}", "demo").replace("{id}", "x").replace("{name}", "demo");
        let path = path.replace("{instance}", "x").replace("{device}", "x");
        let (status, body) = app.call(route.method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path}: {body}", route.method);
        assert!(body["error"].as_str().unwrap().contains("log in"), "{} {path}: {body}", route.method);
    }
}

#[tokio::test]
async fn an_instance_is_started_stopped_and_removed_through_the_runtime() {
    let app = TestApp::logged_in().await;
    let body = json!({
        "connector_type": "demo",
        "friendly_name": "Kitchen",
        "devices": [{"device_id": "lamp", "kind": "light"}],
    });
    let (status, created) = app.call(Method::POST, "/api/instances", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["instance_id"], "kitchen");
    assert_eq!(created["status"]["desired"], "running");
    assert_eq!(created["status"]["running"], true);
    let sha = created["plugin"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64, "the plugin is pinned by content: {created}");
    assert_eq!(app.runtime.calls(), vec![Call::Start(id("kitchen"), sha.clone())]);

    let (status, stopped) = app.call(Method::POST, "/api/instances/demo/kitchen/stop", None).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["status"]["desired"], "stopped");
    assert_eq!(stopped["status"]["running"], false);

    let (status, _) = app.call(Method::POST, "/api/instances/demo/kitchen/start", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::DELETE, "/api/instances/demo/kitchen", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.runtime.calls(),
        vec![
            Call::Start(id("kitchen"), sha.clone()),
            Call::Stop(id("kitchen")),
            Call::Start(id("kitchen"), sha),
            Call::Remove(id("kitchen")),
        ]
    );
    let (status, _) = app.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_instance_is_refused_naming_its_field_and_nothing_is_started() {
    let app = TestApp::logged_in().await;
    let cases = [
        (json!({"friendly_name": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "connector_type"),
        (json!({"connector_type": "nope", "friendly_name": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "connector_type"),
        (
            json!({"connector_type": "demo", "friendly_name": "x", "devices": [{"device_id": "a/b"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "devices[0].device_id",
        ),
        (
            json!({"connector_type": "demo", "friendly_name": "x", "devices": [{"device_id": "a"}, {"device_id": "a"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "devices",
        ),
        (
            json!({"connector_type": "demo", "friendly_name": "x", "groups": [{"group_id": "g"}, {"group_id": "g"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "groups",
        ),
        (
            json!({"connector_type": "demo", "friendly_name": "x", "enabled": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "enabled",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = app.call(Method::POST, "/api/instances", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    assert!(app.runtime.calls().is_empty(), "{:?}", app.runtime.calls());
    let (status, answer) =
        app.call(Method::POST, "/api/instances", Some(json!({"connector_type": "demo", "friendly_name": "x"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) =
        app.call(Method::POST, "/api/instances", Some(json!({"connector_type": "demo", "friendly_name": "x"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["field"], "instance_id");
}

#[tokio::test]
async fn rollback_without_a_previous_version_is_refused() {
    let app = TestApp::logged_in().await;
    let body = json!({"connector_type": "demo", "friendly_name": "Hall"});
    assert_eq!(app.call(Method::POST, "/api/instances", Some(body)).await.0, StatusCode::CREATED);
    let (status, answer) = app.call(Method::POST, "/api/instances/demo/hall/plugin/rollback", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no previous plugin version"), "{answer}");
}

#[tokio::test]
async fn every_response_names_its_request() {
    let app = TestApp::new().await;
    let first = app.request(Method::GET, "/api/health", None, None).await;
    let second = app.request(Method::GET, "/api/nothing-here", None, None).await;
    let id = |r: &axum::response::Response| r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id(&first), id(&second), "each request gets its own id");
    let echoed = app.request(Method::GET, "/api/health", None, Some("from-the-client-7")).await;
    assert_eq!(id(&echoed), "from-the-client-7", "a client's id is kept");
}

impl TestApp {
    /// A page, as text.
    async fn page(&self, path: &str) -> (StatusCode, String) {
        let response = self.request(Method::GET, path, None, None).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Post a form from `origin` (none: no `Origin` header); the status, `Location` and text.
    async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, String, String) {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "iot2mqtt.local:8080")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = tower::ServiceExt::oneshot(self.router.clone(), request.body(Body::from(body)).unwrap()).await;
        let response = response.unwrap();
        let status = response.status();
        let location = response.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, location.unwrap_or_default(), String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// The anti-forgery token a page carries.
    async fn csrf(&self) -> String {
        let (_, page) = self.page("/instances").await;
        let marker = "name=\"csrf-token\" content=\"";
        let start = page.find(marker).expect("the page carries the token") + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_string()
    }
}

#[tokio::test]
async fn the_login_form_is_refused_from_another_site() {
    let app = TestApp::new().await;
    let form = [("key", KEY), ("next", "/devices")];
    let (status, _, page) = app.post_form("/login", &form, Some("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("did not come from this site"), "{page}");
    let (status, _, page) = app.post_form("/login", &form, Some("null")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    let (status, location, _) = app.post_form("/login", &form, Some("http://iot2mqtt.local:8080")).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/devices"));
    let (status, _, page) =
        app.post_form("/setup", &[("token", "x"), ("key", KEY), ("confirm", KEY)], Some("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
}

#[tokio::test]
async fn an_instance_is_edited_through_its_settings_form() {
    let app = TestApp::logged_in().await;
    let body = json!({
        "connector_type": "demo",
        "friendly_name": "Kitchen",
        "connection": {"host": "10.0.0.2", "port": 55443},
        "secrets": {"token": "s3cret-value"},
        "devices": [{"device_id": "lamp", "kind": "light"}],
    });
    let (status, created) = app.call(Method::POST, "/api/instances", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let (status, form) = app.page("/instances/demo/kitchen/edit").await;
    assert_eq!(status, StatusCode::OK);
    for expected in ["name=\"conn.port\"", "name=\"secret.token\"", "name=\"clear.token\"", "name=\"dev.0.enabled\""] {
        assert!(form.contains(expected), "{expected} in {form}");
    }
    assert!(!form.contains("s3cret-value"), "a secret is never sent to the browser");

    let csrf = app.csrf().await;
    let mut sent = vec![
        ("csrf", csrf.as_str()),
        ("friendly_name", "Kitchen lights"),
        ("update_interval", "every now and then"),
        ("enabled", "true"),
        ("conn.host", "10.0.0.3"),
        ("conn.port", "55444"),
        ("dev.0.enabled", "true"),
        ("dev.0.kind", "light"),
    ];
    let (status, _, page) = app.post_form("/instances/demo/kitchen/edit", &sent, None).await;
    assert_eq!(status, StatusCode::OK, "a refused form comes back as a page");
    assert!(page.contains("Enter a number."), "{page}");
    assert!(page.contains("value=\"10.0.0.3\""), "the rest of the input is kept: {page}");
    let (_, unchanged) = app.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(unchanged["friendly_name"], "Kitchen", "nothing was saved");

    sent[2] = ("update_interval", "30");
    let (status, location, _) = app.post_form("/instances/demo/kitchen/edit", &sent, None).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/instances/demo/kitchen?saved=1"));
    let (_, saved) = app.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(saved["friendly_name"], "Kitchen lights");
    assert_eq!(saved["update_interval"], 30);
    assert_eq!(saved["connection"]["port"], 55444);
    assert_eq!(saved["connection"]["token"], "secret://token", "an empty secret input keeps the secret");
    assert_eq!(saved["secrets"], json!(["token"]));
    let (_, page) = app.page("/instances/demo/kitchen?saved=1").await;
    assert!(page.contains("restarted with its new settings"), "{page}");

    sent.push(("clear.token", "true"));
    let (status, _, _) = app.post_form("/instances/demo/kitchen/edit", &sent, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, cleared) = app.call(Method::GET, "/api/instances/demo/kitchen", None).await;
    assert_eq!(cleared["secrets"], json!([]), "{cleared}");

    let forged = [("csrf", "nope"), ("update_interval", "5")];
    let (status, _, _) = app.post_form("/instances/demo/kitchen/edit", &forged, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_instance_log_is_asked_of_its_runtime() {
    let app = TestApp::logged_in().await;
    let body = json!({"connector_type": "demo", "friendly_name": "Kitchen", "devices": [{"device_id": "lamp"}]});
    let (status, _) = app.call(Method::POST, "/api/instances", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, lines) = app.call(Method::GET, "/api/instances/demo/kitchen/logs?lines=10", None).await;
    assert_eq!((status, lines), (StatusCode::OK, json!([])));
    let (status, _) = app.call(Method::GET, "/api/instances/demo/nothing/logs", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
