//! The API's one error type. Client errors carry their detail; server errors a generic body,
//! with the detail in a log line inside the request's span (`api/trace.rs`), which names the
//! request id the response carries in `x-request-id`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::flows::SessionError;
use crate::instances::InstanceError;
use crate::request::FieldError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not allowed on this resource.
    #[error("{0}")]
    Forbidden(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: it exists already.
    #[error("{message}")]
    Conflict {
        /// The field that collides.
        field: Option<String>,
        /// What collides.
        message: String,
    },
    /// 413
    #[error("{0}")]
    TooLarge(String),
    /// 415: a body of another type than the route takes.
    #[error("{0}")]
    UnsupportedType(String),
    /// 421: a `Host` this server is not known as.
    #[error("{0}")]
    MisdirectedHost(String),
    /// 422: understood but invalid.
    #[error("{message}")]
    Invalid {
        /// The offending field.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 429
    #[error("{message}")]
    TooManyRequests {
        /// Seconds to wait.
        retry_after: u64,
        /// Why.
        message: String,
    },
    /// 503: a dependency is not there (Docker, the broker).
    #[error("{0}")]
    Unavailable(String),
    /// 504: a device did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 500: a bug or an I/O failure; logged, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::guard::Refusal> for AppError {
    fn from(refusal: crate::guard::Refusal) -> Self {
        use crate::guard::Refusal;
        match refusal {
            Refusal::UnknownHost(_) => Self::MisdirectedHost(refusal.to_string()),
            Refusal::CrossSite(_) => Self::Forbidden(refusal.to_string()),
            Refusal::WrongType { .. } => Self::UnsupportedType(refusal.to_string()),
        }
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        let field = (!e.field.is_empty()).then_some(e.field);
        Self::Invalid { field, message: e.message }
    }
}

impl From<InstanceError> for AppError {
    fn from(e: InstanceError) -> Self {
        match e {
            InstanceError::Invalid { field, message } => Self::Invalid { field, message },
            InstanceError::NotFound { .. } => Self::NotFound(e.to_string()),
            InstanceError::Exists(_) => Self::Conflict { field: Some("instance_id".into()), message: e.to_string() },
            InstanceError::PluginTooLarge => Self::TooLarge(e.to_string()),
            InstanceError::PluginRejected(message) => Self::Invalid { field: None, message },
            InstanceError::Unavailable(message) => Self::Unavailable(message),
            InstanceError::Internal(message) => Self::internal(message),
        }
    }
}

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound(message) => Self::NotFound(message),
            SessionError::Invalid { field, message } => Self::Invalid { field, message },
            SessionError::BadInput(message) => Self::BadRequest(message),
            SessionError::Finished => Self::Conflict { field: None, message: e.to_string() },
            SessionError::Instance(e) => e.into(),
            SessionError::Internal(message) => Self::internal(message),
        }
    }
}

impl AppError {
    /// A 422 naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: Some(field.to_string()), message: message.into() }
    }

    /// A 500 from anything displayable.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{error}"))
    }
}

impl AppError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let field = match &self {
            Self::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                let body = Json(json!({"error": "internal error; see the server log"}));
                return (status, body).into_response();
            }
            Self::Conflict { field, .. } | Self::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let mut body = json!({"error": self.to_string()});
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyRequests { retry_after, .. } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
