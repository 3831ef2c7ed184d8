//! Command round trip (a command published with an id → its response received) and state
//! throughput, for one instance in its own process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ms, start_online, topics};
use crate::driver::{Driver, publish_packet_size};
use crate::report::{Subject, percentile};
use crate::{Ctx, demo_config, devices};

/// Rates tried for the highest sustainable one, commands per second.
const RATES: [f64; 9] = [100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0, 20_000.0, 50_000.0];
/// Sustainable: everything answered, and p99 below this.
const SUSTAINABLE_P99_MS: f64 = 50.0;

/// What one load step saw.
#[derive(Debug, Default)]
struct Measured {
    latencies: Vec<f64>,
    sent: usize,
    answered: usize,
    twice: usize,
}

impl Measured {
    fn p(&mut self, p: f64) -> f64 {
        percentile(&mut self.latencies, p)
    }

    fn sustained(&mut self) -> bool {
        self.answered == self.sent && self.twice == 0 && self.p(99.0) < SUSTAINABLE_P99_MS
    }
}

/// Send toggles to the 10 devices at `rate` for `duration`; time each response.
async fn load(driver: &mut Driver, id: &str, rate: f64, duration: Duration, tag: &str) -> anyhow::Result<Measured> {
    let t = topics(id)?;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut measured = Measured::default();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < duration {
        tokio::select! {
            _ = tick.tick() => {
                let due = (start.elapsed().as_secs_f64() * rate) as usize;
                while measured.sent < due {
                    let n = measured.sent;
                    let cmd = format!("{tag}-{n}");
                    let payload = json!({"id": cmd, "values": {"power": "toggle"}}).to_string();
                    sent_at.insert(cmd, Instant::now());
                    driver.publish(&t.command(&format!("d{}", n % 10)), payload).await?;
                    measured.sent += 1;
                }
            }
            Some(msg) = driver.rx.recv() => take(&msg, &sent_at, &mut answered, &mut measured),
        }
    }
    let grace = tokio::time::Instant::now() + Duration::from_secs(3);
    while measured.answered < measured.sent {
        match tokio::time::timeout_at(grace, driver.rx.recv()).await {
            Ok(Some(msg)) => take(&msg, &sent_at, &mut answered, &mut measured),
            _ => break,
        }
    }
    Ok(measured)
}

/// Count a response: its latency the first time, a duplicate after.
fn take(
    msg: &crate::driver::Msg,
    sent_at: &HashMap<String, Instant>,
    answered: &mut HashMap<String, usize>,
    measured: &mut Measured,
) {
    let Ok(body) = serde_json::from_slice::<Value>(&msg.payload) else { return };
    let Some(cmd) = body["cmd_id"].as_str() else { return };
    let Some(at) = sent_at.get(cmd) else { return };
    let count = answered.entry(cmd.to_string()).or_insert(0);
    *count += 1;
    if *count == 1 {
        measured.answered += 1;
        measured.latencies.push(ms(msg.at.duration_since(*at)));
    } else {
        measured.twice += 1;
    }
}

/// `round_trip`: p50/p99/max at 100 commands/s, and the highest sustainable rate.
pub async fn round_trip(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("round_trip: one instance, 10 devices, toggles with ids");
    let steady = ctx.secs(5, 20);
    let step = ctx.secs(2, 5);
    for subject in ctx.subjects() {
        let (mut p50, mut p99, mut max, mut best_rate, mut best_p99) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ctx.runs {
            let id = ctx.id("rt");
            let config = demo_config(&id, devices("light", 10), 10);
            let (_proc, mut driver, _) = start_online(ctx, subject, &config, &["devices/+/cmd/response"]).await?;
            load(&mut driver, &id, 100.0, Duration::from_secs(1), "warm").await?;
            let mut m = load(&mut driver, &id, 100.0, steady, "steady").await?;
            p50.push(m.p(50.0));
            p99.push(m.p(99.0));
            max.push(m.p(100.0));
            let (mut rate, mut at) = (0.0, f64::NAN);
            for candidate in RATES {
                let mut m = load(&mut driver, &id, candidate, step, &format!("r{candidate}")).await?;
                if !m.sustained() {
                    break;
                }
                (rate, at) = (candidate, m.p(99.0));
            }
            best_rate.push(rate);
            best_p99.push(at);
        }
        let r = &mut ctx.report;
        r.figure("round_trip_p50_at_100_per_s", subject, "ms", p50);
        r.figure("round_trip_p99_at_100_per_s", subject, "ms", p99)
            .target_for_ours(1.0, "< 1 ms, 5× better than the baseline");
        r.figure("round_trip_max_at_100_per_s", subject, "ms", max);
        r.figure("highest_sustainable_command_rate", subject, "cmd/s", best_rate)
            .higher_is_better()
            .note(format!("all answered, p99 < {SUSTAINABLE_P99_MS} ms"));
        r.figure("round_trip_p99_at_that_rate", subject, "ms", best_p99);
    }
    // The same commands through the embedded broker instead of Mosquitto.
    let embedded = iot2mqtt_broker::Broker::start(iot2mqtt_broker::BrokerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        anonymous: true,
        ..iot2mqtt_broker::BrokerConfig::default()
    })
    .await?;
    let mosquitto = std::mem::replace(&mut ctx.broker, embedded.local_addr().port());
    let measured = embedded_round_trips(ctx, steady).await;
    ctx.broker = mosquitto;
    embedded.stop().await;
    ctx.report
        .figure("round_trip_p99_at_100_per_s_embedded_broker", Subject::Iot2mqtt, "ms", measured?)
        .target_for_ours(1.0, "< 1 ms")
        .note("through the embedded broker, which runs in the benchmark's process");
    Ok(())
}

/// p99 of commands at 100/s, one run each, against whatever broker `ctx.broker` is.
async fn embedded_round_trips(ctx: &mut Ctx, steady: Duration) -> anyhow::Result<Vec<f64>> {
    let mut p99 = Vec::new();
    for _ in 0..ctx.runs {
        let id = ctx.id("rte");
        let config = demo_config(&id, devices("light", 10), 10);
        let (_proc, mut driver, _) = start_online(ctx, Subject::Iot2mqtt, &config, &["devices/+/cmd/response"]).await?;
        load(&mut driver, &id, 100.0, Duration::from_secs(1), "warm").await?;
        p99.push(load(&mut driver, &id, 100.0, steady, "steady").await?.p(99.0));
    }
    Ok(p99)
}

/// `throughput`: state publications per second of one instance polling every device each
/// second, and the MQTT bytes one state update costs (the state and its per-key topics).
pub async fn throughput(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("throughput: one instance, sensors polled every second");
    let window = ctx.secs(5, 10);
    for subject in ctx.subjects() {
        let sizes: &[usize] = match (subject, ctx.quick) {
            (Subject::Iot2mqtt, false) => &[100, 1000, 5000],
            (Subject::Baseline, false) | (Subject::Iot2mqtt, true) => &[100, 1000],
            (Subject::Baseline, true) => &[100],
        };
        let (mut rates, mut bytes) = (vec![], vec![]);
        for _ in 0..ctx.runs {
            let mut best = 0.0f64;
            let mut per_update = f64::NAN;
            for &count in sizes {
                let id = ctx.id("tp");
                let config = demo_config(&id, devices("sensor", count), 1);
                let (_proc, _, _) = start_online(ctx, subject, &config, &[]).await?;
                let root = topics(&id)?.root().to_string();
                let filters = [format!("{root}/devices/+/state"), format!("{root}/devices/+/state/+")];
                let mut driver = Driver::connect_with(ctx.broker, &filters, rumqttc::QoS::AtMostOnce).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                driver.drain();
                let start = Instant::now();
                let (mut states, mut total) = (0usize, 0usize);
                while start.elapsed() < window {
                    let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), driver.rx.recv()).await else {
                        continue;
                    };
                    total += publish_packet_size(&msg.topic, msg.payload.len());
                    if msg.topic.ends_with("/state") {
                        states += 1;
                    }
                }
                let rate = states as f64 / start.elapsed().as_secs_f64();
                best = best.max(rate);
                if states > 0 {
                    per_update = total as f64 / states as f64;
                }
            }
            rates.push(best);
            bytes.push(per_update);
        }
        let largest = sizes.last().copied().unwrap_or(0);
        ctx.report
            .figure("state_publications_per_s", subject, "msg/s", rates)
            .higher_is_better()
            .note(format!("up to {largest} devices polled each second"));
        ctx.report
            .figure("mqtt_bytes_per_state_update", subject, "B", bytes)
            .note("state + per-key topics, as QoS 1 packets");
    }
    Ok(())
}
