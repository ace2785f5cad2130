//! The conformance suite: what every backend of [`Store`] must do, written once, generic
//! over the trait.
//!
//! Each property is a `pub async fn` that takes a fresh, empty store and panics with a
//! message naming what broke. [`run_all`] runs them all, one fresh store each; a backend's
//! tests may instead call each property from its own `#[tokio::test]` (as
//! `tests/sqlite.rs` does) and check its list against [`PROPERTIES`].
//!
//! The store never reads a clock, so the properties pass their own `now`: small numbers,
//! chosen so that every due time is unambiguous. The concurrent properties need a
//! multi-threaded tokio runtime to mean much (they pass on any).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use crate::{ApiToken, NewApiToken};

use crate::{
    AuditEvent, AuditHead, Commit, Deployment, Error, GENESIS_HASH, Lease, NewAuditEvent,
    NewJournalEntry, NewRun, NewTestRecord, OutcomeQuery, Outcomes, Page, Run, RunFilter,
    RunStatus, SealedSecret, Settlement, StepDecision, StepStatus, Store, Timestamp,
    WorkflowVersion, verify_audit_chain,
};

/// The name of every property, in the order [`run_all`] runs them.
pub const PROPERTIES: &[&str] = &[
    "versions_are_idempotent",
    "deployments_return_the_previous_version",
    "enqueue_dedupes_per_environment",
    "enqueue_claimed_is_a_claim_or_a_queued_run",
    "json_values_round_trip",
    "claim_takes_due_runs_only",
    "claim_respects_limit_oldest_first",
    "claim_leases_and_raises_the_token",
    "claim_run_takes_that_run_alone_when_due",
    "a_running_run_is_taken_over_only_through_its_unrenewed_lease",
    "lease_extension_is_honoured",
    "stale_token_is_fenced_and_writes_nothing",
    "journal_appends_in_order",
    "commit_is_atomic",
    "sleep_releases_until_wake_time",
    "wait_releases_until_deadline_or_decision",
    "finish_is_final",
    "decide_step_wakes_a_waiting_run_once",
    "retry_requeues_dead_and_failed_runs_only",
    "runs_filter_newest_first",
    "run_outcomes_count_finished_runs",
    "run_outcomes_stay_exact_across_hours_retries_and_pruning",
    "prune_removes_old_finished_runs_only",
    "secrets_are_scoped_to_their_environment",
    "test_records_per_environment",
    "record_pages_continue_newest_first",
    "audit_pages_continue_newest_first",
    "audit_log_is_a_hash_chain",
    "audit_head_is_the_newest_event",
    "concurrent_claims_are_exclusive",
    "concurrent_commits_keep_one_journal_order",
    "concurrent_audit_appends_form_one_chain",
    "evidence_is_bound_to_a_version",
    "each_approver_has_one_decision_they_may_change",
    "a_release_links_to_the_previous_and_deploys",
    "an_open_request_is_withdrawn_or_expires_once",
    "open_requests_are_the_open_ones_newest_first",
    "a_disable_release_takes_the_workflow_out",
    "concurrent_releases_one_wins",
    "tokens_are_found_by_hash_until_revoked",
    "token_names_are_unique_among_live_tokens",
    "sessions_live_until_they_expire_end_or_lose_their_token",
    "run_pages_continue_after_their_cursor",
    "schedule_cursor_is_a_compare_and_set",
    "concurrent_schedule_advances_one_wins",
    "write_probe_succeeds_and_changes_nothing",
    "the_latest_bundle_is_the_one_deployed_last",
    "notifications_are_kept_once_and_retried_until_delivered",
    "concurrent_notification_claims_deliver_each_once",
];

/// Runs every property, each on a fresh store made by `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    versions_are_idempotent(make().await).await;
    deployments_return_the_previous_version(make().await).await;
    enqueue_dedupes_per_environment(make().await).await;
    enqueue_claimed_is_a_claim_or_a_queued_run(make().await).await;
    json_values_round_trip(make().await).await;
    claim_takes_due_runs_only(make().await).await;
    claim_respects_limit_oldest_first(make().await).await;
    claim_leases_and_raises_the_token(make().await).await;
    claim_run_takes_that_run_alone_when_due(make().await).await;
    a_running_run_is_taken_over_only_through_its_unrenewed_lease(make().await).await;
    lease_extension_is_honoured(make().await).await;
    stale_token_is_fenced_and_writes_nothing(make().await).await;
    journal_appends_in_order(make().await).await;
    commit_is_atomic(make().await).await;
    sleep_releases_until_wake_time(make().await).await;
    wait_releases_until_deadline_or_decision(make().await).await;
    finish_is_final(make().await).await;
    decide_step_wakes_a_waiting_run_once(make().await).await;
    retry_requeues_dead_and_failed_runs_only(make().await).await;
    runs_filter_newest_first(make().await).await;
    run_outcomes_count_finished_runs(make().await).await;
    run_outcomes_stay_exact_across_hours_retries_and_pruning(make().await).await;
    prune_removes_old_finished_runs_only(make().await).await;
    secrets_are_scoped_to_their_environment(make().await).await;
    test_records_per_environment(make().await).await;
    record_pages_continue_newest_first(make().await).await;
    audit_pages_continue_newest_first(make().await).await;
    audit_log_is_a_hash_chain(make().await).await;
    audit_head_is_the_newest_event(make().await).await;
    concurrent_claims_are_exclusive(make().await).await;
    concurrent_commits_keep_one_journal_order(make().await).await;
    concurrent_audit_appends_form_one_chain(make().await).await;
    evidence_is_bound_to_a_version(make().await).await;
    each_approver_has_one_decision_they_may_change(make().await).await;
    a_release_links_to_the_previous_and_deploys(make().await).await;
    an_open_request_is_withdrawn_or_expires_once(make().await).await;
    open_requests_are_the_open_ones_newest_first(make().await).await;
    a_disable_release_takes_the_workflow_out(make().await).await;
    concurrent_releases_one_wins(make().await).await;
    tokens_are_found_by_hash_until_revoked(make().await).await;
    token_names_are_unique_among_live_tokens(make().await).await;
    sessions_live_until_they_expire_end_or_lose_their_token(make().await).await;
    run_pages_continue_after_their_cursor(make().await).await;
    schedule_cursor_is_a_compare_and_set(make().await).await;
    concurrent_schedule_advances_one_wins(make().await).await;
    write_probe_succeeds_and_changes_nothing(make().await).await;
    the_latest_bundle_is_the_one_deployed_last(make().await).await;
    notifications_are_kept_once_and_retried_until_delivered(make().await).await;
    concurrent_notification_claims_deliver_each_once(make().await).await;
}

// ---------------------------------------------------------------- helpers

/// A run to enqueue, in environment `env`, without a dedupe key.
pub fn new_run(id: &str, env: &str, workflow: &str, created_at: Timestamp) -> NewRun {
    NewRun {
        id: id.to_owned(),
        environment: env.to_owned(),
        workflow: workflow.to_owned(),
        version: format!("v-{workflow}"),
        trigger: json!({"body": {"id": id}, "headers": {}, "query": {}}).into(),
        dedupe_key: None,
        created_at,
    }
}

/// A journal entry for `step`.
pub fn entry(step: &str, status: StepStatus, started_at: Timestamp) -> NewJournalEntry {
    NewJournalEntry {
        step: step.to_owned(),
        attempt: 1,
        status,
        input: Some(json!({"step": step})),
        output: (status == StepStatus::Succeeded).then(|| json!({"ok": true, "step": step})),
        error: (status == StepStatus::Failed).then(|| format!("{step} failed")),
        idempotency_key: Some(format!("key-{step}")),
        started_at,
        finished_at: (status != StepStatus::Started && status != StepStatus::Waiting)
            .then_some(started_at + 1),
    }
}

fn commit_of(entries: Vec<NewJournalEntry>, settle: Option<Settlement>) -> Commit {
    Commit {
        entries,
        lease_until: None,
        settle,
    }
}

fn finish(status: RunStatus, at: Timestamp) -> Settlement {
    Settlement::Finish {
        status,
        output: (status == RunStatus::Succeeded).then(|| json!({"done": true})),
        error: (status != RunStatus::Succeeded).then(|| format!("run {}", status.as_str())),
        at,
    }
}

async fn enqueue<S: Store>(store: &S, run: NewRun) {
    let id = run.id.clone();
    let enqueued = store.enqueue(&run).await.expect("enqueue");
    assert!(enqueued.created, "enqueue of fresh run {id} must create it");
    assert_eq!(enqueued.run, id, "enqueue of fresh run {id} returns its id");
}

async fn get_run<S: Store>(store: &S, id: &str) -> Run {
    store
        .run(id)
        .await
        .expect("run")
        .unwrap_or_else(|| panic!("run {id} must exist"))
}

/// The lease of running run `run`, as [`Store::leases`] lists it.
async fn lease_of<S: Store>(store: &S, run: &str) -> Lease {
    store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .find(|lease| lease.run == run)
        .unwrap_or_else(|| panic!("run {run} must hold a lease"))
}

/// Claims exactly one run and returns its id and token.
async fn claim_one<S: Store>(
    store: &S,
    worker: &str,
    now: Timestamp,
    lease_ms: i64,
) -> (String, i64) {
    let claims = store.claim(worker, now, lease_ms, 1).await.expect("claim");
    assert_eq!(
        claims.len(),
        1,
        "claim by {worker} at {now} must find one due run, found {claims:?}"
    );
    (claims[0].run.id.clone(), claims[0].token)
}

async fn claimed_ids<S: Store>(store: &S, now: Timestamp, limit: usize) -> Vec<String> {
    store
        .claim("w-check", now, 1_000_000, limit)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.run.id)
        .collect()
}

fn ids(runs: &[Run]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

// ---------------------------------------------------------------- versions and deployments

/// Storing a version twice changes nothing; an unknown version is `None`.
pub async fn versions_are_idempotent<S: Store>(store: S) {
    assert_eq!(
        store.version("sha-1").await.expect("version"),
        None,
        "no version before put"
    );
    let v = WorkflowVersion {
        id: "sha-1".into(),
        workflow: "hello".into(),
        canonical: r#"{"name":"hello"}"#.into(),
        source: "name: hello\n".into(),
        created_at: 10,
    };
    store.put_version(&v).await.expect("put_version");
    store
        .put_version(&v)
        .await
        .expect("put_version of the same version again must succeed");
    let again = WorkflowVersion {
        source: "name: hello # edited\n".into(),
        created_at: 99,
        ..v.clone()
    };
    store
        .put_version(&again)
        .await
        .expect("put_version with an existing id must succeed");
    assert_eq!(
        store.version("sha-1").await.expect("version"),
        Some(v),
        "a stored version never changes: the first put wins"
    );
}

/// `set_deployment` returns the previous version, per environment and workflow.
pub async fn deployments_return_the_previous_version<S: Store>(store: S) {
    let deploy = |env: &str, wf: &str, version: &str, at: Timestamp| Deployment {
        environment: env.into(),
        workflow: wf.into(),
        version: version.into(),
        actor: "ana".into(),
        updated_at: at,
    };
    let prev = store
        .set_deployment(&deploy("staging", "hello", "v1", 1))
        .await
        .expect("deploy");
    assert_eq!(prev, None, "first deployment has no previous version");
    let prev = store
        .set_deployment(&deploy("staging", "hello", "v2", 2))
        .await
        .expect("deploy");
    assert_eq!(
        prev.as_deref(),
        Some("v1"),
        "redeploy returns the previous version"
    );
    let prev = store
        .set_deployment(&deploy("production", "hello", "v1", 3))
        .await
        .expect("deploy");
    assert_eq!(
        prev, None,
        "another environment's deployment is not a previous version"
    );
    let prev = store
        .set_deployment(&deploy("staging", "other", "v9", 4))
        .await
        .expect("deploy");
    assert_eq!(
        prev, None,
        "another workflow's deployment is not a previous version"
    );

    assert_eq!(
        store
            .deployment("staging", "hello")
            .await
            .expect("deployment"),
        Some(deploy("staging", "hello", "v2", 2)),
        "deployment returns the latest"
    );
    assert_eq!(
        store
            .deployment("production", "other")
            .await
            .expect("deployment"),
        None
    );
    let mut all = store.deployments(None).await.expect("deployments");
    all.sort_by(|a, b| (&a.environment, &a.workflow).cmp(&(&b.environment, &b.workflow)));
    assert_eq!(
        all,
        vec![
            deploy("production", "hello", "v1", 3),
            deploy("staging", "hello", "v2", 2),
            deploy("staging", "other", "v9", 4)
        ],
        "deployments(None) lists every environment"
    );
    let staging = store
        .deployments(Some("staging"))
        .await
        .expect("deployments");
    assert_eq!(
        staging.len(),
        2,
        "deployments(staging) lists staging's only: {staging:?}"
    );
    assert!(staging.iter().all(|d| d.environment == "staging"));
}

// ---------------------------------------------------------------- enqueue

/// A dedupe key creates one run per environment; the same key elsewhere creates another.
pub async fn enqueue_dedupes_per_environment<S: Store>(store: S) {
    let with_key = |id: &str, env: &str| NewRun {
        dedupe_key: Some("delivery-1".into()),
        ..new_run(id, env, "hello", 100)
    };
    let first = store
        .enqueue(&with_key("r1", "staging"))
        .await
        .expect("enqueue");
    assert_eq!(
        (first.run.as_str(), first.created),
        ("r1", true),
        "first delivery creates a run"
    );
    let second = store
        .enqueue(&with_key("r2", "staging"))
        .await
        .expect("enqueue");
    assert_eq!(
        (second.run.as_str(), second.created),
        ("r1", false),
        "a second delivery with the same key returns the first run"
    );
    assert_eq!(
        store.run("r2").await.expect("run"),
        None,
        "the duplicate delivery created nothing"
    );
    let other_env = store
        .enqueue(&with_key("r3", "production"))
        .await
        .expect("enqueue");
    assert_eq!(
        (other_env.run.as_str(), other_env.created),
        ("r3", true),
        "the same key in another environment creates a run"
    );
    enqueue(&store, new_run("r4", "staging", "hello", 100)).await;
    enqueue(&store, new_run("r5", "staging", "hello", 100)).await;

    let run = get_run(&store, "r1").await;
    let expected = Run {
        id: "r1".into(),
        environment: "staging".into(),
        workflow: "hello".into(),
        version: "v-hello".into(),
        status: RunStatus::Queued,
        trigger: with_key("r1", "staging").trigger,
        dedupe_key: Some("delivery-1".into()),
        output: None,
        error: None,
        created_at: 100,
        started_at: None,
        finished_at: None,
        wake_at: None,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 0,
        claims: 0,
    };
    assert_eq!(
        run, expected,
        "an enqueued run is queued, unclaimed, as given"
    );

    let again = store.enqueue(&new_run("r4", "staging", "hello", 200)).await;
    assert!(
        again.is_err(),
        "enqueueing an existing run id must fail, got {again:?}"
    );
    assert_eq!(
        get_run(&store, "r4").await.created_at,
        100,
        "the existing run is unchanged"
    );
    let all = store.runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(all.len(), 4, "four runs in all: {:?}", ids(&all));
}

/// Triggers, outputs, journal inputs and audit details come back exactly.
pub async fn json_values_round_trip<S: Store>(store: S) {
    let value = json!({
        "text": "héllo ✓ \"quoted\" \n newline \u{0000} nul",
        "big": i64::MAX,
        "unsigned": u64::MAX,
        "negative": i64::MIN,
        "float": 0.1,
        "nested": {"list": [1, "two", null, true, {"deep": []}], "empty": {}},
    });
    let run = NewRun {
        trigger: value.clone().into(),
        ..new_run("r1", "staging", "hello", 1)
    };
    enqueue(&store, run).await;
    assert_eq!(
        *get_run(&store, "r1").await.trigger,
        value,
        "trigger round-trips"
    );
    let (id, token) = claim_one(&store, "w1", 10, 1_000).await;
    let step = NewJournalEntry {
        input: Some(value.clone()),
        output: Some(json!([value.clone()])),
        ..entry("a", StepStatus::Succeeded, 10)
    };
    let done = Settlement::Finish {
        status: RunStatus::Succeeded,
        output: Some(value.clone()),
        error: None,
        at: 11,
    };
    store
        .commit(&id, token, commit_of(vec![step.clone()], Some(done)))
        .await
        .expect("commit");
    assert_eq!(
        get_run(&store, "r1").await.output,
        Some(value.clone()),
        "output round-trips"
    );
    let journal = store.journal("r1").await.expect("journal");
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].entry, step, "journal entry round-trips");
    let event = NewAuditEvent {
        at: 1,
        actor: "ana".into(),
        action: "deploy".into(),
        environment: None,
        subject: "hello".into(),
        detail: value.clone(),
    };
    store.audit(&event).await.expect("audit");
    let log = store.audit_log().await.expect("audit_log");
    assert_eq!(log[0].event, event, "audit detail round-trips");
    assert_eq!(
        verify_audit_chain(&log),
        Ok(()),
        "a chain with rich details verifies after reading"
    );
}

// ---------------------------------------------------------------- claims and leases

/// Only due runs are claimed: queued ones whose wake time came, waiting ones whose deadline
/// passed; never finished or open-ended waiting ones, and never a running one, however
/// long ago its lease seems to have ended (that is `take_over`'s, see
/// [`a_running_run_is_taken_over_only_through_its_unrenewed_lease`]).
pub async fn claim_takes_due_runs_only<S: Store>(store: S) {
    assert!(
        claimed_ids(&store, 1_000, 10).await.is_empty(),
        "an empty store has nothing due"
    );
    for id in ["a", "b", "c", "d", "e"] {
        enqueue(&store, new_run(id, "staging", "hello", 100)).await;
    }
    let claims = store.claim("w1", 1_000, 10_000, 10).await.expect("claim");
    assert_eq!(claims.len(), 5, "every queued run is due");
    let token = |id: &str| {
        claims
            .iter()
            .find(|c| c.run.id == id)
            .map(|c| c.token)
            .unwrap_or(-1)
    };
    store
        .commit(
            "a",
            token("a"),
            commit_of(vec![], Some(finish(RunStatus::Succeeded, 1_001))),
        )
        .await
        .expect("a");
    store
        .commit(
            "b",
            token("b"),
            commit_of(vec![], Some(Settlement::Sleep { wake_at: 5_000 })),
        )
        .await
        .expect("b");
    store
        .commit(
            "c",
            token("c"),
            commit_of(vec![], Some(Settlement::Wait { deadline: None })),
        )
        .await
        .expect("c");
    store
        .commit(
            "d",
            token("d"),
            commit_of(
                vec![],
                Some(Settlement::Wait {
                    deadline: Some(3_000),
                }),
            ),
        )
        .await
        .expect("d");
    // e stays running, leased until 11_000.

    assert!(
        claimed_ids(&store, 2_000, 10).await.is_empty(),
        "nothing is due at 2000"
    );
    assert_eq!(
        claimed_ids(&store, 2_999, 10).await,
        Vec::<String>::new(),
        "a deadline is not due before it"
    );
    assert_eq!(
        claimed_ids(&store, 3_000, 10).await,
        vec!["d"],
        "a waiting run is due at its deadline"
    );
    assert_eq!(
        claimed_ids(&store, 4_999, 10).await,
        Vec::<String>::new(),
        "a sleeping run is not due early"
    );
    assert_eq!(
        claimed_ids(&store, 5_000, 10).await,
        vec!["b"],
        "a sleeping run is due at its wake time"
    );
    assert_eq!(
        claimed_ids(&store, 11_000, 10).await,
        Vec::<String>::new(),
        "a running run is not claimed when its lease's end has passed by the wall clock"
    );
    assert_eq!(
        claimed_ids(&store, 1_000_000_000, 10).await,
        Vec::<String>::new(),
        "much later nothing is due: never a finished run (a), one waiting without a \
         deadline (c), nor a running one (b and d, claimed again, and e)"
    );
    assert_eq!(get_run(&store, "a").await.status, RunStatus::Succeeded);
    assert_eq!(get_run(&store, "c").await.status, RunStatus::Waiting);
    let leases: BTreeSet<String> = store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.run)
        .collect();
    let running: BTreeSet<String> = ["b", "d", "e"].into_iter().map(String::from).collect();
    assert_eq!(
        leases, running,
        "the running runs are listed among the leases"
    );
}

/// A claim takes at most `limit` runs, the oldest first.
pub async fn claim_respects_limit_oldest_first<S: Store>(store: S) {
    for created in [500, 100, 300, 400, 200] {
        enqueue(
            &store,
            new_run(&format!("r{created}"), "staging", "hello", created),
        )
        .await;
    }
    assert_eq!(
        claimed_ids(&store, 1_000, 0).await,
        Vec::<String>::new(),
        "limit 0 claims nothing"
    );
    assert_eq!(
        claimed_ids(&store, 1_000, 2).await,
        vec!["r100", "r200"],
        "limit 2: the two oldest"
    );
    assert_eq!(
        claimed_ids(&store, 1_000, 10).await,
        vec!["r300", "r400", "r500"],
        "the rest, oldest first"
    );
    // A run that slept is ordered by its wake time.
    enqueue(&store, new_run("late", "staging", "hello", 600)).await;
    enqueue(&store, new_run("early", "staging", "hello", 700)).await;
    let (late, token) = claim_one(&store, "w", 2_000, 60_000).await;
    assert_eq!(late, "late");
    store
        .commit(
            &late,
            token,
            commit_of(vec![], Some(Settlement::Sleep { wake_at: 3_000 })),
        )
        .await
        .expect("sleep");
    assert_eq!(
        claimed_ids(&store, 3_000, 10).await,
        vec!["early", "late"],
        "a run created at 700 and never claimed comes before one that slept until 3000"
    );
}

/// A claim leases the run to the worker and raises its token and claim count.
pub async fn claim_leases_and_raises_the_token<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let claims = store.claim("w1", 1_000, 30_000, 5).await.expect("claim");
    assert_eq!(claims.len(), 1, "one run is due");
    let claim = &claims[0];
    assert_eq!(claim.token, 1, "the first claim's token is 1");
    let run = &claim.run;
    assert_eq!(run.status, RunStatus::Running, "a claimed run is running");
    assert_eq!(
        run.lease_owner.as_deref(),
        Some("w1"),
        "leased to the claimer"
    );
    assert_eq!(
        run.lease_expires_at,
        Some(31_000),
        "leased until now + lease_ms"
    );
    assert_eq!(run.fencing_token, 1, "the run carries the claim's token");
    assert_eq!(run.claims, 1, "claimed once");
    assert_eq!(run.started_at, Some(1_000), "started when first claimed");
    assert_eq!(
        &get_run(&store, "r1").await,
        run,
        "the claim returns the run as stored"
    );
}

/// `claim_run` claims the run it names, as `claim` would (lease, token, claim count), only
/// when it is due, and never touches another run, however much older or more due.
pub async fn claim_run_takes_that_run_alone_when_due<S: Store>(store: S) {
    enqueue(&store, new_run("older", "production", "hello", 50)).await;
    enqueue(&store, new_run("mine", "staging", "hello", 100)).await;
    enqueue(&store, new_run("later", "staging", "hello", 2_000)).await;
    assert!(
        matches!(
            store.claim_run("nobody", "w1", 1_000, 10_000).await,
            Err(Error::NotFound(_))
        ),
        "an unknown run is not found"
    );
    assert_eq!(
        store
            .claim_run("later", "w1", 1_000, 10_000)
            .await
            .expect("claim_run"),
        None,
        "a run accepted after `now` is not due yet"
    );
    let claim = store
        .claim_run("mine", "w1", 1_000, 10_000)
        .await
        .expect("claim_run")
        .expect("a queued run is due");
    assert_eq!(claim.run.id, "mine");
    assert_eq!(claim.token, 1, "the first claim's token is 1");
    assert_eq!(claim.run.status, RunStatus::Running);
    assert_eq!(claim.run.lease_owner.as_deref(), Some("w1"));
    assert_eq!(claim.run.lease_expires_at, Some(11_000));
    assert_eq!(claim.run.claims, 1);
    assert_eq!(claim.run.started_at, Some(1_000));
    assert_eq!(&get_run(&store, "mine").await, &claim.run, "as stored");
    for other in ["older", "later"] {
        let run = get_run(&store, other).await;
        assert_eq!(
            (run.status, run.claims, run.lease_owner),
            (RunStatus::Queued, 0, None),
            "{other} is untouched by a claim of another run"
        );
    }

    assert_eq!(
        store
            .claim_run("mine", "w2", 10_999, 10_000)
            .await
            .expect("claim_run"),
        None,
        "a live lease excludes"
    );
    assert_eq!(
        get_run(&store, "mine").await.lease_owner.as_deref(),
        Some("w1")
    );
    store
        .commit(
            "mine",
            claim.token,
            commit_of(vec![], Some(Settlement::Sleep { wake_at: 20_000 })),
        )
        .await
        .expect("sleep");
    assert_eq!(
        store
            .claim_run("mine", "w1", 19_999, 10_000)
            .await
            .expect("claim_run"),
        None,
        "a sleeping run is not due early"
    );
    let woken = store
        .claim_run("mine", "w1", 20_000, 10_000)
        .await
        .expect("claim_run")
        .expect("a sleeping run is due at its wake time");
    assert_eq!(woken.token, 2, "each claim raises the token");
    store
        .commit(
            "mine",
            woken.token,
            commit_of(vec![], Some(Settlement::Wait { deadline: None })),
        )
        .await
        .expect("wait");
    assert_eq!(
        store
            .claim_run("mine", "w1", 1_000_000_000, 10_000)
            .await
            .expect("claim_run"),
        None,
        "a run waiting for a person without a deadline is never due"
    );

    // A running run is never claimed by name, however old its lease; taken over, the old
    // holder is fenced.
    enqueue(&store, new_run("held", "staging", "hello", 100)).await;
    let first = store
        .claim_run("held", "w1", 1_000, 1_000)
        .await
        .expect("claim_run")
        .expect("due");
    assert_eq!(
        store
            .claim_run("held", "w2", 1_000_000, 1_000)
            .await
            .expect("claim_run"),
        None,
        "a running run is not claimed when its lease's end has passed by the wall clock"
    );
    let lease = lease_of(&store, "held").await;
    let taken = store
        .take_over(&lease, "w2", 2_000, 1_000)
        .await
        .expect("take_over")
        .expect("an unrenewed lease is taken over");
    assert!(taken.token > first.token);
    assert!(
        matches!(
            store
                .commit("held", first.token, commit_of(vec![], None))
                .await,
            Err(Error::Fenced { .. })
        ),
        "the first holder is fenced"
    );
    store
        .commit(
            "held",
            taken.token,
            commit_of(vec![], Some(finish(RunStatus::Succeeded, 2_001))),
        )
        .await
        .expect("finish");
    assert_eq!(
        store
            .claim_run("held", "w1", 1_000_000_000, 1_000)
            .await
            .expect("claim_run"),
        None,
        "a finished run is never due"
    );

    // Two claimers of one run at once: one gets it.
    enqueue(&store, new_run("raced", "staging", "hello", 100)).await;
    let (a, b) = tokio::join!(
        store.claim_run("raced", "w1", 1_000, 10_000),
        store.claim_run("raced", "w2", 1_000, 10_000)
    );
    let won = [a.expect("w1"), b.expect("w2")]
        .into_iter()
        .flatten()
        .count();
    assert_eq!(won, 1, "exactly one of two racing claimers gets the run");

    assert_eq!(
        claimed_ids(&store, 1_000, 10).await,
        vec!["older"],
        "the runs claim_run did not name are still there for `claim`"
    );
}

/// A running run is taken over only with `take_over`, and only through the lease as last
/// seen: a renewal since, or another taker first, makes the take-over take nothing. The
/// run is then leased to the new holder with a higher token (the old one fenced), its lease
/// length recorded as its promise, and keeps its first start time.
pub async fn a_running_run_is_taken_over_only_through_its_unrenewed_lease<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let (_, first) = claim_one(&store, "w1", 1_000, 1_000).await;
    for now in [1_999, 2_000, 1_000_000_000] {
        let none = store.claim("w2", now, 1_000, 10).await.expect("claim");
        assert!(
            none.is_empty(),
            "a running run is not claimed at {now}, whatever its lease says: {none:?}"
        );
    }
    let seen = lease_of(&store, "r1").await;
    assert_eq!(
        seen,
        Lease {
            run: "r1".into(),
            owner: Some("w1".into()),
            token: first,
            expires_at: 2_000,
            promised_ms: Some(1_000),
        },
        "the lease as its holder took it"
    );
    // The holder renews: the lease seen before is no longer the run's.
    store
        .commit(
            "r1",
            first,
            Commit {
                lease_until: Some(2_500),
                ..Commit::default()
            },
        )
        .await
        .expect("renew");
    assert_eq!(
        store
            .take_over(&seen, "w2", 3_000, 1_000)
            .await
            .expect("take_over"),
        None,
        "a lease renewed since it was seen is not taken over"
    );
    assert_eq!(
        get_run(&store, "r1").await.lease_owner.as_deref(),
        Some("w1")
    );
    let seen = lease_of(&store, "r1").await;
    let taken = store
        .take_over(&seen, "w2", 3_000, 1_500)
        .await
        .expect("take_over")
        .expect("the lease as last seen is taken over");
    assert!(
        taken.token > first,
        "the new token {} exceeds {first}",
        taken.token
    );
    assert_eq!(&get_run(&store, "r1").await, &taken.run, "as stored");
    let run = &taken.run;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.lease_owner.as_deref(), Some("w2"), "now leased to w2");
    assert_eq!(run.lease_expires_at, Some(4_500));
    assert_eq!(run.claims, 2, "claimed twice");
    assert_eq!(
        run.started_at,
        Some(1_000),
        "started_at is the first claim's"
    );
    assert_eq!(
        lease_of(&store, "r1").await.promised_ms,
        Some(1_500),
        "the new holder's promise"
    );
    assert!(
        matches!(
            store.commit("r1", first, commit_of(vec![], None)).await,
            Err(Error::Fenced { .. })
        ),
        "the old holder is fenced"
    );
    assert_eq!(
        store
            .take_over(&seen, "w3", 5_000, 1_000)
            .await
            .expect("take_over"),
        None,
        "a lease already taken over is not taken again"
    );
    store
        .commit(
            "r1",
            taken.token,
            commit_of(vec![], Some(finish(RunStatus::Succeeded, 3_001))),
        )
        .await
        .expect("finish");
    assert!(
        store.leases().await.expect("leases").is_empty(),
        "a finished run holds no lease"
    );
    let finished = Lease {
        token: taken.token,
        expires_at: 4_500,
        ..seen
    };
    assert_eq!(
        store
            .take_over(&finished, "w3", 5_000, 1_000)
            .await
            .expect("take_over"),
        None,
        "a finished run is never taken over"
    );
}

/// `lease_until` extends the lease, and every renewal changes the stored end, even one
/// that asks for the end already stored (a wall clock set back by exactly the time since
/// the last renewal): a watcher must see each renewal.
pub async fn lease_extension_is_honoured<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let (id, token) = claim_one(&store, "w1", 1_000, 1_000).await;
    let renew = |until| Commit {
        lease_until: Some(until),
        ..Commit::default()
    };
    store
        .commit(&id, token, renew(10_000))
        .await
        .expect("extend the lease");
    let run = get_run(&store, "r1").await;
    assert_eq!(run.lease_expires_at, Some(10_000), "lease extended");
    assert_eq!(run.status, RunStatus::Running, "still running");
    let seen = lease_of(&store, "r1").await;
    store
        .commit(&id, token, renew(10_000))
        .await
        .expect("renew to the same end");
    let renewed = lease_of(&store, "r1").await;
    assert_ne!(renewed, seen, "a renewal to the same end still shows");
    assert_eq!(renewed.expires_at, 10_001);
    store
        .commit(&id, token, renew(4_000))
        .await
        .expect("renew to an earlier end");
    assert_eq!(
        lease_of(&store, "r1").await.expires_at,
        4_000,
        "the end is the holder's, earlier or later"
    );
    assert_eq!(
        store
            .take_over(&seen, "w2", 20_000, 1_000)
            .await
            .expect("take_over"),
        None,
        "a renewed lease is not taken over"
    );
}

/// A commit with a stale token fails with `Fenced` and writes nothing.
pub async fn stale_token_is_fenced_and_writes_nothing<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let (id, old) = claim_one(&store, "w1", 1_000, 1_000).await;
    store
        .commit(
            &id,
            old,
            commit_of(vec![entry("a", StepStatus::Succeeded, 1_001)], None),
        )
        .await
        .expect("commit");
    let new = store
        .take_over(&lease_of(&store, "r1").await, "w2", 2_000, 60_000)
        .await
        .expect("take_over")
        .expect("taken over")
        .token;
    let before_run = get_run(&store, "r1").await;
    let before_journal = store.journal("r1").await.expect("journal");

    let stale = commit_of(
        vec![entry("b", StepStatus::Succeeded, 2_001)],
        Some(finish(RunStatus::Succeeded, 2_002)),
    );
    match store.commit(&id, old, stale).await {
        Err(Error::Fenced {
            run,
            presented,
            current,
        }) => {
            assert_eq!(
                (run.as_str(), presented, current),
                ("r1", old, new),
                "Fenced names run and tokens"
            );
        }
        other => panic!("a commit with the old token must be Fenced, got {other:?}"),
    }
    match store.commit(&id, new + 1, Commit::default()).await {
        Err(Error::Fenced { current, .. }) => assert_eq!(current, new),
        other => panic!("a commit with a token from the future must be Fenced, got {other:?}"),
    }
    assert_eq!(
        store.journal("r1").await.expect("journal"),
        before_journal,
        "a fenced commit writes no entry"
    );
    assert_eq!(
        get_run(&store, "r1").await,
        before_run,
        "a fenced commit changes nothing in the run"
    );

    store
        .commit(
            &id,
            new,
            commit_of(
                vec![entry("b", StepStatus::Succeeded, 2_001)],
                Some(finish(RunStatus::Succeeded, 2_002)),
            ),
        )
        .await
        .expect("the current holder commits");
    match store
        .commit(
            &id,
            new,
            commit_of(vec![entry("c", StepStatus::Succeeded, 2_003)], None),
        )
        .await
    {
        Err(Error::Fenced {
            presented, current, ..
        }) => {
            assert_eq!(
                (presented, current),
                (new, new),
                "a finished run is fenced with its current token"
            );
        }
        other => panic!("a commit on a run that is not running must be Fenced, got {other:?}"),
    }
    assert_eq!(
        store.journal("r1").await.expect("journal").len(),
        2,
        "nothing written after the finish"
    );
    match store.commit("missing", 1, Commit::default()).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("a commit on an unknown run must be NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------- commits

/// Journal entries get sequence numbers 1, 2, 3… per run, in commit order, and come back
/// exactly as written.
pub async fn journal_appends_in_order<S: Store>(store: S) {
    assert!(
        store.journal("missing").await.expect("journal").is_empty(),
        "no journal for an unknown run"
    );
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    enqueue(&store, new_run("r2", "staging", "hello", 101)).await;
    let claims = store.claim("w1", 1_000, 60_000, 2).await.expect("claim");
    assert_eq!(claims.len(), 2);
    let (t1, t2) = (claims[0].token, claims[1].token);

    let batches = [
        vec![
            entry("a", StepStatus::Started, 1_001),
            entry("a", StepStatus::Succeeded, 1_002),
        ],
        vec![entry("b", StepStatus::Failed, 1_003)],
        vec![
            NewJournalEntry {
                attempt: 2,
                ..entry("b", StepStatus::OutcomeUnknown, 1_004)
            },
            NewJournalEntry {
                attempt: 3,
                ..entry("b", StepStatus::Succeeded, 1_005)
            },
            entry("c", StepStatus::Waiting, 1_006),
        ],
    ];
    store
        .commit(
            "r2",
            t2,
            commit_of(vec![entry("x", StepStatus::Succeeded, 1_000)], None),
        )
        .await
        .expect("commit r2");
    for batch in &batches {
        store
            .commit("r1", t1, commit_of(batch.clone(), None))
            .await
            .expect("commit r1");
    }
    store
        .commit("r1", t1, Commit::default())
        .await
        .expect("an empty commit is fine");
    let journal = store.journal("r1").await.expect("journal");
    let expected: Vec<NewJournalEntry> = batches.concat();
    assert_eq!(journal.len(), expected.len(), "every entry is kept");
    for (i, (got, want)) in journal.iter().zip(&expected).enumerate() {
        assert_eq!(got.run, "r1");
        assert_eq!(got.seq, i as i64 + 1, "sequence numbers run 1, 2, 3…");
        assert_eq!(&got.entry, want, "entry {} comes back as written", i + 1);
    }
    let other = store.journal("r2").await.expect("journal");
    assert_eq!(other.len(), 1, "another run's journal is its own");
    assert_eq!(other[0].seq, 1, "each run's journal starts at 1");
}

/// Entries and settlement are written together or not at all.
pub async fn commit_is_atomic<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let (id, token) = claim_one(&store, "w1", 1_000, 60_000).await;
    let invalid = Settlement::Finish {
        status: RunStatus::Queued,
        output: None,
        error: None,
        at: 1_001,
    };
    let refused = store
        .commit(
            &id,
            token,
            commit_of(
                vec![entry("a", StepStatus::Succeeded, 1_001)],
                Some(invalid),
            ),
        )
        .await;
    assert!(
        refused.is_err(),
        "finishing as `queued` must be refused, got {refused:?}"
    );
    assert!(
        store.journal("r1").await.expect("journal").is_empty(),
        "a refused commit writes no entry"
    );
    assert_eq!(
        get_run(&store, "r1").await.status,
        RunStatus::Running,
        "a refused commit does not settle"
    );

    let entries = vec![
        entry("a", StepStatus::Succeeded, 1_001),
        entry("b", StepStatus::Succeeded, 1_002),
    ];
    store
        .commit(
            &id,
            token,
            commit_of(entries.clone(), Some(finish(RunStatus::Succeeded, 1_003))),
        )
        .await
        .expect("commit");
    let journal = store.journal("r1").await.expect("journal");
    assert_eq!(
        journal.iter().map(|e| e.entry.clone()).collect::<Vec<_>>(),
        entries,
        "entries written"
    );
    let run = get_run(&store, "r1").await;
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "settled in the same commit"
    );
    assert_eq!(run.output, Some(json!({"done": true})));
}

/// `Sleep` releases the run as queued until its wake time.
pub async fn sleep_releases_until_wake_time<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let (id, token) = claim_one(&store, "w1", 1_000, 60_000).await;
    store
        .commit(
            &id,
            token,
            commit_of(
                vec![entry("a", StepStatus::Waiting, 1_001)],
                Some(Settlement::Sleep { wake_at: 5_000 }),
            ),
        )
        .await
        .expect("sleep");
    let run = get_run(&store, "r1").await;
    assert_eq!(run.status, RunStatus::Queued, "a sleeping run is queued");
    assert_eq!(run.wake_at, Some(5_000), "with its wake time");
    assert_eq!(
        (run.lease_owner, run.lease_expires_at),
        (None, None),
        "and no lease"
    );
    assert!(
        claimed_ids(&store, 4_999, 10).await.is_empty(),
        "not due before its wake time"
    );
    let (_, again) = claim_one(&store, "w2", 5_000, 60_000).await;
    assert!(again > token, "reclaimed with a higher token");
    let run = get_run(&store, "r1").await;
    assert_eq!(run.started_at, Some(1_000), "started_at kept");
    assert_eq!(run.claims, 2);
}

/// `Wait` releases the run as waiting: due at its deadline, or never without one.
pub async fn wait_releases_until_deadline_or_decision<S: Store>(store: S) {
    enqueue(&store, new_run("open", "staging", "hello", 100)).await;
    enqueue(&store, new_run("timed", "staging", "hello", 200)).await;
    let claims = store.claim("w1", 1_000, 60_000, 2).await.expect("claim");
    assert_eq!(claims.len(), 2);
    for claim in &claims {
        let deadline = (claim.run.id == "timed").then_some(9_000);
        store
            .commit(
                &claim.run.id,
                claim.token,
                commit_of(vec![], Some(Settlement::Wait { deadline })),
            )
            .await
            .expect("wait");
    }
    let open = get_run(&store, "open").await;
    assert_eq!(
        (open.status, open.wake_at),
        (RunStatus::Waiting, None),
        "waiting without deadline"
    );
    assert_eq!(
        (open.lease_owner, open.lease_expires_at),
        (None, None),
        "and no lease"
    );
    let timed = get_run(&store, "timed").await;
    assert_eq!(
        (timed.status, timed.wake_at),
        (RunStatus::Waiting, Some(9_000)),
        "waiting until 9000"
    );
    assert!(
        claimed_ids(&store, 8_999, 10).await.is_empty(),
        "nothing due before the deadline"
    );
    assert_eq!(
        claimed_ids(&store, 9_000, 10).await,
        vec!["timed"],
        "the deadline makes a waiting run due"
    );
    assert!(
        claimed_ids(&store, i64::MAX / 2, 10)
            .await
            .iter()
            .all(|id| id != "open"),
        "a wait without deadline is never due"
    );
}

/// `Finish` ends the run: final status, output or error, finished_at, no lease, no wake.
pub async fn finish_is_final<S: Store>(store: S) {
    for id in ["ok", "failed", "dead"] {
        enqueue(&store, new_run(id, "staging", "hello", 100)).await;
    }
    let claims = store.claim("w1", 1_000, 60_000, 3).await.expect("claim");
    assert_eq!(claims.len(), 3);
    for claim in &claims {
        let status = match claim.run.id.as_str() {
            "ok" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            _ => RunStatus::Dead,
        };
        store
            .commit(
                &claim.run.id,
                claim.token,
                commit_of(vec![], Some(finish(status, 2_000))),
            )
            .await
            .expect("finish");
    }
    for (id, status) in [
        ("ok", RunStatus::Succeeded),
        ("failed", RunStatus::Failed),
        ("dead", RunStatus::Dead),
    ] {
        let run = get_run(&store, id).await;
        assert_eq!(run.status, status, "{id} finished as {}", status.as_str());
        assert_eq!(run.finished_at, Some(2_000), "{id} has finished_at");
        assert_eq!(
            (
                run.lease_owner.as_deref(),
                run.lease_expires_at,
                run.wake_at
            ),
            (None, None, None),
            "{id}: no lease, no wake"
        );
        if status == RunStatus::Succeeded {
            assert_eq!(
                (run.output, run.error),
                (Some(json!({"done": true})), None),
                "{id}: output kept"
            );
        } else {
            assert_eq!(
                run.error,
                Some(format!("run {}", status.as_str())),
                "{id}: error kept"
            );
        }
    }
    assert!(
        claimed_ids(&store, i64::MAX / 2, 10).await.is_empty(),
        "finished runs are never claimed"
    );
}

// ---------------------------------------------------------------- approvals and retries

/// A decision wakes a waiting run; a second decision on the step, one on a run that is
/// not waiting, or one on a step the run does not wait on, conflicts.
pub async fn decide_step_wakes_a_waiting_run_once<S: Store>(store: S) {
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    enqueue(&store, new_run("r2", "staging", "hello", 200)).await;
    let decision = |run: &str, step: &str| StepDecision {
        run: run.into(),
        step: step.into(),
        approver: "ana".into(),
        approved: true,
        decided_at: 2_000,
    };
    match store.decide_step(&decision("r2", "approve")).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("a decision on a queued run must conflict, got {other:?}"),
    }
    match store.decide_step(&decision("missing", "approve")).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("a decision on an unknown run must be NotFound, got {other:?}"),
    }
    let (id, token) = claim_one(&store, "w1", 1_000, 60_000).await;
    assert_eq!(id, "r1");
    match store.decide_step(&decision("r1", "approve")).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("a decision on a running run must conflict, got {other:?}"),
    }
    let wait = Settlement::Wait {
        deadline: Some(100_000),
    };
    store
        .commit(
            &id,
            token,
            commit_of(
                vec![entry("approve", StepStatus::Waiting, 1_001)],
                Some(wait),
            ),
        )
        .await
        .expect("wait");
    assert_eq!(
        store
            .step_decision("r1", "approve")
            .await
            .expect("step_decision"),
        None,
        "no decision yet"
    );

    store
        .decide_step(&decision("r1", "approve"))
        .await
        .expect("a decision on a waiting run");
    assert_eq!(
        store
            .step_decision("r1", "approve")
            .await
            .expect("step_decision"),
        Some(decision("r1", "approve")),
        "the decision is stored"
    );
    let run = get_run(&store, "r1").await;
    assert_eq!(
        (run.status, run.wake_at),
        (RunStatus::Queued, None),
        "the decision queues the run, due now"
    );
    let claims = store.claim("w2", 1_500, 60_000, 10).await.expect("claim");
    let woken = claims
        .iter()
        .find(|c| c.run.id == "r1")
        .expect("the woken run is claimed long before its deadline");

    store
        .commit(
            "r1",
            woken.token,
            commit_of(vec![], Some(Settlement::Wait { deadline: None })),
        )
        .await
        .expect("wait again");
    let second = StepDecision {
        approved: false,
        approver: "bo".into(),
        ..decision("r1", "approve")
    };
    match store.decide_step(&second).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("a second decision on the same step must conflict, got {other:?}"),
    }
    assert_eq!(
        get_run(&store, "r1").await.status,
        RunStatus::Waiting,
        "a refused decision does not wake the run"
    );
    assert_eq!(
        store
            .step_decision("r1", "approve")
            .await
            .expect("step_decision"),
        Some(decision("r1", "approve")),
        "the first decision stands"
    );
    match store.decide_step(&decision("r1", "second_gate")).await {
        Err(Error::Conflict(why)) => assert!(why.contains("waits on step `approve`"), "{why}"),
        other => {
            panic!("a decision on a step the run does not wait on must conflict, got {other:?}")
        }
    }
    assert_eq!(
        get_run(&store, "r1").await.status,
        RunStatus::Waiting,
        "a refused decision wakes nothing"
    );
    // A run that went past one gate and waits at the next is decided on the next only.
    let r2 = claims
        .iter()
        .find(|c| c.run.id == "r2")
        .expect("r2 was claimed with r1");
    store
        .commit(
            "r2",
            r2.token,
            commit_of(
                vec![
                    entry("first_gate", StepStatus::Waiting, 1_501),
                    entry("first_gate", StepStatus::Succeeded, 1_502),
                    entry("second_gate", StepStatus::Waiting, 1_503),
                ],
                Some(Settlement::Wait { deadline: None }),
            ),
        )
        .await
        .expect("wait at the second gate");
    match store.decide_step(&decision("r2", "first_gate")).await {
        Err(Error::Conflict(why)) => assert!(why.contains("`second_gate`"), "{why}"),
        other => panic!("a gate already passed is not the one waited on, got {other:?}"),
    }
    store
        .decide_step(&decision("r2", "second_gate"))
        .await
        .expect("the step it waits on");
    assert_eq!(get_run(&store, "r2").await.status, RunStatus::Queued);
}

/// `retry_run` puts a dead or failed run back in the queue, journal kept; anything else
/// conflicts.
pub async fn retry_requeues_dead_and_failed_runs_only<S: Store>(store: S) {
    for (id, created) in [
        ("dead", 100),
        ("failed", 200),
        ("ok", 300),
        ("running", 400),
        ("queued", 500),
    ] {
        enqueue(&store, new_run(id, "staging", "hello", created)).await;
    }
    let claims = store.claim("w1", 1_000, 60_000, 4).await.expect("claim");
    assert_eq!(claims.len(), 4);
    for claim in &claims {
        let status = match claim.run.id.as_str() {
            "dead" => RunStatus::Dead,
            "failed" => RunStatus::Failed,
            "ok" => RunStatus::Succeeded,
            _ => continue,
        };
        let entries = vec![
            entry("a", StepStatus::Succeeded, 1_001),
            entry("b", StepStatus::Failed, 1_002),
        ];
        store
            .commit(
                &claim.run.id,
                claim.token,
                commit_of(entries, Some(finish(status, 1_003))),
            )
            .await
            .expect("finish");
    }
    for id in ["ok", "running", "queued"] {
        match store.retry_run(id, 2_000, &[]).await {
            Err(Error::Conflict(_)) => {}
            other => panic!("retry of a {id} run must conflict, got {other:?}"),
        }
    }
    match store.retry_run("missing", 2_000, &[]).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("retry of an unknown run must be NotFound, got {other:?}"),
    }
    for id in ["dead", "failed"] {
        let journal = store.journal(id).await.expect("journal");
        let mark = entry("b", StepStatus::Retried, 2_000);
        store
            .retry_run(id, 2_000, std::slice::from_ref(&mark))
            .await
            .expect("retry");
        let run = get_run(&store, id).await;
        assert_eq!(run.status, RunStatus::Queued, "retried {id} run is queued");
        assert_eq!(
            (run.error, run.finished_at, run.wake_at),
            (None, None, None),
            "{id}: error and finish cleared, due now"
        );
        let after = store.journal(id).await.expect("journal");
        assert_eq!(after[..journal.len()], journal[..], "{id}: journal kept");
        assert_eq!(
            after.len(),
            journal.len() + 1,
            "{id}: the retry mark is appended"
        );
        assert_eq!(
            after[journal.len()].entry,
            mark,
            "{id}: the retry mark as given"
        );
        match store.retry_run(id, 2_001, &[]).await {
            Err(Error::Conflict(_)) => {}
            other => panic!("retrying a queued run again must conflict, got {other:?}"),
        }
    }
    let mut again: Vec<String> = Vec::new();
    for claim in store.claim("w2", 2_000, 60_000, 10).await.expect("claim") {
        if claim.run.id != "queued" {
            assert_eq!(
                claim.token, 2,
                "{}: a retried run is claimed with a higher token",
                claim.run.id
            );
            again.push(claim.run.id);
        }
    }
    again.sort();
    assert_eq!(
        again,
        vec!["dead", "failed"],
        "retried runs are claimed again"
    );
}

// ---------------------------------------------------------------- listing

/// A listing case: environment, workflow, status, limit, and the ids expected.
type ListCase<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<RunStatus>,
    Option<usize>,
    Vec<&'a str>,
);

/// `runs` filters by environment, workflow and status, newest first, up to a limit.
pub async fn runs_filter_newest_first<S: Store>(store: S) {
    // Runs that leave the queue first, so that one claim takes them all.
    let settled = [
        ("s3", "staging", "a", 400),
        ("w1", "staging", "b", 600),
        ("d1", "production", "a", 700),
        ("f1", "staging", "a", 800),
        ("r1", "production", "b", 900),
    ];
    for (id, env, wf, created) in settled {
        enqueue(&store, new_run(id, env, wf, created)).await;
    }
    let claims = store.claim("w1", 1_000, 600_000, 10).await.expect("claim");
    assert_eq!(claims.len(), settled.len(), "all five are due");
    for claim in claims {
        let settle = match claim.run.id.as_str() {
            "s3" => finish(RunStatus::Succeeded, 1_001),
            "w1" => Settlement::Wait { deadline: None },
            "d1" => finish(RunStatus::Dead, 1_001),
            "f1" => finish(RunStatus::Failed, 1_001),
            _ => continue,
        };
        store
            .commit(&claim.run.id, claim.token, commit_of(vec![], Some(settle)))
            .await
            .expect("settle");
    }
    for (id, env, wf, created) in [
        ("s1", "staging", "a", 100),
        ("p2", "production", "b", 500),
        ("s2", "staging", "b", 200),
        ("p1", "production", "a", 300),
    ] {
        enqueue(&store, new_run(id, env, wf, created)).await;
    }

    use RunStatus::{Dead, Failed, Queued, Running, Succeeded, Waiting};
    let cases: Vec<ListCase<'_>> = vec![
        (
            None,
            None,
            None,
            None,
            vec!["r1", "f1", "d1", "w1", "p2", "s3", "p1", "s2", "s1"],
        ),
        (
            Some("staging"),
            None,
            None,
            None,
            vec!["f1", "w1", "s3", "s2", "s1"],
        ),
        (
            None,
            Some("a"),
            None,
            None,
            vec!["f1", "d1", "s3", "p1", "s1"],
        ),
        (
            Some("staging"),
            Some("a"),
            None,
            None,
            vec!["f1", "s3", "s1"],
        ),
        (None, None, Some(Succeeded), None, vec!["s3"]),
        (None, None, Some(Queued), None, vec!["p2", "p1", "s2", "s1"]),
        (
            Some("production"),
            None,
            Some(Queued),
            None,
            vec!["p2", "p1"],
        ),
        (None, None, Some(Queued), Some(1), vec!["p2"]),
        (None, None, Some(Running), None, vec!["r1"]),
        (None, None, Some(Waiting), None, vec!["w1"]),
        (None, None, Some(Dead), None, vec!["d1"]),
        (None, None, Some(Failed), None, vec!["f1"]),
        (Some("staging"), Some("b"), Some(Queued), None, vec!["s2"]),
        (Some("staging"), Some("b"), Some(Waiting), None, vec!["w1"]),
        (Some("production"), Some("a"), Some(Dead), None, vec!["d1"]),
        (Some("staging"), None, Some(Dead), None, vec![]),
        (None, None, None, Some(2), vec!["r1", "f1"]),
        (Some("staging"), None, None, Some(1), vec!["f1"]),
        (None, None, None, Some(0), vec![]),
        (Some("dev"), None, None, None, vec![]),
    ];
    for (environment, workflow, status, limit, want) in cases {
        let filter = RunFilter {
            environment: environment.map(String::from),
            workflow: workflow.map(String::from),
            status,
            limit,
            before: None,
        };
        let got = store.runs(&filter).await.expect("runs");
        assert_eq!(ids(&got), want, "runs({filter:?}) newest first");
        if limit.is_none() {
            let counted = store.count_runs(&filter).await.expect("count_runs");
            assert_eq!(counted, want.len() as u64, "count_runs({filter:?})");
        }
        if let Some(status) = status {
            assert!(
                got.iter().all(|r| r.status == status),
                "runs({filter:?}) has only {status:?}"
            );
        }
    }
}

/// Counts of finished runs per workflow and environment, by acceptance window and version:
/// what promotion checks, readiness and release history read.
pub async fn run_outcomes_count_finished_runs<S: Store>(store: S) {
    // (id, environment, workflow, version, accepted at, how it ends; None: still running)
    let runs = [
        ("o1", "staging", "a", "v1", 100, Some(RunStatus::Succeeded)),
        ("o2", "staging", "a", "v1", 200, Some(RunStatus::Failed)),
        ("o3", "staging", "a", "v2", 300, Some(RunStatus::Dead)),
        ("o4", "staging", "a", "v2", 400, Some(RunStatus::Succeeded)),
        ("o5", "staging", "a", "v2", 500, None),
        (
            "o6",
            "production",
            "a",
            "v2",
            450,
            Some(RunStatus::Succeeded),
        ),
        ("o7", "staging", "b", "v2", 350, Some(RunStatus::Failed)),
    ];
    for (id, env, workflow, version, created, _) in runs {
        let mut run = new_run(id, env, workflow, created);
        run.version = version.to_owned();
        enqueue(&store, run).await;
    }
    let claims = store.claim("w1", 1_000, 600_000, 10).await.expect("claim");
    assert_eq!(claims.len(), runs.len(), "all seven are due");
    for claim in claims {
        let ends = runs.iter().find(|r| r.0 == claim.run.id).and_then(|r| r.5);
        if let Some(status) = ends {
            store
                .commit(
                    &claim.run.id,
                    claim.token,
                    commit_of(vec![], Some(finish(status, 1_001))),
                )
                .await
                .expect("finish");
        }
    }
    let query =
        |environment: &str, workflow: &str, version: Option<&str>, from, until| OutcomeQuery {
            environment: environment.to_owned(),
            workflow: workflow.to_owned(),
            version: version.map(String::from),
            from,
            until,
        };
    let cases = [
        (query("staging", "a", None, None, None), (4, 2)),
        (query("staging", "a", Some("v1"), None, None), (2, 1)),
        (query("staging", "a", Some("v2"), None, None), (2, 1)),
        (query("staging", "a", None, Some(200), Some(400)), (2, 2)),
        (query("staging", "a", Some("v2"), Some(400), None), (1, 0)),
        (query("staging", "a", None, None, Some(100)), (0, 0)),
        (query("production", "a", None, None, None), (1, 0)),
        (query("staging", "b", Some("v2"), None, None), (1, 1)),
        (query("dev", "a", None, None, None), (0, 0)),
    ];
    for (query, (finished, failed)) in cases {
        let got = store.run_outcomes(&query).await.expect("run_outcomes");
        assert_eq!(
            got,
            Outcomes { finished, failed },
            "run_outcomes({query:?}): the running o5 and other environments and workflows are not counted"
        );
    }
}

/// Counts stay exact when runs straddle hour boundaries (where a store may keep counts by
/// the hour), when a finished run is retried and finishes again, and when runs are pruned.
pub async fn run_outcomes_stay_exact_across_hours_retries_and_pruning<S: Store>(store: S) {
    const HOUR: Timestamp = 3_600_000;
    // Accepted just before, at and after the second and third hours of 1970.
    let accepted = [
        HOUR - 1,
        HOUR,
        HOUR + 1,
        2 * HOUR - 1,
        2 * HOUR,
        3 * HOUR + 7,
    ];
    for (n, at) in accepted.iter().enumerate() {
        let mut run = new_run(&format!("h{n}"), "production", "a", *at);
        run.version = "v1".into();
        enqueue(&store, run).await;
    }
    let claims = store
        .claim("w1", 4 * HOUR, 600_000, 10)
        .await
        .expect("claim");
    assert_eq!(claims.len(), accepted.len());
    for claim in &claims {
        // h1 and h4 fail, the others succeed.
        let status = if ["h1", "h4"].contains(&claim.run.id.as_str()) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        store
            .commit(
                &claim.run.id,
                claim.token,
                commit_of(vec![], Some(finish(status, 4 * HOUR))),
            )
            .await
            .expect("finish");
    }
    let count = |from: Option<Timestamp>, until: Option<Timestamp>| {
        let store = &store;
        async move {
            let got = store
                .run_outcomes(&OutcomeQuery {
                    environment: "production".into(),
                    workflow: "a".into(),
                    version: Some("v1".into()),
                    from,
                    until,
                })
                .await
                .expect("run_outcomes");
            (got.finished, got.failed)
        }
    };
    assert_eq!(count(None, None).await, (6, 2));
    assert_eq!(
        count(Some(HOUR), Some(2 * HOUR)).await,
        (3, 1),
        "the second hour, whole"
    );
    assert_eq!(
        count(Some(HOUR + 1), Some(2 * HOUR + 1)).await,
        (3, 1),
        "an hour's width, off its edges"
    );
    assert_eq!(count(Some(HOUR - 1), None).await, (6, 2));
    assert_eq!(
        count(None, Some(HOUR)).await,
        (1, 0),
        "only the one before the second hour"
    );
    assert_eq!(count(Some(2 * HOUR), Some(4 * HOUR)).await, (2, 1));
    assert_eq!(
        count(Some(HOUR + 1), Some(HOUR + 1)).await,
        (0, 0),
        "an empty range"
    );

    // h1 failed; retried, it is no longer finished, then succeeds.
    store.retry_run("h1", 5 * HOUR, &[]).await.expect("retry");
    assert_eq!(
        count(None, None).await,
        (5, 1),
        "a retried run is not finished"
    );
    let (id, token) = claim_one(&store, "w1", 5 * HOUR + 1, 600_000).await;
    store
        .commit(
            &id,
            token,
            commit_of(vec![], Some(finish(RunStatus::Succeeded, 5 * HOUR + 2))),
        )
        .await
        .expect("finish again");
    assert_eq!(
        count(Some(HOUR), Some(2 * HOUR)).await,
        (3, 0),
        "it counts as it ended last"
    );

    // Pruning removes what it deletes from every count.
    let pruned = store.prune_runs(i64::MAX, None, 100).await.expect("prune");
    assert_eq!(pruned, 6);
    assert_eq!(count(None, None).await, (0, 0));
}

/// Retention deletes finished runs accepted and finished before the cutoff, oldest first,
/// with their journals and decisions; a run still queued, running or waiting stays, however
/// old.
pub async fn prune_removes_old_finished_runs_only<S: Store>(store: S) {
    // (id, environment, accepted at)
    for (id, env, created) in [
        ("p1", "staging", 100),
        ("p2", "staging", 200),
        ("p3", "production", 300),
        ("p4", "staging", 400),
        ("p5", "staging", 500),
        ("p6", "staging", 600),
        ("p7", "staging", 2_100),
    ] {
        enqueue(&store, new_run(id, env, "a", created)).await;
    }
    let claims = store.claim("w1", 1_000, 600_000, 10).await.expect("claim");
    assert_eq!(claims.len(), 6, "all but p7 are due");
    for claim in claims {
        let (id, token) = (claim.run.id.as_str(), claim.token);
        let settle = match id {
            "p1" => Some(finish(RunStatus::Succeeded, 1_001)),
            "p2" | "p5" => Some(Settlement::Wait { deadline: None }),
            "p3" => Some(finish(RunStatus::Dead, 1_001)),
            // Finished after the cutoff.
            "p4" => Some(finish(RunStatus::Succeeded, 2_500)),
            // p6 stays running.
            _ => None,
        };
        let mut entries = vec![entry("s", StepStatus::Succeeded, 1_000)];
        if matches!(id, "p2" | "p5") {
            entries.push(entry("review", StepStatus::Waiting, 1_000));
        }
        store
            .commit(id, token, commit_of(entries, settle))
            .await
            .expect("settle");
    }
    for run in ["p2", "p5"] {
        store
            .decide_step(&StepDecision {
                run: run.to_owned(),
                step: "review".to_owned(),
                approver: "ops".to_owned(),
                approved: true,
                decided_at: 1_002,
            })
            .await
            .expect("decide");
    }
    // Both go on after their decisions: p2 fails, p5 waits again (for a second approval).
    let woken = store.claim("w1", 1_003, 600_000, 10).await.expect("claim");
    let mut woken_ids: Vec<&str> = woken.iter().map(|c| c.run.id.as_str()).collect();
    woken_ids.sort_unstable();
    assert_eq!(woken_ids, ["p2", "p5"], "the decided runs are due again");
    for claim in woken {
        let settle = if claim.run.id == "p2" {
            finish(RunStatus::Failed, 1_004)
        } else {
            Settlement::Wait { deadline: None }
        };
        store
            .commit(&claim.run.id, claim.token, commit_of(vec![], Some(settle)))
            .await
            .expect("settle after the decision");
    }

    let prune = |environment: Option<&'static str>, limit| {
        let store = &store;
        async move {
            store
                .prune_runs(2_000, environment, limit)
                .await
                .expect("prune_runs")
        }
    };
    assert_eq!(prune(Some("staging"), 1).await, 1, "the oldest first: p1");
    assert!(store.run("p1").await.expect("run").is_none());
    assert!(
        store.run("p2").await.expect("run").is_some(),
        "one per call"
    );
    assert_eq!(prune(Some("staging"), 10).await, 1, "then p2");
    assert_eq!(prune(Some("staging"), 10).await, 0, "p3 is production's");
    assert_eq!(prune(None, 10).await, 1, "p3, in every environment");
    assert_eq!(prune(None, 10).await, 0, "nothing else is old and finished");
    for gone in ["p1", "p2", "p3"] {
        assert!(
            store.run(gone).await.expect("run").is_none(),
            "{gone} pruned"
        );
        assert!(
            store.journal(gone).await.expect("journal").is_empty(),
            "{gone}'s journal pruned with it"
        );
        assert!(
            store
                .step_decision(gone, "review")
                .await
                .expect("decision")
                .is_none(),
            "{gone}'s decision pruned with it"
        );
    }
    for (kept, status) in [
        ("p4", RunStatus::Succeeded),
        ("p6", RunStatus::Running),
        ("p7", RunStatus::Queued),
    ] {
        assert_eq!(get_run(&store, kept).await.status, status, "{kept} kept");
        assert!(!store.journal(kept).await.expect("journal").is_empty() || kept == "p7");
    }
    assert_eq!(
        get_run(&store, "p5").await.status,
        RunStatus::Waiting,
        "p5 kept"
    );
    assert!(
        store
            .step_decision("p5", "review")
            .await
            .expect("decision")
            .is_some(),
        "a live run keeps its decision"
    );
}

// ---------------------------------------------------------------- secrets, records, audit

/// A secret is only ever returned for its own environment; names never carry values.
pub async fn secrets_are_scoped_to_their_environment<S: Store>(store: S) {
    let secret = |env: &str, name: &str, sealed: &[u8], at: Timestamp| SealedSecret {
        environment: env.into(),
        name: name.into(),
        sealed: sealed.to_vec(),
        fingerprint: Some(format!("fp-{env}-{name}-{at}")),
        updated_at: at,
    };
    store
        .put_secret(&secret("staging", "API_KEY", &[1, 2, 3], 10))
        .await
        .expect("put_secret");
    store
        .put_secret(&secret("production", "API_KEY", &[9, 9, 9, 9], 11))
        .await
        .expect("put_secret");
    store
        .put_secret(&secret("staging", "ONLY_STAGING", &[0, 255], 12))
        .await
        .expect("put_secret");

    assert_eq!(
        store.secret("staging", "API_KEY").await.expect("secret"),
        Some(secret("staging", "API_KEY", &[1, 2, 3], 10))
    );
    assert_eq!(
        store.secret("production", "API_KEY").await.expect("secret"),
        Some(secret("production", "API_KEY", &[9, 9, 9, 9], 11))
    );
    assert_eq!(
        store
            .secret("production", "ONLY_STAGING")
            .await
            .expect("secret"),
        None,
        "staging's secret never stands in for production's"
    );
    assert_eq!(
        store.secret("dev", "API_KEY").await.expect("secret"),
        None,
        "no secret in an environment that has none"
    );

    store
        .put_secret(&secret("staging", "API_KEY", &[4, 5], 20))
        .await
        .expect("replace");
    assert_eq!(
        store.secret("staging", "API_KEY").await.expect("secret"),
        Some(secret("staging", "API_KEY", &[4, 5], 20)),
        "put_secret replaces"
    );
    assert_eq!(
        store
            .secret("production", "API_KEY")
            .await
            .expect("secret")
            .map(|s| s.sealed),
        Some(vec![9, 9, 9, 9]),
        "replacing staging's leaves production's"
    );

    let mut names: Vec<(String, String, Timestamp)> = store
        .secret_names()
        .await
        .expect("secret_names")
        .into_iter()
        .map(|n| {
            let shown = serde_json::to_value(&n).expect("serialize a secret name");
            assert!(
                shown.get("sealed").is_none() && shown.get("fingerprint").is_none(),
                "a secret name carries no value: {shown}"
            );
            (n.environment, n.name, n.updated_at)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("production".into(), "API_KEY".into(), 11),
            ("staging".into(), "API_KEY".into(), 20),
            ("staging".into(), "ONLY_STAGING".into(), 12),
        ],
        "secret_names lists every secret once, with its last update"
    );
}

/// Test records are kept per environment, oldest first.
pub async fn test_records_per_environment<S: Store>(store: S) {
    let record = |env: &str, n: i64| NewTestRecord {
        environment: env.into(),
        run: format!("run-{n}"),
        step: "notify".into(),
        connector: "slack".into(),
        action: "post_message".into(),
        arguments: json!({"channel": "#ops", "n": n}),
        idempotency_key: Some(format!("k{n}")),
        at: n,
    };
    for (env, n) in [
        ("staging", 1),
        ("production", 2),
        ("staging", 3),
        ("staging", 4),
        ("production", 5),
    ] {
        store.add_record(&record(env, n)).await.expect("add_record");
    }
    let staging = store.records("staging").await.expect("records");
    assert_eq!(
        staging.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        vec![
            record("staging", 1),
            record("staging", 3),
            record("staging", 4)
        ],
        "staging's records, oldest first"
    );
    assert!(
        staging.windows(2).all(|w| w[0].id < w[1].id),
        "ids rise: {staging:?}"
    );
    let production = store.records("production").await.expect("records");
    assert_eq!(
        production.iter().map(|r| r.record.at).collect::<Vec<_>>(),
        vec![2, 5],
        "production's records only"
    );
    assert!(
        store.records("dev").await.expect("records").is_empty(),
        "no records elsewhere"
    );
}

/// Pages of test records read newest first, each continuing below the last id of the one
/// before, and only of their environment.
pub async fn record_pages_continue_newest_first<S: Store>(store: S) {
    for n in 1..=7 {
        let environment = if n == 4 { "production" } else { "staging" };
        store
            .add_record(&NewTestRecord {
                environment: environment.into(),
                run: format!("run-{n}"),
                step: "notify".into(),
                connector: "chat".into(),
                action: "post_message".into(),
                arguments: json!({"n": n}),
                idempotency_key: None,
                at: n,
            })
            .await
            .expect("add_record");
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .records_page("staging", Page { before, limit: 4 })
            .await
            .expect("records_page");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        pages.push(page.iter().map(|r| r.record.at).collect::<Vec<_>>());
    }
    assert_eq!(
        pages,
        vec![vec![7, 6, 5, 3], vec![2, 1]],
        "newest first, two pages"
    );
    let production = store
        .records_page(
            "production",
            Page {
                before: None,
                limit: 10,
            },
        )
        .await
        .expect("records_page");
    assert_eq!(
        production.iter().map(|r| r.record.at).collect::<Vec<_>>(),
        vec![4]
    );
}

/// Pages of the audit log read newest first, of every event or of one environment's.
pub async fn audit_pages_continue_newest_first<S: Store>(store: S) {
    for n in 1..=6 {
        let mut event = audit_event("ana", n);
        event.environment = match n % 3 {
            0 => None,
            1 => Some("staging".into()),
            _ => Some("production".into()),
        };
        store.audit(&event).await.expect("audit");
    }
    let seqs = |events: Vec<AuditEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let page = |environment: Option<&'static str>, before, limit| {
        let store = &store;
        async move {
            store
                .audit_page(environment, Page { before, limit })
                .await
                .expect("audit_page")
        }
    };
    assert_eq!(seqs(page(None, None, 4).await), vec![6, 5, 4, 3]);
    assert_eq!(seqs(page(None, Some(3), 4).await), vec![2, 1]);
    assert_eq!(seqs(page(Some("production"), None, 10).await), vec![5, 2]);
    assert_eq!(seqs(page(Some("staging"), Some(4), 10).await), vec![1]);
    assert!(page(Some("dev"), None, 10).await.is_empty());
    let newest = page(None, None, 1).await;
    assert_eq!(
        newest,
        vec![store.audit_log().await.expect("log")[5].clone()],
        "a page's events are the log's"
    );
}

fn audit_event(actor: &str, n: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: n,
        actor: actor.into(),
        action: "deploy".into(),
        environment: Some("production".into()),
        subject: format!("workflow-{n}"),
        detail: json!({"n": n, "from": "v1", "to": "v2"}),
    }
}

/// Audit events form one hash chain from the genesis hash, and read back as appended.
pub async fn audit_log_is_a_hash_chain<S: Store>(store: S) {
    assert!(
        store.audit_log().await.expect("audit_log").is_empty(),
        "an empty log"
    );
    let mut appended: Vec<AuditEvent> = Vec::new();
    for n in 1..=5 {
        let event = audit_event("ana", n);
        let stored = store.audit(&event).await.expect("audit");
        let prev = appended
            .last()
            .map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
        assert_eq!(stored.seq, n, "sequence numbers run 1, 2, 3…");
        assert_eq!(
            stored.prev_hash, prev,
            "event {n} links to the previous hash"
        );
        assert_eq!(
            stored.hash,
            AuditEvent::compute_hash(&prev, &event),
            "event {n} carries its hash"
        );
        assert_eq!(stored.event, event, "event {n} is stored as given");
        appended.push(stored);
    }
    let log = store.audit_log().await.expect("audit_log");
    assert_eq!(log, appended, "the log reads back as appended");
    assert_eq!(verify_audit_chain(&log), Ok(()), "the chain verifies");
    let mut forged = log.clone();
    forged[2].event.actor = "mallory".into();
    assert_eq!(
        verify_audit_chain(&forged),
        Err(3),
        "an edited event breaks the chain"
    );
}

/// The head is the newest event's sequence number and hash after every append, and
/// nothing before the first.
pub async fn audit_head_is_the_newest_event<S: Store>(store: S) {
    assert_eq!(
        store.audit_head().await.expect("audit_head"),
        None,
        "an empty log has no head"
    );
    for n in 1..=3 {
        let stored = store.audit(&audit_event("ana", n)).await.expect("audit");
        assert_eq!(
            store.audit_head().await.expect("audit_head"),
            Some(AuditHead {
                seq: stored.seq,
                hash: stored.hash.clone(),
            }),
            "the head after event {n} is that event"
        );
    }
    let log = store.audit_log().await.expect("audit_log");
    let newest = log.last().expect("three events");
    assert_eq!(
        store.audit_head().await.expect("audit_head"),
        Some(AuditHead {
            seq: newest.seq,
            hash: newest.hash.clone(),
        }),
        "the head is the log's last event"
    );
}

// ---------------------------------------------------------------- concurrency

/// Eight workers claiming in a loop over 500 queued runs: each run is claimed exactly once.
pub async fn concurrent_claims_are_exclusive<S: Store>(store: S) {
    const RUNS: usize = 500;
    const WORKERS: usize = 8;
    let store = Arc::new(store);
    let mut enqueues = Vec::new();
    for task in 0..WORKERS {
        let store = Arc::clone(&store);
        enqueues.push(tokio::spawn(async move {
            for i in (task..RUNS).step_by(WORKERS) {
                let run = new_run(&format!("run-{i:04}"), "staging", "hello", i as Timestamp);
                store.enqueue(&run).await.expect("enqueue");
            }
        }));
    }
    for task in enqueues {
        task.await.expect("enqueue task");
    }
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let store = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut got = Vec::new();
            loop {
                let claims = store
                    .claim(&worker, 10_000, 600_000, w % 4 + 1)
                    .await
                    .expect("claim");
                if claims.is_empty() {
                    break;
                }
                for claim in claims {
                    let done = commit_of(
                        vec![entry("a", StepStatus::Succeeded, 10_001)],
                        Some(finish(RunStatus::Succeeded, 10_002)),
                    );
                    store
                        .commit(&claim.run.id, claim.token, done)
                        .await
                        .expect("the only holder commits");
                    got.push((claim.run.id, claim.token, worker.clone()));
                }
            }
            got
        }));
    }
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for task in workers {
        for (id, token, worker) in task.await.expect("worker task") {
            assert_eq!(
                token, 1,
                "{id} claimed with token {token}: it was claimed before"
            );
            if let Some(first) = owner.insert(id.clone(), worker.clone()) {
                panic!("{id} claimed twice, by {first} and {worker}");
            }
        }
    }
    assert_eq!(owner.len(), RUNS, "every run is claimed");
    let runs = store.runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), RUNS);
    for run in runs {
        assert_eq!(
            (run.status, run.claims, run.fencing_token),
            (RunStatus::Succeeded, 1, 1),
            "{} claimed once and finished",
            run.id
        );
        assert_eq!(
            store.journal(&run.id).await.expect("journal").len(),
            1,
            "{}: one entry",
            run.id
        );
    }
}

/// Concurrent commits for one claim append to one journal without gaps or repeats.
pub async fn concurrent_commits_keep_one_journal_order<S: Store>(store: S) {
    const TASKS: i64 = 8;
    const EACH: i64 = 20;
    enqueue(&store, new_run("r1", "staging", "hello", 100)).await;
    let store = Arc::new(store);
    let (id, token) = claim_one(&*store, "w1", 1_000, 600_000).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, id) = (Arc::clone(&store), id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let step = format!("t{t}");
                let e = NewJournalEntry {
                    attempt: n as u32 + 1,
                    ..entry(&step, StepStatus::Succeeded, n)
                };
                store
                    .commit(&id, token, commit_of(vec![e.clone(), e], None))
                    .await
                    .expect("commit");
            }
        }));
    }
    for task in tasks {
        task.await.expect("commit task");
    }
    let journal = store.journal(&id).await.expect("journal");
    assert_eq!(
        journal.len() as i64,
        TASKS * EACH * 2,
        "every entry is kept"
    );
    assert!(
        journal
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as i64 + 1),
        "seq is 1..n without gaps or repeats"
    );
    for pair in journal.chunks(2) {
        assert_eq!(
            pair[0].entry, pair[1].entry,
            "one commit's entries are adjacent"
        );
    }
    for t in 0..TASKS {
        let attempts: Vec<u32> = journal
            .iter()
            .filter(|e| e.entry.step == format!("t{t}"))
            .map(|e| e.entry.attempt)
            .collect();
        assert!(
            attempts.windows(2).all(|w| w[0] <= w[1]),
            "task {t}'s commits keep their order: {attempts:?}"
        );
    }
}

/// Eight tasks appending audit events at once still form one valid chain.
pub async fn concurrent_audit_appends_form_one_chain<S: Store>(store: S) {
    const TASKS: i64 = 8;
    const EACH: i64 = 25;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                store
                    .audit(&audit_event(&format!("actor-{t}"), n))
                    .await
                    .expect("audit");
            }
        }));
    }
    for task in tasks {
        task.await.expect("audit task");
    }
    let log = store.audit_log().await.expect("audit_log");
    assert_eq!(log.len() as i64, TASKS * EACH, "every event is kept");
    assert!(
        log.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1),
        "seq is 1..n without gaps"
    );
    assert_eq!(
        verify_audit_chain(&log),
        Ok(()),
        "concurrent appends form one chain"
    );
    for t in 0..TASKS {
        let actor = format!("actor-{t}");
        let order: Vec<i64> = log
            .iter()
            .filter(|e| e.event.actor == actor)
            .map(|e| e.event.at)
            .collect();
        assert_eq!(
            order,
            (0..EACH).collect::<Vec<_>>(),
            "{actor}'s events keep their order"
        );
    }
}

// ---------------------------------------------------------------- the path between environments

fn evidence_of(version: &str, passed: bool, at: Timestamp) -> crate::NewEvidence {
    crate::NewEvidence {
        workflow: "order".into(),
        version: version.into(),
        kind: "scenarios".into(),
        passed,
        summary: json!({"scenarios": 3, "passed": if passed { 3 } else { 2 }}),
        at,
    }
}

fn request_of(id: &str, version: &str, author: &str) -> crate::NewPromotionRequest {
    crate::NewPromotionRequest {
        id: id.into(),
        workflow: "order".into(),
        version: version.into(),
        from_environment: "staging".into(),
        to_environment: "production".into(),
        author: author.into(),
        created_at: 10,
    }
}

fn release_of(
    id: &str,
    version: &str,
    request: Option<&str>,
    expected: Option<&str>,
) -> crate::NewRelease {
    crate::NewRelease {
        id: id.into(),
        environment: "production".into(),
        workflow: "order".into(),
        version: version.into(),
        kind: crate::ReleaseKind::Promotion,
        request: request.map(str::to_owned),
        author: "dev".into(),
        approvers: vec!["ops".into()],
        evidence: json!({"tests": "passed"}),
        expected_current: expected.map(str::to_owned),
        at: 20,
    }
}

/// Evidence is kept per exact version, newest first.
pub async fn evidence_is_bound_to_a_version<S: Store>(store: S) {
    store
        .add_evidence(&evidence_of("v1", false, 1))
        .await
        .expect("evidence");
    store
        .add_evidence(&evidence_of("v1", true, 2))
        .await
        .expect("evidence");
    store
        .add_evidence(&evidence_of("v2", true, 3))
        .await
        .expect("evidence");
    let v1 = store
        .evidence("order", Some("v1"))
        .await
        .expect("evidence of v1");
    assert_eq!(v1.len(), 2, "two facts about v1");
    assert!(
        v1[0].evidence.passed && !v1[1].evidence.passed,
        "newest first"
    );
    assert_eq!(
        v1[0].evidence.summary["passed"], 3,
        "the summary round-trips"
    );
    assert_eq!(store.evidence("order", None).await.expect("all").len(), 3);
    assert!(
        store
            .evidence("order", Some("v9"))
            .await
            .expect("none")
            .is_empty()
    );
}

/// A store with no bundle has none; the latest is the one added last (a redeploy of an
/// older bundle makes it the latest again), its files read back byte for byte.
pub async fn the_latest_bundle_is_the_one_deployed_last<S: Store>(store: S) {
    assert_eq!(store.latest_bundle().await.expect("latest"), None);
    let bundle = |id: &str, text: &str, at: Timestamp| crate::StoredBundle {
        id: id.to_owned(),
        environment: "staging".into(),
        files: vec![
            crate::BundleFile {
                path: "airlock.yaml".into(),
                text: "project: x\n".into(),
            },
            crate::BundleFile {
                path: "workflows/a.yaml".into(),
                text: text.to_owned(),
            },
        ],
        deployed_by: "ci".into(),
        deployed_at: at,
    };
    let first = bundle("b1", "name: a # ünïcode \"quoted\"\n", 1);
    let second = bundle("b2", "name: a\n", 2);
    store.add_bundle(&first).await.expect("add");
    store.add_bundle(&second).await.expect("add");
    assert_eq!(store.latest_bundle().await.expect("latest"), Some(second));
    let again = crate::StoredBundle {
        deployed_at: 3,
        ..first
    };
    store.add_bundle(&again).await.expect("add again");
    assert_eq!(store.latest_bundle().await.expect("latest"), Some(again));
}

/// Each approver has one decision per request, which they may change while it is open
/// (the newest counts); a rejection closes the request; a closed request takes no more
/// decisions.
pub async fn each_approver_has_one_decision_they_may_change<S: Store>(store: S) {
    store
        .open_request(&request_of("req1", "v1", "dev"))
        .await
        .expect("open");
    assert!(
        matches!(
            store.open_request(&request_of("req1", "v1", "dev")).await,
            Err(Error::Conflict(_))
        ),
        "ids are unique"
    );
    let yes = |who: &str, at| crate::Approval {
        request: "req1".into(),
        approver: who.into(),
        approved: true,
        reason: None,
        at,
    };
    store
        .decide_request(&yes("ops", 11))
        .await
        .expect("first approval");
    store
        .decide_request(&yes("ops", 12))
        .await
        .expect("the same approver again");
    assert_eq!(
        store.approvals("req1").await.expect("approvals").len(),
        1,
        "one decision per approver"
    );
    store
        .decide_request(&yes("cfo", 13))
        .await
        .expect("second approver");
    let approvals = store.approvals("req1").await.expect("approvals");
    assert_eq!(
        approvals
            .iter()
            .map(|a| a.approver.as_str())
            .collect::<Vec<_>>(),
        ["ops", "cfo"]
    );
    store
        .open_request(&request_of("req2", "v2", "dev"))
        .await
        .expect("open");
    store
        .decide_request(&crate::Approval {
            request: "req2".into(),
            approver: "ops".into(),
            approved: false,
            reason: Some("not now".into()),
            at: 14,
        })
        .await
        .expect("rejection");
    let rejected = store.request("req2").await.expect("read").expect("exists");
    assert_eq!(rejected.status, crate::RequestStatus::Rejected);
    assert_eq!(rejected.closed_at, Some(14));
    assert!(
        matches!(
            store
                .decide_request(&crate::Approval {
                    request: "req2".into(),
                    approver: "cfo".into(),
                    approved: true,
                    reason: None,
                    at: 15
                })
                .await,
            Err(Error::Conflict(_))
        ),
        "a closed request takes no decisions"
    );
    assert!(matches!(
        store
            .decide_request(&crate::Approval {
                request: "nope".into(),
                approver: "cfo".into(),
                approved: true,
                reason: None,
                at: 15
            })
            .await,
        Err(Error::NotFound(_))
    ));
    let listed = store.requests(Some("order")).await.expect("list");
    assert_eq!(listed.len(), 2);
}

/// The open requests are exactly those not yet closed (by any of the ways a request
/// closes), newest first, of one workflow when asked; closed history is left out.
pub async fn open_requests_are_the_open_ones_newest_first<S: Store>(store: S) {
    let opened = [
        ("r1", "order", 10),
        ("r2", "invoice", 11),
        ("r3", "order", 12),
        ("r4", "order", 13),
        ("r5", "invoice", 14),
    ];
    for (id, workflow, at) in opened {
        let mut request = request_of(id, "v1", "dev");
        request.workflow = workflow.into();
        request.created_at = at;
        store.open_request(&request).await.expect("open");
    }
    store
        .close_request("r4", crate::RequestStatus::Withdrawn, 20)
        .await
        .expect("withdraw");
    store
        .close_request("r1", crate::RequestStatus::Expired, 21)
        .await
        .expect("expire");
    store
        .decide_request(&crate::Approval {
            request: "r5".into(),
            approver: "cfo".into(),
            approved: false,
            reason: Some("not now".into()),
            at: 22,
        })
        .await
        .expect("reject");
    let ids = |requests: Vec<crate::PromotionRequest>| {
        requests
            .into_iter()
            .map(|r| {
                assert_eq!(r.status, crate::RequestStatus::Open, "{}", r.request.id);
                r.request.id
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.open_requests(None).await.expect("open")),
        ["r3", "r2"]
    );
    assert_eq!(
        ids(store.open_requests(Some("order")).await.expect("open")),
        ["r3"]
    );
    assert!(
        store
            .open_requests(Some("refund"))
            .await
            .expect("open")
            .is_empty()
    );
    assert_eq!(store.requests(None).await.expect("all").len(), 5);
}

/// An open request closes once, as withdrawn or expired; a closed one is a conflict, an
/// unknown one not found.
pub async fn an_open_request_is_withdrawn_or_expires_once<S: Store>(store: S) {
    for (id, status) in [
        ("req1", crate::RequestStatus::Withdrawn),
        ("req2", crate::RequestStatus::Expired),
    ] {
        store
            .open_request(&request_of(id, "v1", "dev"))
            .await
            .expect("open");
        store.close_request(id, status, 30).await.expect("close");
        let closed = store.request(id).await.expect("read").expect("exists");
        assert_eq!((closed.status, closed.closed_at), (status, Some(30)));
        assert!(
            matches!(
                store.close_request(id, status, 31).await,
                Err(Error::Conflict(_))
            ),
            "a closed request stays closed"
        );
        assert!(
            matches!(
                store
                    .decide_request(&crate::Approval {
                        request: id.into(),
                        approver: "ops".into(),
                        approved: true,
                        reason: None,
                        at: 32,
                    })
                    .await,
                Err(Error::Conflict(_))
            ),
            "a closed request takes no decisions"
        );
    }
    assert!(matches!(
        store
            .close_request("nope", crate::RequestStatus::Withdrawn, 30)
            .await,
        Err(Error::NotFound(_))
    ));
}

/// A disable release takes the workflow out of the environment (no deployment) and is
/// in its history; the next release brings it back.
pub async fn a_disable_release_takes_the_workflow_out<S: Store>(store: S) {
    store
        .release(&release_of("rel1", "v1", None, None))
        .await
        .expect("first release");
    let mut disable = release_of("rel2", "v1", None, Some("rel1"));
    disable.kind = crate::ReleaseKind::Disable;
    let disabled = store.release(&disable).await.expect("disable");
    assert_eq!(disabled.previous.as_deref(), Some("rel1"));
    assert!(
        store
            .deployment("production", "order")
            .await
            .expect("read")
            .is_none(),
        "a disabled workflow has no deployment"
    );
    let history = store
        .releases("production", "order")
        .await
        .expect("history");
    assert_eq!(history[0].release.kind, crate::ReleaseKind::Disable);
    store
        .release(&release_of("rel3", "v1", None, Some("rel2")))
        .await
        .expect("enable");
    assert_eq!(
        store
            .deployment("production", "order")
            .await
            .expect("read")
            .map(|d| d.version)
            .as_deref(),
        Some("v1")
    );
}

/// A release becomes current: it links to the previous one, moves the deployment, and
/// closes its request; a stale expectation is refused.
pub async fn a_release_links_to_the_previous_and_deploys<S: Store>(store: S) {
    store
        .open_request(&request_of("req1", "v1", "dev"))
        .await
        .expect("open");
    let first = store
        .release(&release_of("rel1", "v1", Some("req1"), None))
        .await
        .expect("first release");
    assert_eq!(first.previous, None);
    assert_eq!(
        store
            .request("req1")
            .await
            .expect("read")
            .expect("exists")
            .status,
        crate::RequestStatus::Released
    );
    assert_eq!(
        store
            .deployment("production", "order")
            .await
            .expect("read")
            .expect("deployed")
            .version,
        "v1"
    );
    assert!(
        matches!(
            store.release(&release_of("rel-x", "v2", None, None)).await,
            Err(Error::Conflict(_))
        ),
        "a stale expectation is refused"
    );
    let second = store
        .release(&release_of("rel2", "v2", None, Some("rel1")))
        .await
        .expect("second release");
    assert_eq!(second.previous.as_deref(), Some("rel1"));
    let mut rollback = release_of("rel3", "v1", None, Some("rel2"));
    rollback.kind = crate::ReleaseKind::Rollback;
    store.release(&rollback).await.expect("rollback");
    assert_eq!(
        store
            .deployment("production", "order")
            .await
            .expect("read")
            .expect("deployed")
            .version,
        "v1"
    );
    let history = store
        .releases("production", "order")
        .await
        .expect("history");
    assert_eq!(
        history
            .iter()
            .map(|r| r.release.id.as_str())
            .collect::<Vec<_>>(),
        ["rel3", "rel2", "rel1"]
    );
    assert_eq!(history[0].release.kind, crate::ReleaseKind::Rollback);
    assert_eq!(history[0].previous.as_deref(), Some("rel2"));
    assert_eq!(history[2].release.approvers, ["ops"]);
    assert_eq!(
        store
            .release_by_id("rel2")
            .await
            .expect("read")
            .expect("exists")
            .release
            .version,
        "v2"
    );
    assert!(
        store
            .releases("staging", "order")
            .await
            .expect("none")
            .is_empty()
    );
}

/// Two concurrent releases from the same current one: exactly one wins.
pub async fn concurrent_releases_one_wins<S: Store>(store: S) {
    let store = Arc::new(store);
    store
        .release(&release_of("base", "v1", None, None))
        .await
        .expect("base");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .release(&release_of(
                    &format!("r{i}"),
                    &format!("v{i}"),
                    None,
                    Some("base"),
                ))
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent release wins");
    assert_eq!(
        store
            .releases("production", "order")
            .await
            .expect("history")
            .len(),
        2
    );
}

// ---------------------------------------------------------------- console sessions

/// A session is found by its hash with its live token until it expires, is ended, or its
/// token is revoked; opening one forgets the sessions that had ended.
pub async fn sessions_live_until_they_expire_end_or_lose_their_token<S: Store>(store: S) {
    let ana = token_of("tok_1", "ana", "staging", "approver", 10);
    let ci = token_of("tok_2", "ci", "staging", "viewer", 10);
    for t in [&ana, &ci] {
        store.create_token(t).await.expect("create token");
    }
    let session = |hash: &str, token: &str, expires_at| crate::NewConsoleSession {
        id_hash: hash.to_owned(),
        token_id: token.to_owned(),
        csrf: format!("csrf-of-{hash}"),
        created_at: 100,
        expires_at,
    };
    store
        .create_session(&session("h1", "tok_1", 1_000))
        .await
        .expect("create");
    store
        .create_session(&session("h2", "tok_2", 1_000))
        .await
        .expect("create");
    assert!(
        matches!(
            store.create_session(&session("h1", "tok_2", 1_000)).await,
            Err(Error::Conflict(_))
        ),
        "a hash is one session"
    );
    let found = store
        .session_by_hash("h1", 500)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(found.session, session("h1", "tok_1", 1_000));
    assert_eq!(found.token, live(&ana));
    assert_eq!(
        store.session_by_hash("H1", 500).await.expect("read"),
        None,
        "exact hash"
    );
    assert_eq!(
        store.session_by_hash("h1", 1_000).await.expect("read"),
        None,
        "expired"
    );
    store.end_session("h1").await.expect("end");
    store
        .end_session("h1")
        .await
        .expect("ending twice is harmless");
    assert_eq!(
        store.session_by_hash("h1", 500).await.expect("read"),
        None,
        "ended"
    );
    store.revoke_token("tok_2", 200).await.expect("revoke");
    assert_eq!(
        store.session_by_hash("h2", 500).await.expect("read"),
        None,
        "a revoked token's sessions end with it"
    );
    // Opened after h2 expired: h2 is forgotten, so its hash may open a session again.
    let mut later = session("h2", "tok_1", 3_000);
    later.created_at = 2_000;
    store
        .create_session(&later)
        .await
        .expect("the ended session was forgotten");
    assert_eq!(
        store
            .session_by_hash("h2", 2_500)
            .await
            .expect("read")
            .map(|s| s.session),
        Some(later)
    );
}

/// Pages of runs read after a cursor continue exactly where the last page ended, newest
/// first, runs of one millisecond included, with every filter.
pub async fn run_pages_continue_after_their_cursor<S: Store>(store: S) {
    // Seven runs, three of them in one millisecond.
    for (id, env, created) in [
        ("r1", "staging", 100),
        ("r2", "staging", 200),
        ("r3", "production", 200),
        ("r4", "staging", 200),
        ("r5", "staging", 300),
        ("r6", "production", 400),
        ("r7", "staging", 500),
    ] {
        enqueue(&store, new_run(id, env, "a", created)).await;
    }
    for environment in [None, Some("staging")] {
        let all = store
            .runs(&RunFilter {
                environment: environment.map(str::to_owned),
                ..RunFilter::default()
            })
            .await
            .expect("runs");
        let mut paged = Vec::new();
        let mut before = None;
        for _ in 0..10 {
            let page = store
                .runs(&RunFilter {
                    environment: environment.map(str::to_owned),
                    limit: Some(2),
                    before: before.clone(),
                    ..RunFilter::default()
                })
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            before = Some(crate::RunCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            });
            paged.extend(page.iter().map(|r| r.id.clone()));
        }
        assert_eq!(paged, ids(&all), "pages of {environment:?} are the listing");
    }
    let queued_after_r4 = store
        .runs(&RunFilter {
            status: Some(RunStatus::Queued),
            before: Some(crate::RunCursor {
                created_at: 200,
                id: "r4".into(),
            }),
            ..RunFilter::default()
        })
        .await
        .expect("runs");
    assert_eq!(ids(&queued_after_r4), ["r3", "r2", "r1"]);
}

// ---------------------------------------------------------------- API tokens

fn token_of(id: &str, name: &str, env: &str, role: &str, at: Timestamp) -> NewApiToken {
    NewApiToken {
        id: id.to_owned(),
        name: name.to_owned(),
        environment: env.to_owned(),
        role: role.to_owned(),
        secret_hash: ApiToken::hash_secret(&format!("secret-of-{id}")),
        created_by: "admin".to_owned(),
        created_at: at,
    }
}

fn live(token: &NewApiToken) -> ApiToken {
    ApiToken {
        token: token.clone(),
        revoked_at: None,
    }
}

/// A token is found by the hash of its secret, exactly as created, until it is revoked;
/// a revoked token stays listed with its revocation time; revoking is idempotent and an
/// unknown id is `NotFound`.
pub async fn tokens_are_found_by_hash_until_revoked<S: Store>(store: S) {
    let ana = token_of("tok_1", "ana", "staging", "deployer", 10);
    let ci = token_of("tok_2", "ci", "staging", "runner", 11);
    let ops = token_of("tok_3", "ops", "production", "approver", 12);
    for t in [&ana, &ci, &ops] {
        assert_eq!(
            store.create_token(t).await.expect("create_token"),
            live(t),
            "create_token returns the token as stored, live"
        );
    }
    assert_eq!(
        ana.secret_hash,
        ApiToken::hash_secret("secret-of-tok_1"),
        "the hash is deterministic"
    );
    assert_eq!(ana.secret_hash.len(), 64, "hex SHA-256");

    assert_eq!(
        store
            .token_by_hash(&ApiToken::hash_secret("secret-of-tok_1"))
            .await
            .expect("token_by_hash"),
        Some(live(&ana))
    );
    assert_eq!(
        store
            .token_by_hash(&ops.secret_hash)
            .await
            .expect("token_by_hash"),
        Some(live(&ops))
    );
    assert_eq!(
        store
            .token_by_hash(&ApiToken::hash_secret("a guess"))
            .await
            .expect("token_by_hash"),
        None,
        "an unknown hash finds nothing"
    );
    assert_eq!(
        store
            .token_by_hash(&ana.secret_hash.to_uppercase())
            .await
            .expect("token_by_hash"),
        None,
        "hashes are compared exactly"
    );
    assert_eq!(
        store
            .token_by_hash("secret-of-tok_1")
            .await
            .expect("token_by_hash"),
        None,
        "the secret itself is not a key"
    );

    assert_eq!(
        store.tokens(Some("staging")).await.expect("tokens"),
        vec![live(&ana), live(&ci)],
        "one environment's tokens, by name"
    );
    assert_eq!(
        store.tokens(None).await.expect("tokens"),
        vec![live(&ops), live(&ana), live(&ci)],
        "every token, by environment then name"
    );
    assert!(
        store.tokens(Some("dev")).await.expect("tokens").is_empty(),
        "no tokens in an environment that has none"
    );

    store.revoke_token("tok_1", 50).await.expect("revoke");
    assert_eq!(
        store
            .token_by_hash(&ana.secret_hash)
            .await
            .expect("token_by_hash"),
        None,
        "a revoked token authenticates nothing"
    );
    let revoked = ApiToken {
        token: ana.clone(),
        revoked_at: Some(50),
    };
    assert_eq!(
        store.tokens(Some("staging")).await.expect("tokens"),
        vec![revoked.clone(), live(&ci)],
        "a revoked token is still listed, with its revocation time"
    );
    store
        .revoke_token("tok_1", 60)
        .await
        .expect("revoking twice succeeds");
    assert_eq!(
        store.tokens(Some("staging")).await.expect("tokens")[0],
        revoked,
        "the first revocation time is kept"
    );
    assert_eq!(
        store
            .token_by_hash(&ci.secret_hash)
            .await
            .expect("token_by_hash"),
        Some(live(&ci)),
        "revoking one token leaves the others"
    );
    match store.revoke_token("tok_missing", 70).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("revoking an unknown token must be NotFound, got {other:?}"),
    }
}

/// A name is one identity per environment: a second live token of the same name in the
/// same environment is refused (also when several are created at once), another
/// environment may use it, and a revoked token's name is free again. A reused id or
/// secret is refused, revoked or not.
pub async fn token_names_are_unique_among_live_tokens<S: Store>(store: S) {
    let first = token_of("tok_1", "ana", "staging", "deployer", 10);
    store.create_token(&first).await.expect("create");
    match store
        .create_token(&token_of("tok_2", "ana", "staging", "viewer", 11))
        .await
    {
        Err(Error::Conflict(_)) => {}
        other => panic!("a second live ana in staging must conflict, got {other:?}"),
    }
    let elsewhere = token_of("tok_3", "ana", "production", "viewer", 12);
    assert_eq!(
        store
            .create_token(&elsewhere)
            .await
            .expect("the same name in another environment"),
        live(&elsewhere)
    );
    let same_secret = NewApiToken {
        secret_hash: first.secret_hash.clone(),
        ..token_of("tok_4", "bob", "staging", "viewer", 13)
    };
    match store.create_token(&same_secret).await {
        Err(Error::Conflict(message)) => assert!(
            !message.contains(&first.secret_hash),
            "a conflict never echoes a hash: {message}"
        ),
        other => panic!("a reused secret must conflict, got {other:?}"),
    }
    match store
        .create_token(&token_of("tok_1", "carol", "staging", "viewer", 14))
        .await
    {
        Err(Error::Conflict(_)) => {}
        other => panic!("a reused id must conflict, got {other:?}"),
    }
    assert_eq!(
        store.tokens(None).await.expect("tokens"),
        vec![live(&elsewhere), live(&first)],
        "refused tokens wrote nothing"
    );

    store.revoke_token("tok_1", 20).await.expect("revoke");
    match store.create_token(&first).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("a revoked token's id and secret never return, got {other:?}"),
    }
    let again = token_of("tok_5", "ana", "staging", "viewer", 21);
    store
        .create_token(&again)
        .await
        .expect("a revoked token's name may be given again");
    assert_eq!(
        store
            .token_by_hash(&again.secret_hash)
            .await
            .expect("lookup"),
        Some(live(&again))
    );

    // Several creations of one name at once: exactly one is kept.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let t = token_of(&format!("tok_race_{i}"), "ci", "staging", "runner", 30 + i);
            match store.create_token(&t).await {
                Ok(_) => true,
                Err(Error::Conflict(_)) => false,
                Err(other) => panic!("a racing creation fails only by conflict: {other}"),
            }
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent creation of a name wins");
    let named_ci = store
        .tokens(Some("staging"))
        .await
        .expect("tokens")
        .into_iter()
        .filter(|t| t.token.name == "ci")
        .count();
    assert_eq!(named_ci, 1, "one token named ci in staging");
}

// ---------------------------------------------------------------- schedule cursors

/// The cursor starts unset, is created by the first advance from `None`, then moves only
/// from the value it holds, only forward, and separately per environment and workflow.
pub async fn schedule_cursor_is_a_compare_and_set<S: Store>(store: S) {
    let cursor = |env: &'static str, wf: &'static str| {
        let store = &store;
        async move {
            store
                .schedule_cursor(env, wf)
                .await
                .expect("schedule_cursor")
        }
    };
    assert_eq!(cursor("staging", "nightly").await, None, "unset at first");
    assert!(
        !store
            .advance_schedule("staging", "nightly", Some(1_000), 2_000)
            .await
            .expect("advance"),
        "an unset cursor is not at Some(_)"
    );
    assert_eq!(
        cursor("staging", "nightly").await,
        None,
        "a failed CAS writes nothing"
    );

    assert!(
        store
            .advance_schedule("staging", "nightly", None, 1_000)
            .await
            .expect("advance"),
        "the first advance from None sets the cursor"
    );
    assert_eq!(cursor("staging", "nightly").await, Some(1_000));
    assert!(
        !store
            .advance_schedule("staging", "nightly", None, 5_000)
            .await
            .expect("advance"),
        "None no longer matches once set"
    );
    assert!(
        !store
            .advance_schedule("staging", "nightly", Some(900), 2_000)
            .await
            .expect("advance"),
        "a stale expectation loses"
    );
    assert_eq!(cursor("staging", "nightly").await, Some(1_000));
    assert!(
        store
            .advance_schedule("staging", "nightly", Some(1_000), 2_000)
            .await
            .expect("advance"),
        "the current value moves it"
    );
    assert_eq!(cursor("staging", "nightly").await, Some(2_000));

    for to in [2_000, 1_500] {
        match store
            .advance_schedule("staging", "nightly", Some(2_000), to)
            .await
        {
            Err(Error::Conflict(_)) => {}
            other => panic!("moving a cursor to {to} from 2000 must conflict, got {other:?}"),
        }
    }
    assert_eq!(
        cursor("staging", "nightly").await,
        Some(2_000),
        "a cursor never moves back"
    );

    assert_eq!(
        cursor("production", "nightly").await,
        None,
        "each environment owns its schedule"
    );
    assert_eq!(cursor("staging", "hourly").await, None, "and each workflow");
    assert!(
        store
            .advance_schedule("production", "nightly", None, 500)
            .await
            .expect("advance")
    );
    assert_eq!(cursor("production", "nightly").await, Some(500));
    assert_eq!(cursor("staging", "nightly").await, Some(2_000));
}

/// Processes racing for the same tick: exactly one moves the cursor each time. Two racers
/// in one task (`tokio::join!`) for twenty ticks, then eight spawned tasks for one more.
pub async fn concurrent_schedule_advances_one_wins<S: Store>(store: S) {
    let mut cursor = None;
    for tick in 1..=20 {
        let to: Timestamp = tick * 60_000;
        let (a, b) = tokio::join!(
            store.advance_schedule("production", "nightly", cursor, to),
            store.advance_schedule("production", "nightly", cursor, to),
        );
        let (a, b) = (a.expect("racer a"), b.expect("racer b"));
        assert!(
            a != b,
            "tick {tick}: exactly one of two racers wins (a {a}, b {b})"
        );
        cursor = Some(to);
        assert_eq!(
            store
                .schedule_cursor("production", "nightly")
                .await
                .expect("cursor"),
            cursor,
            "tick {tick}: the winner's value"
        );
    }

    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            // Racers that agree on the tick, as processes computing the same schedule do,
            // and ones whose clocks disagree on how far to go.
            let to = 21 * 60_000 + (i % 2) * 1_000;
            let won = store
                .advance_schedule("production", "nightly", cursor, to)
                .await
                .expect("advance");
            won.then_some(to)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(to) = task.await.expect("task") {
            winners.push(to);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of eight racers wins: {winners:?}"
    );
    assert_eq!(
        store
            .schedule_cursor("production", "nightly")
            .await
            .expect("cursor"),
        Some(winners[0]),
        "the cursor holds the winner's value"
    );
}

/// `enqueue_claimed` either claims the new run (leased, fenced, not claimable by others
/// until the lease ends, committed to with its token) or leaves it queued for `claim`; a
/// duplicate is never claimed.
pub async fn enqueue_claimed_is_a_claim_or_a_queued_run<S: Store>(store: S) {
    let mut run = new_run("r1", "staging", "orders", 1_000);
    run.dedupe_key = Some("delivery-1".into());
    let first = vec![
        entry("normalize", StepStatus::Succeeded, 1_000),
        entry("notify", StepStatus::Started, 1_000),
    ];
    let (enqueued, claim) = store
        .enqueue_claimed(&run, "server-a", 30_000, &first)
        .await
        .expect("enqueue_claimed");
    assert!(enqueued.created);
    assert_eq!(enqueued.run, "r1");
    match claim {
        Some(claim) => {
            let stored = store.run("r1").await.expect("run").expect("exists");
            assert_eq!(claim.run, stored, "the claim is the run as stored");
            let journal = store.journal("r1").await.expect("journal");
            assert_eq!(
                journal
                    .iter()
                    .map(|e| (e.seq, e.entry.clone()))
                    .collect::<Vec<_>>(),
                vec![(1, first[0].clone()), (2, first[1].clone())],
                "the first entries are journaled with the claim, numbered from 1"
            );
            assert_eq!(claim.run.id, "r1");
            assert_eq!(claim.run.status, RunStatus::Running);
            assert_eq!(claim.run.lease_owner.as_deref(), Some("server-a"));
            assert_eq!(claim.run.lease_expires_at, Some(31_000));
            assert_eq!(claim.run.claims, 1);
            assert!(claim.token > 0);
            let others = store
                .claim("worker-b", 2_000, 30_000, 10)
                .await
                .expect("claim");
            assert!(
                others.is_empty(),
                "a claimed run is not claimable while leased"
            );
            store
                .commit(
                    "r1",
                    claim.token,
                    Commit {
                        entries: vec![entry("notify", StepStatus::Succeeded, 1_500)],
                        settle: Some(Settlement::Finish {
                            status: RunStatus::Succeeded,
                            output: None,
                            error: None,
                            at: 1_600,
                        }),
                        ..Commit::default()
                    },
                )
                .await
                .expect("the claim's token commits");
            let done = store.run("r1").await.expect("run").expect("exists");
            assert_eq!(done.status, RunStatus::Succeeded);
        }
        None => {
            let claims = store
                .claim("worker-b", 2_000, 30_000, 10)
                .await
                .expect("claim");
            assert_eq!(claims.len(), 1, "an unclaimed run is queued");
        }
    }
    let mut again = new_run("r2", "staging", "orders", 1_100);
    again.dedupe_key = Some("delivery-1".into());
    let journal_before = store.journal("r1").await.expect("journal");
    let (duplicate, claim) = store
        .enqueue_claimed(&again, "server-a", 30_000, &first)
        .await
        .expect("duplicate");
    assert!(!duplicate.created);
    assert_eq!(duplicate.run, "r1");
    assert!(claim.is_none(), "a duplicate is never claimed");
    assert_eq!(
        store.journal("r1").await.expect("journal"),
        journal_before,
        "a duplicate journals nothing"
    );
    assert!(
        store.journal("r2").await.expect("journal").is_empty(),
        "nor under its own id"
    );
}

/// A write probe (what readiness asks) succeeds on a healthy store, each time it is asked,
/// and leaves nothing a caller reads changed: the queue, the journal, the deployments,
/// the audit chain and the schedule cursors are as they were.
pub async fn write_probe_succeeds_and_changes_nothing<S: Store>(store: S) {
    store
        .probe_write()
        .await
        .expect("a fresh store takes a write");
    store
        .enqueue(&new_run("r1", "staging", "orders", 1_000))
        .await
        .expect("enqueue");
    store
        .audit(&NewAuditEvent {
            at: 1_000,
            actor: "dev".into(),
            action: "deploy".into(),
            environment: Some("staging".into()),
            subject: "orders".into(),
            detail: json!({}),
        })
        .await
        .expect("audit");
    let runs = store.runs(&RunFilter::default()).await.expect("runs");
    let audit = store.audit_log().await.expect("audit log");
    for _ in 0..3 {
        store
            .probe_write()
            .await
            .expect("a store with data takes a write");
    }
    assert_eq!(
        store.runs(&RunFilter::default()).await.expect("runs"),
        runs,
        "a probe changes no run"
    );
    assert!(store.journal("r1").await.expect("journal").is_empty());
    assert_eq!(
        store.audit_log().await.expect("audit log"),
        audit,
        "a probe is not audited"
    );
    assert!(
        store
            .deployments(None)
            .await
            .expect("deployments")
            .is_empty()
    );
    assert_eq!(
        store
            .schedule_cursor("staging", "orders")
            .await
            .expect("cursor"),
        None
    );
    let claims = store.claim("w", 2_000, 30_000, 10).await.expect("claim");
    assert_eq!(claims.len(), 1, "the queued run is still due, once");
}

// ---------------------------------------------------------------- notifications

fn notification(id: &str, env: &str, at: Timestamp) -> crate::NewNotification {
    crate::NewNotification {
        id: id.to_owned(),
        event: "promotion.requested".into(),
        environment: env.to_owned(),
        target: "chat".into(),
        action: "post".into(),
        args: json!({ "text": format!("about {id}") }),
        created_at: at,
    }
}

/// An event reported twice is kept once; a claimed notification is not claimed again
/// while its claim lives; a failure makes it due at its retry time with the error kept; a
/// delivery is final, and a holder whose claim passed to another settles nothing.
pub async fn notifications_are_kept_once_and_retried_until_delivered<S: Store>(store: S) {
    let added = store
        .add_notifications(&[
            notification("e1/chat", "staging", 10),
            notification("e2/chat", "production", 11),
        ])
        .await
        .expect("add");
    assert_eq!(added, 2);
    let again = store
        .add_notifications(&[notification("e1/chat", "staging", 99)])
        .await
        .expect("add again");
    assert_eq!(
        again, 0,
        "an event id already in the outbox is not added twice"
    );
    let claimed = store
        .claim_notifications("a", 20, 1_000, 10)
        .await
        .expect("claim");
    let ids: Vec<&str> = claimed.iter().map(|n| n.notification.id.as_str()).collect();
    assert_eq!(ids, ["e1/chat", "e2/chat"], "oldest first");
    assert_eq!(
        claimed[0].notification.args,
        json!({ "text": "about e1/chat" })
    );
    assert_eq!(
        claimed[0].notification.created_at, 10,
        "the first report is kept"
    );
    assert!(
        store
            .claim_notifications("b", 30, 1_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "claimed notifications are not claimed again while the claim lives"
    );
    assert!(
        store
            .settle_notification("e1/chat", "a", 40, Some("connection refused"), 500)
            .await
            .expect("settle")
    );
    assert!(
        store
            .claim_notifications("b", 499, 1_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a failed notification waits for its retry time"
    );
    let retried = store
        .claim_notifications("b", 500, 1_000, 10)
        .await
        .expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("connection refused"));
    assert!(
        !store
            .settle_notification("e1/chat", "a", 501, None, 0)
            .await
            .expect("settle"),
        "a holder that lost the claim settles nothing"
    );
    assert!(
        store
            .settle_notification("e1/chat", "b", 502, None, 0)
            .await
            .expect("settle"),
        "the holder delivers"
    );
    // e2's claim by `a` ran out at 1,020: anyone may claim it then.
    let taken = store
        .claim_notifications("c", 1_020, 1_000, 10)
        .await
        .expect("claim");
    let ids: Vec<&str> = taken.iter().map(|n| n.notification.id.as_str()).collect();
    assert_eq!(
        ids,
        ["e2/chat"],
        "a delivered notification is never claimed again"
    );
    let staging = store.notifications(Some("staging")).await.expect("list");
    assert_eq!(staging.len(), 1);
    assert_eq!(staging[0].delivered_at, Some(502));
    assert_eq!(staging[0].attempts, 2);
    assert_eq!(staging[0].last_error, None);
    assert_eq!(store.notifications(None).await.expect("list").len(), 2);
}

/// Two deliverers claiming at once over many notifications take each exactly once.
pub async fn concurrent_notification_claims_deliver_each_once<S: Store>(store: S) {
    let store = Arc::new(store);
    let items: Vec<_> = (0..60)
        .map(|i| notification(&format!("e{i:02}/chat"), "production", i))
        .collect();
    store.add_notifications(&items).await.expect("add");
    let mut tasks = Vec::new();
    for holder in ["one", "two", "three"] {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_notifications(holder, 100, 60_000, 4)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    break;
                }
                for n in claimed {
                    assert!(
                        store
                            .settle_notification(&n.notification.id, holder, 101, None, 0)
                            .await
                            .expect("settle"),
                        "{holder} holds what it claimed"
                    );
                    mine.push(n.notification.id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a deliverer"));
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 60, "every notification delivered once: {all:?}");
    assert_eq!(unique.len(), 60);
}
