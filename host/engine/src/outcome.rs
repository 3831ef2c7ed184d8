//! What a call into a plugin can end in besides success: a [`Failure`] the plugin reported (an
//! outcome, with the contract's code) or a [`Fault`] (the lane died).

use iot2mqtt_contract::codes::{ErrorCode, is_valid_code};

use crate::bindings::iot2mqtt::connector::types;

/// A failure the plugin reported: an outcome, with the contract's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// UPPER_SNAKE_CASE.
    pub code: String,
    /// The plugin's message.
    pub message: String,
}

/// Why a lane died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access.
    Trap,
    /// A call spent its whole CPU budget (an endless loop).
    CpuBudget,
    /// The plugin needed more memory than its cap.
    MemoryLimit,
    /// A call did not return within its wall-clock limit.
    Hung,
    /// The plugin could not be instantiated or broke the interface.
    Broken,
}

/// A lane died. The plugin instance is gone; nothing more can be called on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// For people: what the plugin was doing and what went wrong, with its last words on
    /// stderr (a panic's message) when there are any.
    pub message: String,
}

impl From<types::Error> for Failure {
    fn from(error: types::Error) -> Self {
        let (code, message) = match error {
            types::Error::InvalidValue(m) => (ErrorCode::InvalidValue.into(), m),
            types::Error::ReadOnly(m) => (ErrorCode::ReadOnly.into(), m),
            types::Error::Unreachable(m) => (ErrorCode::DeviceUnreachable.into(), m),
            types::Error::Unsupported(m) => (ErrorCode::UnsupportedProperty.into(), m),
            types::Error::Failed(m) => (ErrorCode::CommandFailed.into(), m),
            types::Error::Other(types::CodedError { code, message }) => (code, message),
        };
        if is_valid_code(&code) {
            Self { code, message }
        } else {
            Self { code: ErrorCode::PluginError.into(), message: format!("{code}: {message}") }
        }
    }
}
