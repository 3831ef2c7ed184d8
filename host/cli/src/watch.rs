//! Notices when the plugin file is replaced (an atomic rename gives it a new inode; a copy in
//! place a new size or time) and hands over the new bytes once the file has stopped changing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// Watches one plugin file.
#[derive(Debug)]
pub(crate) struct PluginWatcher {
    path: PathBuf,
    seen: Option<Signature>,
}

impl PluginWatcher {
    /// Watch `path`, taking its current version as seen.
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), seen: signature(path) }
    }

    /// Wait until the file changes; its new bytes.
    pub(crate) async fn changed(&mut self) -> Option<Vec<u8>> {
        loop {
            tokio::time::sleep(POLL).await;
            let Some(now) = signature(&self.path) else { continue };
            if Some(now) == self.seen {
                continue;
            }
            // Let a writer that copies in place finish before reading.
            tokio::time::sleep(POLL / 2).await;
            if signature(&self.path) != Some(now) {
                continue;
            }
            self.seen = Some(now);
            match tokio::fs::read(&self.path).await {
                Ok(bytes) => {
                    tracing::info!(path = %self.path.display(), "plugin file changed");
                    return Some(bytes);
                }
                Err(e) => tracing::warn!(path = %self.path.display(), "cannot read the changed plugin: {e}"),
            }
        }
    }
}

fn signature(path: &Path) -> Option<Signature> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Signature {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}
