//! `airlock test`: the built binary runs a project's scenarios, prints results and
//! coverage, records evidence for each workflow's hash, and exits 0, 1 or 2.

mod support;
use support::*;

use std::path::Path;

/// Each workflow's version id, as `airlock hash` prints it.
fn hashes(project: &Path) -> Vec<(String, String)> {
    let out = airlock(project, &["hash", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["workflow"].as_str().unwrap().to_owned(),
                r["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (workflow, version, kind, passed, summary) of every evidence row, oldest first.
fn evidence(project: &Path) -> Vec<(String, String, String, bool, serde_json::Value)> {
    let db = rusqlite::Connection::open(project.join(".airlock/airlock.db")).unwrap();
    let mut statement = db
        .prepare("SELECT workflow, version, kind, passed, summary FROM evidence ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| {
            let summary: String = row.get(4)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get::<_, i64>(3)? != 0,
                serde_json::from_str(&summary).unwrap(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_starter_suite_passes_and_records_evidence_for_each_workflow_hash() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["test"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for name in [
        "big-order",
        "crm-down",
        "crm-flaky",
        "small-order",
        "nothing-overdue",
        "reminders-approved",
        "reminders-rejected",
        "reminders-mail-retried",
    ] {
        assert!(
            stdout.contains(&format!("✓ {name}\n")),
            "{name} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("big_order → else"), "{stdout}");
    assert!(
        stdout.contains(
            "send_reminders: retry after a fault ┆ failure path ┆ ✓ reminders-mail-retried"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("uncovered:"), "{stdout}");
    assert!(
        stdout.contains("8 scenarios in 2 workflows: 8 passed, 0 failed"),
        "{stdout}"
    );

    let rows = evidence(&project);
    let mut hashes = hashes(&project);
    hashes.sort();
    let mut recorded: Vec<(String, String)> = rows
        .iter()
        .map(|(w, v, _, _, _)| (w.clone(), v.clone()))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded, hashes,
        "one evidence row per workflow, bound to its hash"
    );
    for (workflow, _, kind, passed, summary) in &rows {
        assert_eq!(kind, "scenarios");
        assert!(passed, "{workflow}");
        assert_eq!(summary["failed"], 0);
        assert_eq!(
            summary["coverage"]["branches"]["percent"], 100.0,
            "{workflow}: {summary}"
        );
        // What the policy's `tests: { branches, failure_paths }` shares are judged on.
        for category in ["branches", "failure_paths"] {
            let tally = &summary["coverage"][category];
            assert_eq!(tally["ratio"], 1.0, "{workflow} {category}: {summary}");
            assert_eq!(tally["covered"], tally["total"], "{workflow}: {summary}");
        }
    }
    let order = rows.iter().find(|r| r.0 == "order-intake").unwrap();
    assert_eq!(order.4["scenarios"], 4);
    assert_eq!(order.4["uncovered"], serde_json::json!([]));
    let credit = rows.iter().find(|r| r.0 == "credit-review").unwrap();
    assert_eq!(credit.4["scenarios"], 4);
    assert_eq!(credit.4["uncovered"], serde_json::json!([]));
    assert_eq!(
        credit.4["coverage"]["failure_paths"],
        serde_json::json!({ "covered": 1, "total": 1, "percent": 100.0, "ratio": 1.0 })
    );

    // One workflow only: one more row, for that hash.
    let out = airlock(&project, &["test", "order-intake"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("credit-review"));
    let rows = evidence(&project);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].0, "order-intake");
}

#[test]
fn a_broken_expectation_fails_names_the_scenario_and_records_failed_evidence() {
    let (_temp, project) = init_project();
    replace_in(
        &project,
        "tests/order-intake/big-order.yaml",
        "Big order 1001: 250.0 from acme-42",
        "Big order 1001: 250 from ACME-42",
    );
    let out = airlock(&project, &["test"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("✗ big-order (tests/order-intake/big-order.yaml)"),
        "{stdout}"
    );
    assert!(stdout.contains("expected \"Big order 1001: 250 from ACME-42\", got \"Big order 1001: 250.0 from acme-42\""), "{stdout}");
    assert!(stdout.contains("7 passed, 1 failed"), "{stdout}");
    let rows = evidence(&project);
    let order = rows.iter().find(|r| r.0 == "order-intake").unwrap();
    assert!(!order.3, "the order workflow's evidence says failed");
    assert_eq!(
        order.4["failed_scenarios"],
        serde_json::json!(["big-order"])
    );
    let credit = rows.iter().find(|r| r.0 == "credit-review").unwrap();
    assert!(credit.3, "the other workflow still passed");
}

#[test]
fn json_output_carries_results_coverage_and_evidence() {
    let (_temp, project) = init_project();
    replace_in(
        &project,
        "tests/order-intake/small-order.yaml",
        "status: succeeded",
        "status: dead",
    );
    let out = airlock(&project, &["test", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["ok"], false);
    assert_eq!(
        (json["scenarios"].as_u64(), json["failed"].as_u64()),
        (Some(8), Some(1))
    );
    let order = json["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workflow"] == "order-intake")
        .unwrap();
    assert_eq!(order["passed"], false);
    assert!(order["evidence"].as_i64().is_some());
    let small = order["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "small-order")
        .unwrap();
    assert_eq!(small["passed"], false);
    assert_eq!(small["failures"][0], "status: expected dead, got succeeded");
    assert_eq!(
        small["path"],
        serde_json::json!(["normalize", "big_order", "save_order", "sync_crm"])
    );
    let coverage = order["coverage"].as_array().unwrap();
    assert!(
        coverage
            .iter()
            .any(|c| c["label"] == "sync_crm: retry after a fault" && c["covered"] == true)
    );
    assert_eq!(order["summary"]["coverage"]["connectors"]["total"], 3);
}

#[test]
fn bad_input_exits_2() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["test", "no-such-workflow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no workflow named `no-such-workflow`"),
        "{}",
        text(&out.stderr)
    );
    replace_in(
        &project,
        "tests/order-intake/big-order.yaml",
        "status: succeeded",
        "status: fine",
    );
    let out = airlock(&project, &["test"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid scenario is bad input: {}",
        text(&out.stdout)
    );
    assert!(
        !project.join(".airlock/airlock.db").exists() || evidence(&project).is_empty(),
        "nothing recorded"
    );
}
