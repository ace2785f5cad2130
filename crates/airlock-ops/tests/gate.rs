//! The gate into a protected environment holds for its configuration too, on a real
//! embedded store: a policy lowered in the file changes nothing until production's
//! approvers release it, the floors hold whatever the file says, and readiness answers
//! from production's recorded `check` (a real HTTP health endpoint on loopback).

use airlock_connectors::secrets::Keyring;
use airlock_core::project::{Project, load};
use airlock_core::source::SourceFile;
use airlock_engine::{ProjectRuntime, SystemClock};
use airlock_ops::{Actor, config, deploy, evidence, promotion, readiness};
use airlock_store::Store;
use airlock_store::sqlite::SqliteStore;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NOW: i64 = 1_800_000_000_000;

fn manifest(port: u16, require: &str) -> String {
    format!(
        r#"project: gate
connectors:
  sink: {{ kind: http, description: "Reached by check only" }}
environments:
  staging:
    approvers: [lead]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{port}", health: /health, timeout: 2s }}
  production:
    protected: true
    approvers: [prod-approver, cfo]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{port}", health: /health, timeout: 2s }}
differences:
  - {{ path: protected, reason: "production changes only by promotion and rollback" }}
  - {{ path: approvers, reason: "production has its own approvers" }}
promotion:
  staging -> production:
    require: {require}
"#
    )
}

const STRICT: &str = "{ tests: pass, parity: clean, approvals: 1 }";
const LOWERED: &str = "{ tests: none, parity: none, approvals: 0 }";

fn greet(greeting: &str) -> String {
    format!(
        "name: greet\ntrigger: {{ webhook: {{ path: greet }} }}\nsteps:\n  - id: hello\n    map: {{ greeting: \"{greeting} {{{{ trigger.body.name }}}}\" }}\n"
    )
}

const SCENARIO: &str =
    "trigger: { body: { name: ada } }\nexpect:\n  status: succeeded\n  path: [hello]\n";

fn project(port: u16, require: &str, greeting: &str) -> Project {
    let loaded = load(vec![
        SourceFile::new("airlock.yaml", manifest(port, require)),
        SourceFile::new("workflows/greet.yaml", greet(greeting)),
        SourceFile::new("tests/greet/hello.yaml", SCENARIO),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.project
}

async fn tested(store: &dyn Store, project: &Project, now: i64) {
    let suites = airlock_core::suite::suites(project, None);
    let reports = airlock_core::suite::run_suites(&suites, &|| {});
    evidence::record(store, project, &reports, now)
        .await
        .expect("evidence");
}

/// A loopback HTTP server whose `/health` answers 200 when `healthy`, else 503.
fn health_server() -> (u16, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let healthy = Arc::new(AtomicBool::new(false));
    let state = healthy.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let status = if state.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (port, healthy)
}

#[tokio::test]
async fn lowering_the_policy_needs_productions_approvers_and_the_floors_hold() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let strict = project(9, STRICT, "hello");
    deploy::deploy(store, &strict, "staging", None, "dev", NOW)
        .await
        .unwrap();
    // The store meets production: its configuration is adopted as the first release.
    let adopted = config::status(store, &strict.manifest, "production")
        .await
        .unwrap();
    assert!(adopted.released.is_none(), "a status reads, never adopts");
    promotion::promote(
        store,
        &strict,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 1,
    )
    .await
    .unwrap();
    assert!(
        config::status(store, &strict.manifest, "production")
            .await
            .unwrap()
            .released
            .is_some()
    );

    // The file lowers the policy: production still judges by the released one.
    let lowered = project(9, LOWERED, "hello, untested");
    deploy::deploy(store, &lowered, "staging", None, "dev", NOW + 2)
        .await
        .unwrap();
    let refused = promotion::promote(
        store,
        &lowered,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 3,
    )
    .await
    .unwrap();
    assert!(!refused.opened, "{refused:?}");
    let unmet: Vec<&str> = refused
        .verdict
        .checks
        .iter()
        .filter(|c| !c.met && c.requirement != "approvals")
        .map(|c| c.requirement.as_str())
        .collect();
    assert_eq!(unmet, ["tests"], "the released rule still asks for tests");

    // Lowering it is a configuration change into production: production's approvers
    // decide it, never its author, and a name the change itself would add counts for nothing.
    let change = config::promote(store, &lowered, "production", Actor::local("dev"), NOW + 4)
        .await
        .unwrap();
    assert!(change.opened, "{change:?}");
    assert!(
        change
            .diff
            .iter()
            .any(|l| l.sign == '+' && l.text.contains("\"none\"")),
        "{:?}",
        change.diff
    );
    let request = change.request.unwrap().request.id;
    let by_author = promotion::decide(
        store,
        &lowered,
        &request,
        Actor::local("dev"),
        true,
        None,
        NOW + 5,
    )
    .await;
    assert!(by_author.is_err(), "{by_author:?}");
    let approved = promotion::decide(
        store,
        &lowered,
        &request,
        Actor::local("prod-approver"),
        true,
        None,
        NOW + 6,
    )
    .await
    .unwrap();
    assert!(approved.release.is_some(), "{approved:?}");

    // Released: `tests: none, approvals: 0` — and still the floors of a protected target.
    let refused = promotion::promote(
        store,
        &lowered,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 7,
    )
    .await
    .unwrap();
    assert!(!refused.opened, "tests pass for the exact hash, always");
    tested(store, &lowered, NOW + 8).await;
    let opened = promotion::promote(
        store,
        &lowered,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 9,
    )
    .await
    .unwrap();
    assert!(opened.opened, "{opened:?}");
    assert!(
        opened.release.is_none(),
        "at least one approval, whatever the file says: {:?}",
        opened.verdict
    );

    // Promoting the same version again returns the open request, not a second one.
    let again = promotion::promote(
        store,
        &lowered,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 10,
    )
    .await
    .unwrap();
    assert!(!again.opened);
    assert_eq!(
        again.request.as_ref().map(|r| &r.request.id),
        opened.request.as_ref().map(|r| &r.request.id)
    );
    // The author withdraws it; the inbox lists it as withdrawn.
    let id = opened.request.unwrap().request.id;
    promotion::withdraw(store, &lowered, &id, Actor::local("dev"), NOW + 11)
        .await
        .unwrap();
    let inbox = promotion::list(
        store,
        &lowered,
        Some(airlock_store::RequestStatus::Withdrawn),
        Some("production"),
        NOW + 12,
    )
    .await
    .unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].request.request.id, id);
    let actions: Vec<String> = store
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    for action in [
        "config.adopt",
        "config.request",
        "config.release",
        "withdraw",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn readiness_is_not_ready_while_productions_check_fails_and_ready_when_every_answer_is_clear()
{
    let temp = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&temp.path().join("airlock.db")).unwrap());
    let (port, healthy) = health_server();
    let project = project(port, STRICT, "hello");
    deploy::deploy(&*store, &project, "staging", None, "dev", NOW)
        .await
        .unwrap();
    tested(&*store, &project, NOW + 1).await;
    let opened = promotion::promote(
        &*store,
        &project,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 2,
    )
    .await
    .unwrap();
    let request = opened.request.unwrap().request.id;
    promotion::decide(
        &*store,
        &project,
        &request,
        Actor::local("cfo"),
        true,
        None,
        NOW + 3,
    )
    .await
    .unwrap();
    let runtime = ProjectRuntime::new(
        store.clone(),
        project.manifest.clone(),
        temp.path().to_owned(),
        Keyring::load(temp.path(), &[]).unwrap(),
        Arc::new(SystemClock),
    );

    // Production's health endpoint fails: its check is recorded, and readiness says so.
    let report = airlock_ops::check::check_and_record(
        &*store,
        &runtime,
        &project,
        "production",
        "dev",
        NOW + 4,
    )
    .await
    .unwrap();
    assert!(!report.ok, "{report:?}");
    let checklist = readiness::readiness(&*store, &project, Some("greet"), None, NOW + 5)
        .await
        .unwrap();
    assert!(!checklist.ready);
    let target = checklist.workflows[0]
        .answers
        .iter()
        .find(|a| a.question == airlock_core::readiness::Question::Target)
        .unwrap();
    assert!(!target.clear);
    assert!(
        target.answer.contains("`check` failed 1 of 1 bindings")
            && target.answer.contains("sink: GET /health → 503"),
        "{}",
        target.answer
    );

    // Healthy again, and checked now (`readiness --check`): every answer is clear.
    healthy.store(true, Ordering::SeqCst);
    let checklist = readiness::readiness(&*store, &project, Some("greet"), Some(&runtime), NOW + 6)
        .await
        .unwrap();
    let unclear: Vec<&str> = checklist.workflows[0]
        .answers
        .iter()
        .filter(|a| !a.clear)
        .map(|a| a.answer.as_str())
        .collect();
    assert!(checklist.ready, "{unclear:#?}");
}

#[tokio::test]
async fn a_disabled_workflow_comes_back_at_once_in_staging_and_through_the_gate_in_production() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let project = project(9, STRICT, "hello");
    deploy::deploy(store, &project, "staging", None, "dev", NOW)
        .await
        .unwrap();
    tested(store, &project, NOW + 1).await;

    // Staging: out and back at once, each a release.
    promotion::disable(
        store,
        &project,
        "greet",
        "staging",
        Actor::local("dev"),
        NOW + 2,
    )
    .await
    .unwrap();
    assert!(
        store
            .deployment("staging", "greet")
            .await
            .unwrap()
            .is_none()
    );
    let back = promotion::enable(
        store,
        &project,
        "greet",
        "staging",
        Actor::local("dev"),
        NOW + 3,
    )
    .await
    .unwrap();
    assert!(back.release.is_some(), "{back:?}");
    assert!(
        store
            .deployment("staging", "greet")
            .await
            .unwrap()
            .is_some()
    );

    // Production: released, then its first release rolled back, which disables it.
    let opened = promotion::promote(
        store,
        &project,
        "greet",
        "staging",
        "production",
        Actor::local("dev"),
        None,
        NOW + 4,
    )
    .await
    .unwrap();
    let request = opened.request.unwrap().request.id;
    promotion::decide(
        store,
        &project,
        &request,
        Actor::local("cfo"),
        true,
        None,
        NOW + 5,
    )
    .await
    .unwrap();
    let rolled = promotion::rollback(
        store,
        &project,
        "greet",
        "production",
        None,
        Actor::local("oncall"),
        NOW + 6,
    )
    .await
    .unwrap();
    assert_eq!(
        rolled.release.release.kind,
        airlock_store::ReleaseKind::Disable
    );
    assert!(rolled.restored.is_none());
    assert!(
        store
            .deployment("production", "greet")
            .await
            .unwrap()
            .is_none()
    );

    // Enabling production again is a request its approvers decide, never its author.
    let asked = promotion::enable(
        store,
        &project,
        "greet",
        "production",
        Actor::local("dev"),
        NOW + 7,
    )
    .await
    .unwrap();
    assert!(asked.release.is_none());
    let request = asked.request.expect("a request").request.id;
    assert!(
        store
            .deployment("production", "greet")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        promotion::decide(
            store,
            &project,
            &request,
            Actor::local("dev"),
            true,
            None,
            NOW + 8
        )
        .await
        .is_err()
    );
    // An approver may change their mind while it is open: a rejection closes it.
    let decided = promotion::decide(
        store,
        &project,
        &request,
        Actor::local("cfo"),
        false,
        Some("not yet"),
        NOW + 9,
    )
    .await
    .unwrap();
    assert_eq!(decided.status, promotion::DecisionStatus::Rejected);
    let asked = promotion::enable(
        store,
        &project,
        "greet",
        "production",
        Actor::local("dev"),
        NOW + 10,
    )
    .await
    .unwrap();
    let request = asked.request.expect("a new request").request.id;
    let released = promotion::decide(
        store,
        &project,
        &request,
        Actor::local("prod-approver"),
        true,
        None,
        NOW + 11,
    )
    .await
    .unwrap();
    assert!(released.release.is_some(), "{released:?}");
    assert!(
        store
            .deployment("production", "greet")
            .await
            .unwrap()
            .is_some()
    );
    let kinds: Vec<&str> = promotion::releases(store, "greet", "production")
        .await
        .unwrap()
        .iter()
        .map(|r| r.kind.as_str())
        .collect();
    assert_eq!(kinds, ["promotion", "disable", "promotion"]);
    // Every release record carries the audit chain's head at its time.
    for release in store.releases("production", "greet").await.unwrap() {
        let head = release.release.evidence["audit_head"]
            .as_str()
            .unwrap_or_else(|| panic!("{:?}", release.release.evidence));
        let (seq, hash) = head.split_once(':').unwrap();
        assert!(
            seq.parse::<i64>().unwrap() > 0 && hash.len() == 64,
            "{head}"
        );
    }
}

#[tokio::test]
async fn an_open_request_expires_after_its_rules_time_and_an_approver_may_change_their_decision() {
    let temp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
    let store: &dyn Store = &store;
    let project = project(9, "{ tests: pass, approvals: 2 }\n    expires: 1h", "hello");
    deploy::deploy(store, &project, "staging", None, "dev", NOW)
        .await
        .unwrap();
    tested(store, &project, NOW + 1).await;
    let open = |at| {
        promotion::promote(
            store,
            &project,
            "greet",
            "staging",
            "production",
            Actor::local("dev"),
            None,
            at,
        )
    };
    let first = open(NOW + 2).await.unwrap().request.unwrap().request.id;
    let yes = promotion::decide(
        store,
        &project,
        &first,
        Actor::local("cfo"),
        true,
        None,
        NOW + 3,
    )
    .await
    .unwrap();
    assert!(yes.release.is_none());
    // cfo, having approved, changes their mind: the request is rejected, not stuck.
    let no = promotion::decide(
        store,
        &project,
        &first,
        Actor::local("cfo"),
        false,
        Some("found a problem"),
        NOW + 4,
    )
    .await
    .unwrap();
    assert_eq!(no.changed_from, Some(promotion::DecisionStatus::Approved));
    assert_eq!(
        store.request(&first).await.unwrap().unwrap().status,
        airlock_store::RequestStatus::Rejected
    );
    // A new request, left undecided past its hour, expires.
    let second = open(NOW + 5).await.unwrap().request.unwrap().request.id;
    let late = promotion::decide(
        store,
        &project,
        &second,
        Actor::local("cfo"),
        true,
        None,
        NOW + 5 + 3_600_000,
    )
    .await;
    assert!(late.is_err(), "{late:?}");
    assert_eq!(
        store.request(&second).await.unwrap().unwrap().status,
        airlock_store::RequestStatus::Expired
    );
}
