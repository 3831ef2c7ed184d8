//! The data directory (`$IOT2MQTT_PATH`, default `./data`) and everything persisted in it:
//!
//! ```text
//! .env                                  MQTT settings and other globals
//! instances/<connector>/<id>.json       instance files (atomic writes, under a lock)
//! instances/<connector>/.backup/…       what DELETE removed
//! secrets/.master.key                   0600, generated at first start
//! secrets/instances/<id>.secret         encrypted
//! secrets/auth.json                     the access key's argon2 hash, the session secret
//! plugins/<connector>/<sha256>.wasm     content-addressed plugin store
//! plugins/<connector>/active/<id>/      the plugin an instance runs (mounted into its container)
//! cache/serve/                          compiled-plugin cache of serve's own engine (never mounted)
//! cache/instances/<id>/                 compiled-plugin cache of a container's host (its own, rw)
//! ```
//!
//! A compiled plugin is native code that wasmtime maps and runs after checking only its header,
//! so `serve` loads compiled code only from `cache/serve/`, which no container can write; a
//! container's cache is its own and never read by anyone else.

pub mod atomic;
pub mod instances;
pub mod plugins;
pub mod settings;

use std::path::{Path, PathBuf};

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`, created with its subdirectories when missing.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let root = if root.is_absolute() { root.to_path_buf() } else { std::env::current_dir()?.join(root) };
        for dir in ["instances", "secrets/instances", "plugins", "cache/serve", "cache/instances"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        restrict(&root.join("secrets"))?;
        restrict(&root.join("cache/serve"))?;
        sweep_old_caches(&root.join("cache"));
        sweep_temporaries(&root.join("instances"));
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.env`
    pub fn dotenv(&self) -> PathBuf {
        self.root.join(".env")
    }

    /// `instances/`
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// `secrets/`
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// `plugins/`
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// `cache/instances/<id>/`: a container's own cache.
    pub fn cache(&self, instance: &str) -> PathBuf {
        self.root.join("cache/instances").join(instance)
    }

    /// `cache/serve/`: the cache of serve's own engine.
    pub fn engine_cache(&self) -> PathBuf {
        self.root.join("cache/serve")
    }
}

/// Make a directory private to its owner (0700).
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Make `dir` a folder only this user can enter: created 0700, or, when it exists, a real
/// folder (not a link) owned by this user, set back to 0700. A folder someone else made under
/// the same name (in `/dev/shm`, where anyone may create one) is refused: its owner could read
/// or swap what is written there.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "it exists and is not a folder of this user (uid {me}) but {} of uid {}: remove it",
                if meta.is_dir() { "a folder" } else { "something else" },
                meta.uid()
            ),
        ));
    }
    restrict(dir)
}

/// Remove caches of the layout before `cache/serve` and `cache/instances` (one folder per
/// instance beside serve's own, which an instance could share by its name). Caches can always
/// be rebuilt.
fn sweep_old_caches(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for entry in entries.flatten() {
        if entry.file_name() != "serve" && entry.file_name() != "instances" {
            tracing::info!(dir = %entry.path().display(), "removing a cache of an older layout");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Remove temporary files a crash left behind in the instance folders.
fn sweep_temporaries(instances: &Path) {
    let Ok(connectors) = std::fs::read_dir(instances) else { return };
    for connector in connectors.flatten() {
        let Ok(files) = std::fs::read_dir(connector.path()) else { continue };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                tracing::info!(file = %file.path().display(), "removing a temporary file left by a crash");
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}
