//! The compile cache: precompiled components on disk, keyed by the sha256 of the `.wasm` and
//! the engine's compatibility hash, so a restart (or a second instance of the same plugin)
//! never compiles twice. Only files this cache wrote are ever loaded back, and those of a
//! shared cache that only a trusted process (serve) writes and this one may only read.

use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::component::Component;

/// Where precompiled components live.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    shared: Option<PathBuf>,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled (and written to the cache when there is one).
    Miss,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf, shared: Option<PathBuf>) -> Self {
        Self { dir, shared }
    }

    /// Load the precompiled form of `sha256`, or compile `wasm` and store it. Blocking: call
    /// it off the async runtime.
    pub(crate) fn load_or_compile(
        cache: Option<&Self>,
        engine: &wasmtime::Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(cache) = cache else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Miss));
        };
        let path = cache.path(engine, sha256);
        let shared = cache.shared.as_ref().zip(path.file_name()).map(|(dir, name)| dir.join(name));
        for candidate in std::iter::once(&path).chain(shared.as_ref()) {
            if !candidate.exists() {
                continue;
            }
            // SAFETY: `deserialize_file` trusts its input to be a wasmtime artifact. The file
            // is named by content hash inside the cache directory, and only `store` below
            // writes there (atomically), in this process or in serve for the shared
            // directory (mounted read-only where instances run), so it is an artifact such an
            // engine produced. A stale or damaged file fails wasmtime's own header check and
            // is recompiled.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, candidate) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %candidate.display(), "discarding unusable cached component: {e:#}"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = cache.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot write the compile cache: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn path(&self, engine: &wasmtime::Engine, sha256: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        // A name no other writer (thread or process) uses, so the rename publishes a whole file.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}
