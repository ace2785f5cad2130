//! SQLite: the embedded default, one file (`<project>/.airlock/airlock.db`).
//!
//! - **Writes** go to one thread that owns the write connection and commits them in groups
//!   (see [`writer`], which the `sql` connector's SQLite files use too): each request in its
//!   own savepoint, one `COMMIT` and one fsync per batch.
//! - **Reads** run on a few read-only connections on tokio's blocking threads, never on the
//!   writer, and see every write whose call has returned (WAL snapshots).
//! - **Schema**: built-in migrations tracked by `PRAGMA user_version` (see `schema`).
//! - **Several stores on one file** (several processes) are safe: every write transaction is
//!   `BEGIN IMMEDIATE`, so it holds SQLite's write lock from its first read, and a busy
//!   timeout makes the others wait for it instead of failing. Claims stay exclusive. For many
//!   processes on many machines, use the PostgreSQL backend.

mod outbox;
mod promotion;
mod rows;
mod schema;
mod tokens;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::Semaphore;

use crate::{ApiToken, NewApiToken};
use crate::{
    Approval, Evidence, NewEvidence, NewPromotionRequest, NewRelease, PromotionRequest, Release,
};
use crate::{
    AuditEvent, AuditHead, Claim, Commit, Deployment, Enqueued, Error, GENESIS_HASH, JournalEntry,
    Lease, NewAuditEvent, NewJournalEntry, NewRun, NewTestRecord, OutcomeQuery, Outcomes, Result,
    Run, RunFilter, RunStatus, SealedSecret, SecretName, Settlement, StepDecision, Store,
    TestRecord, Timestamp, WorkflowVersion,
};
use crate::{ConsoleSession, NewConsoleSession, Page, StoredBundle};
use crate::{NewNotification, Notification};

pub use schema::SCHEMA_VERSION;

/// When a commit counts as durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a write is on disk when its call returns; it survives a power
    /// cut. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a write survives a crash of the process, but the last few may
    /// be lost on a power cut or an OS crash. Faster.
    Normal,
}

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// When a commit counts as durable.
    pub durability: Durability,
    /// How long a write waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// How many read-only connections (and so concurrent reads) at most.
    pub read_connections: usize,
    /// How many write requests one transaction takes at most.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(10),
            read_connections: 4,
            max_batch: 1024,
        }
    }
}

/// The embedded store: one SQLite file in WAL mode.
///
/// Cheap to clone (the clones share the writer and the readers). Dropping the last clone
/// waits for the writes already sent, then closes the file. Its methods run inside a tokio
/// runtime (reads use its blocking pool); a write whose caller stops waiting still happens.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

// Fields drop in order: the readers close first, so that the writer's connection is the
// last one and SQLite checkpoints and removes the WAL file when it closes.
struct Inner {
    /// Signalled by the writes that may make a run due (see [`Store::wait_for_work`]).
    work: tokio::sync::Notify,
    readers: ReadPool,
    writer: writer::Writer<Error>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if needed, upgrading it if older) the database at `path` with the
    /// default options: full durability.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path` with `options`.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        // Created here, private, rather than by SQLite with the umask's mode (0644 by
        // default): the file holds every run's payload and journal.
        crate::private_files::create_file(path)
            .map_err(|e| Error::Backend(format!("cannot open {}: {e}", path.display())))?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(options.busy_timeout).db()?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "{} cannot use write-ahead logging (journal mode {mode})",
                path.display()
            )));
        }
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous).db()?;
        tune(&conn)?;
        schema::migrate(&mut conn)?;
        conn.set_prepared_statement_cache_capacity(128);
        let writer = writer::Writer::start(
            conn,
            writer::WriterOptions {
                max_batch: options.max_batch,
                thread_name: "airlock-store-writer".to_owned(),
            },
        )?;
        let readers = ReadPool {
            path: path.to_owned(),
            busy_timeout: options.busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.read_connections.max(1))),
        };
        // Open one reader now, so that a file that cannot be read fails here, not later.
        let first = readers.connect()?;
        readers.give_back(first);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                work: tokio::sync::Notify::new(),
                writer,
                readers,
                path: path.to_owned(),
            }),
        })
    }

    /// The file this store keeps.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (after opening: [`SCHEMA_VERSION`]).
    pub async fn schema_version(&self) -> Result<u32> {
        self.read(schema::version).await
    }

    /// Runs `work` on a read-only connection, on a blocking thread.
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .inner
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = inner.readers.take()?;
            let result = work(&conn);
            inner.readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| Error::Backend(format!("a read failed: {e}")))?
    }

    /// Wakes the workers waiting in [`Store::wait_for_work`], and the next one to wait:
    /// a write may have made a run due.
    fn signal_work(&self) {
        self.inner.work.notify_waiters();
        self.inner.work.notify_one();
    }

    /// Runs `work` in the writer's next batch, in its own savepoint. Detached: a write
    /// whose caller stops waiting still happens.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner
            .writer
            .run(writer::Job::new(work).detached())
            .await
    }
}

/// The writer's own failures, as the store reports them: backend errors.
impl writer::WriterError for Error {
    fn sqlite(context: &str, error: rusqlite::Error, _timeout: Option<Duration>) -> Self {
        Error::Backend(format!("{context}: {error}"))
    }

    fn fault(fault: writer::Fault) -> Self {
        Error::Backend(format!("the store's writer: {fault}"))
    }

    fn timeout(after: Duration) -> Self {
        // The store gives its writes no timeout; this is for completeness.
        Error::Backend(format!(
            "the store's writer did not answer within {after:?}"
        ))
    }

    fn duplicate(&self) -> Self {
        match self {
            Error::Backend(message) => Error::Backend(message.clone()),
            other => Error::Backend(other.to_string()),
        }
    }
}

fn closed() -> Error {
    Error::Backend("the store is closed".to_owned())
}

/// Settings of every connection, writer and readers.
fn tune(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA foreign_keys = OFF;",
    )
    .db()
}

/// Read-only connections, opened on demand and kept for reuse; the semaphore bounds how
/// many exist.
struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Backend(format!("cannot open {}: {e}", self.path.display())))?;
        conn.busy_timeout(self.busy_timeout).db()?;
        tune(&conn)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn take(&self) -> Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
    }
}

/// `rusqlite` results into the store's.
trait DbResult<T> {
    fn db(self) -> Result<T>;
}

impl<T> DbResult<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(|e| Error::Backend(e.to_string()))
    }
}

fn is_constraint(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

/// The status and token of a run, inside a write.
fn run_state(conn: &Connection, run: &str) -> Result<Option<(RunStatus, i64)>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT status, fencing_token FROM runs WHERE id = ?1")
        .db()?
        .query_row([run], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?;
    row.map(|(status, token)| {
        RunStatus::parse(&status)
            .map(|status| (status, token))
            .ok_or_else(|| Error::Backend(format!("run {run} has unknown status {status:?}")))
    })
    .transpose()
}

fn run_not_found(run: &str) -> Error {
    Error::NotFound(format!("run {run}"))
}

/// Inserts a queued run; with a dedupe key accepted before in the environment, inserts
/// nothing and answers the first run's id.
/// Who holds a run claimed as it is accepted, until when, and its lease's length.
struct Holder {
    owner: String,
    until: Timestamp,
    lease_ms: i64,
}

/// Inserts a new run: queued, or already claimed (token 1, one claim) under `lease`.
fn insert_run(
    conn: &Connection,
    run: &NewRun,
    trigger: &str,
    lease: Option<&Holder>,
) -> Result<Enqueued> {
    let (status, claims, started_at) = match lease {
        Some(_) => ("running", 1, Some(run.created_at)),
        None => ("queued", 0, None),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO runs (id, environment, workflow, version, status,
                 trigger_payload, dedupe_key, created_at, lease_owner, lease_expires_at,
                 fencing_token, claims, started_at, lease_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)
             ON CONFLICT (environment, dedupe_key) WHERE dedupe_key IS NOT NULL
             DO NOTHING",
        )
        .db()?
        .execute(params![
            run.id,
            run.environment,
            run.workflow,
            run.version,
            status,
            trigger,
            run.dedupe_key,
            run.created_at,
            lease.map(|l| &l.owner),
            lease.map(|l| l.until),
            claims,
            started_at,
            lease.map(|l| l.lease_ms)
        ]);
    match inserted {
        Ok(1) => Ok(Enqueued {
            run: run.id.clone(),
            created: true,
        }),
        Ok(_) => {
            let first: String = conn
                .prepare_cached("SELECT id FROM runs WHERE environment = ?1 AND dedupe_key = ?2")
                .db()?
                .query_row(params![run.environment, run.dedupe_key], |row| row.get(0))
                .db()?;
            Ok(Enqueued {
                run: first,
                created: false,
            })
        }
        Err(e) if is_constraint(&e) => {
            Err(Error::Conflict(format!("run {} already exists", run.id)))
        }
        Err(e) => Err(Error::Backend(e.to_string())),
    }
}

/// The runs due at `?1`, oldest first, at most `?2`: one range of the partial index
/// `runs_due`, which holds no finished run (`due_at` is NULL for them). Running runs are
/// in that range once their lease's end has passed by the wall clock, and are left to
/// `take_over` (see [`Store::claim`]).
const CLAIM_DUE: &str = "SELECT id FROM runs INDEXED BY runs_due
     WHERE due_at <= ?1 AND status <> 'running' ORDER BY due_at LIMIT ?2";

/// Claims run `?1` for `?2` until `?3` (a lease of `?5`), at `?4`, when `also` (more
/// conditions) holds: the one write `claim`, `claim_run` and `take_over` make.
fn take_sql(also: &str) -> String {
    format!(
        "UPDATE runs SET status = 'running', lease_owner = ?2, lease_expires_at = ?3,
             lease_ms = ?5, fencing_token = fencing_token + 1, claims = claims + 1,
             started_at = coalesce(started_at, ?4)
         WHERE id = ?1{also}
         RETURNING {}",
        rows::RUN_COLUMNS
    )
}

/// Whether any run is due at `?1`: the first entry of the same range of `runs_due`.
const ANY_DUE: &str =
    "SELECT 1 FROM runs INDEXED BY runs_due WHERE due_at <= ?1 AND status <> 'running' LIMIT 1";

/// The listing statement for a filter: one per combination of filters, so that each uses
/// its index. Parameters: `?1` environment, `?2` workflow, `?3` status, `?4` limit (-1 for
/// none); those the statement does not name are bound all the same (SQLite counts up to
/// the highest).
///
/// By status (see the schema): waiting, failed and dead runs through the partial index
/// `runs_status`, whose condition the statement repeats so that SQLite may use it; queued
/// and running runs through `runs_due` (all of them have a due time), sorted afterwards —
/// they are the live runs, few next to the finished; succeeded runs through the
/// time-ordered indexes.
///
/// A page after a cursor (`?5` its time, `?6` its run) starts where the index's range
/// does, written as a bound on `created_at` SQLite can seek to, then, among the runs of
/// that one millisecond, those the listing puts after the cursor's run (by rowid, the
/// indexes' own order, so the page needs no sort; a cursor naming no run, as a time
/// filter does, keeps only the earlier milliseconds).
fn runs_sql(filter: &RunFilter) -> String {
    let matching = runs_matching(filter);
    let after_cursor = match (filter.before.is_some(), matching.contains(" WHERE ")) {
        (false, _) => "",
        (true, joined) => {
            if joined {
                " AND created_at <= ?5 AND (created_at < ?5 OR rowid < (SELECT rowid FROM runs WHERE id = ?6))"
            } else {
                " WHERE created_at <= ?5 AND (created_at < ?5 OR rowid < (SELECT rowid FROM runs WHERE id = ?6))"
            }
        }
    };
    format!(
        "SELECT {} FROM {matching}{after_cursor} ORDER BY created_at DESC, rowid DESC LIMIT ?4",
        rows::RUN_COLUMNS,
    )
}

/// The count of the runs a filter names, over the same index as their listing (all of
/// them: a cursor only pages).
fn count_sql(filter: &RunFilter) -> String {
    format!("SELECT count(*) FROM {}", runs_matching(filter))
}

/// `runs [INDEXED BY …] [WHERE …]` for a filter, with the parameters of [`runs_sql`].
fn runs_matching(filter: &RunFilter) -> String {
    let mut source = "runs";
    let mut conditions = Vec::new();
    if filter.environment.is_some() {
        conditions.push("environment = ?1");
    }
    if filter.workflow.is_some() {
        conditions.push("workflow = ?2");
    }
    match filter.status {
        None => {}
        Some(RunStatus::Waiting | RunStatus::Failed | RunStatus::Dead) => {
            conditions.push("status = ?3 AND status IN ('waiting', 'failed', 'dead')");
        }
        Some(RunStatus::Queued | RunStatus::Running) => {
            source = "runs INDEXED BY runs_due";
            conditions.push("status = ?3 AND due_at IS NOT NULL");
        }
        Some(RunStatus::Succeeded) => conditions.push("status = ?3"),
    }
    if conditions.is_empty() {
        source.to_owned()
    } else {
        format!("{source} WHERE {}", conditions.join(" AND "))
    }
}

/// The oldest `?2` runs accepted and finished before `?1`: one range of `runs_created`
/// from its start, so retention reads what it deletes and little else.
const PRUNE_EVERYWHERE: &str = "SELECT id FROM runs INDEXED BY runs_created
     WHERE created_at < ?1 AND status IN ('succeeded', 'failed', 'dead') AND finished_at < ?1
     ORDER BY created_at LIMIT ?2";

/// [`PRUNE_EVERYWHERE`] in environment `?3`, over `runs_environment`.
const PRUNE_IN_ENVIRONMENT: &str = "SELECT id FROM runs INDEXED BY runs_environment
     WHERE environment = ?3 AND created_at < ?1
       AND status IN ('succeeded', 'failed', 'dead') AND finished_at < ?1
     ORDER BY created_at LIMIT ?2";

/// How the finished runs of `?1` environment and `?2` workflow accepted in `[?4, ?5)` ended,
/// of version `?3` when it is not NULL: one range of `runs_workflow`, counted in SQLite.
const RUN_OUTCOMES: &str = "SELECT count(*), coalesce(sum(status <> 'succeeded'), 0)
     FROM runs INDEXED BY runs_workflow
     WHERE environment = ?1 AND workflow = ?2 AND created_at >= ?4 AND created_at < ?5
       AND (?3 IS NULL OR version = ?3) AND status IN ('succeeded', 'failed', 'dead')";

/// A page of test records, newest first: one range of `test_records_environment`.
const RECORDS_PAGE: &str = "FROM test_records
     WHERE environment = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3";

/// A page of the audit log, newest first: the primary key read backwards.
const AUDIT_PAGE: &str = "FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2";

/// A page of one environment's audit events, newest first: one range of
/// `audit_environment`.
const AUDIT_PAGE_IN_ENVIRONMENT: &str =
    "FROM audit WHERE environment = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";

/// A page's limit as SQLite takes it.
fn page_limit(page: Page) -> i64 {
    i64::try_from(page.limit).unwrap_or(i64::MAX)
}

/// Finished runs counted from `run_tally` (kept by the schema's triggers): whole hours
/// `[?4, ?5)` of acceptance, one range of its primary key.
const TALLIED_OUTCOMES: &str = "SELECT coalesce(sum(finished), 0), coalesce(sum(failed), 0)
     FROM run_tally
     WHERE environment = ?1 AND workflow = ?2 AND hour >= ?4 AND hour < ?5
       AND (?3 IS NULL OR version = ?3)";

/// The width of a `run_tally` bucket: an hour of acceptance time. A run at `created_at` is
/// in bucket `created_at.div_euclid(TALLY_BUCKET_MS)`, as the schema's triggers compute it.
const TALLY_BUCKET_MS: i64 = 3_600_000;

/// How [`Store::run_outcomes`] counts `[from, until)`: the whole hours inside it from the
/// tally, and the parts of an hour at either end exactly, from the runs themselves, so the
/// count is exact at any millisecond and costs at most two hours of runs to read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TallyPlan {
    /// Tally buckets `[first, end)`, when any lies wholly inside the range.
    hours: Option<(i64, i64)>,
    /// Ranges of acceptance time `[from, until)` counted from the runs.
    edges: Vec<(i64, i64)>,
}

impl TallyPlan {
    fn of(from: Option<i64>, until: Option<i64>) -> Self {
        // No bound is a bound no bucket crosses.
        let first = match from {
            None => i64::MIN,
            Some(from) => {
                from.div_euclid(TALLY_BUCKET_MS) + i64::from(from.rem_euclid(TALLY_BUCKET_MS) != 0)
            }
        };
        let end = match until {
            None => i64::MAX,
            Some(until) => until.div_euclid(TALLY_BUCKET_MS),
        };
        let (lower, upper) = (from.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        if first >= end {
            return Self {
                hours: None,
                edges: if lower < upper {
                    vec![(lower, upper)]
                } else {
                    Vec::new()
                },
            };
        }
        let mut edges = Vec::new();
        if let Some(from) = from
            && from < first * TALLY_BUCKET_MS
        {
            edges.push((from, first * TALLY_BUCKET_MS));
        }
        if let Some(until) = until
            && end * TALLY_BUCKET_MS < until
        {
            edges.push((end * TALLY_BUCKET_MS, until));
        }
        Self {
            hours: Some((first, end)),
            edges,
        }
    }
}

/// A journal entry ready to insert: JSON already encoded, off the writer thread.
struct EncodedEntry {
    step: String,
    attempt: u32,
    status: &'static str,
    input: Option<String>,
    output: Option<String>,
    error: Option<String>,
    idempotency_key: Option<String>,
    started_at: Timestamp,
    finished_at: Option<Timestamp>,
}

fn encode_entries(entries: &[NewJournalEntry]) -> Result<Vec<EncodedEntry>> {
    entries
        .iter()
        .map(|e| {
            Ok(EncodedEntry {
                step: e.step.clone(),
                attempt: e.attempt,
                status: e.status.as_str(),
                input: rows::json_opt(e.input.as_ref())?,
                output: rows::json_opt(e.output.as_ref())?,
                error: e.error.clone(),
                idempotency_key: e.idempotency_key.clone(),
                started_at: e.started_at,
                finished_at: e.finished_at,
            })
        })
        .collect()
}

/// Appends entries to a run's journal, numbering them after the last one.
fn append_entries(conn: &Connection, run: &str, entries: &[EncodedEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM journal WHERE run = ?1")
        .db()?
        .query_row([run], |row| row.get(0))
        .db()?;
    insert_entries(conn, run, last, entries)
}

/// Writes entries to a run's journal, numbered from `last + 1`.
fn insert_entries(conn: &Connection, run: &str, last: i64, entries: &[EncodedEntry]) -> Result<()> {
    let mut seq = last;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO journal (run, seq, step, attempt, status, input, output,
                 error, idempotency_key, started_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .db()?;
    for e in entries {
        seq += 1;
        insert
            .execute(params![
                run,
                seq,
                e.step,
                e.attempt,
                e.status,
                e.input,
                e.output,
                e.error,
                e.idempotency_key,
                e.started_at,
                e.finished_at
            ])
            .db()?;
    }
    Ok(())
}

/// A settlement ready to write.
enum EncodedSettle {
    Finish {
        status: &'static str,
        output: Option<String>,
        error: Option<String>,
        at: Timestamp,
    },
    Sleep {
        wake_at: Timestamp,
    },
    Wait {
        deadline: Option<Timestamp>,
    },
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_version(&self, version: &WorkflowVersion) -> Result<()> {
        let version = version.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO versions (id, workflow, canonical, source, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            )
            .db()?
            .execute(params![
                version.id,
                version.workflow,
                version.canonical,
                version.source,
                version.created_at
            ])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn version(&self, id: &str) -> Result<Option<WorkflowVersion>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM versions WHERE id = ?1",
                rows::VERSION_COLUMNS
            ))
            .db()?
            .query_row([id], rows::version)
            .optional()
            .db()
        })
        .await
    }

    async fn set_deployment(&self, deployment: &Deployment) -> Result<Option<String>> {
        let d = deployment.clone();
        self.write(move |conn| {
            let previous: Option<String> = conn
                .prepare_cached(
                    "SELECT version FROM deployments WHERE environment = ?1 AND workflow = ?2",
                )
                .db()?
                .query_row([&d.environment, &d.workflow], |row| row.get(0))
                .optional()
                .db()?;
            conn.prepare_cached(
                "INSERT INTO deployments (environment, workflow, version, actor, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (environment, workflow) DO UPDATE SET
                     version = excluded.version,
                     actor = excluded.actor,
                     updated_at = excluded.updated_at",
            )
            .db()?
            .execute(params![
                d.environment,
                d.workflow,
                d.version,
                d.actor,
                d.updated_at
            ])
            .db()?;
            Ok(previous)
        })
        .await
    }

    async fn deployment(&self, environment: &str, workflow: &str) -> Result<Option<Deployment>> {
        let (environment, workflow) = (environment.to_owned(), workflow.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM deployments WHERE environment = ?1 AND workflow = ?2",
                rows::DEPLOYMENT_COLUMNS
            ))
            .db()?
            .query_row([environment, workflow], rows::deployment)
            .optional()
            .db()
        })
        .await
    }

    async fn deployments(&self, environment: Option<&str>) -> Result<Vec<Deployment>> {
        let environment = environment.map(str::to_owned);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {} FROM deployments WHERE ?1 IS NULL OR environment = ?1
                     ORDER BY environment, workflow",
                    rows::DEPLOYMENT_COLUMNS
                ))
                .db()?;
            statement
                .query_map([environment], rows::deployment)
                .db()?
                .collect::<Result<_, _>>()
                .db()
        })
        .await
    }

    async fn enqueue(&self, run: &NewRun) -> Result<Enqueued> {
        let trigger = rows::json(&run.trigger)?;
        let run = run.clone();
        self.write(move |conn| insert_run(conn, &run, &trigger, None))
            .await
            .inspect(|e| {
                if e.created {
                    self.signal_work();
                }
            })
    }

    async fn enqueue_claimed(
        &self,
        run: &NewRun,
        worker: &str,
        lease_ms: i64,
        journal: &[NewJournalEntry],
    ) -> Result<(Enqueued, Option<Claim>)> {
        let trigger = rows::json(&run.trigger)?;
        let entries = encode_entries(journal)?;
        let run = run.clone();
        let lease = Holder {
            owner: worker.to_owned(),
            until: run.created_at.saturating_add(lease_ms),
            lease_ms,
        };
        // Inserted already claimed (token 1, one claim, leased), with its first entries:
        // one batch, one fsync, and the run never waits in the queue.
        self.write(move |conn| {
            let enqueued = insert_run(conn, &run, &trigger, Some(&lease))?;
            if !enqueued.created {
                return Ok((enqueued, None));
            }
            insert_entries(conn, &run.id, 0, &entries)?;
            let claimed = run.into_claimed(lease.owner, lease.until);
            Ok((
                enqueued,
                Some(Claim {
                    token: claimed.fencing_token,
                    run: claimed,
                }),
            ))
        })
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Nothing due is the common answer of an idle worker: a read says so without a
        // write transaction (and without waiting for the writer's next batch).
        let any_due = self
            .read(move |conn| conn.prepare_cached(ANY_DUE).db()?.exists([now]).db())
            .await?;
        if !any_due {
            return Ok(Vec::new());
        }
        let worker = worker.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_until = now.saturating_add(lease_ms);
        self.write(move |conn| {
            let due: Vec<String> = conn
                .prepare_cached(CLAIM_DUE)
                .db()?
                .query_map(params![now, limit], |row| row.get(0))
                .db()?
                .collect::<Result<_, _>>()
                .db()?;
            let mut take = conn.prepare_cached(&take_sql("")).db()?;
            let mut claims = Vec::with_capacity(due.len());
            for id in due {
                let run = take
                    .query_row(params![id, worker, lease_until, now, lease_ms], rows::run)
                    .db()?;
                claims.push(Claim {
                    token: run.fencing_token,
                    run,
                });
            }
            Ok(claims)
        })
        .await
    }

    async fn claim_run(
        &self,
        run: &str,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        let run = run.to_owned();
        let worker = worker.to_owned();
        let lease_until = now.saturating_add(lease_ms);
        self.write(move |conn| {
            // Due exactly as `claim` judges it (`due_at`), so that the two never disagree.
            let claimed = conn
                .prepare_cached(&take_sql(" AND due_at <= ?4 AND status <> 'running'"))
                .db()?
                .query_row(params![run, worker, lease_until, now, lease_ms], rows::run)
                .optional()
                .db()?;
            match claimed {
                Some(run) => Ok(Some(Claim {
                    token: run.fencing_token,
                    run,
                })),
                None => {
                    let exists = conn
                        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
                        .db()?
                        .exists([&run])
                        .db()?;
                    if exists {
                        Ok(None)
                    } else {
                        Err(Error::NotFound(format!("run {run}")))
                    }
                }
            }
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.read(|conn| {
            // Running runs all have a due time (their lease's end): one range of `runs_due`.
            conn.prepare_cached(
                "SELECT id, lease_owner, fencing_token, lease_expires_at, lease_ms
                 FROM runs INDEXED BY runs_due
                 WHERE due_at IS NOT NULL AND status = 'running'",
            )
            .db()?
            .query_map([], |row| {
                Ok(Lease {
                    run: row.get(0)?,
                    owner: row.get(1)?,
                    token: row.get(2)?,
                    expires_at: row.get(3)?,
                    promised_ms: row.get(4)?,
                })
            })
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()
        })
        .await
    }

    async fn take_over(
        &self,
        lease: &Lease,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        let lease = lease.clone();
        let worker = worker.to_owned();
        let lease_until = now.saturating_add(lease_ms);
        self.write(move |conn| {
            let taken = conn
                .prepare_cached(&take_sql(
                    " AND status = 'running' AND fencing_token = ?6 AND lease_expires_at = ?7",
                ))
                .db()?
                .query_row(
                    params![
                        lease.run,
                        worker,
                        lease_until,
                        now,
                        lease_ms,
                        lease.token,
                        lease.expires_at
                    ],
                    rows::run,
                )
                .optional()
                .db()?;
            Ok(taken.map(|run| Claim {
                token: run.fencing_token,
                run,
            }))
        })
        .await
    }

    async fn wait_for_work(&self, max: Duration) {
        // In-process writes (enqueue, release, decision, retry) signal; another process's
        // are seen within `max`.
        let _ = tokio::time::timeout(max, self.inner.work.notified()).await;
    }

    async fn commit(&self, run: &str, token: i64, commit: Commit) -> Result<()> {
        let run = run.to_owned();
        let entries = encode_entries(&commit.entries)?;
        let settle = match commit.settle {
            None => None,
            Some(Settlement::Finish {
                status,
                output,
                error,
                at,
            }) => {
                if !status.is_final() {
                    return Err(Error::Conflict(format!(
                        "a run cannot finish as {}: only succeeded, failed or dead",
                        status.as_str()
                    )));
                }
                let output = rows::json_opt(output.as_ref())?;
                Some(EncodedSettle::Finish {
                    status: status.as_str(),
                    output,
                    error,
                    at,
                })
            }
            Some(Settlement::Sleep { wake_at }) => Some(EncodedSettle::Sleep { wake_at }),
            Some(Settlement::Wait { deadline }) => Some(EncodedSettle::Wait { deadline }),
        };
        let lease_until = commit.lease_until;
        let released = matches!(
            settle,
            Some(EncodedSettle::Sleep { .. } | EncodedSettle::Wait { .. })
        );
        self.write(move |conn| {
            let (status, current) = run_state(conn, &run)?.ok_or_else(|| run_not_found(&run))?;
            if status != RunStatus::Running || current != token {
                return Err(Error::Fenced {
                    run,
                    presented: token,
                    current,
                });
            }
            append_entries(conn, &run, &entries)?;
            if let Some(until) = lease_until {
                // A renewal always changes the stored end (see `Commit::lease_until`).
                conn.prepare_cached(
                    "UPDATE runs SET lease_expires_at =
                         CASE WHEN lease_expires_at = ?2 THEN ?2 + 1 ELSE ?2 END
                     WHERE id = ?1",
                )
                .db()?
                .execute(params![run, until])
                .db()?;
            }
            match settle {
                None => {}
                Some(EncodedSettle::Finish {
                    status,
                    output,
                    error,
                    at,
                }) => {
                    conn.prepare_cached(
                        "UPDATE runs SET status = ?2, output = ?3, error = ?4, finished_at = ?5,
                             wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![run, status, output, error, at])
                    .db()?;
                }
                Some(EncodedSettle::Sleep { wake_at }) => {
                    conn.prepare_cached(
                        "UPDATE runs SET status = 'queued', wake_at = ?2,
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![run, wake_at])
                    .db()?;
                }
                Some(EncodedSettle::Wait { deadline }) => {
                    conn.prepare_cached(
                        "UPDATE runs SET status = 'waiting', wake_at = ?2,
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![run, deadline])
                    .db()?;
                }
            }
            Ok(())
        })
        .await
        .inspect(|()| {
            if released {
                self.signal_work();
            }
        })
    }

    async fn run(&self, id: &str) -> Result<Option<Run>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM runs WHERE id = ?1",
                rows::RUN_COLUMNS
            ))
            .db()?
            .query_row([id], rows::run)
            .optional()
            .db()
        })
        .await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let sql = runs_sql(&filter);
            let limit = filter
                .limit
                .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
            let mut statement = conn.prepare_cached(&sql).db()?;
            let status = filter.status.map(RunStatus::as_str);
            match &filter.before {
                None => statement
                    .query_map(
                        params![filter.environment, filter.workflow, status, limit],
                        rows::run,
                    )
                    .db()?
                    .collect::<Result<_, _>>()
                    .db(),
                Some(cursor) => statement
                    .query_map(
                        params![
                            filter.environment,
                            filter.workflow,
                            status,
                            limit,
                            cursor.created_at,
                            cursor.id
                        ],
                        rows::run,
                    )
                    .db()?
                    .collect::<Result<_, _>>()
                    .db(),
            }
        })
        .await
    }

    async fn count_runs(&self, filter: &RunFilter) -> Result<u64> {
        let filter = filter.clone();
        self.read(move |conn| {
            use rusqlite::types::Value;
            let text = |v: Option<&str>| v.map_or(Value::Null, |v| Value::Text(v.to_owned()));
            let mut statement = conn.prepare_cached(&count_sql(&filter)).db()?;
            // Numbered as in the listing, without its `?4` limit: SQLite wants exactly as
            // many values as the highest number the statement names.
            let values = [
                text(filter.environment.as_deref()),
                text(filter.workflow.as_deref()),
                text(filter.status.map(RunStatus::as_str)),
            ];
            let named = statement.parameter_count();
            let count: i64 = statement
                .query_row(
                    rusqlite::params_from_iter(values.into_iter().take(named)),
                    |row| row.get(0),
                )
                .db()?;
            Ok(count.unsigned_abs())
        })
        .await
    }

    async fn run_outcomes(&self, query: &OutcomeQuery) -> Result<Outcomes> {
        let query = query.clone();
        self.read(move |conn| {
            // One snapshot for the tally and the edges, so a run finishing meanwhile is
            // counted in neither or in one.
            let tx = conn.unchecked_transaction().db()?;
            let plan = TallyPlan::of(query.from, query.until);
            let mut outcomes = Outcomes::default();
            if let Some((first, end)) = plan.hours {
                let (finished, failed): (i64, i64) = tx
                    .prepare_cached(TALLIED_OUTCOMES)
                    .db()?
                    .query_row(
                        params![query.environment, query.workflow, query.version, first, end],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .db()?;
                outcomes.finished += finished.unsigned_abs();
                outcomes.failed += failed.unsigned_abs();
            }
            for (from, until) in plan.edges {
                let (finished, failed): (i64, i64) = tx
                    .prepare_cached(RUN_OUTCOMES)
                    .db()?
                    .query_row(
                        params![
                            query.environment,
                            query.workflow,
                            query.version,
                            from,
                            until
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .db()?;
                outcomes.finished += finished.unsigned_abs();
                outcomes.failed += failed.unsigned_abs();
            }
            tx.finish().db()?;
            Ok(outcomes)
        })
        .await
    }

    async fn prune_runs(
        &self,
        before: Timestamp,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<u64> {
        let environment = environment.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let doomed: Vec<String> = match &environment {
                Some(environment) => conn
                    .prepare_cached(PRUNE_IN_ENVIRONMENT)
                    .db()?
                    .query_map(params![before, limit, environment], |row| row.get(0))
                    .db()?
                    .collect::<Result<_, _>>()
                    .db()?,
                None => conn
                    .prepare_cached(PRUNE_EVERYWHERE)
                    .db()?
                    .query_map(params![before, limit], |row| row.get(0))
                    .db()?
                    .collect::<Result<_, _>>()
                    .db()?,
            };
            for statement in [
                "DELETE FROM journal WHERE run = ?1",
                "DELETE FROM step_decisions WHERE run = ?1",
                "DELETE FROM runs WHERE id = ?1",
            ] {
                let mut delete = conn.prepare_cached(statement).db()?;
                for id in &doomed {
                    delete.execute([id]).db()?;
                }
            }
            Ok(doomed.len() as u64)
        })
        .await
    }

    async fn journal(&self, run: &str) -> Result<Vec<JournalEntry>> {
        let run = run.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM journal WHERE run = ?1 ORDER BY seq",
                rows::JOURNAL_COLUMNS
            ))
            .db()?
            .query_map([run], rows::journal_entry)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn retry_run(&self, run: &str, _now: Timestamp, marks: &[NewJournalEntry]) -> Result<()> {
        let run = run.to_owned();
        let marks = encode_entries(marks)?;
        self.write(move |conn| {
            let (status, _) = run_state(conn, &run)?.ok_or_else(|| run_not_found(&run))?;
            if !matches!(status, RunStatus::Dead | RunStatus::Failed) {
                return Err(Error::Conflict(format!(
                    "run {run} is {}: only dead or failed runs are retried",
                    status.as_str()
                )));
            }
            append_entries(conn, &run, &marks)?;
            conn.prepare_cached(
                "UPDATE runs SET status = 'queued', wake_at = NULL, error = NULL, output = NULL,
                     finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?1",
            )
            .db()?
            .execute([&run])
            .db()?;
            Ok(())
        })
        .await
        .inspect(|()| self.signal_work())
    }

    async fn decide_step(&self, decision: &StepDecision) -> Result<()> {
        let d = decision.clone();
        self.write(move |conn| {
            let (status, _) = run_state(conn, &d.run)?.ok_or_else(|| run_not_found(&d.run))?;
            if status != RunStatus::Waiting {
                return Err(Error::Conflict(format!(
                    "run {} is {}, not waiting for a decision",
                    d.run,
                    status.as_str()
                )));
            }
            let waits_on: Option<String> = conn
                .prepare_cached(
                    "SELECT step FROM journal WHERE run = ?1 AND status = 'waiting'
                     ORDER BY seq DESC LIMIT 1",
                )
                .db()?
                .query_row([&d.run], |row| row.get(0))
                .optional()
                .db()?;
            crate::waits_on(&d.run, &d.step, waits_on.as_deref())?;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO step_decisions (run, step, approver, approved, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run, step) DO NOTHING",
                )
                .db()?
                .execute(params![d.run, d.step, d.approver, d.approved, d.decided_at])
                .db()?;
            if inserted == 0 {
                return Err(Error::Conflict(format!(
                    "step {} of run {} is already decided",
                    d.step, d.run
                )));
            }
            conn.prepare_cached("UPDATE runs SET status = 'queued', wake_at = NULL WHERE id = ?1")
                .db()?
                .execute([&d.run])
                .db()?;
            Ok(())
        })
        .await
        .inspect(|()| self.signal_work())
    }

    async fn step_decision(&self, run: &str, step: &str) -> Result<Option<StepDecision>> {
        let (run, step) = (run.to_owned(), step.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM step_decisions WHERE run = ?1 AND step = ?2",
                rows::DECISION_COLUMNS
            ))
            .db()?
            .query_row([run, step], rows::decision)
            .optional()
            .db()
        })
        .await
    }

    async fn put_secret(&self, secret: &SealedSecret) -> Result<()> {
        let s = secret.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO secrets (environment, name, sealed, fingerprint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (environment, name) DO UPDATE SET
                     sealed = excluded.sealed,
                     fingerprint = excluded.fingerprint,
                     updated_at = excluded.updated_at",
            )
            .db()?
            .execute(params![
                s.environment,
                s.name,
                s.sealed,
                s.fingerprint,
                s.updated_at
            ])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn secret(&self, environment: &str, name: &str) -> Result<Option<SealedSecret>> {
        let (environment, name) = (environment.to_owned(), name.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM secrets WHERE environment = ?1 AND name = ?2",
                rows::SECRET_COLUMNS
            ))
            .db()?
            .query_row([environment, name], rows::secret)
            .optional()
            .db()
        })
        .await
    }

    async fn secret_names(&self) -> Result<Vec<SecretName>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT environment, name, updated_at FROM secrets ORDER BY environment, name",
            )
            .db()?
            .query_map([], rows::secret_name)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn add_record(&self, record: &NewTestRecord) -> Result<()> {
        let arguments = rows::json(&record.arguments)?;
        let r = record.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO test_records (environment, run, step, connector, action, arguments,
                     idempotency_key, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                r.environment,
                r.run,
                r.step,
                r.connector,
                r.action,
                arguments,
                r.idempotency_key,
                r.at
            ])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn records(&self, environment: &str) -> Result<Vec<TestRecord>> {
        let environment = environment.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM test_records WHERE environment = ?1 ORDER BY id",
                rows::RECORD_COLUMNS
            ))
            .db()?
            .query_map([environment], rows::record)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn records_page(&self, environment: &str, page: Page) -> Result<Vec<TestRecord>> {
        let environment = environment.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {} {RECORDS_PAGE}", rows::RECORD_COLUMNS))
                .db()?
                .query_map(
                    params![
                        environment,
                        page.before.unwrap_or(i64::MAX),
                        page_limit(page)
                    ],
                    rows::record,
                )
                .db()?
                .collect::<Result<_, _>>()
                .db()
        })
        .await
    }

    async fn add_evidence(&self, evidence: &NewEvidence) -> Result<Evidence> {
        let summary = rows::json(&evidence.summary)?;
        let evidence = evidence.clone();
        self.write(move |conn| promotion::insert_evidence(conn, &evidence, &summary))
            .await
    }

    async fn evidence(&self, workflow: &str, version: Option<&str>) -> Result<Vec<Evidence>> {
        let (workflow, version) = (workflow.to_owned(), version.map(str::to_owned));
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM evidence WHERE workflow = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY id DESC",
                promotion::EVIDENCE_COLUMNS
            ))
            .db()?
            .query_map(params![workflow, version], promotion::evidence)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn add_bundle(&self, bundle: &StoredBundle) -> Result<()> {
        let files = rows::json(
            &serde_json::to_value(&bundle.files).map_err(|e| Error::Backend(e.to_string()))?,
        )?;
        let bundle = bundle.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO project_bundles (id, environment, files, deployed_by, deployed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![
                bundle.id,
                bundle.environment,
                files,
                bundle.deployed_by,
                bundle.deployed_at
            ])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn latest_bundle(&self) -> Result<Option<StoredBundle>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, environment, files, deployed_by, deployed_at FROM project_bundles
                 ORDER BY seq DESC LIMIT 1",
            )
            .db()?
            .query_row([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .optional()
            .db()?
            .map(|(id, environment, files, deployed_by, deployed_at)| {
                Ok(StoredBundle {
                    id,
                    environment,
                    files: serde_json::from_str(&files).map_err(|e| {
                        Error::Backend(format!("a stored bundle does not read: {e}"))
                    })?,
                    deployed_by,
                    deployed_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn open_request(&self, request: &NewPromotionRequest) -> Result<PromotionRequest> {
        let request = request.clone();
        self.write(move |conn| promotion::insert_request(conn, &request))
            .await
    }

    async fn request(&self, id: &str) -> Result<Option<PromotionRequest>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM promotion_requests WHERE id = ?1",
                promotion::REQUEST_COLUMNS
            ))
            .db()?
            .query_row([id], promotion::request)
            .optional()
            .db()
        })
        .await
    }

    async fn requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>> {
        let workflow = workflow.map(str::to_owned);
        self.read(move |conn| promotion::requests(conn, false, workflow.as_deref()))
            .await
    }

    async fn open_requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>> {
        let workflow = workflow.map(str::to_owned);
        self.read(move |conn| promotion::requests(conn, true, workflow.as_deref()))
            .await
    }

    async fn decide_request(&self, approval: &Approval) -> Result<()> {
        let approval = approval.clone();
        self.write(move |conn| promotion::decide(conn, &approval))
            .await
    }

    async fn close_request(
        &self,
        id: &str,
        status: crate::RequestStatus,
        at: Timestamp,
    ) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| promotion::close_request(conn, &id, status, at))
            .await
    }

    async fn approvals(&self, request: &str) -> Result<Vec<Approval>> {
        let request = request.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM approvals WHERE request = ?1 ORDER BY at, approver",
                promotion::APPROVAL_COLUMNS
            ))
            .db()?
            .query_map([request], promotion::approval)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn release(&self, release: &NewRelease) -> Result<Release> {
        let release = release.clone();
        self.write(move |conn| promotion::insert_release(conn, &release))
            .await
    }

    async fn release_by_id(&self, id: &str) -> Result<Option<Release>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM releases WHERE id = ?1",
                promotion::RELEASE_COLUMNS
            ))
            .db()?
            .query_row([id], promotion::release)
            .optional()
            .db()
        })
        .await
    }

    async fn releases(&self, environment: &str, workflow: &str) -> Result<Vec<Release>> {
        let (environment, workflow) = (environment.to_owned(), workflow.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM releases WHERE environment = ?1 AND workflow = ?2 ORDER BY seq DESC",
                promotion::RELEASE_COLUMNS
            ))
            .db()?
            .query_map(params![environment, workflow], promotion::release)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn audit(&self, event: &NewAuditEvent) -> Result<AuditEvent> {
        let detail = rows::json(&event.detail)?;
        let event = event.clone();
        self.write(move |conn| {
            let last: Option<(i64, String)> = conn
                .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .db()?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .db()?;
            let (seq, prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => (1, GENESIS_HASH.to_owned()),
            };
            let hash = AuditEvent::compute_hash(&prev_hash, &event);
            conn.prepare_cached(
                "INSERT INTO audit (seq, at, actor, action, environment, subject, detail,
                     prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .db()?
            .execute(params![
                seq,
                event.at,
                event.actor,
                event.action,
                event.environment,
                event.subject,
                detail,
                prev_hash,
                hash
            ])
            .db()?;
            Ok(AuditEvent {
                seq,
                event,
                prev_hash,
                hash,
            })
        })
        .await
    }

    async fn audit_log(&self) -> Result<Vec<AuditEvent>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM audit ORDER BY seq",
                rows::AUDIT_COLUMNS
            ))
            .db()?
            .query_map([], rows::audit_event)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn audit_page(&self, environment: Option<&str>, page: Page) -> Result<Vec<AuditEvent>> {
        let environment = environment.map(str::to_owned);
        self.read(move |conn| {
            let before = page.before.unwrap_or(i64::MAX);
            let from = match &environment {
                Some(_) => AUDIT_PAGE_IN_ENVIRONMENT,
                None => AUDIT_PAGE,
            };
            let mut statement = conn
                .prepare_cached(&format!("SELECT {} {from}", rows::AUDIT_COLUMNS))
                .db()?;
            let events = match &environment {
                Some(environment) => statement.query_map(
                    params![environment, before, page_limit(page)],
                    rows::audit_event,
                ),
                None => statement.query_map(params![before, page_limit(page)], rows::audit_event),
            }
            .db()?
            .collect::<Result<_, _>>()
            .db()?;
            Ok(events)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .db()?
                .query_row([], |row| {
                    Ok(AuditHead {
                        seq: row.get(0)?,
                        hash: row.get(1)?,
                    })
                })
                .optional()
                .db()
        })
        .await
    }

    async fn create_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let token = token.clone();
        self.write(move |conn| tokens::insert_token(conn, &token))
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM api_tokens WHERE secret_hash = ?1 AND revoked_at IS NULL",
                tokens::TOKEN_COLUMNS
            ))
            .db()?
            .query_row([hash], tokens::token)
            .optional()
            .db()
        })
        .await
    }

    async fn tokens(&self, environment: Option<&str>) -> Result<Vec<ApiToken>> {
        let environment = environment.map(str::to_owned);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM api_tokens WHERE ?1 IS NULL OR environment = ?1
                 ORDER BY environment, name, created_at, id",
                tokens::TOKEN_COLUMNS
            ))
            .db()?
            .query_map([environment], tokens::token)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| tokens::revoke_token(conn, &id, at))
            .await
    }

    async fn create_session(&self, session: &NewConsoleSession) -> Result<()> {
        let session = session.clone();
        self.write(move |conn| tokens::insert_session(conn, &session))
            .await
    }

    async fn session_by_hash(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>> {
        let id_hash = id_hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(tokens::SESSION_SELECT)
                .db()?
                .query_row(params![id_hash, now], tokens::session)
                .optional()
                .db()
        })
        .await
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM console_sessions WHERE id_hash = ?1")
                .db()?
                .execute([id_hash])
                .db()
                .map(|_| ())
        })
        .await
    }

    async fn add_notifications(&self, notifications: &[NewNotification]) -> Result<usize> {
        let items = notifications.to_vec();
        self.write(move |conn| outbox::add(conn, &items)).await
    }

    async fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let holder = holder.to_owned();
        self.write(move |conn| outbox::claim(conn, &holder, now, lease_ms, limit))
            .await
    }

    async fn settle_notification(
        &self,
        id: &str,
        holder: &str,
        at: Timestamp,
        error: Option<&str>,
        retry_at: Timestamp,
    ) -> Result<bool> {
        let (id, holder, error) = (id.to_owned(), holder.to_owned(), error.map(str::to_owned));
        self.write(move |conn| outbox::settle(conn, &id, &holder, at, error.as_deref(), retry_at))
            .await
    }

    async fn notifications(&self, environment: Option<&str>) -> Result<Vec<Notification>> {
        let environment = environment.map(str::to_owned);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM notifications WHERE ?1 IS NULL OR environment = ?1
                 ORDER BY created_at, id",
                outbox::COLUMNS
            ))
            .db()?
            .query_map([environment], outbox::notification)
            .db()?
            .collect::<Result<_, _>>()
            .db()
        })
        .await
    }

    async fn schedule_cursor(
        &self,
        environment: &str,
        workflow: &str,
    ) -> Result<Option<Timestamp>> {
        let (environment, workflow) = (environment.to_owned(), workflow.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT last_tick FROM schedule_cursors WHERE environment = ?1 AND workflow = ?2",
            )
            .db()?
            .query_row([environment, workflow], |row| row.get(0))
            .optional()
            .db()
        })
        .await
    }

    async fn advance_schedule(
        &self,
        environment: &str,
        workflow: &str,
        expected: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<bool> {
        let (environment, workflow) = (environment.to_owned(), workflow.to_owned());
        self.write(move |conn| {
            tokens::advance_schedule(conn, &environment, &workflow, expected, to)
        })
        .await
    }

    async fn probe_write(&self) -> Result<()> {
        // Through the writer, in a batch like any delivery's: rewriting the schema version
        // with its own value dirties the file's first page, so the batch's commit appends
        // to the WAL and syncs it, which is what a full disk or a lost file refuses.
        self.write(|conn| {
            let version = schema::version(conn)?;
            if version != SCHEMA_VERSION {
                return Err(Error::Backend(format!(
                    "the database has schema version {version}, not this Airlock's ({SCHEMA_VERSION})"
                )));
            }
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                .db()
        })
        .await
    }

    fn local_file(&self) -> Option<&Path> {
        Some(&self.inner.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let details: Vec<String> = statement
            .query_map(
                rusqlite::params_from_iter(std::iter::repeat_n(
                    rusqlite::types::Null,
                    statement.parameter_count(),
                )),
                |row| row.get(3),
            )
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        details.join(" | ")
    }

    fn migrated() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut conn = Connection::open(dir.path().join("plan.db")).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        (dir, conn)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_enqueue_wakes_a_waiting_worker() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("wake.db")).expect("open");
        let none = store.claim("w", 0, 1000, 8).await.expect("claim");
        assert!(none.is_empty());
        let waiting = {
            let store = store.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                store.wait_for_work(Duration::from_secs(30)).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let run = NewRun {
            id: "r1".into(),
            environment: "staging".into(),
            workflow: "w".into(),
            version: "v".into(),
            trigger: serde_json::json!({}).into(),
            dedupe_key: None,
            created_at: 1,
        };
        store.enqueue(&run).await.expect("enqueue");
        let waited = waiting.await.expect("waiter");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(store.claim("w", 2, 1000, 8).await.expect("claim").len(), 1);
    }

    #[test]
    fn tallied_outcomes_read_one_range_of_the_tally() {
        let (_dir, conn) = migrated();
        let plan = plan(&conn, TALLIED_OUTCOMES);
        assert!(
            plan.contains("USING PRIMARY KEY (environment=? AND workflow=? AND hour>? AND hour<?)"),
            "{plan}"
        );
    }

    #[test]
    fn a_range_is_whole_hours_from_the_tally_and_its_ends_from_the_runs() {
        const H: i64 = TALLY_BUCKET_MS;
        let plan = TallyPlan::of(Some(H + 5), Some(4 * H + 7));
        assert_eq!(plan.hours, Some((2, 4)));
        assert_eq!(plan.edges, vec![(H + 5, 2 * H), (4 * H, 4 * H + 7)]);
        let aligned = TallyPlan::of(Some(H), Some(3 * H));
        assert_eq!((aligned.hours, aligned.edges), (Some((1, 3)), vec![]));
        let unbounded = TallyPlan::of(None, None);
        assert_eq!(
            (unbounded.hours, unbounded.edges),
            (Some((i64::MIN, i64::MAX)), vec![])
        );
        let inside_one_hour = TallyPlan::of(Some(H + 1), Some(H + 9));
        assert_eq!(
            (inside_one_hour.hours, inside_one_hour.edges),
            (None, vec![(H + 1, H + 9)])
        );
        // Hours before 1970 are whole hours too: buckets are floored, not truncated.
        let across_1970 = TallyPlan::of(Some(-2 * H), Some(H + 3));
        assert_eq!(across_1970.hours, Some((-2, 1)));
        assert_eq!(across_1970.edges, vec![(H, H + 3)]);
        let before_1970 = TallyPlan::of(Some(-H - 1), Some(-1));
        assert_eq!(before_1970.hours, None);
        assert_eq!(before_1970.edges, vec![(-H - 1, -1)]);
        assert!(TallyPlan::of(Some(9), Some(9)).edges.is_empty());
    }

    /// What happens to one run, in the order the store's paths do it.
    #[derive(Debug, Clone)]
    enum RunChange {
        Accept {
            at: i64,
            workflow: u8,
            version: u8,
        },
        Finish {
            run: usize,
            status: &'static str,
        },
        Retry {
            run: usize,
        },
        Prune {
            run: usize,
        },
        Insert {
            at: i64,
            workflow: u8,
            version: u8,
            status: &'static str,
        },
    }

    fn run_change() -> impl proptest::strategy::Strategy<Value = RunChange> {
        use proptest::prelude::*;
        // Times around hour boundaries, where a bucket's edge is.
        let at = (0i64..6, -3i64..4).prop_map(|(hour, offset)| hour * TALLY_BUCKET_MS + offset);
        let finished = prop_oneof![Just("succeeded"), Just("failed"), Just("dead")];
        prop_oneof![
            (at.clone(), 0u8..2, 0u8..2).prop_map(|(at, workflow, version)| RunChange::Accept {
                at,
                workflow,
                version
            }),
            (any::<usize>(), finished.clone())
                .prop_map(|(run, status)| RunChange::Finish { run, status }),
            any::<usize>().prop_map(|run| RunChange::Retry { run }),
            any::<usize>().prop_map(|run| RunChange::Prune { run }),
            (at, 0u8..2, 0u8..2, finished).prop_map(|(at, workflow, version, status)| {
                RunChange::Insert {
                    at,
                    workflow,
                    version,
                    status,
                }
            }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The tally (kept by triggers) plus the exact ends count what counting every run
        /// counts, for any history of accepts, finishes, retries and prunes and any range.
        #[test]
        fn tallied_outcomes_equal_the_runs_counted_one_by_one(
            changes in proptest::collection::vec(run_change(), 1..40),
            ranges in proptest::collection::vec(
                (proptest::option::of(-2i64..7), proptest::option::of(-2i64..7), -3i64..4, -3i64..4, proptest::option::of(0u8..2)),
                1..8,
            ),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("tally.db");
            let store = SqliteStore::open(&path).expect("open");
            let conn = Connection::open(&path).expect("a second connection");
            conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
            let mut ids: Vec<String> = Vec::new();
            for (n, change) in changes.iter().enumerate() {
                let pick = |run: &usize| (!ids.is_empty()).then(|| ids[run % ids.len()].clone());
                match change {
                    RunChange::Accept { at, workflow, version } | RunChange::Insert { at, workflow, version, .. } => {
                        let status = match change {
                            RunChange::Insert { status, .. } => status,
                            _ => "queued",
                        };
                        let id = format!("r{n}");
                        conn.execute(
                            "INSERT INTO runs (id, environment, workflow, version, status, trigger_payload, created_at)
                             VALUES (?1, 'production', ?2, ?3, ?4, '{}', ?5)",
                            params![id, format!("w{workflow}"), format!("v{version}"), status, at],
                        ).expect("insert");
                        ids.push(id);
                    }
                    RunChange::Finish { run, status } => if let Some(id) = pick(run) {
                        conn.execute("UPDATE runs SET status = ?2 WHERE id = ?1", params![id, status]).expect("finish");
                    },
                    RunChange::Retry { run } => if let Some(id) = pick(run) {
                        conn.execute("UPDATE runs SET status = 'queued' WHERE id = ?1", params![id]).expect("retry");
                    },
                    RunChange::Prune { run } => if let Some(id) = pick(run) {
                        conn.execute("DELETE FROM runs WHERE id = ?1", params![id]).expect("prune");
                        ids.retain(|kept| kept != &id);
                    },
                }
            }
            for (from_hour, until_hour, from_offset, until_offset, version) in ranges {
                let from = from_hour.map(|h| h * TALLY_BUCKET_MS + from_offset);
                let until = until_hour.map(|h| h * TALLY_BUCKET_MS + until_offset);
                for workflow in ["w0", "w1"] {
                    let version = version.map(|v| format!("v{v}"));
                    let query = OutcomeQuery {
                        environment: "production".into(),
                        workflow: workflow.into(),
                        version: version.clone(),
                        from,
                        until,
                    };
                    let tallied = runtime.block_on(store.run_outcomes(&query)).expect("outcomes");
                    let (finished, failed): (i64, i64) = conn
                        .query_row(RUN_OUTCOMES, params![
                            "production",
                            workflow,
                            version,
                            from.unwrap_or(i64::MIN),
                            until.unwrap_or(i64::MAX)
                        ], |row| Ok((row.get(0)?, row.get(1)?)))
                        .expect("counted");
                    proptest::prop_assert_eq!(
                        (tallied.finished, tallied.failed),
                        (finished.unsigned_abs(), failed.unsigned_abs()),
                        "{:?}", query
                    );
                }
            }
        }
    }

    #[test]
    fn claim_reads_one_range_of_the_due_index() {
        let (_dir, conn) = migrated();
        let plan = plan(&conn, CLAIM_DUE);
        assert!(plan.contains("USING INDEX runs_due (due_at<?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }

    #[test]
    fn retention_reads_from_the_oldest_end_of_an_index() {
        let (_dir, conn) = migrated();
        for (sql, index) in [
            (PRUNE_EVERYWHERE, "runs_created (created_at<?)"),
            (
                PRUNE_IN_ENVIRONMENT,
                "runs_environment (environment=? AND created_at<?)",
            ),
        ] {
            let plan = plan(&conn, sql);
            assert!(plan.contains(&format!("USING INDEX {index}")), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }

    #[test]
    fn run_outcomes_read_one_range_of_the_workflow_index() {
        let (_dir, conn) = migrated();
        let plan = plan(&conn, RUN_OUTCOMES);
        assert!(
            plan.contains("USING INDEX runs_workflow (environment=? AND workflow=? AND created_at>? AND created_at<?)"),
            "{plan}"
        );
    }

    #[test]
    fn every_listing_uses_an_index() {
        let (_dir, conn) = migrated();
        let statuses = [
            None,
            Some(RunStatus::Queued),
            Some(RunStatus::Running),
            Some(RunStatus::Waiting),
            Some(RunStatus::Succeeded),
            Some(RunStatus::Failed),
            Some(RunStatus::Dead),
        ];
        for environment in [None, Some("staging".to_owned())] {
            for workflow in [None, Some("hello".to_owned())] {
                for status in statuses {
                    let filter = RunFilter {
                        environment: environment.clone(),
                        workflow: workflow.clone(),
                        status,
                        limit: Some(10),
                        before: None,
                    };
                    let counted = plan(&conn, &count_sql(&filter));
                    let paged = RunFilter {
                        before: Some(crate::RunCursor {
                            created_at: 5,
                            id: "r".into(),
                        }),
                        ..filter.clone()
                    };
                    let next_page = plan(&conn, &runs_sql(&paged));
                    // Live runs (queued, running) are read through `runs_due` and sorted,
                    // being few; every other page seeks to the cursor's time.
                    let live = matches!(status, Some(RunStatus::Queued | RunStatus::Running));
                    assert!(
                        next_page.contains("USING INDEX")
                            && (live || next_page.contains("created_at<?")),
                        "the next page seeks: {paged:?}: {next_page}"
                    );
                    let plan = plan(&conn, &runs_sql(&filter));
                    assert!(plan.contains("USING INDEX"), "{filter:?}: {plan}");
                    // A count is narrowed by an environment or by a status other than
                    // succeeded; the rest (which nothing counts: metrics count the queue)
                    // would read every run.
                    let narrowed = environment.is_some()
                        || !matches!(status, None | Some(RunStatus::Succeeded));
                    assert!(
                        !narrowed || counted.contains("INDEX"),
                        "count {filter:?}: {counted}"
                    );
                    let live = matches!(status, Some(RunStatus::Queued | RunStatus::Running));
                    if live {
                        assert!(plan.contains("runs_due"), "{filter:?}: {plan}");
                    } else if workflow.is_none() || environment.is_some() {
                        assert!(!plan.contains("TEMP B-TREE"), "no sort: {filter:?}: {plan}");
                    }
                    let rare = matches!(
                        status,
                        Some(RunStatus::Waiting | RunStatus::Failed | RunStatus::Dead)
                    );
                    if rare && environment.is_some() && workflow.is_none() {
                        assert!(
                            plan.contains("runs_environment_status"),
                            "{filter:?}: {plan}"
                        );
                    }
                    if matches!(status, Some(RunStatus::Dead)) && environment.is_none() {
                        assert!(plan.contains("runs_status"), "{filter:?}: {plan}");
                    }
                }
            }
        }
    }
}
