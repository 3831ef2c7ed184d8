//! One logging setup for both binaries (`iot2mqtt-host` and `iot2mqtt`): stderr, the level from
//! `LOG_LEVEL` and the format from `LOG_FORMAT`. The caller reads the environment and passes the
//! values in, so this crate still reads none itself.
//!
//! A process that runs instances itself (`serve` with the embedded runtime) also keeps the last
//! lines of each instance's log in memory ([`InstanceLogs`]), so a person can read them where a
//! container's log would be: an event belongs to an instance when it carries an `instance` field
//! or happens inside an instance's span.

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
/// line, anything else for text, coloured on a terminal).
pub fn init(level: Option<&str>, format: Option<&str>) {
    init_with(level, format, None);
}

/// [`init`], also keeping each instance's recent lines in `instances`.
pub fn init_with(level: Option<&str>, format: Option<&str>, instances: Option<InstanceLogs>) {
    let filter = EnvFilter::try_new(filter(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = format.is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_target(false));
    let _ = tracing_subscriber::registry().with(filter).with(text).with(json).with(instances).try_init();
}

/// Lines kept per instance.
pub const LINES_PER_INSTANCE: usize = 500;
/// Longest line kept, bytes; longer ones are cut.
pub const LINE_BYTES: usize = 2048;

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
#[derive(Debug, Clone, Default)]
pub struct InstanceLogs {
    lines: Arc<Mutex<HashMap<String, VecDeque<LogRecord>>>>,
}

impl InstanceLogs {
    /// The last `most` lines of `instance`, oldest first.
    pub fn tail(&self, instance: &str, most: usize) -> Vec<LogRecord> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.get(instance).map_or_else(Vec::new, |l| l.iter().skip(l.len().saturating_sub(most)).cloned().collect())
    }

    /// Drop what is kept of `instance` (it was deleted).
    pub fn forget(&self, instance: &str) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).remove(instance);
    }

    fn push(&self, instance: String, record: LogRecord) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let kept = lines.entry(instance).or_default();
        if kept.len() == LINES_PER_INSTANCE {
            kept.pop_front();
        }
        kept.push_back(record);
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
        let Some(instance) = instance else { return };
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
    if level.contains("rmqtt") { level } else { format!("{level},{QUIET_BROKER}") }
}

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
            assert_eq!(filter(input), format!("{expected},{QUIET_BROKER}"), "{input:?}");
        }
        assert_eq!(filter(Some("debug,rmqtt=debug")), "debug,rmqtt=debug", "asked for");
    }
}
