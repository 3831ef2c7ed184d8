//! Who may use the API. One access key per installation, stored as an argon2 hash in
//! `secrets/auth.json` with a random session secret. The key is set by `IOT2MQTT_ACCESS_KEY`
//! on first start, or through a one-time setup token printed to the console — never by
//! whoever comes first. A login returns a session token (HMAC-signed, expiring) used as a
//! Bearer token or an HttpOnly cookie; logout revokes it. Failed logins are rate-limited per
//! client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
/// Failed logins allowed per client address per [`ATTEMPT_WINDOW`].
const MAX_FAILURES: u32 = 5;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong key or token.
    #[error("invalid access key")]
    Invalid,
    /// Too many failures from this address.
    #[error("too many failed logins; retry in {0} s")]
    RateLimited(u64),
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
}

struct Failures {
    count: u32,
    since: Instant,
}

/// The authentication state of an installation.
pub struct Auth {
    path: PathBuf,
    hash: Mutex<Option<String>>,
    secret: Vec<u8>,
    setup_token: Mutex<Option<String>>,
    revoked: Mutex<HashMap<String, u64>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
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
            Err(_) => AuthFile { access_key_hash: None, session_secret: STANDARD.encode(random_bytes::<32>()) },
        };
        let secret = STANDARD.decode(&file.session_secret).map_err(|e| AuthError::Store(e.to_string()))?;
        let auth = Self {
            path,
            hash: Mutex::new(file.access_key_hash),
            secret,
            setup_token: Mutex::new(None),
            revoked: Mutex::default(),
            failures: Mutex::default(),
        };
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
        lock(&self.hash).is_some()
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

    /// Check the key and open a session. Slow (argon2): call off the async threads.
    pub fn login(&self, client: IpAddr, key: &str) -> Result<Session, AuthError> {
        if let Some(wait) = self.blocked(client) {
            return Err(AuthError::RateLimited(wait));
        }
        let hash = lock(&self.hash).clone().ok_or(AuthError::NotConfigured)?;
        let valid = PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(key.as_bytes(), &parsed).is_ok());
        if !valid {
            let mut failures = lock(&self.failures);
            let entry = failures.entry(client).or_insert(Failures { count: 0, since: Instant::now() });
            if entry.since.elapsed() > ATTEMPT_WINDOW {
                *entry = Failures { count: 0, since: Instant::now() };
            }
            entry.count += 1;
            return Err(AuthError::Invalid);
        }
        lock(&self.failures).remove(&client);
        let expires = unix_now() + SESSION_LIFETIME.as_secs();
        let payload = format!("v1.{expires}.{}", hex::encode(random_bytes::<16>()));
        let signature = URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes()));
        Ok(Session { token: format!("{payload}.{signature}"), expires_in: SESSION_LIFETIME.as_secs() })
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
        let (Some("v1"), Some(expires), Some(_)) = (parts.next(), parts.next(), parts.next()) else { return false };
        let Ok(expires) = expires.parse::<u64>() else { return false };
        expires > unix_now() && !lock(&self.revoked).contains_key(token)
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

    /// End a session.
    pub fn logout(&self, token: &str) {
        let mut revoked = lock(&self.revoked);
        let now = unix_now();
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(token.to_string(), now + SESSION_LIFETIME.as_secs());
    }

    fn blocked(&self, client: IpAddr) -> Option<u64> {
        let failures = lock(&self.failures);
        let entry = failures.get(&client)?;
        let elapsed = entry.since.elapsed();
        (entry.count >= MAX_FAILURES && elapsed < ATTEMPT_WINDOW).then(|| (ATTEMPT_WINDOW - elapsed).as_secs().max(1))
    }

    fn set_key(&self, key: &str) -> Result<(), AuthError> {
        if key.chars().count() < MIN_KEY_LENGTH {
            return Err(AuthError::WeakKey);
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(key.as_bytes(), &salt)
            .map_err(|e| AuthError::Store(e.to_string()))?
            .to_string();
        *lock(&self.hash) = Some(hash);
        self.save()
    }

    fn save(&self) -> Result<(), AuthError> {
        let file =
            AuthFile { access_key_hash: lock(&self.hash).clone(), session_secret: STANDARD.encode(&self.secret) };
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

    #[test]
    fn key_from_the_environment_and_sessions() {
        let d = dir("env");
        let (auth, token) = Auth::open(&d, Some("correct horse")).unwrap();
        assert!(token.is_none() && auth.configured());
        let stored = std::fs::read_to_string(d.join("auth.json")).unwrap();
        assert!(!stored.contains("correct horse") && stored.contains("$argon2"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(auth.login(ip, "wrong key!").unwrap_err(), AuthError::Invalid);
        let session = auth.login(ip, "correct horse").unwrap();
        assert!(auth.verify(&session.token));
        assert!(!auth.verify(&session.token.replace("v1.", "v1.9")));
        assert!(!auth.verify("garbage"));
        auth.logout(&session.token);
        assert!(!auth.verify(&session.token));
        // Sessions survive a restart (the secret is stored), the key too.
        let (again, _) = Auth::open(&d, None).unwrap();
        let session = again.login(ip, "correct horse").unwrap();
        assert!(auth.verify(&session.token));
    }

    #[test]
    fn setup_token_is_single_use_and_failures_are_limited() {
        let d = dir("setup");
        let (auth, token) = Auth::open(&d, None).unwrap();
        let token = token.unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(auth.login(ip, "anything1").unwrap_err(), AuthError::NotConfigured);
        assert_eq!(auth.setup("wrong", "long enough").unwrap_err(), AuthError::BadSetupToken);
        assert_eq!(auth.setup(&token, "short").unwrap_err(), AuthError::WeakKey);
        auth.setup(&token, "long enough").unwrap();
        assert_eq!(auth.setup(&token, "another key").unwrap_err(), AuthError::BadSetupToken);
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.login(ip, "nope nope").unwrap_err(), AuthError::Invalid);
        }
        assert!(matches!(auth.login(ip, "long enough").unwrap_err(), AuthError::RateLimited(_)));
        assert!(auth.login("10.0.0.2".parse().unwrap(), "long enough").is_ok(), "other addresses are not affected");
    }
}
