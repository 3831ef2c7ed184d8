//! Topic names (contract, sections 3 and 4). `B` = `{base}/v1/instances/{instance_id}`.

use crate::ids::InstanceId;

/// The topics of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    root: String,
}

/// A message the instance subscribed to, by what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// `B/devices/{d}/cmd`
    DeviceCommand(&'a str),
    /// `B/devices/{d}/get`
    DeviceGet(&'a str),
    /// `B/groups/{g}/cmd`
    GroupCommand(&'a str),
    /// `B/meta/request/{what}`
    MetaRequest(&'a str),
}

impl Topics {
    /// The topics of `instance` under `base` (`MQTT_BASE_TOPIC`).
    pub fn new(base: &str, instance: &InstanceId) -> Self {
        Self { root: format!("{}/v1/instances/{instance}", base.trim_end_matches('/')) }
    }

    /// `B` followed by `parts`, in one allocation of the right size: the topics of every
    /// state publication are built here, thousands of times a second on a busy instance.
    fn under(&self, parts: &[&str]) -> String {
        let mut topic = String::with_capacity(self.root.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        topic.push_str(&self.root);
        for part in parts {
            topic.push_str(part);
        }
        topic
    }

    /// `B` itself.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `B/#`: every topic of the instance.
    pub fn all(&self) -> String {
        format!("{}/#", self.root)
    }

    /// `B/status`
    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }

    /// `B/error`
    pub fn instance_error(&self) -> String {
        format!("{}/error", self.root)
    }

    /// `B/devices/{d}/state`
    pub fn state(&self, device: &str) -> String {
        self.under(&["/devices/", device, "/state"])
    }

    /// `B/devices/{d}/state/{key}`
    pub fn state_key(&self, device: &str, key: &str) -> String {
        self.under(&["/devices/", device, "/state/", key])
    }

    /// `B/devices/{d}/availability`
    pub fn availability(&self, device: &str) -> String {
        self.under(&["/devices/", device, "/availability"])
    }

    /// `B/devices/{d}/error`
    pub fn device_error(&self, device: &str) -> String {
        format!("{}/devices/{device}/error", self.root)
    }

    /// `B/devices/{d}/events`
    pub fn events(&self, device: &str) -> String {
        format!("{}/devices/{device}/events", self.root)
    }

    /// `B/devices/{d}/cmd`
    pub fn command(&self, device: &str) -> String {
        format!("{}/devices/{device}/cmd", self.root)
    }

    /// `B/devices/{d}/get`
    pub fn get(&self, device: &str) -> String {
        format!("{}/devices/{device}/get", self.root)
    }

    /// `B/devices/{d}/cmd/response`
    pub fn command_response(&self, device: &str) -> String {
        format!("{}/devices/{device}/cmd/response", self.root)
    }

    /// `B/groups/{g}/cmd`
    pub fn group_command(&self, group: &str) -> String {
        format!("{}/groups/{group}/cmd", self.root)
    }

    /// `B/groups/{g}/cmd/response`
    pub fn group_response(&self, group: &str) -> String {
        format!("{}/groups/{group}/cmd/response", self.root)
    }

    /// `B/meta/devices_list`
    pub fn devices_list(&self) -> String {
        format!("{}/meta/devices_list", self.root)
    }

    /// `B/meta/info`
    pub fn info(&self) -> String {
        format!("{}/meta/info", self.root)
    }

    /// `B/meta/request/{what}`
    pub fn meta_request(&self, what: &str) -> String {
        format!("{}/meta/request/{what}", self.root)
    }

    /// The four filters an instance subscribes to.
    pub fn subscriptions(&self) -> [String; 4] {
        [
            format!("{}/devices/+/cmd", self.root),
            format!("{}/devices/+/get", self.root),
            format!("{}/groups/+/cmd", self.root),
            format!("{}/meta/request/+", self.root),
        ]
    }

    /// What an incoming topic asks for; `None` for topics outside the four subscriptions.
    pub fn parse<'a>(&self, topic: &'a str) -> Option<Inbound<'a>> {
        let rest = topic.strip_prefix(self.root.as_str())?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["devices", d, "cmd"] if !d.is_empty() => Some(Inbound::DeviceCommand(d)),
            ["devices", d, "get"] if !d.is_empty() => Some(Inbound::DeviceGet(d)),
            ["groups", g, "cmd"] if !g.is_empty() => Some(Inbound::GroupCommand(g)),
            ["meta", "request", what] if !what.is_empty() => Some(Inbound::MetaRequest(what)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("IoT2mqtt", &InstanceId::new("demo").unwrap())
    }

    #[test]
    fn names() {
        let t = topics();
        assert_eq!(t.status(), "IoT2mqtt/v1/instances/demo/status");
        assert_eq!(t.state_key("l1", "power"), "IoT2mqtt/v1/instances/demo/devices/l1/state/power");
        assert_eq!(t.group_response("g"), "IoT2mqtt/v1/instances/demo/groups/g/cmd/response");
        assert_eq!(Topics::new("base/", &InstanceId::new("x").unwrap()).status(), "base/v1/instances/x/status");
    }

    #[test]
    fn parses_inbound() {
        let t = topics();
        let cases = [
            ("IoT2mqtt/v1/instances/demo/devices/l1/cmd", Some(Inbound::DeviceCommand("l1"))),
            ("IoT2mqtt/v1/instances/demo/devices/l1/get", Some(Inbound::DeviceGet("l1"))),
            ("IoT2mqtt/v1/instances/demo/groups/all/cmd", Some(Inbound::GroupCommand("all"))),
            ("IoT2mqtt/v1/instances/demo/meta/request/info", Some(Inbound::MetaRequest("info"))),
            ("IoT2mqtt/v1/instances/demo/devices/l1/cmd/response", None),
            ("IoT2mqtt/v1/instances/demo2/devices/l1/cmd", None),
            ("IoT2mqtt/v1/instances/demo/devices//cmd", None),
            ("IoT2mqtt/v1/instances/demo/status", None),
        ];
        for (topic, expected) in cases {
            assert_eq!(t.parse(topic), expected, "topic {topic}");
        }
    }
}
