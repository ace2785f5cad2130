//! Each answer, clear and unclear, on the starter project.

use super::*;
use crate::parity::{self, ParityFacts};
use crate::project::{Project, load};

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_795_608_000_000;

fn starter() -> Project {
    let loaded = load(crate::scaffold::files());
    assert!(loaded.diagnostics.is_empty());
    loaded.project
}

fn order_intake(project: &Project) -> &Workflow {
    &project.workflow("order-intake").unwrap().workflow
}

fn evidence(version: &str, passed: bool) -> TestEvidence {
    TestEvidence {
        version: version.into(),
        passed,
        at_ms: NOW - 2 * HOUR,
        scenarios: Some(4),
        failed: if passed {
            Vec::new()
        } else {
            vec!["crm-down".into()]
        },
        coverage: vec![
            Tally {
                category: "branches".into(),
                covered: 2,
                total: 2,
            },
            Tally {
                category: "failure_paths".into(),
                covered: 1,
                total: 2,
            },
        ],
        uncovered: vec!["sync_crm: retry after a fault".into()],
    }
}

fn released(id: &str, version: &str, previous: Option<&str>) -> ReleaseFact {
    ReleaseFact {
        id: id.into(),
        version: version.into(),
        kind: "promotion".into(),
        author: "alice".into(),
        approvers: vec!["ops-lead".into()],
        at_ms: NOW - 30 * HOUR,
        previous: previous.map(str::to_owned),
        runs: 0,
        failed: 0,
    }
}

fn facts<'a>(workflow: &'a Workflow, report: &'a ParityReport) -> Facts<'a> {
    Facts {
        workflow,
        path: Some(("staging".into(), "production".into())),
        source_version: Some("abc123abc123abc123".into()),
        tests: Some(evidence("abc123abc123abc123", true)),
        newest_tests: Some(evidence("abc123abc123abc123", true)),
        source_runs: 5,
        source_failures: 0,
        parity: Some(report),
        releases: vec![
            released("rel_2", "abc123abc123", Some("rel_1")),
            released("rel_1", "def456def456", None),
        ],
        now_ms: NOW,
        target: Some(TargetFacts {
            environment: "production".into(),
            check: Some(CheckFact {
                at_ms: NOW - HOUR,
                bindings: 4,
                failed: Vec::new(),
            }),
            ..TargetFacts::default()
        }),
    }
}

fn get(readiness: &Readiness, question: Question) -> &Answer {
    readiness
        .answers
        .iter()
        .find(|a| a.question == question)
        .unwrap()
}

#[test]
fn every_answer_clear_is_ready() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let r = assess(&project.manifest, &facts(order_intake(&project), &report));
    assert!(r.ready, "{r:#?}");
    assert_eq!(
        r.risk,
        Risk::Finance,
        "order-intake writes to the order ledger"
    );
    let tested = &get(&r, Question::Tested).answer;
    assert!(tested.starts_with("scenarios passed for abc123abc123 (4 scenarios; branches 2/2, failure paths 1/2, 2 h ago)"), "{tested}");
    assert!(
        tested.contains("not covered: sync_crm: retry after a fault"),
        "{tested}"
    );
    assert!(
        tested.ends_with("5 finished runs of it in staging, 0 failed"),
        "{tested}"
    );
    let differs = &get(&r, Question::Differs).answer;
    assert!(
        differs.contains("dependencies: chat, crm, orders_db"),
        "mail is not called by order-intake: {differs}"
    );
    assert!(
        differs.contains("destinations and permissions: protected, approvers, egress"),
        "{differs}"
    );
    assert!(
        get(&r, Question::Documented)
            .answer
            .contains(" documented, 0 drift")
    );
    let release = &get(&r, Question::Release).answer;
    assert!(release.contains("finance risk requires scenarios passed for the exact hash, covering every branch and every failure path, parity clean, ≥5 staging runs at ≤0% failures, 2 approvals from ops-lead, cfo (not the author)"), "{release}");
    assert!(
        release.contains(
            "release owner: alice (released rel_2 30 h ago, promotion, approved by ops-lead)"
        ),
        "{release}"
    );
    assert_eq!(
        get(&r, Question::Rollback).answer,
        "`airlock rollback order-intake --env production` makes rel_1 (def456def456, released by alice 30 h ago) current again, at once"
    );
}

#[test]
fn what_was_tested_is_unclear_without_passing_evidence_for_the_exact_version() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let w = order_intake(&project);
    let failed = Facts {
        tests: Some(evidence("abc123abc123abc123", false)),
        ..facts(w, &report)
    };
    let a = tested(&failed);
    assert!(
        !a.clear && a.answer.contains("FAILED") && a.answer.contains("crm-down"),
        "{a:?}"
    );
    let other = Facts {
        tests: None,
        newest_tests: Some(evidence("fff000fff000fff", true)),
        ..facts(w, &report)
    };
    let a = tested(&other);
    assert!(
        !a.clear
            && a.answer
                .contains("is for fff000fff000, not for abc123abc123"),
        "{a:?}"
    );
    let never = Facts {
        tests: None,
        newest_tests: None,
        ..facts(w, &report)
    };
    assert!(
        tested(&never)
            .answer
            .contains("never tested: `airlock test order-intake`")
    );
    let undeployed = Facts {
        source_version: None,
        ..facts(w, &report)
    };
    assert!(!tested(&undeployed).clear);
    assert!(!assess(&project.manifest, &never).ready);
}

#[test]
fn drift_makes_the_documented_answer_unclear() {
    let text = crate::scaffold::FILES[0].1.replace(
        "  - path: egress\n    reason: \"staging reaches only this machine\"\n",
        "",
    );
    let mut files = crate::scaffold::files();
    files[0] = crate::source::SourceFile::new("airlock.yaml", text);
    let project = load(files).project;
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let f = facts(order_intake(&project), &report);
    let a = documented(&f);
    assert!(!a.clear);
    assert!(a.answer.contains("1 drift: egress"), "{a:?}");
    assert!(differs(&f).clear, "what differs is still known");
}

#[test]
fn how_it_moves_is_unclear_without_a_rule_or_enough_approvers() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let w = order_intake(&project);
    let mut manifest = project.manifest.clone();
    manifest.environments[1].approvers.truncate(1);
    let a = release(&manifest, &facts(w, &report), Risk::Finance);
    assert!(
        !a.clear
            && a.answer
                .ends_with("but production has 1 approver for 2 required approvals"),
        "{a:?}"
    );
    manifest.promotion.clear();
    assert!(!release(&manifest, &facts(w, &report), Risk::Finance).clear);
    let first = Facts {
        releases: Vec::new(),
        ..facts(w, &report)
    };
    let a = release(&project.manifest, &first, Risk::Finance);
    assert!(
        a.clear && a.answer.contains("no release in production yet"),
        "{a:?}"
    );
    let nowhere = Facts {
        path: None,
        parity: None,
        ..facts(w, &report)
    };
    let r = assess(&project.manifest, &nowhere);
    assert!(r.answers.iter().all(|a| !a.clear), "{r:#?}");
}

#[test]
fn rollback_needs_an_earlier_release() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let w = order_intake(&project);
    let never = Facts {
        releases: Vec::new(),
        ..facts(w, &report)
    };
    let a = rollback(&never);
    assert!(
        a.clear && a.answer.contains("takes it out of production"),
        "{a:?}"
    );
    let once = Facts {
        releases: vec![released("rel_1", "def456", None)],
        ..facts(w, &report)
    };
    let a = rollback(&once);
    assert!(
        a.clear && a.answer.contains("takes it out of production"),
        "{a:?}"
    );
}

#[test]
fn rollback_never_offers_a_release_that_failed_more_without_saying_so() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let w = order_intake(&project);
    // After a rollback: the current release returned to a good version; the one before
    // it (what a rollback would offer now) failed every run.
    let mut current = released("rel_3", "def456def456", Some("rel_2"));
    current.kind = "rollback".into();
    (current.runs, current.failed) = (10, 0);
    let mut bad = released("rel_2", "abc123abc123", Some("rel_1"));
    (bad.runs, bad.failed) = (4, 4);
    let after = Facts {
        releases: vec![current, bad, released("rel_1", "def456def456", None)],
        ..facts(w, &report)
    };
    let a = rollback(&after);
    assert!(!a.clear, "{a:?}");
    assert!(
        a.answer
            .contains("failed 100% of its 4 runs against 0% now"),
        "{a:?}"
    );
}

#[test]
fn the_target_is_unclear_when_its_check_fails_or_a_secret_is_missing() {
    let project = starter();
    let report = parity::compare(
        &project.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    let w = order_intake(&project);
    assert!(target(&facts(w, &report)).clear);
    let with = |t: TargetFacts| Facts {
        target: Some(t),
        ..facts(w, &report)
    };
    let base = facts(w, &report).target.unwrap();
    for (broken, says) in [
        (
            TargetFacts {
                check: Some(CheckFact {
                    at_ms: NOW - HOUR,
                    bindings: 4,
                    failed: vec!["crm: connection refused".into()],
                }),
                ..base.clone()
            },
            "`check` failed 1 of 4 bindings",
        ),
        (
            TargetFacts {
                check: None,
                ..base.clone()
            },
            "never checked",
        ),
        (
            TargetFacts {
                missing_secrets: vec!["CRM_TOKEN".into()],
                ..base.clone()
            },
            "CRM_TOKEN",
        ),
        (
            TargetFacts {
                webhook_secret_unset: Some("ORDER_HOOK_SECRET".into()),
                ..base.clone()
            },
            "signing secret ORDER_HOOK_SECRET",
        ),
        (
            TargetFacts {
                frozen: Some("Fri 15:00 to Mon 08:00".into()),
                ..base.clone()
            },
            "frozen",
        ),
        (
            TargetFacts {
                config_changes: 2,
                ..base.clone()
            },
            "differs from the released one",
        ),
    ] {
        let a = target(&with(broken));
        assert!(!a.clear && a.answer.contains(says), "{says}: {a:?}");
    }
}

#[test]
fn ages_read_like_people_say_them() {
    assert_eq!(age(NOW, NOW - 5_000), "just now");
    assert_eq!(age(NOW, NOW - 12 * 60_000), "12 min ago");
    assert_eq!(age(NOW, NOW - 5 * HOUR), "5 h ago");
    assert_eq!(age(NOW, NOW - 72 * HOUR), "3 days ago");
    assert_eq!(
        age(NOW, NOW + 5_000),
        "just now",
        "a clock a little behind is not the future"
    );
}
