//! `--timings`: where a run's time goes, measured from outside the engine by wrapping the
//! store and the connectors it is given (neither is changed).
//!
//! Each figure is the mean wall time one call takes as its caller sees it (queueing for the
//! store's writer or a connector's connection included), and the calls per run. With C
//! runs in flight these waits overlap, so they explain latency, not CPU.

use airlock_connectors::secrets::Redactor;
use airlock_connectors::{CallError, CallRequest, CheckContext, CheckOutcome, Connector};
use airlock_core::model::Workflow;
use airlock_engine::Runtime;
use airlock_store::{
    AuditEvent, Claim, Commit, Deployment, Enqueued, JournalEntry, NewAuditEvent, NewJournalEntry,
    NewRun, NewTestRecord, OutcomeQuery, Outcomes, Result, Run, RunFilter, SealedSecret,
    SecretName, StepDecision, Store, TestRecord, Timestamp, WorkflowVersion,
};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls and their total time, by operation.
#[derive(Default)]
pub struct Timings {
    ops: Mutex<BTreeMap<String, (u64, Duration)>>,
}

impl Timings {
    fn add(&self, op: &str, took: Duration) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let slot = ops.entry(op.to_owned()).or_default();
        slot.0 += 1;
        slot.1 += took;
    }

    /// Forgets everything measured so far.
    pub fn reset(&self) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// One line per operation.
    pub fn report(&self, runs: usize) -> Vec<String> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.iter()
            .map(|(op, (count, total))| {
                format!(
                    "{op:<26} {:>6.2}/run  mean {:>8.1} µs  sum {:>6.2} ms/run",
                    *count as f64 / runs.max(1) as f64,
                    total.as_secs_f64() * 1e6 / (*count).max(1) as f64,
                    total.as_secs_f64() * 1e3 / runs.max(1) as f64,
                )
            })
            .collect()
    }
}

async fn timed<T>(timings: &Timings, op: &str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    timings.add(op, started.elapsed());
    out
}

/// A store that times the calls the hot path makes.
pub struct TimedStore {
    pub inner: Arc<dyn Store>,
    pub timings: Arc<Timings>,
}

#[async_trait]
impl Store for TimedStore {
    async fn put_version(&self, version: &WorkflowVersion) -> Result<()> {
        self.inner.put_version(version).await
    }
    async fn version(&self, id: &str) -> Result<Option<WorkflowVersion>> {
        timed(&self.timings, "store.version", self.inner.version(id)).await
    }
    async fn set_deployment(&self, deployment: &Deployment) -> Result<Option<String>> {
        self.inner.set_deployment(deployment).await
    }
    async fn deployment(&self, environment: &str, workflow: &str) -> Result<Option<Deployment>> {
        self.inner.deployment(environment, workflow).await
    }
    async fn deployments(&self, environment: Option<&str>) -> Result<Vec<Deployment>> {
        self.inner.deployments(environment).await
    }
    async fn enqueue(&self, run: &NewRun) -> Result<Enqueued> {
        timed(&self.timings, "store.enqueue", self.inner.enqueue(run)).await
    }
    async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>> {
        let started = Instant::now();
        let claims = self.inner.claim(worker, now, lease_ms, limit).await;
        let took = started.elapsed();
        match &claims {
            Ok(c) if c.is_empty() => self.timings.add("store.claim (none due)", took),
            _ => self.timings.add("store.claim", took),
        }
        claims
    }
    async fn claim_run(
        &self,
        run: &str,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        timed(
            &self.timings,
            "store.claim_run",
            self.inner.claim_run(run, worker, now, lease_ms),
        )
        .await
    }
    async fn wait_for_work(&self, max: Duration) {
        self.inner.wait_for_work(max).await
    }
    async fn commit(&self, run: &str, token: i64, commit: Commit) -> Result<()> {
        let op = if commit.settle.is_some() {
            "store.commit (settle)"
        } else {
            "store.commit (journal)"
        };
        timed(&self.timings, op, self.inner.commit(run, token, commit)).await
    }
    async fn run(&self, id: &str) -> Result<Option<Run>> {
        timed(&self.timings, "store.run", self.inner.run(id)).await
    }
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        self.inner.runs(filter).await
    }
    async fn journal(&self, run: &str) -> Result<Vec<JournalEntry>> {
        timed(
            &self.timings,
            "store.journal (read)",
            self.inner.journal(run),
        )
        .await
    }
    async fn retry_run(&self, run: &str, now: Timestamp, marks: &[NewJournalEntry]) -> Result<()> {
        self.inner.retry_run(run, now, marks).await
    }
    async fn decide_step(&self, decision: &StepDecision) -> Result<()> {
        self.inner.decide_step(decision).await
    }
    async fn step_decision(&self, run: &str, step: &str) -> Result<Option<StepDecision>> {
        self.inner.step_decision(run, step).await
    }
    async fn put_secret(&self, secret: &SealedSecret) -> Result<()> {
        self.inner.put_secret(secret).await
    }
    async fn secret(&self, environment: &str, name: &str) -> Result<Option<SealedSecret>> {
        self.inner.secret(environment, name).await
    }
    async fn secret_names(&self) -> Result<Vec<SecretName>> {
        self.inner.secret_names().await
    }
    async fn add_record(&self, record: &NewTestRecord) -> Result<()> {
        self.inner.add_record(record).await
    }
    async fn records(&self, environment: &str) -> Result<Vec<TestRecord>> {
        self.inner.records(environment).await
    }
    async fn records_page(
        &self,
        environment: &str,
        page: airlock_store::Page,
    ) -> Result<Vec<TestRecord>> {
        self.inner.records_page(environment, page).await
    }
    async fn audit(&self, event: &NewAuditEvent) -> Result<AuditEvent> {
        self.inner.audit(event).await
    }
    async fn add_bundle(&self, bundle: &airlock_store::StoredBundle) -> Result<()> {
        self.inner.add_bundle(bundle).await
    }
    async fn latest_bundle(&self) -> Result<Option<airlock_store::StoredBundle>> {
        self.inner.latest_bundle().await
    }
    async fn audit_log(&self) -> Result<Vec<AuditEvent>> {
        self.inner.audit_log().await
    }
    async fn audit_page(
        &self,
        environment: Option<&str>,
        page: airlock_store::Page,
    ) -> Result<Vec<AuditEvent>> {
        self.inner.audit_page(environment, page).await
    }
    async fn leases(&self) -> Result<Vec<airlock_store::Lease>> {
        self.inner.leases().await
    }
    async fn take_over(
        &self,
        lease: &airlock_store::Lease,
        worker: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<Option<Claim>> {
        self.inner.take_over(lease, worker, now, lease_ms).await
    }
    async fn audit_head(&self) -> Result<Option<airlock_store::AuditHead>> {
        self.inner.audit_head().await
    }
    async fn add_evidence(
        &self,
        evidence: &airlock_store::NewEvidence,
    ) -> Result<airlock_store::Evidence> {
        self.inner.add_evidence(evidence).await
    }
    async fn evidence(
        &self,
        workflow: &str,
        version: Option<&str>,
    ) -> Result<Vec<airlock_store::Evidence>> {
        self.inner.evidence(workflow, version).await
    }
    async fn open_request(
        &self,
        request: &airlock_store::NewPromotionRequest,
    ) -> Result<airlock_store::PromotionRequest> {
        self.inner.open_request(request).await
    }
    async fn request(&self, id: &str) -> Result<Option<airlock_store::PromotionRequest>> {
        self.inner.request(id).await
    }
    async fn requests(
        &self,
        workflow: Option<&str>,
    ) -> Result<Vec<airlock_store::PromotionRequest>> {
        self.inner.requests(workflow).await
    }
    async fn open_requests(
        &self,
        workflow: Option<&str>,
    ) -> Result<Vec<airlock_store::PromotionRequest>> {
        self.inner.open_requests(workflow).await
    }
    async fn decide_request(&self, approval: &airlock_store::Approval) -> Result<()> {
        self.inner.decide_request(approval).await
    }
    async fn approvals(&self, request: &str) -> Result<Vec<airlock_store::Approval>> {
        self.inner.approvals(request).await
    }
    async fn close_request(
        &self,
        id: &str,
        status: airlock_store::RequestStatus,
        at: Timestamp,
    ) -> Result<()> {
        self.inner.close_request(id, status, at).await
    }
    async fn release(&self, release: &airlock_store::NewRelease) -> Result<airlock_store::Release> {
        self.inner.release(release).await
    }
    async fn release_by_id(&self, id: &str) -> Result<Option<airlock_store::Release>> {
        self.inner.release_by_id(id).await
    }
    async fn releases(
        &self,
        environment: &str,
        workflow: &str,
    ) -> Result<Vec<airlock_store::Release>> {
        self.inner.releases(environment, workflow).await
    }
    async fn count_runs(&self, filter: &RunFilter) -> Result<u64> {
        self.inner.count_runs(filter).await
    }
    async fn run_outcomes(&self, query: &OutcomeQuery) -> Result<Outcomes> {
        self.inner.run_outcomes(query).await
    }
    async fn prune_runs(
        &self,
        before: Timestamp,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<u64> {
        self.inner.prune_runs(before, environment, limit).await
    }
    async fn create_token(
        &self,
        token: &airlock_store::NewApiToken,
    ) -> Result<airlock_store::ApiToken> {
        self.inner.create_token(token).await
    }
    async fn token_by_hash(&self, hash: &str) -> Result<Option<airlock_store::ApiToken>> {
        self.inner.token_by_hash(hash).await
    }
    async fn tokens(&self, environment: Option<&str>) -> Result<Vec<airlock_store::ApiToken>> {
        self.inner.tokens(environment).await
    }
    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<()> {
        self.inner.revoke_token(id, at).await
    }
    async fn create_session(&self, session: &airlock_store::NewConsoleSession) -> Result<()> {
        self.inner.create_session(session).await
    }
    async fn session_by_hash(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<airlock_store::ConsoleSession>> {
        self.inner.session_by_hash(id_hash, now).await
    }
    async fn end_session(&self, id_hash: &str) -> Result<()> {
        self.inner.end_session(id_hash).await
    }
    async fn add_notifications(
        &self,
        notifications: &[airlock_store::NewNotification],
    ) -> Result<usize> {
        self.inner.add_notifications(notifications).await
    }
    async fn claim_notifications(
        &self,
        holder: &str,
        now: airlock_store::Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<airlock_store::Notification>> {
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
    ) -> Result<bool> {
        self.inner
            .settle_notification(id, holder, at, error, retry_at)
            .await
    }
    async fn notifications(
        &self,
        environment: Option<&str>,
    ) -> Result<Vec<airlock_store::Notification>> {
        self.inner.notifications(environment).await
    }
    async fn schedule_cursor(
        &self,
        environment: &str,
        workflow: &str,
    ) -> Result<Option<Timestamp>> {
        self.inner.schedule_cursor(environment, workflow).await
    }
    async fn advance_schedule(
        &self,
        environment: &str,
        workflow: &str,
        expected: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<bool> {
        self.inner
            .advance_schedule(environment, workflow, expected, to)
            .await
    }
    async fn probe_write(&self) -> Result<()> {
        self.inner.probe_write().await
    }
    fn local_file(&self) -> Option<&std::path::Path> {
        self.inner.local_file()
    }
}

/// A runtime whose connectors time their calls.
pub struct TimedRuntime<R> {
    pub inner: R,
    pub timings: Arc<Timings>,
}

#[async_trait]
impl<R: Runtime> Runtime for TimedRuntime<R> {
    async fn workflow(&self, version: &str) -> std::result::Result<Arc<Workflow>, String> {
        self.inner.workflow(version).await
    }

    async fn connector(
        &self,
        environment: &str,
        name: &str,
    ) -> std::result::Result<Arc<dyn Connector>, CallError> {
        let inner = self.inner.connector(environment, name).await?;
        Ok(Arc::new(TimedConnector {
            inner,
            op: format!("connector {name}"),
            timings: self.timings.clone(),
        }))
    }

    fn redactor(&self, environment: &str) -> Redactor {
        self.inner.redactor(environment)
    }

    fn people(&self) -> &[airlock_core::model::manifest::Person] {
        self.inner.people()
    }
}

struct TimedConnector {
    inner: Arc<dyn Connector>,
    op: String,
    timings: Arc<Timings>,
}

#[async_trait]
impl Connector for TimedConnector {
    async fn call(&self, request: &CallRequest) -> std::result::Result<Value, CallError> {
        timed(&self.timings, &self.op, self.inner.call(request)).await
    }

    async fn check(&self, context: &CheckContext) -> CheckOutcome {
        self.inner.check(context).await
    }
}
