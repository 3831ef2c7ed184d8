//! The embedded broker's sessions on any bytes: up to three logged-in clients (full access or
//! limited by ACL, MQTT 3.1.1 or 5.0, clean or persistent sessions that outlive the input) send
//! what the fuzzer chose, interleaved; then a new client must still be served. A panic in the
//! broker aborts the process (cargo-fuzz builds with panic=abort), and a broker that stops
//! answering fails the health check.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iot2mqtt_broker::{Access, Account, Accounts, Broker, BrokerConfig, Limits};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::timeout;

struct Target {
    runtime: Runtime,
    addr: SocketAddr,
    _broker: Broker,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    // libFuzzer's `main` is C's: unlike a Rust program, it leaves SIGPIPE fatal, so a write to a
    // connection the peer closed (on either side) would kill the process. Do as Rust's runtime
    // does in `iot2mqtt serve`.
    // SAFETY: setting a signal's disposition to "ignore" before any thread of ours exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let accounts = Accounts::default();
    accounts.set("full", Account::new("pw", Access::All, None));
    let limited = Access::Limited { publish: vec!["a/#".into()], subscribe: vec!["a/+/b".into(), "$SYS/#".into()] };
    accounts.set("limited", Account::new("pw", limited, None));
    // Small limits, so that inputs reach them.
    let limits = Limits {
        max_packet: 4096,
        max_topic_len: 64,
        max_topic_levels: 8,
        max_queued: 16,
        max_queued_bytes: 2048,
        max_retained: 32,
        max_retained_bytes: 8192,
        max_subscriptions: 16,
        ..Limits::default()
    };
    let config = BrokerConfig { listen: ([127, 0, 0, 1], 0).into(), accounts, limits, ..BrokerConfig::default() };
    let broker = runtime.block_on(Broker::start(config)).unwrap();
    Target { addr: broker.local_addr(), runtime, _broker: broker }
});

static PROBES: AtomicU64 = AtomicU64::new(0);

/// CONNECT with a login, in MQTT 3.1.1 (level 4) or 5.0 (level 5, empty properties).
fn connect(level: u8, client_id: &str, user: &str, clean: bool) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0xC0 | if clean { 0x02 } else { 0 }, 0, 30];
    if level == 5 {
        body.push(0);
    }
    for field in [client_id.as_bytes(), user.as_bytes(), b"pw"] {
        body.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        body.extend_from_slice(field);
    }
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

async fn session(addr: SocketAddr, data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let clients = 1 + usize::from(flags & 3) % 3;
    let level = if flags & 4 != 0 { 5 } else { 4 };
    let clean = flags & 8 != 0;
    let mut streams = Vec::new();
    for i in 0..clients {
        let Ok(mut stream) = TcpStream::connect(addr).await else { return };
        let user = if i == 1 && flags & 16 != 0 { "limited" } else { "full" };
        if stream.write_all(&connect(level, &format!("fuzz-{i}"), user, clean)).await.is_err() {
            return;
        }
        streams.push(stream);
    }
    // Frames: [client][length][bytes].
    while let [select, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        // A client the broker already dropped cannot be written to; that is an answer too.
        let _ = streams[usize::from(*select) % clients].write_all(chunk).await;
        rest = next;
    }
    let mut sink = vec![0u8; 64 << 10];
    for stream in &mut streams {
        let _ = stream.shutdown().await;
        let _ =
            timeout(Duration::from_secs(2), async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} })
                .await;
    }
    // Whatever happened, a new client is still served. (A new client id each time: the broker
    // answers "server unavailable" to a client id whose previous connection is still closing.)
    let probe_id = format!("probe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
    let mut probe = TcpStream::connect(addr).await.expect("the broker still accepts connections");
    probe.write_all(&connect(4, &probe_id, "full", true)).await.expect("the broker reads a CONNECT");
    let mut connack = [0u8; 4];
    timeout(Duration::from_secs(5), probe.read_exact(&mut connack))
        .await
        .expect("the broker answers a CONNECT in time")
        .expect("the broker answers a CONNECT");
    assert_eq!(connack, [0x20, 2, 0, 0], "the broker accepts a valid login");
}

fuzz_target!(|data: &[u8]| {
    let target = &*TARGET;
    target.runtime.block_on(session(target.addr, data));
});
