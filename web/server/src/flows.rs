// Longer than 500 lines because its unit tests (expiry, eviction) sit beside the sessions.
//! Flow sessions on the server: each walks one connector's setup flow with
//! [`iot2mqtt_flows::FlowSession`], and this service does what the engine asks for — runs
//! tools through the [`ToolRunner`], creates the instance through [`Instances`], and carries
//! OAuth authorisations — until there is a step to show. Sessions expire after
//! [`SESSION_TTL`] without use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot2mqtt_flows::{FlowError, FlowSession, Next, StepContent, StepView, ToolFailure};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::catalog::{CatalogError, Connector};
use crate::instances::{InstanceError, Instances};
use crate::oauth::{OAuth, Pending};
use crate::request::InstanceRequest;
use crate::sync::lock;
use crate::tools::ToolRunner;

/// How long a session lives without being used.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// The most sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 256;

struct Entry {
    integration: String,
    connector: Connector,
    session: FlowSession,
    /// The step on screen (until the flow is done).
    shown: Option<StepView>,
    done: Option<Value>,
    /// Tokens of finished authorisations, by secret name, for the instance.
    secrets: BTreeMap<String, String>,
    pending: Option<Pending>,
    last_used: Instant,
}

impl Entry {
    fn new(integration: &str, connector: Connector, session: FlowSession) -> Self {
        Self {
            integration: integration.to_string(),
            connector,
            session,
            shown: None,
            done: None,
            secrets: BTreeMap::new(),
            pending: None,
            last_used: Instant::now(),
        }
    }
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

/// Why a setup session refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session, connector or setup flow.
    #[error("{0}")]
    NotFound(String),
    /// A value of the request is wrong; `field` names it.
    #[error("{message}")]
    Invalid {
        /// The field at fault.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The request cannot be read.
    #[error("{0}")]
    BadInput(String),
    /// The flow ended already.
    #[error("this flow is finished")]
    Finished,
    /// Creating the instance failed for a reason the flow cannot show at a field.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

impl SessionError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: Some(field.to_string()), message: message.into() }
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

/// A setup session as the API and the web UI show it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// The session's id.
    pub id: String,
    /// The connector being set up.
    pub integration: String,
    /// The flow walked.
    pub flow: String,
    /// `step` or `done`.
    pub status: &'static str,
    /// When it expires unused (RFC 3339).
    pub expires_at: String,
    /// `done`: the created instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<Value>,
    /// `step`: the step to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepView>,
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
    ) -> Result<SessionView, SessionError> {
        let connector = instances.catalog().get(integration).map_err(|e| match e {
            CatalogError::Unknown(_) => SessionError::NotFound(e.to_string()),
            CatalogError::Invalid { .. } => SessionError::invalid("integration", e.to_string()),
        })?;
        let setup = connector.setup.clone().ok_or_else(|| {
            SessionError::NotFound(format!("connector \"{integration}\" has no setup flow (setup.json)"))
        })?;
        let (session, next) = FlowSession::start(setup, integration, flow).map_err(|e| match e {
            FlowError::UnknownFlow(_) => SessionError::invalid("flow", e.to_string()),
            other => flow_error(other),
        })?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut entry = Entry::new(integration, connector, session);
        self.drive(instances, &id, &mut entry, next, origin).await?;
        let body = self.body(&id, &entry);
        self.insert(id, entry);
        tracing::info!(integration, "setup flow started");
        Ok(body)
    }

    /// The session as it stands.
    pub async fn get(&self, id: &str) -> Result<SessionView, SessionError> {
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        Ok(self.body(id, &entry))
    }

    /// Answer the current step.
    pub async fn step(
        &self,
        instances: &Instances,
        id: &str,
        input: &Value,
        origin: &str,
    ) -> Result<SessionView, SessionError> {
        if !input.is_object() {
            return Err(SessionError::BadInput("the body must be a JSON object".into()));
        }
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        if entry.done.is_some() {
            return Err(SessionError::Finished);
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
    ) -> Result<SessionView, SessionError> {
        let entry = self.entry(id)?;
        let mut entry = entry.lock().await;
        entry.last_used = Instant::now();
        if entry.done.is_some() {
            return Err(SessionError::Finished);
        }
        if action == "reset_flow" {
            entry.secrets.clear();
        }
        let next = entry.session.action(action, flow).map_err(|e| match e {
            FlowError::UnknownAction(_) | FlowError::UnknownFlow(_) => SessionError::invalid("action", e.to_string()),
            other => flow_error(other),
        })?;
        self.drive(instances, id, &mut entry, next, origin).await?;
        Ok(self.body(id, &entry))
    }

    /// Forget a session.
    pub async fn cancel(&self, id: &str) -> Result<(), SessionError> {
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
            Ok(()) => CallbackOutcome { session: Some(id), message: format!("Connected to {provider}."), ok: true },
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
    ) -> Result<(), SessionError> {
        loop {
            next = match next {
                Next::Show(view) => {
                    entry.shown = Some(self.decorate(id, entry, view, origin));
                    return Ok(());
                }
                Next::Done(instance) => {
                    entry.done = Some(instance);
                    entry.shown = None;
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
                    let created = match InstanceRequest::parse(body) {
                        Ok(request) => instances.create(request).await,
                        Err(e) => Err(InstanceError::from(e)),
                    };
                    let outcome = match created {
                        Ok(view) => {
                            tracing::info!(integration = %entry.integration, "setup flow created an instance");
                            Ok(serde_json::to_value(view).map_err(SessionError::internal)?)
                        }
                        Err(InstanceError::Invalid { field, message }) => Err((field, message)),
                        Err(exists @ InstanceError::Exists(_)) => Err((Some("instance_id".into()), exists.to_string())),
                        Err(other) => return Err(other.into()),
                    };
                    entry.session.instance_done(outcome).map_err(flow_error)?
                }
            };
        }
    }

    /// Add what the server knows to a step: an OAuth step gets its authorisation URL.
    fn decorate(&self, id: &str, entry: &mut Entry, mut view: StepView, origin: &str) -> StepView {
        let StepView::Step(page) = &mut view else { return view };
        let StepContent::Oauth { provider, scopes, connected: false, authorize_url } = &mut page.content else {
            return view;
        };
        if let Some(old) = entry.pending.take() {
            lock(&self.states).remove(&old.state);
        }
        match self.oauth.begin(provider.as_deref().unwrap_or_default(), scopes, origin) {
            Ok(pending) => {
                *authorize_url = Some(pending.authorize_url.clone());
                lock(&self.states).insert(pending.state.clone(), id.to_string());
                entry.pending = Some(pending);
            }
            Err(message) => {
                page.error = Some(ToolFailure { code: "oauth_not_configured".into(), message, retriable: true });
            }
        }
        view
    }

    fn body(&self, id: &str, entry: &Entry) -> SessionView {
        let expires = time::OffsetDateTime::now_utc()
            + time::Duration::try_from(self.ttl.saturating_sub(entry.last_used.elapsed())).unwrap_or_default();
        SessionView {
            id: id.to_string(),
            integration: entry.integration.clone(),
            flow: entry.session.flow_id().to_string(),
            status: if entry.done.is_some() { "done" } else { "step" },
            expires_at: expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            instance: entry.done.clone(),
            step: if entry.done.is_some() { None } else { entry.shown.clone() },
        }
    }

    fn entry(&self, id: &str) -> Result<Arc<Mutex<Entry>>, SessionError> {
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

fn unknown_session(id: &str) -> SessionError {
    SessionError::NotFound(format!("no setup session \"{id}\" (it ended, or expired unused)"))
}

fn flow_error(error: FlowError) -> SessionError {
    match error {
        FlowError::BadInput(message) => SessionError::BadInput(message),
        FlowError::UnknownAction(_) | FlowError::UnknownFlow(_) => SessionError::invalid("action", error.to_string()),
        FlowError::Template(_) => SessionError::invalid("setup", error.to_string()),
    }
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
        let connector = Connector {
            name: iot2mqtt_contract::ConnectorName::new("t").unwrap(),
            dir: std::env::temp_dir(),
            manifest,
            secret_fields: Default::default(),
            network: Network::Host,
            setup: Some(setup),
        };
        Entry::new("t", connector, session)
    }

    fn flows(ttl: Duration) -> Flows {
        let runtime =
            iot2mqtt_runtime::Runtime::new(iot2mqtt_runtime::EngineConfig { cache_dir: None, shared_cache_dir: None })
                .unwrap();
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
        assert!(matches!(gone, SessionError::NotFound(ref m) if m.contains("expired")), "{gone}");
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
