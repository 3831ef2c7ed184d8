//! One client connection: the reader handles the protocol, a writer task owns the socket's
//! write half and drains the connection's bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use iot2mqtt_mqtt::QoS;
use iot2mqtt_mqtt::codec::{Connect, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};

use crate::router::{Out, Router};
use crate::trie::{valid_filter, valid_topic};

/// How long a client may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(router: Arc<Router>, stream: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(1024);
    let max = router.config.max_packet;

    // The first packet must be CONNECT.
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match Packet::decode(&mut buf, max) {
                Ok(Some(Packet::Connect(connect))) => return Some(connect),
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => {}
            }
            match reader.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    let Some(connect) = connect else {
        tracing::debug!(%peer, "connection closed before a valid CONNECT");
        return;
    };

    let (tx, rx) = mpsc::channel(router.config.max_queued);
    let writer_task = tokio::spawn(write(writer, rx));
    let refusal = refuse(&router, &connect);
    if let Some(code) = refusal {
        let _ = tx.send(Out::Packet(Packet::ConnAck { session_present: false, code })).await;
        drop(tx);
        let _ = writer_task.await;
        return;
    }
    let client_id = if connect.client_id.is_empty() { format!("auto-{peer}") } else { connect.client_id.clone() };
    let client = router.connect(&client_id, tx.clone());
    let _ = tx.send(Out::Packet(Packet::ConnAck { session_present: false, code: 0 })).await;

    let keepalive = match connect.keepalive {
        0 => None,
        seconds => Some(Duration::from_millis(u64::from(seconds) * 1500)),
    };
    let mut filters: Vec<String> = Vec::new();
    let mut awaiting_release: std::collections::HashSet<u16> = std::collections::HashSet::new();
    let mut graceful = false;
    'session: loop {
        // Handle every whole packet already read.
        loop {
            let packet = match Packet::decode(&mut buf, max) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, client = %client_id, "protocol error: {e}");
                    break 'session;
                }
            };
            match packet {
                Packet::Publish(publish) => {
                    if !valid_topic(&publish.topic) {
                        break 'session;
                    }
                    match publish.qos {
                        QoS::AtMostOnce => router.publish(&publish),
                        QoS::AtLeastOnce => {
                            router.publish(&publish);
                            send(&tx, Packet::PubAck(publish.pkid)).await;
                        }
                        QoS::ExactlyOnce => {
                            if awaiting_release.insert(publish.pkid) {
                                router.publish(&publish);
                            }
                            send(&tx, Packet::PubRec(publish.pkid)).await;
                        }
                    }
                }
                Packet::PubRel(pkid) => {
                    awaiting_release.remove(&pkid);
                    send(&tx, Packet::PubComp(pkid)).await;
                }
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
                Packet::Subscribe { pkid, filters: requested } => {
                    let mut codes = Vec::with_capacity(requested.len());
                    let mut retained = Vec::new();
                    for (filter, qos) in requested {
                        if valid_filter(&filter) {
                            let granted = qos.min(QoS::AtLeastOnce);
                            retained.extend(router.subscribe(client.key, &filter, granted));
                            if !filters.contains(&filter) {
                                filters.push(filter);
                            }
                            codes.push(granted as u8);
                        } else {
                            codes.push(0x80);
                        }
                    }
                    send(&tx, Packet::SubAck { pkid, codes }).await;
                    for message in retained {
                        if tx.send(Out::Deliver(message)).await.is_err() {
                            break 'session;
                        }
                    }
                }
                Packet::Unsubscribe { pkid, filters: removed } => {
                    for filter in removed {
                        router.unsubscribe(client.key, &filter);
                        filters.retain(|f| *f != filter);
                    }
                    send(&tx, Packet::UnsubAck(pkid)).await;
                }
                Packet::PingReq => send(&tx, Packet::PingResp).await,
                Packet::Disconnect => {
                    graceful = true;
                    break 'session;
                }
                // A second CONNECT, or packets only a broker sends: a protocol violation.
                _ => break 'session,
            }
        }
        let read = async {
            match keepalive {
                Some(limit) => tokio::time::timeout(limit, reader.read_buf(&mut buf)).await.unwrap_or(Ok(0)),
                None => reader.read_buf(&mut buf).await,
            }
        };
        tokio::select! {
            // The broker is stopping.
            _ = stop.changed() => {
                graceful = true;
                break;
            }
            // More bytes, end of stream, or keepalive expiry (read as end of stream).
            read = read => match read {
                Ok(n) if n > 0 => {}
                _ => break,
            },
        }
    }

    router.disconnect(&client_id, client.key, &filters);
    let taken_over = client.taken_over.load(Ordering::Acquire);
    if !graceful
        && !taken_over
        && let Some(will) = connect.will
    {
        tracing::debug!(client = %client_id, topic = %will.topic, "publishing the last will");
        router.publish(&will);
    }
    let _ = tx.try_send(Out::Close);
    drop(tx);
    let _ = writer_task.await;
}

/// The CONNACK refusal code for this CONNECT, if any.
fn refuse(router: &Router, connect: &Connect) -> Option<u8> {
    if connect.client_id.is_empty() && !connect.clean_session {
        return Some(2);
    }
    if let Some((user, password)) = &router.config.credentials {
        let given_user = connect.username.as_deref().unwrap_or_default();
        let given_password = connect.password.as_deref().unwrap_or_default();
        if given_user != user || given_password != password.as_bytes() {
            return Some(4);
        }
    }
    None
}

async fn send(tx: &mpsc::Sender<Out>, packet: Packet) {
    let _ = tx.send(Out::Packet(packet)).await;
}

async fn write(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>) {
    let mut out = BytesMut::with_capacity(1024);
    let mut next_pkid: u16 = 0;
    while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        // Batch whatever else is queued into one write.
        while let Some(next) = item.take() {
            match next {
                Out::Packet(packet) => packet.encode(&mut out),
                Out::Deliver(mut publish) => {
                    if publish.qos != QoS::AtMostOnce {
                        next_pkid = next_pkid.wrapping_add(1).max(1);
                        publish.pkid = next_pkid;
                    }
                    Packet::Publish(publish).encode(&mut out);
                }
                Out::Close => {
                    let _ = writer.write_all(&out).await;
                    let _ = writer.shutdown().await;
                    return;
                }
            }
            if out.len() < 64 << 10 {
                item = rx.try_recv().ok();
            }
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = writer.shutdown().await;
}
