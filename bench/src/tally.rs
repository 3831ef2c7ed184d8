//! The counting subscriber of the throughput benchmarks: `mosquitto_sub` in a process of its
//! own, printing each message's arrival time, payload length and topic, read here line by
//! line; a window is cut by those arrival times. The benchmark's own MQTT client, counting
//! in its process, fell behind at 20,000 messages a second (5,000 states with their per-key
//! topics) on a 2-core VM: it counted 4,089 states a second, reads 325 ms behind their
//! schedule at p99, where `mosquitto_sub` counted 5,009 a second from the same host.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::driver::publish_packet_size;

/// A device went this long without a state: one and a half read intervals (of one second).
pub const GAP_SECONDS: f64 = 1.5;

/// A subscriber that counts what it receives.
#[derive(Debug)]
pub struct Tally {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// A line read past the end of the last window: the next window's.
    held: Option<Arrival>,
}

/// One message as `mosquitto_sub` printed it.
#[derive(Debug)]
struct Arrival {
    /// Seconds since the Unix epoch.
    at: f64,
    payload: usize,
    topic: String,
}

impl Arrival {
    /// A line of `mosquitto_sub -F '%U %l %t'`: arrival time, payload length, topic.
    fn parse(line: &str) -> Option<Self> {
        let mut parts = line.splitn(3, ' ');
        let at = parts.next()?.parse().ok()?;
        let payload = parts.next()?.parse().ok()?;
        let topic = parts.next()?.to_string();
        Some(Self { at, payload, topic })
    }
}

/// What arrived in a window.
#[derive(Debug, Default)]
pub struct Counted {
    /// State publications (`…/devices/{d}/state`).
    pub states: usize,
    /// Bytes of every message counted, state and per-key, as QoS 1 packets.
    pub bytes: usize,
    /// Seconds between one device's consecutive states.
    pub periods: Vec<f64>,
    /// States per device.
    pub per_device: HashMap<String, usize>,
    /// Where one device went more than [`GAP_SECONDS`] without a state.
    pub gaps: Vec<Gap>,
}

/// A device's states further apart than [`GAP_SECONDS`].
#[derive(Debug)]
pub struct Gap {
    /// Seconds into the window when the state that ended it arrived.
    pub at: f64,
    /// Seconds between its two states.
    pub seconds: f64,
}

impl Tally {
    /// Subscribe to `filters` on the broker on `port` at QoS 0, skipping retained messages
    /// (they were published before the count), and wait for the first message.
    pub async fn start(port: u16, filters: &[String]) -> anyhow::Result<Self> {
        let mut command = Command::new("mosquitto_sub");
        command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "0", "-R", "-F", "%U %l %t"]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start mosquitto_sub (apt-get install mosquitto-clients)")?;
        let stdout = child.stdout.take().context("mosquitto_sub has no stdout")?;
        let mut tally = Self { _child: child, lines: BufReader::new(stdout).lines(), held: None };
        let first = tokio::time::timeout(Duration::from_secs(30), tally.next())
            .await
            .context("mosquitto_sub received nothing within 30 s")?
            .context("mosquitto_sub stopped")?;
        tally.held = Some(first);
        Ok(tally)
    }

    async fn next(&mut self) -> Option<Arrival> {
        if let Some(held) = self.held.take() {
            return Some(held);
        }
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Some(arrival) = Arrival::parse(&line) {
                return Some(arrival);
            }
        }
    }

    /// Count every state and per-key publication under `root` that arrives in the next
    /// `window`.
    pub async fn count(&mut self, root: &str, window: Duration) -> Counted {
        let mut counted = Counted::default();
        let mut last: HashMap<String, f64> = HashMap::new();
        let start = now();
        let end = start + window.as_secs_f64();
        // Lines are read until one arrived after the window, or until nothing came for a
        // second past its end.
        let give_up = tokio::time::Instant::now() + window + Duration::from_secs(1);
        while let Ok(Some(arrival)) = tokio::time::timeout_at(give_up, self.next()).await {
            if arrival.at < start {
                continue;
            }
            if arrival.at >= end {
                self.held = Some(arrival);
                break;
            }
            counted.bytes += publish_packet_size(&arrival.topic, arrival.payload);
            let device = arrival.topic.strip_prefix(root).and_then(|r| r.strip_prefix("/devices/"));
            let Some(device) = device.and_then(|d| d.strip_suffix("/state")) else { continue };
            counted.states += 1;
            *counted.per_device.entry(device.to_string()).or_default() += 1;
            if let Some(before) = last.insert(device.to_string(), arrival.at) {
                let seconds = arrival.at - before;
                counted.periods.push(seconds);
                if seconds > GAP_SECONDS {
                    counted.gaps.push(Gap { at: arrival.at - start, seconds });
                }
            }
        }
        counted
    }
}

/// Seconds since the Unix epoch, as `mosquitto_sub`'s `%U` prints them.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// When devices went without a state for longer than [`GAP_SECONDS`], grouped into moments
/// (gaps ending within two seconds of each other): one moment for many devices points at a
/// stall of the whole path, scattered single ones at single reads.
pub fn describe_gaps(gaps: &[Gap]) -> String {
    if gaps.is_empty() {
        return format!("no device went {GAP_SECONDS} s without a state");
    }
    let mut sorted: Vec<&Gap> = gaps.iter().collect();
    sorted.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut moments: Vec<(f64, usize, f64)> = Vec::new();
    for gap in sorted {
        match moments.last_mut() {
            Some((at, devices, longest)) if gap.at - *at < 2.0 => {
                *devices += 1;
                *longest = longest.max(gap.seconds);
            }
            _ => moments.push((gap.at, 1, gap.seconds)),
        }
    }
    let shown: Vec<String> = moments
        .iter()
        .take(10)
        .map(|(at, devices, longest)| format!("{at:.1} s: {devices} of them, longest {longest:.2} s"))
        .collect();
    format!("{} gaps over {GAP_SECONDS} s, at {}", gaps.len(), shown.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_mosquitto_sub_is_read_and_anything_else_skipped() {
        let arrival = Arrival::parse("1796683409.344729846 119 IoT2mqtt/v1/instances/x/devices/d 1/state");
        let arrival = arrival.expect("a well-formed line");
        assert!((arrival.at - 1_796_683_409.344_73).abs() < 1e-5);
        assert_eq!(arrival.payload, 119);
        assert_eq!(arrival.topic, "IoT2mqtt/v1/instances/x/devices/d 1/state");
        assert!(Arrival::parse("Timed out").is_none());
        assert!(Arrival::parse("1796683409.3 many a/b").is_none());
    }

    #[test]
    fn gaps_are_grouped_into_moments() {
        let gaps = [Gap { at: 10.0, seconds: 1.6 }, Gap { at: 10.5, seconds: 2.1 }, Gap { at: 300.0, seconds: 1.7 }];
        assert_eq!(
            describe_gaps(&gaps),
            "3 gaps over 1.5 s, at 10.0 s: 2 of them, longest 2.10 s; 300.0 s: 1 of them, longest 1.70 s"
        );
        assert_eq!(describe_gaps(&[]), "no device went 1.5 s without a state");
    }
}
