//! `iot2mqtt serve` as a process: a private data directory, a connectors folder with the demo
//! connector and a probe connector, free ports, an access key, and an HTTP client logged in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{TestBroker, binary, free_port, plugins_dir};

/// The access key every test server is started with.
pub const KEY: &str = "test-access-key";

/// Which runtime a server runs instances with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// In its own process.
    Embedded,
    /// In Docker containers.
    Docker,
}

impl Runtime {
    fn flag(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Docker => "docker",
        }
    }
}

/// A running `iot2mqtt serve`. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Serve {
    pub dir: tempfile::TempDir,
    pub http: u16,
    /// The MQTT port instances use (serve's own broker, or the external one).
    pub mqtt_port: u16,
    /// A full-access account on serve's own broker (none with an external broker).
    mqtt_login: Option<(String, String)>,
    pub runtime: Runtime,
    env: Vec<(String, String)>,
    child: Option<Child>,
    client: reqwest::Client,
    token: Option<String>,
}

impl Serve {
    /// Start with its own embedded broker.
    pub async fn start(runtime: Runtime) -> Self {
        Self::start_with(runtime, None, &[]).await
    }

    /// Start against `broker` (through `MQTT_HOST=localhost`), or its own broker with `None`,
    /// with extra environment.
    pub async fn start_with(runtime: Runtime, broker: Option<&TestBroker>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_connectors(&dir.path().join("connectors"));
        let mqtt = broker.map_or_else(free_port, TestBroker::port);
        let mut all_env: Vec<(String, String)> = vec![("IOT2MQTT_ACCESS_KEY".into(), KEY.into())];
        if broker.is_some() {
            all_env.push(("MQTT_HOST".into(), "localhost".into()));
            all_env.push(("MQTT_PORT".into(), mqtt.to_string()));
        }
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut serve = Self {
            dir,
            http: free_port(),
            mqtt_port: mqtt,
            mqtt_login: None,
            runtime,
            env: all_env,
            child: None,
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            token: None,
        };
        serve.spawn().await;
        if serve.env.iter().any(|(k, _)| k == "IOT2MQTT_ACCESS_KEY") {
            serve.login().await;
            if broker.is_none() && !env.iter().any(|(k, _)| *k == "MQTT_HOST") {
                serve.mqtt_login = Some(serve.mqtt_account("suite", "full").await);
            }
        }
        serve
    }

    /// Create an account on serve's own broker; its name and password.
    pub async fn mqtt_account(&self, name: &str, access: &str) -> (String, String) {
        let body = json!({"name": name, "access": access});
        let (status, body) = self.call(Method::POST, "/api/mqtt/accounts", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (name.to_string(), body["password"].as_str().unwrap().to_string())
    }

    /// The broker instances use, with a login that may do anything there.
    pub fn mqtt(&self) -> super::observer::MqttAt {
        super::observer::MqttAt { port: self.mqtt_port, login: self.mqtt_login.clone() }
    }

    /// Start without `IOT2MQTT_ACCESS_KEY` (the setup link case); not logged in.
    pub async fn start_unconfigured() -> Self {
        let mut serve = Self::start_with(Runtime::Embedded, None, &[]).await;
        serve.stop();
        serve.env.retain(|(k, _)| k != "IOT2MQTT_ACCESS_KEY");
        std::fs::remove_dir_all(serve.dir.path().join("data")).unwrap();
        serve.token = None;
        serve.spawn().await;
        serve
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("serve is running")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Start the process (again) and wait for its health endpoint.
    pub async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("{log}");
        }
    }

    /// Start the process (again) and wait for its health endpoint; when it exits instead, what
    /// it logged.
    pub async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(binary("iot2mqtt"));
        command
            .args(["serve", "--runtime", self.runtime.flag()])
            .arg("--data-dir")
            .arg(self.data())
            .arg("--connectors")
            .arg(self.dir.path().join("connectors"))
            .arg("--plugins-dir")
            .arg(plugins_dir())
            .args(["--listen", &format!("127.0.0.1:{}", self.http)])
            .args(["--mqtt-listen", &format!("127.0.0.1:{}", self.mqtt_port)])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_LEVEL", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("start iot2mqtt serve"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.client.get(self.url("/api/health")).send().await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                return Err(format!("iot2mqtt serve exited with {status}:\n{}", self.log()));
            }
            assert!(Instant::now() < deadline, "iot2mqtt serve did not answer in time:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait (up to 20 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    async fn login(&mut self) {
        let (status, body) = self.call_as(None, Method::POST, "/api/auth/login", Some(json!({"key": KEY}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.token = Some(body["token"].as_str().unwrap().to_string());
    }

    /// A request with the test's session; the status and the JSON body (`null` when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(self.token.as_deref(), method, path, body).await
    }

    /// A request with `token` (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET with the suite's session, the response as it came (headers, any body).
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A request with a raw body of `content_type`.
    pub async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.client.request(method, self.url(path)).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The session token.
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// The HTTP client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Wait (up to 30 s) until serve's own MQTT client is connected; `how` says to what, for
    /// the failure. `/api/health` is asked every 100 ms: nothing announces the connection.
    pub async fn wait_connected(&self, how: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, health) = self.call(Method::GET, "/api/health", None).await;
            if status == StatusCode::OK && health["mqtt_connected"] == true {
                return;
            }
            assert!(Instant::now() < deadline, "serve did not connect {how}: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Create a demo instance and return its view.
    pub async fn create(&self, body: Value) -> Value {
        let (status, view) = self.call(Method::POST, "/api/instances", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        view
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            // The server's side of a failed test: its last lines.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- the last lines of iot2mqtt serve's log ---\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        if self.runtime == Runtime::Docker {
            remove_containers_of(self.dir.path());
        }
    }
}

/// A connectors folder: the real demo, Yeelight and Shelly connectors; "probe" (the sandbox probe
/// fixture, with a password field and plugin tools of each network); "scripted" (script tools
/// that succeed, hang, crash, print garbage and echo secrets); "tokened" (the Python line
/// fixture, which refreshes OAuth tokens); "trappy" (the trap fixture);
/// "bridged" (the demo plugin on Docker's bridge network); "cloudy" (an OAuth step, and
/// HTTP hosts declared); "broken" (an invalid setup.json); "wronghost" (a URL where its
/// manifest should declare a host); "sensor-hub" (the real one) and "lamps" (the multi-process
/// template copied as an author would), container connectors; "misbuilt" (a container
/// connector whose Dockerfile fails); and a hidden `_template`.
/// The files of folder `from` (not its subfolders, such as a `__pycache__`) into `to`.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten().filter(|e| e.path().is_file()) {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn write_connectors(dir: &Path) {
    let repo = &super::repo();
    for (name, files) in [
        ("demo", &["manifest.json", "icon.svg", "setup.json"]),
        ("yeelight", &["manifest.json", "icon.svg", "setup.json"]),
        ("shelly", &["manifest.json", "icon.svg", "setup.json"]),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for file in files {
            std::fs::copy(repo.join("connectors").join(name).join(file), dir.join(name).join(file)).unwrap();
        }
    }
    let connector = |name: &str, plugin: &str, setup: Value| {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let manifest = json!({"name": name, "display_name": name, "version": "0.1.0", "plugin": plugin});
        std::fs::write(folder.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(folder.join("setup.json"), serde_json::to_string_pretty(&setup).unwrap()).unwrap();
        folder
    };
    connector(
        "probe",
        "forbidden-connect",
        json!({
            "version": "1.0", "display_name": "Sandbox probe",
            "tools": {
                "reach_none": {"entry": "plugin", "network": "none", "timeout": 5},
                "reach_local": {"entry": "plugin", "network": "local", "timeout": 5}
            },
            "flows": [{"id": "default", "name": "Probe", "steps": [
                {"id": "login", "type": "form", "fields": [{"name": "user", "type": "text"}, {"name": "password", "type": "password"}]},
                {"id": "create", "type": "instance", "instance": {"instance_id": "auto", "friendly_name": "probe", "config": {"user": "{{ form.login.user }}", "password": "{{ form.login.password }}"}}}
            ]}]
        }),
    );
    // A script tool of `entry` whose input key "password" is a secret.
    let script = |entry: &str, timeout: u64, network: &str| json!({"entry": entry, "timeout": timeout, "network": network, "secrets": ["password"]});
    let tool = |timeout: u64, network: &str| script("tool.py", timeout, network);
    // A flow of one step that creates the instance.
    let just_create = |name: &str| {
        json!([{"id": "default", "name": "Add", "steps": [
            {"id": "create", "type": "instance", "instance": {"instance_id": "auto", "friendly_name": name}}
        ]}])
    };
    let scripted = connector(
        "scripted",
        "demo",
        json!({
            "version": "1.0", "display_name": "Scripted tools",
            "tools": {
                "echo": tool(10, "local"), "hang": tool(1, "local"), "crash": tool(10, "local"),
                "garbage": tool(10, "local"), "refuse": tool(10, "local"),
                "reach_none": tool(10, "none"), "reach_local": tool(10, "local"),
                "inspect": tool(10, "none"), "daemon": tool(10, "none"), "daemon_hang": tool(2, "none"),
                "lost": {"entry": "missing.py"}, "escape": {"entry": "outside.py"}
            },
            "flows": [{"id": "default", "name": "Echo", "steps": [
                {"id": "ask", "type": "form", "fields": [{"name": "password", "type": "password", "required": true}]},
                {"id": "run", "type": "tool", "tool": "echo", "input": {"password": "{{ form.ask.password }}"}, "output_key": "echo", "auto_advance": true},
                {"id": "review", "type": "summary", "summary": [{"label": "Password", "value": "{{ form.ask.password }}"}]}
            ]}]
        }),
    );
    // The Python line fixture with OAuth tokens: what its plugin refreshes in a container.
    connector(
        "tokened",
        "line-python",
        json!({"version": "1.0", "display_name": "Tokens refreshed by the plugin", "flows": just_create("tokened")}),
    );
    connector(
        "trappy",
        "trap",
        json!({
            "version": "1.0", "display_name": "A plugin that traps on demand",
            "flows": just_create("trappy")
        }),
    );
    connector(
        "bridged",
        "demo",
        json!({
            "version": "1.0", "display_name": "Demo on the bridge network",
            "requirements": {"network": "bridge"},
            "flows": just_create("bridged")
        }),
    );
    let boxed_tool = |timeout: u64, network: &str| script("tool.sh", timeout, network);
    let boxed = connector(
        "boxed",
        "demo",
        json!({
            "version": "1.0", "display_name": "Tools in the connector's own image",
            "tools": {
                "echo": boxed_tool(10, "none"), "local": boxed_tool(10, "local"), "internet": boxed_tool(10, "internet"),
                "hang": boxed_tool(1, "none"), "crash": boxed_tool(10, "none"), "garbage": boxed_tool(10, "none")
            },
            "flows": [{"id": "default", "name": "Add", "steps": [
                {"id": "check", "type": "tool", "tool": "echo", "input": {}, "output_key": "check"},
                {"id": "create", "type": "instance", "instance": {"instance_id": "auto", "friendly_name": "boxed"}}
            ]}]
        }),
    );
    // Its image: busybox in an otherwise empty image (nothing can be pulled here).
    if let Some(busybox) = super::which("busybox") {
        std::fs::copy(busybox, boxed.join("busybox")).unwrap();
        std::fs::write(boxed.join("Dockerfile"), BOXED_DOCKERFILE).unwrap();
    }
    std::fs::write(boxed.join("tool.sh"), BOXED_TOOL).unwrap();
    // The sensor hub, as it is.
    copy_files(&repo.join("connectors/sensor-hub"), &dir.join("sensor-hub"));
    // The multi-process template, copied as its README tells an author to.
    let lamps = dir.join("lamps");
    copy_files(&repo.join("connectors/_template-multiprocess"), &lamps);
    let manifest = std::fs::read_to_string(lamps.join("manifest.json")).unwrap();
    std::fs::write(lamps.join("manifest.json"), manifest.replace("\"_template-multiprocess\"", "\"lamps\"")).unwrap();
    // A container connector whose image cannot be built.
    let misbuilt = dir.join("misbuilt");
    std::fs::create_dir_all(&misbuilt).unwrap();
    let manifest = json!({"name": "misbuilt", "display_name": "Misbuilt", "version": "0.1.0", "kind": "container"});
    std::fs::write(misbuilt.join("manifest.json"), manifest.to_string()).unwrap();
    // With busybox it takes a few seconds before failing, so the build can be seen going on.
    let dockerfile = match super::which("busybox") {
        Some(busybox) => {
            std::fs::copy(busybox, misbuilt.join("busybox")).unwrap();
            // A file of its own per server, so Docker's layer cache cannot skip the pause.
            std::fs::write(misbuilt.join("nonce"), dir.display().to_string()).unwrap();
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY nonce /nonce\nRUN [\"/bin/busybox\", \"sleep\", \"6\"]\nCOPY no-such-file /x\n"
        }
        None => "FROM scratch\nCOPY no-such-file /x\n",
    };
    std::fs::write(misbuilt.join("Dockerfile"), dockerfile).unwrap();
    // A connector whose image cannot be built.
    let unbuildable = connector(
        "unbuildable",
        "demo",
        json!({
            "version": "1.0", "display_name": "An image that does not build",
            "tools": {"echo": {"entry": "tool.sh", "network": "none"}},
            "flows": just_create("unbuildable")
        }),
    );
    std::fs::write(unbuildable.join("Dockerfile"), "FROM scratch\nRUN [\"/bin/no-such-program\"]\n").unwrap();
    std::fs::write(unbuildable.join("tool.sh"), BOXED_TOOL).unwrap();
    std::fs::set_permissions(boxed.join("tool.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(scripted.join("tool.py"), SCRIPT_TOOL).unwrap();
    std::fs::set_permissions(scripted.join("tool.py"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../demo/manifest.json", scripted.join("outside.py")).unwrap();
    connector(
        "cloudy",
        "demo",
        json!({
            "version": "1.0", "display_name": "Cloud service",
            "flows": [{"id": "default", "name": "Sign in", "steps": [
                {"id": "signin", "type": "oauth", "provider": "fakeprov", "scopes": ["devices.read"]},
                {"id": "create", "type": "instance", "instance": {"instance_id": "auto", "friendly_name": "Cloudy {{ oauth.fakeprov.scope }}"}}
            ]}]
        }),
    );
    // Its plugin may reach the provider's API: the catalog says so before anything is created.
    let manifest = json!({"name": "cloudy", "display_name": "cloudy", "version": "0.1.0", "plugin": "demo",
                          "network": {"http": ["api.cloudy.example", "*.cloudy.example:443"]}});
    std::fs::write(dir.join("cloudy/manifest.json"), manifest.to_string()).unwrap();
    // A manifest declaring something that is not a host.
    let wrong = dir.join("wronghost");
    std::fs::create_dir_all(&wrong).unwrap();
    let manifest = json!({"name": "wronghost", "display_name": "wronghost", "version": "0.1.0", "plugin": "demo",
                          "network": {"http": ["https://api.example.com/v1"]}});
    std::fs::write(wrong.join("manifest.json"), manifest.to_string()).unwrap();
    connector(
        "broken",
        "demo",
        json!({"version": "1.0", "display_name": "Broken", "flows": [{"id": "f", "name": "f", "steps": [{"id": "s", "type": "tool"}]}]}),
    );
    let hidden = dir.join("_template");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(
        hidden.join("manifest.json"),
        json!({"name": "_template", "display_name": "x", "version": "0"}).to_string(),
    )
    .unwrap();
}

/// The image of the "boxed" connector.
const BOXED_DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
"#;

/// The script behind every tool of the "boxed" connector, for busybox's `sh`: the tool's name
/// picks what it does; by default it tells where it runs.
const BOXED_TOOL: &str = r#"#!/bin/sh
request=$(cat)
password=$(printf '%s' "$request" | sed -n 's/.*"password":"\([^"]*\)".*/\1/p')
case "$IOT2MQTT_TOOL" in
  hang) sleep 60 ;;
  crash) echo "cannot log in with $password" >&2; exit 3 ;;
  garbage) echo "this is not json" ;;
  *)
    interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ')
    container=false
    [ -f /.dockerenv ] && container=true
    writable=false
    touch ./probe 2>/dev/null && writable=true
    scratch=false
    touch /tmp/probe 2>/dev/null && scratch=true
    printf '{"ok": true, "result": {"request": %s, "cwd": "%s", "container": %s, "interfaces": "%s", "writable": %s, "scratch": %s}}\n' \
      "$request" "$(pwd)" "$container" "$interfaces" "$writable" "$scratch"
    ;;
esac
"#;

/// The script behind every tool of the "scripted" connector; the tool's name picks what it does.
const SCRIPT_TOOL: &str = r#"#!/usr/bin/env python3
import json, os, socket, subprocess, sys, time
request = json.load(sys.stdin)
tool, data = request["tool"], request["input"]
if tool == "echo":
    print(json.dumps({"ok": True, "result": {"echo": data, "note": "password was " + data.get("password", "")}}))
elif tool == "hang":
    # Sleep under a name the test looks for, to see that it was stopped.
    os.execvp("python3", ["python3", "-c", "import time; time.sleep(60)", data.get("marker", "hang")])
elif tool.startswith("daemon"):
    # A child that leaves the tool's session, then the tool ends (or hangs past its timeout).
    child = subprocess.Popen(["python3", "-c", "import time; time.sleep(600)", data["marker"]], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists("/proc/%d/cmdline" % child.pid):
        time.sleep(0.05)
    if tool == "daemon_hang":
        time.sleep(60)
    print(json.dumps({"child": child.pid}))
elif tool == "inspect":
    # What the sandbox lets a tool see and do.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def errno_of(result):
        return 0 if result == 0 else ctypes.get_errno()
    def can(path, mode):
        try:
            with open(path, mode) as f:
                f.read(1) if mode == "rb" else f.write("x")
            return True
        except OSError:
            return False
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    print(json.dumps({
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
        "root": sorted(os.listdir("/")), "etc": sorted(os.listdir("/etc")),
        "seccomp": status["Seccomp"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
        "capabilities": int(status["CapEff"].strip(), 16), "bounding": int(status["CapBnd"].strip(), 16),
        "readable": {path: can(path, "rb") for path in data["paths"]},
        "scratch": can("/tmp/probe", "w"), "folder": can("probe", "w"),
        "unshare": errno_of(libc.unshare(0x10000000)),
        "mount": errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "interfaces": sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]),
    }))
elif tool == "crash":
    print("cannot log in with " + data.get("password", ""), file=sys.stderr)
    sys.exit(3)
elif tool == "garbage":
    print("this is not json")
elif tool == "refuse":
    print(json.dumps({"ok": False, "error": {"code": "auth", "message": "wrong password " + data.get("password", ""), "retriable": False}}))
elif tool.startswith("reach_"):
    try:
        socket.create_connection(("127.0.0.1", data["port"]), timeout=2).close()
        print(json.dumps({"connected": True}))
    except OSError as e:
        print(json.dumps({"connected": False, "error": str(e)}))
"#;

/// Remove the containers a test server created (their names hold instance ids unique to it).
fn remove_containers_of(dir: &Path) {
    let instances = dir.join("data/instances");
    let Ok(connectors) = std::fs::read_dir(&instances) else { return };
    for connector in connectors.flatten() {
        let Ok(files) = std::fs::read_dir(connector.path()) else { continue };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                let container = format!("iot2mqtt_{}_{id}", connector.file_name().to_string_lossy());
                let _ = Command::new("docker")
                    .args(["rm", "-f", &container])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
