//! Hot swap under load (iot2mqtt only; the baseline restarts its process instead): the pause
//! each swap causes, and whether any command was lost or answered twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use iot2mqtt_runtime::{EngineConfig, InstanceOptions, InstanceSpec, Runtime};
use serde_json::{Value, json};

use super::{ms, topics};
use crate::driver::Driver;
use crate::report::{Subject, percentile};
use crate::{Ctx, demo_config, devices};

/// `swap`: swaps of one instance with 10 devices under 100 commands/s.
pub async fn swap(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("hot swap: one instance, 10 devices, 100 commands/s");
    let swaps = if ctx.quick { 20 } else { 100 };
    let runtime =
        Runtime::new(EngineConfig { cache_dir: Some(ctx.cache.path().to_path_buf()), shared_cache_dir: None })?;
    let wasm = std::fs::read(ctx.paths.plugin("demo"))?;
    let plugin = runtime.load_plugin(wasm.clone()).await?;
    let (mut p50, mut p99, mut lost, mut twice, mut reconnects) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ctx.runs {
        let id = ctx.id("sw");
        let t = topics(&id)?;
        let config = serde_json::from_value(demo_config(&id, devices("light", 10), 10))?;
        let mqtt = iot2mqtt_contract::MqttSettings { host: "127.0.0.1".into(), port: ctx.broker, ..Default::default() };
        let mut listener = Driver::connect(ctx.broker, &[format!("{}/devices/+/cmd/response", t.root())]).await?;
        let handle =
            runtime.start(InstanceSpec { config, mqtt, plugin: plugin.clone(), options: InstanceOptions::default() });
        let mut status = handle.watch_status();
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.ready && s.mqtt_connected)).await??;

        let sender = Driver::connect(ctx.broker, &[]).await?;
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicUsize::new(0));
        let load = tokio::spawn({
            let (running, sent, t) = (Arc::clone(&running), Arc::clone(&sent), t.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let n = sent.load(Ordering::Relaxed);
                    let payload = json!({"id": format!("sw-{n}"), "values": {"power": "toggle"}}).to_string();
                    if sender.publish(&t.command(&format!("d{}", n % 10)), payload).await.is_err() {
                        return;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let collect = tokio::spawn(async move {
            let mut answers: HashMap<String, usize> = HashMap::new();
            loop {
                tokio::select! {
                    Some(msg) = listener.rx.recv() => {
                        if let Ok(body) = serde_json::from_slice::<Value>(&msg.payload)
                            && let Some(cmd) = body["cmd_id"].as_str()
                        {
                            *answers.entry(cmd.to_string()).or_insert(0) += 1;
                        }
                    }
                    _ = &mut stop_rx => return answers,
                }
            }
        });

        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut pauses = Vec::new();
        for _ in 0..swaps {
            let report = handle.swap_wasm(wasm.clone()).await?;
            pauses.push(ms(report.pause));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.store(false, Ordering::Relaxed);
        load.await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status = handle.status();
        handle.stop().await;
        let _ = stop_tx.send(());
        let answers = collect.await?;
        let sent = sent.load(Ordering::Relaxed);
        let answered = (0..sent).filter(|n| answers.contains_key(&format!("sw-{n}"))).count();
        p50.push(percentile(&mut pauses, 50.0));
        p99.push(percentile(&mut pauses, 99.0));
        lost.push((sent - answered) as f64);
        twice.push(answers.values().filter(|c| **c > 1).count() as f64);
        reconnects.push(status.reconnects as f64);
        anyhow::ensure!(status.swaps == swaps as u64, "{} swaps done of {swaps}", status.swaps);
    }
    let r = &mut ctx.report;
    r.figure("swap_pause_p50", Subject::Iot2mqtt, "ms", p50).note(format!("{swaps} swaps"));
    r.figure("swap_pause_p99", Subject::Iot2mqtt, "ms", p99).target(1.0, "< 1 ms");
    r.figure("swap_commands_lost", Subject::Iot2mqtt, "commands", lost).target(0.5, "0");
    r.figure("swap_commands_answered_twice", Subject::Iot2mqtt, "commands", twice).target(0.5, "0");
    r.figure("swap_mqtt_reconnects", Subject::Iot2mqtt, "reconnects", reconnects).target(0.5, "0");
    Ok(())
}
