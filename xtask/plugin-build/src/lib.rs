//! Builds a cargo workspace of plugins for `wasm32-wasip2` and collects the components as
//! `<out>/<name>.wasm`, `<name>` being the package name without its `iot2mqtt-plugin-` or
//! `fixture-` prefix; and builds the Python plugins (a folder with an `app.py`) with
//! componentize-py ([`build_python`]). Used by `cargo xtask plugins` and by the test suite's
//! build script, so both build plugins the same way.
//!
//! It runs cargo as a child process with a clean environment (a build script's own `CARGO_*`
//! variables would otherwise leak into the nested build) and its own target directory (the
//! outer build holds the lock of the shared one).

use std::hash::{Hash, Hasher};
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

/// The componentize-py release Python plugins are built with (from PyPI, into a virtualenv of
/// the build's own).
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// Where Python plugins are built: the SDK, the WIT world, and the build's own folders.
#[derive(Debug, Clone)]
pub struct PythonBuild<'a> {
    /// The folder whose sub-folders with an `app.py` are plugins (`plugins/`).
    pub plugins: &'a Path,
    /// The Python SDK's folder (it holds the `iot2mqtt` package).
    pub sdk: &'a Path,
    /// The WIT folder with the `connector` world.
    pub wit: &'a Path,
    /// The virtualenv that holds componentize-py; made when missing.
    pub venv: &'a Path,
    /// Built components by content hash, so an unchanged plugin is not compiled again.
    pub cache: &'a Path,
}

/// Build every Python plugin under `build.plugins` into `<out>/<name>.wasm`, `<name>` being its
/// folder's name without a leading `_` (`_template-python` → `template-python`). Compiling takes
/// seconds and a few hundred MB, so it runs only when the plugin, the SDK, the WIT world or the
/// componentize-py release changed.
pub fn build_python(build: &PythonBuild<'_>, out: &Path) -> Result<Vec<Built>, String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(build.plugins)
        .map_err(|e| format!("cannot read {}: {e}", build.plugins.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| dir.join("app.py").is_file())
        .collect();
    folders.sort();
    if folders.is_empty() {
        return Ok(Vec::new());
    }
    let componentize = componentize_py(build.venv)?;
    std::fs::create_dir_all(build.cache).map_err(|e| format!("cannot create {}: {e}", build.cache.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut built = Vec::new();
    for folder in folders {
        let dir_name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = dir_name.trim_start_matches('_').to_string();
        let mut hasher = std::hash::DefaultHasher::new();
        COMPONENTIZE_PY.hash(&mut hasher);
        for dir in [folder.as_path(), build.sdk, build.wit] {
            hash_tree(dir, dir, &mut hasher)?;
        }
        let cached = build.cache.join(format!("{name}-{:016x}.wasm", hasher.finish()));
        if !cached.is_file() {
            let partial = cached.with_extension("partial");
            let mut command = Command::new(&componentize);
            command
                .arg("--wit-path")
                .arg(build.wit)
                .args(["--world", "python-connector", "componentize", "app", "--python-path"])
                .arg(&folder)
                .arg("--python-path")
                .arg(build.sdk)
                .arg("--output")
                .arg(&partial)
                .current_dir(&folder);
            output(&mut command).map_err(|e| format!("building the Python plugin {name}: {e}"))?;
            std::fs::rename(&partial, &cached).map_err(|e| format!("cannot keep {}: {e}", cached.display()))?;
        }
        let path = out.join(format!("{name}.wasm"));
        std::fs::copy(&cached, &path)
            .map_err(|e| format!("cannot copy {} to {}: {e}", cached.display(), path.display()))?;
        built.push(Built { name, path });
    }
    Ok(built)
}

/// The componentize-py of `venv`, installed there first when it is missing or another release.
fn componentize_py(venv: &Path) -> Result<PathBuf, String> {
    let program = venv.join("bin/componentize-py");
    let installed = Command::new(&program).arg("--version").output();
    if matches!(&installed, Ok(out) if String::from_utf8_lossy(&out.stdout).contains(COMPONENTIZE_PY)) {
        return Ok(program);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let made = Command::new(&python).args(["-m", "venv"]).arg(venv).output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "cannot make a Python virtualenv at {} ({}); on Debian: apt-get install python3-venv",
                venv.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err(e) => {
            return Err(format!("Python plugins need {python} ({e}); on Debian: apt-get install python3 python3-venv"));
        }
    }
    let pip = venv.join("bin/pip");
    output(
        Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
    )
    .map_err(|e| format!("cannot install componentize-py {COMPONENTIZE_PY} from PyPI: {e}"))?;
    Ok(program)
}

/// Hash the names and contents of every file under `dir` (caches and bytecode excepted), in
/// a fixed order.
fn hash_tree(root: &Path, dir: &Path, hasher: &mut impl Hasher) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_some_and(|n| n != "__pycache__" && n != "target"))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            hash_tree(root, &path, hasher)?;
        } else {
            path.strip_prefix(root).unwrap_or(&path).hash(hasher);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.hash(hasher);
        }
    }
    Ok(())
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
