//! The notification outbox on SQLite. Every write goes through the one writer, so a claim
//! (select due rows, mark them claimed) is one atomic step.

use rusqlite::{Connection, Row, params};

use super::DbResult;
use crate::{Error, NewNotification, Notification, Result, Timestamp};

pub(super) const COLUMNS: &str = "id, event, environment, target, action, args, created_at, \
     attempts, due_at, last_error, delivered_at";

pub(super) fn notification(row: &Row<'_>) -> rusqlite::Result<Notification> {
    let args: String = row.get("args")?;
    let attempts: i64 = row.get("attempts")?;
    Ok(Notification {
        notification: NewNotification {
            id: row.get("id")?,
            event: row.get("event")?,
            environment: row.get("environment")?,
            target: row.get("target")?,
            action: row.get("action")?,
            args: serde_json::from_str(&args).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })?,
            created_at: row.get("created_at")?,
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        due_at: row.get("due_at")?,
        last_error: row.get("last_error")?,
        delivered_at: row.get("delivered_at")?,
    })
}

pub(super) fn add(conn: &Connection, items: &[NewNotification]) -> Result<usize> {
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO notifications (id, event, environment, target, action, args,
                 created_at, due_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (id) DO NOTHING",
        )
        .db()?;
    let mut added = 0;
    for n in items {
        let args = serde_json::to_string(&n.args).map_err(|e| Error::Backend(e.to_string()))?;
        added += statement
            .execute(params![
                n.id,
                n.event,
                n.environment,
                n.target,
                n.action,
                args,
                n.created_at
            ])
            .db()?;
    }
    Ok(added)
}

pub(super) fn claim(
    conn: &Connection,
    holder: &str,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Notification>> {
    let found: Vec<Notification> = conn
        .prepare_cached(&format!(
            "UPDATE notifications SET claimed_by = ?1, claimed_until = ?2
             WHERE id IN (
                 SELECT id FROM notifications
                 WHERE delivered_at IS NULL AND due_at <= ?3
                   AND (claimed_until IS NULL OR claimed_until <= ?3)
                 ORDER BY due_at, id LIMIT ?4)
             RETURNING {COLUMNS}"
        ))
        .db()?
        .query_map(
            params![holder, now.saturating_add(lease_ms), now, limit as i64],
            notification,
        )
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut found = found;
    found.sort_by(|a, b| (a.due_at, &a.notification.id).cmp(&(b.due_at, &b.notification.id)));
    Ok(found)
}

pub(super) fn settle(
    conn: &Connection,
    id: &str,
    holder: &str,
    at: Timestamp,
    error: Option<&str>,
    retry_at: Timestamp,
) -> Result<bool> {
    let changed = match error {
        None => conn
            .prepare_cached(
                "UPDATE notifications SET delivered_at = ?3, attempts = attempts + 1,
                     last_error = NULL, claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1 AND claimed_by = ?2 AND delivered_at IS NULL",
            )
            .db()?
            .execute(params![id, holder, at])
            .db()?,
        Some(error) => conn
            .prepare_cached(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?3,
                     due_at = ?4, claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1 AND claimed_by = ?2 AND delivered_at IS NULL",
            )
            .db()?
            .execute(params![id, holder, error, retry_at])
            .db()?,
    };
    Ok(changed == 1)
}
