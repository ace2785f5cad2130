//! Defect 1 of issue 11: a reader that leaves early (`airlock run … | head -1`) made the
//! binary panic ("failed printing to stdout: Broken pipe", exit 101), abandoning the run
//! it drove, which then waited out its lease and was dead-lettered; and a command that ran
//! one workflow claimed and executed whatever else was due in the store. Here: the built
//! binary, its stdout a pipe closed early, and the runs in the store afterwards.

mod support;
use support::*;

use airlock_store::{NewRun, RunStatus, SqliteStore, Store};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

/// The starter project, its order workflow pausing before it saves the order: the run's
/// journal is still being printed well after its first line was read.
fn starter_with_a_pause() -> (tempfile::TempDir, std::path::PathBuf) {
    let (temp, project) = init_project();
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "  - id: save_order\n",
        "  - id: pause\n    delay: 400ms\n\n  - id: save_order\n",
    );
    (temp, project)
}

/// Runs `args` with stdout a pipe that is closed once `lines` lines were read from it (at
/// once for 0), and returns how the process ended, with its stderr.
fn with_reader_leaving_after(project: &Path, args: &[&str], lines: usize) -> Output {
    let mut child = airlock_command(project, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the airlock binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a line");
        assert!(
            !line.is_empty(),
            "{args:?} ended before printing {lines} lines"
        );
    }
    // What `head -1` does once it has its line: the read end goes.
    drop(reader);
    child.wait_with_output().expect("the binary ends")
}

fn assert_quiet_end(out: &Output, what: &str) {
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{what} panicked:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("Broken pipe"),
        "a reader that left is not an error to report ({what}):\n{stderr}"
    );
}

fn store(project: &Path) -> SqliteStore {
    SqliteStore::open(&project.join(".airlock/airlock.db")).expect("the project's store")
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(work)
}

#[test]
fn a_closed_stdout_ends_run_quietly_and_the_run_still_succeeds() {
    let (_temp, project) = starter_with_a_pause();
    let out = with_reader_leaving_after(&project, RUN_STARTER_ORDER, 1);
    assert_quiet_end(&out, "run | head -1");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the run's own exit code (it succeeded):\n{}",
        text(&out.stderr)
    );
    let runs = block_on(store(&project).runs(&Default::default())).expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].status,
        RunStatus::Succeeded,
        "the run finished in the process whose reader left, not dead-lettered later: {:?}",
        runs[0]
    );
    let journal = block_on(store(&project).journal(&runs[0].id)).expect("journal");
    assert!(
        journal.iter().any(|e| e.entry.step == "sync_crm"),
        "every step ran: {journal:?}"
    );
}

#[test]
fn a_closed_stdout_ends_table_and_json_commands_quietly() {
    let (_temp, project) = init_project();
    ok(&airlock(&project, RUN_STARTER_ORDER), "a run to list");
    ok(
        &airlock(
            &project,
            &[
                "token", "create", "--env", "staging", "--role", "viewer", "--name", "ci",
            ],
        ),
        "a token to list",
    );
    let commands: [&[&str]; 7] = [
        &["token", "list"],
        &["releases", "order-intake"],
        &["runs"],
        &["runs", "--json"],
        &["records", "--env", "staging"],
        &["diff", "staging", "production"],
        &["hash"],
    ];
    for args in commands {
        // Closed before the first line: every write meets the closed pipe.
        let out = with_reader_leaving_after(&project, args, 0);
        assert_quiet_end(&out, &format!("{args:?}"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// Enqueues, straight into the project's store, runs of the order workflow's stored
/// version that no command here started (due at once).
fn enqueue_elsewhere(project: &Path, runs: &[(&str, &str)]) {
    let store = store(project);
    let version = block_on(store.runs(&Default::default())).expect("runs")[0]
        .version
        .clone();
    for (id, environment) in runs {
        let created = block_on(
            store.enqueue(&NewRun {
                id: (*id).to_owned(),
                environment: (*environment).to_owned(),
                workflow: "order-intake".into(),
                version: version.clone(),
                trigger: serde_json::json!({
                    "body": { "id": 7, "amount": 5, "customer": "x" }, "headers": {}, "query": {}
                })
                .into(),
                dedupe_key: None,
                created_at: 1,
            }),
        )
        .expect("enqueue");
        assert!(created.created);
    }
}

fn assert_untouched(project: &Path, id: &str) {
    let store = store(project);
    let run = block_on(store.run(id)).expect("run").expect("still there");
    assert_eq!(
        (run.status, run.claims, run.lease_owner.as_deref()),
        (RunStatus::Queued, 0, None),
        "{id} was claimed by a command that ran another run: {run:?}"
    );
    assert!(block_on(store.journal(id)).expect("journal").is_empty());
}

#[test]
fn a_run_of_one_workflow_never_claims_another_run() {
    let (_temp, project) = init_project();
    // A first run stores the working version, so that the runs below could be executed.
    ok(&airlock(&project, RUN_STARTER_ORDER), "first run");
    // Two runs due now that this command did not start: another environment's, and one
    // of staging's own accepted by a server that has not taken it yet.
    let others = [
        ("run_production_waiting_turn", "production"),
        ("run_staging_queued_elsewhere", "staging"),
    ];
    enqueue_elsewhere(&project, &others);
    let out = airlock(&project, RUN_STARTER_ORDER);
    ok(&out, "run");
    for (id, _) in others {
        assert_untouched(&project, id);
    }
}

#[test]
fn a_resume_of_one_run_finishes_that_run_alone() {
    let (_temp, project) = init_project();
    ok(&airlock(&project, RUN_STARTER_ORDER), "first run");
    enqueue_elsewhere(
        &project,
        &[("run_left_behind", "staging"), ("run_not_mine", "staging")],
    );
    let out = airlock(&project, &["resume", "run_left_behind"]);
    ok(&out, "resume one run");
    assert!(
        text(&out.stdout).contains("succeeded in"),
        "{}",
        shown(&out)
    );
    let run = block_on(store(&project).run("run_left_behind"))
        .expect("run")
        .expect("there");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_untouched(&project, "run_not_mine");
}
