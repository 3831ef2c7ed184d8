//! Encoding and decoding of MQTT 3.1.1 packets (OASIS standard, 2014). Both directions, so a
//! client and a broker can share it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// From the wire value.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A malformed packet or one larger than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The remaining length is larger than the limit.
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The bytes do not form a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// The CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The client id.
    pub client_id: String,
    /// Keepalive in seconds (0 = none).
    pub keepalive: u16,
    /// Start without a stored session.
    pub clean_session: bool,
    /// The last will.
    pub will: Option<Publish>,
    /// The user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Bytes>,
}

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Duplicate delivery flag.
    pub dup: bool,
    /// Packet id (0 at QoS 0).
    pub pkid: u16,
}

/// A PUBLISH too large to accept, as far as its head tells (see [`Packet::oversized_publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedPublish {
    /// The topic.
    pub topic: String,
    /// QoS, to acknowledge it.
    pub qos: QoS,
    /// Packet id (0 at QoS 0).
    pub pkid: u16,
    /// Bytes of the whole packet, to skip.
    pub size: usize,
}

/// Every MQTT 3.1.1 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT
    Connect(Connect),
    /// CONNACK: session present, return code.
    ConnAck { session_present: bool, code: u8 },
    /// PUBLISH
    Publish(Publish),
    /// PUBACK
    PubAck(u16),
    /// PUBREC
    PubRec(u16),
    /// PUBREL
    PubRel(u16),
    /// PUBCOMP
    PubComp(u16),
    /// SUBSCRIBE: packet id, filters with their QoS.
    Subscribe { pkid: u16, filters: Vec<(String, QoS)> },
    /// SUBACK: packet id, one return code per filter (0x80 = failure).
    SubAck { pkid: u16, codes: Vec<u8> },
    /// UNSUBSCRIBE
    Unsubscribe { pkid: u16, filters: Vec<String> },
    /// UNSUBACK
    UnsubAck(u16),
    /// PINGREQ
    PingReq,
    /// PINGRESP
    PingResp,
    /// DISCONNECT
    Disconnect,
}

/// The largest remaining length MQTT can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Append a PUBLISH to `out`, written in place: the hot path of every publication, so no
/// intermediate buffer and no copy of the topic.
pub fn encode_publish(topic: &str, payload: &[u8], qos: QoS, retain: bool, dup: bool, pkid: u16, out: &mut BytesMut) {
    let id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id + payload.len();
    out.reserve(5 + remaining);
    out.put_u8(0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain));
    put_length(out, remaining);
    put_str(out, topic);
    if id > 0 {
        out.put_u16(pkid);
    }
    out.put_slice(payload);
}

impl Packet {
    /// Append the packet's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Self::Publish(p) = self {
            return encode_publish(&p.topic, &p.payload, p.qos, p.retain, p.dup, p.pkid, out);
        }
        let mut body = BytesMut::new();
        let first = match self {
            Self::Connect(c) => {
                put_str(&mut body, "MQTT");
                body.put_u8(4);
                let mut flags = 0u8;
                if c.clean_session {
                    flags |= 0x02;
                }
                if let Some(will) = &c.will {
                    flags |= 0x04 | ((will.qos as u8) << 3);
                    if will.retain {
                        flags |= 0x20;
                    }
                }
                if c.username.is_some() {
                    flags |= 0x80;
                }
                if c.password.is_some() {
                    flags |= 0x40;
                }
                body.put_u8(flags);
                body.put_u16(c.keepalive);
                put_str(&mut body, &c.client_id);
                if let Some(will) = &c.will {
                    put_str(&mut body, &will.topic);
                    put_bytes(&mut body, &will.payload);
                }
                if let Some(user) = &c.username {
                    put_str(&mut body, user);
                }
                if let Some(password) = &c.password {
                    put_bytes(&mut body, password);
                }
                0x10
            }
            Self::ConnAck { session_present, code } => {
                body.put_u8(u8::from(*session_present));
                body.put_u8(*code);
                0x20
            }
            Self::Publish(_) => unreachable!("encoded above"),
            Self::PubAck(id) => {
                body.put_u16(*id);
                0x40
            }
            Self::PubRec(id) => {
                body.put_u16(*id);
                0x50
            }
            Self::PubRel(id) => {
                body.put_u16(*id);
                0x62
            }
            Self::PubComp(id) => {
                body.put_u16(*id);
                0x70
            }
            Self::Subscribe { pkid, filters } => {
                body.put_u16(*pkid);
                for (filter, qos) in filters {
                    put_str(&mut body, filter);
                    body.put_u8(*qos as u8);
                }
                0x82
            }
            Self::SubAck { pkid, codes } => {
                body.put_u16(*pkid);
                body.put_slice(codes);
                0x90
            }
            Self::Unsubscribe { pkid, filters } => {
                body.put_u16(*pkid);
                for filter in filters {
                    put_str(&mut body, filter);
                }
                0xA2
            }
            Self::UnsubAck(id) => {
                body.put_u16(*id);
                0xB0
            }
            Self::PingReq => 0xC0,
            Self::PingResp => 0xD0,
            Self::Disconnect => 0xE0,
        };
        out.put_u8(first);
        put_length(out, body.len());
        out.put_slice(&body);
    }

    /// The head of a PUBLISH at the front of `buf` whose remaining length exceeds `max`: its
    /// topic, QoS and packet id, and the packet's whole size, so that a client can acknowledge
    /// it and skip its bytes instead of failing the connection. `Ok(None)` when `buf` does not
    /// start with such a packet or the head is not all there yet.
    pub fn oversized_publish(buf: &[u8], max: usize) -> Result<Option<OversizedPublish>, CodecError> {
        let Some((length, header_len)) = peek_length(buf)? else { return Ok(None) };
        if length <= max || buf[0] >> 4 != 3 {
            return Ok(None);
        }
        let qos = QoS::from_u8((buf[0] >> 1) & 3).ok_or(CodecError::Malformed("publish qos 3"))?;
        let Some(topic_len) =
            buf.get(header_len..header_len + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Ok(None);
        };
        let topic_start = header_len + 2;
        let pkid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let Some(head) = buf.get(topic_start..topic_start + topic_len + pkid_len) else { return Ok(None) };
        let topic = std::str::from_utf8(&head[..topic_len]).map_err(|_| CodecError::Malformed("topic not UTF-8"))?;
        let pkid = if pkid_len == 0 { 0 } else { u16::from_be_bytes([head[topic_len], head[topic_len + 1]]) };
        Ok(Some(OversizedPublish { topic: topic.to_string(), qos, pkid, size: header_len + length }))
    }

    /// Decode one packet from the front of `buf`, consuming it. `Ok(None)` when more bytes
    /// are needed; packets larger than `max` are an error.
    pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Self>, CodecError> {
        let Some((length, header_len)) = peek_length(buf)? else { return Ok(None) };
        if length > max {
            return Err(CodecError::TooLarge(length));
        }
        if buf.len() < header_len + length {
            buf.reserve(header_len + length - buf.len());
            return Ok(None);
        }
        let first = buf[0];
        buf.advance(header_len);
        let mut body = buf.split_to(length).freeze();
        let flags = first & 0x0F;
        let packet = match first >> 4 {
            1 => Self::Connect(decode_connect(&mut body)?),
            2 => {
                need(&body, 2)?;
                Self::ConnAck { session_present: body.get_u8() & 1 == 1, code: body.get_u8() }
            }
            3 => {
                let qos = QoS::from_u8((flags >> 1) & 3).ok_or(CodecError::Malformed("publish qos 3"))?;
                let topic = get_str(&mut body)?;
                let pkid = if qos == QoS::AtMostOnce { 0 } else { get_u16(&mut body)? };
                Self::Publish(Publish { topic, payload: body, qos, retain: flags & 1 == 1, dup: flags & 8 == 8, pkid })
            }
            4 => Self::PubAck(get_u16(&mut body)?),
            5 => Self::PubRec(get_u16(&mut body)?),
            6 => Self::PubRel(get_u16(&mut body)?),
            7 => Self::PubComp(get_u16(&mut body)?),
            8 => {
                let pkid = get_u16(&mut body)?;
                let mut filters = Vec::new();
                while body.has_remaining() {
                    let filter = get_str(&mut body)?;
                    need(&body, 1)?;
                    let qos = QoS::from_u8(body.get_u8() & 3).ok_or(CodecError::Malformed("subscribe qos 3"))?;
                    filters.push((filter, qos));
                }
                if filters.is_empty() {
                    return Err(CodecError::Malformed("subscribe without filters"));
                }
                Self::Subscribe { pkid, filters }
            }
            9 => {
                let pkid = get_u16(&mut body)?;
                Self::SubAck { pkid, codes: body.to_vec() }
            }
            10 => {
                let pkid = get_u16(&mut body)?;
                let mut filters = Vec::new();
                while body.has_remaining() {
                    filters.push(get_str(&mut body)?);
                }
                Self::Unsubscribe { pkid, filters }
            }
            11 => Self::UnsubAck(get_u16(&mut body)?),
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            _ => return Err(CodecError::Malformed("unknown packet type")),
        };
        Ok(Some(packet))
    }
}

fn decode_connect(body: &mut Bytes) -> Result<Connect, CodecError> {
    let protocol = get_str(body)?;
    need(body, 4)?;
    let level = body.get_u8();
    if !(protocol == "MQTT" && level == 4 || protocol == "MQIsdp" && level == 3) {
        return Err(CodecError::Malformed("unsupported protocol"));
    }
    let flags = body.get_u8();
    let keepalive = body.get_u16();
    let client_id = get_str(body)?;
    let will = if flags & 0x04 != 0 {
        let topic = get_str(body)?;
        let payload = get_bytes(body)?;
        let qos = QoS::from_u8((flags >> 3) & 3).ok_or(CodecError::Malformed("will qos 3"))?;
        Some(Publish { topic, payload, qos, retain: flags & 0x20 != 0, dup: false, pkid: 0 })
    } else {
        None
    };
    let username = if flags & 0x80 != 0 { Some(get_str(body)?) } else { None };
    let password = if flags & 0x40 != 0 { Some(get_bytes(body)?) } else { None };
    Ok(Connect { client_id, keepalive, clean_session: flags & 0x02 != 0, will, username, password })
}

fn peek_length(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut length = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else { return Ok(None) };
        length |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((length, 2 + i)));
        }
    }
    Err(CodecError::Malformed("remaining length longer than 4 bytes"))
}

fn put_length(out: &mut BytesMut, mut length: usize) {
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if length == 0 {
            break;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    // MQTT strings are at most 65535 bytes; callers keep topics and ids far below that.
    out.put_u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
    out.put_slice(&b[..b.len().min(usize::from(u16::MAX))]);
}

fn need(body: &Bytes, n: usize) -> Result<(), CodecError> {
    if body.remaining() < n { Err(CodecError::Malformed("packet too short")) } else { Ok(()) }
}

fn get_u16(body: &mut Bytes) -> Result<u16, CodecError> {
    need(body, 2)?;
    Ok(body.get_u16())
}

fn get_bytes(body: &mut Bytes) -> Result<Bytes, CodecError> {
    let len = usize::from(get_u16(body)?);
    need(body, len)?;
    Ok(body.split_to(len))
}

fn get_str(body: &mut Bytes) -> Result<String, CodecError> {
    let bytes = get_bytes(body)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Malformed("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(packet: Packet) {
        let mut buf = BytesMut::new();
        packet.encode(&mut buf);
        let decoded = Packet::decode(&mut buf, MAX_REMAINING_LENGTH).unwrap().unwrap();
        assert_eq!(decoded, packet);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_packet_round_trips() {
        let publish = Publish {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"{\"x\":1}"),
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: false,
            pkid: 7,
        };
        round_trip(Packet::Connect(Connect {
            client_id: "iot2mqtt_demo".into(),
            keepalive: 60,
            clean_session: true,
            will: Some(Publish { pkid: 0, ..publish.clone() }),
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"p")),
        }));
        round_trip(Packet::ConnAck { session_present: false, code: 0 });
        round_trip(Packet::Publish(publish.clone()));
        round_trip(Packet::Publish(Publish { qos: QoS::AtMostOnce, pkid: 0, retain: false, ..publish }));
        round_trip(Packet::PubAck(1));
        round_trip(Packet::PubRec(2));
        round_trip(Packet::PubRel(3));
        round_trip(Packet::PubComp(4));
        round_trip(Packet::Subscribe {
            pkid: 5,
            filters: vec![("a/+/c".into(), QoS::AtLeastOnce), ("#".into(), QoS::AtMostOnce)],
        });
        round_trip(Packet::SubAck { pkid: 5, codes: vec![1, 0x80] });
        round_trip(Packet::Unsubscribe { pkid: 6, filters: vec!["a/#".into()] });
        round_trip(Packet::UnsubAck(6));
        round_trip(Packet::PingReq);
        round_trip(Packet::PingResp);
        round_trip(Packet::Disconnect);
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut full = BytesMut::new();
        Packet::Publish(Publish {
            topic: "t".into(),
            payload: Bytes::from(vec![b'x'; 300]),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            pkid: 0,
        })
        .encode(&mut full);
        let mut partial = BytesMut::from(&full[..10]);
        assert_eq!(Packet::decode(&mut partial, 1 << 20).unwrap(), None);
        partial.extend_from_slice(&full[10..]);
        assert!(Packet::decode(&mut partial, 1 << 20).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_input() {
        let cases: [(&[u8], CodecError); 4] = [
            (&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], CodecError::Malformed("remaining length longer than 4 bytes")),
            (&[0xF0, 0x00], CodecError::Malformed("unknown packet type")),
            (&[0x36, 0x03, 0x00, 0x01, b'a'], CodecError::Malformed("publish qos 3")),
            (&[0x30, 0x80, 0x01], CodecError::TooLarge(128)),
        ];
        for (bytes, expected) in cases {
            let mut buf = BytesMut::from(bytes);
            assert_eq!(Packet::decode(&mut buf, 100).unwrap_err(), expected, "{bytes:?}");
        }
    }

    #[test]
    fn an_oversized_publish_is_recognised_by_its_head() {
        let mut buf = BytesMut::new();
        let big = Publish {
            topic: "a/b".into(),
            payload: Bytes::from(vec![0u8; 5000]),
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: false,
            pkid: 9,
        };
        Packet::Publish(big).encode(&mut buf);
        let total = buf.len();
        assert_eq!(Packet::oversized_publish(&buf[..6], 1000).unwrap(), None, "the head is not all there");
        let head = Packet::oversized_publish(&buf, 1000).unwrap().unwrap();
        assert_eq!((head.topic.as_str(), head.qos, head.pkid, head.size), ("a/b", QoS::AtLeastOnce, 9, total));
        assert_eq!(Packet::oversized_publish(&buf, 1 << 20).unwrap(), None, "within the limit");
    }
}
