//! `cargo xtask run`: build the plugins and binaries and run a demo instance of
//! `iot2mqtt-host` against the broker in `MQTT_HOST`/`MQTT_PORT` (default localhost:1883),
//! starting a private Mosquitto when none answers and `mosquitto` is installed.

use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{cargo, plugins, release_dir, root, target_dir};

pub(crate) fn run(_args: &[String]) -> anyhow::Result<()> {
    let built = plugins()?;
    cargo(&["build", "--release", "--bins"], &root())?;
    let demo = built.iter().find(|p| p.ends_with("demo.wasm")).context("the demo plugin was not built")?;
    let host = std::env::var("MQTT_HOST").unwrap_or_else(|_| "localhost".into());
    let port: u16 = std::env::var("MQTT_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(1883);
    let _broker = ensure_broker(&host, port)?;

    let dir = target_dir().join("run");
    let instances = dir.join("instances");
    std::fs::create_dir_all(&instances).context("cannot create the run directory")?;
    let config = serde_json::json!({
        "instance_id": "demo",
        "connector_type": "demo",
        "friendly_name": "Demo devices",
        "update_interval": 10,
        "devices": [
            {"device_id": "light1", "kind": "light"},
            {"device_id": "switch1", "kind": "switch"},
            {"device_id": "sensor1", "kind": "sensor"}
        ],
        "groups": [{"group_id": "all", "devices": ["light1", "switch1"]}]
    });
    std::fs::write(instances.join("demo.json"), serde_json::to_vec_pretty(&config)?)
        .context("cannot write the demo instance")?;
    println!("demo instance on mqtt://{host}:{port}; try:");
    println!("  mosquitto_sub -h {host} -p {port} -t 'IoT2mqtt/#' -v");
    println!(
        "  mosquitto_pub -h {host} -p {port} -t IoT2mqtt/v1/instances/demo/devices/light1/cmd -m '{{\"id\":\"1\",\"values\":{{\"power\":true}}}}'"
    );
    let status = Command::new(release_dir()?.join("iot2mqtt-host"))
        .env("INSTANCE_NAME", "demo")
        .env("MQTT_HOST", &host)
        .env("MQTT_PORT", port.to_string())
        .env("IOT2MQTT_INSTANCES_DIR", &instances)
        .env("IOT2MQTT_PLUGIN", demo)
        .env("IOT2MQTT_CACHE_DIR", dir.join("cache"))
        .status()
        .context("cannot start iot2mqtt-host")?;
    if !status.success() {
        bail!("iot2mqtt-host exited with {status}");
    }
    Ok(())
}

/// A broker that answers on `host:port`: the one already there, or a Mosquitto started here.
fn ensure_broker(host: &str, port: u16) -> anyhow::Result<Option<Broker>> {
    if TcpStream::connect((host, port)).is_ok() {
        return Ok(None);
    }
    if host != "localhost" && host != "127.0.0.1" {
        bail!("no MQTT broker answers on {host}:{port}");
    }
    let child = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .spawn()
        .context("no MQTT broker answers and mosquitto cannot be started (apt-get install mosquitto)")?;
    for _ in 0..50 {
        if TcpStream::connect((host, port)).is_ok() {
            return Ok(Some(Broker(child)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("mosquitto did not start on port {port}")
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
