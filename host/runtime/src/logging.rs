//! One logging setup for both binaries (`iot2mqtt-host` and `iot2mqtt`): stderr, the level from
//! `LOG_LEVEL`, the format from `LOG_FORMAT` and, for the host, a name that starts every text line
//! from `LOG_NAME` (a program among others in a multi-process container). The caller reads the
//! environment and passes the values in, so this crate still reads none itself.
//!
//! `serve` also keeps the last lines of each instance's log in memory ([`InstanceLogs`]), so a
//! person can read and follow them where a container's log would be: an event belongs to an
//! instance when it carries an `instance` field or happens inside an instance's span. Every
//! other event is the orchestrator's own, kept under [`ORCHESTRATOR`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log to stderr. `level` is `LOG_LEVEL` (default `info`; the contract's names `WARNING`,
/// `CRITICAL` and `FATAL` are understood, any case, as is a full filter such as
/// `info,iot2mqtt_runtime=debug`); `format` is `LOG_FORMAT` (`json` for one JSON object per
/// line, anything else for text, coloured on a terminal); `name`, when given, starts every text
/// line as `name: `, as the other programs of a multi-process container name theirs.
pub fn init(level: Option<&str>, format: Option<&str>, name: Option<&str>) {
    init_all(level, format, name, None);
}

/// [`init`], also keeping each instance's recent lines in `instances`.
pub fn init_with(level: Option<&str>, format: Option<&str>, instances: Option<InstanceLogs>) {
    init_all(level, format, None, instances);
}

fn init_all(level: Option<&str>, format: Option<&str>, name: Option<&str>, instances: Option<InstanceLogs>) {
    let filter = EnvFilter::try_new(filter(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = format.is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let prefix: &'static str = match name.map(str::trim) {
        Some(name) if !name.is_empty() => Box::leak(format!("{name}: ").into_boxed_str()),
        _ => "",
    };
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(move || Named { prefix, started: false, out: std::io::stderr().lock() })
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_target(false));
    let _ = tracing_subscriber::registry().with(filter).with(text).with(json).with(instances).try_init();
}

/// Stderr for one event's line, starting it with the program's name (nothing when it has none).
struct Named {
    prefix: &'static str,
    started: bool,
    out: std::io::StderrLock<'static>,
}

impl std::io::Write for Named {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.started {
            self.started = true;
            self.out.write_all(self.prefix.as_bytes())?;
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Lines kept per instance.
pub const LINES_PER_INSTANCE: usize = 500;
/// Longest line kept, bytes; longer ones are cut.
pub const LINE_BYTES: usize = 2048;

/// The key of the orchestrator's own log: events of no instance (`@` is in no instance id).
pub const ORCHESTRATOR: &str = "@serve";

/// How many lines the orchestrator's own log keeps.
pub const ORCHESTRATOR_LINES: usize = 2000;

/// How many lines a follower may fall behind before it skips some.
const FOLLOW_BUFFER: usize = 1024;

/// One line of an instance's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// `error`, `warning`, `info` or `debug`.
    pub level: &'static str,
    /// The message and the event's other fields (`key=value`).
    pub text: String,
}

/// The last [`LINES_PER_INSTANCE`] lines of each instance's log, as a `tracing` layer; clones
/// share the lines.
#[derive(Debug, Clone)]
pub struct InstanceLogs {
    lines: Arc<Mutex<HashMap<String, VecDeque<LogRecord>>>>,
    /// Every line as it is kept, with its log's key, for those who follow.
    live: tokio::sync::broadcast::Sender<(String, LogRecord)>,
}

impl Default for InstanceLogs {
    fn default() -> Self {
        Self { lines: Arc::default(), live: tokio::sync::broadcast::channel(FOLLOW_BUFFER).0 }
    }
}

/// A log being followed: the lines kept when it began, then each new one.
#[derive(Debug)]
pub struct Following {
    /// The lines kept when following began, oldest first.
    pub kept: Vec<LogRecord>,
    key: String,
    live: tokio::sync::broadcast::Receiver<(String, LogRecord)>,
}

impl Following {
    /// The next new line; `None` when the logs are gone. A follower that fell behind skips
    /// what it missed.
    pub async fn next(&mut self) -> Option<LogRecord> {
        loop {
            match self.live.recv().await {
                Ok((key, record)) if key == self.key => return Some(record),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl InstanceLogs {
    /// The last `most` lines of `instance`, oldest first.
    pub fn tail(&self, instance: &str, most: usize) -> Vec<LogRecord> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.get(instance).map_or_else(Vec::new, |l| l.iter().skip(l.len().saturating_sub(most)).cloned().collect())
    }

    /// Drop what is kept of `instance` (it was deleted).
    /// The last `most` lines of `instance`'s log (or [`ORCHESTRATOR`]'s), then every new one.
    pub fn follow(&self, instance: &str, most: usize) -> Following {
        // Under the lock that `push` holds while it sends: no line is both kept and sent.
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let kept = lines
            .get(instance)
            .map_or_else(Vec::new, |l| l.iter().skip(l.len().saturating_sub(most)).cloned().collect());
        Following { kept, key: instance.to_string(), live: self.live.subscribe() }
    }

    pub fn forget(&self, instance: &str) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).remove(instance);
    }

    fn push(&self, instance: String, record: LogRecord) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let bound = if instance == ORCHESTRATOR { ORCHESTRATOR_LINES } else { LINES_PER_INSTANCE };
        let kept = lines.entry(instance.clone()).or_default();
        if kept.len() >= bound {
            kept.pop_front();
        }
        kept.push_back(record.clone());
        if self.live.receiver_count() > 0 {
            let _ = self.live.send((instance, record));
        }
    }
}

/// The instance a span belongs to, kept in the span's extensions.
struct SpanInstance(String);

/// Reads an event's or a span's fields: `instance` apart, the message, the rest as `key=value`.
#[derive(Default)]
struct Fields {
    instance: Option<String>,
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "instance" => self.instance = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "instance" => self.instance = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for InstanceLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(instance), Some(span)) = (fields.instance, ctx.span(id)) {
            span.extensions_mut().insert(SpanInstance(instance));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let instance = fields.instance.take().or_else(|| {
            ctx.event_scope(event)?.find_map(|span| span.extensions().get::<SpanInstance>().map(|i| i.0.clone()))
        });
        let instance = instance.unwrap_or_else(|| ORCHESTRATOR.to_string());
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let mut text = fields.message;
        text.push_str(&fields.rest);
        if text.len() > LINE_BYTES {
            let mut cut = LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.push(instance, LogRecord { at: iot2mqtt_contract::time::now(), level, text });
    }
}

/// The filter directive for a `LOG_LEVEL` value.
fn filter(level: Option<&str>) -> String {
    let level = level.map(str::trim).filter(|l| !l.is_empty()).unwrap_or("info").to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn".to_string(),
        "critical" | "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    // The embedded broker's library reports every client's disconnection at info and its
    // packets at debug; its warnings are what an operator needs, unless asked for more.
    let level = if level.contains("rmqtt") { level } else { format!("{level},{QUIET_BROKER}") };
    // The plugin compiler's debug lines describe its passes, a few hundred per plugin.
    if level.contains("cranelift") || level.contains("wasmtime") { level } else { format!("{level},{QUIET_COMPILER}") }
}

/// Directives that keep the plugin compiler's pass-by-pass lines out of a debug log.
const QUIET_COMPILER: &str = "cranelift_codegen=info,wasmtime=info,wasmtime_internal_cranelift=info";

/// Directives that keep the broker library's routine lines out of the log.
const QUIET_BROKER: &str = "rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lines_are_kept_by_field_and_by_span() {
        use tracing_subscriber::layer::SubscriberExt as _;

        let logs = InstanceLogs::default();
        let subscriber = tracing_subscriber::registry().with(logs.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(instance = "a", device = "lamp", "read");
            let span = tracing::info_span!("iot2mqtt.host.instance", instance = "b");
            span.in_scope(|| tracing::warn!("slow"));
            tracing::error!("no instance");
            for n in 0..LINES_PER_INSTANCE + 5 {
                tracing::debug!(instance = "c", "line {n}");
            }
            tracing::info!(instance = "a", "{}", "x".repeat(LINE_BYTES * 2));
        });
        let a = logs.tail("a", 10);
        assert_eq!((a[0].level, a[0].text.as_str()), ("info", "read device=lamp"));
        assert!(a[1].text.len() <= LINE_BYTES + '…'.len_utf8(), "long lines are cut");
        assert_eq!(
            logs.tail("b", 10).iter().map(|r| (r.level, r.text.as_str())).collect::<Vec<_>>(),
            [("warning", "slow")]
        );
        let c = logs.tail("c", usize::MAX);
        assert_eq!(c.len(), LINES_PER_INSTANCE, "bounded");
        assert_eq!(c.last().map(|r| r.text.as_str()), Some(format!("line {}", LINES_PER_INSTANCE + 4).as_str()));
        assert_eq!(logs.tail("c", 2).len(), 2);
        logs.forget("c");
        assert!(logs.tail("c", 10).is_empty());
        assert_eq!(logs.tail(ORCHESTRATOR, 10).iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["no instance"]);
    }

    #[tokio::test]
    async fn a_followed_log_gives_what_was_kept_then_each_new_line_of_its_own() {
        use tracing_subscriber::layer::SubscriberExt as _;

        let logs = InstanceLogs::default();
        let subscriber = tracing_subscriber::registry().with(logs.clone());
        let _default = tracing::subscriber::set_default(subscriber);
        tracing::info!(instance = "a", "before");
        let mut following = logs.follow("a", 10);
        tracing::info!(instance = "b", "another instance");
        tracing::warn!(instance = "a", "after");
        assert_eq!(following.kept.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["before"]);
        let next = following.next().await.unwrap();
        assert_eq!((next.level, next.text.as_str()), ("warning", "after"));
    }

    #[test]
    fn level_names() {
        let cases = [
            (None, "info"),
            (Some(""), "info"),
            (Some("DEBUG"), "debug"),
            (Some("WARNING"), "warn"),
            (Some("warn"), "warn"),
            (Some("CRITICAL"), "error"),
            (Some("Fatal"), "error"),
            (Some("info,iot2mqtt_runtime=debug"), "info,iot2mqtt_runtime=debug"),
        ];
        for (input, expected) in cases {
            assert_eq!(filter(input), format!("{expected},{QUIET_BROKER},{QUIET_COMPILER}"), "{input:?}");
        }
        assert_eq!(filter(Some("debug,rmqtt=debug")), format!("debug,rmqtt=debug,{QUIET_COMPILER}"), "asked for");
        assert_eq!(filter(Some("debug,wasmtime=debug")), format!("debug,wasmtime=debug,{QUIET_BROKER}"));
    }
}
