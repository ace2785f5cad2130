//! Moving a store from SQLite to PostgreSQL, when a project outgrows one machine.
//!
//! [`sqlite_to_postgres`] copies every table, row for row: ids, sequence numbers and
//! timestamps as they are, secrets still sealed (this crate never holds a key), the audit
//! log with its hashes unchanged, so the chain verifies in the new store as in the old.
//! It writes into an *empty* PostgreSQL store only, in one transaction: a copy that fails
//! leaves nothing behind, and a copy is never merged into a store that already has history.
//!
//! The copy is driven by [`TABLES`], one entry per table with its columns' kinds. Every
//! table of the SQLite file must be listed there: a table added to the SQLite schema and not
//! to the copy makes the copy refuse to run, rather than silently leave data behind.

use std::path::Path;

use rusqlite::types::Value as SqliteValue;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder};
use tokio::sync::mpsc;

use crate::postgres::db;
use crate::{Error, PostgresStore, Result, SqliteStore, verify_audit_chain};

/// What a column holds, to read it from SQLite and bind it for PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    /// An INTEGER 0/1 in SQLite, a BOOLEAN in PostgreSQL.
    Boolean,
    /// JSON text in SQLite, `json` in PostgreSQL (the text kept exactly).
    Json,
    Bytes,
}

/// One table to copy.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The order rows are read in (and so inserted in).
    order_by: &'static str,
    /// The identity column whose sequence must continue after the copied ids.
    identity: Option<&'static str>,
}

use Kind::{Boolean, Bytes, Integer, Json, Text};

/// Tables a store derives from the others by itself (SQLite's `run_tally`, kept by
/// triggers on `runs`): the destination rebuilds what it needs as the rows arrive, so
/// they are not copied.
const DERIVED: &[&str] = &["run_tally"];

/// Every table, parents before children (approvals refer to promotion requests).
const TABLES: &[Table] = &[
    Table {
        name: "versions",
        columns: &[
            ("id", Text),
            ("workflow", Text),
            ("canonical", Text),
            ("source", Text),
            ("created_at", Integer),
        ],
        order_by: "id",
        identity: None,
    },
    Table {
        name: "deployments",
        columns: &[
            ("environment", Text),
            ("workflow", Text),
            ("version", Text),
            ("actor", Text),
            ("updated_at", Integer),
        ],
        order_by: "environment, workflow",
        identity: None,
    },
    Table {
        name: "runs",
        columns: &[
            ("id", Text),
            ("environment", Text),
            ("workflow", Text),
            ("version", Text),
            ("status", Text),
            ("trigger_payload", Json),
            ("dedupe_key", Text),
            ("output", Json),
            ("error", Text),
            ("created_at", Integer),
            ("started_at", Integer),
            ("finished_at", Integer),
            ("wake_at", Integer),
            ("lease_owner", Text),
            ("lease_expires_at", Integer),
            ("fencing_token", Integer),
            ("claims", Integer),
            ("lease_ms", Integer),
        ],
        order_by: "rowid",
        identity: None,
    },
    Table {
        name: "journal",
        columns: &[
            ("run", Text),
            ("seq", Integer),
            ("step", Text),
            ("attempt", Integer),
            ("status", Text),
            ("input", Json),
            ("output", Json),
            ("error", Text),
            ("idempotency_key", Text),
            ("started_at", Integer),
            ("finished_at", Integer),
        ],
        order_by: "run, seq",
        identity: None,
    },
    Table {
        name: "step_decisions",
        columns: &[
            ("run", Text),
            ("step", Text),
            ("approver", Text),
            ("approved", Boolean),
            ("decided_at", Integer),
        ],
        order_by: "run, step",
        identity: None,
    },
    Table {
        name: "secrets",
        columns: &[
            ("environment", Text),
            ("name", Text),
            ("sealed", Bytes),
            ("fingerprint", Text),
            ("updated_at", Integer),
        ],
        order_by: "environment, name",
        identity: None,
    },
    Table {
        name: "test_records",
        columns: &[
            ("id", Integer),
            ("environment", Text),
            ("run", Text),
            ("step", Text),
            ("connector", Text),
            ("action", Text),
            ("arguments", Json),
            ("idempotency_key", Text),
            ("at", Integer),
        ],
        order_by: "id",
        identity: Some("id"),
    },
    Table {
        name: "audit",
        columns: &[
            ("seq", Integer),
            ("at", Integer),
            ("actor", Text),
            ("action", Text),
            ("environment", Text),
            ("subject", Text),
            ("detail", Json),
            ("prev_hash", Text),
            ("hash", Text),
        ],
        order_by: "seq",
        identity: None,
    },
    Table {
        name: "evidence",
        columns: &[
            ("id", Integer),
            ("workflow", Text),
            ("version", Text),
            ("kind", Text),
            ("passed", Boolean),
            ("summary", Json),
            ("at", Integer),
        ],
        order_by: "id",
        identity: Some("id"),
    },
    Table {
        name: "promotion_requests",
        columns: &[
            ("id", Text),
            ("workflow", Text),
            ("version", Text),
            ("from_environment", Text),
            ("to_environment", Text),
            ("author", Text),
            ("created_at", Integer),
            ("status", Text),
            ("closed_at", Integer),
        ],
        order_by: "id",
        identity: None,
    },
    Table {
        name: "approvals",
        columns: &[
            ("request", Text),
            ("approver", Text),
            ("approved", Boolean),
            ("reason", Text),
            ("at", Integer),
        ],
        order_by: "request, approver",
        identity: None,
    },
    Table {
        name: "releases",
        columns: &[
            ("seq", Integer),
            ("id", Text),
            ("environment", Text),
            ("workflow", Text),
            ("version", Text),
            ("kind", Text),
            ("request", Text),
            ("author", Text),
            ("approvers", Json),
            ("evidence", Json),
            ("previous", Text),
            ("at", Integer),
        ],
        order_by: "seq",
        identity: Some("seq"),
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("environment", Text),
            ("role", Text),
            ("secret_hash", Text),
            ("created_by", Text),
            ("created_at", Integer),
            ("revoked_at", Integer),
        ],
        order_by: "id",
        identity: None,
    },
    Table {
        name: "console_sessions",
        columns: &[
            ("id_hash", Text),
            ("token_id", Text),
            ("csrf", Text),
            ("created_at", Integer),
            ("expires_at", Integer),
        ],
        order_by: "id_hash",
        identity: None,
    },
    Table {
        name: "schedule_cursors",
        columns: &[
            ("environment", Text),
            ("workflow", Text),
            ("last_tick", Integer),
        ],
        order_by: "environment, workflow",
        identity: None,
    },
    Table {
        name: "project_bundles",
        columns: &[
            ("seq", Integer),
            ("id", Text),
            ("environment", Text),
            ("files", Json),
            ("deployed_by", Text),
            ("deployed_at", Integer),
        ],
        order_by: "seq",
        identity: Some("seq"),
    },
    // The outbox: a notification not yet delivered is accepted work, and goes with the store.
    Table {
        name: "notifications",
        columns: &[
            ("id", Text),
            ("event", Text),
            ("environment", Text),
            ("target", Text),
            ("action", Text),
            ("args", Text),
            ("created_at", Integer),
            ("attempts", Integer),
            ("due_at", Integer),
            ("last_error", Text),
            ("delivered_at", Integer),
            ("claimed_by", Text),
            ("claimed_until", Integer),
        ],
        order_by: "id",
        identity: None,
    },
];

/// How many rows one INSERT carries at most (PostgreSQL takes at most 65,535 parameters
/// per statement; the widest table has 17 columns).
const BATCH_ROWS: usize = 1_000;

/// How many rows of one table were copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCopied {
    /// The table.
    pub table: String,
    /// Its rows, all copied.
    pub rows: u64,
}

/// What [`sqlite_to_postgres`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Rows copied per table, in the order they were copied.
    pub tables: Vec<TableCopied>,
    /// The audit chain as read back from PostgreSQL inside the copy's transaction, checked
    /// as `airlock audit verify` checks it: `Err(seq)` names the first event that does not
    /// fit. Hashes are copied, never recomputed, so a chain broken in SQLite is broken here
    /// at the same event, and one intact there is intact here.
    pub audit_chain: Result<(), i64>,
}

impl CopyReport {
    /// The rows copied of `table`, if it was copied.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|copied| copied.table == table)
            .map(|copied| copied.rows)
    }
}

/// One value read from SQLite, checked against its column's kind.
enum Cell {
    Null,
    Text(String),
    Integer(i64),
    Boolean(bool),
    Bytes(Vec<u8>),
}

/// What the reading thread sends: rows of a table, in batches, or the reason it stopped.
enum Batch {
    Rows { table: usize, rows: Vec<Vec<Cell>> },
    Failed(Error),
}

/// Copies the SQLite store at `sqlite_path` into the empty PostgreSQL store at
/// `postgres_url` (creating its schema if needed), in one transaction.
///
/// The SQLite file is first opened as a store, which upgrades its schema if it is older;
/// the rows are then read from one snapshot, so a server still writing to the file does
/// not tear the copy (what it writes after the snapshot is not copied: stop it first).
/// Refused with [`Error::Conflict`] when the PostgreSQL store has any row already.
pub async fn sqlite_to_postgres(sqlite_path: &Path, postgres_url: &str) -> Result<CopyReport> {
    if !sqlite_path.is_file() {
        return Err(Error::NotFound(format!(
            "SQLite store {}",
            sqlite_path.display()
        )));
    }
    let path = sqlite_path.to_owned();
    tokio::task::spawn_blocking(move || SqliteStore::open(&path).map(drop))
        .await
        .map_err(|e| Error::Backend(format!("opening the SQLite store failed: {e}")))??;

    let target = PostgresStore::connect(postgres_url).await?;
    let mut tx = target.pool().begin().await.map_err(db)?;
    lock_and_check_empty(&mut tx).await?;

    let (sender, mut batches) = mpsc::channel(4);
    let path = sqlite_path.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(error) = read_sqlite(&path, &sender) {
            // The receiver may be gone (the copy failed on its side first).
            let _ = sender.blocking_send(Batch::Failed(error));
        }
    });
    let mut counts = vec![0_u64; TABLES.len()];
    while let Some(batch) = batches.recv().await {
        match batch {
            Batch::Rows { table, rows } => {
                insert_rows(&mut tx, &TABLES[table], &rows).await?;
                counts[table] += rows.len() as u64;
            }
            Batch::Failed(error) => return Err(error),
        }
    }
    reader
        .await
        .map_err(|e| Error::Backend(format!("reading the SQLite store failed: {e}")))?;

    for table in TABLES {
        if let Some(column) = table.identity {
            // Copied ids were given explicitly; new rows continue after the highest.
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{name}', '{column}'),
                     coalesce(max({column}), 0) + 1, false) FROM {name}",
                name = table.name
            )))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
    }
    let audit_chain = verify_audit_chain(&audit_log(&mut tx).await?);
    tx.commit().await.map_err(db)?;
    Ok(CopyReport {
        tables: TABLES
            .iter()
            .zip(counts)
            .map(|(table, rows)| TableCopied {
                table: table.name.to_owned(),
                rows,
            })
            .collect(),
        audit_chain,
    })
}

/// Keeps writers out of every table until the copy commits (readers go on), then checks
/// that all of them are empty.
async fn lock_and_check_empty(tx: &mut PgConnection) -> Result<()> {
    let names: Vec<&str> = TABLES.iter().map(|table| table.name).collect();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    )))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    for name in names {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if rows > 0 {
            return Err(Error::Conflict(format!(
                "the PostgreSQL store is not empty (table {name} has {rows} rows): a SQLite \
                 store is copied into an empty one only, never merged; use a new database"
            )));
        }
    }
    Ok(())
}

async fn audit_log(tx: &mut PgConnection) -> Result<Vec<crate::AuditEvent>> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, environment, subject, detail, prev_hash, hash
         FROM audit ORDER BY seq",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    rows.iter().map(crate::postgres::audit_event_row).collect()
}

/// Reads every table from one snapshot of the file and sends its rows in batches.
fn read_sqlite(path: &Path, sender: &mpsc::Sender<Batch>) -> Result<()> {
    let sql_error = |e: rusqlite::Error| Error::Backend(format!("SQLite: {e}"));
    let mut conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql_error)?;
    // One read transaction: every table is read from the same snapshot.
    let snapshot = conn.transaction().map_err(sql_error)?;
    let present: Vec<String> = snapshot
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )
        .map_err(sql_error)?
        .query_map([], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let unknown: Vec<&String> = present
        .iter()
        .filter(|name| !TABLES.iter().any(|table| table.name == name.as_str()))
        .filter(|name| !DERIVED.contains(&name.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Backend(format!(
            "the SQLite store has tables this copy does not know ({unknown:?}): it would leave \
             them behind, so nothing is copied"
        )));
    }
    for (index, table) in TABLES.iter().enumerate() {
        let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        let mut statement = snapshot
            .prepare(&format!(
                "SELECT {} FROM {} ORDER BY {}",
                columns.join(", "),
                table.name,
                table.order_by
            ))
            .map_err(sql_error)?;
        let mut rows = statement.query([]).map_err(sql_error)?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(row) = rows.next().map_err(sql_error)? {
            let mut cells = Vec::with_capacity(table.columns.len());
            for (position, (column, kind)) in table.columns.iter().enumerate() {
                let value: SqliteValue = row.get(position).map_err(sql_error)?;
                cells.push(cell(table.name, column, *kind, value)?);
            }
            batch.push(cells);
            if batch.len() == BATCH_ROWS {
                send(sender, index, std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            send(sender, index, batch)?;
        }
    }
    Ok(())
}

fn send(sender: &mpsc::Sender<Batch>, table: usize, rows: Vec<Vec<Cell>>) -> Result<()> {
    sender
        .blocking_send(Batch::Rows { table, rows })
        .map_err(|_| Error::Backend("the copy stopped while reading".to_owned()))
}

/// A SQLite value as the cell its column's kind expects.
fn cell(table: &str, column: &str, kind: Kind, value: SqliteValue) -> Result<Cell> {
    Ok(match (kind, value) {
        (_, SqliteValue::Null) => Cell::Null,
        (Text | Json, SqliteValue::Text(text)) => Cell::Text(text),
        (Integer, SqliteValue::Integer(number)) => Cell::Integer(number),
        (Boolean, SqliteValue::Integer(number)) => Cell::Boolean(number != 0),
        (Bytes, SqliteValue::Blob(bytes)) => Cell::Bytes(bytes),
        (kind, other) => {
            return Err(Error::Backend(format!(
                "{table}.{column} holds {:?} where {kind:?} was expected",
                other.data_type()
            )));
        }
    })
}

/// Inserts a batch of rows of `table` in one statement.
async fn insert_rows(tx: &mut PgConnection, table: &Table, rows: &[Vec<Cell>]) -> Result<()> {
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "INSERT INTO {} ({}) ",
        table.name,
        columns.join(", ")
    ));
    query.push_values(rows, |mut tuple, row| {
        for ((_, kind), cell) in table.columns.iter().zip(row) {
            match cell {
                Cell::Null => {
                    tuple.push("NULL");
                }
                Cell::Text(text) => {
                    tuple.push_bind(text.clone());
                    if *kind == Json {
                        // Cast from text, so the JSON is checked and kept as written.
                        tuple.push_unseparated("::json");
                    }
                }
                Cell::Integer(number) => {
                    tuple.push_bind(*number);
                }
                Cell::Boolean(flag) => {
                    tuple.push_bind(*flag);
                }
                Cell::Bytes(bytes) => {
                    tuple.push_bind(bytes.clone());
                }
            }
        }
    });
    query
        .build()
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::Backend(format!("copying {}: {e}", table.name)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of a new SQLite store is in [`TABLES`], with the same columns: a table or
    /// a column added to the SQLite schema fails here until the copy learns it.
    #[test]
    fn the_copy_knows_every_sqlite_table_and_column() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("airlock.db");
        drop(SqliteStore::open(&path).expect("open"));
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("tables");
        let mut known: Vec<&str> = TABLES.iter().map(|table| table.name).collect();
        known.extend(DERIVED);
        known.sort_unstable();
        assert_eq!(tables, known, "the copy lists every table");
        for table in TABLES {
            let columns: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.name
                ))
                .expect("prepare")
                .query_map([], |row| row.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("columns");
            let mut stored: Vec<&str> = columns
                .iter()
                .map(String::as_str)
                // `runs.due_at` is generated from the row; the outbox's is its own.
                .filter(|name| !(table.name == "runs" && *name == "due_at"))
                .collect();
            let mut copied: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
            stored.sort_unstable();
            copied.sort_unstable();
            assert_eq!(stored, copied, "{}: every column is copied", table.name);
        }
    }
}
