//! The audit log: append-only events in a SHA-256 hash chain, so an edited event is
//! detected by [`verify_audit_chain`].

use crate::run::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// When.
    pub at: Timestamp,
    /// Who (a person, a token name, or `airlock` for the engine).
    pub actor: String,
    /// What (`deploy`, `secret.set`, `approve-step`, `refused`, …).
    pub action: String,
    /// The environment it concerns, if any.
    pub environment: Option<String>,
    /// The thing acted on (a workflow, a secret name, a run).
    pub subject: String,
    /// Details (never secret values).
    pub detail: Value,
}

/// An audit event in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// The previous event's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the event's canonical JSON.
    pub hash: String,
}

impl AuditEvent {
    /// The hash an event must carry given the previous hash.
    pub fn compute_hash(prev_hash: &str, event: &NewAuditEvent) -> String {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_string(event).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(body.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks a whole chain; returns the sequence number of the first event that does not fit.
pub fn verify_audit_chain(events: &[AuditEvent]) -> Result<(), i64> {
    let mut prev = GENESIS_HASH.to_owned();
    for event in events {
        if event.prev_hash != prev || event.hash != AuditEvent::compute_hash(&prev, &event.event) {
            return Err(event.seq);
        }
        prev = event.hash.clone();
    }
    Ok(())
}
