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
    /// `--tls-cert`/`--tls-key` cannot be used (the message names the file).
    #[error("{0}")]
    Tls(String),
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
    /// How to get past it, when there is something useful to say.
    pub help: Option<String>,
    /// Files that do not validate: every problem, positioned as `validate` reports it.
    pub problems: Option<Vec<airlock_ops::validate::Problem>>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            help: None,
            problems: None,
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

impl From<airlock_engine::EngineError> for ApiError {
    fn from(error: airlock_engine::EngineError) -> Self {
        match error {
            airlock_engine::EngineError::Store(e) => Self::from(e),
            airlock_engine::EngineError::Version { .. } => {
                tracing::error!(error = %error, "a run could not be accepted");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the deployed workflow version cannot be loaded",
                )
            }
            airlock_engine::EngineError::Stopped { .. } => {
                tracing::error!(error = %error, "a run could not be accepted");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the delivery could not be accepted; retry it",
                )
            }
        }
    }
}

impl From<airlock_ops::OpsError> for ApiError {
    fn from(error: airlock_ops::OpsError) -> Self {
        use airlock_ops::OpsError;
        let error = match error {
            OpsError::Store(e) => return Self::from(e),
            other => other,
        };
        let help = error.help().map(str::to_owned);
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reason = error.to_string();
        let problems = match error {
            OpsError::Invalid { problems, .. } => Some(problems),
            _ => None,
        };
        Self {
            status,
            reason,
            help,
            problems,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = match self.help {
            Some(help) => serde_json::json!({ "error": self.reason, "help": help }),
            None => serde_json::json!({ "error": self.reason }),
        };
        if let Some(problems) = self.problems {
            body["problems"] = serde_json::to_value(problems).unwrap_or_default();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_ops::OpsError;

    #[test]
    fn each_refusal_of_an_operation_has_its_status_and_keeps_its_hint() {
        let cases = [
            (OpsError::bad_request("b", None), StatusCode::BAD_REQUEST),
            (
                OpsError::forbidden("f", Some("h".into())),
                StatusCode::FORBIDDEN,
            ),
            (OpsError::not_found("n", None), StatusCode::NOT_FOUND),
            (OpsError::conflict("c", None), StatusCode::CONFLICT),
            (
                OpsError::Unavailable {
                    message: "u".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                OpsError::Store(airlock_store::Error::NotFound("run x".into())),
                StatusCode::NOT_FOUND,
            ),
            (
                OpsError::Store(airlock_store::Error::Conflict("raced".into())),
                StatusCode::CONFLICT,
            ),
            (
                OpsError::Store(airlock_store::Error::Backend("disk /secret/path".into())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (error, status) in cases {
            let shown = error.to_string();
            let answered = ApiError::from(error);
            assert_eq!(answered.status, status, "{shown}");
        }
        let answered = ApiError::from(OpsError::forbidden("f", Some("h".into())));
        assert_eq!(
            (answered.reason.as_str(), answered.help.as_deref()),
            ("f", Some("h"))
        );
        // A backend failure is not described to the client.
        let answered = ApiError::from(OpsError::Store(airlock_store::Error::Backend(
            "disk /secret/path".into(),
        )));
        assert!(!answered.reason.contains("/secret/path"));
    }
}
