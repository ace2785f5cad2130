//! Rows to the model and back.

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use serde_json::Value;

use crate::{
    AuditEvent, Deployment, JournalEntry, NewAuditEvent, NewJournalEntry, NewTestRecord, Run,
    RunStatus, SealedSecret, SecretName, StepDecision, StepStatus, TestRecord, WorkflowVersion,
};
use crate::{Error, Result};

/// A JSON value stored as TEXT.
pub(super) struct Json(pub(super) Value);

impl FromSql for Json {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_str(text)
            .map(Json)
            .map_err(FromSqlError::other)
    }
}

/// A run status stored as its name.
struct Status(RunStatus);

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        RunStatus::parse(text)
            .map(Status)
            .ok_or_else(|| FromSqlError::other(BadName(format!("run status {text:?}"))))
    }
}

/// A step status stored as its name.
struct StepState(StepStatus);

impl FromSql for StepState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        StepStatus::parse(text)
            .map(StepState)
            .ok_or_else(|| FromSqlError::other(BadName(format!("step status {text:?}"))))
    }
}

#[derive(Debug)]
struct BadName(String);

impl std::fmt::Display for BadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {}", self.0)
    }
}

impl std::error::Error for BadName {}

/// Serializes a JSON value for a TEXT column.
pub(super) fn json(value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))
}

/// Serializes an optional JSON value.
pub(super) fn json_opt(value: Option<&Value>) -> Result<Option<String>> {
    value.map(json).transpose()
}

pub(super) const VERSION_COLUMNS: &str = "id, workflow, canonical, source, created_at";

pub(super) fn version(row: &Row<'_>) -> rusqlite::Result<WorkflowVersion> {
    Ok(WorkflowVersion {
        id: row.get(0)?,
        workflow: row.get(1)?,
        canonical: row.get(2)?,
        source: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub(super) const DEPLOYMENT_COLUMNS: &str = "environment, workflow, version, actor, updated_at";

pub(super) fn deployment(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    Ok(Deployment {
        environment: row.get(0)?,
        workflow: row.get(1)?,
        version: row.get(2)?,
        actor: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub(super) const RUN_COLUMNS: &str = "id, environment, workflow, version, status, trigger_payload, \
     dedupe_key, output, error, created_at, started_at, finished_at, wake_at, lease_owner, \
     lease_expires_at, fencing_token, claims";

pub(super) fn run(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get(0)?,
        environment: row.get(1)?,
        workflow: row.get(2)?,
        version: row.get(3)?,
        status: row.get::<_, Status>(4)?.0,
        trigger: row.get::<_, Json>(5)?.0.into(),
        dedupe_key: row.get(6)?,
        output: row.get::<_, Option<Json>>(7)?.map(|j| j.0),
        error: row.get(8)?,
        created_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        wake_at: row.get(12)?,
        lease_owner: row.get(13)?,
        lease_expires_at: row.get(14)?,
        fencing_token: row.get(15)?,
        claims: row.get(16)?,
    })
}

pub(super) const JOURNAL_COLUMNS: &str = "run, seq, step, attempt, status, input, output, error, \
     idempotency_key, started_at, finished_at";

pub(super) fn journal_entry(row: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    Ok(JournalEntry {
        run: row.get(0)?,
        seq: row.get(1)?,
        entry: NewJournalEntry {
            step: row.get(2)?,
            attempt: row.get(3)?,
            status: row.get::<_, StepState>(4)?.0,
            input: row.get::<_, Option<Json>>(5)?.map(|j| j.0),
            output: row.get::<_, Option<Json>>(6)?.map(|j| j.0),
            error: row.get(7)?,
            idempotency_key: row.get(8)?,
            started_at: row.get(9)?,
            finished_at: row.get(10)?,
        },
    })
}

pub(super) const DECISION_COLUMNS: &str = "run, step, approver, approved, decided_at";

pub(super) fn decision(row: &Row<'_>) -> rusqlite::Result<StepDecision> {
    Ok(StepDecision {
        run: row.get(0)?,
        step: row.get(1)?,
        approver: row.get(2)?,
        approved: row.get(3)?,
        decided_at: row.get(4)?,
    })
}

pub(super) const SECRET_COLUMNS: &str = "environment, name, sealed, fingerprint, updated_at";

pub(super) fn secret(row: &Row<'_>) -> rusqlite::Result<SealedSecret> {
    Ok(SealedSecret {
        environment: row.get(0)?,
        name: row.get(1)?,
        sealed: row.get(2)?,
        fingerprint: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub(super) fn secret_name(row: &Row<'_>) -> rusqlite::Result<SecretName> {
    Ok(SecretName {
        environment: row.get(0)?,
        name: row.get(1)?,
        updated_at: row.get(2)?,
    })
}

pub(super) const RECORD_COLUMNS: &str =
    "id, environment, run, step, connector, action, arguments, idempotency_key, at";

pub(super) fn record(row: &Row<'_>) -> rusqlite::Result<TestRecord> {
    Ok(TestRecord {
        id: row.get(0)?,
        record: NewTestRecord {
            environment: row.get(1)?,
            run: row.get(2)?,
            step: row.get(3)?,
            connector: row.get(4)?,
            action: row.get(5)?,
            arguments: row.get::<_, Json>(6)?.0,
            idempotency_key: row.get(7)?,
            at: row.get(8)?,
        },
    })
}

pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, actor, action, environment, subject, detail, prev_hash, hash";

pub(super) fn audit_event(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        seq: row.get(0)?,
        event: NewAuditEvent {
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            environment: row.get(4)?,
            subject: row.get(5)?,
            detail: row.get::<_, Json>(6)?.0,
        },
        prev_hash: row.get(7)?,
        hash: row.get(8)?,
    })
}
