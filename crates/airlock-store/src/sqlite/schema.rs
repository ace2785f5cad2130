//! The schema, as a list of migrations applied in order and tracked by `PRAGMA user_version`.
//!
//! A migration, once released, is never edited: a change to the schema is a new entry at the
//! end of [`MIGRATIONS`]. Opening a file whose version is lower applies the missing ones in one
//! transaction; opening a file written by a newer Airlock is refused.

use rusqlite::{Connection, TransactionBehavior};

use super::DbResult;
use crate::{Error, Result};

/// Version 1: every table of the store.
///
/// `runs.due_at` is when a run becomes claimable: a queued run at its wake time (its
/// acceptance time when it has none), a waiting run at its deadline (never without one), a
/// running run when its lease expires; finished runs have none. Only runs with a due time
/// are in the partial index `runs_due`, so claiming costs the same with ten runs or ten
/// million finished ones.
const V1: &str = r#"
CREATE TABLE versions (
    id          TEXT PRIMARY KEY NOT NULL,
    workflow    TEXT NOT NULL,
    canonical   TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE deployments (
    environment TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    version     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, workflow)
) WITHOUT ROWID;

CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    environment      TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    version          TEXT NOT NULL,
    status           TEXT NOT NULL,
    trigger_payload  TEXT NOT NULL,
    dedupe_key       TEXT,
    output           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    wake_at          INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    fencing_token    INTEGER NOT NULL DEFAULT 0,
    claims           INTEGER NOT NULL DEFAULT 0,
    due_at           INTEGER GENERATED ALWAYS AS (
        CASE status
            WHEN 'queued'  THEN coalesce(wake_at, created_at)
            WHEN 'waiting' THEN wake_at
            WHEN 'running' THEN lease_expires_at
        END
    ) VIRTUAL
);
CREATE UNIQUE INDEX runs_dedupe ON runs (environment, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_environment ON runs (environment, created_at);
CREATE INDEX runs_workflow ON runs (environment, workflow, created_at);
CREATE INDEX runs_status ON runs (status, created_at);

CREATE TABLE journal (
    run             TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    step            TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    input           TEXT,
    output          TEXT,
    error           TEXT,
    idempotency_key TEXT,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    PRIMARY KEY (run, seq)
);

CREATE TABLE step_decisions (
    run         TEXT NOT NULL,
    step        TEXT NOT NULL,
    approver    TEXT NOT NULL,
    approved    INTEGER NOT NULL,
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (run, step)
) WITHOUT ROWID;

CREATE TABLE secrets (
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    fingerprint TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, name)
);

CREATE TABLE test_records (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    environment     TEXT NOT NULL,
    run             TEXT NOT NULL,
    step            TEXT NOT NULL,
    connector       TEXT NOT NULL,
    action          TEXT NOT NULL,
    arguments       TEXT NOT NULL,
    idempotency_key TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX test_records_environment ON test_records (environment, id);

CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    environment TEXT,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
"#;

/// Version 2: listing by status without slowing the hot path.
///
/// `runs_status` now holds only the statuses a run rarely leaves (waiting, failed, dead), so
/// the hot path (queued → running → succeeded) no longer moves entries in it; queued and
/// running runs are listed through `runs_due` (they always have a due time), succeeded ones
/// through the time-ordered indexes, where they are most of the rows.
const V2: &str = r#"
DROP INDEX runs_status;
CREATE INDEX runs_status ON runs (status, created_at) WHERE status IN ('waiting', 'failed', 'dead');
"#;

/// Version 3: the path between environments — evidence bound to version hashes,
/// promotion requests and their approvals, releases linked to the one before.
const V3: &str = r#"
CREATE TABLE evidence (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    version  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    passed   INTEGER NOT NULL,
    summary  TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX evidence_version ON evidence (workflow, version, id);

CREATE TABLE promotion_requests (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          TEXT NOT NULL,
    from_environment TEXT NOT NULL,
    to_environment   TEXT NOT NULL,
    author           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    status           TEXT NOT NULL,
    closed_at        INTEGER
);
CREATE INDEX promotion_requests_workflow ON promotion_requests (workflow, created_at);

CREATE TABLE approvals (
    request  TEXT NOT NULL REFERENCES promotion_requests (id),
    approver TEXT NOT NULL,
    approved INTEGER NOT NULL,
    reason   TEXT,
    at       INTEGER NOT NULL,
    PRIMARY KEY (request, approver)
);

CREATE TABLE releases (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    version     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    request     TEXT,
    author      TEXT NOT NULL,
    approvers   TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    previous    TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX releases_workflow ON releases (environment, workflow, seq);
"#;

/// Version 4: what `airlock serve` keeps — API tokens and schedule cursors.
///
/// A token is stored by the SHA-256 of its secret, never the secret. `api_tokens_live_name`
/// makes a name unique among the *live* tokens of an environment (a revoked token's name may
/// be given again); `secret_hash` is unique over all tokens, revoked ones included, so a
/// revoked secret never comes back. `schedule_cursors` holds, per environment and workflow,
/// the last tick a schedule fired; it is moved by compare-and-set.
const V4: &str = r#"
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    environment TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (environment, name)
    WHERE revoked_at IS NULL;
CREATE INDEX api_tokens_environment ON api_tokens (environment, name, created_at, id);

CREATE TABLE schedule_cursors (
    environment TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    last_tick   INTEGER NOT NULL,
    PRIMARY KEY (environment, workflow)
) WITHOUT ROWID;
"#;

/// Version 5: a running run's lease length (`runs.lease_ms`), the holder's promise of how
/// long it may go without renewing, which whoever watches the lease waits out before
/// taking the run over (see `Lease`). From this version on a running run's `due_at` only
/// orders it in `runs_due`: `claim` never takes a running run, `take_over` does.
const V5: &str = r#"
ALTER TABLE runs ADD COLUMN lease_ms INTEGER;
"#;

/// Console sessions (`airlock serve`'s web console): a signed-in browser acting as one
/// API token, kept by the hash of its id, so that sessions outlive a restart and are
/// shared by every process serving the store. And the console's "failed runs of one
/// environment" (or waiting, or dead): one range of an index, however few there are,
/// rather than every run of the environment read to find them.
const CONSOLE_SESSIONS: &str = r#"
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX runs_environment_status ON runs (environment, status, created_at)
    WHERE status IN ('waiting', 'failed', 'dead');
"#;

/// How many runs finished, and how many of them did not succeed, per environment, workflow,
/// hour of acceptance and version: what release failure rates and readiness read, so that
/// counting them costs the same with a thousand runs or ten million. Kept by triggers, in
/// the transaction that changes the run, so every path that inserts, finishes, retries or
/// prunes a run keeps it true without knowing of it. (A run's environment, workflow,
/// version and acceptance time never change; only its status does.) The hour is
/// `created_at` divided by 3,600,000 rounded down (`TALLY_BUCKET_MS` in `mod.rs`); the
/// table is derived, so a store copy leaves it to the destination's triggers. And one
/// environment's audit events by an index, a page at a time.
const RUN_TALLY: &str = r#"
CREATE INDEX audit_environment ON audit (environment, seq) WHERE environment IS NOT NULL;

CREATE TABLE run_tally (
    environment TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    version     TEXT NOT NULL,
    finished    INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    PRIMARY KEY (environment, workflow, hour, version)
) WITHOUT ROWID;

INSERT INTO run_tally (environment, workflow, hour, version, finished, failed)
SELECT environment, workflow, (created_at - (created_at % 3600000 + 3600000) % 3600000) / 3600000, version, count(*), sum(status <> 'succeeded')
FROM runs WHERE status IN ('succeeded', 'failed', 'dead')
GROUP BY environment, workflow, (created_at - (created_at % 3600000 + 3600000) % 3600000) / 3600000, version;

CREATE TRIGGER run_tally_inserted AFTER INSERT ON runs
WHEN NEW.status IN ('succeeded', 'failed', 'dead')
BEGIN
    INSERT INTO run_tally (environment, workflow, hour, version, finished, failed)
    VALUES (NEW.environment, NEW.workflow, (NEW.created_at - (NEW.created_at % 3600000 + 3600000) % 3600000) / 3600000, NEW.version, 1,
            NEW.status <> 'succeeded')
    ON CONFLICT (environment, workflow, hour, version)
    DO UPDATE SET finished = finished + 1, failed = failed + excluded.failed;
END;

CREATE TRIGGER run_tally_status_changed AFTER UPDATE OF status ON runs
WHEN OLD.status IS NOT NEW.status
 AND (OLD.status IN ('succeeded', 'failed', 'dead') OR NEW.status IN ('succeeded', 'failed', 'dead'))
BEGIN
    UPDATE run_tally
    SET finished = finished - 1, failed = failed - (OLD.status <> 'succeeded')
    WHERE OLD.status IN ('succeeded', 'failed', 'dead')
      AND environment = OLD.environment AND workflow = OLD.workflow
      AND hour = (OLD.created_at - (OLD.created_at % 3600000 + 3600000) % 3600000) / 3600000 AND version = OLD.version;
    INSERT INTO run_tally (environment, workflow, hour, version, finished, failed)
    SELECT NEW.environment, NEW.workflow, (NEW.created_at - (NEW.created_at % 3600000 + 3600000) % 3600000) / 3600000, NEW.version, 1,
           NEW.status <> 'succeeded'
    WHERE NEW.status IN ('succeeded', 'failed', 'dead')
    ON CONFLICT (environment, workflow, hour, version)
    DO UPDATE SET finished = finished + 1, failed = failed + excluded.failed;
END;

CREATE TRIGGER run_tally_deleted AFTER DELETE ON runs
WHEN OLD.status IN ('succeeded', 'failed', 'dead')
BEGIN
    UPDATE run_tally
    SET finished = finished - 1, failed = failed - (OLD.status <> 'succeeded')
    WHERE environment = OLD.environment AND workflow = OLD.workflow
      AND hour = (OLD.created_at - (OLD.created_at % 3600000 + 3600000) % 3600000) / 3600000 AND version = OLD.version;
    DELETE FROM run_tally
    WHERE finished = 0
      AND environment = OLD.environment AND workflow = OLD.workflow
      AND hour = (OLD.created_at - (OLD.created_at % 3600000 + 3600000) % 3600000) / 3600000 AND version = OLD.version;
END;
"#;

/// Deployed project bundles: the files a deploy carried, so that a server without a
/// checkout serves the project deployed last (`seq` orders deploys; `id` is the content's).
const PROJECT_BUNDLES: &str = r#"
CREATE TABLE project_bundles (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL,
    environment TEXT NOT NULL,
    files       TEXT NOT NULL,
    deployed_by TEXT NOT NULL,
    deployed_at INTEGER NOT NULL
);
"#;

/// The notification outbox: one row per (event, target), delivered once. `claimed_by` and
/// `claimed_until` are the deliverer's claim; `due_at` its next attempt.
const NOTIFICATIONS: &str = r#"
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY NOT NULL,
    event         TEXT NOT NULL,
    environment   TEXT NOT NULL,
    target        TEXT NOT NULL,
    action        TEXT NOT NULL,
    args          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER NOT NULL,
    last_error    TEXT,
    delivered_at  INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE delivered_at IS NULL;
"#;

/// The open requests alone, for [`crate::Store::open_requests`]: a request is open for
/// days at most and closed for ever after, so this index stays as small as the inbox.
const OPEN_REQUESTS: &str = r#"
CREATE INDEX promotion_requests_open ON promotion_requests (created_at) WHERE status = 'open';
"#;

/// Every migration, in order; the schema version of a file is how many it has applied.
const MIGRATIONS: &[&str] = &[
    V1,
    V2,
    V3,
    V4,
    V5,
    CONSOLE_SESSIONS,
    RUN_TALLY,
    PROJECT_BUNDLES,
    NOTIFICATIONS,
    OPEN_REQUESTS,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database.
pub(super) fn version(conn: &Connection) -> Result<u32> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    u32::try_from(version).map_err(|_| Error::Backend(format!("bad schema version {version}")))
}

/// Brings the database up to [`SCHEMA_VERSION`], in one transaction that holds the write
/// lock, so two processes opening the same old file do not both migrate it.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let current = version(&tx)?;
    if current > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the database has schema version {current}, newer than this Airlock's ({SCHEMA_VERSION}); \
             upgrade Airlock to open it"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .map_err(|e| Error::Backend(format!("migration {}: {e}", index + 1)))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .db()?;
    }
    tx.commit().db()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by an older Airlock (schema version 1, with a run in it) is upgraded
    /// in place when opened, and keeps its data.
    #[test]
    fn an_older_file_is_upgraded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(V1).expect("version 1");
            conn.pragma_update(None, "user_version", 1)
                .expect("set version");
            conn.execute(
                "INSERT INTO runs (id, environment, workflow, version, status, trigger_payload,
                     created_at)
                 VALUES ('r1', 'staging', 'hello', 'v', 'dead', '{}', 1)",
                [],
            )
            .expect("a run");
        }
        let mut conn = Connection::open(&path).expect("reopen");
        migrate(&mut conn).expect("migrate");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        let index: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'runs_status'",
                [],
                |row| row.get(0),
            )
            .expect("runs_status");
        assert!(
            index.contains("WHERE status IN"),
            "runs_status is partial now: {index}"
        );
        let status: String = conn
            .query_row("SELECT status FROM runs WHERE id = 'r1'", [], |row| {
                row.get(0)
            })
            .expect("the run is kept");
        assert_eq!(status, "dead");
        migrate(&mut conn).expect("migrating an up-to-date file does nothing");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
    }
}
