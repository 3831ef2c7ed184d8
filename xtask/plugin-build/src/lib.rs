//! Builds a cargo workspace of plugins for `wasm32-wasip2` and collects the components as
//! `<out>/<name>.wasm`, `<name>` being the package name without its `iot2mqtt-plugin-` or
//! `fixture-` prefix. Used by `cargo xtask plugins` and by the test suite's build script, so
//! both build plugins the same way.
//!
//! It runs cargo as a child process with a clean environment (a build script's own `CARGO_*`
//! variables would otherwise leak into the nested build) and its own target directory (the
//! outer build holds the lock of the shared one).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// One built plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Its short name (`demo`).
    pub name: String,
    /// Where its `.wasm` was copied.
    pub path: PathBuf,
}

/// Make sure the active toolchain can build for [`TARGET`]: ask rustup, and when it cannot
/// download, fall back to `install` (the offline installer script), when given.
pub fn ensure_target(install: Option<&Path>) -> Result<(), String> {
    let sysroot = output(Command::new(rustc()).args(["--print", "sysroot"]))?;
    if Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET).join("lib").is_dir() {
        return Ok(());
    }
    let rustup = Command::new("rustup").args(["target", "add", TARGET]).status();
    if matches!(rustup, Ok(status) if status.success()) {
        return Ok(());
    }
    match install {
        Some(script) if script.exists() => match Command::new("bash").arg(script).status() {
            Ok(status) if status.success() => Ok(()),
            _ => Err(format!("{} could not install the {TARGET} target", script.display())),
        },
        _ => Err(format!(
            "the {TARGET} target is missing and rustup could not install it: run `rustup target add {TARGET}`"
        )),
    }
}

/// Build every plugin of the workspace at `manifest` in release mode and copy the components
/// to `out`.
pub fn build(manifest: &Path, target_dir: &Path, out: &Path) -> Result<Vec<Built>, String> {
    let mut command = Command::new(cargo());
    clean_env(&mut command);
    command
        .args(["build", "--release", "--workspace", "--message-format=json-render-diagnostics", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .stderr(std::process::Stdio::inherit());
    let stdout = output(&mut command)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut built = Vec::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["crate_types"].as_array().is_some_and(|t| t.iter().any(|t| t == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let Some(package) = message["target"]["name"].as_str() else { continue };
        let Some(wasm) = message["filenames"]
            .as_array()
            .and_then(|files| files.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm")))
        else {
            continue;
        };
        let name = short_name(package);
        let path = out.join(format!("{name}.wasm"));
        std::fs::copy(wasm, &path).map_err(|e| format!("cannot copy {wasm} to {}: {e}", path.display()))?;
        built.push(Built { name, path });
    }
    if built.is_empty() {
        return Err(format!("building {} produced no plugin", manifest.display()));
    }
    built.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(built)
}

/// `iot2mqtt-plugin-demo` (or `iot2mqtt_plugin_demo`) → `demo`; `fixture-trap` → `trap`.
pub fn short_name(package: &str) -> String {
    let package = package.replace('_', "-");
    let name =
        package.strip_prefix("iot2mqtt-plugin-").or_else(|| package.strip_prefix("fixture-")).unwrap_or(&package);
    name.to_string()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let inherited_from_cargo = key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || matches!(
                &*key,
                "RUSTFLAGS" | "TARGET" | "HOST" | "OUT_DIR" | "OPT_LEVEL" | "PROFILE" | "DEBUG" | "NUM_JOBS"
            );
        if inherited_from_cargo {
            command.env_remove(&*key);
        }
    }
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        for (package, name) in [
            ("iot2mqtt-plugin-demo", "demo"),
            ("iot2mqtt_plugin_yeelight", "yeelight"),
            ("fixture-trap", "trap"),
            ("other", "other"),
        ] {
            assert_eq!(short_name(package), name);
        }
    }
}
