//! A deterministic simulation of the executor: from a seed, many runs of four workflows
//! go through the real interpreter and the real [`Engine`] over a real SQLite store, with
//! a simulated clock, seeded randomness and faults injected from the same seed: a process
//! crash at each point of a step, connections refused, calls timing out, a worker paused
//! past its lease while another takes its run over, and webhook deliveries repeated. At
//! the end of each seed the store and the target's log are checked against the promises
//! the engine makes (see [`check`]).
//!
//! `AIRLOCK_SIM_SEED=S` replays seed S exactly; `AIRLOCK_SIM_SEEDS=N` runs seeds 1..=N
//! (CI runs the default); `AIRLOCK_SIM_TRACE=1` prints each seed's events. A failure
//! prints the seed and the command that replays it.
//!
//! Runs are processed one at a time (concurrency 1, a current-thread runtime, every call
//! awaited in turn), so that a seed decides every interleaving: nothing here depends on
//! real time or on thread timing. It follows that heartbeats are not exercised here (a
//! call answers, or never does, without the executor yielding to its heartbeat task);
//! `tests/engine.rs` keeps a run by heartbeat against a slow target in real time.

use airlock_connectors::secrets::Redactor;
use airlock_connectors::{CallError, CallRequest, CheckContext, CheckOutcome, Connector};
use airlock_core::interpreter::EXTRA_ATTEMPTS_AFTER_UNKNOWN;
use airlock_core::model::{StepKind, Workflow};
use airlock_engine::{
    Clock, Engine, EngineOptions, Randomness, Runtime, SeededRandomness, SimulatedClock,
};
use airlock_store::sqlite::{Durability, SqliteOptions, SqliteStore};
use airlock_store::{
    ApiToken, Approval, AuditEvent, Claim, Commit, Deployment, Enqueued, Error as StoreError,
    Evidence, JournalEntry, Lease, NewApiToken, NewAuditEvent, NewEvidence, NewJournalEntry,
    NewPromotionRequest, NewRelease, NewRun, NewTestRecord, OutcomeQuery, Outcomes,
    PromotionRequest, Release, Run, RunFilter, RunStatus, SealedSecret, SecretName, StepDecision,
    StepStatus, Store, TestRecord, Timestamp, WorkflowVersion,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Seeds CI runs when `AIRLOCK_SIM_SEEDS` is not set. Measured on the 2-core machine CI
/// runs on: 200 seeds take 8 s quiet and 21 s with both cores busy building, so 300 stay
/// within CI's 20–30 s for this test.
const DEFAULT_SEEDS: u64 = 300;
/// The lease every simulated worker takes.
const LEASE_MS: i64 = 30_000;
/// Driver steps one seed may take, delivering and draining included. Every run ends well
/// within it when the engine keeps its promises; a seed that does not is a loop.
const MAX_DRIVER_STEPS: usize = 4_000;
/// Process faults (crashes and pauses) one run may suffer. A crash before a call's intent
/// is written costs the run no attempt, so an unbounded number of them would never end.
const MAX_PROCESS_FAULTS_PER_RUN: u32 = 3;
/// A seed that takes longer than this in real time is hung: the simulation stops there.
const HUNG_AFTER: Duration = Duration::from_secs(120);
const ENVIRONMENT: &str = "staging";
/// The simulated clock starts here (2027-01-15).
const EPOCH: Timestamp = 1_800_000_000_000;

/// One call with retries; the webhook path's workflow (deliveries carry a dedupe key).
const PUSH_ORDER: &str = r#"name: push-order
trigger:
  webhook:
    path: orders
    idempotency_key: "order-{{ trigger.body.id }}"
steps:
  - id: push
    call: crm.request
    with: { method: POST, path: /orders, json: { id: "{{ trigger.body.id }}" } }
    retry: { attempts: 4, backoff: 1s, max_backoff: 8s, on: [timeout, connection, status_5xx] }
    timeout: 10s
"#;

/// A map, a branch, and two calls (one of them inside the branch).
const TRIAGE: &str = r#"name: triage
trigger: manual
steps:
  - id: normalize
    map:
      total: "{{ trigger.body.amount | float }}"
      customer: "{{ trigger.body.customer | trim | lower }}"
  - id: big
    if: "{{ steps.normalize.output.total > 100 }}"
    then:
      - id: alert
        call: chat.post
        with: { text: "big order from {{ steps.normalize.output.customer }}" }
        retry: { attempts: 2, backoff: 500ms }
  - id: record
    call: crm.request
    with: { method: POST, path: /orders, json: { total: "{{ steps.normalize.output.total }}" } }
    idempotency_key: "record-{{ trigger.body.id }}"
    retry: { attempts: 3, backoff: 2s }
    timeout: 5s
"#;

/// A person decides (the driver), then a payment is made.
const REFUND: &str = r#"name: refund
trigger: manual
steps:
  - id: approve
    approval:
      message: "Refund {{ trigger.body.amount }} to {{ trigger.body.customer }}?"
  - id: pay
    call: payments.request
    with: { method: POST, path: /refunds, json: { amount: "{{ trigger.body.amount }}" } }
    retry: { attempts: 3, backoff: 1s }
"#;

/// A target that never works: every run must be dead-lettered, not retried forever.
const FLAKY_SYNC: &str = r#"name: flaky-sync
trigger: manual
steps:
  - id: sync
    call: legacy.request
    with: { method: POST, path: /sync }
    retry: { attempts: 3, backoff: 1s, max_backoff: 4s }
    timeout: 3s
on_failure:
  - id: tell_ops
    call: chat.post
    with: { text: "sync failed: {{ error.message }}" }
"#;

const WORKFLOWS: [&str; 4] = [PUSH_ORDER, TRIAGE, REFUND, FLAKY_SYNC];
/// The connector whose target answers 503 to everything.
const BROKEN_CONNECTOR: &str = "legacy";

// ---------------------------------------------------------------- the world

/// The seed's dice: every fault and every choice of the driver is drawn from it, in the
/// one order a sequential simulation makes them in.
struct Dice(SeededRandomness);

impl Dice {
    fn below(&self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.next_u64() % n }
    }

    fn chance(&self, p: f64) -> bool {
        self.0.unit() < p
    }
}

/// How often each fault is drawn at each opportunity, at intensity 1.
const CRASH_BEFORE_INTENT: f64 = 0.04;
const CRASH_BEFORE_CALL: f64 = 0.04;
const CRASH_AFTER_TARGET: f64 = 0.04;
const CRASH_AFTER_RESULT: f64 = 0.04;
const PAUSE: f64 = 0.03;
const CONNECTION_REFUSED: f64 = 0.07;
const CALL_TIMEOUT: f64 = 0.05;

/// The faults injected, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Faults {
    crash_before_intent: u64,
    crash_before_call: u64,
    crash_after_target: u64,
    crash_after_result: u64,
    connection: u64,
    timeout: u64,
    /// Runs claimed by another worker while the last claimer still held them.
    takeover: u64,
    /// Of those, the ones whose last claimer was paused (alive, and let go on after)
    /// rather than dead.
    paused: u64,
    duplicate: u64,
}

impl Faults {
    fn crashes(&self) -> u64 {
        self.crash_before_intent
            + self.crash_before_call
            + self.crash_after_target
            + self.crash_after_result
    }

    fn total(&self) -> u64 {
        self.crashes() + self.connection + self.timeout + self.takeover + self.duplicate
    }

    fn add(&mut self, other: &Faults) {
        self.crash_before_intent += other.crash_before_intent;
        self.crash_before_call += other.crash_before_call;
        self.crash_after_target += other.crash_after_target;
        self.crash_after_result += other.crash_after_result;
        self.connection += other.connection;
        self.timeout += other.timeout;
        self.takeover += other.takeover;
        self.paused += other.paused;
        self.duplicate += other.duplicate;
    }
}

/// What happened, in order, across every process: each journal write that reached the
/// store, and each call that reached the target.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Journaled {
        run: String,
        worker: String,
        step: String,
        attempt: u32,
        status: StepStatus,
        key: Option<String>,
    },
    Called {
        run: String,
        step: String,
        connector: String,
        key: String,
    },
}

/// A worker paused in the middle of a write, waiting for the driver to let it go on.
struct Pause {
    run: String,
    worker: String,
    gate: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    faults: Faults,
    process_faults: BTreeMap<String, u32>,
    /// The worker whose claim on a run is the latest, while the run is claimed.
    holders: BTreeMap<String, String>,
    pause: Option<Pause>,
    /// Workers that were paused once (and so are alive when their runs are taken over).
    paused_workers: BTreeSet<String>,
    calls: u64,
}

struct World {
    clock: SimulatedClock,
    dice: Dice,
    /// This seed's fault rate, as a multiple of the base rates.
    intensity: f64,
    log: Mutex<Log>,
    paused: tokio::sync::Notify,
}

/// A crash at a write, or a pause before it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WriteFault {
    CrashBefore,
    CrashAfter,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CallFault {
    Refused,
    /// No answer in time; `acted` says whether the target had received the call.
    Timeout {
        acted: bool,
    },
    CrashAfterTarget,
}

impl World {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn draw(&self, p: f64) -> bool {
        self.dice.chance(p * self.intensity)
    }

    /// Whether `run` may suffer one more process fault; counts it if so.
    fn process_fault_allowed(&self, run: &str) -> bool {
        let mut log = self.log();
        let count = log.process_faults.entry(run.to_owned()).or_default();
        if *count >= MAX_PROCESS_FAULTS_PER_RUN {
            return false;
        }
        *count += 1;
        true
    }

    /// A fault at a write holding a call's intent (`started`), or its result.
    fn write_fault(&self, run: &str, process: &Process, intent: bool) -> Option<WriteFault> {
        let fault = if intent && self.draw(CRASH_BEFORE_INTENT) {
            WriteFault::CrashBefore
        } else if self.draw(if intent {
            CRASH_BEFORE_CALL
        } else {
            CRASH_AFTER_RESULT
        }) {
            WriteFault::CrashAfter
        } else if process.may_pause.load(Ordering::SeqCst)
            && self.log().pause.is_none()
            && self.draw(PAUSE)
        {
            WriteFault::Pause
        } else {
            return None;
        };
        if !self.process_fault_allowed(run) {
            return None;
        }
        let mut log = self.log();
        match (fault, intent) {
            (WriteFault::CrashBefore, _) => log.faults.crash_before_intent += 1,
            (WriteFault::CrashAfter, true) => log.faults.crash_before_call += 1,
            (WriteFault::CrashAfter, false) => log.faults.crash_after_result += 1,
            (WriteFault::Pause, _) => {}
        }
        Some(fault)
    }

    fn call_fault(&self, run: &str) -> Option<CallFault> {
        if self.draw(CONNECTION_REFUSED) {
            self.log().faults.connection += 1;
            Some(CallFault::Refused)
        } else if self.draw(CALL_TIMEOUT) {
            let acted = self.dice.chance(0.5);
            self.log().faults.timeout += 1;
            Some(CallFault::Timeout { acted })
        } else if self.draw(CRASH_AFTER_TARGET) && self.process_fault_allowed(run) {
            self.log().faults.crash_after_target += 1;
            Some(CallFault::CrashAfterTarget)
        } else {
            None
        }
    }

    /// The target receives a call: logged, and answered (503 from the broken one).
    fn receive(&self, connector: &str, request: &CallRequest) -> Result<Value, CallError> {
        let mut log = self.log();
        log.calls += 1;
        let n = log.calls;
        log.events.push(Event::Called {
            run: request.run.clone(),
            step: request.step.clone(),
            connector: connector.to_owned(),
            key: request.idempotency_key.clone(),
        });
        if connector == BROKEN_CONNECTOR {
            return Err(CallError::Status {
                status: 503,
                body: json!({ "error": "unavailable" }),
            });
        }
        Ok(json!({ "id": format!("{connector}-{n}"), "key": request.idempotency_key }))
    }

    fn journaled(&self, run: &str, worker: &str, entries: &[NewJournalEntry], settled: bool) {
        let mut log = self.log();
        for entry in entries {
            log.events.push(Event::Journaled {
                run: run.to_owned(),
                worker: worker.to_owned(),
                step: entry.step.clone(),
                attempt: entry.attempt,
                status: entry.status,
                key: entry.idempotency_key.clone(),
            });
        }
        if settled {
            log.holders.remove(run);
        }
    }

    /// The worker paused mid-write, if one is; remembered as paused from then on.
    fn take_pause(&self) -> Option<Pause> {
        let mut log = self.log();
        let pause = log.pause.take()?;
        log.paused_workers.insert(pause.worker.clone());
        Some(pause)
    }

    fn claimed(&self, run: &str, worker: &str) {
        let mut log = self.log();
        if let Some(previous) = log.holders.insert(run.to_owned(), worker.to_owned())
            && previous != worker
        {
            log.faults.takeover += 1;
            if log.paused_workers.contains(&previous) {
                log.faults.paused += 1;
            }
        }
    }
}

/// One simulated process: a worker name, and whether it has crashed.
struct Process {
    worker: String,
    dead: AtomicBool,
    /// Whether it may be paused mid-write (not while another worker is taking over).
    may_pause: AtomicBool,
}

impl Process {
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn crash(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }
}

fn crashed() -> StoreError {
    StoreError::Backend("the process crashed (simulated)".into())
}

// ---------------------------------------------------------------- the store, with faults

/// The real store, as one process sees it: nothing once the process is dead, and the
/// seed's faults at the writes that hold a call's intent or result.
struct FaultStore {
    inner: Arc<SqliteStore>,
    process: Arc<Process>,
    world: Arc<World>,
}

/// A call's result: what the executor journals after the target answered.
fn is_call_result(entry: &NewJournalEntry) -> bool {
    matches!(entry.status, StepStatus::Succeeded | StepStatus::Failed)
        && entry.idempotency_key.is_some()
}

impl FaultStore {
    fn alive(&self) -> airlock_store::Result<()> {
        if self.process.is_dead() {
            Err(crashed())
        } else {
            Ok(())
        }
    }

    /// Waits, mid-write, until the driver has let another worker take the run over.
    async fn pause(&self, run: &str) {
        let (gate, opened) = tokio::sync::oneshot::channel();
        self.world.log().pause = Some(Pause {
            run: run.to_owned(),
            worker: self.process.worker.clone(),
            gate,
        });
        self.world.paused.notify_one();
        let _ = opened.await;
    }
}

#[async_trait]
impl Store for FaultStore {
    async fn put_version(&self, version: &WorkflowVersion) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.put_version(version).await
    }
    async fn version(&self, id: &str) -> airlock_store::Result<Option<WorkflowVersion>> {
        self.alive()?;
        self.inner.version(id).await
    }
    async fn set_deployment(
        &self,
        deployment: &Deployment,
    ) -> airlock_store::Result<Option<String>> {
        self.alive()?;
        self.inner.set_deployment(deployment).await
    }
    async fn deployment(
        &self,
        environment: &str,
        workflow: &str,
    ) -> airlock_store::Result<Option<Deployment>> {
        self.alive()?;
        self.inner.deployment(environment, workflow).await
    }
    async fn deployments(
        &self,
        environment: Option<&str>,
    ) -> airlock_store::Result<Vec<Deployment>> {
        self.alive()?;
        self.inner.deployments(environment).await
    }
    async fn enqueue(&self, run: &NewRun) -> airlock_store::Result<Enqueued> {
        self.alive()?;
        self.inner.enqueue(run).await
    }
    async fn enqueue_claimed(
        &self,
        run: &NewRun,
        worker: &str,
        lease_ms: i64,
        journal: &[NewJournalEntry],
    ) -> airlock_store::Result<(Enqueued, Option<Claim>)> {
        self.alive()?;
        let intent = journal.iter().any(|e| e.status == StepStatus::Started);
        let fault = if intent {
            self.world.write_fault(&run.id, &self.process, true)
        } else {
            None
        };
        if fault == Some(WriteFault::CrashBefore) {
            self.process.crash();
            return Err(crashed());
        }
        let answer = self
            .inner
            .enqueue_claimed(run, worker, lease_ms, journal)
            .await?;
        if let Some(claim) = &answer.1 {
            self.world.claimed(&claim.run.id, worker);
            self.world
                .journaled(&claim.run.id, &self.process.worker, journal, false);
        }
        if fault == Some(WriteFault::CrashAfter) {
            self.process.crash();
            return Err(crashed());
        }
        Ok(answer)
    }
    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> airlock_store::Result<Vec<Claim>> {
        self.alive()?;
        let claims = self.inner.claim(worker, now, lease_ms, limit).await?;
        for claim in &claims {
            self.world.claimed(&claim.run.id, worker);
        }
        Ok(claims)
    }
    async fn claim_run(
        &self,
        run: &str,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> airlock_store::Result<Option<Claim>> {
        self.alive()?;
        let claim = self.inner.claim_run(run, worker, now, lease_ms).await?;
        if let Some(claim) = &claim {
            self.world.claimed(&claim.run.id, worker);
        }
        Ok(claim)
    }
    async fn leases(&self) -> airlock_store::Result<Vec<Lease>> {
        self.alive()?;
        self.inner.leases().await
    }
    async fn take_over(
        &self,
        lease: &Lease,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> airlock_store::Result<Option<Claim>> {
        self.alive()?;
        let claim = self.inner.take_over(lease, worker, now, lease_ms).await?;
        if let Some(claim) = &claim {
            self.world.claimed(&claim.run.id, worker);
        }
        Ok(claim)
    }
    async fn commit(&self, run: &str, token: i64, commit: Commit) -> airlock_store::Result<()> {
        self.alive()?;
        let intent = commit
            .entries
            .iter()
            .any(|e| e.status == StepStatus::Started);
        let fault = if intent || commit.entries.iter().any(is_call_result) {
            self.world.write_fault(run, &self.process, intent)
        } else {
            None
        };
        match fault {
            Some(WriteFault::CrashBefore) => {
                self.process.crash();
                return Err(crashed());
            }
            Some(WriteFault::Pause) => self.pause(run).await,
            _ => {}
        }
        let entries = commit.entries.clone();
        let settled = commit.settle.is_some();
        self.inner.commit(run, token, commit).await?;
        self.world
            .journaled(run, &self.process.worker, &entries, settled);
        if fault == Some(WriteFault::CrashAfter) {
            self.process.crash();
            return Err(crashed());
        }
        Ok(())
    }
    async fn wait_for_work(&self, max: Duration) {
        self.inner.wait_for_work(max).await;
    }
    async fn run(&self, id: &str) -> airlock_store::Result<Option<Run>> {
        self.alive()?;
        self.inner.run(id).await
    }
    async fn runs(&self, filter: &RunFilter) -> airlock_store::Result<Vec<Run>> {
        self.alive()?;
        self.inner.runs(filter).await
    }
    async fn count_runs(&self, filter: &RunFilter) -> airlock_store::Result<u64> {
        self.alive()?;
        self.inner.count_runs(filter).await
    }
    async fn run_outcomes(&self, query: &OutcomeQuery) -> airlock_store::Result<Outcomes> {
        self.alive()?;
        self.inner.run_outcomes(query).await
    }
    async fn journal(&self, run: &str) -> airlock_store::Result<Vec<JournalEntry>> {
        self.alive()?;
        self.inner.journal(run).await
    }
    async fn prune_runs(
        &self,
        before: Timestamp,
        environment: Option<&str>,
        limit: usize,
    ) -> airlock_store::Result<u64> {
        self.alive()?;
        self.inner.prune_runs(before, environment, limit).await
    }
    async fn retry_run(
        &self,
        run: &str,
        now: Timestamp,
        marks: &[NewJournalEntry],
    ) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.retry_run(run, now, marks).await
    }
    async fn decide_step(&self, decision: &StepDecision) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.decide_step(decision).await
    }
    async fn step_decision(
        &self,
        run: &str,
        step: &str,
    ) -> airlock_store::Result<Option<StepDecision>> {
        self.alive()?;
        self.inner.step_decision(run, step).await
    }
    async fn put_secret(&self, secret: &SealedSecret) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.put_secret(secret).await
    }
    async fn secret(
        &self,
        environment: &str,
        name: &str,
    ) -> airlock_store::Result<Option<SealedSecret>> {
        self.alive()?;
        self.inner.secret(environment, name).await
    }
    async fn secret_names(&self) -> airlock_store::Result<Vec<SecretName>> {
        self.alive()?;
        self.inner.secret_names().await
    }
    async fn add_record(&self, record: &NewTestRecord) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.add_record(record).await
    }
    async fn records(&self, environment: &str) -> airlock_store::Result<Vec<TestRecord>> {
        self.alive()?;
        self.inner.records(environment).await
    }

    async fn records_page(
        &self,
        environment: &str,
        page: airlock_store::Page,
    ) -> airlock_store::Result<Vec<TestRecord>> {
        self.alive()?;
        self.inner.records_page(environment, page).await
    }
    async fn add_evidence(&self, evidence: &NewEvidence) -> airlock_store::Result<Evidence> {
        self.alive()?;
        self.inner.add_evidence(evidence).await
    }
    async fn evidence(
        &self,
        workflow: &str,
        version: Option<&str>,
    ) -> airlock_store::Result<Vec<Evidence>> {
        self.alive()?;
        self.inner.evidence(workflow, version).await
    }
    async fn add_bundle(&self, bundle: &airlock_store::StoredBundle) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.add_bundle(bundle).await
    }
    async fn latest_bundle(&self) -> airlock_store::Result<Option<airlock_store::StoredBundle>> {
        self.alive()?;
        self.inner.latest_bundle().await
    }
    async fn open_request(
        &self,
        request: &NewPromotionRequest,
    ) -> airlock_store::Result<PromotionRequest> {
        self.alive()?;
        self.inner.open_request(request).await
    }
    async fn request(&self, id: &str) -> airlock_store::Result<Option<PromotionRequest>> {
        self.alive()?;
        self.inner.request(id).await
    }
    async fn requests(
        &self,
        workflow: Option<&str>,
    ) -> airlock_store::Result<Vec<PromotionRequest>> {
        self.alive()?;
        self.inner.requests(workflow).await
    }
    async fn open_requests(
        &self,
        workflow: Option<&str>,
    ) -> airlock_store::Result<Vec<PromotionRequest>> {
        self.alive()?;
        self.inner.open_requests(workflow).await
    }
    async fn decide_request(&self, approval: &Approval) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.decide_request(approval).await
    }
    async fn approvals(&self, request: &str) -> airlock_store::Result<Vec<Approval>> {
        self.alive()?;
        self.inner.approvals(request).await
    }
    async fn close_request(
        &self,
        id: &str,
        status: airlock_store::RequestStatus,
        at: i64,
    ) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.close_request(id, status, at).await
    }
    async fn release(&self, release: &NewRelease) -> airlock_store::Result<Release> {
        self.alive()?;
        self.inner.release(release).await
    }
    async fn release_by_id(&self, id: &str) -> airlock_store::Result<Option<Release>> {
        self.alive()?;
        self.inner.release_by_id(id).await
    }
    async fn releases(
        &self,
        environment: &str,
        workflow: &str,
    ) -> airlock_store::Result<Vec<Release>> {
        self.alive()?;
        self.inner.releases(environment, workflow).await
    }
    async fn audit(&self, event: &NewAuditEvent) -> airlock_store::Result<AuditEvent> {
        self.alive()?;
        self.inner.audit(event).await
    }
    async fn audit_log(&self) -> airlock_store::Result<Vec<AuditEvent>> {
        self.alive()?;
        self.inner.audit_log().await
    }

    async fn audit_page(
        &self,
        environment: Option<&str>,
        page: airlock_store::Page,
    ) -> airlock_store::Result<Vec<AuditEvent>> {
        self.alive()?;
        self.inner.audit_page(environment, page).await
    }
    async fn audit_head(&self) -> airlock_store::Result<Option<airlock_store::AuditHead>> {
        self.alive()?;
        self.inner.audit_head().await
    }
    async fn create_token(&self, token: &NewApiToken) -> airlock_store::Result<ApiToken> {
        self.alive()?;
        self.inner.create_token(token).await
    }
    async fn token_by_hash(&self, hash: &str) -> airlock_store::Result<Option<ApiToken>> {
        self.alive()?;
        self.inner.token_by_hash(hash).await
    }
    async fn tokens(&self, environment: Option<&str>) -> airlock_store::Result<Vec<ApiToken>> {
        self.alive()?;
        self.inner.tokens(environment).await
    }
    async fn revoke_token(&self, id: &str, at: Timestamp) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.revoke_token(id, at).await
    }
    async fn create_session(
        &self,
        session: &airlock_store::NewConsoleSession,
    ) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.create_session(session).await
    }
    async fn session_by_hash(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> airlock_store::Result<Option<airlock_store::ConsoleSession>> {
        self.alive()?;
        self.inner.session_by_hash(id_hash, now).await
    }
    async fn end_session(&self, id_hash: &str) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.end_session(id_hash).await
    }
    async fn add_notifications(
        &self,
        notifications: &[airlock_store::NewNotification],
    ) -> airlock_store::Result<usize> {
        self.alive()?;
        self.inner.add_notifications(notifications).await
    }
    async fn claim_notifications(
        &self,
        holder: &str,
        now: airlock_store::Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> airlock_store::Result<Vec<airlock_store::Notification>> {
        self.alive()?;
        self.inner
            .claim_notifications(holder, now, lease_ms, limit)
            .await
    }
    async fn settle_notification(
        &self,
        id: &str,
        holder: &str,
        at: airlock_store::Timestamp,
        error: Option<&str>,
        retry_at: airlock_store::Timestamp,
    ) -> airlock_store::Result<bool> {
        self.alive()?;
        self.inner
            .settle_notification(id, holder, at, error, retry_at)
            .await
    }
    async fn notifications(
        &self,
        environment: Option<&str>,
    ) -> airlock_store::Result<Vec<airlock_store::Notification>> {
        self.alive()?;
        self.inner.notifications(environment).await
    }
    async fn schedule_cursor(
        &self,
        environment: &str,
        workflow: &str,
    ) -> airlock_store::Result<Option<Timestamp>> {
        self.alive()?;
        self.inner.schedule_cursor(environment, workflow).await
    }
    async fn advance_schedule(
        &self,
        environment: &str,
        workflow: &str,
        expected: Option<Timestamp>,
        to: Timestamp,
    ) -> airlock_store::Result<bool> {
        self.alive()?;
        self.inner
            .advance_schedule(environment, workflow, expected, to)
            .await
    }
    async fn probe_write(&self) -> airlock_store::Result<()> {
        self.alive()?;
        self.inner.probe_write().await
    }
}

// ---------------------------------------------------------------- the target

/// A connector of one process to the simulated target: nothing leaves a dead process,
/// and the seed decides whether the connection is refused, the answer never comes, or
/// the process dies once the target has acted.
struct FakeConnector {
    name: String,
    process: Arc<Process>,
    world: Arc<World>,
}

#[async_trait]
impl Connector for FakeConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        if self.process.is_dead() {
            return Err(CallError::Connection("the process is dead".into()));
        }
        match self.world.call_fault(&request.run) {
            Some(CallFault::Refused) => Err(CallError::Connection(
                "connection refused (simulated)".into(),
            )),
            Some(CallFault::Timeout { acted }) => {
                if acted {
                    let _ = self.world.receive(&self.name, request);
                }
                // The answer never comes: the executor's bound on the call ends it, at the
                // call's start plus its timeout by the simulated clock.
                std::future::pending().await
            }
            Some(CallFault::CrashAfterTarget) => {
                let answer = self.world.receive(&self.name, request);
                self.process.crash();
                answer
            }
            None => self.world.receive(&self.name, request),
        }
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        CheckOutcome::ok("simulated")
    }
}

/// The runtime of one process: the four workflows, decoded from their source, and that
/// process's connectors.
struct SimRuntime {
    workflows: Arc<BTreeMap<String, Arc<Workflow>>>,
    connectors: BTreeMap<String, Arc<dyn Connector>>,
}

#[async_trait]
impl Runtime for SimRuntime {
    async fn workflow(&self, version: &str) -> Result<Arc<Workflow>, String> {
        self.workflows
            .get(version)
            .cloned()
            .ok_or_else(|| format!("version {version} is not in the simulation"))
    }

    async fn connector(
        &self,
        _environment: &str,
        name: &str,
    ) -> Result<Arc<dyn Connector>, CallError> {
        self.connectors
            .get(name)
            .cloned()
            .ok_or_else(|| CallError::Invalid(format!("unknown connector `{name}`")))
    }

    fn redactor(&self, _environment: &str) -> Redactor {
        Redactor::default()
    }
}

// ---------------------------------------------------------------- the driver

/// The workflows, decoded once: by version id, and by name.
struct Catalog {
    by_version: Arc<BTreeMap<String, Arc<Workflow>>>,
    /// (name, version id) in [`WORKFLOWS`] order.
    names: Vec<(String, String)>,
}

fn catalog() -> Catalog {
    let mut by_version = BTreeMap::new();
    let mut names = Vec::new();
    for source in WORKFLOWS {
        let workflow = airlock_core::model::workflow::decode_source(source)
            .unwrap_or_else(|e| panic!("a simulated workflow does not decode: {e}\n{source}"));
        let version = airlock_core::canonical::version_id(&workflow).0;
        names.push((workflow.name.value.clone(), version.clone()));
        by_version.insert(version, Arc::new(workflow));
    }
    Catalog {
        by_version: Arc::new(by_version),
        names,
    }
}

struct Instance {
    process: Arc<Process>,
    engine: Arc<Engine>,
}

/// A delivery whose acceptance the sender never heard of (its process crashed): the
/// sender tries again, with the same dedupe key.
struct Unanswered {
    workflow: usize,
    dedupe_key: String,
    trigger: Value,
}

/// What a seed ran and injected, and its trace (for the determinism check).
struct SeedReport {
    runs: u64,
    faults: Faults,
    trace: String,
}

/// Starts simulated processes: each a worker of its own on the one store, clock and
/// randomness.
struct Processes {
    world: Arc<World>,
    store: Arc<SqliteStore>,
    workflows: Arc<BTreeMap<String, Arc<Workflow>>>,
    randomness: Arc<SeededRandomness>,
    inline_sleep_ms: i64,
    started: u32,
}

impl Processes {
    /// A new process, with a new worker name.
    fn start(&mut self) -> Instance {
        self.started += 1;
        let process = Arc::new(Process {
            worker: format!("sim-worker-{}", self.started),
            dead: AtomicBool::new(false),
            may_pause: AtomicBool::new(true),
        });
        let store: Arc<dyn Store> = Arc::new(FaultStore {
            inner: self.store.clone(),
            process: process.clone(),
            world: self.world.clone(),
        });
        let connectors = ["crm", "chat", "payments", BROKEN_CONNECTOR]
            .into_iter()
            .map(|name| {
                let connector: Arc<dyn Connector> = Arc::new(FakeConnector {
                    name: name.to_owned(),
                    process: process.clone(),
                    world: self.world.clone(),
                });
                (name.to_owned(), connector)
            })
            .collect();
        let runtime = Arc::new(SimRuntime {
            workflows: self.workflows.clone(),
            connectors,
        });
        let engine = Engine::new(
            store,
            runtime,
            Arc::new(self.world.clock.clone()),
            EngineOptions {
                worker: process.worker.clone(),
                lease_ms: LEASE_MS,
                concurrency: 1,
                inline_sleep_ms: self.inline_sleep_ms,
            },
        )
        .with_randomness(self.randomness.clone());
        Instance {
            process,
            engine: Arc::new(engine),
        }
    }
}

struct Sim {
    world: Arc<World>,
    store: Arc<SqliteStore>,
    catalog: Catalog,
    processes: Processes,
    current: Instance,
    /// What went wrong while a paused process was being taken over.
    failure: Option<String>,
    steps: usize,
    next_order: u64,
    /// Dedupe key → the run its first accepted delivery created.
    first_runs: BTreeMap<String, String>,
    /// Every run the driver was told was accepted (created, or named by a duplicate).
    acknowledged: BTreeSet<String>,
    unanswered: Vec<Unanswered>,
    /// Runs whose approver never answers; they end waiting.
    never_decided: BTreeSet<String>,
    decided: BTreeSet<String>,
}

impl Sim {
    fn new(seed: u64, store: Arc<SqliteStore>) -> Self {
        let dice = Dice(SeededRandomness::new(seed ^ 0x5eed_d1ce_0000_0000));
        // Half the seeds run at the base fault rates; the others from a quarter to twice.
        let intensity = if dice.chance(0.5) {
            1.0
        } else {
            0.25 + dice.0.unit() * 1.75
        };
        let inline_sleep_ms = if dice.chance(0.5) { 0 } else { 1_500 };
        let world = Arc::new(World {
            clock: SimulatedClock::new(EPOCH),
            dice,
            intensity,
            log: Mutex::new(Log::default()),
            paused: tokio::sync::Notify::new(),
        });
        let catalog = catalog();
        let mut processes = Processes {
            world: world.clone(),
            store: store.clone(),
            workflows: catalog.by_version.clone(),
            randomness: Arc::new(SeededRandomness::new(seed)),
            inline_sleep_ms,
            started: 0,
        };
        Sim {
            current: processes.start(),
            processes,
            world,
            store,
            catalog,
            failure: None,
            steps: 0,
            next_order: 0,
            first_runs: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            unanswered: Vec::new(),
            never_decided: BTreeSet::new(),
            decided: BTreeSet::new(),
        }
    }

    /// After a crash: another process starts, once the dead one's leases have run out.
    fn replace_if_dead(&mut self) {
        if self.current.process.is_dead() {
            self.current = self.processes.start();
            self.world
                .clock
                .advance(Duration::from_millis(LEASE_MS as u64 + 1));
        }
    }

    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_DRIVER_STEPS {
            return Err(format!(
                "dead letters instead of loops: the runs did not all end within {MAX_DRIVER_STEPS} driver steps"
            ));
        }
        Ok(())
    }

    /// Awaits a process's work; when that process pauses mid-write, lets its lease run
    /// out and another worker take its runs over, then lets it go on (it must then find
    /// itself fenced, or its run untouched).
    async fn work<T>(&mut self, work: impl Future<Output = T>) -> Result<T, String> {
        tokio::pin!(work);
        let out = loop {
            tokio::select! {
                biased;
                out = &mut work => break out,
                () = self.world.paused.notified() => self.take_over_paused().await,
            }
        };
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(out),
        }
    }

    async fn take_over_paused(&mut self) {
        let Some(pause) = self.world.take_pause() else {
            return;
        };
        // The paused process is left behind: once let go it finishes its write and stops.
        self.current = self.processes.start();
        self.current
            .process
            .may_pause
            .store(false, Ordering::SeqCst);
        // The new worker watches the paused one's lease; once nothing else is due, the lease
        // goes unrenewed for a whole lease, and the new worker takes the run over.
        let mut waited = false;
        for _ in 0..100 {
            let engine = self.current.engine.clone();
            match engine.process_due().await {
                Ok(0) if !waited => {
                    waited = true;
                    self.world
                        .clock
                        .advance(Duration::from_millis(LEASE_MS as u64 + 1));
                }
                Ok(0) => break,
                Ok(_) => {}
                Err(_) if self.current.process.is_dead() => break,
                Err(e) => {
                    self.failure = Some(format!(
                        "a live worker failed without a fault while taking over {}: {e}",
                        pause.run
                    ));
                    break;
                }
            }
        }
        self.current.process.may_pause.store(true, Ordering::SeqCst);
        let _ = pause.gate.send(());
    }

    /// Processes what is due with the current process; a live process must not fail.
    async fn process_due(&mut self) -> Result<usize, String> {
        let engine = self.current.engine.clone();
        let process = self.current.process.clone();
        match self.work(engine.process_due()).await? {
            Ok(count) => Ok(count),
            Err(_) if process.is_dead() => Ok(0),
            Err(e) => Err(format!("a live worker failed without a fault: {e}")),
        }
    }

    fn trigger(&mut self) -> Value {
        self.next_order += 1;
        json!({
            "body": {
                "id": self.next_order,
                "amount": self.world.dice.below(300),
                "customer": "  Ada Lovelace ",
            }
        })
    }

    /// Delivers a run of `workflow`. Through the webhook path (accepted and claimed in one
    /// write, then gone on with at once) or the queue (enqueued for any worker).
    async fn deliver(
        &mut self,
        workflow: usize,
        dedupe_key: Option<String>,
        trigger: Value,
        webhook: bool,
    ) -> Result<(), String> {
        let (name, version) = self.catalog.names[workflow].clone();
        let engine = self.current.engine.clone();
        let process = self.current.process.clone();
        let run = NewRun {
            id: engine.new_run_id(),
            environment: ENVIRONMENT.into(),
            workflow: name,
            version,
            trigger: trigger.clone().into(),
            dedupe_key: dedupe_key.clone(),
            created_at: self.world.clock.now(),
        };
        let answered = if webhook {
            let accepted = match engine.workflow(&run.id, &run.version).await {
                Ok(workflow) => engine.accept(&run, workflow).await,
                Err(e) => Err(e),
            };
            match accepted {
                Ok((enqueued, accepted)) => {
                    self.answered(&run, &enqueued)?;
                    if let Some(accepted) = accepted
                        && let Err(e) = self.work(engine.go_on(accepted)).await?
                        && !process.is_dead()
                    {
                        return Err(format!("a live worker failed without a fault: {e}"));
                    }
                    true
                }
                Err(_) if process.is_dead() => false,
                Err(e) => return Err(format!("a live worker failed to accept a run: {e}")),
            }
        } else {
            let store = self.current.engine.store().clone();
            match store.enqueue(&run).await {
                Ok(enqueued) => {
                    self.answered(&run, &enqueued)?;
                    true
                }
                Err(_) if process.is_dead() => false,
                Err(e) => return Err(format!("enqueueing a run failed: {e}")),
            }
        };
        if !answered && let Some(dedupe_key) = dedupe_key {
            self.unanswered.push(Unanswered {
                workflow,
                dedupe_key,
                trigger,
            });
        }
        Ok(())
    }

    /// The store's answer to a delivery: a new run, or the first run of its dedupe key.
    fn answered(&mut self, run: &NewRun, enqueued: &Enqueued) -> Result<(), String> {
        if let Some(key) = &run.dedupe_key {
            match self.first_runs.get(key) {
                Some(first) if enqueued.created || &enqueued.run != first => {
                    return Err(format!(
                        "a duplicate delivery creates no second run: dedupe key {key} answered \
                         {} (created: {}), its first run is {first}",
                        enqueued.run, enqueued.created
                    ));
                }
                Some(_) => self.world.log().faults.duplicate += 1,
                None => {
                    if !enqueued.created {
                        // The first delivery was written, but its sender never heard.
                        self.world.log().faults.duplicate += 1;
                    }
                    self.first_runs.insert(key.clone(), enqueued.run.clone());
                }
            }
        }
        self.acknowledged.insert(enqueued.run.clone());
        Ok(())
    }

    async fn deliver_new(&mut self) -> Result<(), String> {
        let workflow = self.world.dice.below(WORKFLOWS.len() as u64) as usize;
        let trigger = self.trigger();
        let webhook = workflow == 0 || self.world.dice.chance(0.5);
        let dedupe_key = (webhook || self.world.dice.chance(0.5))
            .then(|| format!("delivery-{}", self.next_order));
        self.deliver(workflow, dedupe_key, trigger, webhook).await
    }

    /// The sender of a delivery it never heard back about tries again.
    async fn redeliver(&mut self) -> Result<(), String> {
        if let Some(retry) = self.unanswered.pop() {
            let webhook = self.world.dice.chance(0.5);
            self.deliver(
                retry.workflow,
                Some(retry.dedupe_key),
                retry.trigger,
                webhook,
            )
            .await?;
        }
        Ok(())
    }

    /// A sender delivers an accepted delivery again, with the same dedupe key.
    async fn duplicate(&mut self) -> Result<(), String> {
        if self.first_runs.is_empty() {
            return Ok(());
        }
        let pick = self.world.dice.below(self.first_runs.len() as u64) as usize;
        let Some((key, first)) = self
            .first_runs
            .iter()
            .nth(pick)
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            return Ok(());
        };
        let Some(run) = self.store.run(&first).await.map_err(|e| e.to_string())? else {
            return Err(format!("no accepted run lost: {first} is not in the store"));
        };
        let Some(workflow) = self
            .catalog
            .names
            .iter()
            .position(|(n, _)| *n == run.workflow)
        else {
            return Err(format!("run {first} runs an unknown workflow"));
        };
        let webhook = self.world.dice.chance(0.5);
        self.deliver(
            workflow,
            Some(key),
            Arc::unwrap_or_clone(run.trigger),
            webhook,
        )
        .await
    }

    /// A person decides the approvals that wait (each with probability `p`), approving
    /// most; some runs' approvers never answer.
    async fn decide(&mut self, p: f64) -> Result<(), String> {
        let waiting = self
            .store
            .runs(&RunFilter {
                status: Some(RunStatus::Waiting),
                ..RunFilter::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        for run in waiting {
            if self.never_decided.contains(&run.id) || self.decided.contains(&run.id) {
                continue;
            }
            if !self.world.dice.chance(p) {
                continue;
            }
            if self.world.dice.chance(0.1) {
                self.never_decided.insert(run.id.clone());
                continue;
            }
            let journal = self
                .store
                .journal(&run.id)
                .await
                .map_err(|e| e.to_string())?;
            let Some(step) = journal
                .iter()
                .rev()
                .find(|e| e.entry.status == StepStatus::Waiting)
                .map(|e| e.entry.step.clone())
            else {
                return Err(format!("run {} waits without a waiting step", run.id));
            };
            let approved = self.world.dice.chance(0.75);
            self.store
                .decide_step(&StepDecision {
                    run: run.id.clone(),
                    step,
                    approver: "ops-lead".into(),
                    approved,
                    decided_at: self.world.clock.now(),
                })
                .await
                .map_err(|e| format!("deciding {}: {e}", run.id))?;
            self.decided.insert(run.id);
        }
        Ok(())
    }

    /// When the next run not yet due becomes due: a wake time, or a lease the current
    /// process watches going unrenewed for its length (one it has not watched yet, at once:
    /// it watches it at its next claim).
    async fn next_due(&self) -> Result<Option<Timestamp>, String> {
        let runs = self
            .store
            .runs(&RunFilter::default())
            .await
            .map_err(|e| e.to_string())?;
        let now = self.world.clock.now();
        let engine = &self.current.engine;
        Ok(runs
            .iter()
            .filter_map(|run| match run.status {
                RunStatus::Queued => Some(run.wake_at.unwrap_or(run.created_at)),
                RunStatus::Running => Some(
                    now + engine
                        .next_take_over(&run.id)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ),
                RunStatus::Waiting => run.wake_at,
                _ => None,
            })
            .min())
    }

    async fn simulate(&mut self) -> Result<(), String> {
        let deliveries = 6 + self.world.dice.below(10);
        let mut delivered = 0;
        while delivered < deliveries {
            self.step()?;
            match self.world.dice.below(100) {
                0..=34 => {
                    delivered += 1;
                    self.deliver_new().await?;
                }
                35..=41 => self.redeliver().await?,
                42..=49 => self.duplicate().await?,
                50..=57 => self.decide(0.5).await?,
                58..=66 => {
                    let by = self.world.dice.below(20_000);
                    self.world.clock.advance(Duration::from_millis(by));
                }
                _ => {
                    self.process_due().await?;
                }
            }
            self.replace_if_dead();
        }
        // Drain: every sender heard back, every decision made, every due run processed,
        // the clock moved to the next wake time or lease end, until nothing is left.
        loop {
            self.step()?;
            if !self.unanswered.is_empty() {
                self.redeliver().await?;
                self.replace_if_dead();
                continue;
            }
            self.decide(1.0).await?;
            let processed = self.process_due().await?;
            if self.current.process.is_dead() {
                self.replace_if_dead();
                continue;
            }
            if processed > 0 {
                continue;
            }
            match self.next_due().await? {
                None => return Ok(()),
                Some(due) => self
                    .world
                    .clock
                    .advance_to(due.max(self.world.clock.now() + 1)),
            }
        }
    }
}

// ---------------------------------------------------------------- the invariants

/// A journal entry as compared between the store and the simulation's record of writes.
type Written<'a> = (&'a str, u32, StepStatus, Option<&'a str>);

/// The promises, checked on the store and the target's log once a seed has drained.
async fn check(sim: &Sim) -> Result<u64, String> {
    let store = &sim.store;
    let runs = store
        .runs(&RunFilter::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut journals: BTreeMap<String, Vec<NewJournalEntry>> = BTreeMap::new();
    for run in &runs {
        let journal = store.journal(&run.id).await.map_err(|e| e.to_string())?;
        journals.insert(
            run.id.clone(),
            journal.into_iter().map(|e| e.entry).collect(),
        );
    }
    let by_id: BTreeMap<&str, &Run> = runs.iter().map(|r| (r.id.as_str(), r)).collect();
    let log = sim.world.log();

    // The simulation's own record of the writes is the store's journal, entry for entry.
    let mut written: BTreeMap<&str, Vec<Written>> = BTreeMap::new();
    for event in &log.events {
        if let Event::Journaled {
            run,
            step,
            attempt,
            status,
            key,
            ..
        } = event
        {
            written
                .entry(run)
                .or_default()
                .push((step, *attempt, *status, key.as_deref()));
        }
    }
    for (run, journal) in &journals {
        let stored: Vec<_> = journal
            .iter()
            .map(|e| {
                (
                    e.step.as_str(),
                    e.attempt,
                    e.status,
                    e.idempotency_key.as_deref(),
                )
            })
            .collect();
        let seen = written.remove(run.as_str()).unwrap_or_default();
        if stored != seen {
            return Err(format!(
                "the store's journal of {run} is not what its writers wrote:\n  stored  {stored:?}\n  written {seen:?}"
            ));
        }
    }
    if let Some((run, _)) = written.into_iter().next() {
        return Err(format!(
            "entries were written for {run}, which is not in the store"
        ));
    }

    // No accepted run lost: every run told accepted exists, and every run is over, or
    // waits for a person who never answers.
    for id in &sim.acknowledged {
        if !by_id.contains_key(id.as_str()) {
            return Err(format!(
                "no accepted run lost: {id} was accepted and is not in the store"
            ));
        }
    }
    for run in &runs {
        let waiting_for_nobody =
            run.status == RunStatus::Waiting && sim.never_decided.contains(&run.id);
        if !run.status.is_final() && !waiting_for_nobody {
            return Err(format!(
                "no accepted run lost: {} ({}) is still {} after the drain",
                run.id,
                run.workflow,
                run.status.as_str()
            ));
        }
    }

    // A duplicate delivery creates no second run.
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for run in &runs {
        if let Some(key) = &run.dedupe_key {
            by_key.entry(key).or_default().push(&run.id);
        }
    }
    for (key, ids) in &by_key {
        if ids.len() > 1 {
            return Err(format!(
                "a duplicate delivery creates no second run: dedupe key {key} has runs {ids:?}"
            ));
        }
    }

    // No journaled effect repeated: the target is called for a step only after a
    // `started` of its own (one call per `started` at most, with that entry's key), and
    // never once the step's success is journaled.
    #[derive(Default)]
    struct Seen<'a> {
        started: usize,
        calls: usize,
        key: Option<&'a str>,
        succeeded: bool,
    }
    let mut seen: BTreeMap<(&str, &str), Seen> = BTreeMap::new();
    for event in &log.events {
        match event {
            Event::Journaled {
                run,
                step,
                status,
                key,
                ..
            } => {
                let state = seen.entry((run, step)).or_default();
                match status {
                    StepStatus::Started => {
                        state.started += 1;
                        state.key = key.as_deref();
                    }
                    StepStatus::Succeeded => state.succeeded = true,
                    _ => {}
                }
            }
            Event::Called { run, step, key, .. } => {
                let state = seen.entry((run, step)).or_default();
                state.calls += 1;
                if state.succeeded {
                    return Err(format!(
                        "no journaled effect repeated: the target received a call for step \
                         `{step}` of {run} after its success was journaled"
                    ));
                }
                if state.calls > state.started {
                    return Err(format!(
                        "every call journaled before it is made: call {} for step `{step}` of \
                         {run} reached the target with only {} `started` journaled before it",
                        state.calls, state.started
                    ));
                }
                if state.key != Some(key.as_str()) {
                    return Err(format!(
                        "every call carries its intent's key: step `{step}` of {run} was \
                         called with {key}, its `started` entry holds {:?}",
                        state.key
                    ));
                }
            }
        }
    }

    // Every interrupted call retried with the same key, and dead letters instead of loops.
    for (id, journal) in &journals {
        let run = by_id[id.as_str()];
        let workflow = sim
            .catalog
            .by_version
            .get(&run.version)
            .ok_or_else(|| format!("{id} runs an unknown version"))?;
        for step in workflow.all_steps() {
            if !matches!(step.kind, StepKind::Call { .. }) {
                continue;
            }
            let entries: Vec<&NewJournalEntry> =
                journal.iter().filter(|e| e.step == step.id.value).collect();
            check_call_step(
                id,
                run,
                &step.id.value,
                step.retry.as_ref().map_or(1, |r| r.attempts),
                &entries,
            )?;
        }
        if run.workflow == "flaky-sync" && run.status != RunStatus::Dead {
            return Err(format!(
                "dead letters instead of loops: {id} calls a target that always fails and \
                 ended {}, not dead",
                run.status.as_str()
            ));
        }
    }
    Ok(runs.len() as u64)
}

/// The entries of one call step of a run, in order. Each attempt is a `started`, then
/// exactly one of its result or `outcome_unknown`; attempts are numbered 1, 2, 3… and
/// stay within the retry policy plus the attempts interruptions allow; all carry one key.
fn check_call_step(
    run_id: &str,
    run: &Run,
    step: &str,
    allowed: u32,
    entries: &[&NewJournalEntry],
) -> Result<(), String> {
    let keys: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    if keys.len() > 1 {
        return Err(format!(
            "every attempt of a step carries one key: step `{step}` of {run_id} used {keys:?}"
        ));
    }
    let at = |entry: &NewJournalEntry| {
        format!(
            "step `{step}` of {run_id}, attempt {} ({})",
            entry.attempt,
            entry.status.as_str()
        )
    };
    let mut open: Option<u32> = None;
    let mut last = 0;
    let mut unknowns = 0;
    for (i, entry) in entries.iter().enumerate() {
        match entry.status {
            StepStatus::Started => {
                if let Some(unresolved) = open {
                    return Err(format!(
                        "every interrupted call is journaled as such: {} starts while attempt \
                         {unresolved} has neither a result nor `outcome_unknown`",
                        at(entry)
                    ));
                }
                if entry.attempt != last + 1 {
                    return Err(format!(
                        "attempts are counted: {} follows attempt {last}",
                        at(entry)
                    ));
                }
                let bound = allowed + unknowns.min(EXTRA_ATTEMPTS_AFTER_UNKNOWN);
                if entry.attempt > bound {
                    return Err(format!(
                        "dead letters instead of loops: {} with {allowed} allowed and \
                         {unknowns} interrupted",
                        at(entry)
                    ));
                }
                open = Some(entry.attempt);
                last = entry.attempt;
            }
            // The interpreter's own verdict (no attempt made): dead after interruptions.
            StepStatus::Failed if entry.idempotency_key.is_none() => {
                if open.is_some() {
                    return Err(format!("{} while an attempt is unresolved", at(entry)));
                }
            }
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::OutcomeUnknown => {
                if open != Some(entry.attempt) {
                    return Err(format!(
                        "every call journaled before it is made: {} has no `started` of its own",
                        at(entry)
                    ));
                }
                open = None;
                if entry.status == StepStatus::OutcomeUnknown {
                    unknowns += 1;
                    let exhausted = last >= allowed + unknowns.min(EXTRA_ATTEMPTS_AFTER_UNKNOWN);
                    match entries.get(i + 1) {
                        Some(next)
                            if next.status == StepStatus::Started
                                && next.idempotency_key == entry.idempotency_key => {}
                        Some(next)
                            if exhausted
                                && next.status == StepStatus::Failed
                                && next.output.as_ref().and_then(|o| o.get("final"))
                                    == Some(&json!("dead")) => {}
                        next => {
                            return Err(format!(
                                "every interrupted call retried with the same key: after {} \
                                 ({:?}) the journal holds {:?}",
                                at(entry),
                                entry.idempotency_key,
                                next.map(|n| (n.status, n.attempt, &n.idempotency_key))
                            ));
                        }
                    }
                }
            }
            StepStatus::Waiting | StepStatus::Retried => {}
        }
    }
    if let Some(unresolved) = open
        && run.status.is_final()
    {
        return Err(format!(
            "no call left unresolved: attempt {unresolved} of step `{step}` of {run_id} has no \
             result, and the run is {}",
            run.status.as_str()
        ));
    }
    Ok(())
}

/// Everything a seed did, one line per event: two runs of a seed must give the same.
fn trace(sim: &Sim, runs: &[Run]) -> String {
    let log = sim.world.log();
    let mut out = String::new();
    for event in &log.events {
        let _ = writeln!(out, "{event:?}");
    }
    for run in runs {
        let _ = writeln!(
            out,
            "{} {} {} {:?} {:?} {:?}",
            run.id,
            run.workflow,
            run.status.as_str(),
            run.output,
            run.error,
            run.finished_at
        );
    }
    let _ = writeln!(out, "{:?} at {}", log.faults, sim.world.clock.now());
    out
}

// ---------------------------------------------------------------- main

fn run_seed(seed: u64) -> Result<SeedReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = SqliteStore::open_with(
            &dir.path().join("airlock.db"),
            SqliteOptions {
                // A crash of the process is what is simulated, and that loses nothing here.
                durability: Durability::Normal,
                ..SqliteOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let mut sim = Sim::new(seed, Arc::new(store));
        sim.simulate().await?;
        let runs = check(&sim).await?;
        let all = sim
            .store
            .runs(&RunFilter::default())
            .await
            .map_err(|e| e.to_string())?;
        let faults = sim.world.log().faults;
        Ok(SeedReport {
            runs,
            faults,
            trace: trace(&sim, &all),
        })
    })
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn reproduce(seed: u64) -> String {
    format!("reproduce: AIRLOCK_SIM_SEED={seed} cargo test -p airlock-engine --test simulation")
}

/// Runs one seed, turning a panic into a failure that names the seed.
fn attempt(seed: u64) -> Result<SeedReport, String> {
    std::panic::catch_unwind(|| run_seed(seed)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".into());
        Err(format!("panicked: {message}"))
    })
}

fn env_number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={text} is not a number")),
        Err(_) => Ok(None),
    }
}

fn main() -> ExitCode {
    let seeds: Vec<u64> = match (
        env_number("AIRLOCK_SIM_SEED"),
        env_number("AIRLOCK_SIM_SEEDS"),
    ) {
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("simulation: {e}");
            return ExitCode::FAILURE;
        }
        (Ok(Some(seed)), _) => vec![seed],
        (Ok(None), Ok(count)) => (1..=count.unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    // A hung seed (a deadlock, a sleep on real time) must still name itself.
    let current = Arc::new(AtomicU64::new(0));
    let since = Arc::new(Mutex::new(Instant::now()));
    {
        let (current, since) = (current.clone(), since.clone());
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let started = *since.lock().unwrap_or_else(PoisonError::into_inner);
                if started.elapsed() > HUNG_AFTER {
                    let seed = current.load(Ordering::SeqCst);
                    println!("simulation: seed {seed} hung for {}s", HUNG_AFTER.as_secs());
                    println!("{}", reproduce(seed));
                    std::process::exit(1);
                }
            }
        });
    }
    let started = Instant::now();
    let mut runs = 0;
    let mut faults = Faults::default();
    let mut first_trace = None;
    for &seed in &seeds {
        current.store(seed, Ordering::SeqCst);
        *since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        match attempt(seed) {
            Ok(report) => {
                if std::env::var_os("AIRLOCK_SIM_TRACE").is_some() {
                    println!("simulation: seed {seed}\n{}", report.trace);
                }
                runs += report.runs;
                faults.add(&report.faults);
                first_trace.get_or_insert((seed, report.trace));
            }
            Err(failure) => {
                println!("simulation: seed {seed} failed: {failure}");
                println!("{}", reproduce(seed));
                return ExitCode::FAILURE;
            }
        }
    }
    // Determinism: the first seed again gives the same journals and the same calls.
    if let Some((seed, trace)) = first_trace {
        *since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        current.store(seed, Ordering::SeqCst);
        match attempt(seed) {
            Ok(again) if again.trace == trace => {}
            Ok(again) => {
                let (line, (a, b)) = trace
                    .lines()
                    .zip(again.trace.lines())
                    .enumerate()
                    .find(|(_, (a, b))| a != b)
                    .unwrap_or((0, ("(shorter)", "(longer)")));
                println!(
                    "simulation: seed {seed} is not deterministic: its second run differs at line {}:\n  first  {a}\n  second {b}",
                    line + 1
                );
                println!("{}", reproduce(seed));
                return ExitCode::FAILURE;
            }
            Err(failure) => {
                println!("simulation: seed {seed} failed on its second run: {failure}");
                println!("{}", reproduce(seed));
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "simulation: {} seeds, {} runs, {} faults (crash {} [before the intent {}, before the call {}, \
         after the target acted {}, after the result {}], connection {}, timeout {}, lease takeover {} \
         [{} from a paused worker], duplicate {}): all invariants held, replayed exactly, in {:.1}s",
        thousands(seeds.len() as u64),
        thousands(runs),
        thousands(faults.total()),
        thousands(faults.crashes()),
        thousands(faults.crash_before_intent),
        thousands(faults.crash_before_call),
        thousands(faults.crash_after_target),
        thousands(faults.crash_after_result),
        thousands(faults.connection),
        thousands(faults.timeout),
        thousands(faults.takeover),
        thousands(faults.paused),
        thousands(faults.duplicate),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
