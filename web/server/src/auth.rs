//! Who may use the API. One access key per installation, stored as an argon2 hash in
//! `secrets/auth.json` with a random session secret. The key is set by `IOT2MQTT_ACCESS_KEY`
//! on first start, or through a one-time setup token printed to the console — never by
//! whoever comes first. A login returns a session token (HMAC-signed, expiring, naming the
//! session epoch) used as a Bearer token or an HttpOnly cookie. Logout revokes one session,
//! "log out everywhere" and a change of key start a new epoch; both are stored in
//! `auth.json`, so they hold across a restart.
//!
//! Checking a key costs a 19 MiB argon2 block and tens of milliseconds, so a flood of logins
//! must not turn into a flood of hashes. An attempt is counted before anything is hashed
//! ([`MAX_ATTEMPTS`] per client address per [`ATTEMPT_WINDOW`]), a client has at most one
//! check running (a second concurrent attempt is refused at once), and at most
//! [`HASH_SLOTS`] checks run at a time in the whole process; an attempt that waits longer than
//! [`SLOT_WAIT`] for one is refused as busy. Memory stays flat whatever arrives.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::store::atomic::write;
use crate::sync::lock;

/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "iot2mqtt_session";
/// The shortest access key accepted.
pub const MIN_KEY_LENGTH: usize = 8;
/// Login attempts allowed per client address per [`ATTEMPT_WINDOW`] (a success resets it).
pub const MAX_ATTEMPTS: u32 = 5;
/// The window [`MAX_ATTEMPTS`] are counted in.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// Key checks (argon2) running at once in the process.
pub const HASH_SLOTS: usize = 2;
/// How long an attempt may wait for a free check before it is refused as busy.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// Client addresses remembered; beyond, those whose window has passed are forgotten.
const TRACKED_CLIENTS: usize = 10_000;

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong key or token.
    #[error("invalid access key")]
    Invalid,
    /// Too many attempts from this address, or one is still being checked.
    #[error("too many login attempts; retry in {0} s")]
    RateLimited(u64),
    /// Too many logins from everywhere are being checked.
    #[error("too many logins are being checked; retry in a few seconds")]
    Busy,
    /// No access key was set yet.
    #[error("no access key is set yet: finish the setup with the link printed at start")]
    NotConfigured,
    /// The setup token is wrong or was used.
    #[error("invalid or used setup token")]
    BadSetupToken,
    /// The key is too short.
    #[error("the access key must have at least {MIN_KEY_LENGTH} characters")]
    WeakKey,
    /// The auth file could not be written.
    #[error("cannot store the access key: {0}")]
    Store(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthFile {
    access_key_hash: Option<String>,
    session_secret: String,
    /// Sessions of earlier epochs are void.
    #[serde(default)]
    epoch: u64,
    /// Logged-out sessions (their random part) and when they would have expired.
    #[serde(default)]
    revoked: BTreeMap<String, u64>,
}

/// What `auth.json` holds besides the secret, as it is now.
#[derive(Debug, Default)]
struct Stored {
    hash: Option<String>,
    epoch: u64,
    revoked: BTreeMap<String, u64>,
}

/// The attempts of one client address in the current window.
struct Attempts {
    count: u32,
    since: Instant,
    /// A check of this client's is running.
    busy: bool,
}

/// Admission to key checks: counted per client, one at a time per client, [`HASH_SLOTS`]
/// overall.
struct Gate {
    clients: Mutex<HashMap<IpAddr, Attempts>>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// An admitted attempt: the client is marked busy until it is dropped.
struct Ticket<'a> {
    gate: &'a Gate,
    client: IpAddr,
}

impl Gate {
    fn new() -> Self {
        Self { clients: Mutex::default(), slots: Arc::new(tokio::sync::Semaphore::new(HASH_SLOTS)) }
    }

    /// Count an attempt of `client`, or say how long it must wait.
    fn admit(&self, client: IpAddr) -> Result<Ticket<'_>, AuthError> {
        let mut clients = lock(&self.clients);
        if clients.len() >= TRACKED_CLIENTS {
            clients.retain(|_, a| a.busy || a.since.elapsed() < ATTEMPT_WINDOW);
        }
        let entry = clients.entry(client).or_insert(Attempts { count: 0, since: Instant::now(), busy: false });
        let elapsed = entry.since.elapsed();
        if elapsed >= ATTEMPT_WINDOW {
            *entry = Attempts { count: 0, since: Instant::now(), busy: entry.busy };
        }
        if entry.busy {
            return Err(AuthError::RateLimited(1));
        }
        if entry.count >= MAX_ATTEMPTS {
            return Err(AuthError::RateLimited((ATTEMPT_WINDOW - elapsed).as_secs().max(1)));
        }
        entry.count += 1;
        entry.busy = true;
        Ok(Ticket { gate: self, client })
    }
}

impl Ticket<'_> {
    /// The key was right: the client starts afresh.
    fn succeeded(self) {
        lock(&self.gate.clients).remove(&self.client);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(entry) = lock(&self.gate.clients).get_mut(&self.client) {
            entry.busy = false;
        }
    }
}

/// The authentication state of an installation.
pub struct Auth {
    path: PathBuf,
    stored: Mutex<Stored>,
    secret: Vec<u8>,
    setup_token: Mutex<Option<String>>,
    gate: Gate,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("configured", &self.configured()).finish_non_exhaustive()
    }
}

/// A new session.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The token.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Auth {
    /// Open the auth state in `secrets/`. With `initial_key` and no key set yet, set it. When
    /// no key is set after that, a one-time setup token is made: the second value.
    pub fn open(secrets_dir: &Path, initial_key: Option<&str>) -> Result<(Self, Option<String>), AuthError> {
        let path = secrets_dir.join("auth.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| AuthError::Store(format!("{}: {e}", path.display())))?
            }
            Err(_) => AuthFile {
                access_key_hash: None,
                session_secret: STANDARD.encode(random_bytes::<32>()),
                epoch: 0,
                revoked: BTreeMap::new(),
            },
        };
        let secret = STANDARD.decode(&file.session_secret).map_err(|e| AuthError::Store(e.to_string()))?;
        let stored = Stored { hash: file.access_key_hash, epoch: file.epoch, revoked: file.revoked };
        let auth = Self { path, stored: Mutex::new(stored), secret, setup_token: Mutex::new(None), gate: Gate::new() };
        if !auth.configured() {
            match initial_key {
                Some(key) => auth.set_key(key)?,
                None => auth.save()?,
            }
        }
        let token = (!auth.configured()).then(|| {
            let token = URL_SAFE_NO_PAD.encode(random_bytes::<24>());
            *lock(&auth.setup_token) = Some(token.clone());
            token
        });
        Ok((auth, token))
    }

    /// Whether an access key is set.
    pub fn configured(&self) -> bool {
        lock(&self.stored).hash.is_some()
    }

    /// Set the access key with the one-time setup token. Slow (argon2): call off the async threads.
    pub fn setup(&self, token: &str, key: &str) -> Result<(), AuthError> {
        {
            let mut expected = lock(&self.setup_token);
            match expected.as_deref() {
                Some(t) if constant_eq(t.as_bytes(), token.as_bytes()) => {}
                _ => return Err(AuthError::BadSetupToken),
            }
            if key.chars().count() < MIN_KEY_LENGTH {
                return Err(AuthError::WeakKey);
            }
            *expected = None;
        }
        self.set_key(key)
    }

    /// Check the key and open a session. The check runs on a blocking thread once the attempt
    /// is admitted (see the module documentation).
    pub async fn login(&self, client: IpAddr, key: &str) -> Result<Session, AuthError> {
        self.check_key(client, key).await?;
        Ok(self.new_session())
    }

    /// Change the access key: `old` is checked like a login (counted, gated), then the new key
    /// is stored and every session ends but the new one returned.
    pub async fn change_key(&self, client: IpAddr, old: &str, new: &str) -> Result<Session, AuthError> {
        if new.chars().count() < MIN_KEY_LENGTH {
            return Err(AuthError::WeakKey);
        }
        self.check_key(client, old).await?;
        let new = new.to_string();
        let hash = tokio::task::spawn_blocking(move || hash_key(&new))
            .await
            .map_err(|e| AuthError::Store(format!("the key could not be hashed: {e}")))??;
        {
            let mut stored = lock(&self.stored);
            stored.hash = Some(hash);
            stored.epoch += 1;
            stored.revoked.clear();
        }
        self.save()?;
        Ok(self.new_session())
    }

    /// End every session (this one too): a new epoch.
    pub fn log_out_everywhere(&self) -> Result<(), AuthError> {
        {
            let mut stored = lock(&self.stored);
            stored.epoch += 1;
            stored.revoked.clear();
        }
        self.save()
    }

    /// Check `key` for `client`: admitted by the gate, hashed on a blocking thread.
    async fn check_key(&self, client: IpAddr, key: &str) -> Result<(), AuthError> {
        let hash = lock(&self.stored).hash.clone().ok_or(AuthError::NotConfigured)?;
        let ticket = self.gate.admit(client)?;
        let slot = tokio::time::timeout(SLOT_WAIT, Arc::clone(&self.gate.slots).acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let key = key.to_string();
        let valid = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(key.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| AuthError::Store(format!("the key check failed: {e}")))?;
        if !valid {
            return Err(AuthError::Invalid);
        }
        ticket.succeeded();
        Ok(())
    }

    fn new_session(&self) -> Session {
        let expires = unix_now() + SESSION_LIFETIME.as_secs();
        let epoch = lock(&self.stored).epoch;
        let payload = format!("v2.{epoch}.{expires}.{}", hex::encode(random_bytes::<16>()));
        let signature = URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes()));
        Session { token: format!("{payload}.{signature}"), expires_in: SESSION_LIFETIME.as_secs() }
    }

    /// Whether `token` is a live session.
    pub fn verify(&self, token: &str) -> bool {
        let Some((payload, signature)) = token.rsplit_once('.') else { return false };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else { return false };
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        if mac.verify_slice(&signature).is_err() {
            return false;
        }
        let mut parts = payload.split('.');
        let (Some("v2"), Some(epoch), Some(expires), Some(nonce)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(epoch), Ok(expires)) = (epoch.parse::<u64>(), expires.parse::<u64>()) else { return false };
        let stored = lock(&self.stored);
        expires > unix_now() && epoch == stored.epoch && !stored.revoked.contains_key(nonce)
    }

    /// The anti-forgery token of a session: what every cookie-authenticated change (a form, a
    /// `fetch`) must carry besides the cookie. Derived from the session with the install's
    /// secret, so a page of another site, which cannot read the cookie, cannot know it.
    pub fn csrf_token(&self, session: &str) -> String {
        let mut data = b"csrf.".to_vec();
        data.extend_from_slice(session.as_bytes());
        URL_SAFE_NO_PAD.encode(self.sign(&data))
    }

    /// Whether `csrf` is the anti-forgery token of `session`.
    pub fn csrf_valid(&self, session: &str, csrf: &str) -> bool {
        constant_eq(self.csrf_token(session).as_bytes(), csrf.as_bytes())
    }

    /// End a session (remembered on disk until it would have expired).
    pub fn logout(&self, token: &str) -> Result<(), AuthError> {
        if !self.verify(token) {
            return Ok(());
        }
        let mut parts = token.split('.').skip(2);
        let (Some(expires), Some(nonce)) = (parts.next().and_then(|e| e.parse().ok()), parts.next()) else {
            return Ok(());
        };
        {
            let mut stored = lock(&self.stored);
            let now = unix_now();
            stored.revoked.retain(|_, until| *until > now);
            stored.revoked.insert(nonce.to_string(), expires);
        }
        self.save()
    }

    fn set_key(&self, key: &str) -> Result<(), AuthError> {
        if key.chars().count() < MIN_KEY_LENGTH {
            return Err(AuthError::WeakKey);
        }
        lock(&self.stored).hash = Some(hash_key(key)?);
        self.save()
    }

    fn save(&self) -> Result<(), AuthError> {
        let file = {
            let stored = lock(&self.stored);
            AuthFile {
                access_key_hash: stored.hash.clone(),
                session_secret: STANDARD.encode(&self.secret),
                epoch: stored.epoch,
                revoked: stored.revoked.clone(),
            }
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| AuthError::Store(e.to_string()))?;
        write(&self.path, &bytes, 0o600).map_err(|e| AuthError::Store(e.to_string()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The argon2 hash of `key`, as stored. Slow: call off the async threads.
fn hash_key(key: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(key.as_bytes(), &salt).map_err(|e| AuthError::Store(e.to_string()))?.to_string())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iot2mqtt-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn key_from_the_environment_and_sessions() {
        let d = dir("env");
        let (auth, token) = Auth::open(&d, Some("correct horse")).unwrap();
        assert!(token.is_none() && auth.configured());
        let stored = std::fs::read_to_string(d.join("auth.json")).unwrap();
        assert!(!stored.contains("correct horse") && stored.contains("$argon2"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(auth.login(ip, "wrong key!").await.unwrap_err(), AuthError::Invalid);
        let session = auth.login(ip, "correct horse").await.unwrap();
        assert!(auth.verify(&session.token));
        assert!(!auth.verify(&session.token.replacen(".", ".9", 2)));
        assert!(!auth.verify("garbage"));
        let other = auth.login(ip, "correct horse").await.unwrap();
        auth.logout(&session.token).unwrap();
        assert!(!auth.verify(&session.token));
        // Sessions and logouts survive a restart (the secret is stored), the key too.
        let (again, _) = Auth::open(&d, None).unwrap();
        assert!(!again.verify(&session.token), "a logout holds across a restart");
        assert!(again.verify(&other.token));
        let third = again.login(ip, "correct horse").await.unwrap();
        assert!(auth.verify(&third.token));
        // Log out everywhere, then change the key: each ends every session, across a restart.
        again.log_out_everywhere().unwrap();
        let (after, _) = Auth::open(&d, None).unwrap();
        assert!(!after.verify(&other.token) && !after.verify(&third.token));
        let fourth = after.login(ip, "correct horse").await.unwrap();
        assert_eq!(after.change_key(ip, "wrong key!", "battery staple").await.unwrap_err(), AuthError::Invalid);
        assert_eq!(after.change_key(ip, "correct horse", "short").await.unwrap_err(), AuthError::WeakKey);
        let fifth = after.change_key(ip, "correct horse", "battery staple").await.unwrap();
        assert!(!after.verify(&fourth.token) && after.verify(&fifth.token));
        assert_eq!(after.login(ip, "correct horse").await.unwrap_err(), AuthError::Invalid);
        assert!(after.login(ip, "battery staple").await.is_ok());
    }

    #[tokio::test]
    async fn setup_token_is_single_use_and_attempts_are_limited() {
        let d = dir("setup");
        let (auth, token) = Auth::open(&d, None).unwrap();
        let token = token.unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(auth.login(ip, "anything1").await.unwrap_err(), AuthError::NotConfigured);
        assert_eq!(auth.setup("wrong", "long enough").unwrap_err(), AuthError::BadSetupToken);
        assert_eq!(auth.setup(&token, "short").unwrap_err(), AuthError::WeakKey);
        auth.setup(&token, "long enough").unwrap();
        assert_eq!(auth.setup(&token, "another key").unwrap_err(), AuthError::BadSetupToken);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(auth.login(other, "long enough").await.is_ok());
        for _ in 0..MAX_ATTEMPTS {
            assert_eq!(auth.login(ip, "nope nope").await.unwrap_err(), AuthError::Invalid);
        }
        assert!(matches!(auth.login(ip, "long enough").await.unwrap_err(), AuthError::RateLimited(_)));
        assert!(auth.login(other, "long enough").await.is_ok(), "other addresses are not affected");
    }

    #[tokio::test]
    async fn an_attempt_is_counted_before_its_check_and_a_client_checks_one_at_a_time() {
        let d = dir("gate");
        let (auth, _) = Auth::open(&d, Some("correct horse")).unwrap();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let first = auth.gate.admit(ip).unwrap();
        assert_eq!(auth.login(ip, "correct horse").await.unwrap_err(), AuthError::RateLimited(1), "one at a time");
        first.succeeded();
        let attempts: Vec<_> = (0..20).map(|_| auth.login(ip, "wrong key!")).collect();
        let results = futures_util::future::join_all(attempts).await;
        let checked = results.iter().filter(|r| matches!(r, Err(AuthError::Invalid))).count();
        assert_eq!(checked, 1, "concurrent attempts of one client: one checked, the rest refused: {results:?}");
        assert_eq!(lock(&auth.gate.clients)[&ip].count, 1);
    }
}
