//! Commands and state requests as they arrive (contract, section 4), parsed into validated
//! types. Rule 1 (not JSON, not an object) and field errors are [`CommandError`]s; the rules
//! that need the instance (stale, unknown device, duplicate) are applied by the host.

use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::message::Object;

/// A command older than this is not executed (`STALE_COMMAND`).
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How long a command may take when it names no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `timeout` a command may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a command id is remembered for duplicate detection.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command's id; with it, the command gets exactly one response.
    pub id: Option<String>,
    /// When it was sent, offset-aware.
    pub timestamp: Option<OffsetDateTime>,
    /// What to set.
    pub values: Object,
    /// How long it may take.
    pub timeout: Duration,
}

/// Why a payload is not a command. `id` is kept when it could be read, so that the sender
/// still gets its one response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CommandError {
    /// The command's id, when the payload was an object with a usable one.
    pub id: Option<String>,
    /// What is wrong, naming the field.
    pub reason: String,
}

impl Command {
    /// Parse a command payload: `{"id"?, "timestamp"?, "values":{…}, "timeout"?}`, or a bare
    /// object of values (minus `id`, `timestamp` and `timeout`).
    pub fn parse(payload: &[u8]) -> Result<Self, CommandError> {
        let mut object = parse_object(payload)?;
        let id = match object.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(error(None, format!("\"id\" must be a non-empty string or a number, not {other}")));
            }
        };
        let fail = |reason: String| error(id.clone(), reason);
        let timestamp = match object.remove("timestamp") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                crate::time::parse(&s).ok_or_else(|| fail(format!("\"timestamp\" is not an RFC 3339 time: {s:?}")))?,
            ),
            Some(other) => return Err(fail(format!("\"timestamp\" must be a string, not {other}"))),
        };
        let timeout = match object.remove("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(ms) if ms > 0 => Duration::from_millis(ms).min(MAX_TIMEOUT),
                _ => return Err(fail(format!("\"timeout\" must be a positive number of milliseconds, not {n}"))),
            },
            Some(other) => return Err(fail(format!("\"timeout\" must be a number of milliseconds, not {other}"))),
        };
        let values = match object.remove("values") {
            Some(Value::Object(values)) => values,
            Some(other) => return Err(fail(format!("\"values\" must be an object, not {other}"))),
            None => object,
        };
        Ok(Self { id, timestamp, values, timeout })
    }

    /// Whether the command is older than [`STALE_AFTER`] at `now`.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.timestamp.is_some_and(|sent| now - sent > STALE_AFTER)
    }
}

/// A state request: `{}` or `{"properties": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetRequest {
    /// Only these keys, in a second, not retained publication.
    pub properties: Option<Vec<String>>,
}

impl GetRequest {
    /// Parse a request; an empty payload is `{}`.
    pub fn parse(payload: &[u8]) -> Result<Self, CommandError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let mut object = parse_object(payload)?;
        match object.remove("properties") {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    other => Err(error(None, format!("\"properties\" must hold strings, not {other}"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|properties| Self { properties: Some(properties) }),
            Some(other) => Err(error(None, format!("\"properties\" must be a list, not {other}"))),
        }
    }
}

fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, CommandError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(error(None, format!("the payload must be a JSON object, not {}", kind(&other)))),
        Err(e) => Err(error(None, format!("the payload is not JSON: {e}"))),
    }
}

/// What a JSON value is, for a message that says what was expected instead
/// (`must be an object, not an array`).
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn error(id: Option<String>, reason: String) -> CommandError {
    CommandError { id, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn values(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parses_commands() {
        let cases: Vec<(&str, Result<Command, &str>)> = vec![
            (
                r#"{"id":"a","timestamp":"2025-10-13T10:30:00Z","values":{"power":true},"timeout":500}"#,
                Ok(Command {
                    id: Some("a".into()),
                    timestamp: Some(datetime!(2025-10-13 10:30:00 UTC)),
                    values: values(json!({"power": true})),
                    timeout: Duration::from_millis(500),
                }),
            ),
            (
                r#"{"power":false,"id":7}"#,
                Ok(Command {
                    id: Some("7".into()),
                    timestamp: None,
                    values: values(json!({"power": false})),
                    timeout: DEFAULT_TIMEOUT,
                }),
            ),
            (r#"{}"#, Ok(Command { id: None, timestamp: None, values: Map::new(), timeout: DEFAULT_TIMEOUT })),
            ("not json", Err("the payload is not JSON")),
            ("[1,2]", Err("the payload must be a JSON object, not an array")),
            ("42", Err("the payload must be a JSON object, not a number")),
            (r#"{"values":5}"#, Err("\"values\" must be an object, not 5")),
            (r#"{"timestamp":"soon"}"#, Err("\"timestamp\" is not an RFC 3339 time")),
            (r#"{"timeout":-5}"#, Err("\"timeout\" must be a positive number")),
            (r#"{"id":{"x":1}}"#, Err("\"id\" must be a non-empty string")),
        ];
        for (payload, expected) in cases {
            match (Command::parse(payload.as_bytes()), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "payload {payload}"),
                (Err(got), Err(want)) => assert!(got.reason.starts_with(want), "payload {payload}: {got}"),
                (got, want) => panic!("payload {payload}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn field_errors_keep_the_id() {
        let err = Command::parse(br#"{"id":"k","values":[]}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("k"));
    }

    #[test]
    fn staleness_is_offset_aware() {
        let now = datetime!(2025-10-13 10:30:00 UTC);
        let at = |ts: &str| Command::parse(format!(r#"{{"timestamp":"{ts}"}}"#).as_bytes()).unwrap();
        assert!(!at("2025-10-13T13:29:45+03:00").is_stale(now));
        assert!(at("2025-10-13T13:29:00+03:00").is_stale(now));
        assert!(!at("2025-10-13T10:29:45").is_stale(now));
        assert!(at("2025-10-13T10:29:00Z").is_stale(now));
        assert!(!Command::parse(b"{}").unwrap().is_stale(now));
    }

    #[test]
    fn get_requests() {
        assert_eq!(GetRequest::parse(b"").unwrap(), GetRequest::default());
        assert_eq!(GetRequest::parse(b"{}").unwrap(), GetRequest::default());
        assert_eq!(
            GetRequest::parse(br#"{"properties":["power"]}"#).unwrap().properties,
            Some(vec!["power".to_string()])
        );
        assert!(GetRequest::parse(br#"{"properties":"power"}"#).is_err());
        assert!(GetRequest::parse(b"[]").is_err());
    }
}
