//! The `iot2mqtt-host` binary as a container runs it: environment and files in, exit codes
//! out, SIGTERM and `kill -9`, and the plugin file replaced under it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::harness::topics;
use crate::support::tls::{Pki, TlsMosquitto};
use crate::support::{Observer, TestBroker, binary, plugin, plugins_dir, unique_id};

const WAIT: Duration = Duration::from_secs(10);

/// An instance directory and the environment of one host process.
struct Host {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Host {
    fn new(port: u16, config: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let id = config["instance_id"].as_str().unwrap().to_string();
        std::fs::create_dir_all(dir.path().join("instances")).unwrap();
        std::fs::write(dir.path().join(format!("instances/{id}.json")), config.to_string()).unwrap();
        let plugin_path = dir.path().join("connector.wasm");
        std::fs::copy(plugins_dir().join("demo.wasm"), &plugin_path).unwrap();
        let env = vec![
            ("INSTANCE_NAME".into(), id.clone()),
            ("MQTT_HOST".into(), "localhost".into()),
            ("MQTT_PORT".into(), port.to_string()),
            ("IOT2MQTT_INSTANCES_DIR".into(), dir.path().join("instances").display().to_string()),
            ("IOT2MQTT_SECRETS_DIR".into(), dir.path().join("secrets").display().to_string()),
            ("IOT2MQTT_PLUGIN".into(), plugin_path.display().to_string()),
            ("IOT2MQTT_DOTENV".into(), dir.path().join(".env").display().to_string()),
            ("IOT2MQTT_CACHE_DIR".into(), std::env::temp_dir().join("iot2mqtt-test-cache").display().to_string()),
        ];
        Self { dir, env }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(binary("iot2mqtt-host"));
        command.env_clear().envs(self.env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    fn spawn(&self) -> Child {
        self.command().spawn().expect("start iot2mqtt-host")
    }
}

fn demo(id: &str) -> Value {
    json!({"instance_id": id, "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]})
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

fn stderr_of(child: Child) -> String {
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

#[test]
fn configuration_errors_exit_with_one_clear_line() {
    let host = Host::new(1, demo("cfg"));
    type Setup = Box<dyn Fn(&mut Command, &Path)>;
    let cases: Vec<(&str, Setup, i32, &str)> = vec![
        (
            "no INSTANCE_NAME",
            Box::new(|c, _| {
                c.env_remove("INSTANCE_NAME");
            }),
            2,
            "INSTANCE_NAME is not set",
        ),
        (
            "an invalid INSTANCE_NAME",
            Box::new(|c, _| {
                c.env("INSTANCE_NAME", "Bad/Name");
            }),
            2,
            "invalid instance id \"Bad/Name\"",
        ),
        (
            "no instance file",
            Box::new(|c, _| {
                c.env("INSTANCE_NAME", "missing");
            }),
            1,
            "cannot read instance file",
        ),
        (
            "invalid JSON",
            Box::new(|_, dir| {
                std::fs::write(dir.join("instances/cfg.json"), "{\"instance_id\": \"cfg\",").unwrap();
            }),
            1,
            "invalid instance file",
        ),
        (
            "an invalid setting",
            Box::new(|c, _| {
                c.env("MQTT_QOS", "7");
            }),
            1,
            "MQTT_QOS: must be 0, 1 or 2",
        ),
        (
            "an unreadable CA file",
            Box::new(|c, _| {
                c.env("MQTT_TLS", "true").env("MQTT_CA_FILE", "/nonexistent/ca.pem");
            }),
            1,
            "MQTT_CA_FILE /nonexistent/ca.pem",
        ),
        (
            "a broken plugin",
            Box::new(|c, dir| {
                std::fs::write(dir.join("instances/cfg.json"), demo("cfg").to_string()).unwrap();
                std::fs::write(dir.join("broken.wasm"), "nope").unwrap();
                c.env("IOT2MQTT_PLUGIN", dir.join("broken.wasm"));
            }),
            1,
            "not a usable WebAssembly component",
        ),
    ];
    for (name, setup, code, message) in cases {
        std::fs::write(host.path("instances/cfg.json"), demo("cfg").to_string()).unwrap();
        let mut command = host.command();
        setup(&mut command, host.dir.path());
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert_eq!(stderr.lines().filter(|l| l.contains("ERROR")).count(), 1, "{name}: one error line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_publishes_offline_and_exits_0_promptly() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("term");
    let t = topics(&id);
    let mut obs = Observer::connect(broker.port(), &format!("{}/#", t.root())).await;
    let host = Host::new(broker.port(), demo(&id));
    let mut child = host.spawn();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "online");
    let started = Instant::now();
    signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "exited in {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "offline");
    let kept = crate::support::observer::retained(broker.port(), &t.status()).await.unwrap();
    assert_eq!(kept.text(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_the_last_will() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("kill");
    let t = topics(&id);
    let mut obs = Observer::connect(broker.port(), &format!("{}/#", t.root())).await;
    let host = Host::new(broker.port(), demo(&id));
    let mut child = host.spawn();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "online");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "offline");
    let kept = crate::support::observer::retained(broker.port(), &t.status()).await.unwrap();
    assert_eq!(kept.text(), "offline", "the will is retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_and_secrets_reach_the_instance_and_secrets_stay_secret() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("env");
    let config = json!({
        "instance_id": id, "connector_type": "probe",
        "connection": {"user": "me"},
        "devices": [{"device_id": "x"}]
    });
    let mut host = Host::new(broker.port(), config);
    std::fs::copy(plugins_dir().join("forbidden-connect.wasm"), host.path("connector.wasm")).unwrap();
    std::fs::write(host.path(".env"), "MQTT_BASE_TOPIC=FromDotenv\nMQTT_PORT=1\n").unwrap();
    std::fs::create_dir_all(host.path("secrets")).unwrap();
    std::fs::write(host.path(&format!("secrets/{id}_creds")), "password=hunter2-secret\n").unwrap();
    // The process environment wins over the file for MQTT_PORT; the file sets the base topic.
    host.env.push(("LOG_LEVEL".into(), "debug".into()));
    let base = format!("FromDotenv/v1/instances/{id}");
    let mut obs = Observer::connect(broker.port(), "#").await;
    let child = host.spawn();
    assert_eq!(obs.next_on(&format!("{base}/status"), WAIT).await.text(), "online");
    obs.publish(&format!("{base}/devices/x/cmd"), json!({"id": "k", "values": {"connection_keys": true}}).to_string())
        .await;
    let response = obs.next_json(&format!("{base}/devices/x/cmd/response"), WAIT, |r| r["cmd_id"] == "k").await;
    assert_eq!(response["result"]["connection_keys"], json!(["user", "password"]));
    signal(&child, "TERM");
    let stderr = stderr_of(child);
    assert!(!stderr.contains("hunter2"), "the secret is not logged: {stderr}");
    for message in obs.collect_all(Duration::from_millis(300)).await {
        assert!(!message.text().contains("hunter2"), "the secret is not published: {}", message.topic);
    }
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_plugin_file_swaps_it_without_reconnecting() {
    let Some(broker) = TestBroker::start().await else { return };
    let id = unique_id("file");
    let t = topics(&id);
    let mut obs = Observer::connect(broker.port(), &format!("{}/#", t.root())).await;
    let host = Host::new(broker.port(), demo(&id));
    let child = host.spawn();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "online");
    obs.next_json(&t.info(), WAIT, |i| i["plugin"]["name"] == "demo").await;

    // A broken file first: rejected, the demo keeps serving.
    let staged = host.path("staged.wasm");
    std::fs::write(&staged, "garbage").unwrap();
    std::fs::rename(&staged, host.path("connector.wasm")).unwrap();
    obs.next_json(&t.instance_error(), WAIT, |e| e["error_code"] == "PLUGIN_REJECTED").await;

    // Then the template, by atomic rename: live within two seconds of noticing.
    std::fs::write(&staged, plugin("template")).unwrap();
    let replaced = Instant::now();
    std::fs::rename(&staged, host.path("connector.wasm")).unwrap();
    let info = obs.next_json(&t.info(), WAIT, |i| i["plugin"]["name"] == "template").await;
    assert!(replaced.elapsed() < Duration::from_secs(3), "swapped in {:?}", replaced.elapsed());
    assert_eq!(info["swaps"], 1);
    obs.publish(&t.command("l1"), json!({"id": "t", "values": {"power": true}}).to_string()).await;
    obs.next_json(&t.command_response("l1"), WAIT, |r| r["cmd_id"] == "t" && r["status"] == "success").await;
    let statuses = obs.collect(&t.status(), Duration::from_millis(100)).await;
    assert!(statuses.iter().all(|s| s.text() == "online"), "never offline: {statuses:?}");
    signal(&child, "TERM");
    let stderr = stderr_of(child);
    assert_eq!(stderr.matches("starting instance").count(), 1, "one process, one start: {stderr}");
}

/// Wait until the file at `path` contains `text`.
async fn wait_for_line(path: &Path, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "\"{text}\" not logged within {within:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_wrong_ca_is_named_and_the_renewed_file_is_picked_up_at_the_next_attempt() {
    let Some(pki) = Pki::make() else { return };
    let Some(broker) = TlsMosquitto::start(&pki, false).await else { return };
    let id = unique_id("tls");
    let t = topics(&id);
    let mut obs = Observer::connect(broker.port, &format!("{}/#", t.root())).await;
    let mut host = Host::new(broker.tls_port, demo(&id));
    let ca = host.path("ca.pem");
    std::fs::copy(&pki.other_ca, &ca).unwrap();
    host.env.push(("MQTT_TLS".into(), "true".into()));
    host.env.push(("MQTT_CA_FILE".into(), ca.display().to_string()));
    let log = host.path("host.log");
    let mut child = host.command().stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();

    let said = format!(
        "TLS handshake failed: the broker's certificate is not signed by a CA in MQTT_CA_FILE {}",
        ca.display()
    );
    wait_for_line(&log, &said, WAIT).await;
    assert!(child.try_wait().unwrap().is_none(), "the host keeps trying");
    assert!(obs.try_wait_for(Duration::from_millis(300), |m| m.topic == t.status()).await.is_none());

    // The right CA, written where the old one was: the next attempt of the backoff connects.
    std::fs::copy(&pki.ca, &ca).unwrap();
    assert_eq!(obs.next_on(&t.status(), Duration::from_secs(40)).await.text(), "online");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_asks_for_a_client_certificate_gets_one() {
    let Some(pki) = Pki::make() else { return };
    let Some(broker) = TlsMosquitto::start(&pki, true).await else { return };
    let id = unique_id("mtls");
    let t = topics(&id);
    let mut obs = Observer::connect(broker.port, &format!("{}/#", t.root())).await;
    let mut host = Host::new(broker.tls_port, demo(&id));
    host.env.push(("MQTT_TLS".into(), "true".into()));
    host.env.push(("MQTT_CA_FILE".into(), pki.ca.display().to_string()));
    // Without a certificate: refused, and the log says why.
    let log = host.path("host.log");
    let mut refused = host.command().stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    wait_for_line(&log, "the broker asks for a client certificate: set MQTT_CERT_FILE and MQTT_KEY_FILE", WAIT).await;
    let _ = refused.kill();
    let _ = refused.wait();
    host.env.pop();
    for (key, file) in
        [("MQTT_CA_FILE", &pki.ca), ("MQTT_CERT_FILE", &pki.client_cert), ("MQTT_KEY_FILE", &pki.client_key)]
    {
        host.env.push((key.into(), file.display().to_string()));
    }
    let mut child = host.spawn();
    assert_eq!(obs.next_on(&t.status(), WAIT).await.text(), "online");
    let _ = child.kill();
    let _ = child.wait();
}
