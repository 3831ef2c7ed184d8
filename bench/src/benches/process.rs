//! Whole processes: their start, their memory, the control plane, and the sizes of what is
//! shipped.

use std::time::{Duration, Instant};

use iot2mqtt_runtime::{EngineConfig, InstanceOptions, InstanceSpec, Runtime};
use serde_json::json;

use super::{Api, ms, start_online};
use crate::procs::{self, Proc};
use crate::report::Subject;
use crate::{Ctx, demo_config, devices};

/// `sizes`: the runner image, the binaries and the plugins.
pub async fn sizes(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("sizes");
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for binary in ["iot2mqtt-host", "iot2mqtt"] {
        let size = std::fs::metadata(ctx.paths.bin.join(binary))?.len();
        ctx.report
            .figure(&format!("size_{binary}"), Subject::Iot2mqtt, "MiB", vec![mib(size)])
            .note("static, stripped");
    }
    let mut plugins: Vec<_> = std::fs::read_dir(&ctx.paths.plugins)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    plugins.sort();
    for plugin in plugins {
        let name = plugin.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let kib = std::fs::metadata(&plugin)?.len() as f64 / 1024.0;
        ctx.report.figure(&format!("size_plugin_{name}"), Subject::Iot2mqtt, "KiB", vec![kib]);
    }
    match runner_image(ctx).await {
        Ok(bytes) => {
            ctx.report.figure("size_runner_image", Subject::Iot2mqtt, "MiB", vec![mib(bytes)]).target(25.0, "< 25 MB");
        }
        Err(e) => eprintln!("note: the runner image was not measured: {e:#}"),
    }
    Ok(())
}

/// Build the runner image the way `iot2mqtt serve` does, and read its size.
async fn runner_image(ctx: &Ctx) -> anyhow::Result<u64> {
    use anyhow::Context;
    let docker = iot2mqtt_server::runtime::docker::connect().await.context("no Docker engine answers")?;
    let secrets = tempfile::tempdir()?;
    // The runtime wants serve's MQTT client, which subscribes to every instance topic: it is
    // stopped as soon as the image is built, or it would receive (and slow down) every later
    // benchmark's traffic on the shared Mosquitto.
    let mqtt = iot2mqtt_server::mqtt::MqttService::start(iot2mqtt_contract::MqttSettings {
        host: "127.0.0.1".into(),
        port: ctx.broker,
        ..iot2mqtt_contract::MqttSettings::default()
    });
    let runtime = iot2mqtt_server::runtime::docker::DockerRuntime::new(
        docker.clone(),
        "bench".into(),
        ctx.paths.bin.join("iot2mqtt-host"),
        secrets.path().to_path_buf(),
        mqtt.clone(),
    );
    let image = runtime.ensure_image().await;
    mqtt.stop();
    let inspected = docker.inspect_image(&image?).await?;
    Ok(inspected.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// `start`: to retained `online` from a process start and from an embedded start with a warm
/// compile cache, and the compile cache's miss and hit.
pub async fn start(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("start");
    let repeats = if ctx.quick { 3 } else { 10 };
    for subject in ctx.subjects() {
        let mut took = Vec::new();
        for _ in 0..repeats.max(ctx.runs) {
            let id = ctx.id("st");
            let config = demo_config(&id, devices("light", 1), 10);
            let (proc, _, elapsed) = start_online(ctx, subject, &config, &[]).await?;
            took.push(ms(elapsed));
            proc.stop();
        }
        ctx.report.figure("start_process_to_online", subject, "ms", took).note("spawn → retained online, warm cache");
    }

    let runtime =
        Runtime::new(EngineConfig { cache_dir: Some(ctx.cache.path().to_path_buf()), shared_cache_dir: None })?;
    let plugin = runtime.load_plugin(std::fs::read(ctx.paths.plugin("demo"))?).await?;
    let mut took = Vec::new();
    for _ in 0..20 {
        let id = ctx.id("se");
        let config = serde_json::from_value(demo_config(&id, devices("light", 1), 10))?;
        let mqtt = iot2mqtt_contract::MqttSettings { host: "127.0.0.1".into(), port: ctx.broker, ..Default::default() };
        let started = Instant::now();
        let handle =
            runtime.start(InstanceSpec { config, mqtt, plugin: plugin.clone(), options: InstanceOptions::default() });
        let mut status = handle.watch_status();
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.ready && s.mqtt_connected)).await??;
        took.push(ms(started.elapsed()));
        handle.stop().await;
    }
    ctx.report
        .figure("start_embedded_instance", Subject::Iot2mqtt, "ms", took)
        .target(5.0, "< 5 ms warm")
        .note("runtime.start → ready and connected, warm cache");

    let wasm = std::fs::read(ctx.paths.plugin("demo"))?;
    let (mut miss, mut hit) = (Vec::new(), Vec::new());
    for _ in 0..ctx.runs.max(3) {
        let cache = tempfile::tempdir()?;
        for out in [&mut miss, &mut hit] {
            let runtime =
                Runtime::new(EngineConfig { cache_dir: Some(cache.path().to_path_buf()), shared_cache_dir: None })?;
            let started = Instant::now();
            runtime.load_plugin(wasm.clone()).await?;
            out.push(ms(started.elapsed()));
        }
    }
    ctx.report.figure("plugin_load_cache_miss", Subject::Iot2mqtt, "ms", miss).note("compile the demo plugin");
    ctx.report.figure("plugin_load_cache_hit", Subject::Iot2mqtt, "ms", hit).note("load it from the cache");
    Ok(())
}

/// `footprint`: resident memory of one instance in its own process.
pub async fn footprint(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("footprint: one instance, one device, its own process");
    for subject in ctx.subjects() {
        let mut rss = Vec::new();
        for _ in 0..ctx.runs {
            let id = ctx.id("fp");
            let config = demo_config(&id, devices("light", 1), 10);
            let (proc, _, _) = start_online(ctx, subject, &config, &[]).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            rss.push(proc.rss_kib() / 1024.0);
        }
        ctx.report.figure("rss_one_instance_process", subject, "MiB", rss);
    }
    Ok(())
}

/// `control_plane`: `iot2mqtt serve` idle with 20 demo instances, with its embedded broker
/// and with Mosquitto; the baseline's counterpart is 20 connector processes.
pub async fn control_plane(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("control plane: iot2mqtt serve idle with 20 demo instances");
    for (name, external) in
        [("serve_rss_embedded_broker_20_instances", false), ("serve_rss_mosquitto_20_instances", true)]
    {
        let mut rss = Vec::new();
        for _ in 0..ctx.runs {
            let (serve, _mosquitto, _) = serve_with_instances(ctx, external, 20).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            rss.push(serve.rss_kib() / 1024.0);
        }
        let figure = ctx.report.figure(name, Subject::Iot2mqtt, "MiB", rss);
        if external {
            drop(figure.note("the serve process only"));
        } else {
            drop(figure.target(50.0, "< 50 MB").note("broker included"));
        }
    }
    if ctx.baseline {
        let mut rss = Vec::new();
        for _ in 0..ctx.runs {
            let mut procs = Vec::new();
            for _ in 0..20 {
                let id = ctx.id("cp");
                procs.push(
                    start_online(ctx, Subject::Baseline, &demo_config(&id, devices("light", 1), 10), &[]).await?.0,
                );
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            rss.push(procs.iter().map(Proc::rss_kib).sum::<f64>() / 1024.0);
        }
        ctx.report
            .figure("serve_rss_embedded_broker_20_instances", Subject::Baseline, "MiB", rss)
            .note("20 connector processes, no control plane");
    }
    Ok(())
}

/// A `serve` with `count` one-light demo instances, all online (and its Mosquitto).
pub(super) async fn serve_with_instances(
    ctx: &Ctx,
    external: bool,
    count: usize,
) -> anyhow::Result<(Proc, Option<Proc>, Api)> {
    // A Mosquitto of its own: the shared one holds the retained topics of every earlier
    // benchmark, which serve's topic cache would then hold too.
    let mosquitto = if external {
        let port = procs::free_port();
        Some((port, procs::mosquitto(port)?))
    } else {
        None
    };
    let connectors = ctx.paths.repo.join("connectors");
    let (serve, api) = Api::start(ctx, "embedded", &connectors, mosquitto.as_ref().map(|(port, _)| *port)).await?;
    for i in 0..count {
        let body = json!({"instance_id": format!("cp{i}"), "connector_type": "demo", "devices": devices("light", 1)});
        let created = api.post("/api/instances", &body).await?;
        anyhow::ensure!(created.get("error").is_none(), "creating an instance: {created}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.get("/api/instances").await?;
        let online = list.as_array().map_or(0, |l| l.iter().filter(|i| i["status"]["mqtt_status"] == "online").count());
        if online == count {
            return Ok((serve, mosquitto.map(|(_, m)| m), api));
        }
        anyhow::ensure!(Instant::now() < deadline, "only {online} of {count} instances came online");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
