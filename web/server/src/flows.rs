//! Flow sessions on the server: each walks one connector's setup flow with
//! [`iot2mqtt_flows::FlowSession`], and this service does what the engine asks for — runs
//! tools through the [`ToolRunner`], creates the instance through [`Instances`], and carries
//! OAuth authorisations — until there is a step to show. Sessions expire after
//! [`SESSION_TTL`] without use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot2mqtt_flows::{FlowError, FlowSession, Next, ToolFailure};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::catalog::{CatalogError, Connector};
use crate::error::AppError;
use crate::instances::Instances;
use crate::oauth::{OAuth, Pending};
use crate::tools::ToolRunner;

/// How long a session lives without being used.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// The most sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 256;

struct Entry {
    integration: String,
    connector: Connector,
    session: FlowSession,
    /// The last thing shown: a step, or the created instance.
    shown: Value,
    done: Option<Value>,
    /// Tokens of finished authorisations, by secret name, for the instance.
    secrets: BTreeMap<String, String>,
    pending: Option<Pending>,
    last_used: Instant,
}

/// The flow sessions.
pub struct Flows {
    sessions: std::sync::Mutex<HashMap<String, Arc<Mutex<Entry>>>>,
    /// OAuth `state` → session id.
    states: std::sync::Mutex<HashMap<String, String>>,
    tools: Arc<ToolRunner>,
    oauth: OAuth,
    ttl: Duration,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows").field("sessions", &lock(&self.sessions).len()).finish_non_exhaustive()
    }
}

/// Where the user comes back from an OAuth provider.
#[derive(Debug)]
pub struct CallbackOutcome {
    /// The session, when the `state` was known.
    pub session: Option<String>,
    /// What happened, for people.
    pub message: String,
    /// Whether it worked.
    pub ok: bool,
}

impl Flows {
    /// Sessions that run tools on `tools` and authorise with `oauth`.
    pub fn new(tools: Arc<ToolRunner>, oauth: OAuth) -> Self {
        Self {
            sessions: std::sync::Mutex::default(),
            states: std::sync::Mutex::default(),
            tools,
            oauth,
            ttl: SESSION_TTL,
        }
    }

    /// The same, with sessions living `ttl` without use.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Start `flow` (or the default one) of `integration`. `origin` is this server as the
    /// browser sees it (for OAuth redirects).
    pub async fn start(
        &self,
        instances: &Instances,
        integration: &str,
        flow: Option<&str>,
        origin: &str,
    ) -> Result<Value, AppError> {
        let connector = instances.catalog().get(integration).map_err(|e| match e {
            CatalogError::Unknown(_) => AppError::NotFound(e.to_string()),
            CatalogError::Invalid { .. } => AppError::invalid("integration", e.to_string()),
        })?;
        let setup = connector
            .setup
            .clone()
            .ok_or_else(|| AppError::NotFound(format!("connector \"{integration}\" has no setup flow (setup.json)")))?;
        let (session, next) = FlowSession::start(setup, integration, flow).map_err(|e| match e {
            FlowError::UnknownFlow(_) => AppError::invalid("flow", e.to_string()),
            other => flow_error(other),
        })?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut entry = Entry {
            integration: integration.to_string(),
            connector,
            session,
            shown: Value::Null,
            done: None,
            secrets: BTreeMap::new(),
            pending: None,
            last_used: Instant::now(),
        };
        self.drive(instances, &id, &mut entry, next, origin).await?;
        let body = self.body(&id, &entry);
        self.insert(id, entry);
        tracing::info!(integration, "setup flow started");
        Ok(body)
    }

    /// The session as it stands.
    pub async fn get(&self, id: &str) -> Result<Value, AppError> {
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        Ok(self.body(id, &entry))
    }

    /// Answer the current step.
    pub async fn step(&self, instances: &Instances, id: &str, input: &Value, origin: &str) -> Result<Value, AppError> {
        if !input.is_object() {
            return Err(AppError::BadRequest("the body must be a JSON object".into()));
        }
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        if entry.done.is_some() {
            return Err(AppError::Conflict { field: None, message: "this flow is finished".into() });
        }
        let next = entry.session.submit(input).map_err(flow_error)?;
        self.drive(instances, id, &mut entry, next, origin).await?;
        Ok(self.body(id, &entry))
    }

    /// Take an action the current step offers.
    pub async fn action(
        &self,
        instances: &Instances,
        id: &str,
        action: &str,
        flow: Option<&str>,
        origin: &str,
    ) -> Result<Value, AppError> {
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        if entry.done.is_some() {
            return Err(AppError::Conflict { field: None, message: "this flow is finished".into() });
        }
        if action == "reset_flow" {
            entry.secrets.clear();
        }
        let next = entry.session.action(action, flow).map_err(|e| match e {
            FlowError::UnknownAction(_) | FlowError::UnknownFlow(_) => AppError::invalid("action", e.to_string()),
            other => flow_error(other),
        })?;
        self.drive(instances, id, &mut entry, next, origin).await?;
        Ok(self.body(id, &entry))
    }

    /// Forget a session.
    pub async fn cancel(&self, id: &str) -> Result<(), AppError> {
        let removed = lock(&self.sessions).remove(id);
        let entry = removed.ok_or_else(|| unknown_session(id))?;
        if let Some(pending) = entry.lock().await.pending.take() {
            lock(&self.states).remove(&pending.state);
        }
        Ok(())
    }

    /// The provider sent the user back: exchange the code, keep the tokens, and move on.
    pub async fn oauth_callback(
        &self,
        instances: &Instances,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        origin: &str,
    ) -> CallbackOutcome {
        let session = lock(&self.states).remove(state);
        let failed = |session: Option<String>, message: String| CallbackOutcome { session, message, ok: false };
        let Some(id) = session else {
            return failed(None, "this authorisation is unknown or was used already; start the step again".into());
        };
        let Ok(entry) = self.entry(&id) else {
            return failed(None, "the setup this authorisation belonged to has expired; start again".into());
        };
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        let Some(pending) = entry.pending.take().filter(|p| p.state == state) else {
            return failed(Some(id), "this authorisation was replaced by a newer one".into());
        };
        let provider = pending.provider.clone();
        let code = match (code, error) {
            (_, Some(error)) => return failed(Some(id), format!("{provider} did not authorise: {error}")),
            (None, None) => return failed(Some(id), format!("{provider} sent no code back")),
            (Some(code), None) => code,
        };
        let tokens = match self.oauth.exchange(&pending, code).await {
            Ok(tokens) => tokens,
            Err(message) => {
                tracing::warn!(provider, "OAuth code exchange failed: {message}");
                return failed(Some(id), message);
            }
        };
        let expires_at = tokens.expires_in.and_then(|s| {
            let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(i64::try_from(s).ok()?);
            at.format(&time::format_description::well_known::Rfc3339).ok()
        });
        entry.secrets.insert(format!("{provider}_access_token"), tokens.access_token.clone());
        if let Some(refresh) = &tokens.refresh_token {
            entry.secrets.insert(format!("{provider}_refresh_token"), refresh.clone());
        }
        let info = json!({
            "connected": true,
            "expires_at": expires_at,
            "scope": tokens.scope,
            "token_type": tokens.token_type,
        });
        entry.session.set_context("oauth", &provider, info);
        tracing::info!(provider, "OAuth authorisation complete");
        let outcome = match entry.session.submit(&json!({})) {
            Ok(next) => self.drive(instances, &id, &mut entry, next, origin).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => CallbackOutcome {
                session: Some(id),
                message: format!("Connected to {provider}. You can close this page and return to the setup."),
                ok: true,
            },
            Err(message) => failed(Some(id), message),
        }
    }

    /// Do what the engine asks until there is something to show.
    async fn drive(
        &self,
        instances: &Instances,
        id: &str,
        entry: &mut Entry,
        mut next: Next,
        origin: &str,
    ) -> Result<(), AppError> {
        loop {
            next = match next {
                Next::Show(view) => {
                    entry.shown = self.decorate(id, entry, view, origin);
                    return Ok(());
                }
                Next::Done(instance) => {
                    entry.done = Some(instance.clone());
                    entry.shown = json!({"type": "done", "instance": instance});
                    return Ok(());
                }
                Next::RunTool { tool, input } => {
                    let outcome = match self.tools.execute(instances.catalog(), &entry.connector, &tool, input).await {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            Err(ToolFailure { code: "executor_error".into(), message: e.to_string(), retriable: false })
                        }
                    };
                    entry.session.tool_done(outcome).map_err(flow_error)?
                }
                Next::CreateInstance(mut body) => {
                    if let (Value::Object(map), false) = (&mut body, entry.secrets.is_empty()) {
                        let secrets = map.entry("secrets").or_insert_with(|| json!({}));
                        if let Value::Object(secrets) = secrets {
                            for (key, value) in &entry.secrets {
                                secrets.insert(key.clone(), json!(value));
                            }
                        }
                    }
                    let outcome = match instances.create(body).await {
                        Ok(view) => {
                            tracing::info!(integration = %entry.integration, "setup flow created an instance");
                            Ok(serde_json::to_value(view).map_err(AppError::internal)?)
                        }
                        Err(AppError::Conflict { field, message } | AppError::Invalid { field, message }) => {
                            Err((field, message))
                        }
                        Err(other) => return Err(other),
                    };
                    entry.session.instance_done(outcome).map_err(flow_error)?
                }
            };
        }
    }

    /// Add what the server knows to a step: an OAuth step gets its authorisation URL.
    fn decorate(&self, id: &str, entry: &mut Entry, mut view: Value, origin: &str) -> Value {
        let is_oauth = view["type"] == "oauth" && view["connected"] != true;
        if !is_oauth {
            return view;
        }
        let provider = view["provider"].as_str().unwrap_or_default().to_string();
        let scopes: Vec<String> =
            view["scopes"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect();
        if let Some(old) = entry.pending.take() {
            lock(&self.states).remove(&old.state);
        }
        match self.oauth.begin(&provider, &scopes, origin) {
            Ok(pending) => {
                view["authorize_url"] = json!(pending.authorize_url);
                lock(&self.states).insert(pending.state.clone(), id.to_string());
                entry.pending = Some(pending);
            }
            Err(message) => {
                view["error"] = json!({"code": "oauth_not_configured", "message": message, "retriable": true});
            }
        }
        view
    }

    fn body(&self, id: &str, entry: &Entry) -> Value {
        let expires = time::OffsetDateTime::now_utc()
            + time::Duration::try_from(self.ttl.saturating_sub(entry.last_used.elapsed())).unwrap_or_default();
        let mut body = json!({
            "id": id,
            "integration": entry.integration,
            "flow": entry.session.flow_id(),
            "status": if entry.done.is_some() { "done" } else { "step" },
            "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        });
        match &entry.done {
            Some(instance) => body["instance"] = instance.clone(),
            None => body["step"] = entry.shown.clone(),
        }
        body
    }

    fn entry(&self, id: &str) -> Result<Arc<Mutex<Entry>>, AppError> {
        self.sweep();
        lock(&self.sessions).get(id).cloned().ok_or_else(|| unknown_session(id))
    }

    fn insert(&self, id: String, entry: Entry) {
        self.sweep();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .filter_map(|(id, e)| e.try_lock().ok().map(|e| (id.clone(), e.last_used)))
                .min_by_key(|(_, used)| *used)
                .map(|(id, _)| id);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id, Arc::new(Mutex::new(entry)));
    }

    /// Drop expired sessions (ones busy right now are in use, so not expired).
    fn sweep(&self) {
        let mut expired_states = Vec::new();
        lock(&self.sessions).retain(|_, entry| match entry.try_lock() {
            Ok(entry) if entry.last_used.elapsed() > self.ttl => {
                expired_states.extend(entry.pending.as_ref().map(|p| p.state.clone()));
                false
            }
            _ => true,
        });
        let mut states = lock(&self.states);
        for state in expired_states {
            states.remove(&state);
        }
    }
}

fn unknown_session(id: &str) -> AppError {
    AppError::NotFound(format!("no setup session \"{id}\" (it ended, or expired unused)"))
}

fn flow_error(error: FlowError) -> AppError {
    match error {
        FlowError::BadInput(message) => AppError::BadRequest(message),
        FlowError::UnknownAction(_) | FlowError::UnknownFlow(_) => AppError::invalid("action", error.to_string()),
        FlowError::Template(_) => AppError::invalid("setup", error.to_string()),
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Manifest, Network};

    fn entry() -> Entry {
        let setup = iot2mqtt_flows::Setup::parse(
            br#"{"version": "1.0", "display_name": "t", "flows": [{"id": "f", "name": "f", "steps": [
                {"id": "m", "type": "message", "text": "hi"}]}]}"#,
            "t.json",
        )
        .unwrap();
        let (session, _) = FlowSession::start(setup.clone(), "t", None).unwrap();
        let manifest: Manifest =
            serde_json::from_value(json!({"name": "t", "display_name": "t", "version": "0.1.0"})).unwrap();
        Entry {
            integration: "t".into(),
            connector: Connector {
                name: iot2mqtt_contract::ConnectorName::new("t").unwrap(),
                dir: std::env::temp_dir(),
                manifest,
                secret_fields: Default::default(),
                network: Network::Host,
                setup: Some(setup),
            },
            session,
            shown: Value::Null,
            done: None,
            secrets: BTreeMap::new(),
            pending: None,
            last_used: Instant::now(),
        }
    }

    fn flows(ttl: Duration) -> Flows {
        let runtime = iot2mqtt_runtime::Runtime::new(iot2mqtt_runtime::EngineConfig { cache_dir: None }).unwrap();
        Flows::new(Arc::new(ToolRunner::new(runtime)), OAuth::new(std::env::temp_dir())).with_ttl(ttl)
    }

    #[tokio::test]
    async fn unused_sessions_expire_and_used_ones_live_on() {
        let flows = flows(Duration::from_millis(1000));
        flows.insert("a".into(), entry());
        flows.insert("b".into(), entry());
        // Time passes for every session, without sleeping.
        let age = |by: Duration| {
            for entry in lock(&flows.sessions).values() {
                let mut entry = entry.try_lock().expect("no session in use");
                entry.last_used = entry.last_used.checked_sub(by).expect("an earlier instant");
            }
        };
        age(Duration::from_millis(600));
        assert!(flows.get("a").await.is_ok(), "a use keeps a session alive");
        age(Duration::from_millis(600));
        assert!(flows.get("a").await.is_ok());
        let gone = flows.get("b").await.unwrap_err();
        assert!(matches!(gone, AppError::NotFound(ref m) if m.contains("expired")), "{gone}");
        assert_eq!(lock(&flows.sessions).len(), 1);
    }

    #[tokio::test]
    async fn the_least_recently_used_session_makes_room() {
        let flows = flows(SESSION_TTL);
        for n in 0..MAX_SESSIONS + 3 {
            flows.insert(n.to_string(), entry());
        }
        assert_eq!(lock(&flows.sessions).len(), MAX_SESSIONS);
        assert!(flows.get(&(MAX_SESSIONS + 2).to_string()).await.is_ok());
        assert!(flows.get("0").await.is_err());
    }
}
