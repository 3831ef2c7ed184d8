//! Secrets at rest: every instance's secrets are one JSON object encrypted with
//! XChaCha20-Poly1305 under a master key (`secrets/.master.key`, 0600, generated at first
//! start), bound to the instance id as associated data. Instance files hold only references
//! (`"secret://password"`). Values leave this module only to start an instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use iot2mqtt_contract::InstanceId;
use iot2mqtt_contract::refreshed::{Entries, apply};
use sha2::Sha256;

use crate::store::atomic::write;

/// The prefix of a reference to a secret in an instance file.
pub const REFERENCE: &str = "secret://";
/// What the orchestrator's own secrets are bound to (instance ids cannot start with `_`).
const SETTINGS_SCOPE: &str = "_settings";
/// What the API shows in place of a secret's value.
pub const MASK: &str = "********";

/// A problem with the secrets store. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A file could not be read or written.
    #[error("secrets store: {0}")]
    Io(#[from] std::io::Error),
    /// The master key is not 32 bytes of base64.
    #[error("the master key {0} is damaged")]
    BadKey(PathBuf),
    /// A secrets file does not decrypt with this master key.
    #[error("the secrets of \"{0}\" cannot be decrypted with this master key")]
    Undecryptable(String),
}

/// Encrypts, stores, loads and removes instance secrets.
pub struct SecretsManager {
    cipher: XChaCha20Poly1305,
    /// The master key as a MAC key, from which each instance's refresh key is derived.
    derive: Hmac<Sha256>,
    dir: PathBuf,
    /// Held for each change that reads what is stored first ([`SecretsManager::update`]), so
    /// that two of them (an edit through the API, a token a plugin refreshed) do not each
    /// write over the other.
    changing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManager").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SecretsManager {
    /// Open the store in `secrets/`, creating the master key on first use.
    pub fn open(secrets_dir: &Path) -> Result<Self, SecretsError> {
        let key_path = secrets_dir.join(".master.key");
        let key = match std::fs::read_to_string(&key_path) {
            Ok(text) => STANDARD
                .decode(text.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| SecretsError::BadKey(key_path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
                write(&key_path, STANDARD.encode(&key).as_bytes(), 0o600)?;
                tracing::info!(path = %key_path.display(), "generated the master key for secrets");
                key
            }
            Err(e) => return Err(e.into()),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretsError::BadKey(key_path.clone()))?;
        let derive = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| SecretsError::BadKey(key_path))?;
        let dir = secrets_dir.join("instances");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { cipher, derive, dir, changing: std::sync::Mutex::new(()) })
    }

    /// Store an instance's secrets (replacing what it had); none removes the file. Blocking.
    pub fn store(&self, instance: &InstanceId, secrets: &BTreeMap<String, String>) -> Result<(), SecretsError> {
        if secrets.is_empty() {
            return self.remove(instance);
        }
        self.seal(&self.path(instance), instance.as_str(), secrets)
    }

    /// Change an instance's secrets from what is stored now, as one step against other
    /// updates; nothing is stored when `change` refuses (the inner error). Blocking.
    pub fn update<E>(
        &self,
        instance: &InstanceId,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), E>,
    ) -> Result<Result<(), E>, SecretsError> {
        let _changing = self.changing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut secrets = self.load(instance)?;
        if let Err(refused) = change(&mut secrets) {
            return Ok(Err(refused));
        }
        self.store(instance, &secrets)?;
        Ok(Ok(()))
    }

    /// An instance's secrets (empty when it has none). Blocking.
    pub fn load(&self, instance: &InstanceId) -> Result<BTreeMap<String, String>, SecretsError> {
        self.unseal(&self.path(instance), instance.as_str())
    }

    /// Store the orchestrator's own secrets (the broker password of `.env`'s settings), in
    /// `secrets/settings.secret`. Blocking.
    pub fn store_settings(&self, secrets: &BTreeMap<String, String>) -> Result<(), SecretsError> {
        self.seal(&self.settings_path(), SETTINGS_SCOPE, secrets)
    }

    /// The orchestrator's own secrets (empty when there are none). Blocking.
    pub fn load_settings(&self) -> Result<BTreeMap<String, String>, SecretsError> {
        self.unseal(&self.settings_path(), SETTINGS_SCOPE)
    }

    /// Encrypt `secrets` into `path`, bound to `scope`.
    fn seal(&self, path: &Path, scope: &str, secrets: &BTreeMap<String, String>) -> Result<(), SecretsError> {
        let plain = serde_json::to_vec(secrets).map_err(std::io::Error::other)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: &plain, aad: scope.as_bytes() })
            .map_err(|_| SecretsError::Undecryptable(scope.to_string()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        write(path, format!("v1:{}\n", STANDARD.encode(blob)).as_bytes(), 0o600)?;
        Ok(())
    }

    /// Decrypt what `path` holds for `scope`; a missing file is no secrets.
    fn unseal(&self, path: &Path, scope: &str) -> Result<BTreeMap<String, String>, SecretsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let undecryptable = || SecretsError::Undecryptable(scope.to_string());
        let blob = text.trim().strip_prefix("v1:").and_then(|b| STANDARD.decode(b).ok()).ok_or_else(undecryptable)?;
        if blob.len() < 24 {
            return Err(undecryptable());
        }
        let (nonce, sealed) = blob.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: scope.as_bytes() })
            .map_err(|_| undecryptable())?;
        serde_json::from_slice(&plain).map_err(|_| undecryptable())
    }

    /// The key of the file in which `instance`'s container keeps the secrets its plugin
    /// refreshes: derived from the master key (HMAC-SHA-256 of the instance id), so it needs
    /// no storage, differs for every instance and tells nothing of the master key.
    pub fn refresh_key(&self, instance: &InstanceId) -> [u8; 32] {
        let mut mac = self.derive.clone();
        mac.update(b"iot2mqtt refreshed secrets v1\0");
        mac.update(instance.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Forget an instance's secrets. Blocking.
    pub fn remove(&self, instance: &InstanceId) -> Result<(), SecretsError> {
        match std::fs::remove_file(self.path(instance)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn path(&self, instance: &InstanceId) -> PathBuf {
        self.dir.join(format!("{instance}.secret"))
    }

    fn settings_path(&self) -> PathBuf {
        self.dir.with_file_name("settings.secret")
    }
}

/// One instance's secrets in the store, as its plugin refreshes them (`host.store-secret`):
/// only a secret the instance has may be replaced.
pub struct InstanceSecrets {
    manager: std::sync::Arc<SecretsManager>,
    id: InstanceId,
}

impl std::fmt::Debug for InstanceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSecrets").field("instance", &self.id).finish_non_exhaustive()
    }
}

impl InstanceSecrets {
    pub fn new(manager: std::sync::Arc<SecretsManager>, id: InstanceId) -> Self {
        Self { manager, id }
    }

    /// The key of the file of secrets its container's plugin refreshed.
    pub fn refresh_key(&self) -> [u8; 32] {
        self.manager.refresh_key(&self.id)
    }

    /// Take what its plugin refreshed in a container: each entry replaces its secret while the
    /// store still holds the value the entry replaced (a secret changed since keeps its new
    /// value); the keys taken. Blocking.
    pub fn take_refreshed(&self, entries: &Entries) -> Result<Vec<String>, SecretsError> {
        let mut taken = Vec::new();
        self.manager
            .update(&self.id, |secrets| {
                taken = apply(secrets, entries);
                if taken.is_empty() { Err(()) } else { Ok(()) }
            })
            .map(|_| taken)
    }
}

impl iot2mqtt_runtime::SecretStore for InstanceSecrets {
    fn replace(&self, key: &str, value: &str) -> Result<(), String> {
        let replaced = self.manager.update(&self.id, |secrets| match secrets.get_mut(key) {
            Some(old) => {
                *old = value.to_string();
                Ok(())
            }
            None => Err(format!("\"{key}\" is not one of this instance's secrets")),
        });
        replaced.map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-secrets-{}", std::process::id()));
        let manager = SecretsManager::open(&dir).unwrap();
        let a = InstanceId::new("a").unwrap();
        let mut secrets = BTreeMap::new();
        secrets.insert("password".to_string(), "hunter2".to_string());
        manager.store(&a, &secrets).unwrap();
        let on_disk = std::fs::read_to_string(dir.join("instances/a.secret")).unwrap();
        assert!(!on_disk.contains("hunter2"));
        assert_eq!(manager.load(&a).unwrap(), secrets);

        // A file moved to another instance does not decrypt: the id is bound in.
        std::fs::copy(dir.join("instances/a.secret"), dir.join("instances/b.secret")).unwrap();
        let err = manager.load(&InstanceId::new("b").unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot be decrypted"));

        // The key survives a reopen; its file is private.
        let again = SecretsManager::open(&dir).unwrap();
        assert_eq!(again.load(&a).unwrap(), secrets);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join(".master.key")).unwrap().permissions().mode() & 0o777, 0o600);
        manager.remove(&a).unwrap();
        assert!(manager.load(&a).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_containers_refresh_is_taken_only_over_the_value_it_replaced() {
        use iot2mqtt_contract::refreshed::Refreshed;
        let dir = tempfile::tempdir().unwrap();
        let manager = std::sync::Arc::new(SecretsManager::open(dir.path()).unwrap());
        let (a, b) = (InstanceId::new("a").unwrap(), InstanceId::new("b").unwrap());
        // One key per instance, the same after a reopen.
        assert_ne!(manager.refresh_key(&a), manager.refresh_key(&b));
        assert_eq!(SecretsManager::open(dir.path()).unwrap().refresh_key(&a), manager.refresh_key(&a));

        let stored =
            BTreeMap::from([("access".to_string(), "a1".to_string()), ("refresh".to_string(), "r5".to_string())]);
        manager.store(&a, &stored).unwrap();
        let secrets = InstanceSecrets::new(std::sync::Arc::clone(&manager), a.clone());
        let entry = |value: &str, was: &str| Refreshed { value: value.into(), was: was.into() };
        // The refresh token was typed again since the container started with r1: it stays.
        let entries =
            Entries::from([("access".to_string(), entry("a2", "a1")), ("refresh".to_string(), entry("r2", "r1"))]);
        assert_eq!(secrets.take_refreshed(&entries).unwrap(), ["access"]);
        let now = manager.load(&a).unwrap();
        assert_eq!((now["access"].as_str(), now["refresh"].as_str()), ("a2", "r5"));
        assert!(secrets.take_refreshed(&Entries::new()).unwrap().is_empty());
    }
}
