//! Writing files so that a crash at any moment leaves either the old or the new content
//! ([`write`], shared with the host), with the writers of one directory serialised by an
//! advisory lock file, so two processes on one data directory cannot interleave.

use std::fs::{File, OpenOptions};
use std::path::Path;

pub use iot2mqtt_contract::atomic::write;

/// An exclusive advisory lock on `<dir>/.lock`, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Wait for the lock of `dir` (blocking: call it off the async threads).
    pub fn acquire(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
        file.lock()?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_under_the_lock_replace_whole_files() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-atomic-{}", std::process::id()));
        let path = dir.join("a.json");
        write(&path, b"old", 0o600).unwrap();
        {
            let _lock = DirLock::acquire(&dir).unwrap();
            write(&path, b"new", 0o600).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
