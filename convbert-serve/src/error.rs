//! Errors: [`ServeError`] for starting the server, [`ApiError`] for one request. Every request
//! error is JSON `{"error": "...", "error_type": "..."}` with TEI's error types and status codes,
//! and leaves the server serving.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use convbert_pipelines::PipelineError;
use serde::Serialize;
use utoipa::ToSchema;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A bad option value.
    #[error("{0}")]
    Config(String),
    /// Loading or warming up the model.
    #[error("{0}")]
    Model(#[from] PipelineError),
    /// Binding or serving the socket.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// TEI's error kinds (serialized as TEI writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    /// The model is not loaded yet (503).
    Unhealthy,
    /// The model failed on a batch (424).
    Backend,
    /// Too many requests in flight (429).
    Overloaded,
    /// A request that breaks a limit or a rule (413 / 422 / 400).
    Validation,
    /// An input that cannot be tokenized or used (422).
    Tokenizer,
    /// No inputs (400).
    Empty,
    /// Missing or wrong API key (401).
    Unauthorized,
    /// No such route (404) or method (405).
    NotFound,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
    /// Its kind.
    pub error_type: ErrorType,
}

/// A failed request: status, kind and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    /// 422: a request that breaks a rule.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Validation,
            message,
        )
    }

    /// 413: a request too large (body, batch size).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Validation,
            message,
        )
    }

    /// 400: a body that is not JSON.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::Validation, message)
    }

    /// 400: no inputs.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::Empty, message)
    }

    /// 424: the model failed on the batch holding this request.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FAILED_DEPENDENCY, ErrorType::Backend, message)
    }

    /// 503: the model is not ready (or gone).
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unhealthy,
            message,
        )
    }

    /// The error of input `index` of a request (`None` for a single input).
    pub fn input(index: Option<usize>, e: PipelineError) -> Self {
        let at = index.map_or(String::new(), |i| format!("input {i}: "));
        match e {
            PipelineError::TooLong { .. } => Self::validation(format!(
                "{at}{e}; set `truncate: true` (or start the server with --auto-truncate) to cut it"
            )),
            PipelineError::Input(_) | PipelineError::Tokenizer(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorType::Tokenizer,
                format!("{at}{e}"),
            ),
            PipelineError::Option { .. } => Self::validation(format!("{at}{e}")),
            other => Self::backend(format!("{at}{other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.message,
            error_type: self.error_type,
        };
        (self.status, Json(body)).into_response()
    }
}
