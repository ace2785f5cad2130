//! Airlock's durable state, behind one trait.
//!
//! [`Store`] is everything the engine, the CLI and (later) the server keep: workflow
//! versions, deployments, runs and their step journal, the work queue with leases,
//! approvals of steps, secrets (sealed; this crate never sees a plaintext), test records
//! and the hash-chained audit log.
//!
//! The trait is written for many processes on many machines: work is claimed with a
//! lease its holder renews while it lives (a run is taken over only through a lease seen
//! unrenewed: [`Lease`], [`Store::take_over`]), and every write on behalf of a claim carries
//! the claim's fencing token, which rises with each claim, so a holder that wakes after
//! its lease expired cannot overwrite the new holder's journal. Nothing here relies on
//! a single process or on SQLite semantics; [`conformance`] holds the tests every
//! backend must pass, written once, generic over the trait.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conformance;
pub mod copy;
mod model;
pub mod postgres;
pub mod private_files;
pub mod sqlite;

pub use model::*;
// The model the store persists is the core's; it is re-exported so that a caller of the
// trait names its arguments from one crate.
pub use airlock_core::audit::{
    AnchorMismatch, AuditEvent, AuditHead, GENESIS_HASH, NewAuditEvent, check_anchor,
    verify_audit_chain,
};
pub use airlock_core::release::{
    Approval, Deployment, Evidence, NewEvidence, NewPromotionRequest, NewRelease, PromotionRequest,
    Release, ReleaseKind, RequestStatus, WorkflowVersion,
};
pub use airlock_core::run::{
    JournalEntry, NewJournalEntry, NewRun, Run, RunStatus, StepDecision, StepStatus, Timestamp,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{Durability, SqliteOptions, SqliteStore};

use async_trait::async_trait;

/// Errors of any backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The claim's fencing token is no longer current: another worker holds the run.
    #[error("run {run} is held by a newer claim (token {current}, not {presented})")]
    Fenced {
        /// The run.
        run: String,
        /// The token presented.
        presented: i64,
        /// The token now current.
        current: i64,
    },
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write conflicts with the current state (for example a decision on a step
    /// that is not waiting).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (I/O, corruption, a bug).
    #[error("store: {0}")]
    Backend(String),
}

/// Results of store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Durable state. Every method is atomic: it happens entirely or not at all.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- workflow versions and deployments ----

    /// Stores a workflow version. Idempotent: storing the same id again changes nothing.
    async fn put_version(&self, version: &WorkflowVersion) -> Result<()>;
    /// A stored version by id.
    async fn version(&self, id: &str) -> Result<Option<WorkflowVersion>>;
    /// Points `environment`'s `workflow` at `version` and returns the previous version.
    async fn set_deployment(&self, deployment: &Deployment) -> Result<Option<String>>;
    /// The version `environment` runs for `workflow`.
    async fn deployment(&self, environment: &str, workflow: &str) -> Result<Option<Deployment>>;
    /// Every deployment, optionally of one environment.
    async fn deployments(&self, environment: Option<&str>) -> Result<Vec<Deployment>>;

    // ---- runs and the queue ----

    /// Accepts a run into the queue. With a `dedupe_key` already accepted in the same
    /// environment, creates nothing and returns the first run's id.
    async fn enqueue(&self, run: &NewRun) -> Result<Enqueued>;
    /// Accepts a run and, when it is new, claims it for `worker` in the same write, so
    /// the accepting process can execute it at once without a queue round trip (a
    /// webhook server does). The claim is an ordinary one: leased until
    /// `run.created_at + lease_ms`, with a fencing token, reclaimed by anyone if its
    /// holder dies. `journal` is appended to the new run's journal in the same write
    /// (numbered from 1): what the accepting process decided before accepting it. A
    /// duplicate delivery returns the first run's id, no claim, and writes nothing. A
    /// backend may always answer without a claim (the default does): the run is then
    /// queued and claimed as usual, and `journal` is not written; with a claim, it is.
    async fn enqueue_claimed(
        &self,
        run: &NewRun,
        worker: &str,
        lease_ms: i64,
        journal: &[NewJournalEntry],
    ) -> Result<(Enqueued, Option<Claim>)> {
        let _ = (worker, lease_ms, journal);
        Ok((self.enqueue(run).await?, None))
    }
    /// Claims up to `limit` runs that are due: queued or waiting runs whose wake time
    /// has come. Each claim raises the run's fencing token and leases it to `worker` until
    /// `now + lease_ms` (a lease of `lease_ms`, recorded as the holder's promise).
    ///
    /// A queued run without a wake time is due from its `created_at`; a waiting run
    /// without a deadline is never due (only a decision wakes it). The oldest due time
    /// comes first: the wake time or the acceptance time.
    ///
    /// A running run is never claimed here, however long ago its lease seems to have
    /// ended: comparing the holder's wall clock with the claimer's cannot tell a dead
    /// holder from a clock that was set forward. It is taken over with
    /// [`Store::take_over`] by a caller that watched its [`Lease`] go unrenewed.
    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>>;
    /// Claims the one run `run` for `worker`, as [`Store::claim`] would if it came up: only
    /// when it is due at `now` (queued or waiting with its wake time come), raising its
    /// fencing token and leasing it until `now + lease_ms`. `None`, writing nothing, when
    /// it is not due: finished, sleeping, waiting for a person, or running (held by another
    /// process, say, which only [`Store::take_over`] takes from it). [`Error::NotFound`]
    /// for an unknown id.
    ///
    /// What a process that drives one run uses (`airlock run`, `approve-step`, `runs
    /// retry`): it must never claim, and so never execute, anyone else's run.
    async fn claim_run(
        &self,
        run: &str,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>>;
    /// The lease of every running run, for a caller that watches them to take over the
    /// runs of holders that stopped renewing ([`Lease`]).
    async fn leases(&self) -> Result<Vec<Lease>>;
    /// Takes the running run of `lease` over for `worker`, as a claim does (token raised,
    /// leased until `now + lease_ms`), only if its lease is still exactly `lease` (same
    /// token, same end: not renewed since the caller saw it); `None`, writing nothing,
    /// otherwise (renewed, released, finished, or taken by someone else). The old holder
    /// is fenced from then on.
    ///
    /// The store does not judge whether the holder is dead: the caller does, by having
    /// seen the same lease for the holder's promised time on its own monotonic clock.
    async fn take_over(
        &self,
        lease: &Lease,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>>;
    /// Writes journal entries for a claimed run, and optionally extends its lease or
    /// settles it, in one transaction. Fails with [`Error::Fenced`] when `token` is no
    /// longer the run's current token; nothing is written then.
    async fn commit(&self, run: &str, token: i64, commit: Commit) -> Result<()>;
    /// Waits until work may be due, or `max` has passed, whichever comes first: what a
    /// worker does instead of polling [`Store::claim`] when nothing was due.
    ///
    /// Returns early when a write may have made a run due: a run enqueued, released
    /// (sleeping or waiting), decided or retried. Spurious wakeups are allowed (the caller
    /// simply claims and may find nothing), and so are missed ones for writes made
    /// elsewhere (another process, unless the backend hears of them): the caller still
    /// claims at least every `max`. The default waits `max`.
    async fn wait_for_work(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await;
    }
    /// One run.
    async fn run(&self, id: &str) -> Result<Option<Run>>;
    /// Runs matching a filter, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// How many runs match a filter (its `limit` ignored). Metrics sample it every
    /// second, so backends answer it with a count, not by loading runs.
    async fn count_runs(&self, filter: &RunFilter) -> Result<u64> {
        let unlimited = RunFilter {
            limit: None,
            ..filter.clone()
        };
        Ok(self.runs(&unlimited).await?.len() as u64)
    }
    /// How the finished runs a query names ended, counted by the store over an index on
    /// (environment, workflow, created_at): promotion checks, readiness and release
    /// history read these figures, and loading every run (payloads included) to count
    /// them would cost more the longer a workflow has run.
    async fn run_outcomes(&self, query: &OutcomeQuery) -> Result<Outcomes>;
    /// A run's journal, in order.
    async fn journal(&self, run: &str) -> Result<Vec<JournalEntry>>;
    /// Retention: deletes up to `limit` of the oldest runs of `environment` (of every
    /// environment when `None`) that were accepted and finished before `before`, with their
    /// journals and step decisions, and answers how many went. Queued, running and waiting
    /// runs are never deleted, whatever their age. Callers repeat it until it answers 0,
    /// so that no single write holds the store for long.
    async fn prune_runs(
        &self,
        before: Timestamp,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<u64>;
    /// Puts a dead or failed run back in the queue (`airlock runs retry`), appending
    /// `marks` to its journal in the same transaction (the engine marks each step that
    /// failed for good as retried, so it runs again). The rest of the journal is kept:
    /// steps that succeeded are not run again.
    async fn retry_run(&self, run: &str, now: Timestamp, marks: &[NewJournalEntry]) -> Result<()>;

    // ---- approval steps ----

    /// Records a decision on a step that waits for approval and wakes its run.
    /// Fails with [`Error::Conflict`] when the run is not waiting on that step, or a
    /// decision already exists.
    async fn decide_step(&self, decision: &StepDecision) -> Result<()>;
    /// The decision on a step, if one was made.
    async fn step_decision(&self, run: &str, step: &str) -> Result<Option<StepDecision>>;

    // ---- secrets (sealed) ----

    /// Stores a sealed secret for one environment, replacing any previous value.
    async fn put_secret(&self, secret: &SealedSecret) -> Result<()>;
    /// A sealed secret of one environment. Another environment's secret of the same
    /// name is never returned.
    async fn secret(&self, environment: &str, name: &str) -> Result<Option<SealedSecret>>;
    /// Names, environments and update times of every secret; never values.
    async fn secret_names(&self) -> Result<Vec<SecretName>>;

    // ---- test records (record-mode bindings) ----

    /// Records one call a record-mode binding received.
    async fn add_record(&self, record: &NewTestRecord) -> Result<()>;
    /// Test records of one environment, oldest first.
    async fn records(&self, environment: &str) -> Result<Vec<TestRecord>>;
    /// One page of an environment's test records, newest first, by `(environment, id)`.
    async fn records_page(&self, environment: &str, page: Page) -> Result<Vec<TestRecord>>;

    // ---- evidence, promotion requests, approvals, releases ----

    /// Records a fact about a workflow version.
    async fn add_evidence(&self, evidence: &NewEvidence) -> Result<Evidence>;
    /// Evidence of a workflow, newest first; only of `version` when given.
    async fn evidence(&self, workflow: &str, version: Option<&str>) -> Result<Vec<Evidence>>;
    /// Keeps a deployed project bundle (one row per deploy, in order).
    async fn add_bundle(&self, bundle: &StoredBundle) -> Result<()>;
    /// The bundle deployed last, if any: what a server with no project folder serves.
    async fn latest_bundle(&self) -> Result<Option<StoredBundle>>;
    /// Opens a promotion request.
    async fn open_request(&self, request: &NewPromotionRequest) -> Result<PromotionRequest>;
    /// One promotion request.
    async fn request(&self, id: &str) -> Result<Option<PromotionRequest>>;
    /// Promotion requests, newest first, optionally of one workflow.
    async fn requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>>;
    /// The open promotion requests, newest first, optionally of one workflow: what the
    /// inbox, the home page and every `promote` read. One range of an index of the open
    /// ones only, so it costs what is waiting, not the whole history of requests.
    async fn open_requests(&self, workflow: Option<&str>) -> Result<Vec<PromotionRequest>>;
    /// Records an approver's decision on an open request. [`Error::Conflict`] when the
    /// request is not open or this approver already decided; a rejection closes the
    /// request as rejected in the same write. (Who may approve is the caller's check.)
    async fn decide_request(&self, approval: &Approval) -> Result<()>;
    /// The decisions on a request, in order.
    async fn approvals(&self, request: &str) -> Result<Vec<Approval>>;
    /// Closes an open request as `withdrawn` or `expired` (a request no longer open is a
    /// `Conflict`, an unknown one `NotFound`).
    async fn close_request(&self, id: &str, status: RequestStatus, at: Timestamp) -> Result<()>;
    /// Records a release and makes it current, in one transaction: checks that the
    /// current release is `expected_current` ([`Error::Conflict`] otherwise: another
    /// release won), links it to the previous one, points the environment's deployment
    /// at the version, and closes its request as released.
    async fn release(&self, release: &NewRelease) -> Result<Release>;
    /// One release.
    async fn release_by_id(&self, id: &str) -> Result<Option<Release>>;
    /// The releases of a workflow in an environment, newest first.
    async fn releases(&self, environment: &str, workflow: &str) -> Result<Vec<Release>>;

    // ---- audit ----

    /// Appends an event to the hash chain and returns it with its sequence and hash.
    async fn audit(&self, event: &NewAuditEvent) -> Result<AuditEvent>;
    /// The whole audit log, oldest first.
    async fn audit_log(&self) -> Result<Vec<AuditEvent>>;
    /// One page of the audit log, newest first: every event's, or those of one
    /// environment (by `(environment, seq)`).
    async fn audit_page(&self, environment: Option<&str>, page: Page) -> Result<Vec<AuditEvent>>;
    /// The newest event's sequence number and hash (`None` for an empty log): one row
    /// read by the primary key, whatever the log's length, so that a server can write
    /// its anchor often and a release can carry it.
    async fn audit_head(&self) -> Result<Option<AuditHead>>;

    // ---- API tokens ----

    /// Records a new token, live (not revoked), and returns it as stored.
    ///
    /// [`Error::Conflict`] (and nothing written) when a live token with the same `name`
    /// exists in the same `environment` (the name is the identity approvals and audit
    /// events carry, so two live holders of one name would be indistinguishable), when
    /// the `id` exists (live or revoked), or when the `secret_hash` exists (live or
    /// revoked: a revoked token's secret is never valid again). A revoked token's name
    /// may be reused; the same name in another environment is another identity.
    async fn create_token(&self, token: &NewApiToken) -> Result<ApiToken>;
    /// The live token whose `secret_hash` equals `hash` exactly (no case folding);
    /// `None` for an unknown hash and for a revoked token.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>>;
    /// Every token, revoked ones included (with `revoked_at`), optionally of one
    /// environment; ordered by environment, name, `created_at`, then id.
    async fn tokens(&self, environment: Option<&str>) -> Result<Vec<ApiToken>>;
    /// Revokes a token from `at` on: it is no longer returned by
    /// [`Store::token_by_hash`], and its name is free again. Revoking a revoked token
    /// succeeds and keeps the first `revoked_at`, so a retried call is harmless.
    /// [`Error::NotFound`] for an unknown id.
    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<()>;

    // ---- console sessions ----

    /// Records a console session, and forgets those that ended before it was opened.
    /// [`Error::Conflict`] when the hash exists (a session id is 256 random bits: never).
    async fn create_session(&self, session: &NewConsoleSession) -> Result<()>;
    /// The session whose id hashes to `id_hash`, while it has not expired at `now` and its
    /// token is live; `None` otherwise.
    async fn session_by_hash(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>>;
    /// Ends a session (sign-out); ending an unknown or ended one succeeds.
    async fn end_session(&self, id_hash: &str) -> Result<()>;

    // ---- schedules ----

    /// The last tick at which the schedule of `workflow` in `environment` fired: the
    /// cursor's position, `None` before [`Store::advance_schedule`] first set it.
    async fn schedule_cursor(&self, environment: &str, workflow: &str)
    -> Result<Option<Timestamp>>;
    /// Moves the schedule cursor of `workflow` in `environment` from `expected` to `to`, as
    /// one compare-and-set, so that when several processes share a store exactly one of
    /// them moves it past each tick (the one that decides what to catch up after downtime).
    ///
    /// Returns `true` when this call moved it: the cursor was `expected` (for `None`: it
    /// had never been set, and is created at `to`). Returns `false`, writing nothing, when
    /// the cursor is anywhere else (another process moved it first, or for `Some` it was
    /// never set). [`Error::Conflict`], writing nothing, when `to` is not later than
    /// `Some(expected)`: a cursor only moves forward, whatever a caller's clock says.
    ///
    /// The cursor does not create runs: the run of a tick is enqueued with a
    /// [`NewRun::dedupe_key`] naming the tick, so it is created once even when two
    /// processes both enqueue it.
    async fn advance_schedule(
        &self,
        environment: &str,
        workflow: &str,
        expected: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<bool>;

    // ---- notifications (the outbox) ----

    /// Adds notifications to the outbox, due at once. An id already there (delivered or
    /// not) is left as it is: reporting an event twice delivers it once. Returns how many
    /// were new.
    async fn add_notifications(&self, notifications: &[NewNotification]) -> Result<usize>;
    /// Claims up to `limit` undelivered notifications due at `now` for `holder` until
    /// `now + lease_ms`, oldest first: a notification claimed by a live holder is never
    /// claimed by another (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so two deliverers on one
    /// store do not both send it. A claim whose lease ran out is claimed again.
    async fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Notification>>;
    /// Settles an attempt of a notification `holder` claimed: delivered at `at` (`error`
    /// `None`), or failed and due again at `retry_at`. Returns `false`, writing nothing,
    /// when `holder` no longer holds it (its lease ran out and another claimed it) or it
    /// was delivered already.
    async fn settle_notification(
        &self,
        id: &str,
        holder: &str,
        at: Timestamp,
        error: Option<&str>,
        retry_at: Timestamp,
    ) -> Result<bool>;
    /// Every notification of `environment` (all when `None`), oldest first.
    async fn notifications(&self, environment: Option<&str>) -> Result<Vec<Notification>>;

    // ---- health ----

    /// Proves that the store takes a write now, as a delivery's would be taken: one tiny
    /// write through the same path as every other (SQLite: the writer thread, committed
    /// and synced with its batch; PostgreSQL: a committed transaction), which changes
    /// nothing anyone reads. Fails too when the schema is not the one this build writes
    /// (another process migrated it further), since this process's writes would then be
    /// refused or wrong. What readiness asks before it says a process can accept work:
    /// a full disk or a lost database fails it.
    async fn probe_write(&self) -> Result<()>;

    /// The file this store keeps on this machine, when it is one (the embedded SQLite
    /// store); `None` for a database elsewhere. `check` reports who may read it.
    fn local_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// The one rule for deciding an approval step, applied by every backend inside the
/// decision's write: a run is decided on the step it waits on (its last `waiting`
/// journal entry), never on another, whoever asks.
fn waits_on(run: &str, step: &str, waiting: Option<&str>) -> Result<()> {
    match waiting {
        Some(waiting) if waiting == step => Ok(()),
        Some(waiting) => Err(Error::Conflict(format!(
            "run {run} waits on step `{waiting}`, not `{step}`"
        ))),
        None => Err(Error::Conflict(format!(
            "run {run} waits on no approval step"
        ))),
    }
}
