//! The conformance suite on `SqliteStore`, and what only SQLite has: a file that is closed
//! and reopened, migrations, raw tampering, two stores on one file.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use airlock_store::conformance::{self, PROPERTIES, entry, new_run};
use airlock_store::sqlite::SCHEMA_VERSION;
use airlock_store::{
    Commit, Deployment, Durability, Error, NewAuditEvent, NewTestRecord, RunFilter, RunStatus,
    SealedSecret, Settlement, SqliteOptions, SqliteStore, StepDecision, StepStatus, Store,
    WorkflowVersion, verify_audit_chain,
};
use serde_json::json;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("airlock.db")).expect("open a new store");
    (dir, store)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_dir, store) = fresh();
                conformance::$name(store).await;
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
        "tests/sqlite.rs must list every conformance property"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes_on_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let count = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("store-{n}.db"));
        async move { SqliteStore::open(&path).expect("open a new store") }
    })
    .await;
    assert_eq!(
        count.into_inner(),
        PROPERTIES.len(),
        "one fresh store per property"
    );
}

/// Fills a store with one of everything; returns the ids of its runs.
async fn fill(store: &SqliteStore) {
    let version = WorkflowVersion {
        id: "sha-1".into(),
        workflow: "hello".into(),
        canonical: "{}".into(),
        source: "name: hello\n".into(),
        created_at: 1,
    };
    store.put_version(&version).await.expect("put_version");
    let deployment = Deployment {
        environment: "production".into(),
        workflow: "hello".into(),
        version: "sha-1".into(),
        actor: "ana".into(),
        updated_at: 2,
    };
    store
        .set_deployment(&deployment)
        .await
        .expect("set_deployment");
    for (i, id) in ["done", "waiting", "sleeping", "running", "queued"]
        .iter()
        .enumerate()
    {
        let run = airlock_store::NewRun {
            dedupe_key: Some(format!("key-{id}")),
            ..new_run(id, "production", "hello", 10 + i as i64)
        };
        store.enqueue(&run).await.expect("enqueue");
    }
    let claims = store.claim("w1", 100, 60_000, 4).await.expect("claim");
    assert_eq!(claims.len(), 4);
    for claim in claims {
        let settle = match claim.run.id.as_str() {
            "done" => Some(Settlement::Finish {
                status: RunStatus::Succeeded,
                output: Some(json!({"ok": 1})),
                error: None,
                at: 101,
            }),
            "waiting" => Some(Settlement::Wait { deadline: None }),
            "sleeping" => Some(Settlement::Sleep { wake_at: 5_000 }),
            _ => None,
        };
        let mut entries = vec![entry("a", StepStatus::Succeeded, 100)];
        if claim.run.id == "waiting" {
            entries.push(entry("approve", StepStatus::Waiting, 100));
        }
        let commit = Commit {
            entries,
            lease_until: None,
            settle,
        };
        store
            .commit(&claim.run.id, claim.token, commit)
            .await
            .expect("commit");
    }
    store
        .decide_step(&StepDecision {
            run: "waiting".into(),
            step: "approve".into(),
            approver: "ana".into(),
            approved: true,
            decided_at: 200,
        })
        .await
        .expect("decide_step");
    store
        .put_secret(&SealedSecret {
            environment: "production".into(),
            name: "API_KEY".into(),
            sealed: vec![1, 2, 3],
            fingerprint: Some("fp".into()),
            updated_at: 3,
        })
        .await
        .expect("put_secret");
    store
        .add_record(&NewTestRecord {
            environment: "staging".into(),
            run: "r".into(),
            step: "s".into(),
            connector: "http".into(),
            action: "request".into(),
            arguments: json!({"url": "https://example.test"}),
            idempotency_key: None,
            at: 4,
        })
        .await
        .expect("add_record");
    for n in 0..3 {
        store.audit(&audit_event(n)).await.expect("audit");
    }
}

fn audit_event(n: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: n,
        actor: "ana".into(),
        action: "deploy".into(),
        environment: Some("production".into()),
        subject: format!("hello-{n}"),
        detail: json!({"n": n}),
    }
}

/// Everything a store can tell, for comparing two opens of one file.
async fn snapshot(store: &SqliteStore) -> String {
    let mut out = String::new();
    let runs = store.runs(&RunFilter::default()).await.expect("runs");
    out += &format!("{runs:?}\n");
    for run in &runs {
        out += &format!("{:?}\n", store.journal(&run.id).await.expect("journal"));
    }
    out += &format!("{:?}\n", store.version("sha-1").await.expect("version"));
    out += &format!(
        "{:?}\n",
        store.deployments(None).await.expect("deployments")
    );
    out += &format!(
        "{:?}\n",
        store
            .step_decision("waiting", "approve")
            .await
            .expect("decision")
    );
    out += &format!(
        "{:?}\n",
        store.secret("production", "API_KEY").await.expect("secret")
    );
    out += &format!("{:?}\n", store.secret_names().await.expect("secret_names"));
    out += &format!("{:?}\n", store.records("staging").await.expect("records"));
    out += &format!("{:?}\n", store.audit_log().await.expect("audit_log"));
    out
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let store = SqliteStore::open(&path).expect("open");
    fill(&store).await;
    let before = snapshot(&store).await;
    drop(store);
    let wal = dir.path().join("airlock.db-wal");
    assert!(
        !wal.exists(),
        "a closed store leaves one file: its WAL is checkpointed away"
    );

    let store = SqliteStore::open(&path).expect("reopen");
    let after = snapshot(&store).await;
    assert_eq!(after, before, "everything written is there after reopening");
    assert_eq!(
        store.runs(&RunFilter::default()).await.expect("runs").len(),
        5
    );
    // The queue goes on where it was: the running run's lease and the sleeping run's wake.
    let leases: Vec<String> = store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.run)
        .collect();
    assert_eq!(
        leases,
        ["running"],
        "the running run's lease survives reopening"
    );
    let due: BTreeSet<String> = store
        .claim("w2", 1_000_000, 1_000, 10)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.run.id)
        .collect();
    let expected: BTreeSet<String> = ["waiting", "sleeping", "queued"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(due, expected, "the queue survives reopening");
    let again = store
        .enqueue(&airlock_store::NewRun {
            dedupe_key: Some("key-done".into()),
            ..new_run("other", "production", "hello", 1)
        })
        .await
        .expect("enqueue");
    assert!(!again.created, "dedupe keys survive reopening");
}

#[tokio::test]
async fn migrates_an_empty_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    std::fs::File::create(&path).expect("an empty file");
    let store = SqliteStore::open(&path).expect("open an empty file");
    assert_eq!(
        store.schema_version().await.expect("schema_version"),
        SCHEMA_VERSION
    );
    fill(&store).await;
    drop(store);

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let version: u32 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(
        version, SCHEMA_VERSION,
        "the file records its schema version"
    );
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal", "the file stays in WAL mode");
    let tables: BTreeSet<String> = raw
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("tables");
    for table in [
        "versions",
        "deployments",
        "runs",
        "journal",
        "step_decisions",
        "secrets",
        "test_records",
        "api_tokens",
        "schedule_cursors",
    ] {
        assert!(tables.contains(table), "table {table} exists: {tables:?}");
    }
    drop(raw);
    // Opening an up-to-date file again migrates nothing and loses nothing.
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.audit_log().await.expect("audit_log").len(), 3);
}

#[tokio::test]
async fn refuses_a_file_from_a_newer_airlock() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("set version");
    drop(raw);
    match SqliteStore::open(&path) {
        Err(Error::Backend(message)) => assert!(message.contains("newer"), "{message}"),
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_audit_rows_are_detected() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let store = SqliteStore::open(&path).expect("open");
    for n in 0..4 {
        store.audit(&audit_event(n)).await.expect("audit");
    }
    assert_eq!(
        verify_audit_chain(&store.audit_log().await.expect("log")),
        Ok(())
    );
    drop(store);

    let tamper = |sql: &str| {
        let raw = rusqlite::Connection::open(&path).expect("raw open");
        raw.execute_batch(sql).expect("tamper");
    };
    let verify = || async {
        let store = SqliteStore::open(&path).expect("reopen");
        verify_audit_chain(&store.audit_log().await.expect("log"))
    };

    tamper("UPDATE audit SET actor = 'mallory' WHERE seq = 2");
    assert_eq!(
        verify().await,
        Err(2),
        "an edited field is detected at its event"
    );
    tamper("UPDATE audit SET actor = 'ana' WHERE seq = 2");
    assert_eq!(verify().await, Ok(()), "restored, the chain verifies again");

    tamper("UPDATE audit SET detail = '{\"n\":99}' WHERE seq = 3");
    assert_eq!(verify().await, Err(3), "an edited detail is detected");
    tamper("UPDATE audit SET detail = '{\"n\":2}' WHERE seq = 3");

    tamper("UPDATE audit SET hash = 'ffff' WHERE seq = 1");
    assert_eq!(verify().await, Err(1), "a rewritten hash is detected");
    tamper("UPDATE audit SET hash = (SELECT prev_hash FROM audit WHERE seq = 2) WHERE seq = 1");

    tamper("DELETE FROM audit WHERE seq = 2");
    assert_eq!(
        verify().await,
        Err(3),
        "a deleted event is detected at the next one"
    );
}

/// Two stores on one file, as two processes would have: claims stay exclusive, the audit
/// chain stays one, the file stays sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file() {
    const RUNS: usize = 300;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let a = Arc::new(SqliteStore::open(&path).expect("open a"));
    let b = Arc::new(SqliteStore::open(&path).expect("open b"));
    for i in 0..RUNS {
        let store = if i % 2 == 0 { &a } else { &b };
        store
            .enqueue(&new_run(
                &format!("run-{i:04}"),
                "staging",
                "hello",
                i as i64,
            ))
            .await
            .expect("enqueue");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = Arc::clone(if w % 2 == 0 { &a } else { &b });
        tasks.spawn(async move {
            let worker = format!("worker-{w}");
            let mut got = Vec::new();
            loop {
                let claims = store
                    .claim(&worker, 10_000, 600_000, 3)
                    .await
                    .expect("claim");
                if claims.is_empty() {
                    return got;
                }
                for claim in claims {
                    let commit = Commit {
                        entries: vec![entry("a", StepStatus::Succeeded, 10_000)],
                        lease_until: None,
                        settle: Some(Settlement::Finish {
                            status: RunStatus::Succeeded,
                            output: None,
                            error: None,
                            at: 10_001,
                        }),
                    };
                    store
                        .commit(&claim.run.id, claim.token, commit)
                        .await
                        .expect("commit");
                    store.audit(&audit_event(claim.token)).await.expect("audit");
                    got.push((claim.run.id, claim.token));
                }
            }
        });
    }
    let mut seen = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for (id, token) in done.expect("worker") {
            assert_eq!(token, 1, "{id} was claimed before");
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(
        seen.len(),
        RUNS,
        "every run claimed once across both stores"
    );
    for store in [&a, &b] {
        let runs = store.runs(&RunFilter::default()).await.expect("runs");
        assert_eq!(runs.len(), RUNS);
        assert!(
            runs.iter()
                .all(|r| r.status == RunStatus::Succeeded && r.claims == 1)
        );
        let log = store.audit_log().await.expect("audit_log");
        assert_eq!(log.len(), RUNS, "one audit event per run");
        assert_eq!(
            verify_audit_chain(&log),
            Ok(()),
            "two writers still form one chain"
        );
    }
    drop((a, b));
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "the file is sound");
}

/// In one batch, a fenced commit is rolled back to its savepoint and the others are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_request_does_not_undo_its_batch() {
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    for i in 0..50 {
        store
            .enqueue(&new_run(&format!("r{i:02}"), "staging", "hello", i))
            .await
            .expect("enqueue");
    }
    let claims = store.claim("w1", 1_000, 60_000, 50).await.expect("claim");
    assert_eq!(claims.len(), 50);
    let mut tasks = tokio::task::JoinSet::new();
    for claim in claims {
        for (token, step) in [(claim.token, "good"), (claim.token + 7, "stale")] {
            let (store, id) = (Arc::clone(&store), claim.run.id.clone());
            tasks.spawn(async move {
                let commit = Commit {
                    entries: vec![entry(step, StepStatus::Succeeded, 1_001)],
                    ..Commit::default()
                };
                (step, store.commit(&id, token, commit).await)
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            ("good", result) => assert!(result.is_ok(), "the current token commits: {result:?}"),
            (_, result) => assert!(matches!(result, Err(Error::Fenced { .. })), "{result:?}"),
        }
    }
    for i in 0..50 {
        let journal = store.journal(&format!("r{i:02}")).await.expect("journal");
        let steps: Vec<&str> = journal.iter().map(|e| e.entry.step.as_str()).collect();
        assert_eq!(
            steps,
            vec!["good"],
            "r{i:02} keeps its good commit and nothing of the stale one"
        );
    }
}

#[tokio::test]
async fn normal_durability_works_the_same() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    let options = SqliteOptions {
        durability: Durability::Normal,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).expect("open");
    fill(&store).await;
    let before = snapshot(&store).await;
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("no").join("such").join("airlock.db");
    match SqliteStore::open(Path::new(&path)) {
        Err(Error::Backend(message)) => assert!(message.contains("cannot open"), "{message}"),
        other => panic!("opening in a missing directory must fail, got {other:?}"),
    }
}

/// Regression (files readable by others): the store's file was created with the umask's
/// mode (0644 by default), and SQLite gives its `-wal` and `-shm` the same, so anyone on
/// the machine could read every run's payload. Created 0600 now, whatever the umask; the
/// WAL and shared-memory files follow it.
#[cfg(unix)]
#[tokio::test]
async fn the_store_file_and_its_wal_and_shm_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = fresh();
    store
        .enqueue(&new_run("r1", "staging", "hello", 1))
        .await
        .expect("a write, so the WAL exists");
    for name in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
    assert_eq!(
        store.local_file(),
        Some(dir.path().join("airlock.db").as_path())
    );
}

/// An existing file keeps its mode: opening does not quietly change what an operator set
/// (`check` reports one others can read).
#[cfg(unix)]
#[tokio::test]
async fn an_existing_store_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("airlock.db");
    drop(SqliteStore::open(&path).expect("create"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    drop(SqliteStore::open(&path).expect("reopen"));
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// Readiness asks the store for a write: a file another process migrated past this
/// build's schema fails the probe (this process's writes would be wrong there), by name.
#[tokio::test]
async fn a_write_probe_fails_when_the_schema_is_not_this_builds() {
    let (dir, store) = fresh();
    store
        .probe_write()
        .await
        .expect("a fresh store takes a write");
    let raw = rusqlite::Connection::open(dir.path().join("airlock.db")).expect("raw open");
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("another Airlock migrated it further");
    drop(raw);
    match store.probe_write().await {
        Err(Error::Backend(message)) => assert!(message.contains("schema version"), "{message}"),
        other => panic!("the probe must fail on a newer schema, got {other:?}"),
    }
}
