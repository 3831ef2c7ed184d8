//! What the tests share: tools, the broker, an observing MQTT client, instance harnesses.

pub mod baseline;
pub mod broker;
pub mod browser;
pub mod harness;
pub mod home_assistant;
pub mod oauth;
pub mod observer;
pub mod proxy;
pub mod serve;
pub mod shelly;
pub mod tls;
pub mod yeelight;

use std::path::PathBuf;

pub use broker::TestBroker;
pub use harness::{TestInstance, demo_config};
pub use observer::Observer;

/// The repository this suite runs in. `cargo test` sets `CARGO_MANIFEST_DIR` at run time; it is
/// preferred over the compile-time path because checkouts sharing one target directory can
/// share this test binary too.
pub fn repo() -> PathBuf {
    let tests =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    tests.parent().map(PathBuf::from).unwrap_or(tests)
}

/// The directory of the plugins built for this suite.
pub fn plugins_dir() -> PathBuf {
    PathBuf::from(env!("IOT2MQTT_TEST_PLUGINS"))
}

/// A built plugin's bytes (`demo`, `template`, `trap`…).
pub fn plugin(name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("plugin {} not built: {e}", path.display()))
}

/// Whether `tool` is on the PATH. Under `CI=true` a missing tool fails the test; otherwise
/// the test is skipped with a message that says how to install it.
pub fn require(tool: &str, install: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is required but not installed: {install}");
    eprintln!("\n*** SKIPPED: {tool} is not installed. Install it with: {install} ***\n");
    false
}

/// Where `tool` is on the `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|file| file.is_file())
}

/// Whether the Docker engine answers. Under `CI=true` it must; otherwise the test is skipped
/// with a message that says so.
pub fn require_docker() -> bool {
    let answers = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if answers {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Docker engine is required but does not answer (is dockerd running?)"
    );
    eprintln!(
        "\n*** SKIPPED: the Docker engine does not answer. Install and start it (apt-get install docker.io). ***\n"
    );
    false
}

/// A release binary of this workspace (built by `cargo xtask test` before the suite runs).
pub fn binary(name: &str) -> PathBuf {
    // The suite runs from target/<triple>/release/deps/; binaries sit one level up.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let path = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join(name)).expect("a target directory");
    assert!(path.exists(), "{} is missing: run `cargo build --release --bins` (cargo xtask test does)", path.display());
    path
}

/// A TCP port nobody listens on now, on loopback nor on any other interface.
///
/// Taken below Linux's ephemeral range (32768–60999 by default): the kernel gives ports of that
/// range to outgoing connections too, so a port found free there could be some client's source
/// port a moment later, and a broker restarted on it would fail with "address in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        let free = |ip: [u8; 4]| std::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), port)).is_ok();
        if free([0, 0, 0, 0]) && free([127, 0, 0, 1]) {
            return port;
        }
    }
    panic!("no free TCP port between {FIRST} and {}", FIRST + SPAN)
}

/// A unique instance id per test, so parallel tests never share topics.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed))
}

/// Whether a process with `needle` on its command line runs on this machine.
pub fn process_running(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle))
    })
}
