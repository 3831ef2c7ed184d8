//! One logging setup for both binaries (`iot2mqtt-host` and `iot2mqtt`): stderr, the level from
//! `LOG_LEVEL` and the format from `LOG_FORMAT`. The caller reads the environment and passes the
//! values in, so this crate still reads none itself.

use tracing_subscriber::EnvFilter;

/// Log to stderr. `level` is `LOG_LEVEL` (default `info`; the contract's names `WARNING`,
/// `CRITICAL` and `FATAL` are understood, any case, as is a full filter such as
/// `info,iot2mqtt_runtime=debug`); `format` is `LOG_FORMAT` (`json` for one JSON object per
/// line, anything else for text, coloured on a terminal).
pub fn init(level: Option<&str>, format: Option<&str>) {
    let filter = EnvFilter::try_new(filter(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if format.is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

/// The filter directive for a `LOG_LEVEL` value.
fn filter(level: Option<&str>) -> String {
    let level = level.map(str::trim).filter(|l| !l.is_empty()).unwrap_or("info").to_ascii_lowercase();
    match level.as_str() {
        "warning" => "warn".to_string(),
        "critical" | "fatal" => "error".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::filter;

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
            assert_eq!(filter(input), expected, "{input:?}");
        }
    }
}
