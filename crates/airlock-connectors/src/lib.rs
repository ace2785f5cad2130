//! Connectors: how a workflow's `call` reaches a system.
//!
//! One trait, [`Connector`], and one module per kind. What must hold for every kind is
//! enforced here, once: a binding's `${secret:NAME}` references resolve only from its
//! own environment ([`secrets`]) and are removed, with their encoded forms, from
//! everything journaled ([`redact`]), and every network connection goes through the
//! environment's egress allowlist ([`egress`]), resolved once and pinned to the checked
//! address. A binding in `mode: record` sends nothing: [`record`] records the call and
//! answers from the binding's configured responses.

pub mod chat;
pub mod egress;
pub mod http;
mod pg_tls;
pub mod record;
pub mod redact;
pub mod secrets;
pub mod smtp;
pub mod sql;
pub mod tls;

use airlock_core::interpreter::{AttemptFailure, TransportFault};
use airlock_core::model::ConnectorKind;
use airlock_core::model::workflow::RetryOn;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub use egress::{Egress, EgressError};

/// One call of a connector action.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The run making the call.
    pub run: String,
    /// The step.
    pub step: String,
    /// The action (`request`, `post`, `send`, `insert`, …).
    pub action: String,
    /// The rendered arguments (`with:`).
    pub args: Value,
    /// Deterministic, scoped to the environment: a repeat after a crash carries the same key.
    pub idempotency_key: String,
    /// How long the attempt may take.
    pub timeout: Duration,
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No answer in time. The target may have acted.
    #[error("{}", TransportFault::Timeout(millis(*.0)))]
    Timeout(Duration),
    /// The connection could not be made (refused, unreachable, DNS, TLS handshake).
    #[error("{}", TransportFault::Connection(.0.clone()))]
    Connection(String),
    /// The target answered with an error status.
    #[error("{}", TransportFault::Status(*.status))]
    Status {
        /// The status.
        status: u16,
        /// The body, as JSON when it parses, as a string otherwise.
        body: Value,
    },
    /// The environment's egress allowlist refused the destination.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The arguments or the binding are wrong for this action; retrying cannot help.
    #[error("invalid call: {0}")]
    Invalid(String),
    /// Any other failure reported by the target; not retried.
    #[error("{0}")]
    Failed(String),
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl CallError {
    /// Which retry class this error belongs to, if it is retryable at all.
    pub fn retry_class(&self) -> Option<RetryOn> {
        self.transport().and_then(|fault| fault.retry_class())
    }

    /// The failure in the words and class every connector shares (and the scenario
    /// suite's faults use), when it is one of those.
    pub fn transport(&self) -> Option<TransportFault> {
        match self {
            CallError::Timeout(after) => Some(TransportFault::Timeout(millis(*after))),
            CallError::Connection(why) => Some(TransportFault::Connection(why.clone())),
            CallError::Status { status, .. } => Some(TransportFault::Status(*status)),
            _ => None,
        }
    }

    /// The failed attempt as the interpreter takes it: the message and its retry class.
    pub fn attempt(&self) -> (String, AttemptFailure) {
        (
            self.to_string(),
            AttemptFailure {
                class: self.retry_class(),
            },
        )
    }

    /// Whether the target may have acted on the call (so a retry must carry the same
    /// idempotency key and the outcome is unknown, not failed).
    pub fn may_have_reached_target(&self) -> bool {
        matches!(
            self,
            CallError::Timeout(_) | CallError::Status { .. } | CallError::Failed(_)
        )
    }
}

/// The outcome of `airlock check` for one binding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckOutcome {
    /// Whether the binding is reachable and its credential accepted.
    pub ok: bool,
    /// What was checked, or why it failed (never a secret).
    pub detail: String,
}

impl CheckOutcome {
    /// A passed check.
    pub fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What `airlock check` knows about how the workflows use a binding.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// For SQL bindings: the tables the workflows insert into or upsert into.
    pub tables: Vec<String>,
}

/// A system a workflow calls, bound for one environment.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Performs one attempt of an action.
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError>;
    /// Confirms the binding works: reaches the endpoint for real, within egress, with its
    /// credential.
    async fn check(&self, context: &CheckContext) -> CheckOutcome;
}

/// A binding with its secrets resolved, ready to build a connector from.
#[derive(Debug, Clone)]
pub struct ResolvedBinding {
    /// The connector's name.
    pub connector: String,
    /// Its kind.
    pub kind: ConnectorKind,
    /// The environment.
    pub environment: String,
    /// The kind's settings, with `${secret:NAME}` replaced by values. Never log this.
    pub settings: serde_json::Map<String, Value>,
    /// The project folder: relative paths in settings (`sqlite://.airlock/x.db`) are
    /// relative to it.
    pub base_dir: std::path::PathBuf,
}

/// Shared across connectors of one environment.
pub type SharedEgress = Arc<Egress>;

/// Builds the connector for one binding: record mode for any kind, or the kind's own.
pub fn build(
    binding: ResolvedBinding,
    record: bool,
    responses: serde_json::Map<String, Value>,
    egress: SharedEgress,
    sink: Arc<dyn record::RecordSink>,
) -> Result<Arc<dyn Connector>, CallError> {
    if record {
        return Ok(Arc::new(record::RecordConnector::new(
            binding.environment,
            binding.connector,
            responses,
            sink,
        )));
    }
    Ok(match binding.kind {
        ConnectorKind::Http => Arc::new(http::HttpConnector::new(&binding, egress)?),
        ConnectorKind::ChatWebhook => Arc::new(chat::ChatConnector::new(&binding, egress)?),
        ConnectorKind::Smtp => Arc::new(smtp::SmtpConnector::new(&binding, egress)?),
        ConnectorKind::Sql => Arc::new(sql::SqlConnector::new(&binding, egress)?),
    })
}
