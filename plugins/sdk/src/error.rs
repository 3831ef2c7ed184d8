use std::fmt;

use crate::bindings::iot2mqtt::connector::types as wit;

/// A failure reported to the host as an outcome (not a fault). Each kind becomes the
/// contract's error code named on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `INVALID_VALUE`: a value has the wrong type or is out of range.
    InvalidValue(String),
    /// `READ_ONLY`: the device takes no commands.
    ReadOnly(String),
    /// `DEVICE_UNREACHABLE`: the device does not answer.
    Unreachable(String),
    /// `UNSUPPORTED_PROPERTY`: keys the device does not support.
    Unsupported(String),
    /// `COMMAND_FAILED`: the device refused or failed the command.
    Failed(String),
    /// Any other failure, with an UPPER_SNAKE_CASE code of the plugin's choosing.
    Other {
        /// The code, such as `AUTH_FAILED`.
        code: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// `INVALID_VALUE`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::InvalidValue(message.into())
    }
    /// `READ_ONLY`.
    pub fn read_only(message: impl Into<String>) -> Self {
        Self::ReadOnly(message.into())
    }
    /// `DEVICE_UNREACHABLE`.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::Unreachable(message.into())
    }
    /// `UNSUPPORTED_PROPERTY`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::Unsupported(message.into())
    }
    /// `COMMAND_FAILED`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
    /// A failure with its own code.
    pub fn other(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Other { code: code.into(), message: message.into() }
    }

    /// The contract's error code of this failure.
    pub fn code(&self) -> &str {
        match self {
            Self::InvalidValue(_) => "INVALID_VALUE",
            Self::ReadOnly(_) => "READ_ONLY",
            Self::Unreachable(_) => "DEVICE_UNREACHABLE",
            Self::Unsupported(_) => "UNSUPPORTED_PROPERTY",
            Self::Failed(_) => "COMMAND_FAILED",
            Self::Other { code, .. } => code,
        }
    }

    /// The message of this failure.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidValue(m)
            | Self::ReadOnly(m)
            | Self::Unreachable(m)
            | Self::Unsupported(m)
            | Self::Failed(m) => m,
            Self::Other { message, .. } => message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<Error> for wit::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidValue(m) => Self::InvalidValue(m),
            Error::ReadOnly(m) => Self::ReadOnly(m),
            Error::Unreachable(m) => Self::Unreachable(m),
            Error::Unsupported(m) => Self::Unsupported(m),
            Error::Failed(m) => Self::Failed(m),
            Error::Other { code, message } => Self::Other(wit::CodedError { code, message }),
        }
    }
}
