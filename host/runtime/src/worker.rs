//! A device worker: one task per enabled device, owning that device's plugin lane. Jobs run
//! one at a time, in order, so one device's commands never overtake each other, while a slow
//! device holds up nobody else. Between jobs the worker lets the plugin listen for pushed
//! updates. A fault kills the lane; the worker rebuilds it (at once the first time, then with
//! growing delays while it keeps faulting).

use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_contract::codes::ErrorCode;
use iot2mqtt_contract::config::DeviceEntry;
use iot2mqtt_contract::message::Object;
use iot2mqtt_engine::{DeviceInfo, Engine, Failure, Fault, HostSink, Lane, LaneConfig, Level, Plugin, WakeSignal};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::backoff::Backoff;
use crate::grants;
use crate::options::InstanceOptions;
use crate::report::Reporter;

/// Jobs waiting for one device, at most.
pub(crate) const JOB_QUEUE: usize = 256;
/// A lane that faults within this time of starting counts as faulting again.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What a worker is asked to do.
pub(crate) enum Job {
    /// Read the device's state.
    Read { purpose: ReadPurpose },
    /// Apply a command; skipped when its deadline passed while it waited.
    Command { token: u64, values: Object, deadline: Instant },
    /// Replace the plugin: hand the old lane's saved state to `lane` and use it from now on.
    Switch { plugin: Plugin, lane: Box<Lane> },
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
    /// The lane died.
    Fault { device: String, fault: Fault },
    /// The plugin was replaced; `pause` is how long the device's jobs waited for it.
    Switched { device: String, pause: Duration },
}

/// A command's outcome and the state read right after it.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) result: Result<Object, Failure>,
    pub(crate) state: Option<Object>,
}

/// Builds the lanes of one instance's devices: sandbox grants from each device's own
/// configuration, limits from the instance options, pushes routed to the reporter.
#[derive(Clone)]
pub(crate) struct LaneFactory {
    pub(crate) engine: Engine,
    pub(crate) options: InstanceOptions,
    pub(crate) instance_id: Arc<str>,
    pub(crate) instance_view: Arc<Object>,
    pub(crate) connection: Arc<Object>,
    pub(crate) reporter: Arc<Reporter>,
}

impl std::fmt::Debug for LaneFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneFactory").field("instance", &self.instance_id).finish_non_exhaustive()
    }
}

impl LaneFactory {
    /// A lane for `device`, initialised; its device description.
    pub(crate) async fn build(&self, plugin: &Plugin, device: &DeviceEntry) -> Result<(Lane, DeviceInfo), Failure> {
        let id = device.device_id.as_str();
        let config = LaneConfig {
            label: format!("{}/{id}", self.instance_id),
            grants: grants::for_device(&self.connection, device).await,
            memory_limit: self.options.memory_limit,
            cpu_budget: self.options.cpu_budget,
            call_limit: self.options.call_limit,
            sink: Arc::new(DeviceSink::new(&self.instance_id, id, Arc::clone(&self.reporter))),
        };
        let mut lane = Lane::new(&self.engine, plugin, config).await.map_err(fault_failure)?;
        let infos =
            lane.init(&self.instance_view, &[(id.to_string(), device.to_object())]).await.map_err(fault_failure)??;
        let mut info = infos.into_iter().find(|i| i.id == id).unwrap_or(DeviceInfo {
            id: id.to_string(),
            model: None,
            poll: true,
            description: None,
        });
        info.description = lane.describe(id).await.map_err(fault_failure)?;
        Ok((lane, info))
    }
}

/// A fault as a failure of the call it ended.
pub(crate) fn fault_failure(fault: Fault) -> Failure {
    Failure { code: ErrorCode::PluginFault.into(), message: fault.message }
}

/// The instance's end of a worker. Dropping it stops the worker.
pub(crate) struct WorkerHandle {
    jobs: mpsc::Sender<Job>,
    wake: Arc<WakeSignal>,
}

impl WorkerHandle {
    /// Queue a job without waiting; the job comes back when the queue is full.
    pub(crate) fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        })?;
        self.wake.raise();
        Ok(())
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // A worker blocked in `listen` notices the closed queue only when woken.
        self.wake.raise();
    }
}

/// Start the worker of `device`.
pub(crate) fn spawn(
    factory: LaneFactory,
    plugin: Plugin,
    device: DeviceEntry,
    events: mpsc::Sender<WorkerEvent>,
) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(JOB_QUEUE);
    let wake = Arc::new(WakeSignal::default());
    let worker = Worker {
        id: device.device_id.to_string(),
        factory,
        plugin,
        device,
        events,
        jobs: rx,
        wake: Arc::clone(&wake),
        lane: None,
        listening: false,
        started_at: Instant::now(),
        restart: Backoff::new(Duration::from_secs(1)),
        restart_at: Instant::now(),
        last_fault: None,
    };
    let engine = worker.factory.engine.clone();
    engine.spawn(worker.run());
    WorkerHandle { jobs: tx, wake }
}

struct Worker {
    id: String,
    factory: LaneFactory,
    plugin: Plugin,
    device: DeviceEntry,
    events: mpsc::Sender<WorkerEvent>,
    jobs: mpsc::Receiver<Job>,
    wake: Arc<WakeSignal>,
    lane: Option<Lane>,
    listening: bool,
    started_at: Instant,
    restart: Backoff,
    restart_at: Instant,
    last_fault: Option<String>,
}

impl Worker {
    async fn run(mut self) {
        let mut quick_listens = 0u32;
        loop {
            if self.lane.is_none() && Instant::now() >= self.restart_at {
                self.start().await;
            }
            let job = match self.jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
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
                            None => return,
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
        let outcome = self.factory.build(&self.plugin, &self.device).await;
        let outcome = match outcome {
            Ok((lane, info)) => {
                self.listening = lane.can_listen();
                self.lane = Some(lane);
                self.started_at = Instant::now();
                Ok(info)
            }
            Err(failure) => {
                self.restart_at = Instant::now() + self.restart.fail();
                Err(failure)
            }
        };
        self.report(WorkerEvent::Started { device: self.id.clone(), outcome }).await;
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
            Job::Read { purpose } => {
                let outcome = self.read().await;
                self.report(WorkerEvent::Read { device: self.id.clone(), purpose, outcome }).await;
            }
            Job::Command { token, values, deadline } => {
                let outcome = if Instant::now() >= deadline { None } else { Some(self.apply(&values).await) };
                self.report(WorkerEvent::Applied { device: self.id.clone(), token, outcome }).await;
            }
            Job::Switch { plugin, lane } => self.switch(plugin, *lane).await,
        }
    }

    async fn read(&mut self) -> Result<Object, Failure> {
        let Some(lane) = self.lane.as_mut() else { return Err(self.restarting()) };
        match lane.read_state(&self.id).await {
            Ok(outcome) => outcome,
            Err(fault) => {
                let failure = fault_failure(fault.clone());
                self.fault(fault).await;
                Err(failure)
            }
        }
    }

    async fn apply(&mut self, values: &Object) -> Applied {
        let Some(lane) = self.lane.as_mut() else { return Applied { result: Err(self.restarting()), state: None } };
        let result = match lane.apply(&self.id, values).await {
            Ok(result) => result,
            Err(fault) => {
                let failure = fault_failure(fault.clone());
                self.fault(fault).await;
                return Applied { result: Err(failure), state: None };
            }
        };
        // The command may have changed the device even when it failed in part.
        let state = self.read().await.ok();
        Applied { result, state }
    }

    async fn switch(&mut self, plugin: Plugin, mut lane: Lane) {
        let began = Instant::now();
        if let Some(old) = self.lane.as_mut() {
            match old.save_state().await {
                Ok(Some(saved)) => match lane.restore_state(&saved).await {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => {
                        tracing::warn!(instance = %self.factory.instance_id, device = %self.id, "the new plugin did not take over the saved state: {reason}")
                    }
                    Err(fault) => {
                        tracing::warn!(instance = %self.factory.instance_id, device = %self.id, "the new plugin faulted taking over the saved state: {fault}")
                    }
                },
                Ok(None) => {}
                Err(fault) => {
                    tracing::warn!(instance = %self.factory.instance_id, device = %self.id, "the old plugin faulted saving its state: {fault}")
                }
            }
        }
        self.listening = lane.can_listen();
        let dead = lane.fault().cloned();
        self.lane = Some(lane);
        self.plugin = plugin;
        self.started_at = Instant::now();
        self.restart.reset();
        self.report(WorkerEvent::Switched { device: self.id.clone(), pause: began.elapsed() }).await;
        if let Some(fault) = dead {
            self.fault(fault).await;
        }
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
        self.report(WorkerEvent::Fault { device: self.id.clone(), fault }).await;
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

/// Where a lane's logs and pushes go. A lane serves one device, so pushes for any other
/// device are refused.
struct DeviceSink {
    instance: Arc<str>,
    device: String,
    reporter: Arc<Reporter>,
}

impl DeviceSink {
    fn new(instance: &Arc<str>, device: &str, reporter: Arc<Reporter>) -> Self {
        Self { instance: Arc::clone(instance), device: device.to_string(), reporter }
    }

    fn check(&self, device: &str) -> Result<(), String> {
        if device == self.device { Ok(()) } else { Err(format!("unknown device \"{device}\"")) }
    }
}

impl HostSink for DeviceSink {
    fn log(&self, level: Level, message: &str) {
        // The engine rate-limits a plugin's output before it gets here.
        let (instance, device) = (&*self.instance, self.device.as_str());
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
}
