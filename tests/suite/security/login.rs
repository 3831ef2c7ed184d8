//! A login flood: attempts are counted before a key is checked, one check at a time per client
//! address and two at a time overall, so a burst neither tries more keys than allowed nor
//! multiplies argon2's 19 MiB blocks.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::serve::{Runtime, Serve};

/// Attempts allowed per address per minute (`iot2mqtt_server::auth::MAX_ATTEMPTS`).
const ALLOWED: usize = 5;

/// The peak resident memory of `pid` so far, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Wrong keys, all at once, from `from`; the statuses.
async fn flood(serve: &Serve, from: &[IpAddr], per_address: usize) -> Vec<StatusCode> {
    let clients: Vec<reqwest::Client> = from
        .iter()
        .map(|ip| reqwest::Client::builder().local_address(*ip).timeout(Duration::from_secs(60)).build().unwrap())
        .collect();
    let url = serve.url("/api/auth/login");
    let attempts = clients.iter().flat_map(|client| {
        (0..per_address).map(|_| {
            let request = client.post(&url).json(&json!({"key": "not the key"}));
            async move { request.send().await.unwrap().status() }
        })
    });
    join_all(attempts).await
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_checks_no_more_keys_than_allowed_and_memory_stays_flat() {
    let serve = Serve::start(Runtime::Embedded).await;
    let before = peak_rss_mib(serve.pid());

    let one = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let statuses = flood(&serve, &one, 200).await;
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    let refused = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=ALLOWED).contains(&checked), "{checked} keys checked from one address (at most {ALLOWED})");
    assert_eq!(checked + refused, statuses.len(), "every other attempt is refused: {statuses:?}");

    // 100 addresses, two attempts each at once: at most two checks run at any time.
    let many: Vec<IpAddr> = (0..100).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i))).collect();
    let statuses = flood(&serve, &many, 2).await;
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    assert!(checked >= 1, "some were checked: {statuses:?}");
    assert_eq!(checked + count(&statuses, StatusCode::TOO_MANY_REQUESTS), statuses.len(), "{statuses:?}");

    let after = peak_rss_mib(serve.pid());
    assert!(
        after < before + 80,
        "peak memory grew from {before} MiB to {after} MiB: key checks are not bounded (two 19 MiB blocks at most)"
    );
    let (status, _) = serve.call(reqwest::Method::GET, "/api/instances", None).await;
    assert_eq!(status, StatusCode::OK, "the server still answers");
}
