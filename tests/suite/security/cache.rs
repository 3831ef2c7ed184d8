//! Compiled plugins are native code: `serve` loads them only from its own cache, which no
//! container can write (a container running a plugin reads it, read-only, so that a plugin is
//! compiled once). Each container gets a cache of its own, whatever the instance is called
//! (`serve` included), and every other folder it sees is read-only.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::serve::{Runtime, Serve};
use crate::support::{Observer, require_docker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_writes_only_its_own_cache_never_the_one_serve_loads_from() {
    if !require_docker() {
        return;
    }
    let serve = Serve::start(Runtime::Docker).await;
    let mut obs = Observer::connect(serve.mqtt(), "IoT2mqtt/v1/instances/serve/status").await;
    serve
        .create(json!({"instance_id": "serve", "connector_type": "demo", "devices": [{"device_id": "l1", "kind": "light"}]}))
        .await;
    obs.wait_for("online", Duration::from_secs(30), |m| m.text() == "online").await;

    let out = std::process::Command::new("docker").args(["inspect", "iot2mqtt_demo_serve"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let container: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone();
    let own_cache = serve.data().join("cache/serve");
    let mut writable = Vec::new();
    for mount in container["Mounts"].as_array().unwrap() {
        let source = mount["Source"].as_str().unwrap();
        if source.starts_with(own_cache.to_str().unwrap()) {
            assert_eq!(mount["RW"], false, "serve's own cache is mounted writable: {mount}");
            assert_eq!(mount["Destination"], "/shared-cache", "{mount}");
        }
        if mount["RW"] == true {
            writable.push((source.to_string(), mount["Destination"].as_str().unwrap().to_string()));
        }
    }
    let expected = serve.data().join("cache/instances/serve").display().to_string();
    assert_eq!(writable, [(expected, "/cache".to_string())], "only the container's own cache is writable");
    let mode = std::fs::metadata(&own_cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "serve's cache is private");
}
