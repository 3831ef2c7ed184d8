//! Command round trip (a command published with an id → its response received) and state
//! throughput, for one instance in its own process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ms, start_online, topics};
use crate::driver::Driver;
use crate::report::{Subject, percentile};
use crate::tally::{Tally, describe_gaps};
use crate::{Ctx, demo_config, devices};

/// Rates tried for the highest sustainable one, commands per second.
const RATES: [f64; 9] = [100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0, 20_000.0, 50_000.0];
/// Sustainable: everything answered, and p99 below this.
const SUSTAINABLE_P99_MS: f64 = 50.0;

/// What one load step saw.
#[derive(Debug, Default)]
pub(super) struct Measured {
    latencies: Vec<f64>,
    pub(super) sent: usize,
    pub(super) answered: usize,
    twice: usize,
}

impl Measured {
    pub(super) fn p(&mut self, p: f64) -> f64 {
        percentile(&mut self.latencies, p)
    }

    fn sustained(&mut self) -> bool {
        self.answered == self.sent && self.twice == 0 && self.p(99.0) < SUSTAINABLE_P99_MS
    }
}

/// Send toggles to the 10 devices at `rate` for `duration`; time each response.
pub(super) async fn load(
    driver: &mut Driver,
    id: &str,
    rate: f64,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<Measured> {
    load_values(driver, id, rate, duration, tag, &json!({"power": "toggle"})).await
}

/// The same with commands of `values`.
pub(super) async fn load_values(
    driver: &mut Driver,
    id: &str,
    rate: f64,
    duration: Duration,
    tag: &str,
    values: &Value,
) -> anyhow::Result<Measured> {
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
                    let payload = json!({"id": cmd, "values": values}).to_string();
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
    // The same commands through the embedded broker, in a process of its own as Mosquitto is
    // (in use it runs inside `serve`, never beside the client measuring). Each run measures it
    // right after Mosquitto's 100/s, on a fresh instance and before the heavier steps, so that
    // both brokers are measured on the same quiet machine.
    let embedded_port = crate::procs::free_port();
    let embedded = crate::procs::embedded_broker(embedded_port)?;
    let mut p99_embedded = vec![];
    for subject in ctx.subjects() {
        let (mut p50, mut p99, mut max, mut best_rate, mut best_p99) = (vec![], vec![], vec![], vec![], vec![]);
        let mut p99_busy = vec![];
        for _ in 0..ctx.runs {
            let id = ctx.id("rt");
            let config = demo_config(&id, devices("light", 10), 10);
            let (_proc, mut driver, _) = start_online(ctx, subject, &config, &["devices/+/cmd/response"]).await?;
            load(&mut driver, &id, 100.0, Duration::from_secs(1), "warm").await?;
            let mut m = load(&mut driver, &id, 100.0, steady, "steady").await?;
            p50.push(m.p(50.0));
            p99.push(m.p(99.0));
            max.push(m.p(100.0));
            if subject == Subject::Iot2mqtt {
                let mosquitto = std::mem::replace(&mut ctx.broker, embedded_port);
                let measured = embedded_round_trip(ctx, steady).await;
                ctx.broker = mosquitto;
                p99_embedded.push(measured?);
            }
            let mut busy = load(&mut driver, &id, 1000.0, steady, "busy").await?;
            p99_busy.push(if busy.answered == busy.sent { busy.p(99.0) } else { f64::INFINITY });
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
        r.figure("round_trip_p99_at_1000_per_s", subject, "ms", p99_busy)
            .target_for_ours(2.0, "< 2 ms")
            .note("every command answered, else infinite");
        r.figure("highest_sustainable_command_rate", subject, "cmd/s", best_rate)
            .higher_is_better()
            .note(format!("all answered, p99 < {SUSTAINABLE_P99_MS} ms"));
        r.figure("round_trip_p99_at_that_rate", subject, "ms", best_p99);
    }
    embedded.stop();
    ctx.report
        .figure("round_trip_p99_at_100_per_s_embedded_broker", Subject::Iot2mqtt, "ms", p99_embedded)
        .target_for_ours(1.0, "< 1 ms")
        .note("through the embedded broker, in a process of its own");
    Ok(())
}

/// The embedded broker's process (`iot2mqtt-bench broker`): anonymous clients allowed, the
/// rest of its configuration `serve`'s defaults; until SIGTERM.
pub async fn broker_child(port: u16) -> anyhow::Result<()> {
    let broker = iot2mqtt_broker::Broker::start(iot2mqtt_broker::BrokerConfig {
        listen: ([127, 0, 0, 1], port).into(),
        anonymous: true,
        ..iot2mqtt_broker::BrokerConfig::default()
    })
    .await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    terminate.recv().await;
    broker.stop().await;
    Ok(())
}

/// p99 of commands at 100/s on a fresh instance, through whatever broker `ctx.broker` is.
async fn embedded_round_trip(ctx: &mut Ctx, steady: Duration) -> anyhow::Result<f64> {
    let id = ctx.id("rte");
    let config = demo_config(&id, devices("light", 10), 10);
    let (_proc, mut driver, _) = start_online(ctx, Subject::Iot2mqtt, &config, &["devices/+/cmd/response"]).await?;
    load(&mut driver, &id, 100.0, Duration::from_secs(1), "warm").await?;
    Ok(load(&mut driver, &id, 100.0, steady, "steady").await?.p(99.0))
}

/// Wait until a second passes in which every one of `count` devices published its state: the
/// instance has started all of them and reads on schedule, so what follows measures the steady
/// load and not the start. A subject that cannot keep up is taken as steady once a second's
/// count stops growing; 30 s at most.
async fn until_on_schedule(tally: &mut Tally, root: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = 0;
    while Instant::now() < deadline {
        let second = tally.count(root, Duration::from_secs(1)).await;
        let seen = second.per_device.len();
        if seen >= count || (before > 0 && second.states <= before + before / 100) {
            break;
        }
        before = second.states;
    }
}

/// `throughput`: state publications per second of one instance reading every device each
/// second, counted by a subscriber that sees every message; the CPU the instance's process
/// spends per state publication (with its per-key topics); how late the reads fall behind
/// their one-second schedule; and the MQTT bytes one state update costs.
pub async fn throughput(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("throughput: one instance, sensors read every second");
    let window = ctx.secs(5, 10);
    for subject in ctx.subjects() {
        let sizes: &[usize] = match (subject, ctx.quick) {
            (Subject::Iot2mqtt, false) => &[100, 1000, 5000],
            (Subject::Baseline, false) | (Subject::Iot2mqtt, true) => &[100, 1000],
            (Subject::Baseline, true) => &[100],
        };
        let largest = sizes.last().copied().unwrap_or(0);
        let (mut rates, mut bytes, mut cores, mut per_state, mut late) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ctx.runs {
            let mut best = 0.0f64;
            let mut per_update = f64::NAN;
            for &count in sizes {
                let id = ctx.id("tp");
                let config = demo_config(&id, devices("sensor", count), 1);
                let (proc, _, _) = start_online(ctx, subject, &config, &[]).await?;
                let root = topics(&id)?.root().to_string();
                let filters = [format!("{root}/devices/+/state"), format!("{root}/devices/+/state/+")];
                let mut tally = Tally::start(ctx.broker, &filters).await?;
                until_on_schedule(&mut tally, &root, count).await;
                let cpu_before = proc.cpu_seconds();
                let started = Instant::now();
                let mut counted = tally.count(&root, window).await;
                let elapsed = started.elapsed().as_secs_f64();
                let cpu = proc.cpu_seconds() - cpu_before;
                let rate = counted.states as f64 / elapsed;
                best = best.max(rate);
                if counted.states > 0 {
                    per_update = counted.bytes as f64 / counted.states as f64;
                }
                if count == largest {
                    cores.push(cpu / elapsed);
                    per_state.push(if counted.states > 0 { cpu / counted.states as f64 * 1e6 } else { f64::NAN });
                    let p99 = percentile(&mut counted.periods, 99.0);
                    late.push(((p99 - 1.0) * 1000.0).max(0.0));
                }
            }
            rates.push(best);
            bytes.push(per_update);
        }
        let r = &mut ctx.report;
        let rate = r
            .figure("state_publications_per_s", subject, "msg/s", rates)
            .higher_is_better()
            .note(format!("up to {largest} devices read each second, counted by a subscriber"));
        if largest >= 5000 {
            // Every read, give or take the reads cut by the counting window's two edges.
            drop(rate.target_for_ours(4950.0, "every read of 5,000 devices each second (± 1 %)"));
        } else {
            drop(rate);
        }
        r.figure("cpu_cores_reading_every_device", subject, "cores", cores)
            .target_for_ours(0.5, "< half a core at 5,000 devices")
            .note(format!("the instance's process, user + system, at {largest} devices"));
        r.figure("cpu_per_state_publication", subject, "µs", per_state)
            .target_for_ours(50.0, "≤ 50 µs")
            .note("a state with its per-key topics, read, published and acknowledged");
        r.figure("reads_behind_schedule_p99", subject, "ms", late)
            .note("p99 of one device's time between states, minus the 1 s interval");
        r.figure("mqtt_bytes_per_state_update", subject, "B", bytes).note("state + per-key topics, as QoS 1 packets");
    }
    Ok(())
}

/// `soak` (only with `--soak`): 5,000 devices read every second for ten minutes (one with
/// `--quick`): states lost (a device's count against the seconds it ran) and memory growth.
pub async fn soak(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("soak: 5,000 devices read every second, ten minutes");
    let duration = ctx.secs(60, 600);
    let count = 5000;
    let id = ctx.id("soak");
    let config = demo_config(&id, devices("sensor", count), 1);
    let (proc, _, _) = start_online(ctx, Subject::Iot2mqtt, &config, &[]).await?;
    let root = topics(&id)?.root().to_string();
    let mut tally = Tally::start(ctx.broker, &[format!("{root}/devices/+/state")]).await?;
    // Memory after the first minute is the baseline: caches and queues have found their size.
    let warm = ctx.secs(10, 60);
    tally.count(&root, warm).await;
    let rss_start = proc.rss_kib();
    let counted = tally.count(&root, duration).await;
    let rss_end = proc.rss_kib();
    let expected = duration.as_secs() as usize - 1;
    let lost: usize = (0..count)
        .map(|i| expected.saturating_sub(counted.per_device.get(&format!("d{i}")).copied().unwrap_or(0)))
        .sum();
    let warnings = proc.log().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count();
    let r = &mut ctx.report;
    r.figure("soak_states_lost", Subject::Iot2mqtt, "states", vec![lost as f64]).target_for_ours(1.0, "none").note(
        format!(
            "{} states received in {} s; {}; the instance logged {warnings} warnings",
            counted.states,
            duration.as_secs(),
            describe_gaps(&counted.gaps)
        ),
    );
    r.figure("soak_memory_growth", Subject::Iot2mqtt, "MiB", vec![(rss_end - rss_start) / 1024.0])
        .note(format!("RSS from {:.0} MiB after warming up", rss_start / 1024.0));
    Ok(())
}
