//! Finding bulbs: an SSDP-like `M-SEARCH` over UDP (multicast 239.255.255.250:1982, or one
//! address), and the headers bulbs answer with.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use iot2mqtt_sdk::{Value, json};

/// Where bulbs listen for searches.
pub const MULTICAST: &str = "239.255.255.250:1982";

/// The search request.
pub fn search_request() -> String {
    format!("M-SEARCH * HTTP/1.1\r\nHOST: {MULTICAST}\r\nMAN: \"ssdp:discover\"\r\nST: wifi_bulb\r\n\r\n")
}

/// A bulb's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub addr: SocketAddr,
    pub model: String,
    pub fw_ver: String,
    pub name: String,
    pub headers: BTreeMap<String, String>,
}

impl Found {
    /// As the `discover_devices` tool reports it.
    pub fn to_json(&self) -> Value {
        json!({
            "device_id": self.id,
            "ip": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "model": self.model,
            "name": self.name,
            "fw_ver": self.fw_ver,
        })
    }
}

/// Parse an answer; `None` for anything that is not a bulb's.
pub fn parse_response(text: &str) -> Option<Found> {
    let mut lines = text.lines();
    let status = lines.next()?;
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("NOTIFY") {
        return None;
    }
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let location = headers.get("location")?.strip_prefix("yeelight://")?;
    let addr: SocketAddr = location.parse().ok()?;
    let id = headers.get("id")?.clone();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(Found {
        id,
        addr,
        model: headers.get("model").cloned().unwrap_or_default(),
        fw_ver: headers.get("fw_ver").cloned().unwrap_or_default(),
        name: headers.get("name").cloned().unwrap_or_default(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_bulbs_answer() {
        let answer = "HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nLocation: yeelight://192.168.1.239:55443\r\n\
                      Server: POSIX UPnP/1.0 YGLC/1\r\nid: 0x000000000015243f\r\nmodel: color\r\nfw_ver: 18\r\n\
                      support: get_prop set_default set_power\r\npower: on\r\nbright: 100\r\nname: Desk\r\n\r\n";
        let found = parse_response(answer).unwrap();
        assert_eq!(
            found.to_json(),
            json!({"device_id": "0x000000000015243f", "ip": "192.168.1.239", "port": 55443,
                                            "model": "color", "name": "Desk", "fw_ver": "18"})
        );
        assert_eq!(found.headers["power"], "on");
        assert!(parse_response("M-SEARCH * HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_response("HTTP/1.1 200 OK\r\nLocation: http://x\r\nid: 1\r\n").is_none());
    }
}
