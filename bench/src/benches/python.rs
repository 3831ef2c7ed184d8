//! `python`: the demo connector written in Python (componentize-py) beside the same connector
//! in Rust, each in its own `iot2mqtt-host`: the component's size, compiling it (a cache miss)
//! and loading it compiled (a hit), memory per instance and per device, command round trip at
//! 100 commands a second, and state publications a second with 100 sensors read each second.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use iot2mqtt_runtime::{EngineConfig, Runtime};

use super::latency::load;
use super::{ms, start_online_with, topics};
use crate::report::Subject;
use crate::tally::Tally;
use crate::{Ctx, demo_config, devices};

/// The two builds of the demo: how figures name them, and the plugin.
const PLUGINS: [(&str, &str); 2] = [("rust", "demo"), ("python", "demo-python")];
/// Devices of the larger instance the memory per device is taken from.
const MANY: usize = 20;
/// Sensors read each second for the publication rate.
const SENSORS: usize = 100;

pub async fn python(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("python: the demo connector in Python beside the same in Rust");
    for (language, plugin) in PLUGINS {
        let path = ctx.paths.plugin(plugin);
        let wasm = std::fs::read(&path)
            .with_context(|| format!("cannot read {} (built by cargo xtask plugins)", path.display()))?;
        let size = wasm.len() as f64 / (1024.0 * 1024.0);
        let (mut miss, mut hit) = (Vec::new(), Vec::new());
        for _ in 0..ctx.runs {
            let (compiled, loaded) = compile_and_load(&wasm).await?;
            miss.push(compiled.as_secs_f64());
            hit.push(ms(loaded));
        }
        let (mut instance, mut per_device, mut p99, mut rates) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ctx.runs {
            let (one, many) = (resident(ctx, plugin, 1).await?, resident(ctx, plugin, MANY).await?);
            instance.push(one);
            per_device.push((many - one) / (MANY - 1) as f64);
            p99.push(round_trip_p99(ctx, plugin).await?);
            rates.push(states_per_second(ctx, plugin).await?);
        }
        let r = &mut ctx.report;
        r.figure(&format!("{language}_demo_component_size"), Subject::Iot2mqtt, "MiB", vec![size]);
        r.figure(&format!("{language}_demo_compile_cache_miss"), Subject::Iot2mqtt, "s", miss)
            .note("compiled once per content, off the threads that serve MQTT and HTTP");
        r.figure(&format!("{language}_demo_load_cache_hit"), Subject::Iot2mqtt, "ms", hit);
        r.figure(&format!("{language}_demo_memory_per_instance"), Subject::Iot2mqtt, "MiB", instance)
            .note("iot2mqtt-host with one device, resident");
        r.figure(&format!("{language}_demo_memory_per_device"), Subject::Iot2mqtt, "MiB", per_device)
            .note(format!("(resident with {MANY} devices − with one) / {}", MANY - 1));
        r.figure(&format!("{language}_demo_round_trip_p99_at_100_per_s"), Subject::Iot2mqtt, "ms", p99);
        r.figure(&format!("{language}_demo_state_publications_per_s"), Subject::Iot2mqtt, "msg/s", rates)
            .higher_is_better()
            .note(format!("{SENSORS} sensors read each second, counted by a subscriber"));
    }
    Ok(())
}

/// Compile `wasm` into an empty cache, then load it from that cache in a new engine.
async fn compile_and_load(wasm: &[u8]) -> anyhow::Result<(Duration, Duration)> {
    let cache = tempfile::tempdir()?;
    let config = EngineConfig { cache_dir: Some(cache.path().to_path_buf()), shared_cache_dir: None };
    let began = Instant::now();
    Runtime::new(config.clone())?.load_plugin(wasm.to_vec()).await?;
    let compiled = began.elapsed();
    let runtime = Runtime::new(config)?;
    let began = Instant::now();
    runtime.load_plugin(wasm.to_vec()).await?;
    Ok((compiled, began.elapsed()))
}

/// The resident memory, MiB, of a host serving `count` lights, once it has read them all.
async fn resident(ctx: &mut Ctx, plugin: &str, count: usize) -> anyhow::Result<f64> {
    let id = ctx.id("py-mem");
    let config = demo_config(&id, devices("light", count), 10);
    let (proc, _driver, _) = start_online_with(ctx, plugin, &config, &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(proc.rss_kib() / 1024.0)
}

/// p99 of toggles at 100 a second over 10 lights.
async fn round_trip_p99(ctx: &mut Ctx, plugin: &str) -> anyhow::Result<f64> {
    let id = ctx.id("py-rt");
    let config = demo_config(&id, devices("light", 10), 10);
    let (_proc, mut driver, _) = start_online_with(ctx, plugin, &config, &["devices/+/cmd/response"]).await?;
    load(&mut driver, &id, 100.0, Duration::from_secs(1), "warm").await?;
    let mut measured = load(&mut driver, &id, 100.0, ctx.secs(5, 10), "steady").await?;
    anyhow::ensure!(
        measured.answered == measured.sent,
        "{plugin}: {} of {} commands were answered",
        measured.answered,
        measured.sent
    );
    Ok(measured.p(99.0))
}

/// States a second reaching a subscriber from [`SENSORS`] sensors read every second.
async fn states_per_second(ctx: &mut Ctx, plugin: &str) -> anyhow::Result<f64> {
    let id = ctx.id("py-tp");
    let config = demo_config(&id, devices("sensor", SENSORS), 1);
    let (_proc, _, _) = start_online_with(ctx, plugin, &config, &[]).await?;
    let root = topics(&id)?.root().to_string();
    let filters = [format!("{root}/devices/+/state")];
    let mut tally = Tally::start(ctx.broker, &filters).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = ctx.secs(5, 10);
    let counted = tally.count(&root, window).await;
    Ok(counted.states as f64 / window.as_secs_f64())
}
