//! Density: N demo instances (one device each, polled every 10 s) in one embedded process,
//! its resident memory per instance and its CPU use at idle; the baseline runs one process
//! per instance.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use iot2mqtt_runtime::{EngineConfig, InstanceOptions, InstanceSpec, Runtime};

use super::start_online;
use crate::procs::{self, Proc};
use crate::report::Subject;
use crate::{Ctx, demo_config, devices};

/// Instances started at once before waiting for them.
const BATCH: usize = 250;

/// `density`: N = 10, 100, 1,000, 10,000 (quick: up to 1,000) embedded; the baseline up to
/// 100 processes (quick: 10).
pub async fn density(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("density: N demo instances, one device each, 10 s poll");
    let idle = ctx.secs(10, 20);
    let counts: &[usize] = if ctx.quick { &[10, 100, 1000] } else { &[10, 100, 1000, 10_000] };
    let empty = measure_embedded(ctx, 0, idle).await?;
    for &count in counts {
        let (mut per_instance, mut cpu, mut started) = (vec![], vec![], vec![]);
        let runs = if count >= 1000 { 1 } else { ctx.runs };
        for _ in 0..runs {
            let m = measure_embedded(ctx, count, idle).await?;
            per_instance.push(m.rss_kib / count as f64);
            cpu.push(m.cpu_percent);
            started.push(count as f64 / m.start_seconds);
        }
        let name = format!("rss_per_instance_{count}");
        let figure = ctx
            .report
            .figure(&name, Subject::Iot2mqtt, "KiB", per_instance)
            .note(format!("process RSS / N, MQTT session included; empty process {:.1} MiB", empty.rss_kib / 1024.0));
        if count == 10_000 {
            drop(figure.target(512.0, "< 512 KiB, 20× less than the baseline"));
        } else {
            drop(figure);
        }
        ctx.report.figure(&format!("idle_cpu_{count}"), Subject::Iot2mqtt, "% of a core", cpu);
        ctx.report.figure(&format!("start_rate_{count}"), Subject::Iot2mqtt, "instances/s", started).higher_is_better();
    }
    if ctx.baseline {
        let counts: &[usize] = if ctx.quick { &[10] } else { &[10, 100] };
        for &count in counts {
            let (mut per, mut cpu) = (vec![], vec![]);
            for _ in 0..ctx.runs {
                let mut running: Vec<Proc> = Vec::new();
                for _ in 0..count {
                    let id = ctx.id("dn");
                    let config = demo_config(&id, devices("light", 1), 10);
                    running.push(start_online(ctx, Subject::Baseline, &config, &[]).await?.0);
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                let cpu_before: f64 = running.iter().map(Proc::cpu_seconds).sum();
                let started = Instant::now();
                tokio::time::sleep(idle).await;
                let cpu_after: f64 = running.iter().map(Proc::cpu_seconds).sum();
                let rss: f64 = running.iter().map(Proc::rss_kib).sum();
                per.push(rss / count as f64);
                cpu.push((cpu_after - cpu_before) / started.elapsed().as_secs_f64() * 100.0);
            }
            // The baseline's figure stands beside ours of the same N.
            ctx.report
                .figure(&format!("rss_per_instance_{count}"), Subject::Baseline, "KiB", per)
                .note("one process per instance");
            ctx.report.figure(&format!("idle_cpu_{count}"), Subject::Baseline, "% of a core", cpu);
        }
        if !ctx.quick {
            // Memory per process does not shrink with N: the 100-process figure stands for 10,000.
            let last = ctx
                .report
                .figures()
                .iter()
                .rev()
                .find(|f| f.subject == Subject::Baseline && f.name == "rss_per_instance_100")
                .map(|f| f.runs.clone())
                .unwrap_or_default();
            ctx.report
                .figure("rss_per_instance_10000", Subject::Baseline, "KiB", last)
                .note("measured at 100 processes; 10,000 do not fit this machine");
        }
    }
    Ok(())
}

struct Density {
    rss_kib: f64,
    cpu_percent: f64,
    start_seconds: f64,
}

/// Run `count` instances in a child process; its memory and idle CPU.
async fn measure_embedded(ctx: &Ctx, count: usize, idle: Duration) -> anyhow::Result<Density> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["density", "--port", &ctx.broker.to_string(), "--count", &count.to_string()])
        .arg("--plugin")
        .arg(ctx.paths.plugin("demo"))
        .arg("--cache")
        .arg(ctx.cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let start_seconds: f64 = line
        .strip_prefix("ready ")
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("the density process said {line:?}"))?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = procs::cpu_seconds(pid);
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let cpu_percent = (procs::cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    let rss_kib = procs::rss_kib(pid);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"stop\n");
    }
    drop(child.stdin.take());
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    Ok(Density { rss_kib, cpu_percent, start_seconds: start_seconds.max(1e-6) })
}

/// The child: start `count` instances in batches, say `ready <seconds>`, idle until stdin
/// closes.
pub async fn density_child(port: u16, count: usize, plugin: PathBuf, cache: PathBuf) -> anyhow::Result<()> {
    procs::raise_limits();
    let runtime = Runtime::new(EngineConfig { cache_dir: Some(cache), shared_cache_dir: None })?;
    let plugin = runtime.load_plugin(std::fs::read(&plugin)?).await?;
    let mqtt = iot2mqtt_contract::MqttSettings { host: "127.0.0.1".into(), port, ..Default::default() };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(BATCH) {
        let first = handles.len();
        for i in batch {
            let config = serde_json::from_value(demo_config(&format!("dens-{i}"), devices("light", 1), 10))?;
            let spec = InstanceSpec {
                config,
                mqtt: mqtt.clone(),
                plugin: plugin.clone(),
                options: InstanceOptions::default(),
            };
            handles.push(runtime.start(spec));
        }
        for handle in &handles[first..] {
            let mut status = handle.watch_status();
            tokio::time::timeout(Duration::from_secs(120), status.wait_for(|s| s.ready && s.mqtt_connected))
                .await
                .context("an instance did not become ready in time")??;
        }
    }
    println!("ready {}", started.elapsed().as_secs_f64());
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    for handle in handles {
        handle.stop().await;
    }
    Ok(())
}
