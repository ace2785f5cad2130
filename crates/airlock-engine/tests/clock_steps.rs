//! The wall clock set an hour forward and an hour back (by an operator, or NTP stepping a
//! drifted clock) while runs are mid-call, asleep, waiting for a person, and while cron
//! ticks come due: the real [`Engine`] over a real SQLite store, with a simulated clock
//! whose wall reading steps apart from its elapsed time ([`SimulatedClock::step`]) and
//! whose sleeps wait for the test to move the time ([`SimulatedClock::manual`]), so a call
//! in flight, its heartbeat and a second worker move in the order the test says.
//!
//! What must hold: no lease is taken from a holder that is alive (its heartbeats prove
//! it), a dead holder's run is taken over within a lease whichever way the clock moved,
//! no timer fires twice, and each cron tick fires once.

use airlock_connectors::secrets::Redactor;
use airlock_connectors::{CallError, CallRequest, CheckContext, CheckOutcome, Connector};
use airlock_core::model::Workflow;
use airlock_core::schedule::{self, CatchUp};
use airlock_engine::{Clock, Engine, EngineOptions, Runtime, SimulatedClock};
use airlock_store::sqlite::SqliteStore;
use airlock_store::{NewRun, RunStatus, StepDecision, StepStatus, Store};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOUR: i64 = 3_600_000;
const LEASE_MS: i64 = 30_000;
/// 2027-01-15T08:00:00Z.
const START: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;

/// One call, with room for a long wait on a target that answers when told.
const PUSH: &str = r#"name: push
trigger: manual
steps:
  - id: push
    call: crm.request
    with: { method: POST, path: /orders }
    timeout: 1h
"#;

/// A delay, a person's approval with a deadline, then a payment retried after a backoff.
const REFUND: &str = r#"name: refund
trigger: manual
steps:
  - id: cool_off
    delay: 10m
  - id: approve
    approval:
      message: "Refund?"
      timeout: 2h
  - id: pay
    call: payments.request
    with: { method: POST, path: /refunds }
    retry: { attempts: 3, backoff: 30s, on: [status_5xx] }
"#;

/// The target: counts every call with its key; answers once opened, the first `failures`
/// of them with a 503.
#[derive(Default)]
struct Target {
    calls: Mutex<Vec<(String, String)>>,
    failures: AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
}

impl Target {
    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

struct Gated(Arc<Target>);

#[async_trait]
impl Connector for Gated {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push((request.run.clone(), request.idempotency_key.clone()));
        let mut open = self.0.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        if self
            .0
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(CallError::Status {
                status: 503,
                body: json!({ "error": "busy" }),
            });
        }
        Ok(json!({ "ok": true }))
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        CheckOutcome::ok("simulated")
    }
}

struct Workflows {
    by_version: BTreeMap<String, Arc<Workflow>>,
    target: Arc<Target>,
}

#[async_trait]
impl Runtime for Workflows {
    async fn workflow(&self, version: &str) -> Result<Arc<Workflow>, String> {
        self.by_version
            .get(version)
            .cloned()
            .ok_or_else(|| format!("no version {version}"))
    }

    async fn connector(
        &self,
        _environment: &str,
        _name: &str,
    ) -> Result<Arc<dyn Connector>, CallError> {
        Ok(Arc::new(Gated(self.target.clone())))
    }

    fn redactor(&self, _environment: &str) -> Redactor {
        Redactor::default()
    }
}

/// One store, one clock (one machine's: every process reads the same wall clock), one
/// target, and as many workers as a test starts.
struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: SimulatedClock,
    target: Arc<Target>,
    runtime: Arc<Workflows>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).unwrap());
        let target = Arc::new(Target::default());
        let by_version = [PUSH, REFUND]
            .into_iter()
            .map(|source| {
                let workflow = airlock_core::model::workflow::decode_source(source).unwrap();
                (workflow.name.value.clone(), Arc::new(workflow))
            })
            .collect();
        World {
            _dir: dir,
            store,
            clock: SimulatedClock::manual(START),
            runtime: Arc::new(Workflows {
                by_version,
                target: target.clone(),
            }),
            target,
        }
    }

    /// A worker process of its own.
    fn worker(&self, name: &str) -> Arc<Engine> {
        Arc::new(Engine::new(
            self.store.clone(),
            self.runtime.clone(),
            Arc::new(self.clock.clone()),
            EngineOptions {
                worker: name.to_owned(),
                lease_ms: LEASE_MS,
                concurrency: 4,
                inline_sleep_ms: 0,
            },
        ))
    }

    fn new_run(&self, id: &str, workflow: &str) -> NewRun {
        NewRun {
            id: id.to_owned(),
            environment: "staging".into(),
            workflow: workflow.to_owned(),
            version: workflow.to_owned(),
            trigger: json!({ "body": {} }).into(),
            dedupe_key: None,
            created_at: self.clock.now(),
        }
    }

    async fn lease(&self, run: &str) -> Option<i64> {
        self.store.run(run).await.unwrap().unwrap().lease_expires_at
    }

    async fn journal(&self, run: &str) -> Vec<(String, StepStatus)> {
        self.store
            .journal(run)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.step, e.entry.status))
            .collect()
    }
}

/// Waits (in real time, briefly) until `check` holds: for a task the time just woke to
/// finish its write.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2_500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("never: {what}");
}

/// What `worker` claims now, as its loop would; a claim it should not have made shows as
/// a second call at the target, which then never answers, so this gives up after a while.
async fn claims_now(worker: &Arc<Engine>, target: &Target, calls_before: usize) -> usize {
    let worker = worker.clone();
    let claiming = tokio::spawn(async move { worker.process_due().await });
    for _ in 0..1_000 {
        if claiming.is_finished() {
            return claiming.await.unwrap().unwrap();
        }
        if target.calls().len() > calls_before {
            claiming.abort();
            return 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the claim neither ended nor called anything");
}

/// The defect: a lease is a wall-clock instant written by its holder and compared with
/// the claimer's wall clock, so an hour forward made every live lease look expired an
/// hour ago: another worker took the run while its call was in flight (the holder
/// fenced, the call made twice). Liveness is now judged by the holder's heartbeats,
/// watched on the claimer's elapsed time, never by comparing two wall readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_lets_another_worker_steal_a_run_whose_holder_is_alive() {
    let world = World::new();
    let holder = world.worker("worker-a");
    let other = world.worker("worker-b");
    world
        .store
        .enqueue(&world.new_run("r1", "push"))
        .await
        .unwrap();
    let holding = tokio::spawn({
        let holder = holder.clone();
        async move { holder.process_due().await }
    });
    eventually("the call is in flight", || async {
        world.target.calls().len() == 1
    })
    .await;

    for step in [HOUR, -HOUR] {
        world.clock.step(step);
        // At once, before the holder's next heartbeat: its lease, written by the wall
        // clock before the step, reads an hour out.
        assert_eq!(
            claims_now(&other, &world.target, 1).await,
            0,
            "worker-b took over a live run right after the clock moved {step} ms"
        );
        // Then three leases of elapsed time with the holder alive, heartbeating every
        // third of its lease; the other worker tries to claim after each heartbeat.
        for beat in 1..=9 {
            let before = world.lease("r1").await;
            world
                .clock
                .advance(Duration::from_millis(LEASE_MS as u64 / 3));
            eventually("the holder renews its lease", || async {
                world.lease("r1").await != before
            })
            .await;
            assert_eq!(
                claims_now(&other, &world.target, 1).await,
                0,
                "worker-b took over a live run {beat} heartbeats after the clock moved {step} ms"
            );
        }
    }

    world.target.open.send_replace(true);
    assert_eq!(holding.await.unwrap().unwrap(), 1);
    let run = world.store.run("r1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.claims, 1, "claimed once, by its holder");
    assert_eq!(
        world.journal("r1").await,
        [
            ("push".to_owned(), StepStatus::Started),
            ("push".to_owned(), StepStatus::Succeeded)
        ]
    );
    assert_eq!(
        world.target.calls().len(),
        1,
        "the call reached the target once"
    );
}

/// A holder that died (its intent journaled, nothing after) is taken over within a lease
/// of elapsed time whichever way the clock moved since: an hour back used to keep its run
/// for an hour more, since its lease then ended an hour later by the wall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_back_keeps_a_dead_holders_run_from_being_taken_over_for_the_step() {
    for step in [-HOUR, HOUR] {
        let world = World::new();
        world.target.open.send_replace(true);
        let dead = world.worker("worker-a");
        let run = world.new_run("r1", "push");
        let (_, accepted) = dead
            .accept(&run, dead.workflow("r1", "push").await.unwrap())
            .await
            .unwrap();
        // The process dies right after the write: nothing of it runs again.
        drop(accepted);
        drop(dead);
        world.clock.step(step);
        let other = world.worker("worker-b");
        let mut waited = 0;
        // The target answers at once: a claim here runs to the end.
        while other.process_due().await.unwrap() == 0 {
            assert!(
                waited <= 2 * LEASE_MS,
                "a dead holder's run is still not taken over {waited} ms after the clock moved {step} ms"
            );
            world.clock.advance(Duration::from_millis(1_000));
            waited += 1_000;
        }
        assert!(
            waited >= LEASE_MS,
            "taken over after {waited} ms: before a whole lease without a heartbeat"
        );
        let stored = world.store.run("r1").await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Succeeded, "{:?}", stored.error);
        assert_eq!(
            world.journal("r1").await,
            [
                ("push".to_owned(), StepStatus::Started),
                ("push".to_owned(), StepStatus::OutcomeUnknown),
                ("push".to_owned(), StepStatus::Started),
                ("push".to_owned(), StepStatus::Succeeded)
            ]
        );
        let calls = world.target.calls();
        assert_eq!(calls.len(), 1, "called once, by the worker that took over");
    }
}

/// A delay, an approval's deadline and a retry's backoff are instants on the wall clock,
/// journaled once: however the clock moves around them, each fires once (a step forward
/// brings one sooner, a step back puts it off; neither repeats it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_during_sleeps_and_approval_waits_fire_each_timer_once() {
    let world = World::new();
    world.target.open.send_replace(true);
    world.target.failures.store(1, Ordering::SeqCst);
    let worker = world.worker("worker-a");
    world
        .store
        .enqueue(&world.new_run("r1", "refund"))
        .await
        .unwrap();
    let status = |world: &World| {
        let store = world.store.clone();
        async move { store.run("r1").await.unwrap().unwrap().status }
    };

    // Asleep for 10 minutes; an hour forward wakes it, once.
    assert_eq!(worker.process_due().await.unwrap(), 1);
    assert_eq!(status(&world).await, RunStatus::Queued);
    world.clock.step(HOUR);
    assert_eq!(worker.process_due().await.unwrap(), 1);
    assert_eq!(
        status(&world).await,
        RunStatus::Waiting,
        "now waits for a person"
    );
    // An hour back with the approval open: its deadline is not reached again.
    world.clock.step(-HOUR);
    for _ in 0..3 {
        world.clock.advance(Duration::from_millis(20 * 60_000));
        assert_eq!(worker.process_due().await.unwrap(), 0);
    }
    world
        .store
        .decide_step(&StepDecision {
            run: "r1".into(),
            step: "approve".into(),
            approved: true,
            approver: "ops".into(),
            decided_at: world.clock.now(),
        })
        .await
        .unwrap();
    // The payment fails once and sleeps out its backoff; an hour back meanwhile delays it.
    assert_eq!(worker.process_due().await.unwrap(), 1);
    assert_eq!(status(&world).await, RunStatus::Queued);
    world.clock.step(-HOUR);
    world.clock.advance(Duration::from_millis(60_000));
    assert_eq!(
        worker.process_due().await.unwrap(),
        0,
        "not due by the wall"
    );
    world.clock.step(HOUR);
    assert_eq!(worker.process_due().await.unwrap(), 1);
    for _ in 0..3 {
        world.clock.step(-HOUR);
        world
            .clock
            .advance(Duration::from_millis(LEASE_MS as u64 * 2));
        assert_eq!(worker.process_due().await.unwrap(), 0, "a finished run");
        world.clock.step(2 * HOUR);
        assert_eq!(worker.process_due().await.unwrap(), 0, "a finished run");
    }

    assert_eq!(status(&world).await, RunStatus::Succeeded);
    let journal = world.journal("r1").await;
    let count = |step: &str, status: StepStatus| {
        journal
            .iter()
            .filter(|(s, st)| s == step && *st == status)
            .count()
    };
    for step in ["cool_off", "approve"] {
        assert_eq!(count(step, StepStatus::Waiting), 1, "{step}: {journal:?}");
        assert_eq!(count(step, StepStatus::Succeeded), 1, "{step}: {journal:?}");
    }
    assert_eq!(count("pay", StepStatus::Failed), 1, "{journal:?}");
    assert_eq!(count("pay", StepStatus::Succeeded), 1, "{journal:?}");
    let calls = world.target.calls();
    assert_eq!(calls.len(), 2, "the failed attempt and its one retry");
    assert_eq!(calls[0].1, calls[1].1, "the same key");
}

/// Cron ticks as the server's scheduler fires them (`schedule::due_ticks` from the
/// store's cursor, each tick enqueued under its dedupe key, then `advance_schedule`),
/// every minute of elapsed time, the clock stepping an hour forward and back on the
/// way: every tick of every five minutes the wall clock passed through fires once, and
/// none is proposed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_fire_each_cron_tick_once() {
    const EXPRESSION: &str = "*/5 * * * *";
    let world = World::new();
    let utc = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let mut proposed: Vec<i64> = Vec::new();
    let mut latest = START;
    for minute in 0..240 {
        match minute {
            60 => world.clock.step(HOUR),
            120 => world.clock.step(-HOUR),
            150 => world.clock.step(-HOUR),
            _ => {}
        }
        let now = world.clock.now();
        latest = latest.max(now);
        let cursor = world
            .store
            .schedule_cursor("staging", "report")
            .await
            .unwrap()
            .map(utc);
        let ticks =
            schedule::due_ticks(EXPRESSION, "UTC", cursor, utc(now), CatchUp::All, 1_000).unwrap();
        for tick in &ticks {
            let tick_ms = tick.timestamp_millis();
            proposed.push(tick_ms);
            let enqueued = world
                .store
                .enqueue(&NewRun {
                    id: format!("tick-{tick_ms}-{minute}"),
                    dedupe_key: Some(format!("cron:report:{tick_ms}")),
                    ..world.new_run("", "report")
                })
                .await
                .unwrap();
            assert!(enqueued.created, "tick {tick} fired twice");
        }
        if let Some(next) = schedule::next_cursor(cursor, &ticks, utc(now)) {
            world
                .store
                .advance_schedule(
                    "staging",
                    "report",
                    cursor.map(|c| c.timestamp_millis()),
                    next.timestamp_millis(),
                )
                .await
                .unwrap();
        }
        world.clock.advance(Duration::from_millis(60_000));
    }
    let distinct: BTreeSet<i64> = proposed.iter().copied().collect();
    assert_eq!(distinct.len(), proposed.len(), "a tick proposed twice");
    // From the first reading (on a tick), every five minutes up to the latest wall time seen.
    let expected: BTreeSet<i64> = (0..)
        .map(|i| START + i * 300_000)
        .take_while(|tick| *tick <= latest)
        .collect();
    assert_eq!(distinct, expected, "each tick once");
    let runs = world
        .store
        .runs(&airlock_store::RunFilter::default())
        .await
        .unwrap();
    assert_eq!(runs.len(), expected.len());
}
