//! The Python reference connector (`bench/python-baseline`) as a process: the contract tests
//! run against it too (`IOT2MQTT_CONTRACT_TARGET=baseline`), so the benchmarks compare two
//! implementations that both honour the contract.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use iot2mqtt_contract::{InstanceId, Topics};
use serde_json::Value;

/// Whether the contract tests are to run against the baseline instead of the host.
pub fn selected() -> bool {
    std::env::var("IOT2MQTT_CONTRACT_TARGET").as_deref() == Ok("baseline")
}

/// A Python 3 that has paho-mqtt, or `None` (under `CI=true` a failure instead).
pub fn python() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND
        .get_or_init(|| {
            let candidates = [
                std::env::var_os("IOT2MQTT_PYTHON").map(PathBuf::from),
                Some("/usr/bin/python3".into()),
                Some("python3".into()),
            ];
            candidates.into_iter().flatten().find(|python| {
                Command::new(python)
                    .args(["-c", "import paho.mqtt.client"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
        .clone();
    if found.is_none() {
        let install = "apt-get install python3 python3-paho-mqtt";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "Python 3 with paho-mqtt is required: {install}");
        eprintln!("\n*** SKIPPED: no Python 3 with paho-mqtt. Install it with: {install} ***\n");
    }
    found
}

/// The script.
pub fn script() -> PathBuf {
    super::repo().join("bench/python-baseline/connector.py")
}

/// One baseline instance. Stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Baseline {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub topics: Topics,
}

impl Baseline {
    /// Start an instance of `config` against the broker on `port`.
    pub fn start(python: &Path, port: u16, config: &Value) -> Self {
        let id = config["instance_id"].as_str().expect("an instance id").to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{id}.json")), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("connector.log")).unwrap();
        let child = Command::new(python)
            .arg(script())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(iot2mqtt_testkit::instance_env(&id, port, dir.path()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the Python baseline");
        let topics = Topics::new("IoT2mqtt", &InstanceId::new(id).expect("a valid id"));
        Self { child: Some(child), dir, topics }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("connector.log")).unwrap_or_default()
    }

    /// Wait until its status on the broker at `port` reads `status` (retained, or as it
    /// changes).
    pub async fn wait_status(&mut self, port: u16, status: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut observer = super::Observer::connect(port, &self.topics.status()).await;
        loop {
            if observer.try_wait_for(Duration::from_millis(100), |m| m.text() == status).await.is_some() {
                return;
            }
            if let Some(exit) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the baseline exited with {exit}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the baseline's status never became {status}:\n{}", self.log());
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
