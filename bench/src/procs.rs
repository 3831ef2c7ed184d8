//! The processes a benchmark runs — Mosquitto, `iot2mqtt-host`, the Python baseline, `iot2mqtt
//! serve` — and what `/proc` says about them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The repository.
    pub repo: PathBuf,
    /// Release binaries (`iot2mqtt`, `iot2mqtt-host`).
    pub bin: PathBuf,
    /// Built plugins.
    pub plugins: PathBuf,
    /// A Python with paho-mqtt, when there is one.
    pub python: Option<PathBuf>,
}

impl Paths {
    /// A plugin's file.
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.plugins.join(format!("{name}.wasm"))
    }
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Its scratch directory.
    pub dir: tempfile::TempDir,
    name: String,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> f64 {
        rss_kib(self.pid())
    }

    /// CPU time used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    /// What it wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Fail if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = self.log();
            bail!("{} exited with {status}:\n{}", self.name, tail(&log, 2000));
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

fn spawn(name: &str, mut command: Command, dir: tempfile::TempDir) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(dir.path().join("log"))?;
    let child = command.stdout(Stdio::null()).stderr(log).spawn().with_context(|| format!("cannot start {name}"))?;
    Ok(Proc { child, dir, name: name.to_string() })
}

/// Mosquitto on `port`, queueing without limit (the default drops QoS 1 bursts), without
/// Nagle's delay (as every client here sets too).
pub fn mosquitto(port: u16) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 0\nmax_connections -1\nset_tcp_nodelay true\n"
        ),
    )?;
    let mut command = Command::new("mosquitto");
    command.arg("-c").arg(&config);
    let proc = spawn("mosquitto", command, dir)?;
    wait_port(port)?;
    Ok(proc)
}

/// The embedded broker in a process of its own (this binary's `broker` command) on `port`.
pub fn embedded_broker(port: u16) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["broker", "--port", &port.to_string()]).env("LOG_LEVEL", "WARN");
    let proc = spawn("the embedded broker", command, dir)?;
    wait_port(port)?;
    Ok(proc)
}

/// Wait until something listens on `port`.
pub fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// An instance in its own process: `iot2mqtt-host` with `plugin`, or the Python baseline.
pub fn host(paths: &Paths, port: u16, config: &Value, plugin: &str, cache: &Path) -> anyhow::Result<Proc> {
    let (dir, id) = instance_dir(config)?;
    let mut command = Command::new(paths.bin.join("iot2mqtt-host"));
    command
        .env_clear()
        .envs(iot2mqtt_testkit::instance_env(&id, port, dir.path()))
        .env("IOT2MQTT_PLUGIN", paths.plugin(plugin))
        .env("IOT2MQTT_CACHE_DIR", cache)
        .env("LOG_LEVEL", "WARN");
    spawn("iot2mqtt-host", command, dir)
}

/// The Python baseline with `config`.
pub fn baseline(paths: &Paths, port: u16, config: &Value) -> anyhow::Result<Proc> {
    let python = paths.python.as_ref().context("no Python with paho-mqtt")?;
    let (dir, id) = instance_dir(config)?;
    let mut command = Command::new(python);
    command
        .arg(paths.repo.join("bench/python-baseline/connector.py"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(iot2mqtt_testkit::instance_env(&id, port, dir.path()))
        .env("LOG_LEVEL", "WARNING");
    spawn("the Python baseline", command, dir)
}

/// `iot2mqtt serve` with its own data directory, the connectors of `connectors` and `runtime`
/// (`embedded` or `docker`); `mqtt` is an external broker's port, or `None` for its embedded
/// broker on `own_mqtt`.
pub fn serve(
    paths: &Paths,
    http: u16,
    own_mqtt: u16,
    mqtt: Option<u16>,
    key: &str,
    runtime: &str,
    connectors: &Path,
) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let mut command = Command::new(paths.bin.join("iot2mqtt"));
    command
        .args(["serve", "--runtime", runtime])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--connectors")
        .arg(connectors)
        .arg("--plugins-dir")
        .arg(&paths.plugins)
        .args(["--listen", &format!("127.0.0.1:{http}"), "--mqtt-listen", &format!("127.0.0.1:{own_mqtt}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IOT2MQTT_ACCESS_KEY", key)
        .env("LOG_LEVEL", "warn");
    if let Some(port) = mqtt {
        command.env("MQTT_HOST", "127.0.0.1").env("MQTT_PORT", port.to_string());
    }
    let proc = spawn("iot2mqtt serve", command, dir)?;
    wait_port(http)?;
    Ok(proc)
}

fn instance_dir(config: &Value) -> anyhow::Result<(tempfile::TempDir, String)> {
    let id = config["instance_id"].as_str().context("the config has no instance_id")?.to_string();
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(format!("{id}.json")), config.to_string())?;
    Ok((dir, id))
}

/// Resident memory of a process, KiB (`NaN` when it is gone).
pub fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// User and system CPU time of a process, seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A free TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    &text[start..]
}

/// Raise the open-files limit as far as allowed (each instance holds a socket), and
/// `vm.max_map_count` when root (each plugin instance maps its memory).
pub fn raise_limits() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let current: u64 =
        std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if current < 1_048_576 && std::fs::write("/proc/sys/vm/max_map_count", "1048576").is_err() {
        eprintln!(
            "note: vm.max_map_count is {current}; raise it (sysctl vm.max_map_count=1048576) for 10,000 instances"
        );
    }
}
