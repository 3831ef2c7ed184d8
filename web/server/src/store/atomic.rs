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

    /// The write itself is tested where it lives (`iot2mqtt_contract::atomic`); here, the lock.
    #[test]
    fn the_lock_excludes_other_writers_until_dropped() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-dirlock-{}", std::process::id()));
        let path = dir.join("a.json");
        write(&path, b"old", 0o600).unwrap();
        let other = || OpenOptions::new().write(true).open(dir.join(".lock")).unwrap();
        {
            let _lock = DirLock::acquire(&dir).unwrap();
            assert!(other().try_lock().is_err(), "a second writer must wait while the lock is held");
            write(&path, b"new", 0o600).unwrap();
        }
        assert!(other().try_lock().is_ok(), "the lock is released when dropped");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
