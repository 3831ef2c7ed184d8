//! Secrets a plugin refreshed inside a container (`host.store-secret`), kept beside the
//! container until the orchestrator takes them into its own store.
//!
//! A host in a container cannot write the orchestrator's encrypted store, so it keeps what its
//! plugin refreshed in the instance's cache folder, encrypted with a key of that instance alone
//! (`/run/secrets/{id}_refresh_key`, derived by the orchestrator from its master key). Each
//! entry records the value it replaced when the container started (`was`): the host uses an
//! entry when it starts again only while its secrets file still holds that value, and the
//! orchestrator, before it starts a new container, takes an entry into its store only while
//! the store still holds it. A secret the person changed meanwhile (an edit, a new sign-in)
//! therefore wins over an older refresh, and a refresh survives restarts of either side.
//!
//! The file: `v1:` and the base64 of a 24-byte nonce followed by the XChaCha20-Poly1305
//! encryption of a JSON object `{key: {"value", "was"}}`, bound to the instance id.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The file's name in the instance's cache folder.
pub const FILE: &str = "refreshed-secrets";

/// The name of the key's file beside an instance's secrets file.
pub fn key_file(instance: &str) -> String {
    format!("{instance}_refresh_key")
}

/// One refreshed secret: its new value and the value it replaced when the container started.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    pub value: String,
    pub was: String,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refreshed(..)")
    }
}

/// Refreshed secrets by key.
pub type Entries = BTreeMap<String, Refreshed>;

/// The key of one instance's file: 32 bytes, written as base64.
#[derive(Clone)]
pub struct RefreshKey(XChaCha20Poly1305);

impl std::fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshKey(..)")
    }
}

/// Why a file or a key could not be read. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh key is not 32 bytes of base64")]
    BadKey,
    #[error("the refreshed secrets do not decrypt with this instance's key")]
    Undecryptable,
}

impl RefreshKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(bytes.into()))
    }

    /// A key from its file's text.
    pub fn parse(text: &str) -> Result<Self, RefreshError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| RefreshError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| RefreshError::BadKey)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The text of a key file for `bytes`.
    pub fn text(bytes: &[u8; 32]) -> String {
        format!("{}\n", STANDARD.encode(bytes))
    }

    /// The file's text for `entries` of `instance`.
    pub fn seal(&self, instance: &str, entries: &Entries) -> String {
        let plain = serde_json::to_vec(entries).unwrap_or_default();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for a message longer than the cipher allows (256 GiB).
        let sealed = self.0.encrypt(&nonce, Payload { msg: &plain, aad: instance.as_bytes() }).unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("v1:{}\n", STANDARD.encode(blob))
    }

    /// The entries a file's text holds for `instance`.
    pub fn unseal(&self, instance: &str, text: &str) -> Result<Entries, RefreshError> {
        let blob = text
            .trim()
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() >= 24)
            .ok_or(RefreshError::Undecryptable)?;
        let (nonce, sealed) = blob.split_at(24);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: instance.as_bytes() })
            .map_err(|_| RefreshError::Undecryptable)?;
        serde_json::from_slice(&plain).map_err(|_| RefreshError::Undecryptable)
    }
}

/// Put into `secrets` each entry whose secret still holds the value the entry replaced; the
/// keys of those taken. An entry for a secret that changed since, or is gone, is left out.
pub fn apply(secrets: &mut BTreeMap<String, String>, entries: &Entries) -> Vec<String> {
    let mut taken = Vec::new();
    for (key, entry) in entries {
        if let Some(current) = secrets.get_mut(key)
            && *current == entry.was
        {
            current.clone_from(&entry.value);
            taken.push(key.clone());
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, was: &str) -> Refreshed {
        Refreshed { value: value.into(), was: was.into() }
    }

    #[test]
    fn a_file_opens_only_with_its_key_for_its_instance() {
        let key = RefreshKey::from_bytes(&[7; 32]);
        let entries = Entries::from([("token".to_string(), entry("r2-long-refreshed-value", "r1"))]);
        let text = key.seal("lamp", &entries);
        assert!(!text.contains("r2-long-refreshed-value"));
        assert_eq!(key.unseal("lamp", &text).unwrap(), entries);
        assert_eq!(key.unseal("other", &text), Err(RefreshError::Undecryptable));
        assert_eq!(RefreshKey::from_bytes(&[8; 32]).unseal("lamp", &text), Err(RefreshError::Undecryptable));
        assert_eq!(key.unseal("lamp", "v1:AAAA"), Err(RefreshError::Undecryptable));
        assert_eq!(key.unseal("lamp", "garbage"), Err(RefreshError::Undecryptable));
        let file = RefreshKey::text(&[7; 32]);
        assert_eq!(RefreshKey::parse(&file).unwrap().unseal("lamp", &text).unwrap(), entries);
        assert_eq!(RefreshKey::parse("c2hvcnQ=").unwrap_err(), RefreshError::BadKey);
    }

    #[test]
    fn an_entry_is_taken_only_while_its_secret_holds_what_it_replaced() {
        let mut secrets = BTreeMap::from([
            ("access".to_string(), "a1".to_string()),
            ("refresh".to_string(), "r9-typed-by-the-person".to_string()),
        ]);
        let entries = Entries::from([
            ("access".to_string(), entry("a2", "a1")),
            ("refresh".to_string(), entry("r2", "r1")),
            ("gone".to_string(), entry("g2", "g1")),
        ]);
        assert_eq!(apply(&mut secrets, &entries), ["access"]);
        assert_eq!(secrets["access"], "a2");
        assert_eq!(secrets["refresh"], "r9-typed-by-the-person");
        assert!(!secrets.contains_key("gone"));
    }
}
