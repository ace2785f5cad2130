//! The human reports, as a person reads them: `check`, `diff`, `readiness`, `promote`
//! (and the approvals that follow it), `releases` and `runs show`, printed by the built
//! binary on a project from `airlock init`, each kept as an insta snapshot. What differs
//! from one run of the tests to the next (ids, times, ages, durations, the temporary
//! folder) is redacted; the starter's version hashes are stable and kept, so a change to
//! the starter's workflows shows up here as the new hashes.

mod support;
use support::*;

use std::path::Path;

/// What varies between two runs of the same commands, and what it is shown as.
const REDACTIONS: &[(&str, &str)] = &[
    (r"run_[0-9a-f]{32}", "[run]"),
    (r"req_[0-9a-f]{32}", "[request]"),
    (r"rel_[0-9a-f]{32}", "[release]"),
    (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
    (r"just now|\d+ min ago|\d+ h ago|\d+ days? ago", "[age]"),
    (r"\b\d+ms\b", "[took]"),
    // An approval's deadline, in the journal's detail (epoch milliseconds).
    (r#""deadline":\d+"#, r#""deadline":[time]"#),
    // The project's temporary folder, wherever it is.
    (r"sqlite://\S*/\.airlock/", "sqlite://[project]/.airlock/"),
    (r"store: \S*/\.airlock/", "store: [project]/.airlock/"),
];

/// A table with a redacted or varying cell (an id, a time, a duration) is laid out for
/// the text before redaction, and a duration changes the widths: such a table's padding
/// and rules are collapsed, so only its cells are compared.
const TABLE_PADDING: &[(&str, &str)] =
    &[(r" +┆", " ┆"), (r" +│", " │"), (r"─+", "─"), (r"═+", "═")];

/// Asserts `out` exited with `code`, then snapshots its stdout, redacted.
#[track_caller]
fn assert_report(name: &str, out: &std::process::Output, code: i32) {
    assert_report_with(name, out, code, &[]);
}

#[track_caller]
fn assert_report_with(name: &str, out: &std::process::Output, code: i32, extra: &[(&str, &str)]) {
    assert_eq!(out.status.code(), Some(code), "{name}:\n{}", shown(out));
    let filters: Vec<(&str, &str)> = REDACTIONS.iter().chain(extra).copied().collect();
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!(name, text(&out.stdout));
    });
}

/// Two windows that together cover every minute of the week: a promotion is frozen
/// whatever the day (which of the two it falls in is redacted).
const ALWAYS_FROZEN: &str = "      - { from: \"Mon 00:00\", to: \"Thu 00:00\", timezone: Europe/London }\n      - { from: \"Wed 00:00\", to: \"Mon 00:00\", timezone: Europe/London }";

/// The window a frozen promotion is refused by, whichever of the two it is.
const FREEZE_WINDOW: (&str, &str) = (
    r"frozen from \w{3} \d{2}:\d{2} to \w{3} \d{2}:\d{2} \(Europe/London\)",
    "frozen from [window] (Europe/London)",
);

/// The run id `airlock run` prints on its first line (`run ID · …`).
fn started_run(out: &std::process::Output) -> String {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("run "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{}", shown(out)))
        .to_owned()
}

/// The request id `promote` opened (`promotion request ID · …`).
fn opened_request(out: &std::process::Output) -> String {
    text(&out.stdout)
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("promotion request "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no request opened:\n{}", shown(out)))
        .to_owned()
}

/// What the starter's policy asks before order-intake may go to production: its scenarios
/// passed, the version deployed in staging, five successful staging runs. No freeze.
fn ready_to_promote(project: &Path) {
    set_freeze(project, "");
    test_and_deploy_starter(project);
    for _ in 0..5 {
        ok(&airlock(project, RUN_STARTER_ORDER), "run");
    }
}

/// Promotes order-intake as `dev` and has both of production's approvers approve it.
fn release(project: &Path) {
    let promoted = airlock(project, &["promote", "order-intake", "--as", "dev"]);
    ok(&promoted, "promote");
    let request = opened_request(&promoted);
    for approver in ["ops-lead", "cfo"] {
        ok(
            &airlock(project, &["approve", &request, "--as", approver]),
            "approve",
        );
    }
}

#[test]
fn check_of_the_starters_staging_reaches_every_binding_offline() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["check", "--env", "staging"]);
    assert_report("check-staging", &out, 0);
}

#[test]
fn diff_of_the_starter_documents_every_difference() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["diff", "staging", "production"]);
    assert_report("diff-starter", &out, 0);
}

#[test]
fn readiness_of_the_starter_says_what_is_missing_before_anything_is_tested() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["readiness"]);
    assert_report("readiness-starter", &out, 1);
}

#[test]
fn promote_refused_shows_each_requirement_and_the_freeze_window() {
    let (_temp, project) = init_project();
    set_freeze(&project, ALWAYS_FROZEN);
    ok(&airlock(&project, &["test"]), "test");
    ok(
        &airlock(&project, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy",
    );
    // No staging runs yet, and frozen.
    let out = airlock(&project, &["promote", "order-intake", "--as", "dev"]);
    assert_report_with("promote-refused", &out, 1, &[FREEZE_WINDOW]);
}

#[test]
fn promote_opens_a_request_and_each_approval_shows_what_is_still_needed() {
    let (_temp, project) = init_project();
    ready_to_promote(&project);
    let promoted = airlock(&project, &["promote", "order-intake", "--as", "dev"]);
    assert_report("promote-opened", &promoted, 0);
    let request = opened_request(&promoted);
    let first = airlock(&project, &["approve", &request, "--as", "ops-lead"]);
    assert_report("approve-first-of-two", &first, 0);
    let second = airlock(&project, &["approve", &request, "--as", "cfo"]);
    assert_report("approve-releases", &second, 0);
}

#[test]
fn readiness_after_a_release_names_its_owner_and_that_there_is_no_way_back_yet() {
    let (_temp, project) = init_project();
    ready_to_promote(&project);
    release(&project);
    let out = airlock(&project, &["readiness", "order-intake"]);
    assert_report("readiness-released", &out, 1);
}

#[test]
fn releases_list_promotions_and_the_rollback_newest_first() {
    let (_temp, project) = init_project();
    ready_to_promote(&project);
    release(&project);
    // A second version through the same path, then back to the first.
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "total > 100",
        "total > 200",
    );
    ok(&airlock(&project, &["test"]), "test v2");
    ok(
        &airlock(&project, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy v2",
    );
    for _ in 0..5 {
        ok(&airlock(&project, RUN_STARTER_ORDER), "run v2");
    }
    release(&project);
    ok(
        &airlock(
            &project,
            &[
                "rollback",
                "order-intake",
                "--env",
                "production",
                "--as",
                "oncall",
            ],
        ),
        "rollback",
    );
    let out = airlock(
        &project,
        &["releases", "order-intake", "--env", "production"],
    );
    assert_report_with("releases-after-rollback", &out, 0, TABLE_PADDING);
}

#[test]
fn runs_show_of_a_finished_order_lists_its_journal_and_output() {
    let (_temp, project) = init_project();
    ok(
        &airlock(&project, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy",
    );
    let started = airlock(&project, RUN_STARTER_ORDER);
    ok(&started, "run");
    let out = airlock(&project, &["runs", "show", &started_run(&started)]);
    assert_report_with("runs-show-succeeded", &out, 0, TABLE_PADDING);
}

#[test]
fn runs_show_of_a_review_waiting_for_its_approval() {
    let (_temp, project) = init_project();
    ok(
        &airlock(&project, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy",
    );
    // A big unpaid order on the ledger: the review finds it and asks the ops lead.
    write(
        &project,
        "big-order.json",
        r#"{ "id": 3001, "amount": 900, "customer": "acme-7" }"#,
    );
    ok(
        &airlock(
            &project,
            &[
                "run",
                "order-intake",
                "--env",
                "staging",
                "--input",
                "big-order.json",
            ],
        ),
        "run order",
    );
    let review = airlock(&project, &["run", "credit-review", "--env", "staging"]);
    ok(&review, "run review");
    let out = airlock(&project, &["runs", "show", &started_run(&review)]);
    assert_report_with("runs-show-waiting", &out, 0, TABLE_PADDING);
}

#[test]
fn a_configuration_promotion_shows_its_change_and_the_inbox_what_each_request_waits_on() {
    let (_temp, project) = init_project();
    ready_to_promote(&project);
    // The store meets production (adopting its configuration), then production's CRM
    // timeout changes in the file.
    ok(
        &airlock(&project, &["diff", "staging", "production"]),
        "diff",
    );
    replace_in(&project, "airlock.yaml", "timeout: 10s", "timeout: 15s");
    let opened = airlock(
        &project,
        &["promote", "--config", "--to", "production", "--as", "dev"],
    );
    assert_report("promote-config-opened", &opened, 0);
    // A finance promotion by one of production's two approvers could never pass.
    let unmeetable = airlock(&project, &["promote", "order-intake", "--as", "ops-lead"]);
    assert_report("promote-unmeetable", &unmeetable, 1);
    let workflow = airlock(&project, &["promote", "order-intake", "--as", "dev"]);
    ok(&workflow, "promote order-intake");
    let inbox = airlock(&project, &["promotions", "--status", "open"]);
    assert_report_with("promotions-open", &inbox, 0, TABLE_PADDING);
    let request = opened_request(&workflow);
    let withdrawn = airlock(&project, &["withdraw", &request, "--as", "dev"]);
    assert_report("withdraw", &withdrawn, 0);
}

#[test]
fn diff_as_markdown_for_a_pull_request_comment() {
    let (_temp, project) = init_project();
    assert_report(
        "diff-markdown",
        &airlock(
            &project,
            &["diff", "staging", "production", "--format", "markdown"],
        ),
        0,
    );
}

#[test]
fn validate_as_github_annotations_of_several_problems() {
    let temp = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/37-several-errors");
    let project = temp.path().join("automations");
    std::fs::create_dir_all(&project).unwrap();
    copy_dir(&fixture, &project);
    assert_report(
        "validate-github",
        &airlock(
            temp.path(),
            &["-C", "automations", "validate", "--format", "github"],
        ),
        2,
    );
}
