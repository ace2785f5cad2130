//! A run and its journal: one execution of one workflow version in one environment, from
//! one trigger, and the entries that record each step's attempts.
//!
//! These are the facts the pure interpreter reads and the store persists. Times are
//! [`Timestamp`]s chosen by the caller: nothing here reads a clock.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Milliseconds since the Unix epoch. The store never reads a clock: callers pass `now`.
pub type Timestamp = i64;

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
    /// The trigger payload (`body`, `headers`, `query`, or a schedule tick), shared: it
    /// goes from the request into the run and every decision without being copied.
    pub trigger: Arc<Value>,
    /// A delivery's idempotency key: a second run with the same key in the same
    /// environment is not created.
    pub dedupe_key: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
}

impl NewRun {
    /// The run as stored when it is accepted already claimed by `owner` until
    /// `lease_until` (see the store's `enqueue_claimed`): running, first claim, token 1.
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
    /// The trigger payload, shared by every decision about the run.
    pub trigger: Arc<Value>,
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
