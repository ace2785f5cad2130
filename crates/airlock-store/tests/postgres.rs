//! The conformance suite on `PostgresStore`, and what only PostgreSQL has: many stores (as
//! many processes would have) claiming from one queue, migrations, waking idle workers,
//! and the copy from SQLite.
//!
//! Needs a PostgreSQL at 127.0.0.1:5432 that user `postgres` reaches without a password
//! (set `AIRLOCK_TEST_POSTGRES` to another admin URL). Each test runs in a database of its
//! own, created for it and dropped after it, also when it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_store::conformance::{self, PROPERTIES, entry, new_run};
use airlock_store::copy::sqlite_to_postgres;
use airlock_store::postgres::SCHEMA_VERSION;
use airlock_store::{
    Commit, Deployment, Error, NewAuditEvent, NewEvidence, NewRelease, NewTestRecord,
    PostgresStore, ReleaseKind, RunFilter, RunStatus, SealedSecret, Settlement, SqliteStore,
    StepDecision, StepStatus, Store, WorkflowVersion, verify_audit_chain,
};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn admin_url() -> String {
    std::env::var("AIRLOCK_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

/// A database of its own for one test: created empty, dropped when this is dropped (also
/// while a failed test unwinds), whatever connections are still open to it.
struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!(
            "airlock_t_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to the admin database (set AIRLOCK_TEST_POSTGRES?)");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        )))
        .execute(&mut admin)
        .await
        .expect("create a test database");
        let _ = admin.close().await;
        TestDatabase {
            url: with_database(&admin_url(), &name),
            name,
        }
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url)
            .await
            .expect("connect a store")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: a thread
        // with a runtime of its own drops the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url())
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let database = TestDatabase::create().await;
                conformance::$name(database.store().await).await;
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

conformance! {
    versions_are_idempotent,
    deployments_return_the_previous_version,
    enqueue_dedupes_per_environment,
    enqueue_claimed_is_a_claim_or_a_queued_run,
    json_values_round_trip,
    claim_takes_due_runs_only,
    claim_respects_limit_oldest_first,
    claim_leases_and_raises_the_token,
    claim_run_takes_that_run_alone_when_due,
    a_running_run_is_taken_over_only_through_its_unrenewed_lease,
    lease_extension_is_honoured,
    stale_token_is_fenced_and_writes_nothing,
    journal_appends_in_order,
    commit_is_atomic,
    sleep_releases_until_wake_time,
    wait_releases_until_deadline_or_decision,
    finish_is_final,
    decide_step_wakes_a_waiting_run_once,
    retry_requeues_dead_and_failed_runs_only,
    runs_filter_newest_first,
    run_outcomes_count_finished_runs,
    run_outcomes_stay_exact_across_hours_retries_and_pruning,
    prune_removes_old_finished_runs_only,
    secrets_are_scoped_to_their_environment,
    test_records_per_environment,
    record_pages_continue_newest_first,
    audit_pages_continue_newest_first,
    audit_log_is_a_hash_chain,
    audit_head_is_the_newest_event,
    concurrent_claims_are_exclusive,
    concurrent_commits_keep_one_journal_order,
    concurrent_audit_appends_form_one_chain,
    evidence_is_bound_to_a_version,
    each_approver_has_one_decision_they_may_change,
    a_release_links_to_the_previous_and_deploys,
    an_open_request_is_withdrawn_or_expires_once,
    open_requests_are_the_open_ones_newest_first,
    a_disable_release_takes_the_workflow_out,
    concurrent_releases_one_wins,
    tokens_are_found_by_hash_until_revoked,
    token_names_are_unique_among_live_tokens,
    sessions_live_until_they_expire_end_or_lose_their_token,
    run_pages_continue_after_their_cursor,
    schedule_cursor_is_a_compare_and_set,
    concurrent_schedule_advances_one_wins,
    write_probe_succeeds_and_changes_nothing,
    the_latest_bundle_is_the_one_deployed_last,
    notifications_are_kept_once_and_retried_until_delivered,
    concurrent_notification_claims_deliver_each_once,
}

#[test]
fn every_property_is_tested() {
    assert_eq!(
        LISTED, PROPERTIES,
        "tests/postgres.rs must list every conformance property"
    );
}

#[test]
fn test_urls_name_their_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

/// One claim as a worker saw it.
struct Seen {
    run: String,
    token: i64,
    claimed_at: i64,
    lease_until: i64,
    worker: String,
}

/// Four stores (four pools, as four processes would have), two workers each, claiming from
/// one queue of 500 runs on a shared clock. Every fifth claim is abandoned, as by a worker
/// that died: it is claimed again once its lease expires, and the dead worker's late
/// commit is fenced. No run is ever held by two claims whose leases overlap, and every run
/// finishes, by its last claim only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_stores_claim_one_queue_without_overlap() {
    const RUNS: usize = 500;
    const STORES: usize = 4;
    const WORKERS_PER_STORE: usize = 2;
    const LEASE: i64 = 100;
    let database = TestDatabase::create().await;
    let mut stores = Vec::new();
    for _ in 0..STORES {
        stores.push(Arc::new(database.store().await));
    }
    for i in 0..RUNS {
        stores[i % STORES]
            .enqueue(&new_run(
                &format!("run-{i:04}"),
                "staging",
                "hello",
                i as i64,
            ))
            .await
            .expect("enqueue");
    }
    let clock = Arc::new(AtomicI64::new(RUNS as i64));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..STORES * WORKERS_PER_STORE {
        let store = Arc::clone(&stores[w % STORES]);
        let clock = Arc::clone(&clock);
        workers.spawn(async move {
            let worker = format!("worker-{w}");
            let mut seen = Vec::new();
            let mut abandoned = Vec::new();
            let mut idle_rounds = 0;
            loop {
                let now = clock.fetch_add(1, Ordering::SeqCst);
                let limit = w % 3 + 1;
                let mut claims = store
                    .claim(&worker, now, LEASE, limit)
                    .await
                    .expect("claim");
                // This shared clock never steps, so a lease it reads as ended is one its
                // holder stopped renewing: what an engine learns by watching it.
                for lease in store.leases().await.expect("leases") {
                    if claims.len() >= limit {
                        break;
                    }
                    if lease.expires_at <= now
                        && let Some(claim) = store
                            .take_over(&lease, &worker, now, LEASE)
                            .await
                            .expect("take over")
                    {
                        claims.push(claim);
                    }
                }
                if claims.is_empty() {
                    let unfinished = store
                        .count_runs(&RunFilter {
                            status: Some(RunStatus::Running),
                            ..RunFilter::default()
                        })
                        .await
                        .expect("count running")
                        + store
                            .count_runs(&RunFilter {
                                status: Some(RunStatus::Queued),
                                ..RunFilter::default()
                            })
                            .await
                            .expect("count queued");
                    if unfinished == 0 {
                        break;
                    }
                    // Abandoned runs are due once the clock passes their lease.
                    idle_rounds += 1;
                    assert!(idle_rounds < 10_000, "{worker}: the queue never drained");
                    tokio::task::yield_now().await;
                    continue;
                }
                for claim in claims {
                    seen.push(Seen {
                        run: claim.run.id.clone(),
                        token: claim.token,
                        claimed_at: now,
                        lease_until: claim.run.lease_expires_at.unwrap_or(i64::MIN),
                        worker: worker.clone(),
                    });
                    if seen.len() % 5 == 0 && claim.run.claims == 1 {
                        abandoned.push((claim.run.id, claim.token));
                        continue;
                    }
                    let done = Commit {
                        entries: vec![entry("a", StepStatus::Succeeded, now)],
                        lease_until: None,
                        settle: Some(Settlement::Finish {
                            status: RunStatus::Succeeded,
                            output: None,
                            error: None,
                            at: now,
                        }),
                    };
                    match store.commit(&claim.run.id, claim.token, done).await {
                        Ok(()) => {}
                        // Eight workers move the shared clock fast: a lease may run out
                        // between a claim and its commit, and then the run is another's.
                        Err(Error::Fenced { .. }) => {
                            let lease_until = claim.run.lease_expires_at.unwrap_or(i64::MAX);
                            assert!(
                                clock.load(Ordering::SeqCst) >= lease_until,
                                "{}: fenced while its lease (until {lease_until}) still held",
                                claim.run.id
                            );
                        }
                        Err(other) => panic!("{}: commit failed: {other}", claim.run.id),
                    }
                }
            }
            (seen, abandoned, store)
        });
    }
    let mut by_run: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    let mut abandoned = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (seen, dead, store) = done.expect("worker");
        for claim in seen {
            by_run.entry(claim.run.clone()).or_default().push(claim);
        }
        abandoned.extend(dead.into_iter().map(|claim| (claim, Arc::clone(&store))));
    }
    assert_eq!(by_run.len(), RUNS, "every run was claimed");
    assert!(!abandoned.is_empty(), "some claims were abandoned");
    for (run, claims) in &mut by_run {
        claims.sort_by_key(|claim| claim.token);
        for pair in claims.windows(2) {
            assert!(
                pair[1].token > pair[0].token,
                "{run}: tokens rise with each claim"
            );
            assert!(
                pair[1].claimed_at >= pair[0].lease_until,
                "{run}: claimed by {} at {} while {} held it until {}",
                pair[1].worker,
                pair[1].claimed_at,
                pair[0].worker,
                pair[0].lease_until
            );
        }
    }
    for ((run, token), store) in abandoned {
        match store.commit(&run, token, Commit::default()).await {
            Err(Error::Fenced { .. }) => {}
            other => panic!("{run}: a dead worker's late commit must be fenced, got {other:?}"),
        }
    }
    let runs = stores[0].runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), RUNS);
    for run in runs {
        assert_eq!(run.status, RunStatus::Succeeded, "{} finished", run.id);
        assert_eq!(
            run.claims as usize,
            by_run[&run.id].len(),
            "{}: the store counts the claims the workers saw",
            run.id
        );
        assert_eq!(
            stores[1].journal(&run.id).await.expect("journal").len(),
            1,
            "{}: only the finishing claim wrote",
            run.id
        );
    }
}

/// The same delivery accepted by several servers at once (several stores, several pools)
/// creates one run; every server answers with that run's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_key_create_one_run() {
    let database = TestDatabase::create().await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(database.store().await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let store = Arc::clone(&stores[i % stores.len()]);
        tasks.spawn(async move {
            let run = airlock_store::NewRun {
                dedupe_key: Some("delivery-1".into()),
                ..new_run(&format!("r{i:02}"), "staging", "hello", i as i64)
            };
            store.enqueue(&run).await.expect("enqueue")
        });
    }
    let mut created = Vec::new();
    let mut answered = std::collections::BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let enqueued = done.expect("task");
        if enqueued.created {
            created.push(enqueued.run.clone());
        }
        answered.insert(enqueued.run);
    }
    assert_eq!(created.len(), 1, "one delivery created a run: {created:?}");
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        created,
        "every server answered with the first run's id"
    );
    assert_eq!(
        stores[0]
            .count_runs(&RunFilter::default())
            .await
            .expect("count"),
        1
    );
}

/// A refused write holds no lock once it has returned: every write on a run locks its row
/// first, and a lock left to a dropped transaction would make the next claim (which skips
/// locked rows) pass over a run it must take. Checked from another connection with
/// `NOWAIT`, which fails at once on a locked row, right after each refusal.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_write_releases_its_row_lock_before_returning() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let mut observer = PgConnection::connect(&database.url)
        .await
        .expect("connect an observer");
    for i in 0..50 {
        let id = format!("r{i:02}");
        store
            .enqueue(&new_run(&id, "staging", "hello", i))
            .await
            .expect("enqueue");
        match store.retry_run(&id, 1_000, &[]).await {
            Err(Error::Conflict(_)) => {}
            other => panic!("retrying a queued run must conflict, got {other:?}"),
        }
        assert_unlocked(&mut observer, &id, "a refused retry").await;
        let decision = StepDecision {
            run: id.clone(),
            step: "approve".into(),
            approver: "ana".into(),
            approved: true,
            decided_at: 1_000,
        };
        match store.decide_step(&decision).await {
            Err(Error::Conflict(_)) => {}
            other => panic!("deciding for a queued run must conflict, got {other:?}"),
        }
        assert_unlocked(&mut observer, &id, "a refused decision").await;
    }
}

async fn assert_unlocked(observer: &mut PgConnection, run: &str, after: &str) {
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE NOWAIT")
        .bind(run)
        .fetch_one(observer)
        .await
        .unwrap_or_else(|e| panic!("{run} is still locked after {after}: {e}"));
}

/// Migrating applies each version once: a fresh database gets all, a migrated one none,
/// several processes migrating at once apply them once between them, and a database from
/// a newer Airlock is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent() {
    let all: Vec<u32> = (1..=SCHEMA_VERSION).collect();
    let database = TestDatabase::create().await;
    assert_eq!(
        PostgresStore::migrate(&database.url)
            .await
            .expect("migrate"),
        all,
        "a fresh database gets every version"
    );
    assert_eq!(
        PostgresStore::migrate(&database.url)
            .await
            .expect("migrate again"),
        Vec::<u32>::new(),
        "an up-to-date database gets none"
    );
    let store = database.store().await;
    assert_eq!(
        store.schema_version().await.expect("schema_version"),
        SCHEMA_VERSION
    );
    store
        .enqueue(&new_run("r1", "staging", "hello", 1))
        .await
        .expect("a migrated store works");
    drop(store);
    assert_eq!(
        PostgresStore::migrate(&database.url)
            .await
            .expect("migrate a used database"),
        Vec::<u32>::new()
    );

    let racing = TestDatabase::create().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = racing.url.clone();
        tasks.spawn(async move { PostgresStore::migrate(&url).await });
    }
    let mut applied = Vec::new();
    while let Some(done) = tasks.join_next().await {
        applied.extend(done.expect("task").expect("concurrent migrate"));
    }
    assert_eq!(
        applied, all,
        "four processes migrating at once apply each version once"
    );

    pretend_a_newer_airlock_migrated(&racing.url).await;
    match PostgresStore::connect(&racing.url).await {
        Err(Error::Backend(message)) => assert!(message.contains("newer"), "{message}"),
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

/// Records a schema version past this build's, as a newer Airlock's migration would.
async fn pretend_a_newer_airlock_migrated(url: &str) {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query("INSERT INTO airlock_schema_version (version) VALUES ($1)")
        .bind(SCHEMA_VERSION as i32 + 1)
        .execute(&mut conn)
        .await
        .expect("pretend a newer Airlock migrated");
    let _ = conn.close().await;
}

/// An idle worker waiting for work wakes when another process makes a run due (an enqueue,
/// a sleep's release, a wait with a deadline, a decision, a retry), not at the end of its
/// wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_workers_wake_when_work_is_queued() {
    const LONG: Duration = Duration::from_secs(20);
    let database = TestDatabase::create().await;
    let waiter = Arc::new(database.store().await);
    let writer = database.store().await;

    // Nothing queued: the wait lasts its whole length (the first wait also starts the
    // listener, and may end early once it connects, since what came before went unheard).
    let started = Instant::now();
    waiter.wait_for_work(Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter.is_listening_for_work() {
        assert!(Instant::now() < deadline, "the listener connects");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    waiter.wait_for_work(Duration::from_millis(50)).await;
    let quiet = Instant::now();
    waiter.wait_for_work(Duration::from_millis(300)).await;
    assert!(
        quiet.elapsed() >= Duration::from_millis(290),
        "with nothing queued, a wait lasts its length ({:?}; first wait {:?})",
        quiet.elapsed(),
        started.elapsed()
    );

    let wake_on = |label: &'static str| {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move {
            let began = Instant::now();
            waiter.wait_for_work(LONG).await;
            let waited = began.elapsed();
            assert!(waited < LONG / 2, "{label}: woke after {waited:?}");
        })
    };

    let woken = wake_on("enqueue");
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer
        .enqueue(&new_run("r1", "staging", "hello", 1))
        .await
        .expect("enqueue");
    woken.await.expect("woken by an enqueue");

    let claim = writer
        .claim("w1", 10, 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let woken = wake_on("sleep");
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer
        .commit(
            "r1",
            claim.token,
            Commit {
                settle: Some(Settlement::Sleep { wake_at: 20 }),
                ..Commit::default()
            },
        )
        .await
        .expect("sleep");
    woken.await.expect("woken by a run released to the queue");

    let claim = writer
        .claim("w1", 30, 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    let woken = wake_on("wait with a deadline");
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer
        .commit(
            "r1",
            claim.token,
            Commit {
                entries: vec![entry("approve", StepStatus::Waiting, 30)],
                settle: Some(Settlement::Wait {
                    deadline: Some(10_000),
                }),
                ..Commit::default()
            },
        )
        .await
        .expect("wait");
    woken
        .await
        .expect("woken by a run released with a deadline");

    let woken = wake_on("decision");
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer
        .decide_step(&StepDecision {
            run: "r1".into(),
            step: "approve".into(),
            approver: "ana".into(),
            approved: true,
            decided_at: 40,
        })
        .await
        .expect("decide");
    woken.await.expect("woken by a decision");

    let claim = writer
        .claim("w1", 50, 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    writer
        .commit(
            "r1",
            claim.token,
            Commit {
                settle: Some(Settlement::Finish {
                    status: RunStatus::Dead,
                    output: None,
                    error: Some("gave up".into()),
                    at: 60,
                }),
                ..Commit::default()
            },
        )
        .await
        .expect("dead");
    waiter.wait_for_work(Duration::from_millis(100)).await;
    let woken = wake_on("retry");
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.retry_run("r1", 70, &[]).await.expect("retry");
    woken.await.expect("woken by a retry");
}

/// Writes one of everything through SQLite, copies it to PostgreSQL, and reads it all back
/// the same through `PostgresStore`; the audit chain still verifies; a second copy into the
/// now non-empty store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_copies_into_postgres_unchanged() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let sqlite = SqliteStore::open(&path).expect("open sqlite");
    fill(&sqlite).await;
    let before = snapshot(&sqlite).await;
    drop(sqlite);

    let database = TestDatabase::create().await;
    let report = sqlite_to_postgres(&path, &database.url)
        .await
        .expect("copy");
    assert_eq!(
        report.audit_chain,
        Ok(()),
        "the chain verifies after the copy"
    );
    for (table, rows) in [
        ("versions", 1),
        ("deployments", 2),
        ("runs", 3),
        ("journal", 4),
        ("step_decisions", 1),
        ("secrets", 1),
        ("test_records", 2),
        ("audit", 4),
        ("evidence", 2),
        ("promotion_requests", 1),
        ("approvals", 1),
        ("releases", 2),
        ("api_tokens", 1),
        ("schedule_cursors", 1),
        ("project_bundles", 1),
    ] {
        assert_eq!(report.rows(table), Some(rows), "{table}: {report:?}");
    }

    let postgres = database.store().await;
    let after = snapshot(&postgres).await;
    assert_eq!(after, before, "everything reads back the same");
    let log = postgres.audit_log().await.expect("audit_log");
    assert_eq!(
        verify_audit_chain(&log),
        Ok(()),
        "the copied chain verifies"
    );

    // The copied store goes on: ids continue after the copied ones, the chain grows.
    let next = postgres
        .add_evidence(&evidence(3, true))
        .await
        .expect("more evidence");
    assert!(
        next.id > 2,
        "identity continues after copied ids: {}",
        next.id
    );
    postgres.audit(&audit_event(9)).await.expect("audit");
    assert_eq!(
        verify_audit_chain(&postgres.audit_log().await.expect("log")),
        Ok(()),
        "the chain goes on from the copied head"
    );
    let claims = postgres
        .claim("w9", 1_000_000, 1_000, 10)
        .await
        .expect("claim");
    let mut due: Vec<&str> = claims.iter().map(|c| c.run.id.as_str()).collect();
    due.sort_unstable();
    assert_eq!(
        due,
        ["queued", "sleeping"],
        "the queue goes on where it was"
    );

    match sqlite_to_postgres(&path, &database.url).await {
        Err(Error::Conflict(message)) => assert!(message.contains("not empty"), "{message}"),
        other => panic!("copying into a non-empty store must be refused, got {other:?}"),
    }
    match sqlite_to_postgres(&dir.path().join("missing.db"), &database.url).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("a missing SQLite file must be NotFound, got {other:?}"),
    }
}

fn audit_event(n: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: n,
        actor: "ana".into(),
        action: "deploy".into(),
        environment: Some("production".into()),
        subject: format!("hello-{n}"),
        detail: json!({"n": n, "text": "héllo \u{0000} ✓", "big": u64::MAX}),
    }
}

fn evidence(n: i64, passed: bool) -> NewEvidence {
    NewEvidence {
        workflow: "hello".into(),
        version: "sha-1".into(),
        kind: "scenarios".into(),
        passed,
        summary: json!({"scenarios": n}),
        at: n,
    }
}

/// One of everything, through the trait.
async fn fill<S: Store>(store: &S) {
    store
        .add_bundle(&airlock_store::StoredBundle {
            id: "bundle-1".into(),
            environment: "staging".into(),
            files: vec![airlock_store::BundleFile {
                path: "airlock.yaml".into(),
                text: "project: hello # ünïcode\n".into(),
            }],
            deployed_by: "ci".into(),
            deployed_at: 1,
        })
        .await
        .expect("bundle");
    store
        .put_version(&WorkflowVersion {
            id: "sha-1".into(),
            workflow: "hello".into(),
            canonical: "{}".into(),
            source: "name: hello\n".into(),
            created_at: 1,
        })
        .await
        .expect("put_version");
    store
        .set_deployment(&Deployment {
            environment: "staging".into(),
            workflow: "hello".into(),
            version: "sha-1".into(),
            actor: "ana".into(),
            updated_at: 2,
        })
        .await
        .expect("set_deployment");
    for (i, id) in ["done", "sleeping", "queued"].iter().enumerate() {
        let run = airlock_store::NewRun {
            dedupe_key: Some(format!("key-{id}")),
            trigger: json!({"body": {"n": i, "text": "\u{0000}"}}).into(),
            ..new_run(id, "production", "hello", 10 + i as i64)
        };
        store.enqueue(&run).await.expect("enqueue");
    }
    let claims = store.claim("w1", 100, 60_000, 2).await.expect("claim");
    for claim in claims {
        let (entries, settle) = match claim.run.id.as_str() {
            "done" => (
                vec![
                    entry("a", StepStatus::Succeeded, 100),
                    entry("approve", StepStatus::Waiting, 101),
                ],
                Settlement::Wait { deadline: None },
            ),
            _ => (
                vec![entry("a", StepStatus::Failed, 100)],
                Settlement::Sleep { wake_at: 5_000 },
            ),
        };
        store
            .commit(
                &claim.run.id,
                claim.token,
                Commit {
                    entries,
                    lease_until: None,
                    settle: Some(settle),
                },
            )
            .await
            .expect("commit");
    }
    store
        .decide_step(&StepDecision {
            run: "done".into(),
            step: "approve".into(),
            approver: "ana".into(),
            approved: true,
            decided_at: 200,
        })
        .await
        .expect("decide_step");
    let claim = store
        .claim("w1", 300, 60_000, 1)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(claim.run.id, "done");
    store
        .commit(
            "done",
            claim.token,
            Commit {
                entries: vec![entry("b", StepStatus::Succeeded, 300)],
                lease_until: None,
                settle: Some(Settlement::Finish {
                    status: RunStatus::Succeeded,
                    output: Some(json!({"ok": [1, 2.5, null]})),
                    error: None,
                    at: 301,
                }),
            },
        )
        .await
        .expect("finish");
    store
        .put_secret(&SealedSecret {
            environment: "production".into(),
            name: "API_KEY".into(),
            sealed: vec![0, 1, 2, 255],
            fingerprint: Some("fp".into()),
            updated_at: 3,
        })
        .await
        .expect("put_secret");
    for n in 0..2 {
        store
            .add_record(&NewTestRecord {
                environment: "staging".into(),
                run: "r".into(),
                step: "s".into(),
                connector: "http".into(),
                action: "request".into(),
                arguments: json!({"n": n}),
                idempotency_key: None,
                at: 4 + n,
            })
            .await
            .expect("add_record");
    }
    store
        .add_evidence(&evidence(1, false))
        .await
        .expect("evidence");
    store
        .add_evidence(&evidence(2, true))
        .await
        .expect("evidence");
    store
        .open_request(&airlock_store::NewPromotionRequest {
            id: "req1".into(),
            workflow: "hello".into(),
            version: "sha-1".into(),
            from_environment: "staging".into(),
            to_environment: "production".into(),
            author: "dev".into(),
            created_at: 5,
        })
        .await
        .expect("open_request");
    store
        .decide_request(&airlock_store::Approval {
            request: "req1".into(),
            approver: "ops".into(),
            approved: true,
            reason: Some("fine".into()),
            at: 6,
        })
        .await
        .expect("decide_request");
    let release = |id: &str, kind, request: Option<&str>, expected: Option<&str>, at| NewRelease {
        id: id.into(),
        environment: "production".into(),
        workflow: "hello".into(),
        version: "sha-1".into(),
        kind,
        request: request.map(str::to_owned),
        author: "dev".into(),
        approvers: vec!["ops".into()],
        evidence: json!({"verdict": "ok"}),
        expected_current: expected.map(str::to_owned),
        at,
    };
    store
        .release(&release(
            "rel1",
            ReleaseKind::Promotion,
            Some("req1"),
            None,
            7,
        ))
        .await
        .expect("release");
    store
        .release(&release(
            "rel2",
            ReleaseKind::Rollback,
            None,
            Some("rel1"),
            8,
        ))
        .await
        .expect("rollback");
    store
        .create_token(&airlock_store::NewApiToken {
            id: "tok_1".into(),
            name: "ci".into(),
            environment: "staging".into(),
            role: "runner".into(),
            secret_hash: airlock_store::ApiToken::hash_secret("secret"),
            created_by: "ana".into(),
            created_at: 9,
        })
        .await
        .expect("create_token");
    assert!(
        store
            .advance_schedule("production", "nightly", None, 60_000)
            .await
            .expect("advance_schedule")
    );
    for n in 0..4 {
        store.audit(&audit_event(n)).await.expect("audit");
    }
}

/// Everything a store can tell, for comparing two stores.
async fn snapshot<S: Store>(store: &S) -> String {
    let mut out = String::new();
    let runs = store.runs(&RunFilter::default()).await.expect("runs");
    out += &format!("{runs:?}\n");
    for run in &runs {
        out += &format!("{:?}\n", store.journal(&run.id).await.expect("journal"));
    }
    out += &format!("{:?}\n", store.version("sha-1").await.expect("version"));
    out += &format!("{:?}\n", store.latest_bundle().await.expect("bundle"));
    out += &format!(
        "{:?}\n",
        store.deployments(None).await.expect("deployments")
    );
    out += &format!(
        "{:?}\n",
        store
            .step_decision("done", "approve")
            .await
            .expect("decision")
    );
    out += &format!(
        "{:?}\n",
        store.secret("production", "API_KEY").await.expect("secret")
    );
    out += &format!("{:?}\n", store.secret_names().await.expect("secret_names"));
    out += &format!("{:?}\n", store.records("staging").await.expect("records"));
    out += &format!(
        "{:?}\n",
        store.evidence("hello", None).await.expect("evidence")
    );
    out += &format!("{:?}\n", store.requests(None).await.expect("requests"));
    out += &format!("{:?}\n", store.approvals("req1").await.expect("approvals"));
    out += &format!(
        "{:?}\n",
        store
            .releases("production", "hello")
            .await
            .expect("releases")
    );
    out += &format!("{:?}\n", store.tokens(None).await.expect("tokens"));
    out += &format!(
        "{:?}\n",
        store
            .schedule_cursor("production", "nightly")
            .await
            .expect("cursor")
    );
    out += &format!("{:?}\n", store.audit_log().await.expect("audit_log"));
    out
}

/// Regression (a store that cannot be reached is reported slowly): opening a store on a
/// port nothing listens on waited out the pool's 30 s acquire timeout, then said "pool
/// timed out". It says "connection refused" now, naming where, at the first attempt
/// (10 s is a generous bound for one refused TCP connect on loopback).
#[tokio::test]
async fn opening_an_unreachable_postgres_says_connection_refused_at_once() {
    let started = Instant::now();
    let refused = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test").await;
    let elapsed = started.elapsed();
    match refused {
        Err(Error::Backend(message)) => {
            assert!(message.contains("connection refused"), "{message}");
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(!message.contains("pool timed out"), "{message}");
        }
        other => panic!("nothing listens on port 1, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    match PostgresStore::migrate("postgres://postgres@127.0.0.1:1/test").await {
        Err(Error::Backend(message)) => {
            assert!(message.contains("connection refused"), "{message}")
        }
        other => panic!("migrate must say the same, got {other:?}"),
    }
}

/// A serving process rides out a database that is not up yet for `connect_retry`, then
/// says why as plainly; a failure that does not pass (a bad password, no such database)
/// is not retried.
#[tokio::test]
async fn a_serving_process_retries_a_refused_connection_within_its_bound_only() {
    let options = airlock_store::PostgresOptions {
        connect_retry: Duration::from_millis(700),
        ..airlock_store::PostgresOptions::default()
    };
    let started = Instant::now();
    match PostgresStore::connect_with("postgres://postgres@127.0.0.1:1/test", options.clone()).await
    {
        Err(Error::Backend(message)) => {
            assert!(message.contains("connection refused"), "{message}")
        }
        other => panic!("nothing listens on port 1, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it tried again: {:?}",
        started.elapsed()
    );
    let missing = with_database(&admin_url(), "airlock_no_such_database");
    match PostgresStore::connect_with(&missing, options).await {
        Err(Error::Backend(message)) => assert!(message.contains("does not exist"), "{message}"),
        other => panic!("a missing database is refused, got {other:?}"),
    }
}

/// Readiness asks the store for a write: a database another process migrated past this
/// build's schema fails the probe, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_probe_fails_when_the_schema_is_not_this_builds() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    store
        .probe_write()
        .await
        .expect("a fresh store takes a write");
    pretend_a_newer_airlock_migrated(&database.url).await;
    match store.probe_write().await {
        Err(Error::Backend(message)) => assert!(message.contains("schema version"), "{message}"),
        other => panic!("the probe must fail on a newer schema, got {other:?}"),
    }
}
