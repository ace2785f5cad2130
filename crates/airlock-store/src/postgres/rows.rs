//! Rows to the model and back.
//!
//! JSON goes in as text cast to `json` in the statement (`$n::json`), never as a bound
//! `jsonb`: `json` keeps the text exactly (see the schema), and a `jsonb` parameter would
//! be parsed by the server first and refuse a string holding `\u0000`.

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::db;
use crate::{
    Approval, AuditEvent, Deployment, Evidence, JournalEntry, NewAuditEvent, NewEvidence,
    NewJournalEntry, NewPromotionRequest, NewRelease, NewTestRecord, PromotionRequest, Release,
    ReleaseKind, RequestStatus, Run, RunStatus, SealedSecret, SecretName, StepDecision, StepStatus,
    TestRecord, WorkflowVersion,
};
use crate::{Error, Result};

/// Serializes a JSON value for a `$n::json` parameter.
pub(super) fn json(value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))
}

/// Serializes an optional JSON value.
pub(super) fn json_opt(value: Option<&Value>) -> Result<Option<String>> {
    value.map(json).transpose()
}

fn get_json(row: &PgRow, column: &str) -> Result<Value> {
    Ok(row.try_get::<Json<Value>, _>(column).map_err(db)?.0)
}

fn get_json_opt(row: &PgRow, column: &str) -> Result<Option<Value>> {
    Ok(row
        .try_get::<Option<Json<Value>>, _>(column)
        .map_err(db)?
        .map(|json| json.0))
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(db)
}

pub(super) const VERSION_COLUMNS: &str = "id, workflow, canonical, source, created_at";

pub(super) fn version(row: &PgRow) -> Result<WorkflowVersion> {
    Ok(WorkflowVersion {
        id: get(row, "id")?,
        workflow: get(row, "workflow")?,
        canonical: get(row, "canonical")?,
        source: get(row, "source")?,
        created_at: get(row, "created_at")?,
    })
}

pub(super) const DEPLOYMENT_COLUMNS: &str = "environment, workflow, version, actor, updated_at";

pub(super) fn deployment(row: &PgRow) -> Result<Deployment> {
    Ok(Deployment {
        environment: get(row, "environment")?,
        workflow: get(row, "workflow")?,
        version: get(row, "version")?,
        actor: get(row, "actor")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) const RUN_COLUMNS: &str = "id, environment, workflow, version, status, trigger_payload, \
     dedupe_key, output, error, created_at, started_at, finished_at, wake_at, lease_owner, \
     lease_expires_at, fencing_token, claims";

/// A run status as stored.
pub(super) fn run_status(text: &str) -> Result<RunStatus> {
    RunStatus::parse(text).ok_or_else(|| Error::Backend(format!("unknown run status {text:?}")))
}

pub(super) fn run(row: &PgRow) -> Result<Run> {
    Ok(Run {
        id: get(row, "id")?,
        environment: get(row, "environment")?,
        workflow: get(row, "workflow")?,
        version: get(row, "version")?,
        status: run_status(get(row, "status")?)?,
        trigger: get_json(row, "trigger_payload")?.into(),
        dedupe_key: get(row, "dedupe_key")?,
        output: get_json_opt(row, "output")?,
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        wake_at: get(row, "wake_at")?,
        lease_owner: get(row, "lease_owner")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        fencing_token: get(row, "fencing_token")?,
        claims: get(row, "claims")?,
    })
}

pub(super) const JOURNAL_COLUMNS: &str = "run, seq, step, attempt, status, input, output, error, \
     idempotency_key, started_at, finished_at";

pub(super) fn journal_entry(row: &PgRow) -> Result<JournalEntry> {
    let status: &str = get(row, "status")?;
    let attempt: i64 = get(row, "attempt")?;
    Ok(JournalEntry {
        run: get(row, "run")?,
        seq: get(row, "seq")?,
        entry: NewJournalEntry {
            step: get(row, "step")?,
            attempt: u32::try_from(attempt)
                .map_err(|_| Error::Backend(format!("journal attempt {attempt} out of range")))?,
            status: StepStatus::parse(status)
                .ok_or_else(|| Error::Backend(format!("unknown step status {status:?}")))?,
            input: get_json_opt(row, "input")?,
            output: get_json_opt(row, "output")?,
            error: get(row, "error")?,
            idempotency_key: get(row, "idempotency_key")?,
            started_at: get(row, "started_at")?,
            finished_at: get(row, "finished_at")?,
        },
    })
}

pub(super) const DECISION_COLUMNS: &str = "run, step, approver, approved, decided_at";

pub(super) fn decision(row: &PgRow) -> Result<StepDecision> {
    Ok(StepDecision {
        run: get(row, "run")?,
        step: get(row, "step")?,
        approver: get(row, "approver")?,
        approved: get(row, "approved")?,
        decided_at: get(row, "decided_at")?,
    })
}

pub(super) const SECRET_COLUMNS: &str = "environment, name, sealed, fingerprint, updated_at";

pub(super) fn secret(row: &PgRow) -> Result<SealedSecret> {
    Ok(SealedSecret {
        environment: get(row, "environment")?,
        name: get(row, "name")?,
        sealed: get(row, "sealed")?,
        fingerprint: get(row, "fingerprint")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) fn secret_name(row: &PgRow) -> Result<SecretName> {
    Ok(SecretName {
        environment: get(row, "environment")?,
        name: get(row, "name")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) const RECORD_COLUMNS: &str =
    "id, environment, run, step, connector, action, arguments, idempotency_key, at";

pub(super) fn record(row: &PgRow) -> Result<TestRecord> {
    Ok(TestRecord {
        id: get(row, "id")?,
        record: NewTestRecord {
            environment: get(row, "environment")?,
            run: get(row, "run")?,
            step: get(row, "step")?,
            connector: get(row, "connector")?,
            action: get(row, "action")?,
            arguments: get_json(row, "arguments")?,
            idempotency_key: get(row, "idempotency_key")?,
            at: get(row, "at")?,
        },
    })
}

pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, actor, action, environment, subject, detail, prev_hash, hash";

pub(crate) fn audit_event(row: &PgRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: get(row, "seq")?,
        event: NewAuditEvent {
            at: get(row, "at")?,
            actor: get(row, "actor")?,
            action: get(row, "action")?,
            environment: get(row, "environment")?,
            subject: get(row, "subject")?,
            detail: get_json(row, "detail")?,
        },
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

pub(super) const EVIDENCE_COLUMNS: &str = "id, workflow, version, kind, passed, summary, at";

pub(super) fn evidence(row: &PgRow) -> Result<Evidence> {
    Ok(Evidence {
        id: get(row, "id")?,
        evidence: NewEvidence {
            workflow: get(row, "workflow")?,
            version: get(row, "version")?,
            kind: get(row, "kind")?,
            passed: get(row, "passed")?,
            summary: get_json(row, "summary")?,
            at: get(row, "at")?,
        },
    })
}

pub(super) const REQUEST_COLUMNS: &str = "id, workflow, version, from_environment, \
     to_environment, author, created_at, status, closed_at";

/// A request status as stored.
pub(super) fn request_status(text: &str) -> Result<RequestStatus> {
    RequestStatus::parse(text)
        .ok_or_else(|| Error::Backend(format!("unknown request status {text:?}")))
}

pub(super) fn request(row: &PgRow) -> Result<PromotionRequest> {
    Ok(PromotionRequest {
        request: NewPromotionRequest {
            id: get(row, "id")?,
            workflow: get(row, "workflow")?,
            version: get(row, "version")?,
            from_environment: get(row, "from_environment")?,
            to_environment: get(row, "to_environment")?,
            author: get(row, "author")?,
            created_at: get(row, "created_at")?,
        },
        status: request_status(get(row, "status")?)?,
        closed_at: get(row, "closed_at")?,
    })
}

pub(super) const APPROVAL_COLUMNS: &str = "request, approver, approved, reason, at";

pub(super) fn approval(row: &PgRow) -> Result<Approval> {
    Ok(Approval {
        request: get(row, "request")?,
        approver: get(row, "approver")?,
        approved: get(row, "approved")?,
        reason: get(row, "reason")?,
        at: get(row, "at")?,
    })
}

pub(super) const RELEASE_COLUMNS: &str = "id, environment, workflow, version, kind, request, \
     author, approvers, evidence, previous, at";

pub(super) fn release(row: &PgRow) -> Result<Release> {
    let kind: &str = get(row, "kind")?;
    let kind = ReleaseKind::parse(kind)
        .ok_or_else(|| Error::Backend(format!("unknown release kind {kind:?}")))?;
    let approvers: Vec<String> = serde_json::from_value(get_json(row, "approvers")?)
        .map_err(|e| Error::Backend(format!("release approvers: {e}")))?;
    let previous: Option<String> = get(row, "previous")?;
    Ok(Release {
        release: NewRelease {
            id: get(row, "id")?,
            environment: get(row, "environment")?,
            workflow: get(row, "workflow")?,
            version: get(row, "version")?,
            kind,
            request: get(row, "request")?,
            author: get(row, "author")?,
            approvers,
            evidence: get_json(row, "evidence")?,
            expected_current: previous.clone(),
            at: get(row, "at")?,
        },
        previous,
    })
}
