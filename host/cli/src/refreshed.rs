//! Where a host in a container keeps the secrets its plugin refreshes (`host.store-secret`):
//! sealed in the instance's cache folder (`IOT2MQTT_REFRESHED_SECRETS`), so that they outlive
//! the container's process until `serve` takes them into its store (see
//! [`iot2mqtt_contract::refreshed`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use iot2mqtt_contract::refreshed::{Entries, RefreshKey, Refreshed, apply};

/// The sealed file of one instance, and what it holds.
pub(crate) struct SealedStore {
    path: PathBuf,
    key: RefreshKey,
    instance: String,
    /// The secrets as the secrets file gave them: what each entry replaced.
    started: BTreeMap<String, String>,
    entries: Mutex<Entries>,
}

impl SealedStore {
    /// Open `path` for `instance`, whose secrets file gave `secrets`; those are updated with the
    /// entries still based on them (the others are dropped, as the person changed those since).
    pub(crate) fn open(path: PathBuf, key: RefreshKey, instance: &str, secrets: &mut BTreeMap<String, String>) -> Self {
        let started = secrets.clone();
        let mut entries = match std::fs::read_to_string(&path) {
            Ok(text) => key.unseal(instance, &text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "{e}: starting from the secrets file");
                Entries::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entries::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the refreshed secrets: {e}");
                Entries::new()
            }
        };
        let taken = apply(secrets, &entries);
        entries.retain(|key, _| taken.contains(key));
        if !taken.is_empty() {
            tracing::info!(secrets = ?taken, "using secrets the plugin refreshed before this start");
        }
        Self { path, key, instance: instance.to_string(), started, entries: Mutex::new(entries) }
    }

    /// Write `entries` so that a crash leaves the old file or the new one, readable by this
    /// process's user alone.
    fn write(&self, entries: &Entries) -> std::io::Result<()> {
        iot2mqtt_contract::atomic::write(&self.path, self.key.seal(&self.instance, entries).as_bytes(), 0o600)
    }
}

impl iot2mqtt_runtime::SecretStore for SealedStore {
    fn replace(&self, key: &str, value: &str) -> Result<(), String> {
        let Some(was) = self.started.get(key) else {
            return Err(format!("\"{key}\" is not one of this instance's secrets"));
        };
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = entries.clone();
        next.insert(key.to_string(), Refreshed { value: value.to_string(), was: was.clone() });
        self.write(&next).map_err(|e| format!("cannot keep the refreshed secret: {e}"))?;
        *entries = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot2mqtt_runtime::SecretStore;

    #[test]
    fn a_refresh_is_used_at_the_next_start_until_the_secrets_file_changes() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-refreshed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("refreshed-secrets");
        let key = || RefreshKey::from_bytes(&[3; 32]);
        let given = BTreeMap::from([("token".to_string(), "t1".to_string())]);

        let mut secrets = given.clone();
        let store = SealedStore::open(path.clone(), key(), "lamp", &mut secrets);
        assert_eq!(secrets, given);
        store.replace("token", "t2-refreshed-long-value").unwrap();
        store.replace("token", "t3-refreshed-long-value").unwrap();
        let err = store.replace("host", "x").unwrap_err();
        assert!(err.contains("\"host\" is not one of this instance's secrets"), "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("refreshed-long-value"), "sealed on disk");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        // The next start, from the same secrets file: the last refresh, still based on t1.
        let mut secrets = given.clone();
        let again = SealedStore::open(path.clone(), key(), "lamp", &mut secrets);
        assert_eq!(secrets["token"], "t3-refreshed-long-value");
        again.replace("token", "t4").unwrap();
        let entries = key().unseal("lamp", &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(entries["token"], Refreshed { value: "t4".into(), was: "t1".into() });

        // A secrets file the person changed since wins, and so does one the file cannot open for.
        let mut changed = BTreeMap::from([("token".to_string(), "t9".to_string())]);
        SealedStore::open(path.clone(), key(), "lamp", &mut changed);
        assert_eq!(changed["token"], "t9");
        let mut other = given.clone();
        SealedStore::open(path, RefreshKey::from_bytes(&[4; 32]), "lamp", &mut other);
        assert_eq!(other, given);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
