//! Build once: every command builds the binaries with one package set, and a check that a
//! single package built after the workspace reuses what the workspace build compiled.
//!
//! Cargo resolves a crate's features for the packages a command selects. When members ask for a
//! shared crate with different features, building the `iot2mqtt` binary's package alone
//! (`cargo build -p iot2mqtt-server`) after a workspace build compiles that crate and everything
//! above it again (minutes, when wasmtime is among them).
//! The workspace manifest declares each crate once; `check` catches a member that drifts.

use std::process::Stdio;

use anyhow::{Context, bail};

use crate::root;

/// Build every binary of the workspace (release), the set `run`, `test` and `bench` start.
pub(crate) fn build_binaries() -> anyhow::Result<()> {
    crate::cargo(&["build", "--release", "--workspace", "--bins"], &root())
}

/// Fail when building the `iot2mqtt` binary's package alone compiles anything after
/// `build_binaries`.
pub(crate) fn check() -> anyhow::Result<()> {
    let output = crate::cargo_command()
        .args(["build", "--release", "-p", "iot2mqtt-server", "--bins", "--message-format=json"])
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build -p iot2mqtt-server")?;
    if !output.status.success() {
        bail!("cargo build -p iot2mqtt-server failed");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let compiled = compiled_units(&stdout);
    if !compiled.is_empty() {
        bail!(
            "building iot2mqtt-server alone compiled {} crate(s) again after the workspace build: {}. \
             A member asks for a shared dependency with other features; declare it once in \
             [workspace.dependencies] with the features every member needs.",
            compiled.len(),
            compiled.join(", ")
        );
    }
    println!("xtask: build once: iot2mqtt-server alone reuses the workspace build");
    Ok(())
}

/// The package ids of the artifacts cargo reports as not fresh.
fn compiled_units(messages: &str) -> Vec<String> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .map(|m| m["package_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::compiled_units;

    #[test]
    fn only_artifacts_that_were_compiled_count() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"a 1.0","fresh":true}
{"reason":"compiler-artifact","package_id":"b 1.0","fresh":false}
{"reason":"build-script-executed","package_id":"c 1.0"}
not json
{"reason":"build-finished","success":true}"#;
        assert_eq!(compiled_units(messages), vec!["b 1.0".to_string()]);
    }
}
