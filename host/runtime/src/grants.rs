//! Network grants from an instance's configuration: each device's lane may reach the addresses
//! its device's own entry names (`host`, `ip` or `address`, with `port` when given, and a
//! pinned TLS certificate as `tls_sha256`), plus the instance's `connection` host; a lane
//! shared by several devices, those of all of them. Host names are resolved here, once, when
//! the lane is built, and the plugin may look up those names and no other.

use std::net::IpAddr;

use iot2mqtt_contract::config::DeviceEntry;
use iot2mqtt_contract::message::Object;
use iot2mqtt_engine::NetGrants;
use serde_json::Value;

const ADDRESS_KEYS: [&str; 3] = ["host", "ip", "address"];
/// A device's self-signed certificate, pinned: the SHA-256 of its DER form, in hex (colons
/// and case as browsers show it are accepted).
const PIN_KEY: &str = "tls_sha256";

fn parse_pin(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// The grants of the lane that serves `devices`.
pub(crate) async fn for_devices(connection: &Object, devices: &[DeviceEntry]) -> NetGrants {
    let mut grants = NetGrants::none();
    for source in std::iter::once(connection).chain(devices.iter().map(|d| &d.extra)) {
        let port = source.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        for key in ADDRESS_KEYS {
            if let Some(host) = source.get(key).and_then(Value::as_str) {
                grants = add(grants, host, port).await;
                if let Some(pin) = source.get(PIN_KEY).and_then(Value::as_str) {
                    match parse_pin(pin) {
                        Some(pin) => grants = grants.pin(host, pin),
                        None => {
                            tracing::warn!(%host, "{PIN_KEY} is not a SHA-256 in hex; the certificate is checked against the system's roots")
                        }
                    }
                }
            }
        }
    }
    grants
}

async fn add(mut grants: NetGrants, host: &str, port: Option<u16>) -> NetGrants {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return grants.allow(ip, port);
    }
    match tokio::net::lookup_host((host, port.unwrap_or(0))).await {
        Ok(addrs) => {
            for addr in addrs {
                grants = grants.allow(addr.ip(), port);
            }
            grants.lookup(host)
        }
        Err(e) => {
            tracing::warn!(%host, "cannot resolve a device address; the plugin may not reach it: {e}");
            grants
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot2mqtt_engine::NetGrants;
    use serde_json::json;

    fn device(v: Value) -> DeviceEntry {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn grants_follow_the_configuration() {
        let none = Object::new();
        let cases = [
            (json!({"device_id": "a"}), NetGrants::none()),
            (
                json!({"device_id": "a", "ip": "192.168.1.5", "port": 55443}),
                NetGrants::none().allow("192.168.1.5".parse().unwrap(), Some(55443)),
            ),
            (json!({"device_id": "a", "host": "10.0.0.2"}), NetGrants::none().allow("10.0.0.2".parse().unwrap(), None)),
            (
                json!({"device_id": "a", "host": "localhost", "port": 80}),
                NetGrants::none().allow("127.0.0.1".parse().unwrap(), Some(80)).lookup("localhost"),
            ),
        ];
        for (entry, expected) in cases {
            let got = for_devices(&none, &[device(entry.clone())]).await;
            if entry["host"] == "localhost" {
                assert!(got.permits("127.0.0.1:80".parse().unwrap(), wasmtime_wasi_use()), "{entry}");
            } else {
                assert_eq!(got, expected, "{entry}");
            }
        }
    }

    #[tokio::test]
    async fn a_shared_lane_reaches_every_device_it_serves_and_no_other() {
        let devices = [
            device(json!({"device_id": "a", "ip": "192.168.1.5", "port": 55443})),
            device(json!({"device_id": "b", "ip": "192.168.1.6", "port": 80})),
        ];
        let got = for_devices(&Object::new(), &devices).await;
        let connect = wasmtime_wasi_use();
        assert!(got.permits("192.168.1.5:55443".parse().unwrap(), connect));
        assert!(got.permits("192.168.1.6:80".parse().unwrap(), connect));
        assert!(!got.permits("192.168.1.6:55443".parse().unwrap(), connect));
        assert!(!got.permits("192.168.1.7:80".parse().unwrap(), connect));
    }

    fn wasmtime_wasi_use() -> iot2mqtt_engine::SocketAddrUse {
        iot2mqtt_engine::SocketAddrUse::TcpConnect
    }
}
