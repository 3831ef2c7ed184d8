//! The rules, in the contract's order: what the instance announces (sections 3 and 5), what
//! it answers (section 4), the timestamps of everything it said (section 2), and last its
//! Last Will when the kit may kill it.

use std::time::Duration;

use iot2mqtt_contract::codes::is_valid_code;
use iot2mqtt_contract::{Topics, time as wire};
use serde_json::{Map, Value, json};

use crate::probe::{Probe, Seen};
use crate::{ClientOptions, Outcome, Report, Target};

/// How long the kit listens after an answer for a second one that must not come.
const SETTLE: Duration = Duration::from_millis(700);
/// A device id no instance has.
const NO_SUCH_DEVICE: &str = "conformance-no-such-device";
/// How old a stale command's timestamp is (the contract refuses past 30 s).
const STALE_BY: time::Duration = time::Duration::seconds(60);

pub(crate) async fn run(options: ClientOptions, target: Target) -> Report {
    let mut report = Report::new(&target.instance);
    let topics = Topics::new(&target.base_topic, &target.instance);
    let broker = format!("{}:{}", options.host, options.port);
    let probe = match Probe::connect(options, &topics.all(), target.wait).await {
        Ok(probe) => probe,
        Err(e) => {
            report.record("connect", "§1", Outcome::Fail, format!("cannot use the broker {broker}: {e}"));
            return report;
        }
    };
    let mut check = Check { probe, topics, target, report, ids: 0 };
    check.status().await;
    let info = check.info().await;
    let devices = check.devices_list().await;
    if let Some(device) = check.device(devices.as_deref()) {
        check.report.device = Some(device.clone());
        let state = check.state(&device).await;
        let full = check.get(&device).await;
        check.get_properties(&device, full.as_ref().or(state.as_ref())).await;
        let command = check.command(state.as_ref());
        check.command_success(&device, command.as_ref()).await;
        check.invalid_payload(&device).await;
        check.stale(&device, command.as_ref()).await;
        check.duplicate(&device, command.as_ref()).await;
        check.without_id(&device, command.as_ref()).await;
    }
    check.unknown_device().await;
    check.group(info.as_ref()).await;
    check.unknown_meta().await;
    check.timestamps();
    check.will().await;
    check.probe.close();
    check.report
}

struct Check {
    probe: Probe,
    topics: Topics,
    target: Target,
    report: Report,
    ids: u32,
}

impl Check {
    fn pass(&mut self, rule: &'static str, section: &'static str, detail: impl Into<String>) {
        self.report.record(rule, section, Outcome::Pass, detail);
    }

    fn fail(&mut self, rule: &'static str, section: &'static str, detail: impl Into<String>) {
        self.report.record(rule, section, Outcome::Fail, detail);
    }

    fn skip(&mut self, rule: &'static str, section: &'static str, detail: impl Into<String>) {
        self.report.record(rule, section, Outcome::Skip, detail);
    }

    fn judge(&mut self, rule: &'static str, section: &'static str, verdict: Result<String, String>) {
        match verdict {
            Ok(detail) => self.pass(rule, section, detail),
            Err(detail) => self.fail(rule, section, detail),
        }
    }

    fn next_id(&mut self) -> String {
        self.ids += 1;
        format!("conformance-{}-{}", std::process::id(), self.ids)
    }

    /// `B/status` is retained and `online`.
    async fn status(&mut self) {
        let topic = self.topics.status();
        let wait = self.target.wait;
        let seen = self.probe.wait_for(0, wait, |s| s.topic == topic && s.retain).await;
        let verdict = match seen {
            None => Err(format!("no retained message on {topic} within {wait:?}")),
            Some((_, s)) if s.text() == "online" => Ok(format!("{topic} is \"online\", retained")),
            Some((_, s)) => Err(format!("{topic} is {:?}, not \"online\"", s.text())),
        };
        self.judge("status", "§3, §5", verdict);
    }

    /// `B/meta/info`: retained, and answered on request, with the contract's keys.
    async fn info(&mut self) -> Option<Value> {
        let (topic, request) = (self.topics.info(), self.topics.meta_request("info"));
        let answer = self.request(&topic, &request, "meta.info").await?;
        let id = self.target.instance.to_string();
        let mut problems = Vec::new();
        if answer.get("instance_id").and_then(Value::as_str) != Some(id.as_str()) {
            problems.push(format!("instance_id is not \"{id}\""));
        }
        if answer.get("connector_type").and_then(Value::as_str).is_none_or(str::is_empty) {
            problems.push("connector_type is not a name".to_string());
        }
        for key in ["devices_count", "groups_count"] {
            if answer.get(key).and_then(Value::as_u64).is_none() {
                problems.push(format!("{key} is not a count"));
            }
        }
        if answer.get("uptime").and_then(Value::as_f64).is_none_or(|u| u < 0.0) {
            problems.push("uptime is not a number of seconds".to_string());
        }
        self.judge("meta.info", "§3, §4 meta", verdict(&problems, || format!("{topic}: {answer}")));
        Some(answer)
    }

    /// `B/meta/devices_list`: retained, and answered on request, one well-formed entry a device.
    async fn devices_list(&mut self) -> Option<Vec<Value>> {
        let (topic, request) = (self.topics.devices_list(), self.topics.meta_request("devices_list"));
        let answer = self.request(&topic, &request, "meta.devices_list").await?;
        let Some(list) = answer.as_array().cloned() else {
            self.fail("meta.devices_list", "§3, §4 meta", format!("{topic} is not an array: {answer}"));
            return None;
        };
        let id = self.target.instance.to_string();
        let mut problems = Vec::new();
        for entry in &list {
            let Some(device) = entry.get("device_id").and_then(Value::as_str) else {
                problems.push(format!("an entry without device_id: {entry}"));
                continue;
            };
            if entry.get("global_id").and_then(Value::as_str) != Some(format!("{id}_{device}").as_str()) {
                problems.push(format!("{device}: global_id is not \"{id}_{device}\""));
            }
            if entry.get("model").is_none() {
                problems.push(format!("{device}: no model"));
            }
            for key in ["enabled", "online"] {
                if !entry.get(key).is_some_and(Value::is_boolean) {
                    problems.push(format!("{device}: {key} is not true or false"));
                }
            }
        }
        self.judge("meta.devices_list", "§3, §4 meta", verdict(&problems, || format!("{} devices", list.len())));
        Some(list)
    }

    /// A meta topic: its retained message, then the answer to a request; the answer's JSON.
    async fn request(&mut self, topic: &str, request: &str, rule: &'static str) -> Option<Value> {
        let wait = self.target.wait;
        let retained = self.probe.wait_for(0, wait, |s| s.topic == topic && s.retain).await;
        let mark = self.probe.mark();
        self.probe.publish(request, "");
        let answered = self.probe.wait_for(mark, wait, |s| s.topic == topic).await;
        let problem = match (&retained, &answered) {
            (None, _) => Some(format!("no retained message on {topic}")),
            (_, None) => Some(format!("no answer on {topic} within {wait:?} of a message on {request}")),
            _ => None,
        };
        if let Some(problem) = problem {
            self.fail(rule, "§3, §4 meta", problem);
            return None;
        }
        let (_, seen) = answered?;
        match seen.json() {
            Some(value) => Some(value),
            None => {
                self.fail(rule, "§3, §4 meta", format!("{topic} is not JSON: {:?}", seen.text()));
                None
            }
        }
    }

    /// The device the per-device rules use.
    fn device(&mut self, devices: Option<&[Value]>) -> Option<String> {
        if let Some(device) = &self.target.device {
            return Some(device.clone());
        }
        let usable = devices?.iter().find(|d| {
            d.get("enabled").and_then(Value::as_bool) == Some(true)
                && d.get("online").and_then(Value::as_bool) == Some(true)
        });
        match usable.and_then(|d| d.get("device_id")).and_then(Value::as_str) {
            Some(device) => Some(device.to_string()),
            None => {
                self.skip("device", "§3", "no enabled, online device to check; name one with --device");
                None
            }
        }
    }

    /// The device's retained state has the contract's shape.
    async fn state(&mut self, device: &str) -> Option<Map<String, Value>> {
        let topic = self.topics.state(device);
        let wait = self.target.wait;
        let Some((_, seen)) = self.probe.wait_for(0, wait, |s| s.topic == topic && s.retain).await else {
            self.fail("state", "§3", format!("no retained state on {topic} within {wait:?}"));
            return None;
        };
        let checked = state_shape(&seen, device);
        let state = checked.as_ref().ok().cloned();
        self.judge("state", "§3", checked.map(|s| format!("{topic}: {} keys, retained", s.len())));
        state
    }

    /// A state request publishes the full state, each key on its own topic too.
    async fn get(&mut self, device: &str) -> Option<Map<String, Value>> {
        let topic = self.topics.state(device);
        let wait = self.target.wait;
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.get(device), "{}");
        let Some((_, seen)) = self.probe.wait_for(mark, wait, |s| s.topic == topic).await else {
            self.fail("get", "§4 state requests", format!("no state on {topic} within {wait:?} of {{}} on …/get"));
            return None;
        };
        let state = match state_shape(&seen, device) {
            Ok(state) => state,
            Err(problem) => {
                self.fail("get", "§4 state requests", problem);
                return None;
            }
        };
        self.pass("get", "§4 state requests", format!("{{}} answered with the full state ({} keys)", state.len()));
        let mut problems = Vec::new();
        for (key, value) in &state {
            let key_topic = self.topics.state_key(device, key);
            let same = |s: &Seen| s.topic == key_topic && s.json().as_ref() == Some(value);
            if self.probe.wait_for(mark, wait, same).await.is_none() {
                problems.push(format!("{key_topic} did not carry {value}"));
            }
        }
        let keys = state.keys().cloned().collect::<Vec<_>>().join(", ");
        self.judge("state.keys", "§3", verdict(&problems, || format!("…/state/{{key}} for {keys}")));
        Some(state)
    }

    /// `{"properties":[k]}` publishes a partial state, and the retained state stays full.
    async fn get_properties(&mut self, device: &str, state: Option<&Map<String, Value>>) {
        let Some(key) = state.and_then(|s| s.keys().next().cloned()) else {
            self.skip("get.properties", "§4 state requests", "no state key to ask for");
            return;
        };
        let topic = self.topics.state(device);
        let wait = self.target.wait;
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.get(device), json!({ "properties": [key] }).to_string());
        let partial = |s: &Seen| {
            s.topic == topic
                && s.json().and_then(|v| {
                    v.get("state").and_then(Value::as_object).map(|o| o.len() == 1 && o.contains_key(&key))
                }) == Some(true)
        };
        if self.probe.wait_for(mark, wait, partial).await.is_none() {
            let detail = format!("no state holding only \"{key}\" within {wait:?} of {{\"properties\":[\"{key}\"]}}");
            self.fail("get.properties", "§4 state requests", detail);
            return;
        }
        let full = state.map(Map::len).unwrap_or(0);
        let verdict = match self.probe.retained(&topic, wait).await {
            Err(e) => Err(format!("cannot read the retained state: {e}")),
            Ok(None) => Err(format!("no retained state on {topic} after the partial one")),
            Ok(Some(seen)) => match seen.json().and_then(|v| v.get("state").and_then(Value::as_object).map(Map::len)) {
                Some(n) if n >= full => Ok(format!("a partial state with \"{key}\"; the retained one keeps {n} keys")),
                other => Err(format!("the retained state was replaced by a partial one ({other:?} keys of {full})")),
            },
        };
        self.judge("get.properties", "§4 state requests", verdict);
    }

    /// The command the rules send: the one given, or a boolean of the state set to the value
    /// it has.
    fn command(&mut self, state: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
        if let Some(command) = &self.target.command {
            return Some(command.clone());
        }
        let (key, value) = state?.iter().find(|(_, v)| v.is_boolean())?;
        Some(Map::from_iter([(key.clone(), value.clone())]))
    }

    /// A valid command with an id: one `success` response, then the fresh state.
    async fn command_success(&mut self, device: &str, command: Option<&Map<String, Value>>) {
        const RULE: &str = "command.success";
        const SECTION: &str = "§4 commands, 5-7";
        let Some(values) = command else {
            self.skip(RULE, SECTION, "the state has no boolean to set to itself; give a command with --command");
            return;
        };
        let id = self.next_id();
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.command(device), json!({ "id": id, "values": values }).to_string());
        let (responses, first) = self.responses(&self.topics.command_response(device), &id, mark).await;
        let verdict = match one_response(&responses, &id, self.target.wait) {
            Err(problem) => Err(problem),
            Ok(response) if response["status"] != "success" => {
                Err(format!("{} was answered {response}, not success", Value::Object(values.clone())))
            }
            Ok(_) => {
                let state = self.topics.state(device);
                let after = first.map_or(mark, |at| at + 1);
                match self.probe.wait_for(after, self.target.wait, |s| s.topic == state).await {
                    Some(_) => {
                        Ok(format!("{} answered success once, then the fresh state", Value::Object(values.clone())))
                    }
                    None => Err("success was answered but no fresh state was published after it".to_string()),
                }
            }
        };
        self.judge(RULE, SECTION, verdict);
    }

    /// A payload that is not JSON: `INVALID_PAYLOAD` (warning) on the device's error topic,
    /// well formed, and no response.
    async fn invalid_payload(&mut self, device: &str) {
        let (errors, responses) = (self.topics.device_error(device), self.topics.command_response(device));
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.command(device), "this is not json {");
        let wait = self.target.wait;
        let error = self
            .probe
            .wait_for(mark, wait, |s| {
                s.topic == errors && s.json().is_some_and(|v| v["error_code"] == "INVALID_PAYLOAD")
            })
            .await;
        let Some((_, error)) = error else {
            self.fail(
                "command.invalid_payload",
                "§4 commands, 1",
                format!("no INVALID_PAYLOAD on {errors} within {wait:?}"),
            );
            self.skip("error.shape", "§3", "no error was published to look at");
            return;
        };
        self.probe.settle(SETTLE).await;
        let answered = self.probe.since(mark).iter().any(|s| s.topic == responses);
        let error = error.json().unwrap_or_default();
        let verdict = match (answered, error["severity"].as_str()) {
            (true, _) => Err(format!("a payload that is not JSON got a response on {responses}")),
            (false, Some("warning")) => Ok("INVALID_PAYLOAD (warning), no response".to_string()),
            (false, severity) => Err(format!("INVALID_PAYLOAD with severity {severity:?}, not \"warning\"")),
        };
        self.judge("command.invalid_payload", "§4 commands, 1", verdict);
        self.judge("error.shape", "§3", error_shape(&error));
    }

    /// A command older than 30 s: one `STALE_COMMAND` response.
    async fn stale(&mut self, device: &str, command: Option<&Map<String, Value>>) {
        let values = command.cloned().unwrap_or_default();
        let id = self.next_id();
        let old = wire::format(time::OffsetDateTime::now_utc() - STALE_BY);
        let payload = json!({ "id": id, "timestamp": old, "values": values });
        self.expect_error(&self.topics.command(device), payload, "command.stale", "§4 commands, 2", "STALE_COMMAND")
            .await;
    }

    /// A command to a device the instance does not have: one `UNKNOWN_DEVICE` response.
    async fn unknown_device(&mut self) {
        let id = self.next_id();
        let payload = json!({ "id": id, "values": {} });
        let topic = self.topics.command(NO_SUCH_DEVICE);
        self.expect_error(&topic, payload, "command.unknown_device", "§4 commands, 3", "UNKNOWN_DEVICE").await;
    }

    /// Publish `payload` (whose `id` is set) to `topic` and see exactly one error response
    /// with `code`.
    async fn expect_error(
        &mut self,
        topic: &str,
        payload: Value,
        rule: &'static str,
        section: &'static str,
        code: &str,
    ) {
        let id = payload["id"].as_str().unwrap_or_default().to_string();
        let responses = format!("{topic}/response");
        let mark = self.probe.mark();
        self.probe.publish(topic, payload.to_string());
        let (seen, _) = self.responses(&responses, &id, mark).await;
        let verdict = one_response(&seen, &id, self.target.wait).and_then(|response| {
            match (response["status"].as_str(), response["error"]["code"].as_str()) {
                (Some("error"), Some(c)) if c == code => Ok(format!("answered once with {code}")),
                _ => Err(format!("answered {response}, not an error with code {code}")),
            }
        });
        self.judge(rule, section, verdict);
    }

    /// The same id twice: two identical answers (the second repeats the first outcome).
    async fn duplicate(&mut self, device: &str, command: Option<&Map<String, Value>>) {
        const RULE: &str = "command.duplicate";
        const SECTION: &str = "§4 commands, 4";
        let Some(values) = command else {
            self.skip(RULE, SECTION, "no command to repeat; give one with --command");
            return;
        };
        let id = self.next_id();
        let payload = json!({ "id": id, "values": values }).to_string();
        let topic = self.topics.command(device);
        let responses = self.topics.command_response(device);
        let is_answer = |s: &Seen| s.topic == responses && s.json().is_some_and(|v| v["cmd_id"] == id.as_str());
        let mark = self.probe.mark();
        self.probe.publish(&topic, payload.clone());
        self.responses(&responses, &id, mark).await;
        let again = self.probe.mark();
        self.probe.publish(&topic, payload);
        self.probe.wait_for(again, self.target.wait, is_answer).await;
        self.probe.settle(SETTLE).await;
        let answers: Vec<Value> =
            self.probe.since(mark).iter().filter(|s| is_answer(s)).filter_map(Seen::json).collect();
        let verdict = match answers.as_slice() {
            [first, second] if first["status"] == second["status"] && first.get("error") == second.get("error") => {
                Ok(format!("answered twice with the same outcome ({})", first["status"]))
            }
            [first, second] => Err(format!("the repeated id was answered {second}, the first time {first}")),
            other => Err(format!("the same id sent twice got {} responses, not 2", other.len())),
        };
        self.judge(RULE, SECTION, verdict);
    }

    /// A command without an id gets no response.
    async fn without_id(&mut self, device: &str, command: Option<&Map<String, Value>>) {
        const RULE: &str = "command.without_id";
        const SECTION: &str = "§4 commands, 6";
        let Some(values) = command else {
            self.skip(RULE, SECTION, "no command to send; give one with --command");
            return;
        };
        let responses = self.topics.command_response(device);
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.command(device), json!({ "values": values }).to_string());
        self.probe.settle(SETTLE * 2).await;
        let answered = self.probe.since(mark).iter().filter(|s| s.topic == responses).count();
        let verdict = match answered {
            0 => Ok("no response".to_string()),
            n => Err(format!("{n} responses to a command without an id")),
        };
        self.judge(RULE, SECTION, verdict);
    }

    /// A group command: one response with a result per member.
    async fn group(&mut self, info: Option<&Value>) {
        const RULE: &str = "group";
        const SECTION: &str = "§4 group commands";
        let groups = info.and_then(|i| i["groups_count"].as_u64()).unwrap_or(0);
        let Some(group) = self.target.group.clone() else {
            let why = match groups {
                0 => "the instance has no groups".to_string(),
                n => format!("the instance has {n} groups; name one with --group"),
            };
            self.skip(RULE, SECTION, why);
            return;
        };
        let values = self.target.command.clone().unwrap_or_default();
        let id = self.next_id();
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.group_command(&group), json!({ "id": id, "values": values }).to_string());
        let (seen, _) = self.responses(&self.topics.group_response(&group), &id, mark).await;
        let verdict = one_response(&seen, &id, self.target.wait).and_then(|response| {
            match (response["status"].as_str(), response["results"].as_object()) {
                (Some("success" | "error"), Some(results)) => Ok(format!("one response, {} members", results.len())),
                _ => Err(format!("the response {response} has no status and results")),
            }
        });
        self.judge(RULE, SECTION, verdict);
    }

    /// A meta request the contract does not name is ignored: the instance stays online and
    /// still answers.
    async fn unknown_meta(&mut self) {
        let mark = self.probe.mark();
        self.probe.publish(&self.topics.meta_request("conformance-unknown"), "");
        let (info, status) = (self.topics.info(), self.topics.status());
        self.probe.publish(&self.topics.meta_request("info"), "");
        let wait = self.target.wait;
        let answered = self.probe.wait_for(mark, wait, |s| s.topic == info).await.is_some();
        let offline = self.probe.since(mark).iter().any(|s| s.topic == status && s.text() != "online");
        let verdict = match (answered, offline) {
            (true, false) => Ok("ignored; info still answered".to_string()),
            (_, true) => Err("the instance went offline after an unknown meta request".to_string()),
            (false, _) => Err("info was no longer answered after an unknown meta request".to_string()),
        };
        self.judge("meta.unknown", "§4 meta", verdict);
    }

    /// Every `timestamp` the instance published during the run is RFC 3339 UTC with
    /// milliseconds.
    fn timestamps(&mut self) {
        let mut checked = 0;
        let mut wrong = Vec::new();
        for seen in self.probe.all() {
            let Some(Value::String(stamp)) = seen.json().and_then(|v| v.get("timestamp").cloned()) else { continue };
            if self.topics.parse(&seen.topic).is_some() {
                // Commands are ours, not the instance's.
                continue;
            }
            checked += 1;
            if !is_wire_timestamp(&stamp) {
                wrong.push(format!("{}: {stamp}", seen.topic));
            }
        }
        let verdict = match (checked, wrong.first()) {
            (0, _) => Err("no timestamp was published".to_string()),
            (n, None) => Ok(format!("{n} timestamps, each RFC 3339 UTC with milliseconds")),
            (n, Some(first)) => {
                Err(format!("{} of {n} timestamps are not RFC 3339 UTC with milliseconds, e.g. {first}", wrong.len()))
            }
        };
        self.judge("timestamps", "§2", verdict);
    }

    /// Killed, the instance's Last Will says `offline`.
    async fn will(&mut self) {
        const RULE: &str = "will";
        const SECTION: &str = "§3, §5";
        let Some(kill) = self.target.kill.clone() else {
            self.skip(RULE, SECTION, "give --kill with a command that kills the connector to check its Last Will");
            return;
        };
        let status = self.topics.status();
        let mark = self.probe.mark();
        let killed = tokio::process::Command::new("sh").arg("-c").arg(&kill).status().await;
        match killed {
            Ok(code) if code.success() => {}
            Ok(code) => return self.fail(RULE, SECTION, format!("`{kill}` failed ({code})")),
            Err(e) => return self.fail(RULE, SECTION, format!("cannot run `{kill}`: {e}")),
        }
        let wait = self.target.wait;
        let verdict = match self.probe.wait_for(mark, wait, |s| s.topic == status && s.text() == "offline").await {
            Some(_) => Ok(format!("\"offline\" on {status} once the connection broke")),
            None => Err(format!("no \"offline\" on {status} within {wait:?} of `{kill}`: is the Last Will set?")),
        };
        self.judge(RULE, SECTION, verdict);
    }

    /// Every response with `id` on `topic` from `mark` on, waiting for the first and then a
    /// moment for any other; and where the first is.
    async fn responses(&mut self, topic: &str, id: &str, mark: usize) -> (Vec<Value>, Option<usize>) {
        let is_answer = |s: &Seen| s.topic == topic && s.json().is_some_and(|v| v["cmd_id"] == id);
        let first = self.probe.wait_for(mark, self.target.wait, is_answer).await.map(|(at, _)| at);
        if first.is_some() {
            self.probe.settle(SETTLE).await;
        }
        let found = self.probe.since(mark).iter().filter(|s| is_answer(s)).filter_map(Seen::json).collect();
        (found, first)
    }
}

/// The only response, well formed (a device's, or a group's with `results`).
fn one_response<'a>(responses: &'a [Value], id: &str, wait: Duration) -> Result<&'a Value, String> {
    let response = match responses {
        [] => return Err(format!("no response to \"{id}\" within {wait:?}")),
        [one] => one,
        many => return Err(format!("{} responses to \"{id}\", not one", many.len())),
    };
    let stamp = response["timestamp"].as_str().unwrap_or_default();
    let error_shape =
        || response["error"]["code"].as_str().is_some_and(is_valid_code) && response["error"]["message"].is_string();
    let shape = match (response["status"].as_str(), response["results"].is_object()) {
        // A group's: a result per member, whatever the status.
        (Some("success" | "error"), true) => true,
        (Some("success"), false) => response["result"].is_object(),
        (Some("error"), false) => error_shape(),
        _ => false,
    };
    if !shape || !is_wire_timestamp(stamp) {
        return Err(format!("the response {response} lacks the contract's shape"));
    }
    Ok(response)
}

/// A state publication's `state`, when it has the contract's shape.
fn state_shape(seen: &Seen, device: &str) -> Result<Map<String, Value>, String> {
    let value = seen.json().ok_or_else(|| format!("{} is not JSON: {:?}", seen.topic, seen.text()))?;
    if value["device_id"] != device {
        return Err(format!("{}: device_id is not \"{device}\": {value}", seen.topic));
    }
    if !value["timestamp"].as_str().is_some_and(is_wire_timestamp) {
        return Err(format!("{}: timestamp {} is not RFC 3339 UTC with milliseconds", seen.topic, value["timestamp"]));
    }
    value["state"].as_object().cloned().ok_or_else(|| format!("{}: state is not an object: {value}", seen.topic))
}

/// An error publication's shape: timestamp, code, message, severity, and retry_info when there.
fn error_shape(error: &Value) -> Result<String, String> {
    let mut problems = Vec::new();
    if !error["timestamp"].as_str().is_some_and(is_wire_timestamp) {
        problems.push("timestamp".to_string());
    }
    if !error["error_code"].as_str().is_some_and(is_valid_code) {
        problems.push("error_code (UPPER_SNAKE_CASE)".to_string());
    }
    if !error["message"].is_string() {
        problems.push("message".to_string());
    }
    if !matches!(error["severity"].as_str(), Some("info" | "warning" | "error" | "critical")) {
        problems.push("severity".to_string());
    }
    if let Some(retry) = error.get("retry_info")
        && !(retry["attempt"].is_u64() && (retry["max_attempts"].is_u64() || retry["max_attempts"].is_null()))
    {
        problems.push("retry_info".to_string());
    }
    match problems.is_empty() {
        true => Ok("timestamp, error_code, message and severity as the contract says".to_string()),
        false => Err(format!("{error} has a wrong or missing {}", problems.join(", "))),
    }
}

/// RFC 3339, UTC, with milliseconds: `2025-10-13T10:30:00.000Z`.
fn is_wire_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() == 24 && text.ends_with('Z') && bytes[10] == b'T' && bytes[19] == b'.' && wire::parse(text).is_some()
}

fn verdict(problems: &[String], fine: impl FnOnce() -> String) -> Result<String, String> {
    match problems.is_empty() {
        true => Ok(fine()),
        false => Err(problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_timestamps_are_told_apart() {
        for (text, ok) in [
            ("2025-10-13T10:30:00.000Z", true),
            ("2025-10-13T10:30:00Z", false),
            ("2025-10-13T10:30:00.000+00:00", false),
            ("2025-10-13 10:30:00.000Z", false),
            ("2025-13-13T10:30:00.000Z", false),
        ] {
            assert_eq!(is_wire_timestamp(text), ok, "{text}");
        }
    }

    #[test]
    fn error_shapes_name_what_is_wrong() {
        let good = json!({"timestamp": "2025-10-13T10:30:00.000Z", "error_code": "INVALID_PAYLOAD",
            "message": "not JSON", "severity": "warning"});
        assert!(error_shape(&good).is_ok());
        let bad = json!({"timestamp": "2025-10-13T10:30:00.000Z", "error_code": "invalid", "severity": "loud"});
        let problem = error_shape(&bad).unwrap_err();
        assert!(
            problem.contains("error_code") && problem.contains("message") && problem.contains("severity"),
            "{problem}"
        );
    }

    #[test]
    fn one_response_is_one_well_formed_response() {
        let ok = json!({"cmd_id": "a", "status": "success", "timestamp": "2025-10-13T10:30:00.000Z", "result": {}});
        let wait = Duration::from_secs(1);
        assert!(one_response(std::slice::from_ref(&ok), "a", wait).is_ok());
        assert!(one_response(&[], "a", wait).unwrap_err().contains("no response"));
        assert!(one_response(&[ok.clone(), ok], "a", wait).unwrap_err().contains("2 responses"));
        let shapeless = json!({"cmd_id": "a", "status": "error", "timestamp": "2025-10-13T10:30:00.000Z"});
        assert!(one_response(&[shapeless], "a", wait).unwrap_err().contains("shape"));
    }
}
