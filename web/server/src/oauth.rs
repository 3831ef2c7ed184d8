//! OAuth for setup flows: the authorization-code grant with PKCE (S256) and `state`. A
//! provider is configured in `<data>/config/oauth/<provider>.json`; the tokens it issues become
//! the instance's secrets and are never sent to the browser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long the provider's token endpoint may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

/// `config/oauth/<provider>.json`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret, for confidential clients.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Where the user authorises.
    pub authorize_url: String,
    /// Where codes become tokens.
    pub token_url: String,
    /// Scopes asked for when the step names none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The redirect URI registered with the provider; by default this server's
    /// `/api/oauth/callback` as the browser reached it.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Extra query parameters for the authorisation URL (`access_type`, `prompt`…).
    #[serde(default)]
    pub extra_params: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("client_id", &self.client_id)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// One authorisation in progress.
#[derive(Clone)]
pub struct Pending {
    /// The provider.
    pub provider: String,
    /// The `state` sent.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The redirect URI sent (the token request repeats it).
    pub redirect_uri: String,
    /// Where the user goes.
    pub authorize_url: String,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// Tokens a provider issued.
#[derive(Clone, Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, when issued.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token, seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The scopes granted.
    #[serde(default)]
    pub scope: Option<String>,
    /// Usually `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// The providers' configuration folder and an HTTP client.
#[derive(Debug, Clone)]
pub struct OAuth {
    dir: PathBuf,
    http: reqwest::Client,
}

impl OAuth {
    /// Providers configured under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { dir, http }
    }

    /// The configuration of `provider`.
    pub fn provider(&self, provider: &str) -> Result<ProviderConfig, String> {
        let valid = !provider.is_empty() && provider.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!("\"{provider}\" is not a valid provider name"));
        }
        let path = self.dir.join(format!("{provider}.json"));
        let text = std::fs::read(&path).map_err(|_| {
            format!("OAuth with {provider} is not configured: write its client settings to {}", path.display())
        })?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Begin authorising with `provider`: the URL to send the user to, and what to keep.
    pub fn begin(&self, provider: &str, scopes: &[String], origin: &str) -> Result<Pending, String> {
        let config = self.provider(provider)?;
        let state = random_token();
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let redirect_uri = config.redirect_uri.clone().unwrap_or_else(|| format!("{origin}/api/oauth/callback"));
        let scopes = if scopes.is_empty() { &config.scopes } else { scopes };
        let mut url = url::Url::parse(&config.authorize_url)
            .map_err(|e| format!("the authorize_url of {provider} is not a URL: {e}"))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &config.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
            for (key, value) in &config.extra_params {
                query.append_pair(key, value);
            }
        }
        Ok(Pending { provider: provider.to_string(), state, verifier, redirect_uri, authorize_url: url.into() })
    }

    /// Exchange the code the provider sent back for tokens.
    pub async fn exchange(&self, pending: &Pending, code: &str) -> Result<Tokens, String> {
        let config = self.provider(&pending.provider)?;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &pending.redirect_uri)
                .append_pair("client_id", &config.client_id)
                .append_pair("code_verifier", &pending.verifier);
            if let Some(secret) = &config.client_secret {
                form.append_pair("client_secret", secret);
            }
            form.finish()
        };
        let response = self
            .http
            .post(&config.token_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| format!("cannot reach the token endpoint of {}: {}", pending.provider, e.without_url()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(format!("{} refused the code ({status}): {reason}", pending.provider));
        }
        serde_json::from_value(body)
            .map_err(|e| format!("the token response of {} is not usable: {e}", pending.provider))
    }
}

/// 32 random bytes, base64url: a `state` or a PKCE verifier (43 characters).
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The folder of provider configurations under a data directory.
pub fn config_dir(data: &Path) -> PathBuf {
    data.join("config").join("oauth")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorisation_url_carries_pkce_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "client_id": "cid", "authorize_url": "https://id.example/auth?x=1",
            "token_url": "https://id.example/token", "scopes": ["a"]
        });
        std::fs::write(dir.path().join("ex.json"), config.to_string()).unwrap();
        let oauth = OAuth::new(dir.path().to_path_buf());
        let pending = oauth.begin("ex", &[], "http://hub:8765").unwrap();
        let url = url::Url::parse(&pending.authorize_url).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["x"], "1");
        assert_eq!(query["client_id"], "cid");
        assert_eq!(query["scope"], "a");
        assert_eq!(query["redirect_uri"], "http://hub:8765/api/oauth/callback");
        assert_eq!(query["state"], pending.state);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"], URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes())));
        assert_eq!(pending.verifier.len(), 43);
        assert_ne!(pending.state, oauth.begin("ex", &[], "http://hub").unwrap().state);
        assert!(oauth.begin("missing", &[], "").unwrap_err().contains("not configured"));
        assert!(oauth.begin("../etc", &[], "").unwrap_err().contains("not a valid provider"));
    }
}
