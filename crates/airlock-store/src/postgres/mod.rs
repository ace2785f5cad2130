//! PostgreSQL: the scale-out store. Many `serve` and `worker` processes on many machines
//! share one database, and PostgreSQL is the only thing that coordinates them.
//!
//! - **Claims** take due runs with `SELECT … FOR UPDATE SKIP LOCKED`, in the same statement
//!   that leases them and raises their fencing token: two claimers never wait on each other
//!   and never take the same run.
//! - **Writes on behalf of a claim** lock the run's row (`FOR UPDATE`) and compare its token
//!   first, in the transaction that writes: a stale token is [`Error::Fenced`] and nothing
//!   is written.
//! - **Compare-and-sets** (releases, schedule cursors, decisions, tokens) are decided by the
//!   database — row locks and unique indexes — never by a check in this process alone.
//! - **The audit chain** is appended under a transaction-scoped advisory lock, so
//!   concurrent writers on any machine still form one chain.
//! - **Idle workers** wait with [`Store::wait_for_work`], woken by `LISTEN/NOTIFY` when a
//!   run becomes due in the queue, by any process (see `notify`).
//! - **Schema**: built-in migrations recorded in `airlock_schema_version` (see `schema`).

mod notify;
mod outbox;
mod promotion;
mod rows;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::{
    ApiToken, Approval, AuditEvent, AuditHead, Claim, Commit, Deployment, Enqueued, Error,
    Evidence, GENESIS_HASH, JournalEntry, Lease, NewApiToken, NewAuditEvent, NewEvidence,
    NewJournalEntry, NewPromotionRequest, NewRelease, NewRun, NewTestRecord, OutcomeQuery,
    Outcomes, PromotionRequest, Release, Result, Run, RunFilter, RunStatus, SealedSecret,
    SecretName, Settlement, StepDecision, Store, TestRecord, Timestamp, WorkflowVersion,
};
use crate::{ConsoleSession, NewConsoleSession, Page, StoredBundle};
use crate::{NewNotification, Notification};

pub use schema::SCHEMA_VERSION;

pub(crate) use rows::audit_event as audit_event_row;

/// Keys of the transaction-scoped advisory locks this store takes. Arbitrary constants,
/// chosen so as not to collide with anything else likely to share the database.
pub(crate) mod lock_keys {
    /// Held while migrating, so that one of many processes starting at once migrates.
    pub const MIGRATE: i64 = 0x4149_524c_0001;
    /// Held while appending to the audit chain: appends happen one at a time.
    pub const AUDIT: i64 = 0x4149_524c_0002;
}

/// How to connect a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How many connections the pool opens at most (besides the one that listens for
    /// work). Each concurrent call holds one for its duration.
    pub max_connections: u32,
    /// How long a call waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// How long opening the store keeps trying while the database cannot be reached for a
    /// reason that passes (refused, reset, timed out, starting up, too many connections):
    /// what a serving process rides out while its database restarts. Zero (the default)
    /// tries once, so a command run by hand says at once what is wrong.
    pub connect_retry: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            connect_retry: Duration::ZERO,
        }
    }
}

/// How long one connection attempt may take (TCP, TLS, authentication) before it counts
/// as timed out: a host that drops packets answers nothing at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store.
///
/// Cheap to clone: the clones share one connection pool and one listener. Its methods run
/// inside a tokio runtime.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    work: notify::WorkSignal,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// Parses a connection URL. Neither this message nor any other here contains the URL (it
/// may carry a password): sqlx's errors name what is wrong, never the connection string.
///
/// TLS follows libpq's `sslmode` and `sslrootcert` (in the URL, or `PGSSLMODE` and
/// `PGSSLROOTCERT`), with two differences that keep a connection from being less safe than
/// it reads: `allow` and `prefer` are refused (they fall back to plain text without a word),
/// and no `sslmode` at all means `disable` rather than libpq's `prefer`. As in libpq,
/// `require` with a root certificate given checks the chain (`verify-ca`).
fn parse_url(url: &str) -> Result<PgConnectOptions> {
    let options = url
        .parse::<PgConnectOptions>()
        .map_err(|e| Error::Backend(format!("bad PostgreSQL URL: {e}")))?;
    let given = |keys: &[&str], env: &str| {
        url_parameters(url).any(|key| keys.contains(&key)) || std::env::var_os(env).is_some()
    };
    let mode_given = given(&["sslmode", "ssl-mode"], "PGSSLMODE");
    let root_given = given(&["sslrootcert", "ssl-root-cert", "ssl-ca"], "PGSSLROOTCERT");
    Ok(match options.get_ssl_mode() {
        mode @ (PgSslMode::Allow | PgSslMode::Prefer) if mode_given => {
            let name = if matches!(mode, PgSslMode::Allow) {
                "allow"
            } else {
                "prefer"
            };
            return Err(Error::Backend(format!(
                "bad PostgreSQL URL: sslmode={name} is not supported: it falls back to an \
                 unencrypted connection without saying so; write sslmode=verify-full (or \
                 verify-ca, require), or sslmode=disable for plain text"
            )));
        }
        PgSslMode::Allow | PgSslMode::Prefer => options.ssl_mode(PgSslMode::Disable),
        PgSslMode::Require if root_given => options.ssl_mode(PgSslMode::VerifyCa),
        _ => options,
    })
}

/// The parameter names in a URL's query (`?a=1&b=2` → `a`, `b`).
fn url_parameters(url: &str) -> impl Iterator<Item = &str> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
}

/// The `sslmode` a connection runs with, as the URL spells it.
fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

fn cannot_connect(error: sqlx::Error) -> Error {
    Error::Backend(format!("cannot connect to PostgreSQL: {error}"))
}

/// Why one connection attempt failed, and whether trying again may help.
struct Unreached {
    reason: String,
    transient: bool,
}

/// One connection attempt, opened and closed at once, its failure said in a person's
/// words. A pool connects on first use and retries an I/O error until its acquire timeout,
/// so an unreachable database would otherwise be reported 30 s later as "pool timed out".
async fn reach(connect: &PgConnectOptions) -> Result<(), Unreached> {
    use sqlx::ConnectOptions;
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect.connect()).await;
    let error = match attempt {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(_) => {
            return Err(Unreached {
                reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                transient: true,
            });
        }
    };
    Err(match &error {
        sqlx::Error::Io(io) => {
            use std::io::ErrorKind::*;
            let (reason, transient) = match io.kind() {
                ConnectionRefused => ("connection refused".to_owned(), true),
                ConnectionReset | ConnectionAborted => ("connection reset".to_owned(), true),
                TimedOut => ("connection timed out".to_owned(), true),
                // The TLS handshake's refusal (a certificate not trusted, a name not in
                // it) reaches here as the io::Error rustls' error rides in.
                _ if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>()) =>
                {
                    (
                        format!(
                            "TLS (sslmode={}) failed: {io}",
                            ssl_mode_name(connect.get_ssl_mode())
                        ),
                        false,
                    )
                }
                _ => (io.to_string(), false),
            };
            Unreached { reason, transient }
        }
        sqlx::Error::Database(db) => Unreached {
            reason: db.message().to_owned(),
            // 57P03: the database system is starting up; 53300: too many connections.
            transient: matches!(db.code().as_deref(), Some("57P03" | "53300")),
        },
        // A certificate refused, or a server without TLS: waiting does not change either.
        sqlx::Error::Tls(tls) => Unreached {
            reason: format!(
                "TLS (sslmode={}) failed: {tls}",
                ssl_mode_name(connect.get_ssl_mode())
            ),
            transient: false,
        },
        other => Unreached {
            reason: other.to_string(),
            transient: false,
        },
    })
}

/// A pool on a database that answered just now: one attempt first (repeated within
/// `retry` only for a failure that passes), so that "connection refused" is said at once
/// rather than as a pool timeout, then the pool. Never names the URL (it may carry a
/// password): the host and port only.
async fn open_pool(
    connect: &PgConnectOptions,
    pool: PgPoolOptions,
    retry: Duration,
) -> Result<PgPool> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match reach(connect).await {
            Ok(()) => break,
            Err(unreached) if unreached.transient && started.elapsed() + pause <= retry => {
                // Said at once, though the process waits on: the reason is what matters.
                tracing::warn!(
                    host = connect.get_host(),
                    port = connect.get_port(),
                    reason = %unreached.reason,
                    retry_in = ?pause,
                    "PostgreSQL cannot be reached; trying again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(unreached) => {
                let place = match connect.get_socket() {
                    Some(socket) => socket.display().to_string(),
                    None => format!("{}:{}", connect.get_host(), connect.get_port()),
                };
                let waited = if retry.is_zero() {
                    String::new()
                } else {
                    format!(" (still after {}s)", started.elapsed().as_secs())
                };
                return Err(Error::Backend(format!(
                    "cannot connect to PostgreSQL at {place}: {}{waited}",
                    unreached.reason
                )));
            }
        }
    }
    pool.connect_with(connect.clone())
        .await
        .map_err(cannot_connect)
}

impl PostgresStore {
    /// Promotion requests newest first, the open ones only (their partial index) or all,
    /// of one workflow when given.
    async fn requests_where(
        &self,
        open_only: bool,
        workflow: Option<&str>,
    ) -> Result<Vec<PromotionRequest>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {} FROM promotion_requests WHERE ",
            rows::REQUEST_COLUMNS
        ));
        query.push(if open_only { "status = 'open'" } else { "TRUE" });
        if let Some(workflow) = workflow {
            query
                .push(" AND workflow = ")
                .push_bind(workflow.to_owned());
        }
        query.push(" ORDER BY created_at DESC, id DESC");
        query
            .build()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::request)
            .collect()
    }
    /// Connects to the database at `url` (`postgres://user@host:port/database`), creating
    /// or upgrading its schema, with the default options.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        let connect = parse_url(url)?;
        let pool = open_pool(
            &connect,
            PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout),
            options.connect_retry,
        )
        .await?;
        schema::migrate(&pool).await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                work: notify::WorkSignal::new(connect),
            }),
        })
    }

    /// Creates or upgrades the schema of the database at `url` and returns the versions it
    /// applied (empty when it was up to date): what `airlock migrate` runs. Safe to run
    /// from several processes at once; one migrates, the others find nothing to do.
    pub async fn migrate(url: &str) -> Result<Vec<u32>> {
        let pool = open_pool(
            &parse_url(url)?,
            PgPoolOptions::new().max_connections(1),
            Duration::ZERO,
        )
        .await?;
        let applied = schema::migrate(&pool).await;
        pool.close().await;
        applied
    }

    /// The schema version of the database (after connecting: [`SCHEMA_VERSION`]).
    pub async fn schema_version(&self) -> Result<u32> {
        schema::version(&self.inner.pool).await
    }

    /// Whether the listener behind [`Store::wait_for_work`] is connected now.
    pub fn is_listening_for_work(&self) -> bool {
        self.inner.work.is_listening()
    }

    /// The pool, for the copy from SQLite.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        self.inner.pool.begin().await.map_err(db)
    }
}

/// Ends a transaction: commits what succeeded, rolls back what failed before returning.
/// sqlx rolls back a dropped transaction only when its connection is next used, or later
/// on a spawned task, so a row lock taken before an error would outlive the call: long
/// enough for the next claim (which skips locked rows) to pass over a run it must take.
async fn end_transaction<T>(
    tx: sqlx::Transaction<'static, Postgres>,
    result: Result<T>,
) -> Result<T> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(db)?;
            Ok(value)
        }
        Err(error) => {
            // A failed rollback closes the connection, which releases the locks as well.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// sqlx errors into the store's.
pub(crate) fn db(error: sqlx::Error) -> Error {
    Error::Backend(format!("postgres: {error}"))
}

/// Whether `error` is a unique violation, of `constraint` when one is named.
pub(crate) fn is_unique_violation(error: &sqlx::Error, constraint: Option<&str>) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            e.is_unique_violation() && constraint.is_none_or(|name| e.constraint() == Some(name))
        }
        _ => false,
    }
}

fn run_not_found(run: &str) -> Error {
    Error::NotFound(format!("run {run}"))
}

/// The status and token of a run, locking its row until the transaction ends: every write
/// on a run goes through here first, so writes on one run happen one after the other, and
/// a claim (which skips locked rows) cannot take it meanwhile.
async fn lock_run(conn: &mut PgConnection, run: &str) -> Result<(RunStatus, i64)> {
    let row = sqlx::query("SELECT status, fencing_token FROM runs WHERE id = $1 FOR UPDATE")
        .bind(run)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| run_not_found(run))?;
    let status: &str = row.try_get("status").map_err(db)?;
    Ok((
        rows::run_status(status)?,
        row.try_get("fencing_token").map_err(db)?,
    ))
}

/// Appends entries to a run's journal, numbering them after the last one, in one
/// statement. The caller holds the run's row lock, so no other append interleaves.
async fn append_entries(
    conn: &mut PgConnection,
    run: &str,
    entries: &[NewJournalEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut steps = Vec::with_capacity(entries.len());
    let mut attempts = Vec::with_capacity(entries.len());
    let mut statuses = Vec::with_capacity(entries.len());
    let mut inputs = Vec::with_capacity(entries.len());
    let mut outputs = Vec::with_capacity(entries.len());
    let mut errors = Vec::with_capacity(entries.len());
    let mut keys = Vec::with_capacity(entries.len());
    let mut started = Vec::with_capacity(entries.len());
    let mut finished = Vec::with_capacity(entries.len());
    for e in entries {
        steps.push(e.step.clone());
        attempts.push(i64::from(e.attempt));
        statuses.push(e.status.as_str().to_owned());
        inputs.push(rows::json_opt(e.input.as_ref())?);
        outputs.push(rows::json_opt(e.output.as_ref())?);
        errors.push(e.error.clone());
        keys.push(e.idempotency_key.clone());
        started.push(e.started_at);
        finished.push(e.finished_at);
    }
    sqlx::query(
        "INSERT INTO journal (run, seq, step, attempt, status, input, output, error,
             idempotency_key, started_at, finished_at)
         SELECT $1, last.seq + e.position, e.step, e.attempt, e.status, e.input::json,
             e.output::json, e.error, e.idempotency_key, e.started_at, e.finished_at
         FROM (SELECT coalesce(max(seq), 0) AS seq FROM journal WHERE run = $1) AS last,
             unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                 $8::text[], $9::bigint[], $10::bigint[])
             WITH ORDINALITY AS e(step, attempt, status, input, output, error, idempotency_key,
                 started_at, finished_at, position)",
    )
    .bind(run)
    .bind(steps)
    .bind(attempts)
    .bind(statuses)
    .bind(inputs)
    .bind(outputs)
    .bind(errors)
    .bind(keys)
    .bind(started)
    .bind(finished)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The runs due at `$1`, oldest due time first, at most `$2`, leased to `$3` until `$4`
/// (a lease of `$5`): one range of the partial index `runs_due`, rows another claimer
/// holds skipped, running runs left to `TAKE_OVER` (see `Store::claim`). The old due time
/// comes back so the claims can be returned in order (`RETURNING` keeps none).
const CLAIM: &str = "WITH due AS (
        SELECT id AS due_id, due_at AS due_time FROM runs
        WHERE due_at <= $1 AND status <> 'running'
        ORDER BY due_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE runs SET status = 'running', lease_owner = $3, lease_expires_at = $4,
        lease_ms = $5, fencing_token = fencing_token + 1, claims = claims + 1,
        started_at = coalesce(started_at, $1)
    FROM due WHERE runs.id = due.due_id
    RETURNING due.due_time, ";

/// Claims run `$1` for `$2` until `$3` (a lease of `$5`) when it is due at `$4`, as
/// `CLAIM` would take it.
const CLAIM_ONE: &str =
    "UPDATE runs SET status = 'running', lease_owner = $2, lease_expires_at = $3,
        lease_ms = $5, fencing_token = fencing_token + 1, claims = claims + 1,
        started_at = coalesce(started_at, $4)
    WHERE id = $1 AND due_at <= $4 AND status <> 'running'
    RETURNING ";

/// Takes running run `$1` over for `$2` until `$3` (a lease of `$5`), at `$4`, if its lease
/// is still token `$6` ending at `$7` (see `Store::take_over`).
const TAKE_OVER: &str = "UPDATE runs SET lease_owner = $2, lease_expires_at = $3,
        lease_ms = $5, fencing_token = fencing_token + 1, claims = claims + 1,
        started_at = coalesce(started_at, $4)
    WHERE id = $1 AND status = 'running' AND fencing_token = $6 AND lease_expires_at = $7
    RETURNING ";

/// Pushes the conditions of a run filter onto a listing or a count; answers the word that
/// joins a further condition (` WHERE `, or ` AND ` once one was pushed).
fn push_run_filter(query: &mut QueryBuilder<Postgres>, filter: &RunFilter) -> &'static str {
    let mut separator = " WHERE ";
    if let Some(environment) = &filter.environment {
        query
            .push(separator)
            .push("environment = ")
            .push_bind(environment.clone());
        separator = " AND ";
    }
    if let Some(workflow) = &filter.workflow {
        query
            .push(separator)
            .push("workflow = ")
            .push_bind(workflow.clone());
        separator = " AND ";
    }
    if let Some(status) = filter.status {
        query
            .push(separator)
            .push("status = ")
            .push_bind(status.as_str());
        if matches!(
            status,
            RunStatus::Waiting | RunStatus::Failed | RunStatus::Dead
        ) {
            // Repeats the partial index's condition so the planner may use `runs_status`.
            query.push(" AND status IN ('waiting', 'failed', 'dead')");
        }
        separator = " AND ";
    }
    separator
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_version(&self, version: &WorkflowVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO versions (id, workflow, canonical, source, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&version.id)
        .bind(&version.workflow)
        .bind(&version.canonical)
        .bind(&version.source)
        .bind(version.created_at)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn version(&self, id: &str) -> Result<Option<WorkflowVersion>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM versions WHERE id = $1",
            rows::VERSION_COLUMNS
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::version)
        .transpose()
    }

    async fn set_deployment(&self, d: &Deployment) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let result = async {
            // Locks the existing row, so that of two concurrent deployments the second
            // returns the first's version as its previous one.
            let previous: Option<String> = sqlx::query_scalar(
            "SELECT version FROM deployments WHERE environment = $1 AND workflow = $2 FOR UPDATE",
        )
        .bind(&d.environment)
        .bind(&d.workflow)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
            sqlx::query(
                "INSERT INTO deployments (environment, workflow, version, actor, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (environment, workflow) DO UPDATE SET
                 version = excluded.version,
                 actor = excluded.actor,
                 updated_at = excluded.updated_at",
            )
            .bind(&d.environment)
            .bind(&d.workflow)
            .bind(&d.version)
            .bind(&d.actor)
            .bind(d.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(previous)
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn deployment(&self, environment: &str, workflow: &str) -> Result<Option<Deployment>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM deployments WHERE environment = $1 AND workflow = $2",
            rows::DEPLOYMENT_COLUMNS
        )))
        .bind(environment)
        .bind(workflow)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::deployment)
        .transpose()
    }

    async fn deployments(&self, environment: Option<&str>) -> Result<Vec<Deployment>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {} FROM deployments",
            rows::DEPLOYMENT_COLUMNS
        ));
        if let Some(environment) = environment {
            query
                .push(" WHERE environment = ")
                .push_bind(environment.to_owned());
        }
        query.push(" ORDER BY environment, workflow");
        query
            .build()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::deployment)
            .collect()
    }

    async fn enqueue(&self, run: &NewRun) -> Result<Enqueued> {
        // The unique index `runs_dedupe` decides between concurrent deliveries of one key
        // on any number of servers: the second waits for the first to commit, then does
        // nothing, and reads the first's id.
        let inserted = sqlx::query_scalar::<_, String>(
            "INSERT INTO runs (id, environment, workflow, version, status, trigger_payload,
                 dedupe_key, created_at)
             VALUES ($1, $2, $3, $4, 'queued', $5::json, $6, $7)
             ON CONFLICT (environment, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(&run.id)
        .bind(&run.environment)
        .bind(&run.workflow)
        .bind(&run.version)
        .bind(rows::json(&run.trigger)?)
        .bind(&run.dedupe_key)
        .bind(run.created_at)
        .fetch_optional(&self.inner.pool)
        .await;
        match inserted {
            Ok(Some(id)) => Ok(Enqueued {
                run: id,
                created: true,
            }),
            Ok(None) => {
                let first: String = sqlx::query_scalar(
                    "SELECT id FROM runs WHERE environment = $1 AND dedupe_key = $2",
                )
                .bind(&run.environment)
                .bind(&run.dedupe_key)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(db)?;
                Ok(Enqueued {
                    run: first,
                    created: false,
                })
            }
            Err(e) if is_unique_violation(&e, Some("runs_pkey")) => {
                Err(Error::Conflict(format!("run {} already exists", run.id)))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn enqueue_claimed(
        &self,
        run: &NewRun,
        worker: &str,
        lease_ms: i64,
        journal: &[NewJournalEntry],
    ) -> Result<(Enqueued, Option<Claim>)> {
        // Inserted already claimed (token 1, one claim, leased): one statement, one commit.
        // A duplicate key inserts nothing and is answered as `enqueue` answers it. The
        // first entries go in the same transaction.
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO runs (id, environment, workflow, version, status, trigger_payload,
                 dedupe_key, created_at, started_at, lease_owner, lease_expires_at,
                 fencing_token, claims, lease_ms)
             VALUES ($1, $2, $3, $4, 'running', $5::json, $6, $7, $7, $8, $9, 1, 1, $10)
             ON CONFLICT (environment, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
             RETURNING {}",
            rows::RUN_COLUMNS
        )))
        .bind(&run.id)
        .bind(&run.environment)
        .bind(&run.workflow)
        .bind(&run.version)
        .bind(rows::json(&run.trigger)?)
        .bind(&run.dedupe_key)
        .bind(run.created_at)
        .bind(worker)
        .bind(run.created_at.saturating_add(lease_ms))
        .bind(lease_ms)
        .fetch_optional(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(Some(row)) => {
                let result = async {
                    let claimed = rows::run(&row)?;
                    append_entries(&mut tx, &claimed.id, journal).await?;
                    Ok(claimed)
                }
                .await;
                Ok(Some(end_transaction(tx, result).await?))
            }
            other => {
                let _ = tx.rollback().await;
                other.map(|_| None)
            }
        };
        match inserted {
            Ok(Some(claimed)) => Ok((
                Enqueued {
                    run: claimed.id.clone(),
                    created: true,
                },
                Some(Claim {
                    token: claimed.fencing_token,
                    run: claimed,
                }),
            )),
            Ok(None) => Ok((self.enqueue(run).await?, None)),
            Err(e) if is_unique_violation(&e, Some("runs_pkey")) => {
                Err(Error::Conflict(format!("run {} already exists", run.id)))
            }
            Err(e) => Err(db(e)),
        }
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(AssertSqlSafe(format!("{CLAIM}{}", rows::RUN_COLUMNS)))
            .bind(now)
            .bind(limit)
            .bind(worker)
            .bind(now.saturating_add(lease_ms))
            .bind(lease_ms)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let due: i64 = row.try_get("due_time").map_err(db)?;
                Ok((due, rows::run(row)?))
            })
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by(|(a_due, a), (b_due, b)| (a_due, &a.id).cmp(&(b_due, &b.id)));
        Ok(claimed
            .into_iter()
            .map(|(_, run)| Claim {
                token: run.fencing_token,
                run,
            })
            .collect())
    }

    async fn claim_run(
        &self,
        run: &str,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        // One statement: a claimer racing for the same row waits for its lock, then finds
        // it no longer due (its lease runs from now) and takes nothing.
        let claimed = sqlx::query(AssertSqlSafe(format!("{CLAIM_ONE}{}", rows::RUN_COLUMNS)))
            .bind(run)
            .bind(worker)
            .bind(now.saturating_add(lease_ms))
            .bind(now)
            .bind(lease_ms)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?;
        if let Some(row) = claimed {
            let run = rows::run(&row)?;
            return Ok(Some(Claim {
                token: run.fencing_token,
                run,
            }));
        }
        let exists = sqlx::query("SELECT 1 FROM runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?;
        match exists {
            Some(_) => Ok(None),
            None => Err(run_not_found(run)),
        }
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        // Running runs all have a due time (their lease's end): one range of `runs_due`.
        let rows = sqlx::query(
            "SELECT id, lease_owner, fencing_token, lease_expires_at, lease_ms FROM runs
             WHERE due_at IS NOT NULL AND status = 'running'",
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    run: row.try_get("id").map_err(db)?,
                    owner: row.try_get("lease_owner").map_err(db)?,
                    token: row.try_get("fencing_token").map_err(db)?,
                    expires_at: row.try_get("lease_expires_at").map_err(db)?,
                    promised_ms: row.try_get("lease_ms").map_err(db)?,
                })
            })
            .collect()
    }

    async fn take_over(
        &self,
        lease: &Lease,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        let taken = sqlx::query(AssertSqlSafe(format!("{TAKE_OVER}{}", rows::RUN_COLUMNS)))
            .bind(&lease.run)
            .bind(worker)
            .bind(now.saturating_add(lease_ms))
            .bind(now)
            .bind(lease_ms)
            .bind(lease.token)
            .bind(lease.expires_at)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?;
        taken
            .map(|row| {
                let run = rows::run(&row)?;
                Ok(Claim {
                    token: run.fencing_token,
                    run,
                })
            })
            .transpose()
    }

    async fn commit(&self, run: &str, token: i64, commit: Commit) -> Result<()> {
        if let Some(Settlement::Finish { status, .. }) = &commit.settle
            && !status.is_final()
        {
            return Err(Error::Conflict(format!(
                "a run cannot finish as {}: only succeeded, failed or dead",
                status.as_str()
            )));
        }
        let mut tx = self.begin().await?;
        let result = async {
            let (status, current) = lock_run(&mut tx, run).await?;
            if status != RunStatus::Running || current != token {
                return Err(Error::Fenced {
                    run: run.to_owned(),
                    presented: token,
                    current,
                });
            }
            append_entries(&mut tx, run, &commit.entries).await?;
            if let Some(until) = commit.lease_until {
                // A renewal always changes the stored end (see `Commit::lease_until`).
                sqlx::query(
                    "UPDATE runs SET lease_expires_at =
                         CASE WHEN lease_expires_at = $2 THEN $2 + 1 ELSE $2 END
                     WHERE id = $1",
                )
                .bind(run)
                .bind(until)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            match commit.settle {
                None => {}
                Some(Settlement::Finish {
                    status,
                    output,
                    error,
                    at,
                }) => {
                    sqlx::query(
                    "UPDATE runs SET status = $2, output = $3::json, error = $4, finished_at = $5,
                         wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = $1",
                )
                .bind(run)
                .bind(status.as_str())
                .bind(rows::json_opt(output.as_ref())?)
                .bind(error)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                }
                Some(Settlement::Sleep { wake_at }) => {
                    sqlx::query(
                        "UPDATE runs SET status = 'queued', wake_at = $2,
                         lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = $1",
                    )
                    .bind(run)
                    .bind(wake_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                Some(Settlement::Wait { deadline }) => {
                    sqlx::query(
                        "UPDATE runs SET status = 'waiting', wake_at = $2,
                         lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = $1",
                    )
                    .bind(run)
                    .bind(deadline)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
            }
            Ok(())
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn run(&self, id: &str) -> Result<Option<Run>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM runs WHERE id = $1",
            rows::RUN_COLUMNS
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::run)
        .transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut query =
            QueryBuilder::<Postgres>::new(format!("SELECT {} FROM runs", rows::RUN_COLUMNS));
        let separator = push_run_filter(&mut query, filter);
        if let Some(cursor) = &filter.before {
            // A row comparison, which the planner reads as one range of the
            // `(…, created_at, id)` indexes: the next page seeks, it does not skip.
            query
                .push(separator)
                .push("(created_at, id) < (")
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id.clone())
                .push(")");
        }
        // Newest first; runs accepted in the same millisecond by their (time-ordered) ids.
        query.push(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            query
                .push(" LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        query
            .build()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::run)
            .collect()
    }

    /// Returns early when a run was queued or released with a wake time, by any process
    /// sharing the database, since the last wait returned. A dedicated connection listens
    /// for the notifications; while it cannot, this sleeps `max`.
    async fn wait_for_work(&self, max: Duration) {
        self.inner.work.wait(max).await;
    }

    async fn count_runs(&self, filter: &RunFilter) -> Result<u64> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT count(*) FROM runs");
        push_run_filter(&mut query, filter);
        let count: i64 = query
            .build_query_scalar()
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?;
        u64::try_from(count).map_err(|_| Error::Backend(format!("a negative count: {count}")))
    }

    async fn prune_runs(
        &self,
        before: Timestamp,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<u64> {
        // One statement: the chosen runs are locked (others' claims skip them, a claim
        // being taken is skipped here), then their journals, decisions and rows go.
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT id FROM runs
                 WHERE created_at < $1 AND ($2::text IS NULL OR environment = $2)
                   AND status IN ('succeeded', 'failed', 'dead') AND finished_at < $1
                 ORDER BY created_at LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), journal_gone AS (
                 DELETE FROM journal WHERE run IN (SELECT id FROM doomed)
             ), decisions_gone AS (
                 DELETE FROM step_decisions WHERE run IN (SELECT id FROM doomed)
             )
             DELETE FROM runs WHERE id IN (SELECT id FROM doomed)",
        )
        .bind(before)
        .bind(environment)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(deleted.rows_affected())
    }

    async fn run_outcomes(&self, query: &OutcomeQuery) -> Result<Outcomes> {
        // One range of `runs_workflow` (environment, workflow, created_at, id).
        let row = sqlx::query(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'succeeded') FROM runs
             WHERE environment = $1 AND workflow = $2 AND created_at >= $4 AND created_at < $5
               AND ($3::text IS NULL OR version = $3) AND status IN ('succeeded', 'failed', 'dead')",
        )
        .bind(&query.environment)
        .bind(&query.workflow)
        .bind(&query.version)
        .bind(query.from.unwrap_or(i64::MIN))
        .bind(query.until.unwrap_or(i64::MAX))
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db)?;
        let count = |index: usize| -> Result<u64> {
            let n: i64 = row.try_get(index).map_err(db)?;
            u64::try_from(n).map_err(|_| Error::Backend(format!("a negative count: {n}")))
        };
        Ok(Outcomes {
            finished: count(0)?,
            failed: count(1)?,
        })
    }

    async fn journal(&self, run: &str) -> Result<Vec<JournalEntry>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM journal WHERE run = $1 ORDER BY seq",
            rows::JOURNAL_COLUMNS
        )))
        .bind(run)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::journal_entry)
        .collect()
    }

    async fn retry_run(&self, run: &str, _now: Timestamp, marks: &[NewJournalEntry]) -> Result<()> {
        let mut tx = self.begin().await?;
        let result = async {
            let (status, _) = lock_run(&mut tx, run).await?;
            if !matches!(status, RunStatus::Dead | RunStatus::Failed) {
                return Err(Error::Conflict(format!(
                    "run {run} is {}: only dead or failed runs are retried",
                    status.as_str()
                )));
            }
            append_entries(&mut tx, run, marks).await?;
            sqlx::query(
                "UPDATE runs SET status = 'queued', wake_at = NULL, error = NULL, output = NULL,
                 finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1",
            )
            .bind(run)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn decide_step(&self, d: &StepDecision) -> Result<()> {
        let mut tx = self.begin().await?;
        let result = async {
            let (status, _) = lock_run(&mut tx, &d.run).await?;
            if status != RunStatus::Waiting {
                return Err(Error::Conflict(format!(
                    "run {} is {}, not waiting for a decision",
                    d.run,
                    status.as_str()
                )));
            }
            let waits_on: Option<String> = sqlx::query_scalar(
                "SELECT step FROM journal WHERE run = $1 AND status = 'waiting'
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&d.run)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            crate::waits_on(&d.run, &d.step, waits_on.as_deref())?;
            let inserted = sqlx::query(
                "INSERT INTO step_decisions (run, step, approver, approved, decided_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run, step) DO NOTHING",
            )
            .bind(&d.run)
            .bind(&d.step)
            .bind(&d.approver)
            .bind(d.approved)
            .bind(d.decided_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if inserted.rows_affected() == 0 {
                return Err(Error::Conflict(format!(
                    "step {} of run {} is already decided",
                    d.step, d.run
                )));
            }
            sqlx::query("UPDATE runs SET status = 'queued', wake_at = NULL WHERE id = $1")
                .bind(&d.run)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            Ok(())
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn step_decision(&self, run: &str, step: &str) -> Result<Option<StepDecision>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM step_decisions WHERE run = $1 AND step = $2",
            rows::DECISION_COLUMNS
        )))
        .bind(run)
        .bind(step)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::decision)
        .transpose()
    }

    async fn put_secret(&self, s: &SealedSecret) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (environment, name, sealed, fingerprint, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (environment, name) DO UPDATE SET
                 sealed = excluded.sealed,
                 fingerprint = excluded.fingerprint,
                 updated_at = excluded.updated_at",
        )
        .bind(&s.environment)
        .bind(&s.name)
        .bind(&s.sealed)
        .bind(&s.fingerprint)
        .bind(s.updated_at)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn secret(&self, environment: &str, name: &str) -> Result<Option<SealedSecret>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM secrets WHERE environment = $1 AND name = $2",
            rows::SECRET_COLUMNS
        )))
        .bind(environment)
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::secret)
        .transpose()
    }

    async fn secret_names(&self) -> Result<Vec<SecretName>> {
        sqlx::query("SELECT environment, name, updated_at FROM secrets ORDER BY environment, name")
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::secret_name)
            .collect()
    }

    async fn add_record(&self, r: &NewTestRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO test_records (environment, run, step, connector, action, arguments,
                 idempotency_key, at)
             VALUES ($1, $2, $3, $4, $5, $6::json, $7, $8)",
        )
        .bind(&r.environment)
        .bind(&r.run)
        .bind(&r.step)
        .bind(&r.connector)
        .bind(&r.action)
        .bind(rows::json(&r.arguments)?)
        .bind(&r.idempotency_key)
        .bind(r.at)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn records(&self, environment: &str) -> Result<Vec<TestRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM test_records WHERE environment = $1 ORDER BY id",
            rows::RECORD_COLUMNS
        )))
        .bind(environment)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::record)
        .collect()
    }

    async fn records_page(&self, environment: &str, page: Page) -> Result<Vec<TestRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM test_records WHERE environment = $1 AND id < $2
             ORDER BY id DESC LIMIT $3",
            rows::RECORD_COLUMNS
        )))
        .bind(environment)
        .bind(page.before.unwrap_or(i64::MAX))
        .bind(page_limit(page))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::record)
        .collect()
    }

    async fn add_evidence(&self, e: &NewEvidence) -> Result<Evidence> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO evidence (workflow, version, kind, passed, summary, at)
             VALUES ($1, $2, $3, $4, $5::json, $6) RETURNING id",
        )
        .bind(&e.workflow)
        .bind(&e.version)
        .bind(&e.kind)
        .bind(e.passed)
        .bind(rows::json(&e.summary)?)
        .bind(e.at)
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(Evidence {
            id,
            evidence: e.clone(),
        })
    }

    async fn evidence(&self, workflow: &str, version: Option<&str>) -> Result<Vec<Evidence>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {} FROM evidence WHERE workflow = ",
            rows::EVIDENCE_COLUMNS
        ));
        query.push_bind(workflow.to_owned());
        if let Some(version) = version {
            query.push(" AND version = ").push_bind(version.to_owned());
        }
        query.push(" ORDER BY id DESC");
        query
            .build()
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::evidence)
            .collect()
    }

    async fn add_bundle(&self, bundle: &StoredBundle) -> Result<()> {
        let files =
            serde_json::to_value(&bundle.files).map_err(|e| Error::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO project_bundles (id, environment, files, deployed_by, deployed_at)
             VALUES ($1, $2, $3::json, $4, $5)",
        )
        .bind(&bundle.id)
        .bind(&bundle.environment)
        .bind(rows::json(&files)?)
        .bind(&bundle.deployed_by)
        .bind(bundle.deployed_at)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn latest_bundle(&self) -> Result<Option<StoredBundle>> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, environment, files::text, deployed_by, deployed_at FROM project_bundles
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?;
        row.map(|(id, environment, files, deployed_by, deployed_at)| {
            Ok(StoredBundle {
                id,
                environment,
                files: serde_json::from_str(&files)
                    .map_err(|e| Error::Backend(format!("a stored bundle does not read: {e}")))?,
                deployed_by,
                deployed_at,
            })
        })
        .transpose()
    }

    async fn open_request(&self, request: &NewPromotionRequest) -> Result<PromotionRequest> {
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        promotion::insert_request(&mut conn, request).await
    }

    async fn request(&self, id: &str) -> Result<Option<PromotionRequest>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM promotion_requests WHERE id = $1",
            rows::REQUEST_COLUMNS
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::request)
        .transpose()
    }

    async fn requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>> {
        self.requests_where(false, workflow).await
    }

    async fn open_requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>> {
        self.requests_where(true, workflow).await
    }

    async fn decide_request(&self, approval: &Approval) -> Result<()> {
        let mut tx = self.begin().await?;
        let result = async {
            promotion::decide(&mut tx, approval).await?;
            Ok(())
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn close_request(&self, id: &str, status: crate::RequestStatus, at: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let result = promotion::close_request(&mut tx, id, status, at).await;
        end_transaction(tx, result).await
    }

    async fn approvals(&self, request: &str) -> Result<Vec<Approval>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM approvals WHERE request = $1 ORDER BY at, approver",
            rows::APPROVAL_COLUMNS
        )))
        .bind(request)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::approval)
        .collect()
    }

    async fn release(&self, release: &NewRelease) -> Result<Release> {
        let mut tx = self.begin().await?;
        let result = async {
            let released = promotion::insert_release(&mut tx, release).await?;
            Ok(released)
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn release_by_id(&self, id: &str) -> Result<Option<Release>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM releases WHERE id = $1",
            rows::RELEASE_COLUMNS
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::release)
        .transpose()
    }

    async fn releases(&self, environment: &str, workflow: &str) -> Result<Vec<Release>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM releases WHERE environment = $1 AND workflow = $2 ORDER BY seq DESC",
            rows::RELEASE_COLUMNS
        )))
        .bind(environment)
        .bind(workflow)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::release)
        .collect()
    }

    async fn audit(&self, event: &NewAuditEvent) -> Result<AuditEvent> {
        let detail = rows::json(&event.detail)?;
        let mut tx = self.begin().await?;
        let result = async {
            // One appender at a time, across every process: the next event must link to the
            // head as it is when it is written, not as another appender last saw it.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_keys::AUDIT)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let (seq, prev_hash) = match head {
                Some(row) => (
                    row.try_get::<i64, _>("seq").map_err(db)? + 1,
                    row.try_get::<String, _>("hash").map_err(db)?,
                ),
                None => (1, GENESIS_HASH.to_owned()),
            };
            let hash = AuditEvent::compute_hash(&prev_hash, event);
            sqlx::query(
                "INSERT INTO audit (seq, at, actor, action, environment, subject, detail,
                 prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9)",
            )
            .bind(seq)
            .bind(event.at)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.environment)
            .bind(&event.subject)
            .bind(detail)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(AuditEvent {
                seq,
                event: event.clone(),
                prev_hash,
                hash,
            })
        }
        .await;
        end_transaction(tx, result).await
    }

    async fn audit_log(&self) -> Result<Vec<AuditEvent>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM audit ORDER BY seq",
            rows::AUDIT_COLUMNS
        )))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::audit_event)
        .collect()
    }

    async fn audit_page(&self, environment: Option<&str>, page: Page) -> Result<Vec<AuditEvent>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM audit WHERE ($1::text IS NULL OR environment = $1) AND seq < $2
             ORDER BY seq DESC LIMIT $3",
            rows::AUDIT_COLUMNS
        )))
        .bind(environment)
        .bind(page.before.unwrap_or(i64::MAX))
        .bind(page_limit(page))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::audit_event)
        .collect()
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>> {
        sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db)?
            .map(|row| {
                Ok(AuditHead {
                    seq: row.try_get("seq").map_err(db)?,
                    hash: row.try_get("hash").map_err(db)?,
                })
            })
            .transpose()
    }

    async fn create_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        promotion::insert_token(&mut conn, token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM api_tokens WHERE secret_hash = $1 AND revoked_at IS NULL",
            promotion::TOKEN_COLUMNS
        )))
        .bind(hash)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(promotion::token)
        .transpose()
    }

    async fn tokens(&self, environment: Option<&str>) -> Result<Vec<ApiToken>> {
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        promotion::tokens(&mut conn, environment).await
    }

    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<()> {
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        promotion::revoke_token(&mut conn, id, at).await
    }

    async fn create_session(&self, session: &NewConsoleSession) -> Result<()> {
        let mut tx = self.inner.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(session.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_id, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_hash) DO NOTHING",
        )
        .bind(&session.id_hash)
        .bind(&session.token_id)
        .bind(&session.csrf)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(Error::Conflict("a session with that id exists".into()));
        }
        tx.commit().await.map_err(db)
    }

    async fn session_by_hash(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.environment, t.role, t.secret_hash, t.created_by,
                    t.created_at, t.revoked_at,
                    s.id_hash, s.token_id, s.csrf, s.created_at AS session_created_at,
                    s.expires_at
             FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::Row;
        Ok(Some(ConsoleSession {
            token: promotion::token(&row)?,
            session: NewConsoleSession {
                id_hash: row.try_get("id_hash").map_err(db)?,
                token_id: row.try_get("token_id").map_err(db)?,
                csrf: row.try_get("csrf").map_err(db)?,
                created_at: row.try_get("session_created_at").map_err(db)?,
                expires_at: row.try_get("expires_at").map_err(db)?,
            },
        }))
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn add_notifications(&self, notifications: &[NewNotification]) -> Result<usize> {
        outbox::add(&self.inner.pool, notifications).await
    }

    async fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        outbox::claim(&self.inner.pool, holder, now, lease_ms, limit).await
    }

    async fn settle_notification(
        &self,
        id: &str,
        holder: &str,
        at: Timestamp,
        error: Option<&str>,
        retry_at: Timestamp,
    ) -> Result<bool> {
        outbox::settle(&self.inner.pool, id, holder, at, error, retry_at).await
    }

    async fn notifications(&self, environment: Option<&str>) -> Result<Vec<Notification>> {
        outbox::list(&self.inner.pool, environment).await
    }

    async fn schedule_cursor(
        &self,
        environment: &str,
        workflow: &str,
    ) -> Result<Option<Timestamp>> {
        sqlx::query_scalar(
            "SELECT last_tick FROM schedule_cursors WHERE environment = $1 AND workflow = $2",
        )
        .bind(environment)
        .bind(workflow)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db)
    }

    async fn advance_schedule(
        &self,
        environment: &str,
        workflow: &str,
        expected: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<bool> {
        let mut conn = self.inner.pool.acquire().await.map_err(db)?;
        promotion::advance_schedule(&mut conn, environment, workflow, expected, to).await
    }

    async fn probe_write(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let probed = async {
            let version: Option<i32> =
                sqlx::query_scalar("SELECT max(version) FROM airlock_schema_version")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            let version = version.unwrap_or(0);
            if version != SCHEMA_VERSION as i32 {
                return Err(Error::Backend(format!(
                    "the database has schema version {version}, not this Airlock's ({SCHEMA_VERSION})"
                )));
            }
            // A row rewritten with its own values: a new row version, a WAL record and a
            // commit, as any write makes, and nothing anyone reads changes.
            sqlx::query(
                "UPDATE airlock_schema_version SET applied_at = applied_at WHERE version = $1",
            )
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Ok(())
        }
        .await;
        end_transaction(tx, probed).await
    }
}

/// A page's limit as PostgreSQL takes it.
fn page_limit(page: Page) -> i64 {
    i64::try_from(page.limit).unwrap_or(i64::MAX)
}
