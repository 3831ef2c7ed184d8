use std::sync::Arc;
use std::time::Duration;

use iot2mqtt_engine::{HttpHost, HttpLimits};

/// Limits and sizes of one instance. The defaults suit a home installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceOptions {
    /// The most linear memory one plugin lane may use (default 64 MiB).
    pub memory_limit: usize,
    /// The most CPU time one plugin call may spend (default 1 s); an endless loop ends here.
    pub cpu_budget: Duration,
    /// The longest one plugin call may take, waiting on its device included (default 120 s);
    /// past it the lane is abandoned and rebuilt.
    pub call_limit: Duration,
    /// Publications kept while the broker is unreachable (default 1000).
    pub outbox_capacity: usize,
    /// The largest MQTT packet accepted (default 256 KiB).
    pub max_packet: usize,
    /// How long start waits for slow devices before announcing `online` anyway (default 10 s).
    pub init_grace: Duration,
    /// Hosts the connector's manifest declares for HTTP (`network.http`), beside its devices.
    pub http_hosts: Vec<HttpHost>,
    /// Limits on each lane's HTTP requests.
    pub http: HttpLimits,
    /// Where secrets the plugin refreshes are kept (`host.store-secret`); without one they
    /// live as long as the instance runs.
    pub secrets: SecretKeeper,
}

/// The orchestrator's store of an instance's secrets, for values a plugin refreshes.
pub trait SecretStore: Send + Sync {
    /// Replace the instance's secret `key` with `value`, encrypted at rest; the error says why
    /// not (not a secret the instance has).
    fn replace(&self, key: &str, value: &str) -> Result<(), String>;
}

/// A [`SecretStore`], or none.
#[derive(Clone, Default)]
pub struct SecretKeeper(pub(crate) Option<Arc<dyn SecretStore>>);

impl SecretKeeper {
    /// Keep refreshed secrets in `store`.
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Self(Some(store))
    }
}

impl std::fmt::Debug for SecretKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "SecretKeeper(store)" } else { "SecretKeeper(memory)" })
    }
}

impl PartialEq for SecretKeeper {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for SecretKeeper {}

impl Default for InstanceOptions {
    fn default() -> Self {
        Self {
            memory_limit: 64 << 20,
            cpu_budget: Duration::from_secs(1),
            call_limit: Duration::from_secs(120),
            outbox_capacity: 1000,
            max_packet: 256 << 10,
            init_grace: Duration::from_secs(10),
            http_hosts: Vec::new(),
            http: HttpLimits::default(),
            secrets: SecretKeeper::default(),
        }
    }
}
