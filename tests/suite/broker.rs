//! The embedded broker's own rules, beyond what the contract suite (run against it too)
//! exercises: credentials, clearing retained messages, one delivery for overlapping
//! subscriptions, the last will on keepalive expiry, `$` topics.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iot2mqtt_broker::{Broker, BrokerConfig};
use iot2mqtt_mqtt::QoS;
use iot2mqtt_mqtt::codec::{Connect, Packet, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Observer;

async fn broker(credentials: Option<(&str, &str)>) -> Broker {
    let config = BrokerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        ..BrokerConfig::default()
    };
    Broker::start(config).await.unwrap()
}

/// A raw client: CONNECT with these options, return the socket and the CONNACK code.
async fn raw(port: u16, connect: Connect) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut out = BytesMut::new();
    Packet::Connect(connect).encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        stream.read_buf(&mut buf).await.unwrap();
        if let Some(Packet::ConnAck { code, .. }) = Packet::decode(&mut buf, 1024).unwrap() {
            return (stream, code);
        }
    }
}

fn connect(id: &str) -> Connect {
    Connect { client_id: id.into(), keepalive: 30, clean_session: true, will: None, username: None, password: None }
}

async fn publish(stream: &mut TcpStream, topic: &str, payload: &'static [u8], retain: bool) {
    let mut out = BytesMut::new();
    let publish = Publish {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain,
        dup: false,
        pkid: 0,
    };
    Packet::Publish(publish).encode(&mut out);
    stream.write_all(&out).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_enforced_when_configured() {
    let broker = broker(Some(("iot", "s3cret"))).await;
    let port = broker.local_addr().port();
    let cases = [(None, None, 4), (Some("iot"), Some("wrong"), 4), (Some("iot"), Some("s3cret"), 0)];
    for (user, password, expected) in cases {
        let mut c = connect("auth");
        c.username = user.map(str::to_string);
        c.password = password.map(|p| Bytes::from(p.to_string()));
        let (_, code) = raw(port, c).await;
        assert_eq!(code, expected, "{user:?}/{password:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_kept_replaced_and_cleared() {
    let broker = broker(None).await;
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
async fn overlapping_subscriptions_deliver_once_and_dollar_topics_stay_out_of_wildcards() {
    let broker = broker(None).await;
    let port = broker.local_addr().port();
    let mut all = Observer::connect(port, "#").await;
    let mut narrow = Observer::connect(port, "x/+").await;
    let (mut client, _) = raw(port, connect("pub")).await;
    publish(&mut client, "$internal/x", b"hidden", false).await;
    publish(&mut client, "x/y", b"once", false).await;
    let seen = all.collect_all(Duration::from_millis(300)).await;
    assert_eq!(seen.iter().map(|m| m.text()).collect::<Vec<_>>(), ["once"], "# skips $ topics");
    assert_eq!(narrow.collect_all(Duration::from_millis(100)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_follows_a_silent_client_but_not_a_clean_disconnect() {
    let broker = broker(None).await;
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
    let mut out = BytesMut::new();
    Packet::Disconnect.encode(&mut out);
    polite.write_all(&out).await.unwrap();
    drop(polite);
    assert!(obs.try_wait_for(Duration::from_millis(500), |m| m.topic == "will/polite").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_delivers_what_was_routed_before_closing() {
    let broker = broker(None).await;
    let port = broker.local_addr().port();
    let (mut subscriber, _) = raw(port, connect("sub")).await;
    let mut out = BytesMut::new();
    Packet::Subscribe { pkid: 1, filters: vec![("last/#".into(), QoS::AtLeastOnce)] }.encode(&mut out);
    subscriber.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        subscriber.read_buf(&mut buf).await.unwrap();
        if let Some(Packet::SubAck { .. }) = Packet::decode(&mut buf, 1 << 20).unwrap() {
            break;
        }
    }
    let (mut publisher, _) = raw(port, connect("pub")).await;
    publish(&mut publisher, "last/word", b"offline", true).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.stop().await;
    // Everything up to the end of the stream: the message arrives before the close.
    let mut seen = Vec::new();
    while subscriber.read_buf(&mut buf).await.unwrap_or(0) > 0 {}
    while let Ok(Some(packet)) = Packet::decode(&mut buf, 1 << 20) {
        seen.push(packet);
    }
    assert!(
        seen.iter().any(|p| matches!(p, Packet::Publish(m) if m.topic == "last/word" && &m.payload[..] == b"offline")),
        "{seen:?}"
    );
}
