//! A private Mosquitto per test, on a free port, stoppable and restartable.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Mosquitto. Killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    /// Start one, or `None` when mosquitto is not installed (see `super::require`).
    pub fn start() -> Option<Self> {
        if !super::require("mosquitto", "apt-get install -y mosquitto mosquitto-clients") {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut broker = Self { port: super::free_port(), dir, child: None };
        broker.spawn();
        Some(broker)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill it (connections drop at once, no clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("mosquitto.conf");
        // Queue without limit: the default drops QoS 1 messages in bursts.
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n",
            self.port
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {} in time", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
