//! Error codes and severities of the contract. Codes are UPPER_SNAKE_CASE strings on the
//! wire; the ones the host itself produces are named here.

use serde::{Deserialize, Serialize};

/// A command payload that is not JSON, not an object, or has fields of the wrong type.
pub const INVALID_PAYLOAD: &str = "INVALID_PAYLOAD";
/// A command whose `timestamp` is older than [`crate::command::STALE_AFTER`].
pub const STALE_COMMAND: &str = "STALE_COMMAND";
/// A command or request for a device the instance does not have.
pub const UNKNOWN_DEVICE: &str = "UNKNOWN_DEVICE";
/// A command for a device that is configured but disabled.
pub const DEVICE_DISABLED: &str = "DEVICE_DISABLED";
/// A command that did not finish within its timeout.
pub const TIMEOUT: &str = "TIMEOUT";
/// A failed periodic read of a device.
pub const UPDATE_ERROR: &str = "UPDATE_ERROR";
/// A value out of range or of the wrong type.
pub const INVALID_VALUE: &str = "INVALID_VALUE";
/// A command to a device that takes none.
pub const READ_ONLY: &str = "READ_ONLY";
/// A device that does not answer.
pub const DEVICE_UNREACHABLE: &str = "DEVICE_UNREACHABLE";
/// Command keys a device does not support.
pub const UNSUPPORTED_PROPERTY: &str = "UNSUPPORTED_PROPERTY";
/// A device that refused or failed a command.
pub const COMMAND_FAILED: &str = "COMMAND_FAILED";
/// A plugin fault: a trap, an exhausted CPU budget or memory cap, a call that never returned.
pub const PLUGIN_FAULT: &str = "PLUGIN_FAULT";
/// A plugin error whose own code was not UPPER_SNAKE_CASE.
pub const PLUGIN_ERROR: &str = "PLUGIN_ERROR";
/// A new plugin rejected at hot swap (it failed to load, check or initialise).
pub const PLUGIN_REJECTED: &str = "PLUGIN_REJECTED";
/// A problem with the instance configuration.
pub const CONFIG_ERROR: &str = "CONFIG_ERROR";

/// Whether `code` is UPPER_SNAKE_CASE (`A-Z`, `0-9`, `_`, starting with a letter).
pub fn is_valid_code(code: &str) -> bool {
    code.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// How much an error matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Something went wrong that is expected to pass (a device offline for a while).
    Warning,
    /// An operation failed.
    Error,
    /// The instance cannot do its job.
    Critical,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for (code, ok) in
            [("TIMEOUT", true), ("E2E_FAIL", true), ("timeout", false), ("_X", false), ("", false), ("2X", false)]
        {
            assert_eq!(is_valid_code(code), ok, "{code}");
        }
    }
}
