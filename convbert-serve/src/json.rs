//! The request body as JSON, whatever the Content-Type says (curl users often omit it), with
//! TEI's statuses: a body over `--payload-limit` is 413, text that is not JSON (or not UTF-8) is
//! 400, JSON of the wrong shape is 422, each as an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A request body parsed as `T`.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is larger than --payload-limit")
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::validation(format!("invalid request: {e}")),
                Category::Syntax | Category::Eof | Category::Io => {
                    ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
                }
            }
        })
    }
}
