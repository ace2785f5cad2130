//! The PostgreSQL schema, as built-in migrations applied in order and recorded in
//! `airlock_schema_version`, one row per applied migration.
//!
//! A migration, once released, is never edited: a change to the schema is a new entry at
//! the end of [`MIGRATIONS`]. Migrating runs in one transaction that first takes a
//! transaction-scoped advisory lock, so that many servers starting at once against one
//! database migrate it once: the others wait, then find nothing left to do. PostgreSQL's
//! DDL is transactional, so a migration that fails leaves the database as it was.

use sqlx::PgPool;

use super::{db, lock_keys};
use crate::{Error, Result};

/// Version 1: every table of the store, as of the SQLite schema's version 4.
///
/// - Times are `BIGINT` milliseconds since the epoch, as the model has them: the store never
///   reads a clock, and an integer compares and copies exactly.
/// - Text compares and sorts as bytes (`COLLATE "C"`), as in SQLite, whatever the
///   database's default collation: listings ordered by name or id come out the same from
///   both backends, and equality on ids needs no locale.
/// - JSON values are `json`, not `jsonb`: `json` keeps the exact text it is given, which is
///   what the model round-trips (a string holding `\u0000` is refused by `jsonb`, and
///   `jsonb` would reorder keys and drop duplicates).
/// - `runs.due_at` is when a run becomes claimable, as in SQLite: a queued run at its wake
///   time (its acceptance time when it has none), a waiting run at its deadline (never
///   without one), a running run when its lease expires; finished runs have none. Only runs
///   with a due time are in the partial index `runs_due`, so claiming costs the same with ten
///   runs or ten million finished ones. PostgreSQL before 18 has only stored generated
///   columns, so it is written with the row.
/// - Every write that gives a released run a due time (an enqueue, a sleep's release back
///   to the queue, a wait with a deadline, a step decision, a retry) notifies channel
///   `airlock_work`, from a trigger, so that no path can forget to: idle workers listening
///   there wake at once and look again, instead of at their next poll. The notification is sent when the transaction
///   commits, and PostgreSQL folds identical ones of one transaction into one.
/// - API tokens and schedule cursors as in SQLite's version 4: a token's name is unique
///   among the live tokens of an environment, its secret's hash over all tokens.
/// - `releases` has at most one successor per release (`releases_one_successor`, plus
///   `releases_one_first` for the first one of a workflow in an environment): the history
///   is a line, and of two concurrent releases from the same current one, the database
///   itself lets exactly one in.
const V1: &str = r#"
CREATE TABLE versions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    workflow    TEXT COLLATE "C" NOT NULL,
    canonical   TEXT COLLATE "C" NOT NULL,
    source      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE deployments (
    environment TEXT COLLATE "C" NOT NULL,
    workflow    TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (environment, workflow)
);

CREATE TABLE runs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    environment      TEXT COLLATE "C" NOT NULL,
    workflow         TEXT COLLATE "C" NOT NULL,
    version          TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN
                         ('queued', 'running', 'waiting', 'succeeded', 'failed', 'dead')),
    trigger_payload  JSON NOT NULL,
    dedupe_key       TEXT COLLATE "C",
    output           JSON,
    error            TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    wake_at          BIGINT,
    lease_owner      TEXT COLLATE "C",
    lease_expires_at BIGINT,
    fencing_token    BIGINT NOT NULL DEFAULT 0,
    claims           BIGINT NOT NULL DEFAULT 0,
    due_at           BIGINT GENERATED ALWAYS AS (
        CASE status
            WHEN 'queued'  THEN coalesce(wake_at, created_at)
            WHEN 'waiting' THEN wake_at
            WHEN 'running' THEN lease_expires_at
        END
    ) STORED
);
CREATE UNIQUE INDEX runs_dedupe ON runs (environment, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX runs_due ON runs (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_environment ON runs (environment, created_at, id);
CREATE INDEX runs_workflow ON runs (environment, workflow, created_at, id);
CREATE INDEX runs_workflow_only ON runs (workflow, created_at, id);
CREATE INDEX runs_status ON runs (status, created_at, id)
    WHERE status IN ('waiting', 'failed', 'dead');

CREATE TABLE journal (
    run             TEXT COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    step            TEXT COLLATE "C" NOT NULL,
    attempt         BIGINT NOT NULL,
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN
                        ('started', 'succeeded', 'failed', 'outcome_unknown', 'waiting', 'retried')),
    input           JSON,
    output          JSON,
    error           TEXT COLLATE "C",
    idempotency_key TEXT COLLATE "C",
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    PRIMARY KEY (run, seq)
);

CREATE TABLE step_decisions (
    run         TEXT COLLATE "C" NOT NULL,
    step        TEXT COLLATE "C" NOT NULL,
    approver    TEXT COLLATE "C" NOT NULL,
    approved    BOOLEAN NOT NULL,
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (run, step)
);

CREATE TABLE secrets (
    environment TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    sealed      BYTEA NOT NULL,
    fingerprint TEXT COLLATE "C",
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (environment, name)
);

CREATE TABLE test_records (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    environment     TEXT COLLATE "C" NOT NULL,
    run             TEXT COLLATE "C" NOT NULL,
    step            TEXT COLLATE "C" NOT NULL,
    connector       TEXT COLLATE "C" NOT NULL,
    action          TEXT COLLATE "C" NOT NULL,
    arguments       JSON NOT NULL,
    idempotency_key TEXT COLLATE "C",
    at              BIGINT NOT NULL
);
CREATE INDEX test_records_environment ON test_records (environment, id);

CREATE TABLE audit (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C",
    subject     TEXT COLLATE "C" NOT NULL,
    detail      JSON NOT NULL,
    prev_hash   TEXT COLLATE "C" NOT NULL,
    hash        TEXT COLLATE "C" NOT NULL
);

CREATE TABLE evidence (
    id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    workflow TEXT COLLATE "C" NOT NULL,
    version  TEXT COLLATE "C" NOT NULL,
    kind     TEXT COLLATE "C" NOT NULL,
    passed   BOOLEAN NOT NULL,
    summary  JSON NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX evidence_version ON evidence (workflow, version, id);

CREATE TABLE promotion_requests (
    id               TEXT COLLATE "C" PRIMARY KEY,
    workflow         TEXT COLLATE "C" NOT NULL,
    version          TEXT COLLATE "C" NOT NULL,
    from_environment TEXT COLLATE "C" NOT NULL,
    to_environment   TEXT COLLATE "C" NOT NULL,
    author           TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN ('open', 'released', 'rejected')),
    closed_at        BIGINT
);
CREATE INDEX promotion_requests_workflow ON promotion_requests (workflow, created_at);

CREATE TABLE approvals (
    request  TEXT COLLATE "C" NOT NULL REFERENCES promotion_requests (id),
    approver TEXT COLLATE "C" NOT NULL,
    approved BOOLEAN NOT NULL,
    reason   TEXT COLLATE "C",
    at       BIGINT NOT NULL,
    PRIMARY KEY (request, approver)
);

CREATE TABLE releases (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    environment TEXT COLLATE "C" NOT NULL,
    workflow    TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('promotion', 'rollback')),
    request     TEXT COLLATE "C",
    author      TEXT COLLATE "C" NOT NULL,
    approvers   JSON NOT NULL,
    evidence    JSON NOT NULL,
    previous    TEXT COLLATE "C",
    at          BIGINT NOT NULL
);
CREATE INDEX releases_workflow ON releases (environment, workflow, seq);
CREATE UNIQUE INDEX releases_one_successor ON releases (environment, workflow, previous)
    WHERE previous IS NOT NULL;
CREATE UNIQUE INDEX releases_one_first ON releases (environment, workflow)
    WHERE previous IS NULL;

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C" NOT NULL,
    role        TEXT COLLATE "C" NOT NULL,
    secret_hash TEXT COLLATE "C" NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    CONSTRAINT api_tokens_secret_hash UNIQUE (secret_hash)
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (environment, name)
    WHERE revoked_at IS NULL;
CREATE INDEX api_tokens_environment ON api_tokens (environment, name, created_at, id);

CREATE TABLE schedule_cursors (
    environment TEXT COLLATE "C" NOT NULL,
    workflow    TEXT COLLATE "C" NOT NULL,
    last_tick   BIGINT NOT NULL,
    PRIMARY KEY (environment, workflow)
);

CREATE FUNCTION airlock_notify_work() RETURNS trigger LANGUAGE plpgsql AS $notify$
BEGIN
    PERFORM pg_notify('airlock_work', '');
    RETURN NULL;
END
$notify$;
CREATE TRIGGER runs_notify_work
    AFTER INSERT OR UPDATE OF status, wake_at ON runs
    FOR EACH ROW WHEN (NEW.status IN ('queued', 'waiting') AND NEW.due_at IS NOT NULL)
    EXECUTE FUNCTION airlock_notify_work();
"#;

/// Version 2: requests can be withdrawn by their author or expire; releases can be a
/// protected environment's adopted first configuration, or take a workflow out.
const V2: &str = r#"
ALTER TABLE promotion_requests DROP CONSTRAINT promotion_requests_status_check;
ALTER TABLE promotion_requests ADD CONSTRAINT promotion_requests_status_check
    CHECK (status IN ('open', 'released', 'rejected', 'withdrawn', 'expired'));
ALTER TABLE releases DROP CONSTRAINT releases_kind_check;
ALTER TABLE releases ADD CONSTRAINT releases_kind_check
    CHECK (kind IN ('promotion', 'rollback', 'adopted', 'disable'));
"#;

/// Version 3: a running run's lease length (`runs.lease_ms`), the holder's promise of how
/// long it may go without renewing, which whoever watches the lease waits out before
/// taking the run over (see `Lease`), as in SQLite's version 5. From this version on a
/// running run's `due_at` only orders it in `runs_due`: `claim` never takes a running run,
/// `take_over` does.
const V3: &str = r#"
ALTER TABLE runs ADD COLUMN lease_ms BIGINT;
"#;

/// Console sessions, as in SQLite's `CONSOLE_SESSIONS`: a signed-in browser acting as one
/// API token, kept by the hash of its id; and the index of an environment's waiting, failed
/// and dead runs.
const CONSOLE_SESSIONS: &str = r#"
CREATE TABLE console_sessions (
    id_hash    TEXT COLLATE "C" PRIMARY KEY,
    token_id   TEXT COLLATE "C" NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX runs_environment_status ON runs (environment, status, created_at, id)
    WHERE status IN ('waiting', 'failed', 'dead');
"#;

/// One environment's audit events by an index, a page at a time, as in SQLite's
/// `RUN_TALLY`. (SQLite's run tally itself is not here: its one row per workflow and hour
/// would be a lock every worker finishing a run of that workflow waits on, so PostgreSQL
/// counts outcomes from `runs_workflow`.)
const AUDIT_BY_ENVIRONMENT: &str = r#"
CREATE INDEX audit_environment ON audit (environment, seq) WHERE environment IS NOT NULL;
"#;

/// Deployed project bundles, as in SQLite's `PROJECT_BUNDLES`.
const PROJECT_BUNDLES: &str = r#"
CREATE TABLE project_bundles (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL,
    environment TEXT NOT NULL,
    files       JSON NOT NULL,
    deployed_by TEXT NOT NULL,
    deployed_at BIGINT NOT NULL
);
"#;

/// The notification outbox, as in SQLite's `NOTIFICATIONS`.
const NOTIFICATIONS: &str = r#"
CREATE TABLE notifications (
    id            TEXT COLLATE "C" PRIMARY KEY,
    event         TEXT NOT NULL,
    environment   TEXT NOT NULL,
    target        TEXT NOT NULL,
    action        TEXT NOT NULL,
    args          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        BIGINT NOT NULL,
    last_error    TEXT,
    delivered_at  BIGINT,
    claimed_by    TEXT,
    claimed_until BIGINT
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE delivered_at IS NULL;
"#;

/// The open requests alone, as in SQLite's `OPEN_REQUESTS`.
const OPEN_REQUESTS: &str = r#"
CREATE INDEX promotion_requests_open ON promotion_requests (created_at) WHERE status = 'open';
"#;

/// Every migration, in order; the schema version of a database is the highest applied.
const MIGRATIONS: &[&str] = &[
    V1,
    V2,
    V3,
    CONSOLE_SESSIONS,
    AUDIT_BY_ENVIRONMENT,
    PROJECT_BUNDLES,
    NOTIFICATIONS,
    OPEN_REQUESTS,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The table that records which migrations were applied.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS airlock_schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The schema version of the database (0 when it was never migrated).
pub(super) async fn version(pool: &PgPool) -> Result<u32> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('airlock_schema_version') IS NOT NULL")
            .fetch_one(pool)
            .await
            .map_err(db)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM airlock_schema_version")
            .fetch_one(pool)
            .await
            .map_err(db)?;
    u32::try_from(version.unwrap_or(0))
        .map_err(|_| Error::Backend(format!("bad schema version {version:?}")))
}

/// Brings the database up to [`SCHEMA_VERSION`] and returns the versions it applied (none
/// when it was up to date). Refuses a database written by a newer Airlock.
pub(super) async fn migrate(pool: &PgPool) -> Result<Vec<u32>> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_keys::MIGRATE)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(VERSION_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let current: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM airlock_schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    let current = u32::try_from(current.unwrap_or(0))
        .map_err(|_| Error::Backend(format!("bad schema version {current:?}")))?;
    if current > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the database has schema version {current}, newer than this Airlock's \
             ({SCHEMA_VERSION}); upgrade Airlock to use it"
        )));
    }
    let mut applied = Vec::new();
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        // A migration is several statements: the simple query protocol runs them as one.
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Backend(format!("migration {version}: {e}")))?;
        sqlx::query("INSERT INTO airlock_schema_version (version) VALUES ($1)")
            .bind(version as i32)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        applied.push(version);
    }
    tx.commit().await.map_err(db)?;
    Ok(applied)
}
