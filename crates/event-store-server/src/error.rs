//! Errors as HTTP responses: a status and a JSON body `{"error": KIND, …}` that callers branch
//! on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use event_store::Error;

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

/// What kind of error a response reports: callers branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A parameter, header or body field is wrong (422; `field` and `reason` say which and why).
    Invalid,
    /// No such stream or event (404).
    NotFound,
    /// No bearer token, or an unknown one (401).
    Unauthorized,
    /// The token lacks the scope (403).
    Forbidden,
    /// The stream is not at the expected version (409; `stream`, `expected`, `actual`).
    Conflict,
    /// An event id is already stored with other content (409).
    DuplicateId,
    /// The stream is closed: no appends, no reads by stream (410; `stream`).
    StreamClosed,
    /// The store failed (503); retrying may succeed.
    Store,
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What kind of error.
    pub error: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// `invalid`: the parameter, header or body field (`limit`, `Expected-Version`,
    /// `events[0].data`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `invalid`: why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `conflict` and `stream_closed`: the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `conflict`: the version the append expected (`any`, `no-stream`, `exists` or a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// `conflict`: the stream's version when the append was refused (`null`: the stream does not
    /// exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub actual: Option<Option<u64>>,
}

impl ApiError {
    /// The status and body this error is answered with.
    pub fn to_body(&self) -> (StatusCode, ErrorBody) {
        let message = self.to_string();
        let body = |error| ErrorBody {
            error,
            message: message.clone(),
            field: None,
            reason: None,
            stream: None,
            expected: None,
            actual: None,
        };
        match self {
            Self::Invalid { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody {
                    field: Some(field.clone()),
                    reason: Some(reason.clone()),
                    ..body(ErrorKind::Invalid)
                },
            ),
            Self::Store(Error::InvalidInput { field, reason }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody {
                    field: Some(field.to_string()),
                    reason: Some(reason.clone()),
                    ..body(ErrorKind::Invalid)
                },
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, body(ErrorKind::NotFound)),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, body(ErrorKind::Unauthorized)),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, body(ErrorKind::Forbidden)),
            Self::Store(Error::Conflict {
                stream,
                expected,
                actual,
            }) => (
                StatusCode::CONFLICT,
                ErrorBody {
                    stream: Some(stream.clone()),
                    expected: Some(expected.to_string()),
                    actual: Some(*actual),
                    ..body(ErrorKind::Conflict)
                },
            ),
            Self::Store(Error::StreamClosed { stream }) => (
                StatusCode::GONE,
                ErrorBody {
                    stream: Some(stream.clone()),
                    ..body(ErrorKind::StreamClosed)
                },
            ),
            Self::Store(Error::DuplicateId { .. }) => {
                (StatusCode::CONFLICT, body(ErrorKind::DuplicateId))
            }
            Self::Store(e) => {
                tracing::error!(error = %e, "a request failed in the store");
                (StatusCode::SERVICE_UNAVAILABLE, body(ErrorKind::Store))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.to_body();
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
