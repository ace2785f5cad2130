//! Evidence, promotion requests, approvals, releases, API tokens and schedule cursors in
//! PostgreSQL: the writes that are compare-and-sets, each in one transaction.

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::{db, is_unique_violation, rows};
use crate::{
    ApiToken, Approval, Error, NewApiToken, NewPromotionRequest, NewRelease, PromotionRequest,
    Release, RequestStatus, Result, Timestamp,
};

/// Opens a request; its id must be new.
pub(super) async fn insert_request(
    conn: &mut PgConnection,
    r: &NewPromotionRequest,
) -> Result<PromotionRequest> {
    let inserted = sqlx::query(
        "INSERT INTO promotion_requests (id, workflow, version, from_environment, to_environment,
             author, created_at, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open') ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.workflow)
    .bind(&r.version)
    .bind(&r.from_environment)
    .bind(&r.to_environment)
    .bind(&r.author)
    .bind(r.created_at)
    .execute(conn)
    .await
    .map_err(db)?;
    if inserted.rows_affected() == 0 {
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

/// The status of a request, locking its row until the transaction ends, so that a decision
/// and a release of the same request happen one after the other.
async fn lock_request(conn: &mut PgConnection, id: &str) -> Result<RequestStatus> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM promotion_requests WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
    let status = status.ok_or_else(|| Error::NotFound(format!("promotion request {id}")))?;
    rows::request_status(&status)
}

/// Records an approver's decision; a rejection closes the request.
/// Closes an open request as withdrawn or expired.
pub(super) async fn close_request(
    conn: &mut PgConnection,
    id: &str,
    status: RequestStatus,
    at: i64,
) -> Result<()> {
    let current = lock_request(conn, id).await?;
    if current != RequestStatus::Open {
        return Err(Error::Conflict(format!(
            "promotion request {id} is {}",
            current.as_str()
        )));
    }
    sqlx::query("UPDATE promotion_requests SET status = $2, closed_at = $3 WHERE id = $1")
        .bind(id)
        .bind(status.as_str())
        .bind(at)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn decide(conn: &mut PgConnection, a: &Approval) -> Result<()> {
    let status = lock_request(conn, &a.request).await?;
    if status != RequestStatus::Open {
        return Err(Error::Conflict(format!(
            "promotion request {} is {}",
            a.request,
            status.as_str()
        )));
    }
    // An approver may change their own decision while the request is open: the newest
    // one counts.
    sqlx::query(
        "INSERT INTO approvals (request, approver, approved, reason, at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (request, approver) DO UPDATE SET approved = excluded.approved,
             reason = excluded.reason, at = excluded.at",
    )
    .bind(&a.request)
    .bind(&a.approver)
    .bind(a.approved)
    .bind(&a.reason)
    .bind(a.at)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if !a.approved {
        sqlx::query(
            "UPDATE promotion_requests SET status = 'rejected', closed_at = $2
             WHERE id = $1 AND status = 'open'",
        )
        .bind(&a.request)
        .bind(a.at)
        .execute(conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Records a release if the current one is what the caller expects, and makes it current.
///
/// Two releases from the same current one may both pass the first check; the unique
/// indexes on `previous` then let exactly one insert through (the other waits for the
/// first to commit and fails), and that failure is the same [`Error::Conflict`].
pub(super) async fn insert_release(conn: &mut PgConnection, r: &NewRelease) -> Result<Release> {
    let current: Option<String> = sqlx::query_scalar(
        "SELECT id FROM releases WHERE environment = $1 AND workflow = $2
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(&r.environment)
    .bind(&r.workflow)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let another_won = |current: Option<&str>| {
        Error::Conflict(format!(
            "another release of {} in {} happened meanwhile (current: {})",
            r.workflow,
            r.environment,
            current.unwrap_or("none")
        ))
    };
    if current != r.expected_current {
        return Err(another_won(current.as_deref()));
    }
    if let Some(request) = &r.request {
        let status = lock_request(conn, request).await?;
        if status != RequestStatus::Open {
            return Err(Error::Conflict(format!(
                "promotion request {request} is {}",
                status.as_str()
            )));
        }
        sqlx::query(
            "UPDATE promotion_requests SET status = 'released', closed_at = $2 WHERE id = $1",
        )
        .bind(request)
        .bind(r.at)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    let approvers = serde_json::to_value(&r.approvers)
        .map_err(|e| Error::Backend(format!("cannot encode approvers: {e}")))?;
    let inserted = sqlx::query(
        "INSERT INTO releases (id, environment, workflow, version, kind, request, author,
             approvers, evidence, previous, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, $9::json, $10, $11)",
    )
    .bind(&r.id)
    .bind(&r.environment)
    .bind(&r.workflow)
    .bind(&r.version)
    .bind(r.kind.as_str())
    .bind(&r.request)
    .bind(&r.author)
    .bind(rows::json(&approvers)?)
    .bind(rows::json(&r.evidence)?)
    .bind(&current)
    .bind(r.at)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e, Some("releases_id_key")) => {
            return Err(Error::Conflict(format!("release {} exists already", r.id)));
        }
        Err(e) if is_unique_violation(&e, None) => return Err(another_won(current.as_deref())),
        Err(e) => return Err(db(e)),
    }
    if r.kind.runs_version() {
        sqlx::query(
            "INSERT INTO deployments (environment, workflow, version, actor, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (environment, workflow) DO UPDATE SET version = excluded.version,
                 actor = excluded.actor, updated_at = excluded.updated_at",
        )
        .bind(&r.environment)
        .bind(&r.workflow)
        .bind(&r.version)
        .bind(&r.author)
        .bind(r.at)
        .execute(conn)
        .await
        .map_err(db)?;
    } else {
        sqlx::query("DELETE FROM deployments WHERE environment = $1 AND workflow = $2")
            .bind(&r.environment)
            .bind(&r.workflow)
            .execute(conn)
            .await
            .map_err(db)?;
    }
    Ok(Release {
        release: NewRelease {
            expected_current: current.clone(),
            ..r.clone()
        },
        previous: current,
    })
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, name, environment, role, secret_hash, created_by, created_at, revoked_at";

pub(super) fn token(row: &sqlx::postgres::PgRow) -> Result<ApiToken> {
    Ok(ApiToken {
        token: NewApiToken {
            id: row.try_get("id").map_err(db)?,
            name: row.try_get("name").map_err(db)?,
            environment: row.try_get("environment").map_err(db)?,
            role: row.try_get("role").map_err(db)?,
            secret_hash: row.try_get("secret_hash").map_err(db)?,
            created_by: row.try_get("created_by").map_err(db)?,
            created_at: row.try_get("created_at").map_err(db)?,
        },
        revoked_at: row.try_get("revoked_at").map_err(db)?,
    })
}

/// Inserts a live token. The unique indexes decide, so that of several servers creating
/// one name at once exactly one succeeds; the messages never echo the hash (PostgreSQL's
/// own message would: it names the duplicate key).
pub(super) async fn insert_token(conn: &mut PgConnection, t: &NewApiToken) -> Result<ApiToken> {
    let inserted = sqlx::query(
        "INSERT INTO api_tokens (id, name, environment, role, secret_hash, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.environment)
    .bind(&t.role)
    .bind(&t.secret_hash)
    .bind(&t.created_by)
    .bind(t.created_at)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(ApiToken {
            token: t.clone(),
            revoked_at: None,
        }),
        Err(e) if is_unique_violation(&e, Some("api_tokens_live_name")) => {
            Err(Error::Conflict(format!(
                "a live token named {} exists in {}; revoke it first",
                t.name, t.environment
            )))
        }
        Err(e) if is_unique_violation(&e, None) => Err(Error::Conflict(format!(
            "token {} cannot be created: its id or its secret is already used",
            t.id
        ))),
        Err(e) => Err(db(e)),
    }
}

/// Revokes a token; a revoked one keeps its first revocation time.
pub(super) async fn revoke_token(conn: &mut PgConnection, id: &str, at: Timestamp) -> Result<()> {
    let found =
        sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(conn)
            .await
            .map_err(db)?;
    if found.rows_affected() == 0 {
        return Err(Error::NotFound(format!("token {id}")));
    }
    Ok(())
}

/// The compare-and-set on a schedule cursor; see `Store::advance_schedule`.
///
/// Under READ COMMITTED, a second `UPDATE … WHERE last_tick = $3` waits for the first to
/// commit and then re-reads the row, so it no longer matches: one winner per tick. Two
/// first advances from `None` meet at the primary key: one inserts, the other does nothing.
pub(super) async fn advance_schedule(
    conn: &mut PgConnection,
    environment: &str,
    workflow: &str,
    expected: Option<Timestamp>,
    to: Timestamp,
) -> Result<bool> {
    let moved = match expected {
        None => sqlx::query(
            "INSERT INTO schedule_cursors (environment, workflow, last_tick)
             VALUES ($1, $2, $3) ON CONFLICT (environment, workflow) DO NOTHING",
        )
        .bind(environment)
        .bind(workflow)
        .bind(to)
        .execute(conn)
        .await
        .map_err(db)?,
        Some(from) => {
            if to <= from {
                return Err(Error::Conflict(format!(
                    "the schedule of {workflow} in {environment} only moves forward \
                     (from {from} to {to} asked)"
                )));
            }
            sqlx::query(
                "UPDATE schedule_cursors SET last_tick = $4
                 WHERE environment = $1 AND workflow = $2 AND last_tick = $3",
            )
            .bind(environment)
            .bind(workflow)
            .bind(from)
            .bind(to)
            .execute(conn)
            .await
            .map_err(db)?
        }
    };
    Ok(moved.rows_affected() == 1)
}

/// Tokens, optionally of one environment, in the order the trait promises.
pub(super) async fn tokens(
    conn: &mut PgConnection,
    environment: Option<&str>,
) -> Result<Vec<ApiToken>> {
    let sql = match environment {
        Some(_) => format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE environment = $1
             ORDER BY environment, name, created_at, id"
        ),
        None => format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY environment, name, created_at, id"
        ),
    };
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(environment) = environment {
        query = query.bind(environment.to_owned());
    }
    query
        .fetch_all(conn)
        .await
        .map_err(db)?
        .iter()
        .map(token)
        .collect()
}
