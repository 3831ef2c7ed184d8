//! Why the instances service refused a request or failed: domain errors, turned into HTTP
//! statuses only by `api/`.

use iot2mqtt_contract::InstanceId;

use super::MAX_PLUGIN_BYTES;

/// Why the instances service refused a request or failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The request is wrong; `field` names where, when one field is at fault.
    #[error("{message}")]
    Invalid {
        /// The field at fault (`devices`, `connector_type`…).
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// No such instance.
    #[error("no instance \"{id}\" of connector \"{connector}\"")]
    NotFound {
        /// The connector asked for.
        connector: String,
        /// The id asked for.
        id: String,
    },
    /// The id is taken.
    #[error("an instance \"{0}\" exists already")]
    Exists(InstanceId),
    /// An uploaded plugin over [`MAX_PLUGIN_BYTES`].
    #[error("a plugin may have at most {MAX_PLUGIN_BYTES} bytes")]
    PluginTooLarge,
    /// A plugin that failed to load, check or swap in; the instance runs what it ran.
    #[error("{0}")]
    PluginRejected(String),
    /// Something the instance needs is not there (its connector's plugin, the runtime).
    #[error("{0}")]
    Unavailable(String),
    /// Files or secrets failed: an I/O error or a bug.
    #[error("{0}")]
    Internal(String),
}

impl InstanceError {
    /// A request error naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: Some(field.to_string()), message: message.into() }
    }

    /// An internal failure.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<crate::request::FieldError> for InstanceError {
    fn from(e: crate::request::FieldError) -> Self {
        Self::Invalid { field: (!e.field.is_empty()).then_some(e.field), message: e.message }
    }
}
