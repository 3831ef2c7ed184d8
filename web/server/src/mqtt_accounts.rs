//! The embedded broker's accounts, as `serve` manages them:
//!
//! - `serve` itself: a new random password at every start, every right, its own client id.
//! - each running instance: user `instance-{id}`, a password derived from a key kept in the
//!   secrets folder (`secrets/.mqtt.key`, 0600) so it is the same across restarts and never
//!   stored; it may publish under its own topics and subscribe to its command, get and
//!   meta-request topics, with its own client id only; and publish and read back its Home
//!   Assistant discovery configs, and read Home Assistant's status.
//! - people's accounts (Home Assistant, `mosquitto_sub`): observer (subscribe only) or full
//!   access, created with a generated password shown once; kept as SHA-256 digests in
//!   `mqtt-accounts.json`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use iot2mqtt_broker::{Access, Account, Accounts, digest};
use iot2mqtt_contract::settings::Secret;
use iot2mqtt_contract::topics::Topics;
use iot2mqtt_contract::{InstanceId, MqttSettings};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::store::atomic::write;

/// The user name `serve` logs in with.
pub const SERVE_USER: &str = "iot2mqtt-serve";
/// The prefix of every instance's user name.
pub const INSTANCE_USER_PREFIX: &str = "instance-";

/// What a person's account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonAccess {
    /// Subscribe to everything, publish nothing.
    Observer,
    /// Publish and subscribe anywhere.
    Full,
}

impl PersonAccess {
    fn access(self) -> Access {
        match self {
            Self::Observer => Access::observer(),
            Self::Full => Access::All,
        }
    }
}

/// A person's account as shown: never its password.
#[derive(Debug, Clone, Serialize)]
pub struct PersonAccount {
    /// The user name.
    pub name: String,
    /// What it may do.
    pub access: PersonAccess,
}

/// Why a person's account was not changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name is not usable.
    #[error("{0}")]
    InvalidName(String),
    /// An account of that name exists.
    #[error("an account named \"{0}\" exists")]
    Exists(String),
    /// No account of that name.
    #[error("there is no account named \"{0}\"")]
    NotFound(String),
    /// The file could not be written.
    #[error("cannot save the MQTT accounts: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPerson {
    name: String,
    access: PersonAccess,
    /// SHA-256 of the password, hex.
    sha256: String,
}

/// The accounts `serve` keeps in the embedded broker.
pub struct BrokerAccounts {
    accounts: Accounts,
    key: [u8; 32],
    file: PathBuf,
    people: Mutex<Vec<StoredPerson>>,
}

impl std::fmt::Debug for BrokerAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAccounts").field("file", &self.file).finish_non_exhaustive()
    }
}

impl BrokerAccounts {
    /// Load the key (created on first use) and people's accounts, and enter them in `accounts`.
    pub fn open(accounts: Accounts, secrets_dir: &Path, data_root: &Path) -> anyhow::Result<Self> {
        let key_path = secrets_dir.join(".mqtt.key");
        let key = match std::fs::read_to_string(&key_path) {
            Ok(text) => STANDARD
                .decode(text.trim())
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| anyhow::anyhow!("the MQTT key {} is damaged", key_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                std::fs::create_dir_all(secrets_dir)?;
                write(&key_path, STANDARD.encode(key).as_bytes(), 0o600)?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        let file = data_root.join("mqtt-accounts.json");
        let people: Vec<StoredPerson> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a valid accounts file: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for person in &people {
            let digest = hex::decode(&person.sha256)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| anyhow::anyhow!("{}: the account \"{}\" is damaged", file.display(), person.name))?;
            accounts.set(&person.name, Account::from_digest(digest, person.access.access(), None));
        }
        Ok(Self { accounts, key, file, people: Mutex::new(people) })
    }

    /// `serve`'s own login for this run, with every right and `client_id` reserved for it.
    pub fn serve_login(&self, client_id: &str) -> (String, Secret) {
        let password = random_password();
        self.accounts.set(SERVE_USER, Account::new(&password, Access::All, Some(client_id.to_string())));
        (SERVE_USER.to_string(), Secret::new(password))
    }

    /// Enter an instance's account for `settings` (its topics depend on the base topic) and
    /// return its login.
    pub fn instance_login(&self, settings: &MqttSettings, id: &InstanceId) -> (String, Secret) {
        let user = format!("{INSTANCE_USER_PREFIX}{id}");
        let password = self.instance_password(id);
        let topics = Topics::new(&settings.base_topic, id);
        let mut publish = vec![topics.all()];
        let mut subscribe = topics.subscriptions().to_vec();
        // Home Assistant discovery: its own configs (published, and read back to clear what is
        // stale) and Home Assistant's status.
        if let Some([configs, ha_status]) = iot2mqtt_runtime::discovery_filters(settings, id) {
            publish.push(configs.clone());
            subscribe.extend([configs, ha_status]);
        }
        let access = Access::Limited { publish, subscribe };
        self.accounts.set(&user, Account::new(&password, access, Some(settings.client_id(id.as_str()))));
        (user, Secret::new(password))
    }

    /// Remove an instance's account (it was deleted).
    pub fn forget_instance(&self, id: &InstanceId) {
        self.accounts.remove(&format!("{INSTANCE_USER_PREFIX}{id}"));
    }

    fn instance_password(&self, id: &InstanceId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(b"instance:");
        mac.update(id.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// People's accounts.
    pub fn people(&self) -> Vec<PersonAccount> {
        let mut people: Vec<PersonAccount> =
            lock(&self.people).iter().map(|p| PersonAccount { name: p.name.clone(), access: p.access }).collect();
        people.sort_by(|a, b| a.name.cmp(&b.name));
        people
    }

    /// Create a person's account; the password is returned this once.
    pub fn add_person(&self, name: &str, access: PersonAccess) -> Result<(PersonAccount, Secret), AccountError> {
        check_name(name)?;
        let mut people = lock(&self.people);
        if people.iter().any(|p| p.name == name) || self.accounts.contains(name) {
            return Err(AccountError::Exists(name.to_string()));
        }
        let password = random_password();
        let stored = StoredPerson { name: name.to_string(), access, sha256: hex::encode(digest(&password)) };
        let mut next = people.clone();
        next.push(stored);
        self.save(&next)?;
        *people = next;
        self.accounts.set(name, Account::new(&password, access.access(), None));
        tracing::info!(account = name, ?access, "MQTT account created");
        Ok((PersonAccount { name: name.to_string(), access }, Secret::new(password)))
    }

    /// Delete a person's account. A client logged in with it stays connected until it leaves.
    pub fn remove_person(&self, name: &str) -> Result<(), AccountError> {
        let mut people = lock(&self.people);
        let next: Vec<StoredPerson> = people.iter().filter(|p| p.name != name).cloned().collect();
        if next.len() == people.len() {
            return Err(AccountError::NotFound(name.to_string()));
        }
        self.save(&next)?;
        *people = next;
        self.accounts.remove(name);
        tracing::info!(account = name, "MQTT account deleted");
        Ok(())
    }

    fn save(&self, people: &[StoredPerson]) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(people).map_err(std::io::Error::other)?;
        write(&self.file, &bytes, 0o600)
    }
}

fn check_name(name: &str) -> Result<(), AccountError> {
    let invalid = |why: &str| Err(AccountError::InvalidName(format!("the name {why}")));
    if name.is_empty() || name.len() > 64 {
        return invalid("must be 1 to 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return invalid("may hold only letters, digits, '-', '_' and '.'");
    }
    if name == SERVE_USER || name.starts_with(INSTANCE_USER_PREFIX) {
        return invalid(&format!("{SERVE_USER} and names starting with {INSTANCE_USER_PREFIX} are reserved"));
    }
    Ok(())
}

fn random_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_survive_a_reopen_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let accounts = Accounts::default();
        let broker = BrokerAccounts::open(accounts.clone(), &dir.path().join("secrets"), dir.path()).unwrap();
        let (_, password) = broker.add_person("ha", PersonAccess::Observer).unwrap();
        assert!(matches!(broker.add_person("ha", PersonAccess::Full), Err(AccountError::Exists(_))));
        assert!(matches!(broker.add_person("instance-x", PersonAccess::Full), Err(AccountError::InvalidName(_))));
        assert!(matches!(broker.add_person("a b", PersonAccess::Full), Err(AccountError::InvalidName(_))));

        let again = Accounts::default();
        let reopened = BrokerAccounts::open(again.clone(), &dir.path().join("secrets"), dir.path()).unwrap();
        assert_eq!(
            again.login("ha", password.expose().as_bytes(), "c"),
            iot2mqtt_broker::Login::Accepted { superuser: false }
        );
        let id = InstanceId::new("lamp").unwrap();
        let settings = MqttSettings::default();
        assert_eq!(
            reopened.instance_login(&settings, &id).1.expose(),
            broker.instance_login(&settings, &id).1.expose()
        );
        reopened.remove_person("ha").unwrap();
        assert!(!again.contains("ha"));
        assert!(matches!(reopened.remove_person("ha"), Err(AccountError::NotFound(_))));
    }
}
