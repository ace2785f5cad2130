//! API tokens and schedule cursors in SQLite: what `airlock serve` keeps.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{DbResult, is_constraint};
use crate::{ApiToken, ConsoleSession, Error, NewApiToken, NewConsoleSession, Result, Timestamp};

pub(super) const TOKEN_COLUMNS: &str =
    "id, name, environment, role, secret_hash, created_by, created_at, revoked_at";

pub(super) fn token(row: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        token: NewApiToken {
            id: row.get(0)?,
            name: row.get(1)?,
            environment: row.get(2)?,
            role: row.get(3)?,
            secret_hash: row.get(4)?,
            created_by: row.get(5)?,
            created_at: row.get(6)?,
        },
        revoked_at: row.get(7)?,
    })
}

/// Inserts a live token. The name is checked first so that the usual conflict gets a
/// message that names it; the unique indexes still decide (the id, the hash, and the name
/// should a check ever be bypassed).
pub(super) fn insert_token(conn: &Connection, t: &NewApiToken) -> Result<ApiToken> {
    let live: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM api_tokens
             WHERE environment = ?1 AND name = ?2 AND revoked_at IS NULL",
        )
        .db()?
        .query_row(params![t.environment, t.name], |row| row.get(0))
        .optional()
        .db()?;
    if let Some(id) = live {
        return Err(Error::Conflict(format!(
            "a live token named {} exists in {} ({id}); revoke it first",
            t.name, t.environment
        )));
    }
    let inserted = conn
        .prepare_cached(
            "INSERT INTO api_tokens (id, name, environment, role, secret_hash, created_by,
                 created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .db()?
        .execute(params![
            t.id,
            t.name,
            t.environment,
            t.role,
            t.secret_hash,
            t.created_by,
            t.created_at
        ]);
    match inserted {
        Ok(_) => Ok(ApiToken {
            token: t.clone(),
            revoked_at: None,
        }),
        // Never echo the hash: the message names the token by id.
        Err(e) if is_constraint(&e) => Err(Error::Conflict(format!(
            "token {} cannot be created: its id or its secret is already used",
            t.id
        ))),
        Err(e) => Err(Error::Backend(e.to_string())),
    }
}

/// Revokes a token; a revoked one keeps its first revocation time.
pub(super) fn revoke_token(conn: &Connection, id: &str, at: Timestamp) -> Result<()> {
    let found = conn
        .prepare_cached("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")
        .db()?
        .execute(params![id, at])
        .db()?;
    if found == 0 {
        return Err(Error::NotFound(format!("token {id}")));
    }
    Ok(())
}

/// The compare-and-set on a schedule cursor; see `Store::advance_schedule`.
pub(super) fn advance_schedule(
    conn: &Connection,
    environment: &str,
    workflow: &str,
    expected: Option<Timestamp>,
    to: Timestamp,
) -> Result<bool> {
    let moved = match expected {
        None => conn
            .prepare_cached(
                "INSERT INTO schedule_cursors (environment, workflow, last_tick)
                 VALUES (?1, ?2, ?3) ON CONFLICT (environment, workflow) DO NOTHING",
            )
            .db()?
            .execute(params![environment, workflow, to])
            .db()?,
        Some(from) => {
            if to <= from {
                return Err(Error::Conflict(format!(
                    "the schedule of {workflow} in {environment} only moves forward \
                     (from {from} to {to} asked)"
                )));
            }
            conn.prepare_cached(
                "UPDATE schedule_cursors SET last_tick = ?4
                 WHERE environment = ?1 AND workflow = ?2 AND last_tick = ?3",
            )
            .db()?
            .execute(params![environment, workflow, from, to])
            .db()?
        }
    };
    Ok(moved == 1)
}

/// A session's columns then its token's, the token's first so that [`token`] reads them.
pub(super) const SESSION_SELECT: &str = "SELECT t.id, t.name, t.environment, t.role,
        t.secret_hash, t.created_by, t.created_at, t.revoked_at,
        s.id_hash, s.token_id, s.csrf, s.created_at AS session_created_at, s.expires_at
     FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
     WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND t.revoked_at IS NULL";

pub(super) fn session(row: &Row<'_>) -> rusqlite::Result<ConsoleSession> {
    Ok(ConsoleSession {
        token: token(row)?,
        session: NewConsoleSession {
            id_hash: row.get(8)?,
            token_id: row.get(9)?,
            csrf: row.get(10)?,
            created_at: row.get(11)?,
            expires_at: row.get(12)?,
        },
    })
}

/// Records a session and forgets the ended ones (a range of `console_sessions_expiry`).
pub(super) fn insert_session(conn: &Connection, s: &NewConsoleSession) -> Result<()> {
    conn.prepare_cached("DELETE FROM console_sessions WHERE expires_at <= ?1")
        .db()?
        .execute([s.created_at])
        .db()?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO console_sessions (id_hash, token_id, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .db()?
        .execute(params![
            s.id_hash,
            s.token_id,
            s.csrf,
            s.created_at,
            s.expires_at
        ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(Error::Conflict("a session with that id exists".into())),
        Err(e) => Err(Error::Backend(e.to_string())),
    }
}
