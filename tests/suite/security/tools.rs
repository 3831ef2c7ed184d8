//! Script setup tools in the embedded runtime run in a bubblewrap sandbox: they see the system's
//! programs and their connector's folder, never `serve`'s data; they are nobody, with no
//! capabilities, under a seccomp filter; and nothing they start outlives them.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::{process_running, require};

async fn execute(serve: &Serve, tool: &str, input: Value) -> Value {
    let body = json!({"tool": tool, "input": input});
    let (status, reply) = serve.call(Method::POST, "/api/integrations/scripted/tools/execute", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{tool}: {reply}");
    reply
}

/// Wait up to ten seconds for `running(marker)` to read `expected`.
async fn until_running_is(marker: &str, expected: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(marker) != expected {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_tool_sees_no_data_has_no_privileges_and_cannot_change_its_sandbox() {
    if !require("python3", "apt-get install python3") || !require("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let serve = Serve::start(Runtime::Embedded).await;
    let data = serve.data();
    let secrets: Vec<String> = ["secrets/.master.key", "secrets/auth.json", "secrets/settings.secret", ".env"]
        .iter()
        .map(|file| data.join(file))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    assert!(secrets.len() >= 2, "the data directory has secrets to protect: {secrets:?}");

    let reply = execute(&serve, "inspect", json!({"paths": secrets})).await;
    let seen = reply["result"].clone();
    assert!(seen.is_object(), "{reply}");
    for (path, readable) in seen["readable"].as_object().unwrap() {
        assert_eq!(readable, false, "{path} is not visible to a tool");
    }
    let allowed = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "proc", "dev", "tmp", "connector"];
    for entry in seen["root"].as_array().unwrap() {
        assert!(allowed.contains(&entry.as_str().unwrap()), "/{entry} is visible: {seen}");
    }
    for entry in ["passwd", "shadow", "group", "machine-id"] {
        assert!(!seen["etc"].as_array().unwrap().contains(&json!(entry)), "/etc/{entry} is visible: {seen}");
    }
    assert_eq!(seen["cwd"], "/connector");
    assert_eq!((seen["uid"].as_u64(), seen["gid"].as_u64()), (Some(65534), Some(65534)), "nobody: {seen}");
    assert_eq!(seen["capabilities"], 0, "no capabilities: {seen}");
    assert_eq!(seen["no_new_privs"], "1");
    assert_eq!(seen["seccomp"], "2", "a seccomp filter applies: {seen}");
    assert_eq!((seen["unshare"].as_i64(), seen["mount"].as_i64()), (Some(1), Some(1)), "EPERM: {seen}");
    assert_eq!((seen["scratch"].as_bool(), seen["folder"].as_bool()), (Some(true), Some(false)), "{seen}");
    assert!(seen["processes"].as_array().unwrap().len() <= 3, "a PID namespace of its own: {seen}");
    assert_eq!(seen["interfaces"], json!(["lo"]), "no network but loopback: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_leaves_the_tools_session_does_not_outlive_the_tool() {
    if !require("python3", "apt-get install python3") || !require("bwrap", "apt-get install bubblewrap") {
        return;
    }
    let serve = Serve::start(Runtime::Embedded).await;

    // The tool ends at once, leaving a child in a session of its own.
    let marker = format!("left-behind-{}", std::process::id());
    let done = execute(&serve, "daemon", json!({"marker": marker})).await;
    assert!(done["result"]["child"].is_u64(), "the child was started: {done}");
    assert!(until_running_is(&marker, false).await, "the child outlived the tool");

    // The tool hangs past its timeout; its child is seen running meanwhile, and goes with it.
    let marker = format!("timed-out-{}", std::process::id());
    let call = execute(&serve, "daemon_hang", json!({"marker": marker}));
    let watch = until_running_is(&marker, true);
    let (timed_out, seen) = tokio::join!(call, watch);
    assert!(seen, "the child ran while the tool did");
    assert_eq!(timed_out["error"]["code"], "timeout", "{timed_out}");
    assert!(until_running_is(&marker, false).await, "the child outlived the tool's timeout");
}
