//! Secrets in the wrong places: the broker password is kept encrypted in the secrets store (one
//! found in `.env` is moved there at start), and the memory-backed folder that holds containers'
//! decrypted secrets is private, a folder planted under its predictable name refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::support::require_docker;
use crate::support::serve::{Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_password_is_moved_out_of_dotenv_into_the_encrypted_store() {
    let mut serve = Serve::start(Runtime::Embedded).await;
    serve.stop();
    let dotenv = serve.data().join(".env");
    let before = std::fs::read_to_string(&dotenv).unwrap_or_default();
    std::fs::write(&dotenv, format!("{before}MQTT_PASSWORD='hunter2 in clear'\n")).unwrap();
    serve.spawn().await;

    let after = std::fs::read_to_string(&dotenv).unwrap();
    assert!(!after.contains("hunter2"), ".env still holds the password:\n{after}");
    let stored = std::fs::read_to_string(serve.data().join("secrets/settings.secret")).unwrap();
    assert!(!stored.contains("hunter2") && stored.starts_with("v1:"), "encrypted: {stored}");
    assert!(serve.log().contains("MQTT_PASSWORD was moved from .env"), "the move is logged");
    assert!(!serve.log().contains("hunter2"), "the password is never logged");
}

/// Where `serve` keeps containers' decrypted secrets for the data directory `data`.
fn run_dir(data: &std::path::Path) -> PathBuf {
    let tag = &hex(&Sha256::digest(data.to_string_lossy().as_bytes()))[..12];
    PathBuf::from(format!("/dev/shm/iot2mqtt-{tag}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_of_containers_secrets_is_private_and_a_planted_one_is_refused() {
    if !require_docker() {
        return;
    }
    let mut serve = Serve::start(Runtime::Docker).await;
    let dir = run_dir(&serve.data());
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{}", dir.display());
    serve.stop();

    // Someone else made a folder of that name first.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let refused = serve.try_spawn().await.expect_err("serve must not use a folder someone else owns");
    assert!(refused.contains(&dir.display().to_string()) && refused.contains("uid 65534"), "{refused}");
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 65534, "left as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}
