//! Who may connect, with which client id, and what each account may publish and subscribe to.
//! Pure rules over a shared table: the broker's hooks ask, `serve` keeps the table current.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

/// What an account may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Publish and subscribe anywhere (`serve` itself, a person's full-access account).
    All,
    /// Publish to topics matching `publish`, subscribe to filters within `subscribe`.
    Limited {
        /// Filters a published topic must match.
        publish: Vec<String>,
        /// Filters a subscription must lie within (`a/+/c` allows `a/b/c` and `a/+/c`).
        subscribe: Vec<String>,
    },
}

impl Access {
    /// Subscribe to everything, publish nothing.
    pub fn observer() -> Self {
        Self::Limited { publish: Vec::new(), subscribe: vec!["#".into()] }
    }
}

/// One account.
#[derive(Debug, Clone)]
pub struct Account {
    /// What it may do.
    pub access: Access,
    /// The only client id it may use; `None` for any id no other account owns.
    pub client_id: Option<String>,
    digest: [u8; 32],
}

impl Account {
    /// An account that logs in with `password`. Passwords are generated with 128 bits or more
    /// of entropy, so a plain SHA-256 is enough to keep them off the heap in clear.
    pub fn new(password: &str, access: Access, client_id: Option<String>) -> Self {
        Self::from_digest(digest(password), access, client_id)
    }

    /// An account whose password is known only by its [`digest`].
    pub fn from_digest(digest: [u8; 32], access: Access, client_id: Option<String>) -> Self {
        Self { access, client_id, digest }
    }

    fn password_matches(&self, password: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(password).into();
        // Constant time: every byte is compared whatever the first difference.
        given.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The SHA-256 of a password, as accounts keep it.
pub fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// The outcome of a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// Accepted; `superuser` skips the topic checks.
    Accepted {
        /// The account has [`Access::All`].
        superuser: bool,
    },
    /// No such user, or the wrong password.
    BadCredentials,
    /// The credentials are right but the client id belongs to another account.
    ClientIdTaken,
}

/// The accounts of one broker: cheap to clone, shared with whoever manages them.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    inner: Arc<RwLock<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<String, Account>,
    /// Client ids reserved for one account (`serve`'s, each instance's).
    owners: HashMap<String, String>,
}

impl Accounts {
    /// Add or replace an account.
    pub fn set(&self, username: &str, account: Account) {
        let mut table = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = table.by_name.remove(username)
            && let Some(id) = old.client_id
        {
            table.owners.remove(&id);
        }
        if let Some(id) = &account.client_id {
            table.owners.insert(id.clone(), username.to_string());
        }
        table.by_name.insert(username.to_string(), account);
    }

    /// Remove an account; its connected client keeps its connection until it ends.
    pub fn remove(&self, username: &str) {
        let mut table = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(Account { client_id: Some(id), .. }) = table.by_name.remove(username) {
            table.owners.remove(&id);
        }
    }

    /// Whether `username` is an account.
    pub fn contains(&self, username: &str) -> bool {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).by_name.contains_key(username)
    }

    /// Check a login.
    pub fn login(&self, username: &str, password: &[u8], client_id: &str) -> Login {
        let table = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let Some(account) = table.by_name.get(username).filter(|a| a.password_matches(password)) else {
            return Login::BadCredentials;
        };
        let allowed = match &account.client_id {
            Some(own) => own == client_id,
            None => table.owners.get(client_id).is_none_or(|owner| owner == username),
        };
        if !allowed {
            return Login::ClientIdTaken;
        }
        Login::Accepted { superuser: account.access == Access::All }
    }

    /// Whether `username` may publish to `topic`.
    pub fn may_publish(&self, username: &str, topic: &str) -> bool {
        self.with_access(username, |access| match access {
            Access::All => true,
            Access::Limited { publish, .. } => publish.iter().any(|f| matches(f, topic)),
        })
    }

    /// Whether `username` may subscribe to `filter`.
    pub fn may_subscribe(&self, username: &str, filter: &str) -> bool {
        self.with_access(username, |access| match access {
            Access::All => true,
            Access::Limited { subscribe, .. } => subscribe.iter().any(|allowed| within(filter, allowed)),
        })
    }

    fn with_access(&self, username: &str, check: impl FnOnce(&Access) -> bool) -> bool {
        let table = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        table.by_name.get(username).is_some_and(|account| check(&account.access))
    }
}

/// Whether `topic` matches `filter` (MQTT 3.1.1, section 4.7; `$` topics only match filters
/// that name their first level).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut levels = topic.split('/');
    for want in filter.split('/') {
        match want {
            "#" => return true,
            "+" => {
                if levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

/// Whether every topic `filter` matches is matched by `allowed`.
pub fn within(filter: &str, allowed: &str) -> bool {
    if filter.starts_with('$') && !allowed.starts_with('$') {
        return false;
    }
    let mut levels = filter.split('/');
    for want in allowed.split('/') {
        let Some(level) = levels.next() else {
            return false;
        };
        match want {
            "#" => return true,
            "+" if level != "#" => {}
            exact if exact == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Access {
        Access::Limited {
            publish: vec!["h/v1/instances/a/#".into()],
            subscribe: vec!["h/v1/instances/a/devices/+/cmd".into(), "h/v1/instances/a/meta/request/+".into()],
        }
    }

    #[test]
    fn topic_matching_follows_the_standard() {
        let cases = [
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("+/+", "/x", true),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} ~ {topic}");
        }
    }

    #[test]
    fn a_filter_is_within_another_only_when_it_cannot_match_more() {
        let cases = [
            ("a/b/cmd", "a/+/cmd", true),
            ("a/+/cmd", "a/+/cmd", true),
            ("a/#", "a/+/cmd", false),
            ("#", "a/#", false),
            ("a/b/c/d", "a/#", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("$SYS/x", "#", false),
        ];
        for (filter, allowed, expected) in cases {
            assert_eq!(within(filter, allowed), expected, "{filter} within {allowed}");
        }
    }

    #[test]
    fn logins_check_the_password_and_the_client_id() {
        let accounts = Accounts::default();
        accounts.set("serve", Account::new("pw-serve", Access::All, Some("iot2mqtt_web".into())));
        accounts.set("inst-a", Account::new("pw-a", instance(), Some("iot2mqtt_a".into())));
        accounts.set("me", Account::new("pw-me", Access::observer(), None));

        assert_eq!(accounts.login("serve", b"pw-serve", "iot2mqtt_web"), Login::Accepted { superuser: true });
        assert_eq!(accounts.login("serve", b"pw-a", "iot2mqtt_web"), Login::BadCredentials);
        assert_eq!(accounts.login("nobody", b"", "x"), Login::BadCredentials);
        assert_eq!(accounts.login("inst-a", b"pw-a", "iot2mqtt_web"), Login::ClientIdTaken);
        assert_eq!(accounts.login("me", b"pw-me", "iot2mqtt_a"), Login::ClientIdTaken, "an instance's id is its own");
        assert_eq!(accounts.login("me", b"pw-me", "my-laptop"), Login::Accepted { superuser: false });

        accounts.remove("inst-a");
        assert_eq!(accounts.login("inst-a", b"pw-a", "iot2mqtt_a"), Login::BadCredentials);
        assert_eq!(accounts.login("me", b"pw-me", "iot2mqtt_a"), Login::Accepted { superuser: false }, "freed");
    }

    #[test]
    fn an_instance_publishes_under_its_own_root_and_hears_only_its_commands() {
        let accounts = Accounts::default();
        accounts.set("inst-a", Account::new("pw", instance(), Some("c".into())));
        assert!(accounts.may_publish("inst-a", "h/v1/instances/a/status"));
        assert!(!accounts.may_publish("inst-a", "h/v1/instances/b/status"));
        assert!(!accounts.may_publish("inst-a", "h/v1/instances/ab/status"));
        assert!(accounts.may_subscribe("inst-a", "h/v1/instances/a/devices/+/cmd"));
        assert!(accounts.may_subscribe("inst-a", "h/v1/instances/a/devices/lamp/cmd"));
        assert!(!accounts.may_subscribe("inst-a", "h/v1/instances/a/#"));
        assert!(!accounts.may_subscribe("inst-a", "#"));
        assert!(!accounts.may_publish("nobody", "h/v1/instances/a/status"));

        accounts.set("obs", Account::new("pw", Access::observer(), None));
        assert!(accounts.may_subscribe("obs", "#"));
        assert!(!accounts.may_publish("obs", "h/v1/instances/a/devices/x/cmd"));
    }
}
