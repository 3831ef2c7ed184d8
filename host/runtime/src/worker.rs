//! A device worker: a task owning one plugin lane and serving the devices of that lane: one
//! device (the default, a lane per device) or all the enabled devices of the instance (a
//! plugin that asks for a shared lane). Jobs run one at a time, in order, so a device's
//! commands never overtake each other, while a slow device holds up nobody outside its lane.
//! Between jobs the worker lets the plugin listen for pushed updates. A fault kills the lane;
//! the worker rebuilds it (at once the first time, then with growing delays while it keeps
//! faulting).
//!
//! A hot swap starts new workers with lanes of the new plugin and retires the old ones: an
//! old worker finishes the jobs it was given, saves its plugin's state and hands it to each
//! new worker that serves one of its devices; a new worker restores what it is handed before
//! its first job. No job is lost or run twice, and the two plugins may spread devices over
//! lanes differently.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::codes::ErrorCode;
use iot2mqtt_contract::config::DeviceEntry;
use iot2mqtt_contract::message::Object;
use iot2mqtt_engine::{DeviceInfo, Engine, Failure, Fault, HostSink, Lane, LaneConfig, Level, Plugin, WakeSignal};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

use crate::backoff::Backoff;
use crate::grants;
use crate::options::InstanceOptions;
use crate::report::Reporter;

/// Jobs waiting for one device, at most (a shared lane's queue holds this many per device).
pub(crate) const JOB_QUEUE: usize = 256;
/// A lane that faults within this time of starting counts as faulting again.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What a worker is asked to do, for one of its devices.
pub(crate) enum Job {
    /// Read the device's state.
    Read { device: String, purpose: ReadPurpose },
    /// Apply a command; skipped when its deadline passed while it waited.
    Command { device: String, token: u64, values: Object, deadline: Instant },
}

/// Why a state was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadPurpose {
    /// The periodic poll.
    Poll,
    /// A `get` request, maybe for some properties only.
    Get { properties: Option<Vec<String>> },
}

/// What a worker reports to its instance.
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    /// The lane was (re)built and initialised, or failed to be.
    Started { device: String, outcome: Result<DeviceInfo, Failure> },
    /// A read finished.
    Read { device: String, purpose: ReadPurpose, outcome: Result<Object, Failure> },
    /// A command finished (or was skipped because it expired).
    Applied { device: String, token: u64, outcome: Option<Applied> },
    /// The lane of these devices died.
    Fault { devices: Vec<String>, fault: Fault },
    /// The device is served by the new plugin; `pause` is how long its jobs waited for it.
    Switched { device: String, pause: Duration },
}

/// A command's outcome and the state read right after it.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) result: Result<Object, Failure>,
    pub(crate) state: Option<Object>,
}

/// What an old worker hands to a new one in a hot swap: its plugin's saved state, if any.
pub(crate) type Handover = Option<Vec<u8>>;

/// The devices that share a lane of `plugin`: all of them in one group when the plugin asked
/// for a shared lane, each in its own otherwise.
pub(crate) fn lane_groups(plugin: &Plugin, devices: Vec<DeviceEntry>) -> Vec<Vec<DeviceEntry>> {
    if plugin.shares_lane() {
        if devices.is_empty() { Vec::new() } else { vec![devices] }
    } else {
        devices.into_iter().map(|device| vec![device]).collect()
    }
}

/// A lane built and initialised for its devices, with what it said about them.
pub(crate) struct BuiltLane {
    pub(crate) devices: Vec<DeviceEntry>,
    pub(crate) lane: Lane,
    pub(crate) infos: Vec<DeviceInfo>,
}

/// Builds the lanes of one instance: sandbox grants from the configuration of the devices a
/// lane serves, limits from the instance options, pushes routed to the reporter.
#[derive(Clone)]
pub(crate) struct LaneFactory {
    pub(crate) engine: Engine,
    pub(crate) options: InstanceOptions,
    pub(crate) instance_id: Arc<str>,
    pub(crate) instance_view: Arc<Object>,
    pub(crate) connection: Arc<Object>,
    /// Secrets the plugin stored since the instance started (`host.store-secret`), given to
    /// every later `init` in `connection`.
    pub(crate) refreshed: Arc<std::sync::Mutex<Object>>,
    pub(crate) reporter: Arc<Reporter>,
}

impl std::fmt::Debug for LaneFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneFactory").field("instance", &self.instance_id).finish_non_exhaustive()
    }
}

impl LaneFactory {
    /// What `init` is given: the instance's view, with the secrets the plugin refreshed.
    fn view(&self) -> Object {
        let refreshed = self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut view = (*self.instance_view).clone();
        if !refreshed.is_empty()
            && let Some(Value::Object(connection)) = view.get_mut("connection")
        {
            connection.extend(refreshed.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        view
    }

    fn secrets(&self) -> LaneSecrets {
        LaneSecrets {
            keeper: self.options.secrets.clone(),
            connection: Arc::clone(&self.connection),
            refreshed: Arc::clone(&self.refreshed),
        }
    }

    /// A lane for `devices`, initialised, with each device's description (in their order).
    pub(crate) async fn build(&self, plugin: &Plugin, devices: &[DeviceEntry]) -> Result<BuiltLane, Failure> {
        let ids: Vec<String> = devices.iter().map(|d| d.device_id.to_string()).collect();
        let config = LaneConfig {
            label: format!("{}/{}", self.instance_id, lane_label(&ids)),
            grants: grants::for_devices(&self.connection, devices).await.with_http(self.options.http_hosts.clone()),
            http: self.options.http,
            memory_limit: self.options.memory_limit,
            cpu_budget: self.options.cpu_budget,
            call_limit: self.options.call_limit,
            sink: Arc::new(DeviceSink::new(&self.instance_id, &ids, Arc::clone(&self.reporter), self.secrets())),
        };
        let mut lane = Lane::new(&self.engine, plugin, config).await.map_err(fault_failure)?;
        let configs: Vec<(String, Object)> = devices.iter().map(|d| (d.device_id.to_string(), d.to_object())).collect();
        let mut described = lane.init(&self.view(), &configs).await.map_err(fault_failure)??;
        let mut infos = Vec::with_capacity(ids.len());
        for id in &ids {
            let found = described.iter().position(|i| &i.id == id);
            let mut info = found.map(|at| described.swap_remove(at)).unwrap_or_else(|| DeviceInfo {
                id: id.clone(),
                model: None,
                poll: true,
                description: None,
            });
            info.description = lane.describe(id).await.map_err(fault_failure)?;
            infos.push(info);
        }
        Ok(BuiltLane { devices: devices.to_vec(), lane, infos })
    }
}

/// How a lane's devices are named in its label and logs: the device's id, or `*` for a lane
/// shared by several.
fn lane_label(ids: &[String]) -> &str {
    match ids {
        [one] => one,
        _ => "*",
    }
}

/// A fault as a failure of the call it ended.
pub(crate) fn fault_failure(fault: Fault) -> Failure {
    Failure { code: ErrorCode::PluginFault.into(), message: fault.message }
}

/// The instance's end of a worker. Dropping it stops the worker once its queued jobs are done.
pub(crate) struct WorkerHandle {
    /// Taken only when the handle is dropped.
    jobs: Option<mpsc::Sender<Job>>,
    wake: Arc<WakeSignal>,
    retire: Option<oneshot::Sender<Vec<mpsc::Sender<Handover>>>>,
}

impl WorkerHandle {
    /// Queue a job without waiting; the job comes back when the queue is full.
    pub(crate) fn send(&self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else { return Err(job) };
        jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        })?;
        self.wake.raise();
        Ok(())
    }

    /// Stop the worker for a hot swap: once its queued jobs are done it hands its plugin's
    /// saved state to each of `successors`.
    pub(crate) fn retire(mut self, successors: Vec<mpsc::Sender<Handover>>) {
        if let Some(retire) = self.retire.take() {
            let _ = retire.send(successors);
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // Close the queue first: a worker blocked in `listen` notices it only when woken, and
        // must find it closed then.
        self.jobs.take();
        self.wake.raise();
    }
}

/// How a new worker begins.
pub(crate) enum Start {
    /// Build its lane (an instance starting).
    Fresh,
    /// With a lane built already, taking over from `expected` retiring workers (a hot swap).
    Succeed { lane: Box<Lane>, handovers: mpsc::Receiver<Handover>, expected: usize },
}

/// Start the worker of `devices`.
pub(crate) fn spawn(
    factory: LaneFactory,
    plugin: Plugin,
    devices: Vec<DeviceEntry>,
    events: mpsc::Sender<WorkerEvent>,
    start: Start,
) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(JOB_QUEUE.saturating_mul(devices.len().max(1)));
    let (retire_tx, retire_rx) = oneshot::channel();
    let wake = Arc::new(WakeSignal::default());
    let worker = Worker {
        ids: devices.iter().map(|d| d.device_id.to_string()).collect(),
        factory,
        plugin,
        devices,
        events,
        jobs: rx,
        wake: Arc::clone(&wake),
        retire: retire_rx,
        lane: None,
        listening: false,
        started_at: Instant::now(),
        restart: Backoff::new(Duration::from_secs(1)),
        restart_at: Instant::now(),
        last_fault: None,
    };
    let engine = worker.factory.engine.clone();
    engine.spawn(worker.run(start));
    WorkerHandle { jobs: Some(tx), wake, retire: Some(retire_tx) }
}

struct Worker {
    ids: Vec<String>,
    factory: LaneFactory,
    plugin: Plugin,
    devices: Vec<DeviceEntry>,
    events: mpsc::Sender<WorkerEvent>,
    jobs: mpsc::Receiver<Job>,
    wake: Arc<WakeSignal>,
    retire: oneshot::Receiver<Vec<mpsc::Sender<Handover>>>,
    lane: Option<Lane>,
    listening: bool,
    started_at: Instant,
    restart: Backoff,
    restart_at: Instant,
    last_fault: Option<String>,
}

impl Worker {
    async fn run(mut self, start: Start) {
        if let Start::Succeed { lane, handovers, expected } = start {
            self.take_over(*lane, handovers, expected).await;
        }
        let mut quick_listens = 0u32;
        loop {
            if self.lane.is_none() && Instant::now() >= self.restart_at {
                self.start().await;
            }
            let job = match self.jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => return self.hand_over().await,
                Err(mpsc::error::TryRecvError::Empty) if self.lane.is_some() && self.listening => {
                    self.wake.clear();
                    // Re-check after clearing, so a job queued in between is not missed.
                    if let Ok(job) = self.jobs.try_recv() {
                        job
                    } else {
                        let began = Instant::now();
                        self.listen().await;
                        // Guard against a plugin that returns from `listen` at once, forever.
                        quick_listens = if began.elapsed() < Duration::from_millis(1) { quick_listens + 1 } else { 0 };
                        if quick_listens > 100 {
                            sleep(Duration::from_millis(20)).await;
                        }
                        continue;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::select! {
                        // The next job.
                        job = self.jobs.recv() => match job {
                            Some(job) => job,
                            None => return self.hand_over().await,
                        },
                        // Time to rebuild a dead lane.
                        () = sleep_until(self.restart_at), if self.lane.is_none() => continue,
                    }
                }
            };
            self.handle(job).await;
        }
    }

    async fn start(&mut self) {
        match self.factory.build(&self.plugin, &self.devices).await {
            Ok(BuiltLane { lane, infos, .. }) => {
                self.listening = lane.can_listen();
                self.lane = Some(lane);
                self.started_at = Instant::now();
                for info in infos {
                    self.report(WorkerEvent::Started { device: info.id.clone(), outcome: Ok(info) }).await;
                }
            }
            Err(failure) => {
                self.restart_at = Instant::now() + self.restart.fail();
                for device in &self.ids {
                    let outcome = Err(failure.clone());
                    self.report(WorkerEvent::Started { device: device.clone(), outcome }).await;
                }
            }
        }
    }

    /// Begin with `lane` of a new plugin: restore what each retiring worker hands over (a
    /// worker that stopped without handing anything over counts as having nothing).
    async fn take_over(&mut self, mut lane: Lane, mut handovers: mpsc::Receiver<Handover>, expected: usize) {
        let began = Instant::now();
        for _ in 0..expected {
            let Some(handover) = handovers.recv().await else { break };
            let Some(saved) = handover else { continue };
            let instance = &self.factory.instance_id;
            let lane_of = lane_label(&self.ids);
            match lane.restore_state(&saved).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    tracing::warn!(%instance, device = %lane_of, "the new plugin did not take over the saved state: {reason}")
                }
                Err(fault) => {
                    tracing::warn!(%instance, device = %lane_of, "the new plugin faulted taking over the saved state: {fault}")
                }
            }
        }
        self.listening = lane.can_listen();
        let dead = lane.fault().cloned();
        self.lane = Some(lane);
        self.started_at = Instant::now();
        let pause = began.elapsed();
        for device in &self.ids {
            self.report(WorkerEvent::Switched { device: device.clone(), pause }).await;
        }
        if let Some(fault) = dead {
            self.fault(fault).await;
        }
    }

    /// The queue is closed and empty: when retired by a hot swap, hand the plugin's saved
    /// state to the successors.
    async fn hand_over(mut self) {
        let Ok(successors) = self.retire.try_recv() else { return };
        let saved = match self.lane.as_mut() {
            Some(lane) => lane.save_state().await.unwrap_or_else(|fault| {
                tracing::warn!(instance = %self.factory.instance_id, device = %lane_label(&self.ids), "the old plugin faulted saving its state: {fault}");
                None
            }),
            None => None,
        };
        for successor in successors {
            let _ = successor.send(saved.clone()).await;
        }
    }

    async fn listen(&mut self) {
        let Some(lane) = self.lane.as_mut() else { return };
        match lane.listen(&self.wake).await {
            Ok(again) => self.listening = again,
            Err(fault) => self.fault(fault).await,
        }
    }

    async fn handle(&mut self, job: Job) {
        match job {
            Job::Read { device, purpose } => {
                let outcome = self.read(&device).await;
                self.report(WorkerEvent::Read { device, purpose, outcome }).await;
            }
            Job::Command { device, token, values, deadline } => {
                let outcome = if Instant::now() >= deadline { None } else { Some(self.apply(&device, &values).await) };
                self.report(WorkerEvent::Applied { device, token, outcome }).await;
            }
        }
    }

    async fn read(&mut self, device: &str) -> Result<Object, Failure> {
        let Some(lane) = self.lane.as_mut() else { return Err(self.restarting()) };
        match lane.read_state(device).await {
            Ok(outcome) => outcome,
            Err(fault) => {
                let failure = fault_failure(fault.clone());
                self.fault(fault).await;
                Err(failure)
            }
        }
    }

    async fn apply(&mut self, device: &str, values: &Object) -> Applied {
        let Some(lane) = self.lane.as_mut() else { return Applied { result: Err(self.restarting()), state: None } };
        let result = match lane.apply(device, values).await {
            Ok(result) => result,
            Err(fault) => {
                let failure = fault_failure(fault.clone());
                self.fault(fault).await;
                return Applied { result: Err(failure), state: None };
            }
        };
        // The command may have changed the device even when it failed in part.
        let state = self.read(device).await.ok();
        Applied { result, state }
    }

    /// The lane died: drop it and schedule its rebuild.
    async fn fault(&mut self, fault: Fault) {
        self.lane = None;
        if self.started_at.elapsed() >= HEALTHY_AFTER {
            self.restart.reset();
        }
        // The first fault after a healthy stretch restarts at once; repeats back off.
        let delay = if self.restart.failures() == 0 { Duration::ZERO } else { self.restart.delay() };
        self.restart.fail();
        self.restart_at = Instant::now() + delay;
        self.last_fault = Some(fault.message.clone());
        self.report(WorkerEvent::Fault { devices: self.ids.clone(), fault }).await;
    }

    fn restarting(&self) -> Failure {
        let why = self.last_fault.as_deref().unwrap_or("it could not be started");
        Failure { code: ErrorCode::PluginFault.into(), message: format!("the device's plugin is restarting: {why}") }
    }

    /// Send an event to the instance. The future does not borrow the worker (whose lane is
    /// not `Sync`). The instance drops its receiver only when it stops; the worker follows.
    fn report(&self, event: WorkerEvent) -> impl Future<Output = ()> + Send + 'static {
        let events = self.events.clone();
        async move {
            let _ = events.send(event).await;
        }
    }
}

/// Where a lane's logs and pushes go. Pushes for a device the lane does not serve are refused.
struct DeviceSink {
    instance: Arc<str>,
    /// The device's id, or `*` for a shared lane, as its log lines name it.
    label: String,
    devices: HashSet<String>,
    reporter: Arc<Reporter>,
    secrets: LaneSecrets,
}

/// Where a lane's `store-secret` goes: the orchestrator's store when there is one, and the
/// instance's memory in any case, so a lane built later gets the new value.
struct LaneSecrets {
    keeper: crate::SecretKeeper,
    connection: Arc<Object>,
    refreshed: Arc<std::sync::Mutex<Object>>,
}

impl LaneSecrets {
    fn store(&self, key: &str, value: &str) -> Result<(), String> {
        match &self.keeper.0 {
            Some(store) => store.replace(key, value)?,
            None if self.connection.contains_key(key) => {}
            None => return Err(format!("\"{key}\" is not one of this instance's settings")),
        }
        let mut refreshed = self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refreshed.insert(key.to_string(), Value::String(value.to_string()));
        Ok(())
    }
}

impl DeviceSink {
    fn new(instance: &Arc<str>, devices: &[String], reporter: Arc<Reporter>, secrets: LaneSecrets) -> Self {
        Self {
            instance: Arc::clone(instance),
            label: lane_label(devices).to_string(),
            devices: devices.iter().cloned().collect(),
            reporter,
            secrets,
        }
    }

    fn check(&self, device: &str) -> Result<(), String> {
        if self.devices.contains(device) { Ok(()) } else { Err(format!("unknown device \"{device}\"")) }
    }
}

impl HostSink for DeviceSink {
    fn log(&self, level: Level, message: &str) {
        // The engine rate-limits a plugin's output before it gets here.
        let (instance, device) = (&*self.instance, self.label.as_str());
        match level {
            Level::Trace => tracing::trace!(target: "iot2mqtt.plugin", instance, device, "{message}"),
            Level::Debug => tracing::debug!(target: "iot2mqtt.plugin", instance, device, "{message}"),
            Level::Info => tracing::info!(target: "iot2mqtt.plugin", instance, device, "{message}"),
            Level::Warn => tracing::warn!(target: "iot2mqtt.plugin", instance, device, "{message}"),
            Level::Error => tracing::error!(target: "iot2mqtt.plugin", instance, device, "{message}"),
        }
    }

    fn push_state(&self, device: &str, state: Map<String, Value>) -> Result<(), String> {
        self.check(device)?;
        self.reporter.state(device, state);
        Ok(())
    }

    fn push_event(&self, device: &str, event: &str, data: Map<String, Value>) -> Result<(), String> {
        self.check(device)?;
        self.reporter.event(device, event, data);
        Ok(())
    }

    fn store_secret(&self, key: &str, value: &str) -> Result<(), String> {
        self.secrets.store(key, value)
    }
}
