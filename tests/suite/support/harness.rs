//! Instances run in the test process through `iot2mqtt-runtime`, the way the orchestrator's
//! embedded runtime runs them.

use std::sync::OnceLock;
use std::time::Duration;

use iot2mqtt_contract::config::InstanceConfig;
use iot2mqtt_contract::{InstanceId, MqttSettings, Topics};
use iot2mqtt_runtime::{EngineConfig, InstanceHandle, InstanceOptions, InstanceSpec, Runtime};
use serde_json::{Value, json};

use super::TestBroker;

/// One runtime (one engine) for the whole suite, as in a real process; its compile cache is
/// shared by every test.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let cache = std::env::temp_dir().join("iot2mqtt-test-cache");
            Runtime::new(EngineConfig { cache_dir: Some(cache), shared_cache_dir: None }).expect("a runtime")
        })
        .clone()
}

/// An instance configuration for the demo connector.
pub fn demo_config(id: &str, devices: Value) -> Value {
    json!({"instance_id": id, "connector_type": "demo", "update_interval": 10, "devices": devices})
}

/// A running instance and its topics.
pub struct TestInstance {
    pub handle: InstanceHandle,
    pub topics: Topics,
}

impl TestInstance {
    /// Start `plugin` with `config` against `broker`.
    pub async fn start(broker: &TestBroker, plugin: &str, config: Value) -> Self {
        Self::start_with(broker, plugin, config, InstanceOptions::default()).await
    }

    /// The same, with explicit options.
    pub async fn start_with(broker: &TestBroker, plugin: &str, config: Value, options: InstanceOptions) -> Self {
        Self::start_on(broker.port(), plugin, config, options).await
    }

    /// Start against whatever listens on `port` (a broker, or a proxy in front of one).
    pub async fn start_on(port: u16, plugin: &str, config: Value, options: InstanceOptions) -> Self {
        let config: InstanceConfig = serde_json::from_value(config).expect("a valid instance config");
        let topics = Topics::new("IoT2mqtt", &config.instance_id);
        let runtime = runtime();
        let plugin = runtime.load_plugin(super::plugin(plugin)).await.expect("the plugin loads");
        let mqtt = MqttSettings { host: "127.0.0.1".into(), port, ..MqttSettings::default() };
        let handle = runtime.start(InstanceSpec { config, mqtt, plugin, options });
        Self { handle, topics }
    }

    /// Wait until the instance announced itself ready and is connected.
    pub async fn ready(&self) {
        let mut status = self.handle.watch_status();
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.ready && s.mqtt_connected))
            .await
            .expect("the instance became ready in time")
            .expect("the instance is running");
    }
}

/// Topics of an instance id.
pub fn topics(id: &str) -> Topics {
    Topics::new("IoT2mqtt", &InstanceId::new(id).expect("a valid id"))
}
