//! Builds the plugins of `plugins/` (Rust and Python) and the fixtures of
//! `tests/fixtures/plugins/` (Rust) and `tests/fixtures/python/` for wasm32-wasip2, so the
//! suite always runs against components built from the current source. Their directory
//! reaches the tests as `IOT2MQTT_TEST_PLUGINS`.

use std::path::{Path, PathBuf};

fn main() {
    let tests = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = tests.parent().map(Path::to_path_buf).unwrap_or_default();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let target = target_root(&out);
    let plugins_out = out.join("plugins");

    let install = root.join("../shared/toolchain/install-wasm-target.sh");
    if let Err(e) = iot2mqtt_plugin_build::ensure_target(Some(&install)) {
        panic!("{e}");
    }
    for (workspace, dir) in [(root.join("plugins"), "wasm"), (tests.join("fixtures/plugins"), "wasm-fixtures")] {
        watch(&workspace);
        if let Err(e) = iot2mqtt_plugin_build::build(&workspace.join("Cargo.toml"), &target.join(dir), &plugins_out) {
            panic!("{e}");
        }
    }
    for plugins in [root.join("plugins"), tests.join("fixtures/python")] {
        watch(&plugins);
        let python = iot2mqtt_plugin_build::PythonBuild {
            plugins: &plugins,
            sdk: &root.join("plugins/python"),
            wit: &root.join("wit"),
            venv: &target.join("python-venv"),
            cache: &target.join("python-plugins"),
        };
        if let Err(e) = iot2mqtt_plugin_build::build_python(&python, &plugins_out) {
            panic!("{e}");
        }
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rustc-env=IOT2MQTT_TEST_PLUGINS={}", plugins_out.display());
}

/// The cargo target directory: the ancestor of OUT_DIR that holds `CACHEDIR.TAG`.
fn target_root(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("wasm"))
}

/// Rebuild when anything in a plugin workspace changes, its own `target/` excepted.
fn watch(workspace: &Path) {
    let Ok(entries) = std::fs::read_dir(workspace) else { return };
    for entry in entries.flatten() {
        if entry.file_name() != "target" {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}
