//! Timestamps (contract, section 2): written as RFC 3339 UTC with milliseconds
//! (`2025-10-13T10:30:00.000Z`), read offset-aware, a timestamp without offset being UTC.

use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub use time::OffsetDateTime as DateTime;

const WRITE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const NAIVE_T: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
const NAIVE_SPACE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]");

/// The current time, formatted for the wire.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Format any instant as RFC 3339 UTC with milliseconds.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(WRITE).unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Parse a timestamp: RFC 3339 with `Z` or an offset, or without offset (then UTC), with `T`
/// or a space between date and time, with or without fractional seconds.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    [NAIVE_T, NAIVE_SPACE]
        .iter()
        .find_map(|f| PrimitiveDateTime::parse(text, f).ok())
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn writes_utc_with_millis() {
        assert_eq!(format(datetime!(2025-10-13 10:30:00.123456 +03:00)), "2025-10-13T07:30:00.123Z");
        assert_eq!(format(datetime!(2025-10-13 10:30:00 UTC)), "2025-10-13T10:30:00.000Z");
    }

    #[test]
    fn reads_offsets() {
        let utc = datetime!(2025-10-13 10:30:00 UTC);
        let cases = [
            ("2025-10-13T10:30:00Z", Some(utc)),
            ("2025-10-13T10:30:00.000Z", Some(utc)),
            ("2025-10-13T13:30:00+03:00", Some(utc)),
            ("2025-10-13T05:30:00-05:00", Some(utc)),
            ("2025-10-13T10:30:00", Some(utc)),
            ("2025-10-13 10:30:00", Some(utc)),
            ("2025-10-13T10:30:00.5", Some(datetime!(2025-10-13 10:30:00.5 UTC))),
            ("yesterday", None),
            ("2025-13-13T10:30:00Z", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), expected, "input {input:?}");
        }
    }
}
