//! What the store keeps beyond the core's model: the queue's claims and commits, listings
//! and counts, sealed secrets, test records and API tokens.
//!
//! The run, journal, evidence, request, release and audit types are the core's
//! (`airlock_core::{run, release, audit}`); the store persists them.

use airlock_core::run::{NewJournalEntry, Run, RunStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The outcome of [`crate::Store::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The run's id (the first run's, for a duplicate delivery).
    pub run: String,
    /// False when the dedupe key had been accepted before.
    pub created: bool,
}

/// A run claimed by a worker, and the fencing token every write must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The run as stored after the claim (status `running`; `claims` counts this claim,
    /// so a run with `claims == 1` has never been worked on: its journal is empty, or holds
    /// only what its acceptor wrote with it through `enqueue_claimed` and still has in hand
    /// — the engine relies on it).
    pub run: Run,
    /// The token of this claim.
    pub token: i64,
}

/// How a claimed run is left after a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Settlement {
    /// Finished for good.
    Finish {
        /// `succeeded`, `failed` or `dead`.
        status: RunStatus,
        /// The run's output.
        output: Option<Value>,
        /// The run's error.
        error: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// Released until `wake_at` (a delay or a retry backoff): status `queued`.
    Sleep {
        /// When it is due again.
        wake_at: Timestamp,
    },
    /// Released to wait for a person: status `waiting`, due again at the deadline if any.
    Wait {
        /// The approval's deadline.
        deadline: Option<Timestamp>,
    },
}

/// A running run's lease as someone who may take the run over sees it ([`Store::leases`]).
///
/// Whether its holder is alive is not a question of the wall clock: the holder renews the
/// lease (the engine does before each call, and by heartbeat every third of the lease while
/// a call is in flight), and each renewal changes `expires_at`. A watcher that sees the same
/// `(token, expires_at)` for `promised_ms` by its own monotonic clock knows the holder has
/// not been heard of for as long as it promised, and may take the run over
/// ([`Store::take_over`]), whatever the wall clock did meanwhile: set an hour forward, a
/// live lease would look expired; an hour back, a dead one would look live for an hour.
///
/// [`Store::leases`]: crate::Store::leases
/// [`Store::take_over`]: crate::Store::take_over
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run: String,
    /// Its holder (a worker's name).
    pub owner: Option<String>,
    /// The holder's fencing token.
    pub token: i64,
    /// The lease's end by the holder's wall clock at its last renewal: the mark each
    /// renewal changes.
    pub expires_at: Timestamp,
    /// How long the holder said it may go without renewing (its lease length); `None` for
    /// a lease taken by an Airlock that did not record it.
    pub promised_ms: Option<i64>,
}

/// One atomic write for a claimed run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Journal entries to append, in order.
    pub entries: Vec<NewJournalEntry>,
    /// Extend the lease to this time. The stored end always changes (a renewal that would
    /// write the end already stored writes one millisecond later), so that whoever watches
    /// the lease sees every renewal.
    pub lease_until: Option<Timestamp>,
    /// Release the run.
    pub settle: Option<Settlement>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// At most this many (newest first); all when absent.
    pub limit: Option<usize>,
    /// Only runs listed after this one, newest first (`(created_at, id)` below the
    /// cursor's): the next page, read from the index where the last page ended, so a page
    /// deep in history costs what the first does (no OFFSET).
    #[serde(default)]
    pub before: Option<RunCursor>,
}

/// Where a page of runs ended: the last run's acceptance time and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    /// The last run's `created_at`.
    pub created_at: Timestamp,
    /// The last run's id (ids of one millisecond are ordered too).
    pub id: String,
}

/// One page of a log read newest first by its index: at most `limit` entries numbered
/// below `before` (all of them without it). The next page starts where this one ended, so
/// a page deep in the log costs what the first does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Only entries numbered below this (a record's id, an audit event's sequence).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Which finished runs to count in [`crate::Store::run_outcomes`]: one workflow in one
/// environment, accepted in `[from, until)`, of one version when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutcomeQuery {
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// Only runs of this version.
    pub version: Option<String>,
    /// Only runs accepted at or after this time.
    pub from: Option<Timestamp>,
    /// Only runs accepted before this time.
    pub until: Option<Timestamp>,
}

/// How the runs an [`OutcomeQuery`] names ended: those still queued, running or waiting
/// are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Finished runs: succeeded, failed or dead.
    pub finished: u64,
    /// Of those, the ones that did not succeed.
    pub failed: u64,
}

/// A secret value sealed under its environment's key. The store never sees plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// The environment that owns it.
    pub environment: String,
    /// Its name.
    pub name: String,
    /// Nonce and ciphertext.
    pub sealed: Vec<u8>,
    /// A keyed fingerprint of the value (for shared-credential detection), never the value.
    pub fingerprint: Option<String>,
    /// When it was set.
    pub updated_at: Timestamp,
}

/// A secret's name and where it lives, without its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretName {
    /// The environment.
    pub environment: String,
    /// The name.
    pub name: String,
    /// When it was set.
    pub updated_at: Timestamp,
}

/// One call received by a record-mode binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTestRecord {
    /// The environment.
    pub environment: String,
    /// The run that made the call.
    pub run: String,
    /// The step.
    pub step: String,
    /// The connector.
    pub connector: String,
    /// The action.
    pub action: String,
    /// The rendered arguments.
    pub arguments: Value,
    /// The call's idempotency key.
    pub idempotency_key: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A test record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// Its sequence number.
    pub id: i64,
    /// The record.
    #[serde(flatten)]
    pub record: NewTestRecord,
}

/// An API token to record. The store never sees the token itself, only its hash: a
/// token is a bearer credential, and a copy of the database must not be one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApiToken {
    /// Its id (`tok_…`), chosen by the caller; how it is revoked.
    pub id: String,
    /// The identity the token acts as: audit events, approvals and promotion requests
    /// made with it carry this name. Unique among the live tokens of one environment.
    pub name: String,
    /// The one environment the token is valid in.
    pub environment: String,
    /// Its role (`viewer`, `runner`, `deployer`, `approver`, `admin`), stored as written;
    /// the store does not interpret it (`airlock_core::authz::Role` parses it).
    pub role: String,
    /// [`ApiToken::hash_secret`] of the token: lowercase hex SHA-256. Kept in `Debug` and
    /// serialized forms on purpose: it is a one-way hash of a random token, so it cannot be
    /// presented as a credential (the server hashes what it is given); an API answer has
    /// no reason to show it all the same.
    pub secret_hash: String,
    /// Who created it (a person or another token's name).
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// A console session to record: a signed-in browser, acting as one API token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewConsoleSession {
    /// SHA-256 (hex) of the session's id, which only the browser's cookie holds: a copy of
    /// the database signs no one in.
    pub id_hash: String,
    /// The token the session was opened with; revoking it ends the session.
    pub token_id: String,
    /// The session's CSRF token, written into every form and checked on every POST.
    pub csrf: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it ends, whatever happens.
    pub expires_at: Timestamp,
}

/// A live console session and the live token it acts as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleSession {
    /// The session.
    pub session: NewConsoleSession,
    /// Its token, live.
    pub token: ApiToken,
}

/// An API token as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The token.
    #[serde(flatten)]
    pub token: NewApiToken,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    /// The hash under which a token is stored and looked up: SHA-256 of its UTF-8 bytes,
    /// lowercase hex. Plain SHA-256 (no salt, no slow hash) is enough because tokens are
    /// long random strings, not passwords, and it must be deterministic to be looked up.
    pub fn hash_secret(token: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

/// One file of a [`StoredBundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative to the project, `/`-separated.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// A project bundle as deployed: the files a deploy carried (checked and hashed by
/// `airlock_core::bundle`), kept so that a server with no checkout of the project serves
/// what was deployed last, after a restart too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBundle {
    /// The bundle's content id (`Bundle::id`).
    pub id: String,
    /// The environment it was deployed to.
    pub environment: String,
    /// Every file, sorted by path.
    pub files: Vec<BundleFile>,
    /// Who deployed it.
    pub deployed_by: String,
    /// When.
    pub deployed_at: Timestamp,
}

/// A notification to deliver: one event's message to one target (an outbox row). Written
/// once per id, whoever reports the event again; delivered once per id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    /// The event's id and the target (`EVENT_ID/TARGET`): the delivery's identity.
    pub id: String,
    /// The event's kind (`promotion.requested`, …).
    pub event: String,
    /// The environment whose binding carries it.
    pub environment: String,
    /// The connector of that environment that carries it.
    pub target: String,
    /// The connector's action (`post`, `send`, `request`).
    pub action: String,
    /// The action's arguments: the message, already built (never a secret).
    pub args: Value,
    /// When the event happened.
    pub created_at: Timestamp,
}

/// A notification as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// What to deliver.
    #[serde(flatten)]
    pub notification: NewNotification,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When it may next be attempted.
    pub due_at: Timestamp,
    /// Why the last attempt failed (never a secret: the deliverer redacts it).
    pub last_error: Option<String>,
    /// When it was delivered; `None` while it waits.
    pub delivered_at: Option<Timestamp>,
}
