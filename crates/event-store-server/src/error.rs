//! Errors as HTTP responses: a status and a JSON body `{"error": KIND, …}` that callers branch
//! on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use event_store::Error;
use serde_json::json;

/// A request the API refused or could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A parameter, header or body field is wrong: 422 naming it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// What was wrong (`limit`, `Expected-Version`, `events[0].data`, …).
        field: String,
        /// Why.
        reason: String,
    },
    /// No such stream or event: 404.
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or unknown ones: 401.
    #[error("a bearer token is needed")]
    Unauthorized,
    /// The token lacks the scope: 403.
    #[error("the token lacks the `{0}` scope")]
    Forbidden(&'static str),
    /// What the store said.
    #[error(transparent)]
    Store(#[from] Error),
}

impl ApiError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::Invalid { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "field": field, "reason": reason}),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": what}),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": self.to_string()}),
            ),
            Self::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "message": self.to_string()}),
            ),
            Self::Store(Error::Conflict {
                stream,
                expected,
                actual,
            }) => (
                StatusCode::CONFLICT,
                json!({
                    "error": "conflict",
                    "stream": stream,
                    "expected": expected.to_string(),
                    "actual": actual,
                    "message": self.to_string(),
                }),
            ),
            Self::Store(Error::DuplicateId { .. }) => (
                StatusCode::CONFLICT,
                json!({"error": "duplicate_id", "message": self.to_string()}),
            ),
            Self::Store(Error::InvalidInput { field, reason }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "field": field, "reason": reason}),
            ),
            Self::Store(e) => {
                tracing::error!(error = %e, "a request failed in the store");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "store", "message": e.to_string()}),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
