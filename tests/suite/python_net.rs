//! A Python plugin reaches its devices over TCP through the SDK's `iot2mqtt.net`, and only
//! them: the fixture `tests/fixtures/python/line-python` talks a line protocol to a device
//! served here, and an address outside the instance's grant is refused before anything
//! reaches it. The same for HTTP through `iot2mqtt.http`, a redirect out of the grant included,
//! and for OAuth tokens a plugin refreshes; the HTTP and token tests run the Rust SDK's client
//! too (the probe fixture), since both SDKs stand on the same host functions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use iot2mqtt_engine::HttpHost;
use iot2mqtt_runtime::InstanceOptions;

use crate::support::{Observer, TestBroker, TestInstance, demo_config, unique_id};

const WAIT: Duration = Duration::from_secs(15);

/// A device speaking the fixture's line protocol: `get`, `set <json>`. Returns its port and
/// the lines it received.
async fn line_device() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(Mutex::new(json!({"power": false, "level": 3})));
    let log = Arc::clone(&heard);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, state) = (Arc::clone(&log), Arc::clone(&state));
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(line.clone());
                    if let Some(values) = line.strip_prefix("set ") {
                        let values: Value = serde_json::from_str(values).unwrap_or_default();
                        let mut state = state.lock().unwrap();
                        for (key, value) in values.as_object().into_iter().flatten() {
                            state[key] = value.clone();
                        }
                    }
                    let answer = format!("{}\r\n", state.lock().unwrap());
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_talks_tcp_to_its_device_and_nowhere_else() {
    let Some(broker) = TestBroker::start().await else { return };
    let (port, heard) = line_device().await;
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_port = forbidden.local_addr().unwrap().port();

    let id = unique_id("pynet");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([{"device_id": "lamp", "host": "127.0.0.1", "port": port}]);
    let instance = TestInstance::start(&broker, "line-python", demo_config(&id, devices)).await;
    instance.ready().await;
    let t = instance.topics.clone();

    // Read over TCP: the device's own state, with the plugin's `online`.
    let state = obs.next_json(&t.state("lamp"), WAIT, |s| s["state"]["level"] == 3).await;
    assert_eq!(state["state"], json!({"power": false, "level": 3, "online": true}), "{state}");

    // A command goes to the device as a line and its answer is the result.
    obs.publish(&t.command("lamp"), json!({"id": "on", "values": {"power": true}}).to_string()).await;
    let done = obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == "on").await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["power"], true, "{done}");
    assert!(heard.lock().unwrap().iter().any(|l| l == r#"set {"power": true}"#), "{:?}", heard.lock().unwrap());

    // An address the instance was not granted: refused by the host, named in the error.
    let reach = json!({"id": "out", "values": {"reach": format!("127.0.0.1:{forbidden_port}")}});
    obs.publish(&t.command("lamp"), reach.to_string()).await;
    let refused = obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == "out").await;
    assert_eq!(refused["error"]["code"], "DEVICE_UNREACHABLE", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("127.0.0.1:{forbidden_port} is not granted")), "{refused}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(forbidden.accept().is_err(), "nothing reached the address outside the grant");
}

/// A web device: `GET /info` answers JSON, `POST /echo` answers with the JSON it was sent and
/// the `x-test` header it got, `GET /away` redirects to `away`. Returns its port.
async fn web_device(away: u16) -> u16 {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/info", get(|| async { axum::Json(json!({"model": "web-lamp", "gen": 2})) }))
        .route(
            "/echo",
            post(|headers: http::HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                let header = headers.get("x-test").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                axum::Json(json!({"got": body, "x-test": header}))
            }),
        )
        // Over the host's 4 MiB limit for a response.
        .route("/big", get(|| async { vec![b'x'; 5 << 20] }))
        // Later than the plugin's 3 s.
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "late"
            }),
        )
        .route(
            "/away",
            get(move || async move { axum::response::Redirect::temporary(&format!("http://127.0.0.1:{away}/info")) }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// Through the Python SDK's `iot2mqtt.http` and the Rust SDK's `http::Client` (the probe
/// fixture), the same requests meet the same grant and limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_makes_http_requests_only_where_granted() {
    for plugin in ["line-python", "forbidden-connect"] {
        http_requests_only_where_granted(plugin).await;
    }
}

async fn http_requests_only_where_granted(plugin: &str) {
    let Some(broker) = TestBroker::start().await else { return };
    let (port, _) = line_device().await;
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let web = web_device(forbidden_port).await;

    let id = unique_id("pyhttp");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([{"device_id": "lamp", "host": "127.0.0.1", "port": port}]);
    let mut config = demo_config(&id, devices);
    // The instance's connection names the web device: its address is granted too.
    config["connection"] = json!({"host": "127.0.0.1", "port": web});
    let instance = TestInstance::start(&broker, plugin, config).await;
    instance.ready().await;
    let t = instance.topics.clone();
    let mut command = async |cmd: &str, values: Value| {
        obs.publish(&t.command("lamp"), json!({"id": cmd, "values": values}).to_string()).await;
        obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == cmd).await
    };

    let got = command("get", json!({"fetch": format!("http://127.0.0.1:{web}/info")})).await;
    assert_eq!(got["result"]["fetched"], json!({"model": "web-lamp", "gen": 2}), "{got}");
    let posted = command("post", json!({"post": format!("http://127.0.0.1:{web}/echo"), "json": {"a": [1, 2]}})).await;
    assert_eq!(posted["result"]["fetched"], json!({"got": {"a": [1, 2]}, "x-test": "yes"}), "{posted}");

    for (cmd, url) in [
        ("out", format!("http://127.0.0.1:{forbidden_port}/info")),
        ("redirected", format!("http://127.0.0.1:{web}/away")),
    ] {
        let refused = command(cmd, json!({"fetch": url})).await;
        assert_eq!(refused["error"]["code"], "DEVICE_UNREACHABLE", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("refused by the host"), "{refused}");
    }
    // Several at once, answered in order: a redirect out of the grant is refused in its place.
    let info = format!("http://127.0.0.1:{web}/info");
    let all = command("all", json!({"fetch_all": [info, info, format!("http://127.0.0.1:{web}/away")]})).await;
    let answers = all["result"]["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(answers.len(), 3, "{all}");
    assert_eq!((&answers[0], &answers[1]), (&json!({"model": "web-lamp", "gen": 2}), &answers[0]), "{all}");
    assert!(answers[2]["error"].as_str().unwrap_or_default().contains("refused by the host"), "{all}");
    // More requests open at once than the host allows a plugin (4): one is refused, saying why.
    let slow = vec![format!("http://127.0.0.1:{web}/slow"); 5];
    let crowd = command("crowd", json!({"fetch_all": slow, "timeout": 2})).await;
    let errors: Vec<String> = crowd["result"]["answers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(errors.len(), 5, "{crowd}");
    assert_eq!(errors.iter().filter(|e| e.contains("too many requests open at once")).count(), 1, "{crowd}");
    assert_eq!(errors.iter().filter(|e| e.contains("no answer")).count(), 4, "{crowd}");
    // The host's limits: a response too large, an answer too late.
    let big = command("big", json!({"fetch": format!("http://127.0.0.1:{web}/big")})).await;
    assert_eq!(big["error"]["code"], "COMMAND_FAILED", "{big}");
    assert!(big["error"]["message"].as_str().unwrap_or_default().contains("larger than the host accepts"), "{big}");
    let slow = command("slow", json!({"fetch": format!("http://127.0.0.1:{web}/slow")})).await;
    assert_eq!(slow["error"]["code"], "DEVICE_UNREACHABLE", "{slow}");
    // The host's first-byte timeout or the SDK's own wait, whichever ends first, says so.
    assert!(slow["error"]["message"].as_str().unwrap_or_default().contains("no answer"), "{slow}");
    // Had the host connected, the kernel would have queued the connection before the refusal
    // was answered: no wait is needed to see that nothing came.
    assert!(forbidden.accept().is_err(), "nothing reached the address outside the grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_reaches_the_hosts_its_connector_declares() {
    let Some(broker) = TestBroker::start().await else { return };
    let (port, _) = line_device().await;
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let web = web_device(elsewhere_port).await;

    // No device of the instance is the web service: only the manifest's declaration lets the
    // plugin reach it, by name and on that port alone.
    let id = unique_id("pydecl");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([{"device_id": "lamp", "host": "127.0.0.1", "port": port}]);
    let options = InstanceOptions {
        http_hosts: vec![HttpHost::parse(&format!("localhost:{web}")).unwrap()],
        ..InstanceOptions::default()
    };
    let instance = TestInstance::start_with(&broker, "line-python", demo_config(&id, devices), options).await;
    instance.ready().await;
    let t = instance.topics.clone();
    let mut command = async |cmd: &str, values: Value| {
        obs.publish(&t.command("lamp"), json!({"id": cmd, "values": values}).to_string()).await;
        obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == cmd).await
    };

    let got = command("declared", json!({"fetch": format!("http://localhost:{web}/info")})).await;
    assert_eq!(got["result"]["fetched"], json!({"model": "web-lamp", "gen": 2}), "{got}");
    // The same service by its address, and the same name on another port, were not declared.
    for (cmd, url) in [
        ("by-address", format!("http://127.0.0.1:{web}/info")),
        ("other-port", format!("http://localhost:{elsewhere_port}/info")),
        ("redirected", format!("http://localhost:{web}/away")),
    ] {
        let refused = command(cmd, json!({"fetch": url})).await;
        assert_eq!(refused["error"]["code"], "DEVICE_UNREACHABLE", "{cmd}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("refused by the host"), "{cmd}: {refused}");
    }
    assert!(elsewhere.accept().is_err(), "nothing reached the port that was not declared");
}

/// `openssl s_server -WWW` on a free port of 127.0.0.1 with `pki`'s server certificate (signed
/// by the test's own CA, which the system does not trust), serving `info` from its folder.
/// Returns the server, its port and the certificate's SHA-256 as `openssl` prints it.
fn https_device(pki: &crate::support::tls::Pki, folder: &std::path::Path) -> (KillOnDrop, u16, String) {
    std::fs::write(folder.join("info"), r#"{"model": "tls-lamp"}"#).unwrap();
    let port = crate::support::free_port();
    let child = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(&pki.server_cert)
        .arg("-key")
        .arg(&pki.server_key)
        .current_dir(folder)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let print = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pki.server_cert)
        .output()
        .unwrap();
    let text = String::from_utf8(print.stdout).unwrap();
    let fingerprint = text.trim().rsplit('=').next().unwrap().to_string();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (KillOnDrop(child), port, fingerprint)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_device_trusts_its_pinned_certificate_and_nothing_else() {
    let Some(broker) = TestBroker::start().await else { return };
    let Some(pki) = crate::support::tls::Pki::make() else { return };
    let folder = tempfile::tempdir().unwrap();
    let (_server, tls_port, fingerprint) = https_device(&pki, folder.path());
    let (port, _) = line_device().await;
    let url = format!("https://127.0.0.1:{tls_port}/info");

    // Unpinned, then pinned to another certificate, then pinned to the device's own.
    let wrong = "00".repeat(32);
    for (pin, expected) in [
        (None, Err("certificate is not trusted")),
        (Some(wrong.as_str()), Err("certificate is not trusted")),
        (Some(fingerprint.as_str()), Ok(json!({"model": "tls-lamp"}))),
    ] {
        let id = unique_id("pytls");
        let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
        let devices = json!([{"device_id": "lamp", "host": "127.0.0.1", "port": port}]);
        let mut config = demo_config(&id, devices);
        config["connection"] = json!({"host": "127.0.0.1", "port": tls_port});
        if let Some(pin) = pin {
            config["connection"]["tls_sha256"] = json!(pin);
        }
        let instance = TestInstance::start(&broker, "line-python", config).await;
        instance.ready().await;
        let t = instance.topics.clone();
        obs.publish(&t.command("lamp"), json!({"id": "tls", "values": {"fetch": url}}).to_string()).await;
        let answer = obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == "tls").await;
        match expected {
            Ok(body) => assert_eq!(answer["result"]["fetched"], body, "pin {pin:?}: {answer}"),
            Err(words) => {
                assert_eq!(answer["error"]["code"], "DEVICE_UNREACHABLE", "pin {pin:?}: {answer}");
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(words), "pin {pin:?}: {answer}");
            }
        }
    }
}

/// An OAuth token endpoint: `refresh_token=r1` (and `grant_type=refresh_token`,
/// `client_id=client-1`) is traded for `a2`/`r2`; anything else is `invalid_grant`.
async fn token_endpoint() -> u16 {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/token",
        post(|axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
            let field = |k: &str| form.get(k).map(String::as_str);
            if (field("grant_type"), field("refresh_token"), field("client_id"))
                == (Some("refresh_token"), Some("r1"), Some("client-1"))
            {
                (
                    http::StatusCode::OK,
                    axum::Json(json!({"access_token": "a2", "refresh_token": "r2", "expires_in": 3600})),
                )
            } else {
                (http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"})))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// The Python SDK's refresh helper, and the Rust SDK's (`OAuthRefresh`, in the probe fixture),
/// over the same host function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_is_kept_for_every_later_start() {
    for plugin in ["line-python", "forbidden-connect"] {
        refreshed_token_is_kept(plugin).await;
    }
}

async fn refreshed_token_is_kept(plugin: &str) {
    let Some(broker) = TestBroker::start().await else { return };
    let (port, _) = line_device().await;
    let tokens = token_endpoint().await;
    let id = unique_id("pyoauth");
    let mut obs = Observer::connect(broker.port(), &format!("IoT2mqtt/v1/instances/{id}/#")).await;
    let devices = json!([{"device_id": "lamp", "host": "127.0.0.1", "port": port}]);
    let mut config = demo_config(&id, devices);
    config["connection"] = json!({"host": "127.0.0.1", "port": tokens,
                                  "fakeprov_access_token": "a1", "fakeprov_refresh_token": "r1"});
    let instance = TestInstance::start(&broker, plugin, config).await;
    instance.ready().await;
    let t = instance.topics.clone();
    let mut command = async |cmd: &str, values: Value| {
        obs.publish(&t.command("lamp"), json!({"id": cmd, "values": values}).to_string()).await;
        obs.next_json(&t.command_response("lamp"), WAIT, |r| r["cmd_id"] == cmd).await
    };

    let refreshed = command("refresh", json!({"refresh": format!("http://127.0.0.1:{tokens}/token")})).await;
    assert_eq!(refreshed["result"]["access"], "a2", "{plugin}: {refreshed}");
    let refused = command("unknown", json!({"store": ["not_a_secret", "x"]})).await;
    assert_eq!(refused["error"]["code"], "COMMAND_FAILED", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or_default().contains("not one of this instance's settings"));

    // The running plugin keeps what init gave it; every later init (a swap here) gets the new tokens.
    let before = command("before", json!({"secret": "fakeprov_access_token"})).await;
    assert_eq!(before["result"]["value"], "a1", "{before}");
    instance.handle.swap_wasm(crate::support::plugin(plugin)).await.expect("the swap succeeds");
    let access = command("access", json!({"secret": "fakeprov_access_token"})).await;
    assert_eq!(access["result"]["value"], "a2", "{access}");
    let refresh = command("refresh-token", json!({"secret": "fakeprov_refresh_token"})).await;
    assert_eq!(refresh["result"]["value"], "r2", "{refresh}");
    // A refresh token the provider refuses is a clear failure.
    let again = command("again", json!({"refresh": format!("http://127.0.0.1:{tokens}/token")})).await;
    assert_eq!(again["error"]["code"], "COMMAND_FAILED", "{again}");
    assert!(again["error"]["message"].as_str().unwrap_or_default().contains("invalid_grant"), "{again}");
}

/// In a container the host cannot write serve's store: what the plugin refreshes is sealed in
/// the instance's cache folder, used again when Docker restarts the container, and taken into
/// the store before serve starts a new one, unless the person changed that secret since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_container_a_refreshed_token_outlives_the_container() {
    use crate::support::require_docker;
    use crate::support::serve::{Runtime, Serve};
    use reqwest::Method;

    if !require_docker() {
        return;
    }
    let (port, _) = line_device().await;
    let tokens = token_endpoint().await;
    let serve = Serve::start(Runtime::Docker).await;
    let id = unique_id("pytok");
    let root = format!("IoT2mqtt/v1/instances/{id}");
    let mut obs = Observer::connect(serve.mqtt(), &format!("{root}/#")).await;
    let body = json!({"instance_id": id, "connector_type": "tokened", "update_interval": 60,
                      "connection": {"host": "127.0.0.1", "port": tokens},
                      "secrets": {"fakeprov_access_token": "a1", "fakeprov_refresh_token": "r1"},
                      "devices": [{"device_id": "lamp", "host": "127.0.0.1", "port": port}]});
    serve.create(body.clone()).await;
    let online = |m: &crate::support::observer::Received| m.topic.ends_with("/status") && m.text() == "online";
    obs.wait_for("the instance online", Duration::from_secs(60), online).await;
    let command = async |obs: &mut Observer, cmd: &str, values: Value| {
        obs.publish(&format!("{root}/devices/lamp/cmd"), json!({"id": cmd, "values": values}).to_string()).await;
        obs.next_json(&format!("{root}/devices/lamp/cmd/response"), WAIT, |r| r["cmd_id"] == cmd).await
    };
    let secret = |key: &str| json!({"secret": key});

    let refreshed = command(&mut obs, "refresh", json!({"refresh": format!("http://127.0.0.1:{tokens}/token")})).await;
    assert_eq!(refreshed["result"]["access"], "a2", "{refreshed}");
    let sealed = serve.data().join("cache/instances").join(&id).join("refreshed-secrets");
    let text = std::fs::read_to_string(&sealed).expect("the refresh is kept beside the container");
    assert!(text.starts_with("v1:") && !text.contains("fakeprov"), "sealed, names and all: {text}");

    // Docker restarts the container (a crash, a reboot): its host starts with the refresh.
    let container = format!("iot2mqtt_tokened_{id}");
    let restarted = std::process::Command::new("docker").args(["restart", "-t", "5", &container]).output().unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    obs.wait_for("offline on the restart", Duration::from_secs(30), |m| m.text() == "offline").await;
    obs.wait_for("online again", Duration::from_secs(60), online).await;
    let access = command(&mut obs, "access", secret("fakeprov_access_token")).await;
    assert_eq!(access["result"]["value"], "a2", "{access}");
    let refresh = command(&mut obs, "refresh-token", secret("fakeprov_refresh_token")).await;
    assert_eq!(refresh["result"]["value"], "r2", "{refresh}");

    // serve starts a new container: the refresh is taken into its store, and the file is gone.
    let path = format!("/api/instances/tokened/{id}");
    for action in ["stop", "start"] {
        let (status, answer) = serve.call(Method::POST, &format!("{path}/{action}"), None).await;
        assert!(status.is_success(), "{action}: {answer}");
    }
    obs.wait_for("online in a new container", Duration::from_secs(60), online).await;
    assert!(!sealed.exists(), "taken into serve's store");
    let refresh = command(&mut obs, "from-store", secret("fakeprov_refresh_token")).await;
    assert_eq!(refresh["result"]["value"], "r2", "{refresh}");
    assert!(serve.log().contains("kept the secrets the plugin refreshed in its container"));

    // A refresh after which the person types a new token: the person's wins.
    let stored = command(&mut obs, "store", json!({"store": ["fakeprov_refresh_token", "r3"]})).await;
    assert_eq!(stored["status"], "success", "{stored}");
    assert!(sealed.exists());
    let mut edit = body.clone();
    edit["friendly_name"] = json!("Tokens, signed in again");
    edit["secrets"] = json!({"fakeprov_refresh_token": "r9"});
    edit["connection"] = json!({"host": "127.0.0.1", "port": tokens,
                                "fakeprov_access_token": "secret://fakeprov_access_token"});
    let (status, answer) = serve.call(Method::PUT, &path, Some(edit)).await;
    assert!(status.is_success(), "{answer}");
    obs.wait_for("online after the edit", Duration::from_secs(60), online).await;
    let refresh = command(&mut obs, "typed", secret("fakeprov_refresh_token")).await;
    assert_eq!(refresh["result"]["value"], "r9", "{refresh}");
    let access = command(&mut obs, "kept", secret("fakeprov_access_token")).await;
    assert_eq!(access["result"]["value"], "a2", "{access}");
    assert!(!sealed.exists());
}
