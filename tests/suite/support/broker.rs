//! A private broker per test, on a free port, stoppable and restartable: Mosquitto (the
//! reference) by default, or iot2mqtt's embedded broker when `IOT2MQTT_TEST_BROKER=embedded`.
//! `cargo xtask test` runs the suite against both.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iot2mqtt_broker::{Broker, BrokerConfig};

/// A running broker. Stopped when dropped.
#[derive(Debug)]
pub struct TestBroker {
    port: u16,
    dir: tempfile::TempDir,
    running: Option<Running>,
    /// Listen on every interface, not only loopback (for containers on Docker's bridge).
    everywhere: bool,
}

#[derive(Debug)]
enum Running {
    Mosquitto(Child),
    Embedded(Broker),
}

/// Which broker the suite runs against.
pub fn embedded() -> bool {
    std::env::var("IOT2MQTT_TEST_BROKER").as_deref() == Ok("embedded")
}

impl TestBroker {
    /// Start one, or `None` when Mosquitto is needed but not installed (see `super::require`).
    pub async fn start() -> Option<Self> {
        if !embedded() && !super::require("mosquitto", "apt-get install -y mosquitto mosquitto-clients") {
            return None;
        }
        Self::start_listening(false).await
    }

    /// Like [`TestBroker::start`], listening on every interface, so that containers on Docker's
    /// bridge network reach it through the host's gateway address.
    pub async fn start_for_containers() -> Option<Self> {
        if !embedded() && !super::require("mosquitto", "apt-get install -y mosquitto mosquitto-clients") {
            return None;
        }
        Self::start_listening(true).await
    }

    async fn start_listening(everywhere: bool) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut broker = Self { port: super::free_port(), dir, running: None, everywhere };
        broker.spawn().await;
        Some(broker)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop it abruptly: connections drop at once.
    pub async fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Mosquitto(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::Embedded(broker)) => broker.stop().await,
            None => {}
        }
    }

    /// Start it again on the same port, with nothing retained.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        if embedded() {
            let ip = if self.everywhere { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
            // The contract suite runs against it as against Mosquitto: without logins.
            let config = BrokerConfig { listen: (ip, self.port).into(), anonymous: true, ..BrokerConfig::default() };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match Broker::start(config.clone()).await {
                    Ok(broker) => {
                        self.running = Some(Running::Embedded(broker));
                        return;
                    }
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("the embedded broker cannot listen on {}: {e}", self.port),
                }
            }
        }
        let config = self.dir.path().join("mosquitto.conf");
        // Queue without limit: the default drops QoS 1 messages in bursts.
        let text = format!(
            "listener {} {}\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n",
            self.port,
            if self.everywhere { "0.0.0.0" } else { "127.0.0.1" },
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        self.running = Some(Running::Mosquitto(mosquitto(&config, &[self.port]).await));
    }
}

/// Start Mosquitto with `config` and wait until it listens on every one of `ports`.
pub async fn mosquitto(config: &std::path::Path, ports: &[u16]) -> Child {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ports.iter().any(|port| TcpStream::connect(("127.0.0.1", *port)).is_err()) {
        assert!(Instant::now() < deadline, "mosquitto did not listen on {ports:?} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(Running::Mosquitto(mut child)) = self.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
