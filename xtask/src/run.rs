//! `cargo xtask run`: build the plugins and binaries, then run `iot2mqtt serve` with the
//! repository's connectors, its data in `<target>/run/data`, and the embedded MQTT broker (or
//! the broker in `MQTT_HOST`, or one already listening on localhost:1883).

use std::net::TcpStream;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{plugins, release_dir, root, target_dir};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    plugins()?;
    crate::once::build_binaries()?;
    let data = target_dir().join("run/data");
    let mut command = Command::new(release_dir()?.join("iot2mqtt"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .arg("--connectors")
        .arg(root().join("connectors"))
        .arg("--plugins-dir")
        .arg(target_dir().join("plugins"))
        .args(args);
    if std::env::var_os("MQTT_HOST").is_none() && TcpStream::connect(("127.0.0.1", 1883)).is_ok() {
        println!("a broker already listens on localhost:1883; using it instead of the embedded one");
        command.env("MQTT_HOST", "localhost");
    }
    println!("iot2mqtt serve: http://localhost:8765 (data in {})", data.display());
    println!("watch the bus with: mosquitto_sub -t 'IoT2mqtt/#' -v");
    let status = command.status().context("cannot start iot2mqtt serve")?;
    if !status.success() {
        bail!("iot2mqtt serve exited with {status}");
    }
    Ok(())
}
