//! The one place that performs what the interpreter decides: claims runs, journals,
//! calls connectors, settles runs.

use crate::clock::Clock;
use crate::in_flight::InFlight;
use crate::randomness::{OsRandomness, Randomness};
use crate::runtime::Runtime;
use crate::watch::Watch;
use airlock_connectors::CallRequest;
use airlock_core::interpreter::{self, AttemptFailure, CallPlan, Decision, Input, Next};
use airlock_core::model::Workflow;
use airlock_store::{
    Claim, Commit, Enqueued, Error as StoreError, NewJournalEntry, NewRun, Run, RunStatus,
    Settlement, StepDecision, Store,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Errors the executor itself can hit (a run's own failures are journaled, not returned).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A run's workflow version could not be loaded.
    #[error("run {run}: {reason}")]
    Version {
        /// The run.
        run: String,
        /// Why.
        reason: String,
    },
    /// The task accepting a run ended without answering.
    #[error("run {run}: {reason}")]
    Stopped {
        /// The run.
        run: String,
        /// Why.
        reason: String,
    },
}

/// Someone who wants to see journal entries as they are written (the CLI prints them).
pub trait Observer: Send + Sync {
    /// Entries just committed for a run.
    fn journaled(&self, run: &Run, entries: &[NewJournalEntry]);
    /// A run released (finished, sleeping or waiting).
    fn settled(&self, run: &Run, settlement: &Settlement);
    /// A call attempt ended (answered or failed) through `connector`: `result` is its
    /// journal entry, before it is committed.
    fn called(&self, _run: &Run, _connector: &str, _result: &NewJournalEntry) {}
}

/// A run accepted and claimed by [`Engine::accept`], with what was journaled with it.
pub struct Accepted {
    claim: Claim,
    workflow: Arc<Workflow>,
    journal: Vec<NewJournalEntry>,
    call: Option<(CallPlan, i64)>,
}

impl Accepted {
    /// The run as claimed.
    pub fn run(&self) -> &Run {
        &self.claim.run
    }
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Who claims (shown in `runs show`).
    pub worker: String,
    /// How long a claim lasts without a write; a dead worker's runs are reclaimed after it.
    pub lease_ms: i64,
    /// Runs processed at once.
    pub concurrency: usize,
    /// A run sleeping for less than this is kept and slept on in process instead of
    /// released (saves a claim round trip on short backoffs).
    pub inline_sleep_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            worker: format!("worker-{}", std::process::id()),
            lease_ms: 30_000,
            concurrency: 64,
            inline_sleep_ms: 0,
        }
    }
}

/// The executor.
pub struct Engine {
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    clock: Arc<dyn Clock>,
    randomness: Arc<dyn Randomness>,
    options: EngineOptions,
    observer: Option<Arc<dyn Observer>>,
    /// Every run this engine executes, however it came to it: what a stopping process
    /// waits for.
    in_flight: Arc<InFlight>,
    /// Other holders' leases as this engine has watched them, to take over the runs of the
    /// holders that stopped renewing (see `watch`).
    watch: Watch,
}

impl Engine {
    /// An executor over a store and a runtime, reading time from `clock` and drawing
    /// jitter and run ids from the operating system's randomness.
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Self {
        Self {
            store,
            runtime,
            clock,
            randomness: Arc::new(OsRandomness),
            options,
            observer: None,
            in_flight: Arc::default(),
            watch: Watch::default(),
        }
    }

    /// Draws retry jitter and run ids from `randomness` (a seeded one, to simulate).
    pub fn with_randomness(mut self, randomness: Arc<dyn Randomness>) -> Self {
        self.randomness = randomness;
        self
    }

    /// A new run id (time-ordered, UUIDv7) from this engine's clock and randomness, so
    /// that a simulation gets the same ids from the same seed.
    pub fn new_run_id(&self) -> String {
        airlock_core::ids::run_id(self.clock.now(), self.randomness.bits())
    }

    /// Reports journal entries and settlements to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The runtime its connectors come from (the notification deliverer sends through it).
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The clock it reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Its tuning (the worker name its claims carry, the lease).
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// How many runs this engine is executing now, whoever started them (a webhook's
    /// [`Engine::admit`], the worker loop, [`Engine::process_run`]).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Completes once this engine executes no run: what a process that stops awaits
    /// (bounded by its grace period) before its runtime, and every task on it, ends.
    pub async fn idle(&self) {
        self.in_flight.idle().await;
    }

    /// Claims the runs that are due (up to the concurrency) and processes them all.
    /// Returns how many were claimed.
    pub async fn process_due(self: &Arc<Self>) -> Result<usize, EngineError> {
        let claims = self.claim_due(self.options.concurrency).await?;
        let count = claims.len();
        let mut tasks = tokio::task::JoinSet::new();
        for claim in claims {
            let engine = self.clone();
            tasks.spawn(async move { engine.process(claim).await });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "run processing failed");
                    first_error.get_or_insert(e);
                }
                Err(e) => tracing::error!(error = %e, "run task panicked"),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Claims up to `limit` runs: the due ones ([`Store::claim`]), then the runs of
    /// holders that stopped renewing their leases ([`Engine::take_over_stale`]).
    async fn claim_due(&self, limit: usize) -> Result<Vec<Claim>, EngineError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut claims = self
            .store
            .claim(
                &self.options.worker,
                self.clock.now(),
                self.options.lease_ms,
                limit,
            )
            .await?;
        let more = self.take_over_stale(limit - claims.len(), None).await?;
        claims.extend(more);
        Ok(claims)
    }

    /// Watches the leases of the running runs (of `only`, when named) and takes over up to
    /// `limit` of those whose holder has not renewed its lease for as long as it promised,
    /// by this engine's monotonic clock: the one judgement of whether a holder is dead, so
    /// that a wall clock set forward never takes a run from a live holder, nor one set back
    /// keeps a dead holder's run (see `watch`).
    async fn take_over_stale(
        &self,
        limit: usize,
        only: Option<&str>,
    ) -> Result<Vec<Claim>, EngineError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut leases = self.store.leases().await?;
        if let Some(run) = only {
            leases.retain(|lease| lease.run == run);
        }
        let stale = self.watch.stale(
            leases,
            self.clock.monotonic(),
            self.options.lease_ms,
            |run| self.in_flight.holds(run),
            only.is_none(),
        );
        let mut claims = Vec::new();
        for lease in stale.into_iter().take(limit) {
            self.watch.forget(&lease.run);
            let taken = self
                .store
                .take_over(
                    &lease,
                    &self.options.worker,
                    self.clock.now(),
                    self.options.lease_ms,
                )
                .await?;
            if let Some(claim) = taken {
                tracing::warn!(
                    run = %lease.run,
                    holder = lease.owner.as_deref().unwrap_or("?"),
                    "taking over a run whose holder stopped renewing its lease"
                );
                claims.push(claim);
            }
        }
        Ok(claims)
    }

    /// Claims the run `run_id`, and it alone, if it is due ([`Store::claim_run`]) or its
    /// holder stopped renewing its lease (watched over calls: see `watch`), and processes
    /// it until it finishes or is released (sleeping, waiting for a person). Answers
    /// whether it was claimed: not when it is not due, or another process holds it. What
    /// a command that runs one workflow uses (`airlock run`, `approve-step`, `runs
    /// retry`): [`Engine::process_due`] would claim whatever else is due in the store too
    /// (another environment's waiting runs, say) and execute it in a process that is
    /// about to exit.
    pub async fn process_run(&self, run_id: &str) -> Result<bool, EngineError> {
        let mut claim = self
            .store
            .claim_run(
                run_id,
                &self.options.worker,
                self.clock.now(),
                self.options.lease_ms,
            )
            .await?;
        if claim.is_none() {
            claim = self.take_over_stale(1, Some(run_id)).await?.pop();
        }
        match claim {
            Some(claim) => {
                self.process(claim).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Works until `shutdown` turns true: keeps up to `concurrency` runs in flight,
    /// claiming more as slots free up. When nothing is due it waits for the store to
    /// signal work ([`Store::wait_for_work`]), `poll` at most. Other holders' leases are
    /// watched every tenth of a lease (at most every second).
    pub async fn work(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        poll: Duration,
    ) -> Result<(), EngineError> {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.options.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let watch_every =
            Duration::from_millis(u64::try_from(self.options.lease_ms / 10).unwrap_or(0))
                .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let mut watched: Option<Duration> = None;
        while !*shutdown.borrow() {
            while let Some(joined) = tasks.try_join_next() {
                if let Ok(Err(e)) = joined {
                    tracing::error!(error = %e, "run processing failed");
                }
            }
            let free = slots.available_permits();
            let mut claims = if free == 0 {
                Vec::new()
            } else {
                self.store
                    .claim(
                        &self.options.worker,
                        self.clock.now(),
                        self.options.lease_ms,
                        free,
                    )
                    .await?
            };
            let elapsed = self.clock.monotonic();
            if free > claims.len()
                && watched.is_none_or(|at| elapsed.saturating_sub(at) >= watch_every)
            {
                watched = Some(elapsed);
                let more = self.take_over_stale(free - claims.len(), None).await?;
                claims.extend(more);
            }
            if claims.is_empty() {
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    () = self.store.wait_for_work(poll) => {}
                    _ = shutdown.changed() => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
                continue;
            }
            for claim in claims {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let engine = self.clone();
                tasks.spawn(async move {
                    let result = engine.process(claim).await;
                    drop(permit);
                    result
                });
            }
        }
        // Runs in flight finish their current step; what is left stays resumable.
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Processes due runs until none is due and none may become due within `patience`
    /// (a run held by a dead worker becomes due once its lease has gone unrenewed for its
    /// length), by the clock's elapsed time.
    pub async fn drain(self: &Arc<Self>, patience: Duration) -> Result<usize, EngineError> {
        let mut processed = 0;
        let deadline = self.clock.monotonic().saturating_add(patience);
        loop {
            let claimed = self.process_due().await?;
            processed += claimed;
            if claimed > 0 {
                continue;
            }
            let Some(next_due) = self.next_due().await? else {
                return Ok(processed);
            };
            let wait = next_due.clamp(Duration::from_millis(1), Duration::from_millis(250));
            if self.clock.monotonic().saturating_add(wait) > deadline {
                return Ok(processed);
            }
            self.clock.sleep(wait).await;
        }
    }

    /// How long until this engine would take `run` over from its holder, if the holder
    /// renews its lease no more: zero once it would, `None` while it does not watch the
    /// run's lease (it watches every running run's each time it claims).
    pub fn next_take_over(&self, run: &str) -> Option<Duration> {
        self.watch
            .stale_in(run, self.clock.monotonic(), self.options.lease_ms)
    }

    /// How long until the next run not yet due may become due: a sleeping run's wake time
    /// (by the wall clock, as stored), or a watched lease going stale.
    async fn next_due(&self) -> Result<Option<Duration>, EngineError> {
        let now = self.clock.now();
        let mut earliest: Option<Duration> = None;
        for status in [RunStatus::Queued, RunStatus::Running] {
            let runs = self
                .store
                .runs(&airlock_store::RunFilter {
                    status: Some(status),
                    ..Default::default()
                })
                .await?;
            for run in runs {
                let due = match status {
                    // Not watched yet: watched at the next claim.
                    RunStatus::Running => self.next_take_over(&run.id).unwrap_or_default(),
                    _ => Duration::from_millis(
                        u64::try_from(run.wake_at.unwrap_or(now) - now).unwrap_or(0),
                    ),
                };
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        Ok(earliest)
    }

    /// Accepts a new run and claims it in the same write, for a process that executes
    /// what it accepts (a webhook server): the steps that need no call are decided first,
    /// and journaled with the acceptance together with the first call's intent, so a run
    /// with one side effect costs two durable writes (accepted and about to call; the call's
    /// result and the finish) instead of three. What is decided before the write depends
    /// only on the run itself, so deciding it again after a crash gives the same entries.
    ///
    /// Returns the store's answer and, when the run was created and claimed here, the run
    /// ready to go on with [`Engine::go_on`]. A duplicate delivery writes nothing.
    ///
    /// `workflow` is the decoded `run.version`, which the caller (a webhook route) already
    /// holds: the hot path looks nothing up twice.
    ///
    /// The run is claimed from the moment the write is sent: a caller that is cancelled
    /// before it goes on leaves the run to wait for its lease to expire. Callers that may
    /// be cancelled (a request handler whose client can hang up) use [`Engine::admit`].
    pub async fn accept(
        &self,
        run: &NewRun,
        workflow: Arc<Workflow>,
    ) -> Result<(Enqueued, Option<Accepted>), EngineError> {
        let lease_until = run.created_at.saturating_add(self.options.lease_ms);
        // The run as the claim will store it; the interpreter reads its id, environment
        // and trigger, which the write does not change.
        let provisional = run
            .clone()
            .into_claimed(self.options.worker.clone(), lease_until);
        let release = self
            .release_scope(&workflow, &run.environment, &run.workflow, &run.version)
            .await?;
        let Decision { mut entries, next } = interpreter::decide(&Input {
            workflow: &workflow,
            version: &run.version,
            run: &provisional,
            journal: &[],
            decisions: &HashMap::new(),
            now: run.created_at,
            release: release.as_ref(),
        });
        // Only a call's intent is written ahead; a run that would sleep, wait or finish
        // at once is decided again after the claim, as any other.
        let call = match next {
            Next::Call(plan) => {
                let redactor = self.runtime.redactor(&run.environment);
                entries.push(interpreter::started_entry(
                    &plan,
                    Some(redactor.redact_json(&plan.args)),
                    run.created_at,
                ));
                Some(plan)
            }
            _ => {
                entries.clear();
                None
            }
        };
        let (enqueued, claim) = self
            .store
            .enqueue_claimed(run, &self.options.worker, self.options.lease_ms, &entries)
            .await?;
        let Some(claim) = claim else {
            return Ok((enqueued, None));
        };
        // A backend that journals nothing with the claim answers without one (see
        // `Store::enqueue_claimed`); with a claim, the entries are written.
        if let Some(observer) = &self.observer
            && !entries.is_empty()
        {
            observer.journaled(&claim.run, &entries);
        }
        let started = call.map(|plan| (plan, run.created_at));
        Ok((
            enqueued,
            Some(Accepted {
                claim,
                workflow,
                journal: entries,
                call: started,
            }),
        ))
    }

    /// What `{{ release.* }}` reads in a run of `version`: the release it ran on, its owners
    /// and their contacts. Read once per claim, and only for a workflow whose templates read
    /// `release`: every other run pays nothing for it.
    async fn release_scope(
        &self,
        decoded: &Workflow,
        environment: &str,
        workflow: &str,
        version: &str,
    ) -> Result<Option<Arc<serde_json::Value>>, EngineError> {
        if !decoded.reads_release() {
            return Ok(None);
        }
        let ran_on =
            crate::owners::ran_on_release(&*self.store, environment, workflow, version).await?;
        Ok(Some(Arc::new(airlock_core::release::scope(
            ran_on.release.as_ref().map(|r| r.release.id.as_str()),
            version,
            &ran_on.owners,
            self.runtime.people(),
        ))))
    }

    /// The decoded workflow of `version`, which `run` runs (cached by the runtime).
    pub async fn workflow(&self, run: &str, version: &str) -> Result<Arc<Workflow>, EngineError> {
        self.runtime
            .workflow(version)
            .await
            .map_err(|reason| EngineError::Version {
                run: run.to_owned(),
                reason,
            })
    }

    /// Goes on with a run accepted by [`Engine::accept`]: performs the call whose intent
    /// was journaled with it, then drives it like any claimed run.
    pub async fn go_on(&self, accepted: Accepted) -> Result<(), EngineError> {
        let _running = self.in_flight.enter(&accepted.claim.run.id);
        let Accepted {
            claim,
            workflow,
            journal,
            call,
        } = accepted;
        self.drive(claim, workflow, journal, call).await
    }

    /// Accepts `run` ([`Engine::accept`]) and drives it to its end on a task of its own,
    /// holding `hold` (an execution slot, say) until then. The returned future answers
    /// once the acceptance is durable: created, or a duplicate of an earlier delivery.
    ///
    /// Nothing here waits on the caller. A webhook sender that hangs up while its delivery
    /// is being written drops only the answer, and its run still goes on at once. If the
    /// run were left claimed by a request that no longer exists, it would wait out its lease.
    pub fn admit<H: Send + 'static>(
        self: &Arc<Self>,
        run: NewRun,
        workflow: Arc<Workflow>,
        hold: H,
    ) -> impl Future<Output = Result<Enqueued, EngineError>> + Send + 'static {
        let engine = Arc::clone(self);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let run_id = run.id.clone();
        // In flight from now, before the task is even polled: a process that stops right
        // after answering still waits for this run.
        let running = self.in_flight.enter(&run.id);
        tokio::spawn(async move {
            let _running = running;
            match engine.accept(&run, workflow).await {
                Err(e) => {
                    let _ = answer.send(Err(e));
                }
                Ok((enqueued, accepted)) => {
                    let _ = answer.send(Ok(enqueued));
                    if let Some(accepted) = accepted
                        && let Err(e) = engine.go_on(accepted).await
                    {
                        tracing::error!(run = %run.id, error = %e, "run processing failed");
                    }
                }
            }
            drop(hold);
        });
        async move {
            answered.await.unwrap_or_else(|_| {
                Err(EngineError::Stopped {
                    run: run_id,
                    reason: "the task accepting it ended without an answer (it panicked)".into(),
                })
            })
        }
    }

    /// Drives one claimed run until it finishes or is released.
    pub async fn process(&self, claim: Claim) -> Result<(), EngineError> {
        let _running = self.in_flight.enter(&claim.run.id);
        let workflow = self.workflow(&claim.run.id, &claim.run.version).await?;
        // A run claimed for the first time has an empty journal: skip the read.
        let journal: Vec<NewJournalEntry> = if claim.run.claims <= 1 {
            Vec::new()
        } else {
            self.store
                .journal(&claim.run.id)
                .await?
                .into_iter()
                .map(|e| e.entry)
                .collect()
        };
        self.drive(claim, workflow, journal, None).await
    }

    /// The loop of a claimed run: decide, journal, call, until the run finishes or is
    /// released. `in_hand` is a call whose intent is already journaled (with the time
    /// it was decided), to perform before deciding anything.
    async fn drive(
        &self,
        claim: Claim,
        workflow: Arc<Workflow>,
        mut journal: Vec<NewJournalEntry>,
        mut in_hand: Option<(CallPlan, i64)>,
    ) -> Result<(), EngineError> {
        let Claim { run, token } = claim;
        tracing::debug!(
            run = %run.id, workflow = %run.workflow, version = %run.version,
            environment = %run.environment, claims = run.claims, "run claimed"
        );
        let mut decisions: HashMap<String, StepDecision> = HashMap::new();
        let mut pending: Vec<NewJournalEntry> = Vec::new();
        let release = self
            .release_scope(&workflow, &run.environment, &run.workflow, &run.version)
            .await?;
        loop {
            if let Some((plan, started_at)) = in_hand.take() {
                let entry = self.call(&run, token, &plan, started_at).await;
                journal.push(entry.clone());
                pending.push(entry);
            }
            // Decisions on approval steps are read fresh each time a run waits on one.
            for entry in journal
                .iter()
                .filter(|e| e.status == airlock_store::StepStatus::Waiting)
            {
                if !decisions.contains_key(&entry.step)
                    && let Some(decision) = self.store.step_decision(&run.id, &entry.step).await?
                {
                    decisions.insert(entry.step.clone(), decision);
                }
            }
            let now = self.clock.now();
            let Decision { entries, next } = interpreter::decide(&Input {
                workflow: &workflow,
                version: &run.version,
                run: &run,
                journal: &journal,
                decisions: &decisions,
                now,
                release: release.as_ref(),
            });
            journal.extend(entries.iter().cloned());
            pending.extend(entries);
            match next {
                Next::Call(plan) => {
                    let redactor = self.runtime.redactor(&run.environment);
                    let started = interpreter::started_entry(
                        &plan,
                        Some(redactor.redact_json(&plan.args)),
                        now,
                    );
                    pending.push(started.clone());
                    journal.push(started);
                    // The intent is durable before the call: a crash from here on is
                    // seen on resume as `outcome unknown` and retried with the same key.
                    if !self
                        .commit(
                            &run,
                            token,
                            std::mem::take(&mut pending),
                            Some(now + self.options.lease_ms),
                            None,
                        )
                        .await?
                    {
                        return Ok(());
                    }
                    in_hand = Some((plan, now));
                }
                Next::Sleep { until } if until - now <= self.options.inline_sleep_ms => {
                    self.clock
                        .sleep(Duration::from_millis((until - now).max(0) as u64))
                        .await;
                }
                Next::Sleep { until } => {
                    self.commit(
                        &run,
                        token,
                        pending,
                        None,
                        Some(Settlement::Sleep { wake_at: until }),
                    )
                    .await?;
                    return Ok(());
                }
                Next::Wait { deadline, .. } => {
                    self.commit(
                        &run,
                        token,
                        pending,
                        None,
                        Some(Settlement::Wait { deadline }),
                    )
                    .await?;
                    return Ok(());
                }
                Next::Finish {
                    status,
                    output,
                    error,
                } => {
                    let redactor = self.runtime.redactor(&run.environment);
                    let settlement = Settlement::Finish {
                        status,
                        output: output.map(|o| redactor.redacted(o)),
                        error: error.map(|e| redactor.redact(&e)),
                        at: self.clock.now(),
                    };
                    self.commit(&run, token, pending, None, Some(settlement))
                        .await?;
                    return Ok(());
                }
            }
        }
    }

    /// Performs a call whose intent is journaled, and returns its result's entry.
    async fn call(
        &self,
        run: &Run,
        token: i64,
        plan: &CallPlan,
        started_at: i64,
    ) -> NewJournalEntry {
        // The lease stays short, so a dead worker's runs are taken over fast; while this
        // call is in flight, a heartbeat keeps it ours.
        let heartbeat = self.heartbeat(&run.id, token);
        let result = self.perform(run, plan).await;
        heartbeat.abort();
        let finished = self.clock.now();
        let jitter = self.randomness.unit();
        let mut entry = interpreter::result_entry(plan, started_at, finished, result, jitter);
        let redactor = self.runtime.redactor(&run.environment);
        entry.output = entry.output.map(|o| redactor.redacted(o));
        entry.error = entry.error.map(|e| redactor.redact(&e));
        if let Some(observer) = &self.observer {
            observer.called(run, &plan.connector, &entry);
        }
        entry
    }

    /// Extends the lease every third of its length until aborted.
    fn heartbeat(&self, run: &str, token: i64) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let lease_ms = self.options.lease_ms;
        let run = run.to_owned();
        tokio::spawn(async move {
            let every = Duration::from_millis((lease_ms / 3).max(1) as u64);
            loop {
                clock.sleep(every).await;
                let commit = Commit {
                    lease_until: Some(clock.now() + lease_ms),
                    ..Commit::default()
                };
                if store.commit(&run, token, commit).await.is_err() {
                    // Fenced or settled: nothing left to keep.
                    return;
                }
            }
        })
    }

    /// Commits; returns false when another worker holds the run now (we stop quietly).
    async fn commit(
        &self,
        run: &Run,
        token: i64,
        entries: Vec<NewJournalEntry>,
        lease_until: Option<i64>,
        settle: Option<Settlement>,
    ) -> Result<bool, EngineError> {
        // Only an observer needs the entries after the write; the hot path moves them.
        let observed = self
            .observer
            .as_ref()
            .map(|_| (entries.clone(), settle.clone()));
        let commit = Commit {
            entries,
            lease_until,
            settle,
        };
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| commit.entries.clone());
        let finished = match &commit.settle {
            Some(Settlement::Finish { status, .. }) => Some(*status),
            _ => None,
        };
        let unknown: Vec<&str> = commit
            .entries
            .iter()
            .filter(|e| e.status == airlock_store::StepStatus::OutcomeUnknown)
            .map(|e| e.step.as_str())
            .collect();
        for step in unknown {
            tracing::warn!(
                run = %run.id, workflow = %run.workflow, version = %run.version,
                environment = %run.environment, step,
                "outcome unknown: the process stopped after the call may have reached its target; retried with the same idempotency key"
            );
        }
        match self.store.commit(&run.id, token, commit).await {
            Ok(()) => {
                for entry in logged.iter().flatten() {
                    tracing::debug!(
                        run = %run.id, workflow = %run.workflow, version = %run.version,
                        environment = %run.environment, step = %entry.step,
                        attempt = entry.attempt, status = entry.status.as_str(),
                        "step {}", entry.status.as_str()
                    );
                }
                match finished {
                    Some(airlock_store::RunStatus::Dead) => tracing::warn!(
                        run = %run.id, workflow = %run.workflow, version = %run.version,
                        environment = %run.environment, status = "dead",
                        "run dead-lettered: a step kept failing past its attempts (`airlock runs retry` puts it back)"
                    ),
                    Some(status) => tracing::info!(
                        run = %run.id, workflow = %run.workflow, version = %run.version,
                        environment = %run.environment, status = status.as_str(),
                        "run finished"
                    ),
                    None => {}
                }
                if let (Some(observer), Some((entries, settle))) = (&self.observer, observed) {
                    if !entries.is_empty() {
                        observer.journaled(run, &entries);
                    }
                    if let Some(settlement) = &settle {
                        observer.settled(run, settlement);
                    }
                }
                Ok(true)
            }
            Err(StoreError::Fenced { .. }) => {
                tracing::warn!(run = %run.id, "lease lost to a newer claim; stopping");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn perform(&self, run: &Run, plan: &CallPlan) -> Result<Value, (String, AttemptFailure)> {
        let connector = match self
            .runtime
            .connector(&run.environment, &plan.connector)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return Err((
                    e.to_string(),
                    AttemptFailure {
                        class: e.retry_class(),
                    },
                ));
            }
        };
        let timeout = Duration::from_millis(plan.timeout_ms);
        let request = CallRequest {
            run: run.id.clone(),
            step: plan.step.clone(),
            action: plan.action.clone(),
            args: plan.args.clone(),
            idempotency_key: plan.idempotency_key.clone(),
            timeout,
        };
        // Bounded by the clock's own sleep: for the system clock that is tokio's timer held
        // in place, as `tokio::time::timeout` holds it; a simulated clock times out at an
        // exact virtual instant. The call comes first, so an answer ready at the bound wins.
        let outcome = tokio::select! {
            biased;
            answer = connector.call(&request) => Some(answer),
            () = self.clock.sleep(timeout) => None,
        };
        match outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err((
                e.to_string(),
                AttemptFailure {
                    class: e.retry_class(),
                },
            )),
            None => {
                let e = airlock_connectors::CallError::Timeout(timeout);
                Err((
                    e.to_string(),
                    AttemptFailure {
                        class: e.retry_class(),
                    },
                ))
            }
        }
    }
}
