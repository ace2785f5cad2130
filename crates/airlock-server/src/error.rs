//! The server's errors and how each is answered over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// What stops a server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] airlock_store::Error),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
}

/// An error answered to an HTTP client: a status and a reason, as `{"error": reason}`.
/// Reasons never carry secrets: they are written from names, never from values.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason)
    }
}

impl From<airlock_store::Error> for ApiError {
    fn from(error: airlock_store::Error) -> Self {
        match error {
            airlock_store::Error::NotFound(what) => Self::not_found(format!("{what} not found")),
            airlock_store::Error::Conflict(why) => Self::conflict(why),
            other => {
                tracing::error!(error = %other, "store failure while answering");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response()
    }
}
