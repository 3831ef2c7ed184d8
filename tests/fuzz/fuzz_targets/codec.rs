//! The client's MQTT codec on any bytes: decoding never panics, never loops, and what it
//! decodes encodes back to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use iot2mqtt_mqtt::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = 1 << 16;
    // The head of a message over the limit, read before it is skipped.
    let _ = Packet::oversized_publish(data, 32);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let Ok(Some(packet)) = Packet::decode(&mut buf, max) else { break };
        assert!(buf.len() < before, "a decoded packet consumed no bytes");
        let mut encoded = BytesMut::new();
        packet.encode(&mut encoded);
        let again = Packet::decode(&mut encoded, max);
        assert_eq!(again, Ok(Some(packet)), "encode then decode changed the packet");
        assert!(encoded.is_empty(), "the re-encoded packet left bytes behind");
    }
});
