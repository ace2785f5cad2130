//! Notifications, durable: every use case that reports an event writes its deliveries to
//! the store's outbox right after its own write ([`emit`]), and a [`Deliverer`] in
//! `airlock serve` and `airlock worker` sends them through the environment's own
//! bindings, retrying with backoff until each is delivered.
//!
//! **Invariant: a notification never blocks or fails the action it reports.** [`emit`]
//! cannot fail (a store that refuses the outbox write is logged, the action stands), and
//! nothing is sent in the action's path: the deliverer sends later, from the outbox.
//! Each delivery's id is the event's id and its target, so an event reported twice is
//! delivered once, and the store's claim (PostgreSQL: `FOR UPDATE SKIP LOCKED`) keeps two
//! deliverers on one store from sending the same row. A message is built by
//! `airlock_core::notify` from names, ids and hashes only, and passes through the
//! environment's [`Redactor`](airlock_connectors::secrets::Redactor) before it is sent.

use airlock_connectors::CallRequest;
use airlock_core::model::Manifest;
use airlock_core::notify::{Event, EventKind, deliveries};
use airlock_core::release::{Release, ReleaseKind};
use airlock_engine::Clock;
use airlock_engine::executor::Observer;
use airlock_engine::owners::ran_on_release;
use airlock_engine::runtime::Runtime;
use airlock_store::{NewJournalEntry, NewNotification, Run, RunStatus, Settlement, Store};
use std::sync::Arc;
use std::time::Duration;

/// How long a deliverer holds the notifications it claimed: past it, another may send them.
pub const CLAIM_MS: i64 = 60_000;
/// The first retry's wait; each further one doubles it, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: i64 = 1_000;
/// The longest wait between two attempts.
pub const MAX_BACKOFF_MS: i64 = 5 * 60_000;
/// One attempt's bound.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `event`'s deliveries (one per target of its environment that carries it) to the
/// outbox. Never fails: the action it reports has happened whatever the outbox says.
pub async fn emit(
    store: &dyn Store,
    manifest: &Manifest,
    event: &Event,
    discriminator: &str,
    now: i64,
) {
    let id = event.id(discriminator);
    let rows: Vec<NewNotification> = deliveries(manifest, event)
        .into_iter()
        .map(|d| NewNotification {
            id: format!("{id}/{}", d.target),
            event: event.kind.as_str().to_owned(),
            environment: event.environment.clone(),
            target: d.target,
            action: d.action,
            args: d.args,
            created_at: now,
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    if let Err(error) = store.add_notifications(&rows).await {
        tracing::warn!(event = %id, %error, "a notification could not be written to the outbox");
    }
}

/// Who an event about a run of `run` goes to: the owners of the release it ran on
/// (`airlock_engine::owners`, the lookup `{{ release.* }}` reads too), or who deployed it
/// where nothing was released (an unprotected environment).
pub async fn run_owners(store: &dyn Store, run: &Run) -> Vec<String> {
    ran_on_release(store, &run.environment, &run.workflow, &run.version)
        .await
        .map(|r| r.owners)
        .unwrap_or_default()
}

/// The failure-rate event of the release `run` ran on, when it is the current release and
/// its runs now fail more often than the previous release's did while it was current
/// (`airlock_core::release::fails_more` over the windows the release history reports:
/// `promotion::window`). Its owners are told once per release (the event's id is the
/// release's): the first time it crosses; a release that falls back under the line and
/// rises again is not told twice, as its owner knows and `rollback` is the answer.
pub async fn failure_rate_crossed(store: &dyn Store, run: &Run) -> Option<Event> {
    let history = store.releases(&run.environment, &run.workflow).await.ok()?;
    let current = history.first()?;
    history.get(1)?;
    if current.release.version != run.version || !current.release.kind.runs_version() {
        return None;
    }
    let window = |i| crate::promotion::window(store, &run.environment, &run.workflow, &history, i);
    let now = window(0).await.ok()?;
    let before = window(1).await.ok()?;
    if !airlock_core::release::fails_more(now, before) {
        return None;
    }
    let r = &current.release;
    Some(Event {
        kind: EventKind::FailureRate,
        environment: r.environment.clone(),
        workflow: r.workflow.clone(),
        version: r.version.clone(),
        actor: "airlock".into(),
        recipients: airlock_core::release::ran_on(&history, &r.version)
            .unwrap_or(current)
            .owners(),
        subject: r.id.clone(),
        from: None,
        step: None,
        detail: Some(format!(
            "{} of {} runs failed, against {} of {} for the release before",
            now.1, now.0, before.1, before.0
        )),
    })
}

/// The approvers of `environment`, but `except` (an author never approves their own).
pub fn approvers(manifest: &Manifest, environment: &str, except: &str) -> Vec<String> {
    manifest
        .environment(environment)
        .map(|e| {
            e.approvers
                .iter()
                .map(|a| a.value.clone())
                .filter(|a| a != except)
                .collect()
        })
        .unwrap_or_default()
}

/// The event of a release (promotion or rollback), to its owners.
pub fn release_event(release: &Release, actor: &str) -> Event {
    let r = &release.release;
    Event {
        kind: if r.kind == ReleaseKind::Rollback {
            EventKind::RolledBack
        } else {
            EventKind::Released
        },
        environment: r.environment.clone(),
        workflow: r.workflow.clone(),
        version: r.version.clone(),
        actor: actor.to_owned(),
        recipients: release.owners(),
        subject: r.id.clone(),
        from: None,
        step: None,
        detail: None,
    }
}

/// Sends what the outbox holds, through each environment's own connectors.
pub struct Deliverer {
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    clock: Arc<dyn Clock>,
    holder: String,
}

impl Deliverer {
    /// A deliverer claiming as `holder` (unique per process: the worker's name).
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        clock: Arc<dyn Clock>,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            store,
            runtime,
            clock,
            holder: holder.into(),
        }
    }

    /// One pass: claims what is due and attempts each. Returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize, airlock_store::Error> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_notifications(&self.holder, now, CLAIM_MS, 16)
            .await?;
        let mut delivered = 0;
        for item in claimed {
            let n = &item.notification;
            if let Some(stale) = self.stale(n).await {
                // Never due again: kept with why it was not sent, for `notifications`.
                let _ = self
                    .store
                    .settle_notification(&n.id, &self.holder, now, Some(&stale), i64::MAX)
                    .await;
                continue;
            }
            let outcome = self.attempt(n).await;
            let at = self.clock.now();
            let backoff = FIRST_BACKOFF_MS
                .saturating_mul(1_i64 << item.attempts.min(20))
                .min(MAX_BACKOFF_MS);
            let error = outcome.err();
            if let Some(error) = &error {
                tracing::warn!(notification = %n.id, target = %n.target, environment = %n.environment,
                    attempts = item.attempts + 1, %error, "a notification was not delivered; it is retried");
            }
            match self
                .store
                .settle_notification(&n.id, &self.holder, at, error.as_deref(), at + backoff)
                .await
            {
                Ok(true) if error.is_none() => delivered += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(notification = %n.id, error = %e, "a delivery could not be recorded")
                }
            }
        }
        Ok(delivered)
    }

    /// Why a notification written ahead of its time is no longer true, if it is not: a
    /// timeout approaching of a run that no longer waits for that deadline (decided,
    /// timed out, retried) is not sent.
    async fn stale(&self, n: &NewNotification) -> Option<String> {
        let (run, deadline) = airlock_core::notify::timeout_of(&n.id)?;
        let waits = match self.store.run(run).await {
            Ok(Some(r)) => r.status == RunStatus::Waiting && r.wake_at == Some(deadline),
            Ok(None) => false,
            // Unknown: sent, as a warning that may be late beats one that is lost.
            Err(_) => true,
        };
        (!waits).then(|| {
            "not sent: the run no longer waits at that step for that deadline (decided or over)"
                .to_owned()
        })
    }

    async fn attempt(&self, n: &NewNotification) -> Result<(), String> {
        let connector = self
            .runtime
            .connector(&n.environment, &n.target)
            .await
            .map_err(|e| self.runtime.redactor(&n.environment).redact(&e.to_string()))?;
        // The connector is built now, so the redactor knows the binding's secrets.
        let redactor = self.runtime.redactor(&n.environment);
        let request = CallRequest {
            run: "notification".into(),
            step: n.target.clone(),
            action: n.action.clone(),
            args: redactor.redact_json(&n.args),
            idempotency_key: n.id.clone(),
            timeout: ATTEMPT_TIMEOUT,
        };
        connector
            .call(&request)
            .await
            .map(|_| ())
            .map_err(|e| redactor.redact(&e.to_string()))
    }

    /// Delivers until `stop` turns true: a pass, then a pause of `every`.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>, every: Duration) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "the notification outbox could not be read");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// The engine's observer that reports runs: a run that waits at an approval step (to the
/// environment's approvers), fails or is dead-lettered (to its release's owners). It passes
/// everything on to the observer it wraps. Observers are called in the engine's path, so
/// the report is written by a task of its own, after the run's own write committed.
pub struct RunAlerts {
    store: Arc<dyn Store>,
    manifest: Arc<Manifest>,
    clock: Arc<dyn Clock>,
    inner: Option<Arc<dyn Observer>>,
}

impl RunAlerts {
    /// Reports runs of the environments of `manifest`, then calls `inner`.
    pub fn new(
        store: Arc<dyn Store>,
        manifest: Arc<Manifest>,
        clock: Arc<dyn Clock>,
        inner: Option<Arc<dyn Observer>>,
    ) -> Self {
        Self {
            store,
            manifest,
            clock,
            inner,
        }
    }
}

/// The event a settled run reports, if any, without its recipients.
fn run_event(run: &Run, settlement: &Settlement, manifest: &Manifest) -> Option<Event> {
    let (kind, step, detail) = match settlement {
        Settlement::Finish {
            status: RunStatus::Failed,
            error,
            ..
        } => (EventKind::RunFailed, None, error.clone()),
        Settlement::Finish {
            status: RunStatus::Dead,
            error,
            ..
        } => (EventKind::RunDeadLettered, None, error.clone()),
        Settlement::Wait { .. } => (EventKind::StepWaiting, None, None),
        _ => return None,
    };
    manifest.environment(&run.environment)?;
    Some(Event {
        kind,
        environment: run.environment.clone(),
        workflow: run.workflow.clone(),
        version: run.version.clone(),
        actor: "airlock".into(),
        recipients: Vec::new(),
        subject: run.id.clone(),
        from: None,
        step,
        detail,
    })
}

impl Observer for RunAlerts {
    fn journaled(&self, run: &Run, entries: &[NewJournalEntry]) {
        if let Some(inner) = &self.inner {
            inner.journaled(run, entries);
        }
    }

    fn settled(&self, run: &Run, settlement: &Settlement) {
        if let Some(inner) = &self.inner {
            inner.settled(run, settlement);
        }
        let Some(mut event) = run_event(run, settlement, &self.manifest) else {
            return;
        };
        let deadline = match settlement {
            Settlement::Wait { deadline } => *deadline,
            _ => None,
        };
        let (store, manifest, clock, run) = (
            self.store.clone(),
            self.manifest.clone(),
            self.clock.clone(),
            run.clone(),
        );
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let mut waiting_since = None;
            event.recipients = match event.kind {
                EventKind::StepWaiting => {
                    // The step it waits on: its journal's last `waiting` entry.
                    let waiting = store.journal(&run.id).await.ok().and_then(|journal| {
                        journal
                            .iter()
                            .rev()
                            .find(|e| e.entry.status == airlock_store::StepStatus::Waiting)
                            .map(|e| (e.entry.step.clone(), e.entry.started_at))
                    });
                    waiting_since = waiting.as_ref().map(|w| w.1);
                    event.step = waiting.map(|w| w.0);
                    approvers(&manifest, &run.environment, "")
                }
                _ => run_owners(store.as_ref(), &run).await,
            };
            // A run waits at most once per step, and fails or dies once.
            let discriminator = event.step.clone().unwrap_or_default();
            let now = clock.now();
            emit(store.as_ref(), &manifest, &event, &discriminator, now).await;
            if let (Some(deadline), Some(since), Some(step)) =
                (deadline, waiting_since, event.step.clone())
            {
                // Written now, due when the timeout is near: durable from the start, so
                // a restart loses nothing and sends nothing twice (its id is the wait's);
                // the deliverer drops it if the run no longer waits by then.
                let mut soon = event.clone();
                soon.kind = EventKind::StepTimeoutApproaching;
                soon.detail = Some(format!(
                    "it times out at {} unless an approver decides",
                    airlock_core::time::rfc3339(deadline)
                ));
                let near = airlock_core::notify::timeout_near(since, deadline).max(now);
                let discriminator = airlock_core::notify::timeout_discriminator(&step, deadline);
                emit(store.as_ref(), &manifest, &soon, &discriminator, near).await;
            }
            if matches!(
                event.kind,
                EventKind::RunFailed | EventKind::RunDeadLettered
            ) && let Some(crossed) = failure_rate_crossed(store.as_ref(), &run).await
            {
                // Once per release: its id is the event's subject.
                emit(store.as_ref(), &manifest, &crossed, "", now).await;
            }
        });
    }

    fn called(&self, run: &Run, connector: &str, result: &NewJournalEntry) {
        if let Some(inner) = &self.inner {
            inner.called(run, connector, result);
        }
    }
}
