//! Every error code the source uses is one the contract lists (`ErrorCode`), and every listed
//! code is documented for connector authors. A code typed as a loose string drifts: the tool
//! runner once tested for `UNSUPPORTED` while the SDK sent `UNSUPPORTED_PROPERTY`.

use std::path::{Path, PathBuf};

use iot2mqtt_contract::ErrorCode;

/// Upper-case words in the source that are not error codes: environment variables, log levels,
/// signals, protocol words (HTTP methods among them).
const NOT_CODES: &[&str] = &[
    "ALL",
    "BASE",
    "CLK_TCK",
    "CONNECTOR_TYPE",
    "CRITICAL",
    "DEBUG",
    "DELETE",
    "DENY",
    "ERROR",
    "FAIL",
    "FATAL",
    "GET",
    "HEAD",
    "HOME",
    "INFO",
    "INSTANCE_NAME",
    "LANG",
    "NOTIFY",
    "OFF",
    "OPTIONS",
    "PASS",
    "PATCH",
    "PATH",
    "POST",
    "PUT",
    "S256",
    "SIGKILL",
    "SIGTERM",
    "SKIP",
    "TRACE",
    "WARN",
    "WARNING",
];
/// Prefixes of environment variable names, and of Linux capabilities.
const ENV_PREFIXES: &[&str] = &["MQTT", "IOT2MQTT_", "CARGO_", "XDG_", "LOG_", "CAP_"];

#[test]
fn every_code_in_the_source_is_listed() {
    let root = repo_root();
    let mut unlisted = Vec::new();
    for dir in ["host", "web", "plugins/sdk/src", "plugins/demo/src", "plugins/yeelight/src", "plugins/shelly/src"] {
        for file in rust_files(&root.join(dir)) {
            if file.ends_with("host/contract/src/codes.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for word in upper_snake_literals(&text) {
                let not_code = NOT_CODES.contains(&word.as_str()) || ENV_PREFIXES.iter().any(|p| word.starts_with(p));
                if !not_code && ErrorCode::parse(&word).is_none() {
                    unlisted.push(format!("{}: \"{word}\"", file.strip_prefix(&root).unwrap().display()));
                }
            }
        }
    }
    assert!(unlisted.is_empty(), "codes used but not listed in ErrorCode: {unlisted:#?}");
}

#[test]
fn every_listed_code_is_documented_for_connector_authors() {
    let doc = std::fs::read_to_string(repo_root().join("connectors/README.md")).unwrap();
    let missing: Vec<_> = ErrorCode::ALL.iter().filter(|c| !doc.contains(&format!("| `{c}` |"))).collect();
    assert!(missing.is_empty(), "codes missing from the table in connectors/README.md: {missing:?}");
}

#[test]
fn the_scanner_finds_codes_and_only_codes() {
    let text = r#"let a = "UNSUPPORTED"; let b = "MQTT_HOST"; let c = "lower"; let d = "A_B c";"#;
    assert_eq!(upper_snake_literals(text), vec!["UNSUPPORTED".to_string(), "MQTT_HOST".to_string()]);
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && entry.file_name() != "target" {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// String literals that are one UPPER_SNAKE_CASE word of three characters or more.
fn upper_snake_literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() >= 3
                && s.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_string)
        .collect()
}
