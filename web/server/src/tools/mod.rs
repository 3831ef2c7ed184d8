//! The tool runner: setup tools a connector declares in `setup.json`, run for the catalog's
//! tool API and for flows alike. A tool is either the plugin's `run-tool` export, called in a
//! fresh sandboxed instance with only the network the tool asks for, or a program in the
//! connector's folder with `{"tool","input"}` on stdin and one JSON object on stdout
//! (`{"ok": true, "result": …}` or `{"ok": false, "error": {…}}`, or a bare result). Programs
//! run in a short-lived container of the connector's image under the Docker runtime
//! ([`container`]) and as sandboxed subprocesses otherwise ([`process`], [`sandbox`]). The
//! tool's timeout is enforced (SIGTERM, then SIGKILL after a grace), and the values of its
//! `secrets` input keys are masked in every message it yields.

mod container;
mod process;
mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iot2mqtt_contract::ErrorCode;
use iot2mqtt_flows::ToolFailure;
use iot2mqtt_flows::schema::{Tool, ToolNetwork};
use iot2mqtt_runtime::{Names, NetGrants, Plugin, Runtime};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, Connector};
use crate::runtime::docker::DockerRuntime;
use crate::sync::lock;

/// The most a script may print on stdout.
const MAX_OUTPUT: usize = 1 << 20;
/// What is kept of a script's stderr for its error message.
const STDERR_TAIL: usize = 2048;
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// What masked secrets read as.
const MASKED: &str = "********";

/// A tool request the runner cannot take (the API answers 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolLookupError {
    /// The connector has no setup or no such tool.
    #[error("connector \"{connector}\" has no tool \"{tool}\"")]
    UnknownTool {
        /// The connector.
        connector: String,
        /// The tool asked for.
        tool: String,
    },
    /// The tool's program is not in the connector's folder.
    #[error("the entry \"{entry}\" of tool \"{tool}\" is not a file in the connector's folder")]
    UnknownEntry {
        /// The tool.
        tool: String,
        /// Its entry.
        entry: String,
    },
}

/// Runs setup tools. Compiled plugins are kept by content hash.
pub struct ToolRunner {
    runtime: Runtime,
    plugins: Mutex<HashMap<String, Plugin>>,
    programs: Programs,
}

/// Where program tools run.
enum Programs {
    /// As subprocesses of this process.
    Processes(process::Processes),
    /// In containers on this Docker engine.
    Containers(container::Containers),
}

impl std::fmt::Debug for ToolRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRunner").finish_non_exhaustive()
    }
}

impl ToolRunner {
    /// A runner whose plugin tools run on `runtime`'s engine and whose programs run as
    /// subprocesses.
    pub fn new(runtime: Runtime) -> Self {
        Self { runtime, plugins: Mutex::default(), programs: Programs::Processes(process::Processes::default()) }
    }

    /// The same, with programs in short-lived containers of their connector's image.
    pub fn in_containers(runtime: Runtime, docker: Arc<DockerRuntime>) -> Self {
        Self { runtime, plugins: Mutex::default(), programs: Programs::Containers(container::Containers::new(docker)) }
    }

    /// Remove what earlier runs left behind (tool containers of a `serve` that was killed).
    pub async fn sweep(&self) {
        if let Programs::Containers(containers) = &self.programs {
            containers.sweep().await;
        }
    }

    /// Build the images of connectors whose tools are programs ahead of time, so that a
    /// wizard's first tool does not wait for a build (Docker runtime only).
    pub async fn prepare(&self, catalog: &Catalog) {
        let Programs::Containers(containers) = &self.programs else { return };
        for name in catalog.names() {
            let Ok(connector) = catalog.get(&name) else { continue };
            let has_programs = connector.setup.as_ref().is_some_and(|s| s.tools.values().any(|t| t.entry != "plugin"));
            if has_programs {
                containers.prepare(&connector).await;
            }
        }
    }

    /// Run `tool` of `connector` with `input`: its result, or why it failed.
    pub async fn execute(
        &self,
        catalog: &Catalog,
        connector: &Connector,
        tool: &str,
        input: Value,
    ) -> Result<Result<Value, ToolFailure>, ToolLookupError> {
        let unknown = || ToolLookupError::UnknownTool { connector: connector.name.to_string(), tool: tool.to_string() };
        let spec = connector.setup.as_ref().and_then(|s| s.tools.get(tool)).ok_or_else(unknown)?.clone();
        let secrets = secret_values(&spec, &input);
        let outcome = if spec.entry == "plugin" {
            self.run_plugin(catalog, connector, tool, &spec, &input).await
        } else {
            let program = entry_path(&connector.dir, &spec.entry)
                .ok_or_else(|| ToolLookupError::UnknownEntry { tool: tool.to_string(), entry: spec.entry.clone() })?;
            self.run_program(connector, &program, tool, &spec, &input).await
        };
        let outcome = match outcome {
            Ok(result) => Ok(mask_value(result, &secrets)),
            Err(mut failure) => {
                failure.message = mask(&failure.message, &secrets);
                Err(failure)
            }
        };
        match &outcome {
            Ok(_) => tracing::info!(connector = %connector.name, tool, "tool succeeded"),
            Err(f) => tracing::warn!(connector = %connector.name, tool, code = %f.code, "tool failed: {}", f.message),
        }
        Ok(outcome)
    }

    async fn run_plugin(
        &self,
        catalog: &Catalog,
        connector: &Connector,
        name: &str,
        spec: &Tool,
        input: &Value,
    ) -> Result<Value, ToolFailure> {
        let wasm = {
            let (catalog, connector) = (catalog.clone(), connector.clone());
            tokio::task::spawn_blocking(move || catalog.plugin(&connector))
                .await
                .map_err(|e| executor_error(e.to_string()))?
                .map_err(|e| executor_error(e.to_string()))?
        };
        let plugin = self.plugin(wasm).await?;
        let grants = match spec.network {
            ToolNetwork::None => NetGrants::none(),
            ToolNetwork::Local => NetGrants::none().local_networks().with_udp(true).with_names(Names::Local),
            ToolNetwork::Internet => NetGrants::none().anywhere().with_udp(true).with_names(Names::Any),
        };
        let timeout = Duration::from_secs(spec.timeout);
        match self.runtime.run_tool(&plugin, name, input, grants, timeout).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(failure)) => Err(ToolFailure {
                // The same input fails the same way again: a bad value, or a tool the plugin
                // does not have (the SDK answers an unknown tool with UNSUPPORTED_PROPERTY).
                retriable: !matches!(
                    ErrorCode::parse(&failure.code),
                    Some(ErrorCode::InvalidValue | ErrorCode::UnsupportedProperty | ErrorCode::InvalidPayload)
                ),
                code: "tool_failed".into(),
                message: format!("{} ({})", failure.message, failure.code),
            }),
            Err(fault) => Err(match fault.kind {
                iot2mqtt_runtime::FaultKind::CpuBudget | iot2mqtt_runtime::FaultKind::Hung => ToolFailure {
                    code: "timeout".into(),
                    message: format!("the tool did not finish within {} s", spec.timeout),
                    retriable: true,
                },
                _ => ToolFailure {
                    code: "tool_failed".into(),
                    message: format!("the plugin failed: {}", fault.message),
                    retriable: false,
                },
            }),
        }
    }

    async fn plugin(&self, wasm: Vec<u8>) -> Result<Plugin, ToolFailure> {
        let key = hex::encode(Sha256::digest(&wasm));
        if let Some(plugin) = lock(&self.plugins).get(&key) {
            return Ok(plugin.clone());
        }
        let plugin = self.runtime.load_plugin(wasm).await.map_err(|e| executor_error(e.to_string()))?;
        let mut plugins = lock(&self.plugins);
        if plugins.len() >= 16 {
            plugins.clear();
        }
        plugins.insert(key, plugin.clone());
        Ok(plugin)
    }

    async fn run_program(
        &self,
        connector: &Connector,
        program: &Path,
        name: &str,
        spec: &Tool,
        input: &Value,
    ) -> Result<Value, ToolFailure> {
        let request = json!({"tool": name, "input": input}).to_string();
        let call = Call {
            program,
            name,
            network: spec.network,
            timeout: Duration::from_secs(spec.timeout),
            request: request.as_bytes(),
        };
        let ran = match &self.programs {
            Programs::Processes(processes) => processes.run(&connector.dir, &call).await,
            Programs::Containers(containers) => containers.run(connector, &call).await,
        };
        match ran.map_err(executor_error)? {
            Ran::TimedOut => Err(ToolFailure {
                code: "timeout".into(),
                message: format!("the tool did not finish within {} s and was stopped", spec.timeout),
                retriable: true,
            }),
            Ran::Exited { code: Some(0), stdout: Some(out), .. } => parse_output(&out),
            Ran::Exited { code: Some(0), stdout: None, .. } => Err(ToolFailure {
                code: "invalid_output".into(),
                message: format!("the tool printed more than {MAX_OUTPUT} bytes"),
                retriable: false,
            }),
            Ran::Exited { code, stderr, .. } => {
                let why = match code {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed by a signal".to_string(),
                };
                let last_words = String::from_utf8_lossy(&stderr).trim().to_string();
                let message = if last_words.is_empty() {
                    format!("the tool {why}")
                } else {
                    format!("the tool {why}: {last_words}")
                };
                Err(ToolFailure { code: "tool_failed".into(), message, retriable: true })
            }
        }
    }
}

/// One run of a program tool, wherever it runs.
#[derive(Debug)]
struct Call<'a> {
    /// The program, a file in the connector's folder.
    program: &'a Path,
    /// The tool's name.
    name: &'a str,
    /// The network it may use.
    network: ToolNetwork,
    /// How long it may take.
    timeout: Duration,
    /// What goes on its stdin.
    request: &'a [u8],
}

/// How a program tool ended.
#[derive(Debug)]
enum Ran {
    /// It exited with `code` (`None`: killed by a signal); `stdout` is `None` when it printed
    /// more than [`MAX_OUTPUT`]; `stderr` is the tail.
    Exited { code: Option<i64>, stdout: Option<Vec<u8>>, stderr: Vec<u8> },
    /// It ran past its timeout and was stopped.
    TimedOut,
}

/// Takes a stream's bytes as they come.
trait Sink {
    /// Take `bytes`.
    fn push(&mut self, bytes: &[u8]);
}

/// A tool's stdout: kept up to [`MAX_OUTPUT`]; past it, only the fact.
#[derive(Debug, Default)]
struct Limited {
    bytes: Vec<u8>,
    over: bool,
}

impl Limited {
    fn into_inner(self) -> Option<Vec<u8>> {
        (!self.over).then_some(self.bytes)
    }
}

impl Sink for Limited {
    fn push(&mut self, bytes: &[u8]) {
        if self.over {
            return;
        }
        if self.bytes.len() + bytes.len() > MAX_OUTPUT {
            self.over = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of a tool's stderr.
#[derive(Debug, Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl Sink for Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_TAIL {
            self.0.drain(..self.0.len() - STDERR_TAIL);
        }
    }
}

/// The program of a script tool: a file inside the connector's folder.
fn entry_path(dir: &Path, entry: &str) -> Option<PathBuf> {
    let folder = dir.canonicalize().ok()?;
    let path = folder.join(entry).canonicalize().ok()?;
    (path.starts_with(&folder) && path.is_file()).then_some(path)
}

/// A script's stdout: one JSON object, `{"ok": …}` or a bare result.
fn parse_output(out: &[u8]) -> Result<Value, ToolFailure> {
    let invalid = |message: String| ToolFailure { code: "invalid_output".into(), message, retriable: false };
    let text = std::str::from_utf8(out).map_err(|_| invalid("the tool's output is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(invalid("the tool printed nothing; it must print one JSON object".into()));
    }
    let value: Value = serde_json::from_str(text.trim())
        .map_err(|e| invalid(format!("the tool's output is not one JSON object: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(invalid("the tool's output must be a JSON object".into()));
    };
    match object.get("ok") {
        None => Ok(Value::Object(object)),
        Some(Value::Bool(true)) => Ok(object.remove("result").unwrap_or(Value::Null)),
        Some(Value::Bool(false)) => {
            let error = object.remove("error").unwrap_or(Value::Null);
            let message = match &error {
                Value::String(s) => s.clone(),
                other => {
                    let text = other.get("message").and_then(Value::as_str).unwrap_or("the tool reported a failure");
                    match other.get("code").and_then(Value::as_str) {
                        Some(code) => format!("{text} ({code})"),
                        None => text.to_string(),
                    }
                }
            };
            let retriable = error.get("retriable").and_then(Value::as_bool).unwrap_or(true);
            Err(ToolFailure { code: "tool_failed".into(), message, retriable })
        }
        Some(other) => Err(invalid(format!("\"ok\" must be true or false, not {other}"))),
    }
}

fn executor_error(message: String) -> ToolFailure {
    ToolFailure { code: "executor_error".into(), message, retriable: true }
}

/// The values of the tool's secret input keys (found at any depth).
fn secret_values(spec: &Tool, input: &Value) -> Vec<String> {
    fn walk(value: &Value, keys: &[String], out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        Value::String(s) if keys.contains(key) && !s.is_empty() => out.push(s.clone()),
                        Value::Number(n) if keys.contains(key) => out.push(n.to_string()),
                        other => walk(other, keys, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, keys, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(input, &spec.secrets, &mut out);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` with every secret replaced.
pub(crate) fn mask(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), MASKED))
}

fn mask_value(value: Value, secrets: &[String]) -> Value {
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(s) => Value::String(mask(&s, secrets)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask_value(v, secrets)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, mask_value(v, secrets))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_read_or_refused_by_name() {
        assert_eq!(parse_output(br#"{"ok": true, "result": {"a": 1}}"#).unwrap(), json!({"a": 1}));
        assert_eq!(parse_output(br#"{"found": []}"#).unwrap(), json!({"found": []}));
        let failed =
            parse_output(br#"{"ok": false, "error": {"code": "auth", "message": "bad key", "retriable": false}}"#)
                .unwrap_err();
        assert_eq!(
            (failed.code.as_str(), failed.message.as_str(), failed.retriable),
            ("tool_failed", "bad key (auth)", false)
        );
        for (out, needle) in [
            (&b""[..], "printed nothing"),
            (b"[1]", "must be a JSON object"),
            (b"hello", "not one JSON object"),
            (b"{\"ok\": 1}", "\"ok\" must be true or false"),
            (b"{} {}", "not one JSON object"),
        ] {
            let e = parse_output(out).unwrap_err();
            assert_eq!(e.code, "invalid_output");
            assert!(e.message.contains(needle), "{}: {}", String::from_utf8_lossy(out), e.message);
        }
    }

    #[test]
    fn output_is_kept_within_its_limits() {
        let mut out = Limited::default();
        out.push(&vec![b'a'; MAX_OUTPUT]);
        assert_eq!(out.into_inner().map(|o| o.len()), Some(MAX_OUTPUT));
        let mut out = Limited::default();
        out.push(&vec![b'a'; MAX_OUTPUT]);
        out.push(b"b");
        assert_eq!(out.into_inner(), None, "one byte too many");
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; STDERR_TAIL]);
        tail.push(b"the end");
        let tail = tail.into_inner();
        assert_eq!((tail.len(), tail.ends_with(b"the end")), (STDERR_TAIL, true));
    }

    #[test]
    fn secrets_are_masked_everywhere() {
        let spec: Tool = serde_json::from_value(json!({"entry": "t", "secrets": ["password", "token"]})).unwrap();
        let input = json!({"host": "h", "password": "hunter2", "nested": {"token": "abc123"}});
        let secrets = secret_values(&spec, &input);
        assert_eq!(mask("login hunter2 with abc123 failed", &secrets), "login ******** with ******** failed");
        assert_eq!(mask_value(json!({"echo": ["hunter2"]}), &secrets), json!({"echo": ["********"]}));
    }

    #[test]
    fn entries_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool.sh"), "").unwrap();
        assert!(entry_path(dir.path(), "tool.sh").is_some());
        assert!(entry_path(dir.path(), "missing.sh").is_none());
        assert!(entry_path(dir.path(), "../../etc/passwd").is_none());
        assert!(entry_path(dir.path(), "/etc/passwd").is_none());
    }
}
