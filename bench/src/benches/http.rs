//! `http`: a device spoken to over HTTP through `wasi:http`: the Shelly connector against a
//! minimal Gen2 device on loopback (it answers `Switch.Set` and `Shelly.GetStatus` at once,
//! so the figures are the host's and the plugin's). Command round trip at 100 commands a
//! second, and the most requests a second one plugin instance completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::latency::load_values;
use super::start_online_with;
use crate::Ctx;
use crate::report::Subject;

/// Devices of the instance (all at the one simulated address).
const DEVICES: usize = 10;
/// The rate offered to find how many requests one plugin completes a second.
const FLOOD_PER_S: f64 = 10_000.0;

pub async fn http(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("http: a Shelly over wasi:http, the host making each request");
    let (port, requests) = device().await?;
    let (mut p99, mut rates, mut commands) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ctx.runs {
        let id = ctx.id("http");
        let devices: Vec<Value> =
            (0..DEVICES).map(|i| json!({"device_id": format!("d{i}"), "host": "127.0.0.1", "port": port})).collect();
        let config =
            json!({"instance_id": id, "connector_type": "shelly", "update_interval": 3600, "devices": devices});
        let (_proc, mut driver, _) = start_online_with(ctx, "shelly", &config, &["devices/+/cmd/response"]).await?;
        let on = json!({"power": true});
        load_values(&mut driver, &id, 100.0, Duration::from_secs(1), "warm", &on).await?;
        let mut steady = load_values(&mut driver, &id, 100.0, ctx.secs(5, 10), "steady", &on).await?;
        anyhow::ensure!(
            steady.answered == steady.sent,
            "{} of {} commands were answered",
            steady.answered,
            steady.sent
        );
        p99.push(steady.p(99.0));
        let before = requests.load(Ordering::Relaxed);
        let window = ctx.secs(3, 5);
        let flood = load_values(&mut driver, &id, FLOOD_PER_S, window, "flood", &on).await?;
        rates.push((requests.load(Ordering::Relaxed) - before) as f64 / window.as_secs_f64());
        commands.push(flood.answered as f64 / window.as_secs_f64());
    }
    let r = &mut ctx.report;
    r.figure("http_command_round_trip_p99_at_100_per_s", Subject::Iot2mqtt, "ms", p99)
        .note("MQTT command → Switch.Set over HTTP → response, 10 devices");
    r.figure("http_requests_per_s_per_plugin", Subject::Iot2mqtt, "req/s", rates)
        .higher_is_better()
        .note(format!(
            "{FLOOD_PER_S} commands/s offered to one instance, requests counted by the device (a command is Switch.Set, then the state read back)"
        ));
    r.figure("http_commands_per_s_per_plugin", Subject::Iot2mqtt, "cmd/s", commands)
        .higher_is_better()
        .note("of those offered, answered within the window and its 3 s grace");
    Ok(())
}

/// A minimal Gen2 device on a free port of loopback, counting the requests it answers.
async fn device() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    use axum::routing::post;
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/rpc",
        post(move |body: String| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                let frame: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let result = match frame["method"].as_str() {
                    Some("Switch.Set") => json!({"was_on": false}),
                    _ => json!({"switch:0": {"id": 0, "output": true, "apower": 5.0}, "wifi": {"rssi": -50}}),
                };
                axum::Json(json!({"id": frame["id"], "src": "bench", "result": result}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, requests))
}
