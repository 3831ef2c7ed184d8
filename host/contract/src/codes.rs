//! Error codes and severities of the contract. Codes are UPPER_SNAKE_CASE strings on the
//! wire; the ones the host, the SDK and the orchestrator produce are [`ErrorCode`].

use serde::{Deserialize, Serialize};

/// Every error code the host, the SDK and the orchestrator produce. A plugin may report codes
/// of its own (any UPPER_SNAKE_CASE word, see [`is_valid_code`]); these are the ones that mean
/// the same thing whichever connector sends them. The suite fails when a code is used in the
/// source that is not listed here (`tests/suite/codes.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// A command payload that is not JSON, not an object, or has fields of the wrong type.
    InvalidPayload,
    /// A command whose `timestamp` is older than [`crate::command::STALE_AFTER`].
    StaleCommand,
    /// A command or request for a device the instance does not have.
    UnknownDevice,
    /// A command for a device that is configured but disabled.
    DeviceDisabled,
    /// A group command for a group the instance does not have.
    UnknownGroup,
    /// A command for a device whose queue of waiting commands is full.
    DeviceBusy,
    /// A command that did not finish within its timeout.
    Timeout,
    /// A failed periodic read of a device.
    UpdateError,
    /// A value out of range or of the wrong type.
    InvalidValue,
    /// A command to a device that takes none.
    ReadOnly,
    /// A device that does not answer.
    DeviceUnreachable,
    /// Command keys a device does not support; also a setup tool the plugin does not have.
    UnsupportedProperty,
    /// A device that refused or failed a command.
    CommandFailed,
    /// A plugin fault: a trap, an exhausted CPU budget or memory cap, a call that never returned.
    PluginFault,
    /// A plugin error whose own code was not UPPER_SNAKE_CASE.
    PluginError,
    /// A plugin that returned something other than the JSON its call promises.
    InvalidOutput,
    /// A new plugin rejected at hot swap (it failed to load, check or initialise).
    PluginRejected,
    /// A problem with the instance configuration, found by the host.
    ConfigError,
    /// A problem with the instance configuration, found by the plugin (the SDK's code).
    InvalidConfig,
    /// A plugin called before `init` (the SDK's code).
    NotInitialised,
}

impl ErrorCode {
    /// Every code, in the order of the contract's documentation.
    pub const ALL: [ErrorCode; 20] = [
        Self::InvalidPayload,
        Self::StaleCommand,
        Self::UnknownDevice,
        Self::DeviceDisabled,
        Self::UnknownGroup,
        Self::DeviceBusy,
        Self::Timeout,
        Self::UpdateError,
        Self::InvalidValue,
        Self::ReadOnly,
        Self::DeviceUnreachable,
        Self::UnsupportedProperty,
        Self::CommandFailed,
        Self::PluginFault,
        Self::PluginError,
        Self::InvalidOutput,
        Self::PluginRejected,
        Self::ConfigError,
        Self::InvalidConfig,
        Self::NotInitialised,
    ];

    /// The code as it goes on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::StaleCommand => "STALE_COMMAND",
            Self::UnknownDevice => "UNKNOWN_DEVICE",
            Self::DeviceDisabled => "DEVICE_DISABLED",
            Self::UnknownGroup => "UNKNOWN_GROUP",
            Self::DeviceBusy => "DEVICE_BUSY",
            Self::Timeout => "TIMEOUT",
            Self::UpdateError => "UPDATE_ERROR",
            Self::InvalidValue => "INVALID_VALUE",
            Self::ReadOnly => "READ_ONLY",
            Self::DeviceUnreachable => "DEVICE_UNREACHABLE",
            Self::UnsupportedProperty => "UNSUPPORTED_PROPERTY",
            Self::CommandFailed => "COMMAND_FAILED",
            Self::PluginFault => "PLUGIN_FAULT",
            Self::PluginError => "PLUGIN_ERROR",
            Self::InvalidOutput => "INVALID_OUTPUT",
            Self::PluginRejected => "PLUGIN_REJECTED",
            Self::ConfigError => "CONFIG_ERROR",
            Self::InvalidConfig => "INVALID_CONFIG",
            Self::NotInitialised => "NOT_INITIALISED",
        }
    }

    /// The listed code `code` is, if it is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().to_string()
    }
}

impl PartialEq<ErrorCode> for str {
    fn eq(&self, code: &ErrorCode) -> bool {
        self == code.as_str()
    }
}

impl PartialEq<ErrorCode> for String {
    fn eq(&self, code: &ErrorCode) -> bool {
        self.as_str() == code.as_str()
    }
}

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
    fn every_code_is_listed_once_and_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(is_valid_code(code.as_str()), "{code}");
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("UNSUPPORTED"), None);
    }

    #[test]
    fn codes() {
        for (code, ok) in
            [("TIMEOUT", true), ("E2E_FAIL", true), ("timeout", false), ("_X", false), ("", false), ("2X", false)]
        {
            assert_eq!(is_valid_code(code), ok, "{code}");
        }
    }
}
