//! The operations on a real embedded store: their results read back from JSON exactly as
//! they were written (the CLI prints the API's answers through the same renderers), the
//! one approver rule, and a deploy that names the versions it expects.

use super::*;
use airlock_core::project::{Loaded, load};
use airlock_core::source::SourceFile;
use airlock_store::sqlite::SqliteStore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

const MANIFEST: &str = r#"project: ops-round-trip
connectors:
  sink: { kind: http, description: "Not called by these workflows" }
environments:
  staging:
    approvers: [lead]
    egress: [127.0.0.1]
    bindings:
      sink: { base_url: "http://127.0.0.1:9", timeout: 1s }
  production:
    protected: true
    approvers: [prod-approver, cfo]
    egress: [127.0.0.1]
    bindings:
      sink: { base_url: "http://127.0.0.1:9", timeout: 1s }
differences:
  - { path: protected, reason: "production changes only by promotion and rollback" }
  - { path: approvers, reason: "production has its own approvers" }
promotion:
  staging -> production:
    require: { tests: pass, parity: clean, approvals: 1 }
"#;

const SCENARIO: &str = r#"trigger: { body: { name: ada } }
expect:
  status: succeeded
  path: [hello]
"#;

fn greet(greeting: &str) -> String {
    format!(
        "name: greet\ntrigger: {{ webhook: {{ path: greet }} }}\nsteps:\n  - id: hello\n    map: {{ greeting: \"{greeting} {{{{ trigger.body.name }}}}\" }}\n"
    )
}

fn loaded(workflow: &str) -> Loaded {
    load(vec![
        SourceFile::new("airlock.yaml", MANIFEST),
        SourceFile::new("workflows/greet.yaml", workflow),
        SourceFile::new("tests/greet/hello.yaml", SCENARIO),
    ])
}

fn project(workflow: &str) -> Project {
    let loaded = loaded(workflow);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.project
}

/// Written, read back, written again: the same value and the same bytes.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let written = serde_json::to_string_pretty(value).expect("serializes");
    let read: T = serde_json::from_str(&written)
        .unwrap_or_else(|e| panic!("does not read back ({e}):\n{written}"));
    assert_eq!(&read, value, "{written}");
    assert_eq!(
        serde_json::to_string_pretty(&read).expect("serializes"),
        written
    );
}

async fn record_evidence(store: &dyn Store, project: &Project, now: i64) {
    let suites = airlock_core::suite::suites(project, None);
    let reports = airlock_core::suite::run_suites(&suites, &|| {});
    assert!(reports.iter().all(|r| r.passed));
    evidence::record(store, project, &reports, now)
        .await
        .expect("evidence recorded");
}

/// `dev` promotes `greet` of `project` from staging to production, with no freeze exception.
async fn promote_greet(store: &dyn Store, project: &Project, at: i64) -> promotion::Promotion {
    promote_as_dev(store, project, "greet", at).await
}

/// `dev` promotes `workflow` of `project` from staging to production, with no freeze
/// exception.
async fn promote_as_dev(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    at: i64,
) -> promotion::Promotion {
    promotion::promote(
        store,
        project,
        workflow,
        "staging",
        "production",
        Actor::local("dev"),
        None,
        at,
    )
    .await
    .unwrap()
}
#[tokio::test]
async fn every_result_reads_back_as_it_was_written() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let v1 = project(&greet("hello"));

    record_evidence(store, &v1, 1_000).await;
    round_trip(&evidence::list(store, "greet", None).await.unwrap());
    let deployed = deploy::deploy(store, &v1, "staging", None, "dev", 1_100)
        .await
        .unwrap();
    assert_eq!(deployed.changes[0].change, deploy::ChangeKind::Added);
    round_trip(&deployed);
    let diff = diff::diff(store, &v1, "staging", "production", 1_150)
        .await
        .unwrap();
    assert!(
        diff.report
            .findings
            .iter()
            .any(|f| matches!(f.status, airlock_core::parity::Status::Documented { .. })),
        "a documented row is read back through the flattened status: {diff:?}"
    );
    round_trip(&diff);
    round_trip(
        &readiness::readiness(store, &v1, None, None, 1_200)
            .await
            .unwrap(),
    );

    let unexplained = promotion::promote(
        store,
        &v1,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        Some("  "),
        1_250,
    )
    .await;
    assert!(
        matches!(unexplained, Err(OpsError::BadRequest { .. })),
        "a freeze exception says why: {unexplained:?}"
    );
    let opened = promote_greet(store, &v1, 1_300).await;
    assert!(opened.opened && opened.release.is_none(), "{opened:?}");
    round_trip(&opened);
    let request = opened.request.as_ref().unwrap().request.id.clone();
    let approved = promotion::decide(
        store,
        &v1,
        &request,
        Actor::local("prod-approver"),
        true,
        None,
        1_400,
    )
    .await
    .unwrap();
    assert!(approved.release.is_some(), "{approved:?}");
    round_trip(&approved);

    // v2 through the same path, then a rollback to v1.
    let v2 = project(&greet("hello again"));
    record_evidence(store, &v2, 2_000).await;
    let deployed = deploy::deploy(store, &v2, "staging", None, "dev", 2_100)
        .await
        .unwrap();
    assert_eq!(deployed.changes[0].change, deploy::ChangeKind::Changed);
    round_trip(&deployed);
    let opened = promote_greet(store, &v2, 2_200).await;
    let request = opened.request.unwrap().request.id;
    let rejected = promotion::decide(
        store,
        &v2,
        &request,
        Actor::local("cfo"),
        false,
        Some("not this week"),
        2_300,
    )
    .await
    .unwrap();
    round_trip(&rejected);
    let opened = promote_greet(store, &v2, 2_400).await;
    let request = opened.request.unwrap().request.id;
    promotion::decide(store, &v2, &request, Actor::local("cfo"), true, None, 2_500)
        .await
        .unwrap();
    let rolled = promotion::rollback(
        store,
        &v2,
        "greet",
        "production",
        None,
        Actor::local("dev"),
        2_600,
    )
    .await
    .unwrap();
    round_trip(&rolled);
    let rows = promotion::releases(store, "greet", "production")
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].kind, airlock_store::ReleaseKind::Rollback);
    round_trip(&rows);

    // A promotion the gate refuses (v3 never tested) is a result too.
    let v3 = project(&greet("hi"));
    deploy::deploy(store, &v3, "staging", None, "dev", 3_000)
        .await
        .unwrap();
    let refused = promote_greet(store, &v3, 3_100).await;
    assert!(!refused.opened, "{refused:?}");
    round_trip(&refused);

    // A validation with problems, each positioned.
    let broken = loaded("name: greet\nsteps:\n  - id: hello\n    mapp: {}\n");
    let validation = validate::validate(&broken);
    assert!(!validation.ok && !validation.errors.is_empty());
    round_trip(&validation);
    round_trip(&validate::validate(&loaded(&greet("hello"))));
}

#[tokio::test]
async fn one_rule_decides_who_approves_and_audits_every_refusal() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let manifest = &project(&greet("hello")).manifest;
    let step = Decides::Step {
        run: "run_1",
        step: "sign_off",
    };

    require_approver(store, manifest, "production", "cfo", step, 1)
        .await
        .expect("a listed approver decides");
    // Production's approver is not staging's: nothing falls back across environments.
    let refused = require_approver(store, manifest, "staging", "cfo", step, 2)
        .await
        .expect_err("not listed in staging");
    assert!(matches!(refused, OpsError::Forbidden { .. }), "{refused:?}");
    assert_eq!(
        refused.to_string(),
        "`cfo` is not an approver in environment `staging`"
    );
    assert_eq!(refused.help(), Some("approvers of `staging`: lead"));
    let promotion = Decides::Promotion {
        request: "req_1",
        workflow: "greet",
        approve: false,
    };
    require_approver(store, manifest, "production", "mallory", promotion, 3)
        .await
        .expect_err("not listed in production");
    let missing = require_approver(store, manifest, "qa", "cfo", step, 4)
        .await
        .expect_err("no such environment");
    assert!(matches!(missing, OpsError::NotFound { .. }), "{missing:?}");

    let log = store.audit_log().await.unwrap();
    let refusals: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.event.action.as_str(),
                e.event.actor.as_str(),
                e.event.subject.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [
            ("approve-step.refused", "cfo", "run_1"),
            ("reject.refused", "mallory", "greet"),
        ]
    );
    assert_eq!(log[0].event.detail["step"], "sign_off");
    assert_eq!(log[1].event.detail["request"], "req_1");
}

#[tokio::test]
async fn a_deploy_that_names_its_versions_deploys_exactly_those_or_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let here = project(&greet("hello"));
    let id = airlock_core::canonical::version_id(&here.workflows[0].workflow).0;
    let other =
        airlock_core::canonical::version_id(&project(&greet("hello again")).workflows[0].workflow)
            .0;
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };

    for (expected, says) in [
        (expect(&[("greet", &other)]), "`greet` is "),
        (expect(&[]), "`greet` is only on the server"),
        (
            expect(&[("greet", &id), ("refund", &id)]),
            "`refund` is only in the request",
        ),
    ] {
        let refused = deploy::deploy(store, &here, "staging", Some(&expected), "dev", 1)
            .await
            .expect_err("the working copy is not the one expected");
        assert!(matches!(refused, OpsError::Conflict { .. }), "{refused:?}");
        assert!(refused.to_string().contains(says), "{refused}");
        assert!(store.deployments(Some("staging")).await.unwrap().is_empty());
    }
    // A protected environment is refused for being protected, whatever was expected.
    let protected = deploy::deploy(
        store,
        &here,
        "production",
        Some(&expect(&[("greet", &other)])),
        "dev",
        2,
    )
    .await
    .expect_err("protected");
    assert!(matches!(protected, OpsError::Forbidden { .. }));

    let deployed = deploy::deploy(
        store,
        &here,
        "staging",
        Some(&expect(&[("greet", &id)])),
        "dev",
        3,
    )
    .await
    .expect("the versions match");
    assert_eq!(deployed.changes[0].to.as_deref(), Some(id.as_str()));
}

const NOTIFY: &str = r#"name: notify
trigger: { webhook: { path: notify } }
steps:
  - id: post
    call: sink.request
    with: { method: POST, path: /notify, json: { name: "{{ trigger.body.name }}" } }
    retry: { attempts: 3, backoff: 1s }
"#;

const NOTIFY_ANSWERED: &str = r#"trigger: { body: { name: ada } }
stubs:
  sink.request: { respond: { status: 200, body: {} } }
expect:
  status: succeeded
  path: [post]
"#;

/// The one scenario that takes the retry: the first attempt times out.
const NOTIFY_RETRIED: &str = r#"trigger: { body: { name: ada } }
stubs:
  sink.request:
    - fail: timeout
    - respond: { status: 200, body: {} }
expect:
  status: succeeded
  path: [post]
"#;

/// Issue 12, point 8: a policy asking for every failure path covered let through a
/// workflow whose scenarios covered 0 of its 1 (the verdict never read coverage).
#[tokio::test]
async fn a_workflow_with_0_of_1_failure_paths_covered_is_not_promoted() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let manifest = MANIFEST.replace(
        "require: { tests: pass, parity: clean, approvals: 1 }",
        "require: { tests: { pass: true, branches: 1.0, failure_paths: 1.0 }, parity: clean, approvals: 1 }",
    );
    let project_with = |scenarios: &[(&str, &str)]| {
        let mut files = vec![
            SourceFile::new("airlock.yaml", manifest.as_str()),
            SourceFile::new("workflows/notify.yaml", NOTIFY),
        ];
        files.extend(
            scenarios
                .iter()
                .map(|(name, text)| SourceFile::new(format!("tests/notify/{name}.yaml"), *text)),
        );
        let loaded = load(files);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.project
    };

    let untested_retry = project_with(&[("answered", NOTIFY_ANSWERED)]);
    record_evidence(store, &untested_retry, 1_000).await;
    let recorded = evidence::list(store, "notify", None).await.unwrap();
    let summary = &recorded.evidence[0].evidence.summary;
    assert_eq!(
        summary["coverage"]["failure_paths"],
        serde_json::json!({ "covered": 0, "total": 1, "percent": 0.0, "ratio": 0.0 }),
        "the evidence carries the counts and the ratio"
    );
    deploy::deploy(store, &untested_retry, "staging", None, "dev", 1_100)
        .await
        .unwrap();
    let refused = promote_as_dev(store, &untested_retry, "notify", 1_200).await;
    assert!(!refused.opened && refused.request.is_none(), "{refused:?}");
    let unmet: Vec<(&str, &str)> = refused
        .verdict
        .checks
        .iter()
        // Approvals come after the request opens; everything else must hold first.
        .filter(|c| !c.met && c.requirement != "approvals")
        .map(|c| (c.requirement.as_str(), c.actual.as_str()))
        .collect();
    assert_eq!(
        unmet,
        [(
            "failure_paths",
            "failure paths covered 0 of 1 (0%), required 100%"
        )]
    );

    // A scenario that takes the retry covers it: the same hash, tested again, goes ahead.
    let covered = project_with(&[("answered", NOTIFY_ANSWERED), ("retried", NOTIFY_RETRIED)]);
    record_evidence(store, &covered, 2_000).await;
    let opened = promote_as_dev(store, &covered, "notify", 2_100).await;
    assert!(opened.opened, "{:?}", opened.verdict);
    assert!(
        opened
            .verdict
            .checks
            .iter()
            .any(|c| c.requirement == "failure_paths"
                && c.met
                && c.actual == "failure paths covered 1 of 1 (100%), required 100%"),
        "{:?}",
        opened.verdict
    );
}

fn bundle_of(files: &[(&str, &str)]) -> airlock_core::bundle::Bundle {
    airlock_core::bundle::Bundle::from_bytes(
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec()))
            .collect(),
    )
    .expect("a well-formed bundle")
}

/// Issue 14, points 1 and 2: the files a deploy carried are deployed only when they hash
/// to what their sender named and validate; they are kept, and the server's own run of
/// their scenarios is the evidence the gate reads.
#[tokio::test]
async fn a_deploy_of_files_keeps_them_and_records_the_servers_evidence() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let workflow = greet("hello");
    let bundle = bundle_of(&[
        ("airlock.yaml", MANIFEST),
        ("workflows/greet.yaml", &workflow),
        ("tests/greet/hello.yaml", SCENARIO),
    ]);

    let refused = deploy::deploy_files(store, &bundle, Some("0ther"), "staging", None, "ci", 1)
        .await
        .expect_err("another bundle id");
    assert!(matches!(refused, OpsError::Conflict { .. }), "{refused:?}");
    let broken = bundle_of(&[
        ("airlock.yaml", MANIFEST),
        (
            "workflows/greet.yaml",
            "name: greet\nsteps:\n  - id: hello\n    mapp: {}\n",
        ),
    ]);
    let invalid =
        deploy::deploy_files(store, &broken, Some(&broken.id()), "staging", None, "ci", 2)
            .await
            .expect_err("does not validate");
    let OpsError::Invalid { problems, .. } = &invalid else {
        panic!("{invalid:?}")
    };
    assert!(
        !problems.is_empty()
            && problems
                .iter()
                .all(|p| p.path.as_deref() == Some("workflows/greet.yaml") && p.line > 0),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| (p.line, p.column) == (4, 5)),
        "{problems:?}"
    );
    assert_eq!(invalid.status(), 400);
    let protected = deploy::deploy_files(store, &bundle, None, "production", None, "ci", 3)
        .await
        .expect_err("protected");
    assert!(matches!(protected, OpsError::Forbidden { .. }));
    assert!(store.deployments(Some("staging")).await.unwrap().is_empty());
    assert_eq!(store.latest_bundle().await.unwrap(), None, "nothing kept");

    let deployed =
        deploy::deploy_files(store, &bundle, Some(&bundle.id()), "staging", None, "ci", 4)
            .await
            .expect("deployed");
    round_trip(&deployed);
    assert_eq!(deployed.bundle.as_deref(), Some(bundle.id().as_str()));
    let version = deployed.changes[0].to.clone().unwrap();
    assert_eq!(deployed.evidence.len(), 1);
    assert!(deployed.evidence[0].passed && deployed.evidence[0].version == version);
    let kept = bundle::latest_project(store).await.unwrap().expect("kept");
    assert!(kept.diagnostics.is_empty());
    assert_eq!(kept.project.files, bundle.source_files());
    let evidence = store.evidence("greet", Some(&version)).await.unwrap();
    assert_eq!(evidence[0].evidence.summary["runner"], "server");

    // The gate reads the server's evidence: the request opens with its tests met.
    let opened = promote_as_dev(store, &kept.project, "greet", 5).await;
    assert!(opened.opened, "{:?}", opened.verdict);

    // Asked again for what staging runs, the server tests it again; another version of
    // the workflow is refused by name.
    let again = evidence::run_deployed(store, &kept.project, "staging", None, None, "ci", 6)
        .await
        .unwrap();
    assert_eq!((again.recorded.len(), again.skipped.len()), (1, 0));
    let other = evidence::run_deployed(
        store,
        &kept.project,
        "staging",
        Some("greet"),
        Some(&"0".repeat(64)),
        "ci",
        7,
    )
    .await
    .expect_err("not the served version");
    assert!(matches!(other, OpsError::Conflict { .. }), "{other:?}");
    let nothing = evidence::run_deployed(store, &kept.project, "production", None, None, "ci", 8)
        .await
        .expect_err("nothing deployed in production");
    assert!(matches!(nothing, OpsError::NotFound { .. }), "{nothing:?}");
}

/// Issue 14, point 6: the inbox holds the open requests its approver may decide, never
/// their own, each with its verdict.
#[tokio::test]
async fn the_inbox_lists_exactly_what_its_approver_may_decide() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let v1 = project(&greet("hello"));
    record_evidence(store, &v1, 1_000).await;
    deploy::deploy(store, &v1, "staging", None, "dev", 1_100)
        .await
        .unwrap();
    let opened = promote_greet(store, &v1, 1_200).await;
    let id = opened.request.unwrap().request.id;

    let cfo = promotion::inbox(store, &v1, "cfo", None, 1_300)
        .await
        .unwrap();
    round_trip(&cfo);
    assert_eq!(cfo.environments, ["production"]);
    assert_eq!(cfo.requests.len(), 1);
    assert_eq!(cfo.requests[0].request.request.id, id);
    let verdict = cfo.requests[0]
        .verdict
        .as_ref()
        .expect("an open request's verdict");
    assert!(
        verdict
            .checks
            .iter()
            .any(|c| c.requirement == "approvals" && !c.met)
    );
    // Staging's approver sees staging, where nothing waits; the author is no approver;
    // production's approver asked about staging alone approves nowhere there.
    let lead = promotion::inbox(store, &v1, "lead", None, 1_300)
        .await
        .unwrap();
    assert_eq!(
        (lead.environments.as_slice(), lead.requests.len()),
        (&["staging".to_owned()][..], 0)
    );
    let dev = promotion::inbox(store, &v1, "dev", None, 1_300)
        .await
        .unwrap();
    assert!(dev.environments.is_empty() && dev.requests.is_empty());
    let within = promotion::inbox(store, &v1, "cfo", Some("staging"), 1_300)
        .await
        .unwrap();
    assert!(within.environments.is_empty() && within.requests.is_empty());

    // Decided, it leaves the inbox.
    promotion::decide(store, &v1, &id, Actor::local("cfo"), true, None, 1_400)
        .await
        .unwrap();
    let after = promotion::inbox(store, &v1, "cfo", None, 1_500)
        .await
        .unwrap();
    assert!(after.requests.is_empty());
}
