//! The public face of the crate: a [`Runtime`] (one engine per process) starts instances and
//! returns an [`InstanceHandle`] to watch, hot-swap and stop each.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iot2mqtt_contract::codes::ErrorCode;
use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{MqttSettings, Topics};
use iot2mqtt_engine::{
    Engine, EngineConfig, EngineError, Failure, Fault, FaultKind, HostSink, Lane, LaneConfig, Level, LoadError,
    NetGrants, Plugin,
};
use iot2mqtt_mqtt::{ClientOptions, Outbox, QoS, Session, Will};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::discovery::{Discovery, Namer};
use crate::dispatch::{Control, Dispatcher, Links};
use crate::options::InstanceOptions;
use crate::report::{self, Reporter};
use crate::status::{FaultTimes, InstanceStatus, SwapError, SwapReport};
use crate::worker::{self, LaneFactory, WorkerEvent};

/// Publications one device's round may make: its state, availability and a topic per key.
const PUBLICATIONS_PER_DEVICE: usize = 32;

/// How long a swap waits for its devices to switch before it reports the pause seen so far.
const SWITCH_WAIT: Duration = Duration::from_secs(10);
/// Events from the MQTT session waiting for the dispatcher, at most.
const CLIENT_EVENTS: usize = 256;
/// Events from device workers waiting for the dispatcher, at most.
const WORKER_EVENTS: usize = 256;
/// How long stopping waits for `offline` to be acknowledged and the session to close.
const STOP_DEADLINE: Duration = Duration::from_secs(4);

/// The runtime could not be created.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RuntimeError(#[from] EngineError);

/// Everything an instance needs to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The instance configuration, secrets already merged into `connection`.
    pub config: InstanceConfig,
    /// The broker and the topic settings.
    pub mqtt: MqttSettings,
    /// The plugin to run.
    pub plugin: Plugin,
    /// Limits.
    pub options: InstanceOptions,
}

/// Runs instances. One per process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    engine: Engine,
}

impl Runtime {
    /// A runtime with its own engine.
    pub fn new(config: EngineConfig) -> Result<Self, RuntimeError> {
        Ok(Self { engine: Engine::new(config)? })
    }

    /// Load and check a plugin (compiling off the async threads, or from the cache).
    pub async fn load_plugin(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        self.engine.load(wasm).await
    }

    /// The plugin of content `sha256` (hex), when it is loaded and in use in this process.
    pub fn loaded(&self, sha256: &str) -> Option<Plugin> {
        self.engine.loaded(sha256)
    }

    /// Start an instance: it connects, initialises its devices, announces `online` and serves
    /// until stopped (or until its handle is dropped).
    pub fn start(&self, spec: InstanceSpec) -> InstanceHandle {
        let InstanceSpec { config, mqtt, plugin, options } = spec;
        let instance_id = config.instance_id.clone();
        let topics = Topics::new(&mqtt.base_topic, &instance_id);
        // Room for at least one round of every device's publications (a state and its keys),
        // so that a burst of polls is sent late rather than dropped.
        let enabled = config.devices.iter().filter(|d| d.enabled).count();
        let outbox = Outbox::new(options.outbox_capacity.max(enabled * PUBLICATIONS_PER_DEVICE));
        let reporter = Arc::new(Reporter::new(topics.clone(), outbox.clone(), report::qos(mqtt.qos), mqtt.retain));
        let connector_type =
            config.connector_type.as_ref().map(ToString::to_string).unwrap_or_else(|| plugin.about().name.clone());

        let (birth_tx, birth_rx) = watch::channel(None);
        let (client_tx, client_rx) = mpsc::channel(CLIENT_EVENTS);
        let client = ClientOptions {
            host: mqtt.host.clone(),
            port: mqtt.port,
            client_id: mqtt.client_id(instance_id.as_str()),
            username: mqtt.username.clone(),
            password: mqtt.password.as_ref().map(|p| p.expose().to_string()),
            keepalive: mqtt.keepalive,
            will: Some(Will {
                topic: topics.status(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            max_packet: options.max_packet,
            connect_timeout: Duration::from_secs(10),
            tls: client_tls(&mqtt),
        };
        let discovery = mqtt.discovery_prefix.as_deref().map(|prefix| {
            let namer = Namer::new(prefix, &mqtt.base_topic, topics.clone(), instance_id.as_str(), mqtt.qos);
            Discovery::new(namer, config.ha_discovery)
        });
        let subscriptions = topics
            .subscriptions()
            .into_iter()
            .chain(discovery.iter().flat_map(Discovery::subscriptions))
            .map(|t| (t, QoS::AtLeastOnce))
            .collect();
        let session = Session::new(client, subscriptions, outbox, client_tx).with_birth(birth_rx);
        let (session_stop, session_stopped) = oneshot::channel::<()>();
        let span = tracing::info_span!("iot2mqtt.host.instance", instance = %instance_id);
        let session_task = tokio::spawn(tracing::Instrument::instrument(
            session.run(async {
                let _ = session_stopped.await;
            }),
            span.clone(),
        ));

        let factory = LaneFactory {
            engine: self.engine.clone(),
            options: options.clone(),
            instance_id: instance_id.as_str().into(),
            instance_view: Arc::new(config.plugin_view()),
            connection: Arc::new(config.connection.clone()),
            refreshed: Arc::default(),
            reporter: Arc::clone(&reporter),
        };
        let initial = InstanceStatus {
            mqtt_connected: false,
            connected_once: false,
            reconnects: 0,
            ready: false,
            plugin: plugin.about().clone(),
            swaps: 0,
            faults: 0,
            recent_faults: FaultTimes::default(),
            last_error: None,
            last_swap_pause: Duration::ZERO,
            switched: 0,
        };
        let (status_tx, status_rx) = watch::channel(initial);
        let (worker_tx, worker_rx) = mpsc::channel::<WorkerEvent>(WORKER_EVENTS);
        let (control_tx, control_rx) = mpsc::channel(8);
        let devices = config.devices.iter().filter(|d| d.enabled).cloned().collect();
        let links = Links { birth: birth_tx, status: status_tx, worker_events: worker_tx, discovery };
        let mut dispatcher = Dispatcher::new(config, connector_type, reporter, factory.clone(), plugin, links);
        span.in_scope(|| dispatcher.start_workers());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let grace = options.init_grace;
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                dispatcher
                    .run(
                        client_rx,
                        worker_rx,
                        control_rx,
                        async {
                            let _ = stop_rx.await;
                        },
                        grace,
                    )
                    .await;
                dispatcher.stop();
                let _ = session_stop.send(());
                let _ = tokio::time::timeout(STOP_DEADLINE, session_task).await;
            },
            span,
        ));
        InstanceHandle {
            control: control_tx,
            status: status_rx,
            stop: Some(stop_tx),
            task: Some(task),
            runtime: self.clone(),
            factory,
            devices,
            swap_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Run a setup tool of `plugin` in a fresh sandbox with `grants`, within `timeout`.
    pub async fn run_tool(
        &self,
        plugin: &Plugin,
        tool: &str,
        input: &Value,
        grants: NetGrants,
        timeout: Duration,
    ) -> Result<Result<Value, Failure>, Fault> {
        let config = LaneConfig {
            label: format!("tool {tool}"),
            grants,
            http: InstanceOptions::default().http,
            memory_limit: InstanceOptions::default().memory_limit,
            cpu_budget: timeout,
            call_limit: timeout,
            sink: Arc::new(ToolSink { tool: tool.to_string() }),
        };
        let (engine, plugin, tool, input) = (self.engine.clone(), plugin.clone(), tool.to_string(), input.clone());
        self.engine
            .spawn(async move { Lane::new(&engine, &plugin, config).await?.run_tool(&tool, &input).await })
            .await
            .map_err(|e| Fault { kind: FaultKind::Broken, message: format!("the tool's task ended: {e}") })?
    }
}

/// Controls one running instance. Dropping it stops the instance.
#[derive(Debug)]
pub struct InstanceHandle {
    control: mpsc::Sender<Control>,
    status: watch::Receiver<InstanceStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    runtime: Runtime,
    factory: LaneFactory,
    devices: Vec<iot2mqtt_contract::DeviceEntry>,
    swap_lock: Arc<Mutex<()>>,
}

impl InstanceHandle {
    /// The instance's status now.
    pub fn status(&self) -> InstanceStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<InstanceStatus> {
        self.status.clone()
    }

    /// Load `wasm` and swap to it; a rejection is published on `B/error` and returned.
    pub async fn swap_wasm(&self, wasm: Vec<u8>) -> Result<SwapReport, SwapError> {
        match self.runtime.load_plugin(wasm).await {
            Ok(plugin) => self.swap(plugin).await,
            Err(e) => {
                let error = SwapError::Load(e);
                let _ = self.control.send(Control::Rejected { message: error.to_string() }).await;
                Err(error)
            }
        }
    }

    /// Swap to `plugin`: its lanes are built and initialised while the old plugin keeps
    /// serving; then each device switches between two of its jobs, handing its state over.
    /// If any device fails to initialise, nothing switches and the rejection is published.
    pub async fn swap(&self, plugin: Plugin) -> Result<SwapReport, SwapError> {
        let _serial = self.swap_lock.lock().await;
        let mut builds = JoinSet::new();
        for devices in worker::lane_groups(&plugin, self.devices.clone()) {
            let (factory, plugin) = (self.factory.clone(), plugin.clone());
            let threads = factory.engine.handle().clone();
            builds.spawn_on(
                async move {
                    let outcome = factory.build(&plugin, &devices).await;
                    let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
                    (ids.join(", "), outcome)
                },
                &threads,
            );
        }
        let mut lanes = Vec::with_capacity(self.devices.len());
        let mut rejection = None;
        while let Some(joined) = builds.join_next().await {
            match joined {
                Ok((_, Ok(built))) => lanes.push(built),
                Ok((device, Err(failure))) => {
                    rejection.get_or_insert(SwapError::Init { device, failure });
                }
                Err(e) => {
                    let failure = Failure { code: ErrorCode::PluginFault.into(), message: e.to_string() };
                    rejection.get_or_insert(SwapError::Init { device: String::new(), failure });
                }
            }
        }
        if let Some(error) = rejection {
            let _ = self.control.send(Control::Rejected { message: error.to_string() }).await;
            return Err(error);
        }
        let (reply, answer) = oneshot::channel();
        self.control.send(Control::Commit { plugin, lanes, reply }).await.map_err(|_| SwapError::Stopped)?;
        let mut report = answer.await.map_err(|_| SwapError::Stopped)??;
        // Each device switches on its own worker, between two of its jobs: wait until all have
        // (a device busy with a long command may take a while) to say what the pause was.
        let mut status = self.status.clone();
        let all = report.devices;
        let _ = tokio::time::timeout(SWITCH_WAIT, status.wait_for(|s| s.switched >= all)).await;
        report.pause = status.borrow().last_swap_pause;
        Ok(report)
    }

    /// Stop: publish `offline`, stop the devices, disconnect cleanly, and wait for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Where a setup tool's logs go; tools publish nothing.
struct ToolSink {
    tool: String,
}

impl HostSink for ToolSink {
    fn log(&self, level: Level, message: &str) {
        let tool = self.tool.as_str();
        match level {
            Level::Error | Level::Warn => tracing::warn!(target: "iot2mqtt.plugin", tool, "{message}"),
            _ => tracing::debug!(target: "iot2mqtt.plugin", tool, "{message}"),
        }
    }

    fn push_state(&self, _: &str, _: Map<String, Value>) -> Result<(), String> {
        Err("setup tools cannot publish state".into())
    }

    fn push_event(&self, _: &str, _: &str, _: Map<String, Value>) -> Result<(), String> {
        Err("setup tools cannot publish events".into())
    }
}

/// The client's TLS options from `MQTT_TLS` and its files.
pub fn client_tls(settings: &MqttSettings) -> Option<iot2mqtt_mqtt::TlsOptions> {
    settings.tls.as_ref().map(|files| iot2mqtt_mqtt::TlsOptions {
        ca_file: files.ca_file.clone(),
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
    })
}
