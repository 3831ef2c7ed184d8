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
}

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
        }
    }
}
