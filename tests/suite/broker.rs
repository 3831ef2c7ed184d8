//! The embedded broker's own rules, beyond what the contract suite (run against it too)
//! exercises: logins and client ids, ACLs, limits (and inputs that must not bring it down),
//! persistent sessions, retained messages, overlapping subscriptions, wills, `$` topics,
//! MQTT 5 clients.

use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iot2mqtt_broker::{Access, Account, Accounts, Broker, BrokerConfig, Limits};
use iot2mqtt_mqtt::QoS;
use iot2mqtt_mqtt::codec::{Connect, Packet, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Observer;
use crate::support::observer::MqttAt;

/// A broker that lets anonymous clients in (the rules below that are not about logins).
async fn open_broker() -> Broker {
    start(BrokerConfig { anonymous: true, ..config() }).await
}

fn config() -> BrokerConfig {
    BrokerConfig { listen: ([127, 0, 0, 1], 0).into(), ..BrokerConfig::default() }
}

async fn start(config: BrokerConfig) -> Broker {
    Broker::start(config).await.unwrap()
}

/// Accounts as `serve` sets them up: itself, one instance, an observer.
fn house() -> Accounts {
    let accounts = Accounts::default();
    accounts.set("serve", Account::new("pw-serve", Access::All, Some("iot2mqtt_web".into())));
    let instance = Access::Limited {
        publish: vec!["h/v1/instances/lamp/#".into()],
        subscribe: vec!["h/v1/instances/lamp/devices/+/cmd".into()],
    };
    accounts.set("instance-lamp", Account::new("pw-lamp", instance, Some("iot2mqtt_lamp".into())));
    accounts.set("ha", Account::new("pw-ha", Access::observer(), None));
    accounts.set("admin", Account::new("pw-admin", Access::All, None));
    accounts
}

/// A raw client: CONNECT with these options, return the socket and the CONNACK code.
async fn raw(port: u16, connect: Connect) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    send(&mut stream, Packet::Connect(connect)).await;
    match next(&mut stream, &mut BytesMut::new()).await {
        Some(Packet::ConnAck { code, .. }) => (stream, code),
        other => panic!("expected a CONNACK, got {other:?}"),
    }
}

async fn send(stream: &mut TcpStream, packet: Packet) {
    let mut out = BytesMut::new();
    packet.encode(&mut out);
    stream.write_all(&out).await.unwrap();
}

/// The next packet, or `None` when the broker closed the connection (or 5 s passed).
async fn next(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Packet> {
    let read = async {
        loop {
            if let Some(packet) = Packet::decode(buf, 1 << 22).unwrap() {
                return Some(packet);
            }
            if stream.read_buf(buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.unwrap_or(None)
}

fn connect(id: &str) -> Connect {
    Connect { client_id: id.into(), keepalive: 30, clean_session: true, will: None, username: None, password: None }
}

fn login(id: &str, user: &str, password: &str) -> Connect {
    Connect { username: Some(user.into()), password: Some(Bytes::from(password.to_string())), ..connect(id) }
}

fn message(topic: &str, payload: &'static [u8], qos: QoS, retain: bool, pkid: u16) -> Packet {
    Packet::Publish(Publish {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        dup: false,
        pkid,
    })
}

async fn publish(stream: &mut TcpStream, topic: &str, payload: &'static [u8], retain: bool) {
    send(stream, message(topic, payload, QoS::AtMostOnce, retain, 0)).await;
}

/// Subscribe and return the SUBACK's codes.
async fn subscribe(stream: &mut TcpStream, filter: &str, qos: QoS) -> Vec<u8> {
    send(stream, Packet::Subscribe { pkid: 7, filters: vec![(filter.into(), qos)] }).await;
    let mut buf = BytesMut::new();
    loop {
        match next(stream, &mut buf).await {
            Some(Packet::SubAck { codes, .. }) => return codes,
            Some(_) => {}
            None => panic!("no SUBACK for {filter}"),
        }
    }
}

/// Whether a fresh client can still connect (the broker is alive and serving).
async fn serving(port: u16) -> bool {
    let (_, code) = raw(port, connect("alive-check")).await;
    code == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_and_wrong_passwords_are_refused_and_client_ids_are_owned() {
    let broker = start(BrokerConfig { accounts: house(), ..config() }).await;
    let port = broker.local_addr().port();
    let cases = [
        ("anonymous", connect("someone"), false),
        ("wrong password", login("x", "ha", "pw-lamp"), false),
        ("unknown user", login("x", "mallory", "pw"), false),
        ("serve's id taken by an observer", login("iot2mqtt_web", "ha", "pw-ha"), false),
        ("an instance under another id", login("iot2mqtt_other", "instance-lamp", "pw-lamp"), false),
        ("the observer", login("ha-1", "ha", "pw-ha"), true),
        ("the instance", login("iot2mqtt_lamp", "instance-lamp", "pw-lamp"), true),
        ("serve", login("iot2mqtt_web", "serve", "pw-serve"), true),
    ];
    for (what, connect, accepted) in cases {
        let (_, code) = raw(port, connect).await;
        assert_eq!(code == 0, accepted, "{what}: CONNACK code {code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_publishes_only_under_its_own_topics_and_an_observer_only_listens() {
    let broker = start(BrokerConfig { accounts: house(), ..config() }).await;
    let port = broker.local_addr().port();
    let everything = MqttAt { port, login: Some(("admin".into(), "pw-admin".into())) };
    let mut watch = Observer::connect(everything, "h/#").await;

    let (mut lamp, code) = raw(port, login("iot2mqtt_lamp", "instance-lamp", "pw-lamp")).await;
    assert_eq!(code, 0);
    assert_eq!(subscribe(&mut lamp, "h/v1/instances/lamp/devices/+/cmd", QoS::AtLeastOnce).await, [1]);
    assert_eq!(subscribe(&mut lamp, "h/v1/instances/other/devices/+/cmd", QoS::AtLeastOnce).await, [0x80]);
    assert_eq!(subscribe(&mut lamp, "#", QoS::AtLeastOnce).await, [0x80], "a wildcard over everything");
    publish(&mut lamp, "h/v1/instances/other/status", b"forged", true).await;
    publish(&mut lamp, "h/v1/instances/other/devices/x/cmd/response", b"forged", false).await;
    publish(&mut lamp, "h/v1/instances/lamp/status", b"online", true).await;

    let (mut ha, _) = raw(port, login("ha-1", "ha", "pw-ha")).await;
    assert_eq!(subscribe(&mut ha, "#", QoS::AtMostOnce).await, [0]);
    publish(&mut ha, "h/v1/instances/lamp/devices/x/cmd", b"{}", false).await;

    let seen = watch.collect_all(Duration::from_millis(500)).await;
    let topics: Vec<&str> = seen.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, ["h/v1/instances/lamp/status"], "only the instance's own publication passes");
    // Denied publications cost the client nothing but the message: it is still connected.
    assert_eq!(subscribe(&mut lamp, "h/v1/instances/lamp/devices/+/cmd", QoS::AtMostOnce).await, [0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_topics_are_refused_without_harm() {
    let broker = open_broker().await;
    let port = broker.local_addr().port();
    let deep = "/".repeat(15_000);
    let (mut client, _) = raw(port, connect("deep")).await;
    assert_eq!(subscribe(&mut client, &deep, QoS::AtMostOnce).await, [0x80]);
    drop(client);
    let (mut client, _) = raw(port, connect("deep-pub")).await;
    send(
        &mut client,
        Packet::Publish(Publish {
            topic: deep.clone(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            dup: false,
            pkid: 0,
        }),
    )
    .await;
    let long = format!("a/{}", "x".repeat(5000));
    let (mut other, _) = raw(port, connect("long")).await;
    assert_eq!(subscribe(&mut other, &long, QoS::AtMostOnce).await, [0x80]);
    drop((client, other));
    assert!(serving(port).await, "the broker still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_limit_drops_only_its_sender() {
    let limits = Limits { max_packet: 64 * 1024, ..Limits::default() };
    let broker = start(BrokerConfig { anonymous: true, limits, ..config() }).await;
    let port = broker.local_addr().port();
    let mut watch = Observer::connect(port, "big/#").await;
    let (mut big, _) = raw(port, connect("big")).await;
    static PAYLOAD: [u8; 100 * 1024] = [b'x'; 100 * 1024];
    send(&mut big, message("big/x", &PAYLOAD, QoS::AtMostOnce, false, 0)).await;
    assert_eq!(next(&mut big, &mut BytesMut::new()).await, None, "the sender is disconnected");
    let (mut small, _) = raw(port, connect("small")).await;
    publish(&mut small, "big/y", b"fine", false).await;
    let seen = watch.next_on("big/y", Duration::from_secs(5)).await;
    assert_eq!(seen.text(), "fine");
    assert!(watch.collect_all(Duration::from_millis(200)).await.iter().all(|m| m.topic != "big/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_bounded_in_number() {
    let limits = Limits { max_retained: 2, ..Limits::default() };
    let broker = start(BrokerConfig { anonymous: true, limits, ..config() }).await;
    let port = broker.local_addr().port();
    let mut live = Observer::connect(port, "r/#").await;
    let (mut client, _) = raw(port, connect("pub")).await;
    for topic in ["r/1", "r/2", "r/3"] {
        publish(&mut client, topic, b"v", true).await;
    }
    publish(&mut client, "r/1", b"replaced", true).await;
    // Routed (and so stored or refused) in order: the last one seen means all were handled.
    live.wait_for("the replacement", Duration::from_secs(5), |m| m.text() == "replaced").await;
    let mut late = Observer::connect(port, "r/#").await;
    let mut kept: Vec<(String, String)> =
        late.collect_all(Duration::from_millis(400)).await.iter().map(|m| (m.topic.clone(), m.text())).collect();
    kept.sort();
    assert_eq!(kept, [("r/1".into(), "replaced".into()), ("r/2".into(), "v".into())]);
    assert!(serving(port).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let broker = start(BrokerConfig { anonymous: true, limits, ..config() }).await;
    let port = broker.local_addr().port();
    let (_a, a) = raw(port, connect("a")).await;
    let (_b, b) = raw(port, connect("b")).await;
    assert_eq!((a, b), (0, 0));
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    send(&mut third, Packet::Connect(connect("c"))).await;
    let answer = next(&mut third, &mut BytesMut::new()).await;
    assert!(!matches!(answer, Some(Packet::ConnAck { code: 0, .. })), "a third connection was accepted: {answer:?}");
}

/// Start a broker with `limits`, and leave a persistent session "away" behind on it,
/// subscribed to `q/#` at QoS 1. Returns the broker and its port.
async fn with_a_session_away(limits: Limits) -> (Broker, u16) {
    let broker = start(BrokerConfig { anonymous: true, limits, ..config() }).await;
    let port = broker.local_addr().port();
    let (mut away, _) = raw(port, Connect { clean_session: false, ..connect("away") }).await;
    assert_eq!(subscribe(&mut away, "q/#", QoS::AtLeastOnce).await, [1]);
    send(&mut away, Packet::Disconnect).await;
    drop(away);
    tokio::time::sleep(Duration::from_millis(100)).await;
    (broker, port)
}

/// Reconnect the session "away", which must find its session kept.
async fn come_back(port: u16) -> (TcpStream, BytesMut) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    send(&mut stream, Packet::Connect(Connect { clean_session: false, ..connect("away") })).await;
    let mut buf = BytesMut::new();
    let Some(Packet::ConnAck { session_present: true, code: 0 }) = next(&mut stream, &mut buf).await else {
        panic!("the session was not kept");
    };
    (stream, buf)
}

/// Every PUBLISH until the broker has been quiet for 700 ms, acknowledged; their topics.
async fn receive(stream: &mut TcpStream, buf: &mut BytesMut) -> Vec<String> {
    let mut topics = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_millis(700), next(stream, buf)).await {
        if let Packet::Publish(p) = packet {
            send(stream, Packet::PubAck(p.pkid)).await;
            topics.push(p.topic);
        }
    }
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_what_was_published_while_it_was_away() {
    let (_broker, port) = with_a_session_away(Limits { max_queued: 5, ..Limits::default() }).await;
    let (mut publisher, _) = raw(port, connect("pub")).await;
    for n in 1..=8u16 {
        send(&mut publisher, message("q/n", b"m", QoS::AtLeastOnce, false, n)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut stream, mut buf) = come_back(port).await;
    let delivered = receive(&mut stream, &mut buf).await;
    assert!(delivered.iter().all(|topic| topic == "q/n"), "{delivered:?}");
    assert!((1..=5).contains(&delivered.len()), "queued while away, at most the limit: {}", delivered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_bounded_in_bytes_while_everyone_else_is_served() {
    static PAYLOAD: [u8; 10 * 1024] = [b'x'; 10 * 1024];
    // Six messages of 10 KiB and a 4-byte topic fit in 64 KiB; a seventh does not.
    let (_broker, port) = with_a_session_away(Limits { max_queued_bytes: 64 * 1024, ..Limits::default() }).await;
    let mut present = Observer::connect(port, "q/#").await;
    let (mut publisher, _) = raw(port, connect("pub")).await;
    for n in 10..30u16 {
        let topic = format!("q/{n}");
        send(&mut publisher, message(&topic, &PAYLOAD, QoS::AtLeastOnce, false, n)).await;
        assert_eq!(present.next_on(&topic, Duration::from_secs(5)).await.payload.len(), PAYLOAD.len());
    }

    let (mut stream, mut buf) = come_back(port).await;
    let delivered = receive(&mut stream, &mut buf).await;
    assert_eq!(delivered, ["q/10", "q/11", "q/12", "q/13", "q/14", "q/15"], "the first 60 KiB were kept");

    // Delivered, so the queue takes messages again.
    send(&mut publisher, message("q/30", &PAYLOAD, QoS::AtLeastOnce, false, 30)).await;
    assert_eq!(receive(&mut stream, &mut buf).await, ["q/30"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_kept_replaced_and_cleared() {
    let broker = open_broker().await;
    let port = broker.local_addr().port();
    let (mut client, _) = raw(port, connect("pub")).await;
    publish(&mut client, "r/a", b"1", true).await;
    publish(&mut client, "r/a", b"2", true).await;
    publish(&mut client, "r/b", b"3", true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut obs = Observer::connect(port, "r/#").await;
    let seen = obs.collect_all(Duration::from_millis(300)).await;
    let mut got: Vec<(String, String, bool)> = seen.iter().map(|m| (m.topic.clone(), m.text(), m.retain)).collect();
    got.sort();
    assert_eq!(got, [("r/a".into(), "2".into(), true), ("r/b".into(), "3".into(), true)]);
    publish(&mut client, "r/a", b"", true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = Observer::connect(port, "r/#").await;
    let seen = late.collect_all(Duration::from_millis(300)).await;
    assert_eq!(seen.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(), ["r/b"], "r/a was cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_and_dollar_topics_stay_out_of_wildcards() {
    let broker = open_broker().await;
    let port = broker.local_addr().port();
    let mut all = Observer::connect(port, "#").await;
    let mut narrow = Observer::connect(port, "x/+").await;
    let (mut client, _) = raw(port, connect("pub")).await;
    assert_eq!(subscribe(&mut client, "x/#", QoS::AtMostOnce).await, [0]);
    assert_eq!(subscribe(&mut client, "x/+", QoS::AtMostOnce).await, [0]);
    publish(&mut client, "$internal/x", b"hidden", false).await;
    publish(&mut client, "x/y", b"once", false).await;
    let seen = all.collect_all(Duration::from_millis(300)).await;
    assert_eq!(seen.iter().map(|m| m.text()).collect::<Vec<_>>(), ["once"], "# skips $ topics");
    assert_eq!(narrow.collect_all(Duration::from_millis(100)).await.len(), 1);
    let mut buf = BytesMut::new();
    let mut copies = 0;
    while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_millis(300), next(&mut client, &mut buf)).await {
        copies += usize::from(matches!(packet, Packet::Publish(_)));
    }
    // MQTT 3.1.1, 3.3.5: at least one copy, and the server may send one per matching filter.
    assert!((1..=2).contains(&copies), "two overlapping subscriptions of one client: {copies} copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_follows_a_silent_client_but_not_a_clean_disconnect() {
    let broker = open_broker().await;
    let port = broker.local_addr().port();
    let mut obs = Observer::connect(port, "will/#").await;
    let will = |topic: &str| Publish {
        topic: topic.into(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        dup: false,
        pkid: 0,
    };
    let mut silent = connect("silent");
    silent.keepalive = 1;
    silent.will = Some(will("will/silent"));
    let (_silent, _) = raw(port, silent).await;
    let message = obs.next_on("will/silent", Duration::from_secs(5)).await;
    assert_eq!(message.text(), "offline");

    let mut polite = connect("polite");
    polite.will = Some(will("will/polite"));
    let (mut polite, _) = raw(port, polite).await;
    send(&mut polite, Packet::Disconnect).await;
    drop(polite);
    assert!(obs.try_wait_for(Duration::from_millis(500), |m| m.topic == "will/polite").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_clients_subscribe_and_publish_with_a_login() {
    if !crate::support::require("mosquitto_sub", "apt-get install -y mosquitto-clients") {
        return;
    }
    let broker = start(BrokerConfig { accounts: house(), ..config() }).await;
    let port = broker.local_addr().port().to_string();
    // Retained, so the subscriber gets it whenever it subscribes.
    let status = Command::new("mosquitto_pub")
        .args(["-V", "mqttv5", "-p", &port, "-u", "serve", "-P", "pw-serve", "-i", "iot2mqtt_web"])
        .args(["-t", "h/v1/instances/lamp/status", "-m", "online", "-q", "1", "-r"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("mosquitto_sub")
        .args(["-V", "mqttv5", "-p", &port, "-u", "ha", "-P", "pw-ha", "-t", "h/#", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");

    let refused = Command::new("mosquitto_sub")
        .args(["-V", "mqttv5", "-p", &port, "-t", "#", "-C", "1", "-W", "3"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "an anonymous MQTT 5 client is refused");
    let said = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(said.contains("not authorized") || said.contains("bad user"), "a reason is given: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_every_connection() {
    let broker = open_broker().await;
    let port = broker.local_addr().port();
    let (mut client, _) = raw(port, connect("sub")).await;
    assert_eq!(subscribe(&mut client, "last/#", QoS::AtLeastOnce).await, [1]);
    broker.stop().await;
    assert_eq!(next(&mut client, &mut BytesMut::new()).await, None, "the connection is closed");
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err(), "nothing listens");
}

/// A self-signed certificate for `localhost` made with `openssl`: (certificate, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_serves_logged_in_clients() {
    if !crate::support::require("openssl", "apt-get install -y openssl")
        || !crate::support::require("mosquitto_sub", "apt-get install -y mosquitto-clients")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let tls = iot2mqtt_broker::TlsListener { listen: ([127, 0, 0, 1], 0).into(), cert: cert.clone(), key };
    let broker = start(BrokerConfig { accounts: house(), tls: Some(tls), ..config() }).await;
    let port = broker.tls_addr().unwrap().port().to_string();
    // Retained on the plain listener, read back over TLS.
    let plain = broker.local_addr().port().to_string();
    let status = Command::new("mosquitto_pub")
        .args(["-p", &plain, "-u", "admin", "-P", "pw-admin", "-t", "h/x", "-m", "over TLS", "-q", "1", "-r"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port, "--cafile"])
        .arg(&cert)
        .args(["-u", "ha", "-P", "pw-ha", "-t", "h/#", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over TLS", "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_without_its_files_is_a_clear_error() {
    let tls = iot2mqtt_broker::TlsListener {
        listen: ([127, 0, 0, 1], 0).into(),
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    };
    let error = Broker::start(BrokerConfig { tls: Some(tls), ..config() }).await.unwrap_err().to_string();
    assert!(error.contains("/nonexistent/cert.pem"), "{error}");
}
