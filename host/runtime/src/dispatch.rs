//! The dispatcher: one task per instance that applies the contract's rules between the MQTT
//! session and the device workers. It never waits on a device: jobs are queued, answers come
//! back as events, deadlines are timers. Everything that touches more than one device (group
//! commands, meta, hot swap) happens here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::Inbound;
use iot2mqtt_contract::codes::{self, Severity};
use iot2mqtt_contract::command::{Command, CommandError, DEDUP_WINDOW, GetRequest};
use iot2mqtt_contract::config::{DeviceEntry, InstanceConfig};
use iot2mqtt_contract::message::{
    CommandResponse, DeviceListEntry, GroupResponse, InfoMessage, Object, PluginInfo, ResponseError, RetryInfo, Status,
};
use iot2mqtt_engine::{DeviceInfo, Failure, Plugin};
use iot2mqtt_mqtt::{ClientEvent, Message};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::backoff::Backoff;
use crate::dedup::{Dedup, Seen};
use crate::report::Reporter;
use crate::runtime::{InstanceStatus, SwapError, SwapReport};
use crate::worker::{self, Applied, Job, LaneFactory, ReadPurpose, WorkerEvent, WorkerHandle};

/// What the instance's owner can ask of it.
pub(crate) enum Control {
    /// Switch every device to `plugin`, whose lanes are built and initialised already.
    Commit {
        plugin: Plugin,
        lanes: Vec<(String, iot2mqtt_engine::Lane, DeviceInfo)>,
        reply: oneshot::Sender<Result<SwapReport, SwapError>>,
    },
    /// Report a plugin that was rejected before it could be committed.
    Rejected { message: String },
}

/// Everything the dispatcher owns.
pub(crate) struct Dispatcher {
    pub(crate) config: InstanceConfig,
    pub(crate) connector_type: String,
    pub(crate) reporter: Arc<Reporter>,
    pub(crate) factory: LaneFactory,
    pub(crate) plugin: Plugin,
    pub(crate) birth: watch::Sender<Option<Message>>,
    pub(crate) status: watch::Sender<InstanceStatus>,
    pub(crate) started: std::time::Instant,
    pub(crate) devices: BTreeMap<String, Device>,
    pub(crate) worker_events: mpsc::Sender<WorkerEvent>,
    pub(crate) swaps: u64,
    polls: BTreeSet<(Instant, String)>,
    deadlines: BTreeSet<(Instant, u64)>,
    pending: HashMap<u64, Pending>,
    groups: HashMap<u64, GroupPending>,
    dedup: Dedup,
    next_token: u64,
    starting: usize,
    ready: bool,
    /// Enabled devices not read yet; `meta/devices_list` waits for all of them at start.
    unread: usize,
    /// Every enabled device has been read once: from then on the list follows availability
    /// changes as the reporter signals them.
    list_settled: bool,
}

/// The channels a dispatcher publishes through.
pub(crate) struct Links {
    /// The message the session sends after every connect (`online` once ready).
    pub(crate) birth: watch::Sender<Option<Message>>,
    /// The instance's status, for its handle.
    pub(crate) status: watch::Sender<InstanceStatus>,
    /// Given to each worker to report back.
    pub(crate) worker_events: mpsc::Sender<WorkerEvent>,
}

/// One configured device.
pub(crate) struct Device {
    pub(crate) entry: DeviceEntry,
    pub(crate) worker: Option<WorkerHandle>,
    pub(crate) info: Option<DeviceInfo>,
    poll_due: Option<Instant>,
    polling: bool,
    failures: Backoff,
    /// Whether `meta/devices_list` last said the device was online.
    listed_online: bool,
    /// Whether the device was read at least once.
    read_once: bool,
}

/// A command waiting for its device.
struct Pending {
    device: String,
    id: Option<String>,
    dedup_key: Option<String>,
    deadline: Instant,
    group: Option<u64>,
}

/// A group command waiting for its members.
struct GroupPending {
    group: String,
    id: Option<String>,
    dedup_key: Option<String>,
    waiting: usize,
    results: serde_json::Map<String, Value>,
}

impl Dispatcher {
    pub(crate) fn new(
        config: InstanceConfig,
        connector_type: String,
        reporter: Arc<Reporter>,
        factory: LaneFactory,
        plugin: Plugin,
        links: Links,
    ) -> Self {
        let Links { birth, status, worker_events } = links;
        let interval = Duration::from_secs(config.update_interval);
        let devices = config
            .devices
            .iter()
            .map(|entry| {
                let device = Device {
                    entry: entry.clone(),
                    worker: None,
                    info: None,
                    poll_due: None,
                    polling: false,
                    failures: Backoff::new(interval),
                    listed_online: false,
                    read_once: false,
                };
                (entry.device_id.to_string(), device)
            })
            .collect();
        Self {
            config,
            connector_type,
            reporter,
            factory,
            plugin,
            birth,
            status,
            started: std::time::Instant::now(),
            devices,
            worker_events,
            swaps: 0,
            polls: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            pending: HashMap::new(),
            groups: HashMap::new(),
            dedup: Dedup::new(DEDUP_WINDOW),
            next_token: 0,
            starting: 0,
            ready: false,
            unread: 0,
            list_settled: false,
        }
    }

    /// Start a worker for every enabled device.
    pub(crate) fn start_workers(&mut self) {
        for device in self.devices.values_mut() {
            if device.entry.enabled {
                device.worker = Some(worker::spawn(
                    self.factory.clone(),
                    self.plugin.clone(),
                    device.entry.clone(),
                    self.worker_events.clone(),
                ));
                self.starting += 1;
                self.unread += 1;
            }
        }
    }

    /// Serve until `shutdown` completes; then call [`Dispatcher::stop`].
    pub(crate) async fn run(
        &mut self,
        mut client: mpsc::Receiver<ClientEvent>,
        mut workers: mpsc::Receiver<WorkerEvent>,
        mut control: mpsc::Receiver<Control>,
        shutdown: impl Future<Output = ()>,
        init_grace: Duration,
    ) {
        tokio::pin!(shutdown);
        let reporter = self.reporter.clone();
        let grace = Instant::now() + init_grace;
        if self.starting == 0 {
            self.announce();
        }
        loop {
            let next_timer = self.next_timer();
            tokio::select! {
                biased;
                // Stop: the caller publishes `offline` and closes the session.
                () = &mut shutdown => return,
                // Hot swap and other requests of the owner.
                Some(request) = control.recv() => self.control(request),
                // What the devices did.
                Some(event) = workers.recv() => self.worker_event(event),
                // What arrived over MQTT.
                Some(event) = client.recv() => self.client_event(event),
                // Polls due and commands out of time.
                () = sleep_until(next_timer) => self.timers(),
                // Slow devices do not keep the instance from going online.
                () = sleep_until(grace), if !self.ready => self.announce(),
                // A device came or went: the list of who is online follows.
                () = reporter.availability_changed(), if self.list_settled => self.refresh_stale_list(),
            }
        }
    }

    fn next_timer(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let poll = self.polls.first().map_or(far, |(at, _)| *at);
        let deadline = self.deadlines.first().map_or(far, |(at, _)| *at);
        poll.min(deadline)
    }

    /// The devices are initialised: publish `online`, the meta topics, and start polling.
    fn announce(&mut self) {
        if self.ready {
            return;
        }
        self.ready = true;
        let online = self.reporter.status_message(true);
        self.birth.send_replace(Some(online.clone()));
        self.reporter.outbox().push(online);
        self.publish_devices_list();
        self.list_settled = self.unread == 0;
        self.publish_info();
        let now = Instant::now();
        let ids: Vec<String> =
            self.devices.iter().filter(|(_, d)| d.worker.is_some()).map(|(id, _)| id.clone()).collect();
        for id in ids {
            self.schedule_poll(&id, now);
        }
        self.status.send_modify(|s| s.ready = true);
    }

    fn client_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected => {
                let reconnected = self.status.borrow().connected_once;
                self.status.send_modify(|s| {
                    s.mqtt_connected = true;
                    s.reconnects += u64::from(reconnected);
                    s.connected_once = true;
                });
                if reconnected && self.ready {
                    // The broker may have lost retained messages while we were away.
                    self.publish_devices_list();
                    self.publish_info();
                }
            }
            ClientEvent::Disconnected { .. } => self.status.send_modify(|s| s.mqtt_connected = false),
            ClientEvent::Message(publish) => {
                let topics = self.reporter.topics().clone();
                match topics.parse(&publish.topic) {
                    Some(Inbound::DeviceCommand(device)) => self.device_command(device, &publish.payload),
                    Some(Inbound::DeviceGet(device)) => self.device_get(device, &publish.payload),
                    Some(Inbound::GroupCommand(group)) => self.group_command(group, &publish.payload),
                    Some(Inbound::MetaRequest(what)) => self.meta_request(what),
                    None => tracing::debug!(topic = %publish.topic, "ignoring a message on an unexpected topic"),
                }
            }
        }
    }

    // ---- commands -----------------------------------------------------------------------

    fn device_command(&mut self, device: &str, payload: &[u8]) {
        let command = match Command::parse(payload) {
            Ok(command) => command,
            Err(error) => return self.invalid_payload(device, error),
        };
        let now = time::OffsetDateTime::now_utc();
        let refusal = if command.is_stale(now) {
            Some((codes::STALE_COMMAND, "the command is older than 30 seconds and was not executed".to_string()))
        } else {
            match self.devices.get(device) {
                None => Some((codes::UNKNOWN_DEVICE, format!("the instance has no device \"{device}\""))),
                Some(d) if !d.entry.enabled => {
                    Some((codes::DEVICE_DISABLED, format!("the device \"{device}\" is disabled")))
                }
                Some(_) => None,
            }
        };
        if let Some((code, message)) = refusal {
            self.reporter.device_error(device, code, &message, Severity::Warning, None);
            if let Some(id) = &command.id {
                self.reporter.response(device, &CommandResponse::error(id, code, &message));
            }
            return;
        }
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
    fn dispatch_command(
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
        let sent = match self.devices.get(device).and_then(|d| d.worker.as_ref()) {
            Some(worker) => worker.send(Job::Command { token, values, deadline }).is_ok(),
            None => false,
        };
        if !sent {
            let failure = Failure {
                code: "DEVICE_BUSY".into(),
                message: format!("too many commands are waiting for \"{device}\""),
            };
            self.finish_command(token, Err(failure));
        }
    }

    /// A command is over: answer it (once, plus once per duplicate that waited for it).
    fn finish_command(&mut self, token: u64, result: Result<Object, Failure>) {
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

    fn invalid_payload(&mut self, device: &str, error: CommandError) {
        self.reporter.device_error(device, codes::INVALID_PAYLOAD, &error.reason, Severity::Warning, None);
        if let Some(id) = &error.id {
            self.reporter.response(device, &CommandResponse::error(id, codes::INVALID_PAYLOAD, &error.reason));
        }
    }

    fn group_command(&mut self, group: &str, payload: &[u8]) {
        let command = match Command::parse(payload) {
            Ok(command) => command,
            Err(error) => {
                let message = format!("group \"{group}\": {}", error.reason);
                self.reporter.instance_error(codes::INVALID_PAYLOAD, &message, Severity::Warning);
                if let Some(id) = &error.id {
                    self.group_refusal(group, id, codes::INVALID_PAYLOAD, &message);
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
                self.reporter.instance_error("UNKNOWN_GROUP", &message, Severity::Warning);
                if let Some(id) = &command.id {
                    self.group_refusal(group, id, "UNKNOWN_GROUP", &message);
                }
                return;
            }
        };
        if command.is_stale(time::OffsetDateTime::now_utc()) {
            let message = "the command is older than 30 seconds and was not executed";
            self.reporter.instance_error(
                codes::STALE_COMMAND,
                &format!("group \"{group}\": {message}"),
                Severity::Warning,
            );
            if let Some(id) = &command.id {
                self.group_refusal(group, id, codes::STALE_COMMAND, message);
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

    fn group_refusal(&mut self, group: &str, id: &str, code: &str, message: &str) {
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

    fn group_member_done(&mut self, group_token: u64, device: &str, result: Result<Object, Failure>) {
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

    fn group_done(&mut self, group_token: u64) {
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

    // ---- state requests and polls ---------------------------------------------------------

    fn device_get(&mut self, device: &str, payload: &[u8]) {
        let request = match GetRequest::parse(payload) {
            Ok(request) => request,
            Err(error) => {
                return self.reporter.device_error(
                    device,
                    codes::INVALID_PAYLOAD,
                    &error.reason,
                    Severity::Warning,
                    None,
                );
            }
        };
        let worker = match self.devices.get(device) {
            None => {
                let message = format!("the instance has no device \"{device}\"");
                return self.reporter.device_error(device, codes::UNKNOWN_DEVICE, &message, Severity::Warning, None);
            }
            Some(d) => d.worker.as_ref(),
        };
        let Some(worker) = worker else {
            let message = format!("the device \"{device}\" is disabled");
            return self.reporter.device_error(device, codes::DEVICE_DISABLED, &message, Severity::Warning, None);
        };
        if worker.send(Job::Read { purpose: ReadPurpose::Get { properties: request.properties } }).is_err() {
            let message = format!("too many requests are waiting for \"{device}\"");
            self.reporter.device_error(device, "DEVICE_BUSY", &message, Severity::Warning, None);
        }
    }

    fn schedule_poll(&mut self, device: &str, at: Instant) {
        let Some(d) = self.devices.get_mut(device) else { return };
        if let Some(old) = d.poll_due.take() {
            self.polls.remove(&(old, device.to_string()));
        }
        d.poll_due = Some(at);
        self.polls.insert((at, device.to_string()));
    }

    fn timers(&mut self) {
        let now = Instant::now();
        while let Some((at, token)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, token));
            let failure = Failure {
                code: codes::TIMEOUT.into(),
                message: "the device did not finish the command in time".into(),
            };
            self.finish_command(token, Err(failure));
        }
        while let Some((at, device)) = self.polls.first().cloned() {
            if at > now {
                break;
            }
            self.polls.remove(&(at, device.clone()));
            let Some(d) = self.devices.get_mut(&device) else { continue };
            d.poll_due = None;
            if d.polling {
                continue;
            }
            if let Some(worker) = &d.worker
                && worker.send(Job::Read { purpose: ReadPurpose::Poll }).is_ok()
            {
                d.polling = true;
            } else {
                let interval = Duration::from_secs(self.config.update_interval);
                self.schedule_poll(&device, now + interval);
            }
        }
    }

    fn worker_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Started { device, outcome } => self.device_started(&device, outcome),
            WorkerEvent::Read { device, purpose, outcome } => self.device_read(&device, purpose, outcome),
            WorkerEvent::Applied { device, token, outcome } => match outcome {
                Some(Applied { result, state }) => {
                    self.finish_command(token, result);
                    if let Some(state) = state {
                        self.reporter.state(&device, state);
                        self.refresh_devices_list(&device);
                    }
                }
                None => tracing::debug!(%device, token, "a command expired before its device got to it"),
            },
            WorkerEvent::Fault { device, fault } => {
                tracing::error!(instance = %self.config.instance_id, %device, kind = ?fault.kind, "plugin fault: {}", fault.message);
                let message = format!("device \"{device}\": {}", fault.message);
                self.reporter.instance_error(codes::PLUGIN_FAULT, &message, Severity::Error);
                self.status.send_modify(|s| s.record_fault(std::time::Instant::now(), message));
            }
            WorkerEvent::Switched { device, pause } => {
                tracing::debug!(%device, ?pause, "device switched to the new plugin");
                self.status.send_modify(|s| s.last_swap_pause = s.last_swap_pause.max(pause));
            }
        }
    }

    fn device_started(&mut self, device: &str, outcome: Result<DeviceInfo, Failure>) {
        let was_starting = self.devices.get(device).is_some_and(|d| d.info.is_none());
        match outcome {
            Ok(info) => {
                let changed = self.devices.get(device).is_some_and(|d| d.info.as_ref() != Some(&info));
                if let Some(d) = self.devices.get_mut(device) {
                    d.info = Some(info);
                }
                if changed && self.ready {
                    self.publish_devices_list();
                    self.schedule_poll(device, Instant::now());
                }
            }
            Err(failure) => {
                tracing::warn!(%device, "device could not be started: {failure}");
                self.reporter.device_error(device, &failure.code, &failure.message, Severity::Error, None);
                self.reporter.unavailable(device);
                if let Some(d) = self.devices.get_mut(device) {
                    d.info.get_or_insert(DeviceInfo { id: device.to_string(), model: None, poll: true });
                }
            }
        }
        if was_starting {
            self.starting = self.starting.saturating_sub(1);
            if self.starting == 0 {
                self.announce();
            }
        }
    }

    fn device_read(&mut self, device: &str, purpose: ReadPurpose, outcome: Result<Object, Failure>) {
        self.record_read(device, purpose, outcome);
        self.refresh_devices_list(device);
    }

    fn record_read(&mut self, device: &str, purpose: ReadPurpose, outcome: Result<Object, Failure>) {
        let interval = Duration::from_secs(self.config.update_interval);
        let polled = self.devices.get(device).is_none_or(|d| d.info.as_ref().is_none_or(|i| i.poll));
        match outcome {
            Ok(state) => {
                if let ReadPurpose::Get { properties: Some(keys) } = &purpose {
                    self.reporter.state(device, state.clone());
                    self.reporter.partial_state(device, &state, keys);
                } else {
                    self.reporter.state(device, state);
                }
                if let Some(d) = self.devices.get_mut(device) {
                    d.failures.reset();
                }
                if purpose == ReadPurpose::Poll {
                    self.poll_finished(device, polled.then(|| Instant::now() + interval));
                }
            }
            Err(failure) => {
                self.reporter.unavailable(device);
                let Some(d) = self.devices.get_mut(device) else { return };
                let delay = d.failures.fail();
                let attempt = d.failures.failures();
                let next_retry = time::OffsetDateTime::now_utc() + delay;
                let retry =
                    RetryInfo { attempt, max_attempts: None, next_retry: iot2mqtt_contract::time::format(next_retry) };
                let message = format!("{}: {}", failure.code, failure.message);
                self.reporter.device_error(device, codes::UPDATE_ERROR, &message, Severity::Warning, Some(retry));
                if purpose == ReadPurpose::Poll {
                    self.poll_finished(device, Some(Instant::now() + delay));
                }
            }
        }
    }

    fn poll_finished(&mut self, device: &str, next: Option<Instant>) {
        if let Some(d) = self.devices.get_mut(device) {
            d.polling = false;
        }
        if let Some(at) = next {
            self.schedule_poll(device, at);
        }
    }

    // ---- meta -----------------------------------------------------------------------------

    fn meta_request(&mut self, what: &str) {
        match what {
            "devices_list" => self.publish_devices_list(),
            "info" => self.publish_info(),
            other => tracing::warn!(request = %other, "ignoring an unknown meta request"),
        }
    }

    pub(crate) fn publish_devices_list(&mut self) {
        let instance = self.config.instance_id.as_str();
        let mut list = Vec::with_capacity(self.devices.len());
        for (id, d) in &mut self.devices {
            let online = self.reporter.online(id);
            d.listed_online = online;
            list.push(DeviceListEntry {
                device_id: id.clone(),
                global_id: format!("{instance}_{id}"),
                model: d.info.as_ref().and_then(|i| i.model.clone()),
                enabled: d.entry.enabled,
                online,
            });
        }
        self.reporter.meta(self.reporter.topics().devices_list(), &list);
    }

    /// Publish `meta/devices_list` once every enabled device has been read (so a start
    /// publishes one list, not one per device). Later changes arrive through the reporter's
    /// availability signal, so a read costs nothing here.
    fn refresh_devices_list(&mut self, device: &str) {
        if let Some(d) = self.devices.get_mut(device)
            && d.worker.is_some()
            && !d.read_once
        {
            d.read_once = true;
            self.unread = self.unread.saturating_sub(1);
        }
        if self.ready && !self.list_settled && self.unread == 0 {
            self.list_settled = true;
            self.refresh_stale_list();
        }
    }

    /// Republish `meta/devices_list` when availability no longer matches it.
    fn refresh_stale_list(&mut self) {
        if self.devices.iter().any(|(id, d)| d.listed_online != self.reporter.online(id)) {
            self.publish_devices_list();
        }
    }

    pub(crate) fn publish_info(&self) {
        let about = self.plugin.about();
        let info = InfoMessage {
            instance_id: self.config.instance_id.to_string(),
            connector_type: self.connector_type.clone(),
            devices_count: self.devices.len(),
            groups_count: self.config.groups.len(),
            uptime: self.started.elapsed().as_secs(),
            plugin: Some(PluginInfo {
                name: about.name.clone(),
                version: about.version.clone(),
                sha256: about.sha256.clone(),
            }),
            swaps: Some(self.swaps),
        };
        self.reporter.meta(self.reporter.topics().info(), &info);
    }

    // ---- hot swap -------------------------------------------------------------------------

    fn control(&mut self, request: Control) {
        match request {
            Control::Commit { plugin, lanes, reply } => {
                let mut switched = 0;
                for (device, lane, info) in lanes {
                    let Some(d) = self.devices.get_mut(&device) else { continue };
                    d.info = Some(info);
                    if let Some(worker) = &d.worker
                        && worker.send(Job::Switch { plugin: plugin.clone(), lane: Box::new(lane) }).is_ok()
                    {
                        switched += 1;
                    } else {
                        tracing::warn!(%device, "cannot switch a device whose queue is full; it keeps the old plugin until restarted");
                    }
                }
                let from = self.plugin.about().clone();
                self.plugin = plugin;
                self.swaps += 1;
                let about = self.plugin.about().clone();
                tracing::info!(instance = %self.config.instance_id, from = %from.version, to = %about.version, sha256 = %about.sha256, "plugin swapped");
                self.status.send_modify(|s| {
                    s.plugin = about.clone();
                    s.swaps = self.swaps;
                });
                self.publish_info();
                self.publish_devices_list();
                let _ = reply.send(Ok(SwapReport { plugin: about, devices: switched }));
            }
            Control::Rejected { message } => {
                tracing::error!(instance = %self.config.instance_id, "new plugin rejected: {message}");
                self.reporter.instance_error(codes::PLUGIN_REJECTED, &message, Severity::Error);
                self.status.send_modify(|s| s.last_error = Some(message));
            }
        }
    }

    /// Stop the workers and announce `offline`.
    pub(crate) fn stop(&mut self) {
        for device in self.devices.values_mut() {
            device.worker = None;
        }
        let offline = self.reporter.status_message(false);
        self.birth.send_replace(None);
        self.reporter.outbox().push(offline);
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Dropping the handles wakes and ends every worker.
        self.devices.clear();
    }
}
