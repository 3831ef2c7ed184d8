//! The dispatcher: one task per instance that applies the contract's rules between the MQTT
//! session and the device workers. It never waits on a device: jobs are queued, answers come
//! back as events, deadlines are timers. Everything that touches more than one device (group
//! commands, meta, hot swap) happens here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::Inbound;
use iot2mqtt_contract::codes::{ErrorCode, Severity};
use iot2mqtt_contract::command::DEDUP_WINDOW;
use iot2mqtt_contract::config::{DeviceEntry, InstanceConfig};
use iot2mqtt_engine::{DeviceInfo, Plugin};
use iot2mqtt_mqtt::{ClientEvent, Message};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::backoff::Backoff;
use crate::dedup::Dedup;
use crate::discovery::Discovery;
use crate::report::Reporter;
use crate::status::{InstanceStatus, SwapError, SwapReport};
mod commands;
mod discovery;
mod meta;
mod polls;

use crate::worker::{self, BuiltLane, Handover, LaneFactory, Start, WorkerEvent, WorkerHandle};

/// What the instance's owner can ask of it.
pub(crate) enum Control {
    /// Switch every device to `plugin`, whose lanes are built and initialised already.
    Commit { plugin: Plugin, lanes: Vec<BuiltLane>, reply: oneshot::Sender<Result<SwapReport, SwapError>> },
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
    /// The origin of the read schedule's grid.
    epoch: Instant,
    pub(crate) devices: BTreeMap<String, Device>,
    /// The running workers, by number; each serves the devices whose `worker` is its number.
    pub(crate) workers: BTreeMap<u64, WorkerHandle>,
    next_worker: u64,
    pub(crate) worker_events: mpsc::Sender<WorkerEvent>,
    pub(crate) swaps: u64,
    /// Devices of the latest swap that have not switched yet.
    pub(crate) switching: usize,
    /// The latest swap, once every device switched (for `B/meta/info`).
    pub(crate) last_swap: Option<iot2mqtt_contract::message::LastSwap>,
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
    /// Home Assistant discovery, unless the installation turned it off.
    discovery: Option<Discovery>,
}

/// The channels a dispatcher publishes through.
pub(crate) struct Links {
    /// The message the session sends after every connect (`online` once ready).
    pub(crate) birth: watch::Sender<Option<Message>>,
    /// The instance's status, for its handle.
    pub(crate) status: watch::Sender<InstanceStatus>,
    /// Given to each worker to report back.
    pub(crate) worker_events: mpsc::Sender<WorkerEvent>,
    /// Home Assistant discovery's state, when it is on for the installation.
    pub(crate) discovery: Option<Discovery>,
}

/// One configured device.
pub(crate) struct Device {
    pub(crate) entry: DeviceEntry,
    /// The worker serving it (a key of `Dispatcher::workers`); none while it is disabled.
    pub(crate) worker: Option<u64>,
    pub(crate) info: Option<DeviceInfo>,
    poll_due: Option<Instant>,
    polling: bool,
    failures: Backoff,
    /// Whether `meta/devices_list` last said the device was online.
    listed_online: bool,
    /// Whether the device was read at least once.
    read_once: bool,
    /// Where in each interval its regular reads fall: the devices' reads are spread evenly
    /// over the interval instead of all at once.
    phase: Duration,
}

/// The width of the poll grid's slots: devices whose reads fall in one slot are read together.
const POLL_SLOT: Duration = Duration::from_millis(10);

/// Where in each `interval` the regular reads of device `index` of `count` fall: spread evenly
/// over the interval, on slots of [`POLL_SLOT`]. Spreading keeps a command's response from
/// queueing behind every device's state at once; the slots let the devices of one slot be sent
/// to their workers in one wake-up and their states leave in one write, instead of a wake-up
/// of each thread per device (5,000 devices read each second: 100 wake-ups, not 5,000).
fn phase(interval: Duration, index: u32, count: u32) -> Duration {
    let slots = u32::try_from(interval.as_nanos() / POLL_SLOT.as_nanos()).unwrap_or(u32::MAX).max(1);
    let slot = u64::from(index) * u64::from(slots) / u64::from(count.max(1));
    interval * u32::try_from(slot).unwrap_or(0) / slots
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
        let Links { birth, status, worker_events, discovery } = links;
        let interval = Duration::from_secs(config.update_interval);
        let count = config.devices.len().max(1) as u32;
        let devices = config
            .devices
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let device = Device {
                    entry: entry.clone(),
                    worker: None,
                    info: None,
                    poll_due: None,
                    polling: false,
                    failures: Backoff::new(interval),
                    phase: phase(interval, index as u32, count),
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
            epoch: Instant::now(),
            devices,
            workers: BTreeMap::new(),
            next_worker: 0,
            worker_events,
            swaps: 0,
            switching: 0,
            last_swap: None,
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
            discovery,
        }
    }

    /// Start the workers of the enabled devices: one for each, or one for all of them when the
    /// plugin asked for a shared lane.
    pub(crate) fn start_workers(&mut self) {
        let enabled: Vec<DeviceEntry> =
            self.devices.values().filter(|d| d.entry.enabled).map(|d| d.entry.clone()).collect();
        self.starting += enabled.len();
        self.unread += enabled.len();
        for group in worker::lane_groups(&self.plugin, enabled) {
            self.add_worker(group, Start::Fresh);
        }
    }

    /// Start a worker of the current plugin for `devices`, and route their jobs to it.
    fn add_worker(&mut self, devices: Vec<DeviceEntry>, start: Start) {
        let number = self.next_worker;
        self.next_worker += 1;
        for entry in &devices {
            if let Some(device) = self.devices.get_mut(entry.device_id.as_str()) {
                device.worker = Some(number);
            }
        }
        let handle =
            worker::spawn(self.factory.clone(), self.plugin.clone(), devices, self.worker_events.clone(), start);
        self.workers.insert(number, handle);
    }

    /// The worker serving `device`, when it is enabled.
    pub(crate) fn worker_of(&self, device: &str) -> Option<&WorkerHandle> {
        self.devices.get(device).and_then(|d| d.worker).and_then(|number| self.workers.get(&number))
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
        self.discovery_announce();
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
                    self.discovery_republish();
                }
            }
            ClientEvent::Disconnected { .. } => self.status.send_modify(|s| s.mqtt_connected = false),
            ClientEvent::Skipped { topic, size } => {
                let shown: String = topic.chars().take(200).collect();
                let message = format!(
                    "a message of {size} bytes on {shown} is larger than this instance accepts; it was skipped"
                );
                tracing::warn!(instance = %self.config.instance_id, "{message}");
                self.reporter.instance_error(ErrorCode::InvalidPayload.as_str(), &message, Severity::Warning);
            }
            ClientEvent::Message(publish) if self.discovery.as_ref().is_some_and(|d| d.handles(&publish.topic)) => {
                self.discovery_message(&publish.topic, &publish.payload);
            }
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

    // ---- hot swap -------------------------------------------------------------------------

    fn control(&mut self, request: Control) {
        match request {
            Control::Commit { plugin, lanes, reply } => {
                let from = self.plugin.about().clone();
                self.plugin = plugin;
                let switched = self.replace_workers(lanes);
                self.swaps += 1;
                let about = self.plugin.about().clone();
                tracing::info!(instance = %self.config.instance_id, from = %from.version, to = %about.version, sha256 = %about.sha256, "plugin swapped");
                self.switching = switched;
                // With no device to wait for, the swap is whole at once.
                self.last_swap =
                    (switched == 0).then_some(iot2mqtt_contract::message::LastSwap { devices: 0, pause_ms: 0.0 });
                self.status.send_modify(|s| {
                    s.plugin = about.clone();
                    s.swaps = self.swaps;
                    s.last_swap_pause = Duration::ZERO;
                    s.switched = 0;
                });
                self.publish_info();
                self.publish_devices_list();
                self.discovery_refresh(None);
                let _ = reply.send(Ok(SwapReport { plugin: about, devices: switched, pause: Duration::ZERO }));
            }
            Control::Rejected { message } => {
                tracing::error!(instance = %self.config.instance_id, "new plugin rejected: {message}");
                self.reporter.instance_error(ErrorCode::PluginRejected.as_str(), &message, Severity::Error);
                self.status.send_modify(|s| s.last_error = Some(message));
            }
        }
    }

    /// Start a worker of the new plugin for each of `lanes` and retire the old workers: each
    /// old worker finishes its queued jobs, then hands its plugin's saved state to the new
    /// workers that serve its devices, which restore it before their first job. The number of
    /// devices that switch.
    fn replace_workers(&mut self, lanes: Vec<BuiltLane>) -> usize {
        let mut successors: BTreeMap<u64, Vec<mpsc::Sender<Handover>>> = BTreeMap::new();
        let mut switched = 0;
        for BuiltLane { devices, lane, infos } in lanes {
            let devices: Vec<DeviceEntry> =
                devices.into_iter().filter(|d| self.devices.contains_key(d.device_id.as_str())).collect();
            if devices.is_empty() {
                continue;
            }
            let predecessors: BTreeSet<u64> =
                devices.iter().filter_map(|d| self.devices.get(d.device_id.as_str())?.worker).collect();
            let (handover, handovers) = mpsc::channel(predecessors.len().max(1));
            for old in &predecessors {
                successors.entry(*old).or_default().push(handover.clone());
            }
            for info in infos {
                if let Some(d) = self.devices.get_mut(&info.id) {
                    d.info = Some(info);
                }
            }
            switched += devices.len();
            let start = Start::Succeed { lane: Box::new(lane), handovers, expected: predecessors.len() };
            self.add_worker(devices, start);
        }
        let current: BTreeSet<u64> = self.devices.values().filter_map(|d| d.worker).collect();
        let retired: Vec<u64> = self.workers.keys().copied().filter(|n| !current.contains(n)).collect();
        for number in retired {
            if let Some(old) = self.workers.remove(&number) {
                old.retire(successors.remove(&number).unwrap_or_default());
            }
        }
        switched
    }

    /// Stop the workers and announce `offline`.
    pub(crate) fn stop(&mut self) {
        self.workers.clear();
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
        self.workers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_spread_over_the_interval_on_slots() {
        let second = Duration::from_secs(1);
        // Many devices: 100 slots of 10 ms, 50 devices in each, none past the interval.
        let phases: Vec<Duration> = (0..5000).map(|i| phase(second, i, 5000)).collect();
        assert_eq!(phases[0], Duration::ZERO);
        assert_eq!(phases[49], Duration::ZERO);
        assert_eq!(phases[50], Duration::from_millis(10));
        assert_eq!(phases[4999], Duration::from_millis(990));
        let distinct: BTreeSet<Duration> = phases.iter().copied().collect();
        assert_eq!(distinct.len(), 100);
        // Few devices: each its own share of the interval.
        assert_eq!(phase(second, 1, 4), Duration::from_millis(250));
        // A long interval has more slots; one device or a zero count stays at the start.
        assert_eq!(phase(Duration::from_secs(60), 1, 2), Duration::from_secs(30));
        assert_eq!(phase(second, 0, 0), Duration::ZERO);
        // An interval shorter than a slot reads everyone together.
        assert_eq!(phase(Duration::from_millis(5), 3, 4), Duration::ZERO);
    }
}
