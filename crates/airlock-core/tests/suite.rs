//! Scenario tests through the real interpreter: the starter project's scenarios, each
//! kind of expectation failing with a precise sentence, faults per attempt, coverage.

use airlock_core::project::{self, Project};
use airlock_core::source::SourceFile;
use airlock_core::suite::{self, Arm, Category, Item, ScenarioResult, WorkflowReport};

/// The starter project, plus extra files (a path already there is replaced).
fn project_with(extra: &[(&str, &str)]) -> Project {
    let mut files = airlock_core::scaffold::files();
    for (path, text) in extra {
        files.retain(|f| f.path != *path);
        files.push(SourceFile::new(*path, *text));
    }
    let loaded = project::load(files);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    loaded.project
}

fn reports(project: &Project, only: Option<&str>) -> Vec<WorkflowReport> {
    suite::run_suites(&suite::suites(project, only), &|| {})
}

/// Runs one scenario file of order-intake written for the test.
fn order_scenario(text: &str) -> ScenarioResult {
    let project = project_with(&[("tests/order-intake/zz-case.yaml", text)]);
    let report = reports(&project, Some("order-intake")).remove(0);
    report
        .results
        .into_iter()
        .find(|r| r.name == "zz-case")
        .expect("the scenario ran")
}

const BIG_ORDER_STUBS: &str = "trigger:
  body: { id: 1001, amount: 250, customer: \" ACME-42 \" }
stubs:
  orders_db.insert: { respond: { rows: 1 } }
  crm.request: { respond: { status: 201 } }
  chat.post: { respond: { ok: true } }
";

#[test]
fn the_eight_starter_scenarios_pass() {
    let project = project_with(&[]);
    let reports = reports(&project, None);
    let names: Vec<(&str, &str, bool)> = reports
        .iter()
        .flat_map(|r| {
            r.results
                .iter()
                .map(|s| (s.workflow.as_str(), s.name.as_str(), s.passed))
        })
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for report in &reports {
        for result in &report.results {
            assert!(
                result.passed,
                "{}/{}: {:?}",
                report.workflow, result.name, result.failures
            );
        }
        assert!(report.passed);
        let workflow = &project.workflow(&report.workflow).unwrap().workflow;
        assert_eq!(
            report.version,
            airlock_core::canonical::version_id(workflow).0,
            "evidence is bound to the hash"
        );
    }
    let order = reports
        .iter()
        .find(|r| r.workflow == "order-intake")
        .unwrap();
    let statuses: Vec<(&str, &str)> = order
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("big-order", "succeeded"),
            ("crm-down", "dead"),
            ("crm-flaky", "succeeded"),
            ("small-order", "succeeded")
        ]
    );
    for category in Category::ALL {
        let tally = order.coverage.tally(category);
        assert_eq!(
            tally.covered,
            tally.total,
            "order-intake {category:?}: {:?}",
            order.coverage.uncovered().collect::<Vec<_>>()
        );
    }
    let credit = reports
        .iter()
        .find(|r| r.workflow == "credit-review")
        .unwrap();
    let rejected = credit
        .results
        .iter()
        .find(|r| r.name == "reminders-rejected")
        .unwrap();
    assert_eq!(
        rejected.error.as_deref(),
        Some("step `approve_reminders`: rejected by ops-lead")
    );
    // The starter's policy asks for every branch arm and failure path: `reminders-mail-retried`
    // takes the mail's retry, which no other scenario does.
    let uncovered: Vec<String> = credit
        .coverage
        .uncovered()
        .map(|e| e.label.clone())
        .collect();
    assert!(uncovered.is_empty(), "{uncovered:?}");
    let retry = credit
        .coverage
        .items
        .iter()
        .find(|e| e.label == "send_reminders: retry after a fault")
        .expect("the retry is a failure path");
    assert_eq!(retry.by.as_deref(), Some("reminders-mail-retried"));
}

#[test]
fn a_wrong_message_text_fails_with_both_texts() {
    let result = order_scenario(&format!(
        "{BIG_ORDER_STUBS}expect:
  calls:
    - call: chat.post
      with: {{ text: \"Big order 1001: 250 from acme-42\" }}
"
    ));
    assert!(!result.passed);
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let failure = &result.failures[0];
    assert!(
        failure.contains("chat.post") && failure.contains("alert_big_order"),
        "{failure}"
    );
    assert!(
        failure.contains("with.text expected \"Big order 1001: 250 from acme-42\""),
        "{failure}"
    );
    assert!(
        failure.contains("got \"Big order 1001: 250.0 from acme-42\""),
        "{failure}"
    );
    assert!(failure.contains("differ from character 20"), "{failure}");
}

#[test]
fn a_wrong_path_fails_naming_where_it_differs() {
    let result = order_scenario(&format!(
        "{BIG_ORDER_STUBS}expect:
  status: succeeded
  path: [normalize, big_order, save_order, sync_crm]
"
    ));
    assert_eq!(
        result.failures,
        [
            "path: expected [normalize, big_order, save_order, sync_crm], got [normalize, big_order, alert_big_order, save_order, sync_crm]: step 3 is `alert_big_order`, expected `save_order`"
        ]
    );
}

#[test]
fn a_wrong_status_fails_with_the_runs_error() {
    let result = order_scenario(
        "trigger: { body: { id: 5, amount: 10, customer: c } }
stubs:
  orders_db.insert: { respond: { rows: 1 } }
  crm.request: { fail: { status: 400 } }
  chat.post: { respond: { ok: true } }
expect:
  status: succeeded
",
    );
    assert_eq!(
        result.failures,
        ["status: expected succeeded, got failed (step `sync_crm`: answered with status 400)"]
    );
    let crm: Vec<_> = result
        .calls
        .iter()
        .filter(|c| c.target == "crm.request")
        .collect();
    assert_eq!(crm.len(), 1, "a 4xx is not retried");
}

#[test]
fn subset_and_exact_matches_of_call_arguments() {
    let expect =
        |calls: &str| order_scenario(&format!("{BIG_ORDER_STUBS}expect:\n  calls:\n{calls}"));
    // A subset: the listed keys, recursively; the numbers by value.
    let subset = expect(
        "    - call: orders_db.insert\n      with: { table: orders, values: { total: 250 } }\n",
    );
    assert!(subset.passed, "{:?}", subset.failures);
    // Exact: every key, and nothing else.
    let exact = expect(
        "    - call: orders_db.insert\n      match: exact\n      with: { table: orders, values: { total: 250 } }\n",
    );
    assert_eq!(exact.failures.len(), 1, "{:?}", exact.failures);
    let failure = &exact.failures[0];
    assert!(
        failure
            .starts_with("call #1 orders_db.insert by step `save_order` attempt 1 (exact match): "),
        "{failure}"
    );
    assert!(
        failure.contains("with.values.id is not expected, got 1001"),
        "{failure}"
    );
    assert!(
        failure.contains("with.values.customer is not expected, got \"acme-42\""),
        "{failure}"
    );
    let whole = expect(
        "    - call: orders_db.insert\n      match: exact\n      with: { table: orders, values: { id: 1001, customer: acme-42, total: 250.0 } }\n",
    );
    assert!(whole.passed, "{:?}", whole.failures);
    // A type difference is a difference.
    let typed = expect("    - call: crm.request\n      with: { json: { total: \"250\" } }\n");
    assert_eq!(
        typed.failures,
        [
            "call #1 crm.request by step `sync_crm` attempt 1: with.json.total expected \"250\", got 250.0"
        ]
    );
    // A missing key, and calls out of order.
    let missing = expect("    - call: crm.request\n      with: { json: { currency: EUR } }\n");
    assert_eq!(
        missing.failures,
        [
            "call #1 crm.request by step `sync_crm` attempt 1: with.json.currency expected \"EUR\", but it is absent"
        ]
    );
    let order = expect("    - call: crm.request\n    - call: chat.post\n");
    assert_eq!(
        order.failures,
        [
            "call #2 chat.post: not called after the calls matched before it (calls made, in order: chat.post, orders_db.insert, crm.request)"
        ]
    );
}

#[test]
fn not_called_and_outputs_are_checked() {
    let result = order_scenario(&format!(
        "{BIG_ORDER_STUBS}expect:
  not_called: [chat.post]
  outputs:
    normalize: {{ customer: ACME-42 }}
    big_order: {{ branch: then }}
"
    ));
    assert_eq!(
        result.failures,
        [
            "not_called: chat.post was called once (first by step `alert_big_order`)",
            "outputs.normalize.customer expected \"ACME-42\", got \"acme-42\" (the texts differ from character 1)",
        ]
    );
}

#[test]
fn a_fault_per_attempt_is_retried_until_the_target_answers() {
    let project = project_with(&[]);
    let report = reports(&project, Some("order-intake")).remove(0);
    let flaky = report
        .results
        .iter()
        .find(|r| r.name == "crm-flaky")
        .unwrap();
    assert!(flaky.passed, "{:?}", flaky.failures);
    let crm: Vec<(u32, Option<&str>)> = flaky
        .calls
        .iter()
        .filter(|c| c.target == "crm.request")
        .map(|c| (c.attempt, c.error.as_deref()))
        .collect();
    assert_eq!(
        crm,
        [
            (1, Some("timed out after 10000ms")),
            (2, Some("answered with status 503")),
            (3, None)
        ]
    );
    assert!(flaky.covered.items.contains(&Item::Retry {
        step: "sync_crm".into()
    }));
    assert!(
        !flaky.covered.items.contains(&Item::WorkflowOnFailure),
        "it recovered: no failure handler ran"
    );
    // Down past every attempt: four attempts, then the handler, then dead.
    let down = report
        .results
        .iter()
        .find(|r| r.name == "crm-down")
        .unwrap();
    assert_eq!(
        down.calls
            .iter()
            .filter(|c| c.target == "crm.request")
            .count(),
        4
    );
    assert_eq!(down.status, "dead");
    assert!(down.covered.items.contains(&Item::WorkflowOnFailure));
}

#[test]
fn coverage_names_an_uncovered_else_branch_and_an_unexercised_failure_path() {
    let project = project_with(&[]);
    let workflow = &project.workflow("order-intake").unwrap().workflow;
    let big = project
        .scenarios_of("order-intake")
        .find(|s| s.scenario.name == "big-order")
        .unwrap();
    let result = suite::run_scenario(workflow, &big.scenario);
    assert!(result.passed, "{:?}", result.failures);
    let coverage = suite::coverage(workflow, &[result]);
    let uncovered: Vec<(&str, &str)> = coverage
        .uncovered()
        .map(|e| (e.category.kind(), e.label.as_str()))
        .collect();
    assert_eq!(
        uncovered,
        [
            ("branch", "big_order → else"),
            ("failure path", "sync_crm: retry after a fault"),
            ("failure path", "workflow on_failure handler"),
        ]
    );
    assert!(coverage.items.iter().any(|e| e.item
        == Item::Branch {
            step: "big_order".into(),
            arm: Arm::Then
        }
        && e.by.as_deref() == Some("big-order")));
    let branches = coverage.tally(Category::Branches);
    assert_eq!(
        (branches.covered, branches.total, branches.percent),
        (1, 2, 50.0)
    );
    assert_eq!(coverage.tally(Category::Connectors).percent, 100.0);
    let summary = coverage.summary();
    assert_eq!(summary["uncovered"][0]["item"], "big_order → else");
    assert_eq!(summary["coverage"]["failure_paths"]["covered"], 0);
}

#[test]
fn switch_arms_are_covered_case_by_case() {
    let workflow = "name: route
trigger: { manual: {} }
steps:
  - id: pick
    switch: \"{{ trigger.body.region }}\"
    cases:
      eu:
        - id: eu_post
          call: chat.post
          with: { text: eu }
      us:
        - id: us_post
          call: chat.post
          with: { text: us }
    default:
      - id: nowhere
        fail: \"unknown region {{ trigger.body.region }}\"
";
    let project = project_with(&[
        ("workflows/route.yaml", workflow),
        (
            "tests/route/eu.yaml",
            "trigger: { body: { region: eu } }\nstubs: { chat.post: { respond: { ok: true } } }\nexpect: { status: succeeded, path: [pick, eu_post] }\n",
        ),
        (
            "tests/route/mars.yaml",
            "trigger: { body: { region: mars } }\nexpect: { status: failed, path: [pick, nowhere] }\n",
        ),
    ]);
    let report = reports(&project, Some("route")).remove(0);
    assert!(report.passed, "{:?}", report.results);
    let rows: Vec<(String, bool)> = report
        .coverage
        .items
        .iter()
        .map(|e| (e.label.clone(), e.covered))
        .collect();
    assert_eq!(
        rows,
        [
            ("pick → case \"eu\"".to_owned(), true),
            ("pick → case \"us\"".to_owned(), false),
            ("pick → default".to_owned(), true),
            ("chat.post".to_owned(), true),
        ]
    );
}

#[test]
fn a_call_without_a_stub_fails_the_scenario() {
    let result = order_scenario(
        "trigger: { body: { id: 5, amount: 10, customer: c } }
stubs:
  orders_db.insert: { respond: { rows: 1 } }
expect:
  status: succeeded
",
    );
    assert!(!result.passed);
    assert_eq!(result.status, "incomplete");
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    assert!(
        result.failures[0].starts_with("no stub for crm.request: step `sync_crm` calls it"),
        "{:?}",
        result.failures
    );
}

#[test]
fn an_approval_without_a_decision_leaves_the_run_waiting() {
    let project = project_with(&[(
        "tests/credit-review/undecided.yaml",
        "stubs:
  orders_db.query: { respond: { rows: [ { id: 7, customer: acme, total: 900 } ] } }
expect:
  status: waiting
  path: [find_overdue, anything_overdue, approve_reminders]
  not_called: [mail.send]
",
    )]);
    let report = reports(&project, Some("credit-review")).remove(0);
    let undecided = report
        .results
        .iter()
        .find(|r| r.name == "undecided")
        .unwrap();
    assert!(undecided.passed, "{:?}", undecided.failures);
    assert_eq!(undecided.status, "waiting");
}

#[test]
fn results_are_the_same_on_one_thread_or_many() {
    // Enough scenarios to spread over every core; the order and content must not depend on it.
    let starters: Vec<(String, String)> = airlock_core::scaffold::FILES
        .iter()
        .filter(|(path, _)| path.starts_with("tests/"))
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    let mut extra: Vec<(String, String)> = Vec::new();
    for i in 0..40 {
        for (path, text) in &starters {
            extra.push((
                path.replace(".yaml", &format!("-{i:03}.yaml")),
                text.clone(),
            ));
        }
    }
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let project = project_with(&extra);
    let suites = suite::suites(&project, None);
    let count = std::sync::atomic::AtomicUsize::new(0);
    let parallel = suite::run_suites(&suites, &|| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        count.into_inner(),
        8 * 41,
        "progress is reported once per scenario"
    );
    let one_by_one: Vec<ScenarioResult> = suites
        .iter()
        .flat_map(|s| s.scenarios.iter().map(|scenario| s.prepared.run(scenario)))
        .collect();
    let all: Vec<&ScenarioResult> = parallel.iter().flat_map(|r| &r.results).collect();
    assert_eq!(all.len(), one_by_one.len());
    for (a, b) in all.iter().zip(&one_by_one) {
        assert_eq!(*a, b);
        assert!(a.passed, "{}: {:?}", a.name, a.failures);
    }
}
