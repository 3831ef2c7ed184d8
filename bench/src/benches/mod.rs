//! The benchmarks. Each takes the context, measures, and adds figures to the report.

mod density;
mod http;
mod latency;
mod pages;
mod process;
mod python;
mod swap;
mod tools;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use iot2mqtt_contract::{InstanceId, Topics};
use iot2mqtt_runtime::{EngineConfig, Runtime};

pub use density::{density, density_child};
pub use http::http;
pub use latency::{broker_child, round_trip, soak, throughput};
pub use pages::pages;
pub use process::{control_plane, footprint, sizes, start};
pub use python::python;
pub use swap::swap;
pub use tools::tools;

use crate::Ctx;
use crate::driver::Driver;
use crate::procs::Proc;
use crate::report::Subject;

/// A Python 3 that can import paho-mqtt.
pub fn find_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("IOT2MQTT_PYTHON").map(PathBuf::from),
        Some("/usr/bin/python3".into()),
        Some("python3".into()),
    ];
    candidates.into_iter().flatten().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import paho.mqtt.client"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Compile the demo plugin into the shared cache, so "warm" means warm.
pub async fn warm_cache(ctx: &Ctx) -> anyhow::Result<()> {
    let runtime =
        Runtime::new(EngineConfig { cache_dir: Some(ctx.cache.path().to_path_buf()), shared_cache_dir: None })?;
    runtime.load_plugin(std::fs::read(ctx.paths.plugin("demo"))?).await?;
    if let Ok(python) = std::fs::read(ctx.paths.plugin("demo-python")) {
        runtime.load_plugin(python).await?;
    }
    Ok(())
}

/// The topics of an instance.
pub fn topics(id: &str) -> anyhow::Result<Topics> {
    Ok(Topics::new("IoT2mqtt", &InstanceId::new(id)?))
}

/// Start `config` for `subject` in its own process and wait for its retained `online`;
/// the process, a driver subscribed to `filters` (below the instance root), and how long
/// `online` took.
pub async fn start_online(
    ctx: &Ctx,
    subject: Subject,
    config: &serde_json::Value,
    filters: &[&str],
) -> anyhow::Result<(Proc, Driver, Duration)> {
    online(ctx, config, filters, || ctx.start(subject, config)).await
}

/// [`start_online`] for `iot2mqtt-host` running the plugin `plugin` (`demo-python`).
pub async fn start_online_with(
    ctx: &Ctx,
    plugin: &str,
    config: &serde_json::Value,
    filters: &[&str],
) -> anyhow::Result<(Proc, Driver, Duration)> {
    online(ctx, config, filters, || crate::procs::host(&ctx.paths, ctx.broker, config, plugin, ctx.cache.path())).await
}

async fn online(
    ctx: &Ctx,
    config: &serde_json::Value,
    filters: &[&str],
    start: impl FnOnce() -> anyhow::Result<Proc>,
) -> anyhow::Result<(Proc, Driver, Duration)> {
    let id = config["instance_id"].as_str().unwrap_or_default();
    let t = topics(id)?;
    let mut subscriptions = vec![t.status()];
    subscriptions.extend(filters.iter().map(|f| format!("{}/{f}", t.root())));
    let mut driver = Driver::connect(ctx.broker, &subscriptions).await?;
    let started = Instant::now();
    let mut proc = start()?;
    let online = driver.wait_for(&t.status(), Some("online"), Duration::from_secs(60)).await;
    if online.is_err() {
        proc.check_alive()?;
    }
    let took = online?.at.duration_since(started);
    Ok((proc, driver, took))
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A `serve` of the benchmark's own, logged in.
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Start `serve` with `runtime` and the connectors of `connectors`, against the Mosquitto
    /// on `mqtt` or its embedded broker, and log in.
    pub async fn start(
        ctx: &Ctx,
        runtime: &str,
        connectors: &std::path::Path,
        mqtt: Option<u16>,
    ) -> anyhow::Result<(Proc, Self)> {
        use anyhow::Context;
        const KEY: &str = "bench-access-key";
        let (http, own) = (crate::procs::free_port(), crate::procs::free_port());
        let serve = crate::procs::serve(&ctx.paths, http, own, mqtt, KEY, runtime, connectors)?;
        let api =
            Self { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{http}"), token: String::new() };
        let login = api.post("/api/auth/login", &serde_json::json!({"key": KEY})).await?;
        let token = login["token"].as_str().context("login gave no token")?.to_string();
        Ok((serve, Self { token, ..api }))
    }

    /// `POST path` with `body`; the answer, whatever its status.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let request = self.client.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body);
        Ok(request.send().await?.json().await?)
    }

    /// `GET path` as text (a page), with how long it took.
    pub async fn page(&self, path: &str) -> anyhow::Result<(String, Duration)> {
        let started = Instant::now();
        let response = self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        anyhow::ensure!(response.status().is_success(), "GET {path}: {}", response.status());
        let text = response.text().await?;
        Ok((text, started.elapsed()))
    }

    /// `GET path` without the session, as bytes.
    pub async fn public_bytes(&self, path: &str) -> anyhow::Result<usize> {
        Ok(self.client.get(format!("{}{path}", self.base)).send().await?.bytes().await?.len())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?.json().await?)
    }
}
