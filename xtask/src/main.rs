//! `cargo xtask <task>`: the project's tasks, in Rust so they run wherever cargo does.
//!
//! - `plugins`: build every plugin in `plugins/` to `<target>/plugins/<name>.wasm`.
//! - `run`: build everything and run `iot2mqtt serve` (see the README).
//! - `test`: the build-once check (see `once.rs`), then every test tier: unit tests, plugin tests, the integration suite against real
//!   Mosquitto and Docker, then against the embedded broker, and the contract tests against the
//!   Python baseline.
//! - `bench`: the benchmarks against a Mosquitto they start, beside the Python baseline;
//!   `--quick`, `--only a,b`, `--runs N`, `--check` (see the README's Performance section).
//! - `fuzz`: run the fuzz targets of `tests/fuzz` for a fixed time (see `fuzz.rs`).
//! - `schema`: regenerate `connectors/setup.schema.json` from the `setup.json` types.

mod fuzz;
mod once;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => plugins().map(|_| ()),
        Some("run") => run::run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("schema") => cargo_with_env(
            &["test", "--release", "-p", "iot2mqtt-flows", "--test", "flows", "json_schema"],
            &root(),
            ("IOT2MQTT_UPDATE_SCHEMA", "1"),
        ),
        _ => {
            eprintln!("usage: cargo xtask <plugins|run|test|bench|fuzz|schema> [args]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root.
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the process; that is preferred over the path baked
/// in at compile time, because checkouts sharing one `CARGO_TARGET_DIR` share this binary too
/// (a CI clone and a working tree), and each must work on its own tree.
pub(crate) fn root() -> PathBuf {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Where release binaries land (`target/<triple>/release`, see .cargo/config.toml).
pub(crate) fn release_dir() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc").args(["--print", "host-tuple"]).output().context("cannot run rustc")?;
    let triple = String::from_utf8(out.stdout).context("rustc printed something odd")?;
    Ok(target_dir().join(triple.trim()).join("release"))
}

/// Build every plugin; their paths.
pub(crate) fn plugins() -> anyhow::Result<Vec<PathBuf>> {
    let install = root().join("../shared/toolchain/install-wasm-target.sh");
    iot2mqtt_plugin_build::ensure_target(Some(&install)).map_err(anyhow::Error::msg)?;
    let out = target_dir().join("plugins");
    let mut built = iot2mqtt_plugin_build::build(&root().join("plugins/Cargo.toml"), &target_dir().join("wasm"), &out)
        .map_err(anyhow::Error::msg)?;
    let python = iot2mqtt_plugin_build::PythonBuild {
        plugins: &root().join("plugins"),
        sdk: &root().join("plugins/python"),
        wit: &root().join("wit"),
        venv: &target_dir().join("python-venv"),
        cache: &target_dir().join("python-plugins"),
    };
    built.extend(iot2mqtt_plugin_build::build_python(&python, &out).map_err(anyhow::Error::msg)?);
    for plugin in &built {
        let size = std::fs::metadata(&plugin.path).map(|m| m.len()).unwrap_or(0);
        println!("plugin {:<12} {:>8} bytes  {}", plugin.name, size, plugin.path.display());
    }
    Ok(built.into_iter().map(|b| b.path).collect())
}

/// Run `cargo` with `args` in `dir`, failing on a non-zero exit.
pub(crate) fn cargo(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let status = cargo_command()
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// The same, with one more environment variable.
pub(crate) fn cargo_with_env(args: &[&str], dir: &Path, (key, value): (&str, &str)) -> anyhow::Result<()> {
    let status = cargo_command()
        .args(args)
        .env(key, value)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run cargo {} with {key}={value}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({key}={value})", args.join(" "));
    }
    Ok(())
}

/// A `cargo` command with the environment a person's shell would give it.
///
/// `cargo xtask` runs this program through `cargo run`, which sets `CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME` and the like for it. Build scripts (ring's, through the `cc` crate) ask to
/// be rerun when those change, so a nested `cargo build` that inherited them would rebuild ring
/// and everything above it (rustls, reqwest, the server) after a plain `cargo build --release`.
pub(crate) fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_run = key.starts_with("CARGO_PKG_")
            || matches!(
                &*key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            command.env_remove(&*key);
        }
    }
    command
}

fn bench(extra: &[String]) -> anyhow::Result<()> {
    plugins()?;
    let plugins_dir = target_dir().join("plugins");
    let root = root();
    once::build_binaries()?;
    let out = target_dir().join("bench");
    let status = Command::new(release_dir()?.join("iot2mqtt-bench"))
        .arg("run")
        .arg("--out")
        .arg(&out)
        .arg("--repo")
        .arg(&root)
        .arg("--plugins")
        .arg(&plugins_dir)
        .args(extra)
        .status()
        .context("cannot run iot2mqtt-bench")?;
    if !status.success() {
        bail!("the benchmarks failed ({status})");
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    plugins()?;
    let root = root();
    // The integration suite starts these binaries; build them first, then make sure a newcomer's
    // `-p iot2mqtt` build would reuse them.
    once::build_binaries()?;
    once::check()?;
    let mut args = vec!["test", "--release", "--workspace"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args, &root)?;
    // The integration suite once more, against the embedded broker instead of Mosquitto.
    let mut embedded = vec!["test", "--release", "-p", "iot2mqtt-tests"];
    if !extra.is_empty() {
        embedded.push("--");
        embedded.extend(extra.iter().map(String::as_str));
    }
    println!("xtask: the integration suite against the embedded broker");
    cargo_with_env(&embedded, &root, ("IOT2MQTT_TEST_BROKER", "embedded"))?;
    // The contract tests once more, against the Python reference connector of the benchmarks,
    // so the comparison is between two implementations that honour the contract.
    if extra.is_empty() {
        println!("xtask: the contract tests against the Python baseline");
        cargo_with_env(
            &["test", "--release", "-p", "iot2mqtt-tests", "--", "contract::"],
            &root,
            ("IOT2MQTT_CONTRACT_TARGET", "baseline"),
        )?;
    }
    // And against the demo's Python port, in the same host: a component built by
    // componentize-py holds to the contract like one built from Rust.
    if extra.is_empty() {
        println!("xtask: the contract tests against the Python demo plugin");
        cargo_with_env(
            &["test", "--release", "-p", "iot2mqtt-tests", "--", "contract::"],
            &root,
            ("IOT2MQTT_CONTRACT_TARGET", "demo-python"),
        )?;
    }
    // Plugin logic is tested natively (it is plain Rust apart from the exports).
    let host = Command::new("rustc").args(["--print", "host-tuple"]).output().context("cannot run rustc")?;
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let plugin_target = target_dir().join("wasm-native");
    let plugin_target = plugin_target.to_string_lossy();
    cargo(
        &["test", "--release", "--workspace", "--target", &host, "--target-dir", &plugin_target],
        &root.join("plugins"),
    )?;
    // A short fuzzing run of every target; `cargo xtask fuzz` runs them longer.
    if extra.is_empty() {
        if fuzz::installed() {
            for target in fuzz::TARGETS {
                fuzz::run(target, FUZZ_SECONDS_IN_TESTS)?;
            }
        } else if std::env::var("CI").as_deref() == Ok("true") {
            bail!("cargo-fuzz is required but not installed: cargo install cargo-fuzz --locked");
        } else {
            eprintln!(
                "\n*** SKIPPED: the fuzz targets; cargo-fuzz is not installed: cargo install cargo-fuzz --locked ***\n"
            );
        }
    }
    Ok(())
}

/// How long `cargo xtask test` fuzzes each target.
const FUZZ_SECONDS_IN_TESTS: u32 = 30;
