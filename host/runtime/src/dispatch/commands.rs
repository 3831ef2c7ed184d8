//! Commands for a device or a group: checked in the contract's order, deduplicated by id,
//! queued to the device's worker with a deadline, and answered exactly once.

use iot2mqtt_contract::codes::{ErrorCode, Severity};
use iot2mqtt_contract::command::{Command, CommandError};
use iot2mqtt_contract::message::{CommandResponse, GroupResponse, Object, ResponseError, Status};
use iot2mqtt_engine::Failure;
use serde_json::Value;
use tokio::time::Instant;

use crate::dedup::Seen;
use crate::worker::Job;

use super::*;

/// Why a device command is not run.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// Not a command object: `INVALID_PAYLOAD`, answered only when the id could be read.
    Invalid(CommandError),
    /// A valid command that is refused.
    Refused {
        /// Its id, to answer on `cmd/response`.
        id: Option<String>,
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Check a device command in the contract's order (section 4): a payload that is not a
/// command object, then a stale timestamp, then an unknown device, then a disabled one.
/// `known` is `None` for a device the instance does not have, else whether it is enabled.
pub(super) fn check_device_command(
    payload: &[u8],
    now: time::OffsetDateTime,
    device: &str,
    known: Option<bool>,
) -> Result<Command, Refusal> {
    let command = Command::parse(payload).map_err(Refusal::Invalid)?;
    let refuse = |code, message: String| Refusal::Refused { id: command.id.clone(), code, message };
    if command.is_stale(now) {
        return Err(refuse(
            ErrorCode::StaleCommand,
            "the command is older than 30 seconds and was not executed".to_string(),
        ));
    }
    match known {
        None => Err(refuse(ErrorCode::UnknownDevice, format!("the instance has no device \"{device}\""))),
        Some(false) => Err(refuse(ErrorCode::DeviceDisabled, format!("the device \"{device}\" is disabled"))),
        Some(true) => Ok(command),
    }
}

impl Dispatcher {
    pub(super) fn device_command(&mut self, device: &str, payload: &[u8]) {
        let known = self.devices.get(device).map(|d| d.entry.enabled);
        let command = match check_device_command(payload, time::OffsetDateTime::now_utc(), device, known) {
            Ok(command) => command,
            Err(Refusal::Invalid(error)) => return self.invalid_payload(device, error),
            Err(Refusal::Refused { id, code, message }) => {
                self.reporter.device_error(device, code.as_str(), &message, Severity::Warning, None);
                if let Some(id) = &id {
                    self.reporter.response(device, &CommandResponse::error(id, code.as_str(), &message));
                }
                return;
            }
        };
        let dedup_key = command.id.as_ref().map(|id| format!("d/{device}/{id}"));
        if let Some(key) = &dedup_key {
            match self.dedup.check(key, Instant::now()) {
                Seen::New => {}
                Seen::Running => return,
                Seen::Answered(response) => {
                    return self.reporter.response_bytes(self.reporter.topics().command_response(device), response);
                }
            }
        }
        let deadline = Instant::now() + command.timeout;
        self.dispatch_command(device, command.id, dedup_key, command.values, deadline, None);
    }

    /// Queue a command for a device; on refusal answer it at once.
    pub(super) fn dispatch_command(
        &mut self,
        device: &str,
        id: Option<String>,
        dedup_key: Option<String>,
        values: Object,
        deadline: Instant,
        group: Option<u64>,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        self.pending.insert(token, Pending { device: device.to_string(), id, dedup_key, deadline, group });
        self.deadlines.insert((deadline, token));
        let sent = match self.worker_of(device) {
            Some(worker) => worker.send(Job::Command { device: device.to_string(), token, values, deadline }).is_ok(),
            None => false,
        };
        if !sent {
            let failure = Failure {
                code: ErrorCode::DeviceBusy.into(),
                message: format!("too many commands are waiting for \"{device}\""),
            };
            self.finish_command(token, Err(failure));
        }
    }

    /// A command is over: answer it (once, plus once per duplicate that waited for it).
    pub(super) fn finish_command(&mut self, token: u64, result: Result<Object, Failure>) {
        let Some(pending) = self.pending.remove(&token) else { return };
        self.deadlines.remove(&(pending.deadline, token));
        if let Err(failure) = &result {
            self.reporter.device_error(&pending.device, &failure.code, &failure.message, Severity::Warning, None);
        }
        if let Some(group) = pending.group {
            return self.group_member_done(group, &pending.device, result);
        }
        let Some(id) = &pending.id else { return };
        let response = match result {
            Ok(values) => CommandResponse::success(id, values),
            Err(failure) => CommandResponse::error(id, &failure.code, &failure.message),
        };
        let bytes = self.reporter.response(&pending.device, &response);
        if let Some(key) = &pending.dedup_key {
            for _ in 0..self.dedup.answer(key, bytes.clone()) {
                self.reporter.response_bytes(self.reporter.topics().command_response(&pending.device), bytes.clone());
            }
        }
    }

    pub(super) fn invalid_payload(&mut self, device: &str, error: CommandError) {
        self.reporter.device_error(device, ErrorCode::InvalidPayload.as_str(), &error.reason, Severity::Warning, None);
        if let Some(id) = &error.id {
            self.reporter
                .response(device, &CommandResponse::error(id, ErrorCode::InvalidPayload.as_str(), &error.reason));
        }
    }

    pub(super) fn group_command(&mut self, group: &str, payload: &[u8]) {
        let command = match Command::parse(payload) {
            Ok(command) => command,
            Err(error) => {
                let message = format!("group \"{group}\": {}", error.reason);
                self.reporter.instance_error(ErrorCode::InvalidPayload.as_str(), &message, Severity::Warning);
                if let Some(id) = &error.id {
                    self.group_refusal(group, id, ErrorCode::InvalidPayload.as_str(), &message);
                }
                return;
            }
        };
        let members: Vec<String> = match self.config.group(group) {
            Some(g) => g
                .devices
                .iter()
                .filter(|d| self.devices.get(d.as_str()).is_some_and(|d| d.entry.enabled))
                .map(|d| d.to_string())
                .collect(),
            None => {
                let message = format!("the instance has no group \"{group}\"");
                self.reporter.instance_error(ErrorCode::UnknownGroup.as_str(), &message, Severity::Warning);
                if let Some(id) = &command.id {
                    self.group_refusal(group, id, ErrorCode::UnknownGroup.as_str(), &message);
                }
                return;
            }
        };
        if command.is_stale(time::OffsetDateTime::now_utc()) {
            let message = "the command is older than 30 seconds and was not executed";
            self.reporter.instance_error(
                ErrorCode::StaleCommand.as_str(),
                &format!("group \"{group}\": {message}"),
                Severity::Warning,
            );
            if let Some(id) = &command.id {
                self.group_refusal(group, id, ErrorCode::StaleCommand.as_str(), message);
            }
            return;
        }
        let dedup_key = command.id.as_ref().map(|id| format!("g/{group}/{id}"));
        if let Some(key) = &dedup_key {
            match self.dedup.check(key, Instant::now()) {
                Seen::New => {}
                Seen::Running => return,
                Seen::Answered(response) => {
                    return self.reporter.response_bytes(self.reporter.topics().group_response(group), response);
                }
            }
        }
        self.next_token += 1;
        let group_token = self.next_token;
        self.groups.insert(
            group_token,
            GroupPending {
                group: group.to_string(),
                id: command.id,
                dedup_key,
                waiting: members.len(),
                results: serde_json::Map::new(),
            },
        );
        let deadline = Instant::now() + command.timeout;
        if members.is_empty() {
            return self.group_done(group_token);
        }
        for member in members {
            self.dispatch_command(&member, None, None, command.values.clone(), deadline, Some(group_token));
        }
    }

    pub(super) fn group_refusal(&mut self, group: &str, id: &str, code: &str, message: &str) {
        let response = GroupResponse {
            cmd_id: id.to_string(),
            status: Status::Error,
            timestamp: iot2mqtt_contract::time::now(),
            results: serde_json::Map::from_iter([(
                "error".to_string(),
                serde_json::json!({"code": code, "message": message}),
            )]),
        };
        self.reporter.group_response(group, &response);
    }

    pub(super) fn group_member_done(&mut self, group_token: u64, device: &str, result: Result<Object, Failure>) {
        let Some(group) = self.groups.get_mut(&group_token) else { return };
        let outcome = match result {
            Ok(_) => Value::String("success".into()),
            Err(f) => serde_json::to_value(ResponseError { code: f.code, message: f.message }).unwrap_or(Value::Null),
        };
        group.results.insert(device.to_string(), outcome);
        group.waiting = group.waiting.saturating_sub(1);
        if group.waiting == 0 {
            self.group_done(group_token);
        }
    }

    pub(super) fn group_done(&mut self, group_token: u64) {
        let Some(group) = self.groups.remove(&group_token) else { return };
        let Some(id) = &group.id else { return };
        let all_ok = group.results.values().all(|v| v == "success");
        let response = GroupResponse {
            cmd_id: id.clone(),
            status: if all_ok { Status::Success } else { Status::Error },
            timestamp: iot2mqtt_contract::time::now(),
            results: group.results,
        };
        let bytes = self.reporter.group_response(&group.group, &response);
        if let Some(key) = &group.dedup_key {
            for _ in 0..self.dedup.answer(key, bytes.clone()) {
                self.reporter.response_bytes(self.reporter.topics().group_response(&group.group), bytes.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(outcome: &Result<Command, Refusal>) -> Option<ErrorCode> {
        match outcome {
            Ok(_) => None,
            Err(Refusal::Invalid(_)) => Some(ErrorCode::InvalidPayload),
            Err(Refusal::Refused { code, .. }) => Some(*code),
        }
    }

    /// One row per rule of the contract's order: the first rule a command breaks decides.
    #[test]
    fn commands_are_checked_in_the_contracts_order() {
        let now = time::macros::datetime!(2026-12-04 12:00:00 UTC);
        let fresh = r#"{"id":"c1","values":{"power":true},"timestamp":"2026-12-04T11:59:50Z"}"#;
        let stale = r#"{"id":"c1","values":{"power":true},"timestamp":"2026-12-04T11:59:00Z"}"#;
        // name, payload, the device (None: unknown; else enabled?), the refusal, the id answered
        type Row<'a> = (&'a str, &'a str, Option<bool>, Option<ErrorCode>, Option<&'a str>);
        let rows: [Row; 10] = [
            ("valid, known, enabled", fresh, Some(true), None, Some("c1")),
            ("not JSON beats an unknown device", "power on", None, Some(ErrorCode::InvalidPayload), None),
            ("an array is not a command", "[1]", Some(true), Some(ErrorCode::InvalidPayload), None),
            (
                "values of the wrong type",
                r#"{"id":"c2","values":5}"#,
                Some(true),
                Some(ErrorCode::InvalidPayload),
                None,
            ),
            ("stale beats an unknown device", stale, None, Some(ErrorCode::StaleCommand), Some("c1")),
            ("stale beats a disabled device", stale, Some(false), Some(ErrorCode::StaleCommand), Some("c1")),
            ("stale on a good device", stale, Some(true), Some(ErrorCode::StaleCommand), Some("c1")),
            ("unknown device", fresh, None, Some(ErrorCode::UnknownDevice), Some("c1")),
            ("disabled device", fresh, Some(false), Some(ErrorCode::DeviceDisabled), Some("c1")),
            ("no timestamp is never stale", r#"{"values":{"power":true}}"#, Some(true), None, None),
        ];
        for (name, payload, known, expected, id) in rows {
            let outcome = check_device_command(payload.as_bytes(), now, "lamp", known);
            assert_eq!(code(&outcome), expected, "{name}");
            match &outcome {
                Ok(command) => assert_eq!(command.id.as_deref(), id, "{name}"),
                Err(Refusal::Refused { id: got, .. }) => assert_eq!(got.as_deref(), id, "{name}"),
                Err(Refusal::Invalid(_)) => {}
            }
        }
    }
}
