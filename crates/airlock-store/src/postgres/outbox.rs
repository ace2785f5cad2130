//! The notification outbox on PostgreSQL. A claim takes due rows `FOR UPDATE SKIP LOCKED`
//! and marks them in the same statement, so two deliverers on one database never take
//! the same row while its claim lives.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::db;
use crate::{Error, NewNotification, Notification, Result, Timestamp};

pub(super) const COLUMNS: &str = "id, event, environment, target, action, args, created_at, \
     attempts, due_at, last_error, delivered_at";

pub(super) fn notification(row: &PgRow) -> Result<Notification> {
    let args: String = row.try_get("args").map_err(db)?;
    let attempts: i32 = row.try_get("attempts").map_err(db)?;
    Ok(Notification {
        notification: NewNotification {
            id: row.try_get("id").map_err(db)?,
            event: row.try_get("event").map_err(db)?,
            environment: row.try_get("environment").map_err(db)?,
            target: row.try_get("target").map_err(db)?,
            action: row.try_get("action").map_err(db)?,
            args: serde_json::from_str(&args)
                .map_err(|e| Error::Backend(format!("a notification's arguments: {e}")))?,
            created_at: row.try_get("created_at").map_err(db)?,
        },
        attempts: u32::try_from(attempts).unwrap_or(0),
        due_at: row.try_get("due_at").map_err(db)?,
        last_error: row.try_get("last_error").map_err(db)?,
        delivered_at: row.try_get("delivered_at").map_err(db)?,
    })
}

pub(super) async fn add(pool: &PgPool, items: &[NewNotification]) -> Result<usize> {
    let mut tx = pool.begin().await.map_err(db)?;
    let mut added = 0;
    for n in items {
        let args = serde_json::to_string(&n.args).map_err(|e| Error::Backend(e.to_string()))?;
        added += sqlx::query(
            "INSERT INTO notifications (id, event, environment, target, action, args,
                 created_at, due_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&n.id)
        .bind(&n.event)
        .bind(&n.environment)
        .bind(&n.target)
        .bind(&n.action)
        .bind(args)
        .bind(n.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected() as usize;
    }
    tx.commit().await.map_err(db)?;
    Ok(added)
}

pub(super) async fn claim(
    pool: &PgPool,
    holder: &str,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Notification>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET claimed_by = $1, claimed_until = $2
         WHERE id IN (
             SELECT id FROM notifications
             WHERE delivered_at IS NULL AND due_at <= $3
               AND (claimed_until IS NULL OR claimed_until <= $3)
             ORDER BY due_at, id LIMIT $4
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    )))
    .bind(holder)
    .bind(now.saturating_add(lease_ms))
    .bind(now)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut found = rows.iter().map(notification).collect::<Result<Vec<_>>>()?;
    found.sort_by(|a, b| (a.due_at, &a.notification.id).cmp(&(b.due_at, &b.notification.id)));
    Ok(found)
}

pub(super) async fn settle(
    pool: &PgPool,
    id: &str,
    holder: &str,
    at: Timestamp,
    error: Option<&str>,
    retry_at: Timestamp,
) -> Result<bool> {
    let done = match error {
        None => {
            sqlx::query(
                "UPDATE notifications SET delivered_at = $3, attempts = attempts + 1,
                 last_error = NULL, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL",
            )
            .bind(id)
            .bind(holder)
            .bind(at)
            .execute(pool)
            .await
        }
        Some(error) => {
            sqlx::query(
                "UPDATE notifications SET attempts = attempts + 1, last_error = $3,
                 due_at = $4, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL",
            )
            .bind(id)
            .bind(holder)
            .bind(error)
            .bind(retry_at)
            .execute(pool)
            .await
        }
    };
    Ok(done.map_err(db)?.rows_affected() == 1)
}

pub(super) async fn list(pool: &PgPool, environment: Option<&str>) -> Result<Vec<Notification>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE $1::TEXT IS NULL OR environment = $1
         ORDER BY created_at, id"
    )))
    .bind(environment)
    .fetch_all(pool)
    .await
    .map_err(db)?
    .iter()
    .map(notification)
    .collect()
}
