//! `tools`: what one setup-tool call costs through the HTTP API, as a wizard makes it: a
//! plugin export in a fresh sandbox, a script as a subprocess (embedded runtime), and the same
//! script in a short-lived container of its connector's image (Docker runtime).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Api, ms};
use crate::Ctx;

use crate::report::Subject;

/// The script every measured script tool runs: read the request, answer.
const SCRIPT: &str = "#!/bin/sh\ncat >/dev/null\necho '{\"ok\": true, \"result\": {}}'\n";

/// Its connector's image: a static busybox in an empty image.
const DOCKERFILE: &str =
    "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

pub async fn tools(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("setup tools: one call through the HTTP API");
    let calls = if ctx.quick { 10 } else { 30 };
    let busybox = which("busybox");
    let connectors = connectors(&ctx.paths.repo, busybox.as_deref())?;

    let (plugin, script) = {
        let (_serve, api) = Api::start(ctx, "embedded", connectors.path(), None).await?;
        let mut plugin = Vec::new();
        let mut script = Vec::new();
        for _ in 0..ctx.runs {
            plugin.push(api.median_call("demo", "suggest_devices", calls).await?);
            script.push(api.median_call("scripted", "echo", calls).await?);
        }
        (plugin, script)
    };
    ctx.report
        .figure("tool_call_plugin", Subject::Iot2mqtt, "ms", plugin)
        .note(format!("the demo plugin's suggest_devices in a fresh sandbox, median of {calls} calls"));
    ctx.report
        .figure("tool_call_script_subprocess", Subject::Iot2mqtt, "ms", script)
        .note(format!("a /bin/sh script as a subprocess (embedded runtime), median of {calls} calls"));

    if busybox.is_none() || !docker_answers() {
        eprintln!("note: the container figure needs Docker and a static busybox (apt-get install busybox-static)");
        return Ok(());
    }
    let (_serve, api) = Api::start(ctx, "docker", connectors.path(), None).await?;
    // The first call waits for the connector's image to be built; that is not measured.
    api.call("scripted", "echo").await.context("the first tool call in a container")?;
    let mut container = Vec::new();
    for _ in 0..ctx.runs {
        container.push(api.median_call("scripted", "echo", calls).await?);
    }
    ctx.report.figure("tool_call_script_container", Subject::Iot2mqtt, "ms", container).note(format!(
        "the same script in a container of its connector's image (Docker runtime), median of {calls} calls"
    ));
    Ok(())
}

/// Tool calls through a `serve`'s API.
impl Api {
    /// Run `tool` of `connector` once; how long it took.
    async fn call(&self, connector: &str, tool: &str) -> anyhow::Result<Duration> {
        let url = format!("/api/integrations/{connector}/tools/execute");
        let started = Instant::now();
        let body = self.post(&url, &json!({"tool": tool})).await?;
        let took = started.elapsed();
        if body["ok"] != true {
            bail!("{connector}/{tool} failed: {body}");
        }
        Ok(took)
    }

    /// The median of `n` calls, ms.
    async fn median_call(&self, connector: &str, tool: &str, n: usize) -> anyhow::Result<f64> {
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            took.push(ms(self.call(connector, tool).await?));
        }
        took.sort_by(f64::total_cmp);
        Ok(took[took.len() / 2])
    }
}

/// The connectors the calls are made to: the demo, and "scripted" whose tool is [`SCRIPT`],
/// with an image when there is a busybox to build it around.
fn connectors(repo: &Path, busybox: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let demo = dir.path().join("demo");
    std::fs::create_dir(&demo)?;
    for file in ["manifest.json", "setup.json", "icon.svg"] {
        std::fs::copy(repo.join("connectors/demo").join(file), demo.join(file))?;
    }
    let scripted = dir.path().join("scripted");
    std::fs::create_dir(&scripted)?;
    let manifest = json!({"name": "scripted", "display_name": "Scripted", "version": "0.1.0", "plugin": "demo"});
    std::fs::write(scripted.join("manifest.json"), manifest.to_string())?;
    let setup = json!({
        "version": "1.0", "display_name": "Scripted",
        "tools": {"echo": {"entry": "tool.sh", "network": "local", "timeout": 10}},
        "flows": [{"id": "default", "name": "Add", "steps": [
            {"id": "create", "type": "instance", "instance": {"instance_id": "auto", "friendly_name": "scripted"}}
        ]}]
    });
    std::fs::write(scripted.join("setup.json"), setup.to_string())?;
    std::fs::write(scripted.join("tool.sh"), SCRIPT)?;
    std::fs::set_permissions(scripted.join("tool.sh"), std::fs::Permissions::from_mode(0o755))?;
    if let Some(busybox) = busybox {
        std::fs::copy(busybox, scripted.join("busybox"))?;
        std::fs::write(scripted.join("Dockerfile"), DOCKERFILE)?;
    }
    Ok(dir)
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|file| file.is_file())
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}
