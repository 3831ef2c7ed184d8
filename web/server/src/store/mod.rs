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
//! cache/<id>/                           compiled-plugin cache of an instance's host
//! ```

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
        for dir in ["instances", "secrets/instances", "plugins", "cache"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        restrict(&root.join("secrets"))?;
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

    /// `cache/<id>/`
    pub fn cache(&self, instance: &str) -> PathBuf {
        self.root.join("cache").join(instance)
    }
}

/// Make a directory private to its owner (0700).
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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
