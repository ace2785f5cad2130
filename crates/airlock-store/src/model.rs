//! What the store keeps.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch. The store never reads a clock: callers pass `now`.
pub type Timestamp = i64;

/// A workflow version: the canonical form and the source it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersion {
    /// The version id (the canonical form's SHA-256).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The canonical JSON.
    pub canonical: String,
    /// The YAML it was decoded from, so the exact version can be run again.
    pub source: String,
    /// When it was first stored.
    pub created_at: Timestamp,
}

/// Which version an environment runs for a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The version id.
    pub version: String,
    /// Who made the change.
    pub actor: String,
    /// When.
    pub updated_at: Timestamp,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a worker (or for its wake time).
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Waiting for a person (an approval step), until decided or timed out.
    Waiting,
    /// Finished; every step succeeded or was handled.
    Succeeded,
    /// Finished unsuccessfully: a `fail` step, a rejection, an error that is not retried.
    Failed,
    /// A step kept failing past its attempts: dead-lettered until retried by hand.
    Dead,
}

impl RunStatus {
    /// The status as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Dead => "dead",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "dead" => RunStatus::Dead,
            _ => return None,
        })
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Dead
        )
    }
}

/// A run to accept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// Its id (time-ordered, unique).
    pub id: String,
    /// The environment it runs in.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The exact version it runs, to the end, whatever is deployed meanwhile.
    pub version: String,
    /// The trigger payload (`body`, `headers`, `query`, or a schedule tick).
    pub trigger: Value,
    /// A delivery's idempotency key: a second run with the same key in the same
    /// environment is not created.
    pub dedupe_key: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
}

impl NewRun {
    /// The run as stored when it is accepted already claimed by `owner` until
    /// `lease_until` (see [`crate::Store::enqueue_claimed`]): running, first claim, token 1.
    pub fn into_claimed(self, owner: String, lease_until: Timestamp) -> Run {
        Run {
            id: self.id,
            environment: self.environment,
            workflow: self.workflow,
            version: self.version,
            status: RunStatus::Running,
            trigger: self.trigger,
            dedupe_key: self.dedupe_key,
            output: None,
            error: None,
            created_at: self.created_at,
            started_at: Some(self.created_at),
            finished_at: None,
            wake_at: None,
            lease_owner: Some(owner),
            lease_expires_at: Some(lease_until),
            fencing_token: 1,
            claims: 1,
        }
    }
}

/// The outcome of [`crate::Store::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The run's id (the first run's, for a duplicate delivery).
    pub run: String,
    /// False when the dedupe key had been accepted before.
    pub created: bool,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The version it runs.
    pub version: String,
    /// Where it is.
    pub status: RunStatus,
    /// The trigger payload.
    pub trigger: Value,
    /// The delivery's idempotency key.
    pub dedupe_key: Option<String>,
    /// The output, once succeeded.
    pub output: Option<Value>,
    /// The error, once failed or dead.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When a worker first claimed it.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// When a queued or waiting run becomes due (a delay, a backoff, an approval's deadline).
    pub wake_at: Option<Timestamp>,
    /// The worker holding it, while running.
    pub lease_owner: Option<String>,
    /// When that lease expires.
    pub lease_expires_at: Option<Timestamp>,
    /// Rises with each claim.
    pub fencing_token: i64,
    /// How many times it was claimed.
    pub claims: i64,
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

/// What happened to a step, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// A side-effecting attempt is about to reach its target (written before the call).
    Started,
    /// The step (or this attempt) succeeded; its output is final.
    Succeeded,
    /// This attempt failed.
    Failed,
    /// The process stopped after the attempt may have reached its target; it will be
    /// retried with the same idempotency key.
    OutcomeUnknown,
    /// The step waits (an approval, a delay, a retry backoff).
    Waiting,
    /// A person put the run back in the queue after this step failed for good; the
    /// step's attempts start again after this entry.
    Retried,
}

impl StepStatus {
    /// The status as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::OutcomeUnknown => "outcome_unknown",
            StepStatus::Waiting => "waiting",
            StepStatus::Retried => "retried",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "started" => StepStatus::Started,
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "outcome_unknown" => StepStatus::OutcomeUnknown,
            "waiting" => StepStatus::Waiting,
            "retried" => StepStatus::Retried,
            _ => return None,
        })
    }
}

/// A journal entry to write. The store assigns its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJournalEntry {
    /// The step.
    pub step: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// What happened.
    pub status: StepStatus,
    /// The rendered inputs, secrets redacted.
    pub input: Option<Value>,
    /// The output (or the branch taken, for `if`/`switch`).
    pub output: Option<Value>,
    /// The error, for a failed attempt.
    pub error: Option<String>,
    /// The idempotency key the attempt carried.
    pub idempotency_key: Option<String>,
    /// When the attempt started.
    pub started_at: Timestamp,
    /// When it ended (absent for `started` and `waiting`).
    pub finished_at: Option<Timestamp>,
}

/// A journal entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The run.
    pub run: String,
    /// Its position in the run's journal, from 1.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: NewJournalEntry,
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

/// One atomic write for a claimed run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Journal entries to append, in order.
    pub entries: Vec<NewJournalEntry>,
    /// Extend the lease to this time.
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

/// A person's decision on an approval step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDecision {
    /// The run.
    pub run: String,
    /// The approval step.
    pub step: String,
    /// Who decided (checked against the environment's approvers by the caller).
    pub approver: String,
    /// Yes or no.
    pub approved: bool,
    /// When.
    pub decided_at: Timestamp,
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

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// When.
    pub at: Timestamp,
    /// Who (a person, a token name, or `airlock` for the engine).
    pub actor: String,
    /// What (`deploy`, `secret.set`, `approve-step`, `refused`, …).
    pub action: String,
    /// The environment it concerns, if any.
    pub environment: Option<String>,
    /// The thing acted on (a workflow, a secret name, a run).
    pub subject: String,
    /// Details (never secret values).
    pub detail: Value,
}

/// An audit event in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// The previous event's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the event's canonical JSON.
    pub hash: String,
}

impl AuditEvent {
    /// The hash an event must carry given the previous hash.
    pub fn compute_hash(prev_hash: &str, event: &NewAuditEvent) -> String {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_string(event).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(body.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks a whole chain; returns the sequence number of the first event that does not fit.
pub fn verify_audit_chain(events: &[AuditEvent]) -> Result<(), i64> {
    let mut prev = GENESIS_HASH.to_owned();
    for event in events {
        if event.prev_hash != prev || event.hash != AuditEvent::compute_hash(&prev, &event.event) {
            return Err(event.seq);
        }
        prev = event.hash.clone();
    }
    Ok(())
}

/// A fact about one workflow version: a scenario-suite result, a replay comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvidence {
    /// The workflow.
    pub workflow: String,
    /// The exact version the fact is about.
    pub version: String,
    /// What kind of fact (`scenarios`).
    pub kind: String,
    /// Whether it counts in the version's favour.
    pub passed: bool,
    /// The details: counts, coverage, uncovered items.
    pub summary: Value,
    /// When.
    pub at: Timestamp,
}

/// Evidence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Its sequence number.
    pub id: i64,
    /// The fact.
    #[serde(flatten)]
    pub evidence: NewEvidence,
}

/// Where a promotion request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for its requirements (approvals) to hold.
    Open,
    /// It became a release.
    Released,
    /// An approver rejected it.
    Rejected,
}

impl RequestStatus {
    /// The status as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Released => "released",
            RequestStatus::Rejected => "rejected",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => RequestStatus::Open,
            "released" => RequestStatus::Released,
            "rejected" => RequestStatus::Rejected,
            _ => return None,
        })
    }
}

/// "Run version H of workflow W in environment T", asked by someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPromotionRequest {
    /// Its id (`req_…`).
    pub id: String,
    /// The workflow.
    pub workflow: String,
    /// The exact version the source environment runs.
    pub version: String,
    /// The source environment.
    pub from_environment: String,
    /// The target environment.
    pub to_environment: String,
    /// Who asked.
    pub author: String,
    /// When.
    pub created_at: Timestamp,
}

/// A promotion request as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// The request.
    #[serde(flatten)]
    pub request: NewPromotionRequest,
    /// Where it stands.
    pub status: RequestStatus,
    /// When it was released or rejected.
    pub closed_at: Option<Timestamp>,
}

/// A named person's decision on a promotion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The request.
    pub request: String,
    /// Who.
    pub approver: String,
    /// Yes or no.
    pub approved: bool,
    /// Why (required for a rejection by the CLI).
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// What made a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    /// An accepted promotion request.
    Promotion,
    /// A return to an earlier release's version.
    Rollback,
}

impl ReleaseKind {
    /// The kind as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Promotion => "promotion",
            ReleaseKind::Rollback => "rollback",
        }
    }
}

/// A release to record: the environment runs `version` of `workflow` from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelease {
    /// Its id (`rel_…`).
    pub id: String,
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The version released.
    pub version: String,
    /// Promotion or rollback.
    pub kind: ReleaseKind,
    /// The promotion request it came from, if any (closed as released in the same write).
    pub request: Option<String>,
    /// Who asked for it.
    pub author: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// The evidence and the policy's verdict at the time.
    pub evidence: Value,
    /// The release the caller believes is current (None: none yet). If another release
    /// happened meanwhile, the write is refused with [`crate::Error::Conflict`].
    pub expected_current: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A release as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The release.
    #[serde(flatten)]
    pub release: NewRelease,
    /// The release that was current before it (what a rollback returns to).
    pub previous: Option<String>,
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
