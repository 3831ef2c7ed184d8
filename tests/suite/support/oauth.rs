//! A fake OAuth provider for the setup flows' OAuth step: `/authorize` sends the browser back
//! at once with a code, `/token` checks the PKCE verifier and the client secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;

use super::serve::Serve;

/// A fake OAuth provider: `/authorize` redirects back with a code, `/token` checks the PKCE
/// verifier and the client secret, then issues tokens.
pub struct FakeProvider {
    /// Its HTTP port.
    pub port: u16,
    /// The codes given out and not exchanged yet, with their PKCE challenges.
    pub challenges: Arc<Mutex<HashMap<String, String>>>,
    _task: tokio::task::JoinHandle<()>,
}

/// The access token it issues.
pub const ACCESS_TOKEN: &str = "at-0123456789-secret";
/// The refresh token it issues.
pub const REFRESH_TOKEN: &str = "rt-9876543210-secret";

impl FakeProvider {
    /// Listen on a free port.
    pub async fn start() -> Self {
        use axum::extract::{Form, Query, State};
        use axum::response::{IntoResponse, Redirect};
        type Challenges = Arc<Mutex<HashMap<String, String>>>;

        async fn authorize(State(codes): State<Challenges>, Query(q): Query<HashMap<String, String>>) -> Redirect {
            assert_eq!(q["response_type"], "code");
            assert_eq!(q["client_id"], "hub");
            assert_eq!(q["code_challenge_method"], "S256");
            assert_eq!(q["scope"], "devices.read");
            let code = format!("code-{}", codes.lock().unwrap().len());
            codes.lock().unwrap().insert(code.clone(), q["code_challenge"].clone());
            Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]))
        }
        async fn token(
            State(codes): State<Challenges>,
            Form(f): Form<HashMap<String, String>>,
        ) -> axum::response::Response {
            use base64::Engine as _;
            let challenge = codes.lock().unwrap().remove(f.get("code").map_or("", String::as_str));
            let verified = challenge.is_some_and(|c| {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(f["code_verifier"].as_bytes());
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == c
            });
            if !verified
                || f.get("client_secret").map(String::as_str) != Some("hub-secret")
                || f["grant_type"] != "authorization_code"
            {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
            }
            axum::Json(json!({
                "access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN, "expires_in": 3600,
                "scope": "devices.read", "token_type": "Bearer"
            }))
            .into_response()
        }

        let challenges: Challenges = Arc::default();
        let app = axum::Router::new()
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&challenges));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, challenges, _task: task }
    }

    /// Configure `serve` to use this provider as `fakeprov` (the "cloudy" test connector's).
    pub fn configure(&self, serve: &Serve) {
        let config_dir = serve.data().join("config/oauth");
        std::fs::create_dir_all(&config_dir).unwrap();
        let base = format!("http://127.0.0.1:{}", self.port);
        let config = json!({
            "client_id": "hub", "client_secret": "hub-secret",
            "authorize_url": format!("{base}/authorize"), "token_url": format!("{base}/token")
        });
        std::fs::write(config_dir.join("fakeprov.json"), config.to_string()).unwrap();
    }
}
