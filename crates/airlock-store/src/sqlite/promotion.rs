//! Evidence, promotion requests, approvals and releases in SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::DbResult;
use super::rows::{Json, json};
use crate::{
    Approval, Error, Evidence, NewEvidence, NewPromotionRequest, NewRelease, PromotionRequest,
    Release, ReleaseKind, RequestStatus, Result,
};

pub(super) const EVIDENCE_COLUMNS: &str = "id, workflow, version, kind, passed, summary, at";

pub(super) fn evidence(row: &Row<'_>) -> rusqlite::Result<Evidence> {
    Ok(Evidence {
        id: row.get(0)?,
        evidence: NewEvidence {
            workflow: row.get(1)?,
            version: row.get(2)?,
            kind: row.get(3)?,
            passed: row.get(4)?,
            summary: row.get::<_, Json>(5)?.0,
            at: row.get(6)?,
        },
    })
}

pub(super) fn insert_evidence(
    conn: &Connection,
    e: &NewEvidence,
    summary: &str,
) -> Result<Evidence> {
    conn.prepare_cached(
        "INSERT INTO evidence (workflow, version, kind, passed, summary, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![e.workflow, e.version, e.kind, e.passed, summary, e.at])
    .db()?;
    Ok(Evidence {
        id: conn.last_insert_rowid(),
        evidence: e.clone(),
    })
}

pub(super) const REQUEST_COLUMNS: &str = "id, workflow, version, from_environment, to_environment, author, created_at, status, closed_at";

pub(super) fn request(row: &Row<'_>) -> rusqlite::Result<PromotionRequest> {
    let status: String = row.get(7)?;
    Ok(PromotionRequest {
        request: NewPromotionRequest {
            id: row.get(0)?,
            workflow: row.get(1)?,
            version: row.get(2)?,
            from_environment: row.get(3)?,
            to_environment: row.get(4)?,
            author: row.get(5)?,
            created_at: row.get(6)?,
        },
        status: RequestStatus::parse(&status).unwrap_or(RequestStatus::Open),
        closed_at: row.get(8)?,
    })
}

pub(super) fn insert_request(
    conn: &Connection,
    r: &NewPromotionRequest,
) -> Result<PromotionRequest> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO promotion_requests (id, workflow, version, from_environment, to_environment,
                 author, created_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open') ON CONFLICT (id) DO NOTHING",
        )
        .db()?
        .execute(params![r.id, r.workflow, r.version, r.from_environment, r.to_environment, r.author, r.created_at])
        .db()?;
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "promotion request {} exists already",
            r.id
        )));
    }
    Ok(PromotionRequest {
        request: r.clone(),
        status: RequestStatus::Open,
        closed_at: None,
    })
}

/// Promotion requests newest first, the open ones only or all, of one workflow when given.
pub(super) fn requests(
    conn: &Connection,
    open_only: bool,
    workflow: Option<&str>,
) -> Result<Vec<PromotionRequest>> {
    // `INDEXED BY`: the open ones must come from their partial index, never from the
    // workflow index, which holds every request the workflow ever had.
    let from = if open_only {
        "promotion_requests INDEXED BY promotion_requests_open WHERE status = 'open' AND"
    } else {
        "promotion_requests WHERE"
    };
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM {from} (?1 IS NULL OR workflow = ?1)
         ORDER BY created_at DESC, id DESC"
    ))
    .db()?
    .query_map([workflow], request)
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

fn request_status(conn: &Connection, id: &str) -> Result<RequestStatus> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM promotion_requests WHERE id = ?1")
        .db()?
        .query_row([id], |row| row.get(0))
        .optional()
        .db()?;
    let status = status.ok_or_else(|| Error::NotFound(format!("promotion request {id}")))?;
    RequestStatus::parse(&status)
        .ok_or_else(|| Error::Backend(format!("request status {status:?}")))
}

pub(super) fn decide(conn: &Connection, a: &Approval) -> Result<()> {
    let status = request_status(conn, &a.request)?;
    if status != RequestStatus::Open {
        return Err(Error::Conflict(format!(
            "promotion request {} is {}",
            a.request,
            status.as_str()
        )));
    }
    // An approver may change their own decision while the request is open: the newest
    // one counts.
    conn.prepare_cached(
        "INSERT INTO approvals (request, approver, approved, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (request, approver) DO UPDATE SET approved = excluded.approved,
             reason = excluded.reason, at = excluded.at",
    )
    .db()?
    .execute(params![a.request, a.approver, a.approved, a.reason, a.at])
    .db()?;
    if !a.approved {
        close(conn, &a.request, RequestStatus::Rejected, a.at)?;
    }
    Ok(())
}

/// Closes an open request as withdrawn or expired; a request that is not open is a conflict.
pub(super) fn close_request(
    conn: &Connection,
    id: &str,
    status: RequestStatus,
    at: i64,
) -> Result<()> {
    let current = request_status(conn, id)?;
    if current != RequestStatus::Open {
        return Err(Error::Conflict(format!(
            "promotion request {id} is {}",
            current.as_str()
        )));
    }
    close(conn, id, status, at)
}

fn close(conn: &Connection, id: &str, status: RequestStatus, at: i64) -> Result<()> {
    conn.prepare_cached("UPDATE promotion_requests SET status = ?2, closed_at = ?3 WHERE id = ?1 AND status = 'open'")
        .db()?
        .execute(params![id, status.as_str(), at])
        .db()?;
    Ok(())
}

pub(super) const APPROVAL_COLUMNS: &str = "request, approver, approved, reason, at";

pub(super) fn approval(row: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        request: row.get(0)?,
        approver: row.get(1)?,
        approved: row.get(2)?,
        reason: row.get(3)?,
        at: row.get(4)?,
    })
}

pub(super) const RELEASE_COLUMNS: &str =
    "id, environment, workflow, version, kind, request, author, approvers, evidence, previous, at";

pub(super) fn release(row: &Row<'_>) -> rusqlite::Result<Release> {
    let kind: String = row.get(4)?;
    let approvers: Json = row.get(7)?;
    Ok(Release {
        release: NewRelease {
            id: row.get(0)?,
            environment: row.get(1)?,
            workflow: row.get(2)?,
            version: row.get(3)?,
            kind: ReleaseKind::parse(&kind).unwrap_or(ReleaseKind::Promotion),
            request: row.get(5)?,
            author: row.get(6)?,
            approvers: serde_json::from_value(approvers.0).unwrap_or_default(),
            evidence: row.get::<_, Json>(8)?.0,
            expected_current: row.get(9)?,
            at: row.get(10)?,
        },
        previous: row.get(9)?,
    })
}

/// Records a release if the current one is what the caller expects, and makes it current.
pub(super) fn insert_release(conn: &Connection, r: &NewRelease) -> Result<Release> {
    let current: Option<String> = conn
        .prepare_cached("SELECT id FROM releases WHERE environment = ?1 AND workflow = ?2 ORDER BY seq DESC LIMIT 1")
        .db()?
        .query_row(params![r.environment, r.workflow], |row| row.get(0))
        .optional()
        .db()?;
    if current != r.expected_current {
        return Err(Error::Conflict(format!(
            "another release of {} in {} happened meanwhile (current: {})",
            r.workflow,
            r.environment,
            current.as_deref().unwrap_or("none")
        )));
    }
    if let Some(request) = &r.request {
        let status = request_status(conn, request)?;
        if status != RequestStatus::Open {
            return Err(Error::Conflict(format!(
                "promotion request {request} is {}",
                status.as_str()
            )));
        }
        close(conn, request, RequestStatus::Released, r.at)?;
    }
    let approvers =
        json(&serde_json::to_value(&r.approvers).map_err(|e| Error::Backend(e.to_string()))?)?;
    let evidence = json(&r.evidence)?;
    conn.prepare_cached(
        "INSERT INTO releases (id, environment, workflow, version, kind, request, author, approvers,
             evidence, previous, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .db()?
    .execute(params![
        r.id,
        r.environment,
        r.workflow,
        r.version,
        r.kind.as_str(),
        r.request,
        r.author,
        approvers,
        evidence,
        current,
        r.at
    ])
    .db()?;
    if r.kind.runs_version() {
        conn.prepare_cached(
            "INSERT INTO deployments (environment, workflow, version, actor, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (environment, workflow) DO UPDATE SET version = excluded.version,
                 actor = excluded.actor, updated_at = excluded.updated_at",
        )
        .db()?
        .execute(params![r.environment, r.workflow, r.version, r.author, r.at])
        .db()?;
    } else {
        conn.prepare_cached("DELETE FROM deployments WHERE environment = ?1 AND workflow = ?2")
            .db()?
            .execute(params![r.environment, r.workflow])
            .db()?;
    }
    Ok(Release {
        release: NewRelease {
            expected_current: current.clone(),
            ..r.clone()
        },
        previous: current,
    })
}
