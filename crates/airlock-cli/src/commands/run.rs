//! `airlock run WORKFLOW --env E [--input FILE]`: one durable run, its journal printed
//! as it is written.
//!
//! Against a server (`--server`), the server starts the run (`POST …/workflows/{workflow}/
//! runs`, a runner's token) of what is deployed there and executes it; this command
//! follows it over `GET /api/v1/runs/{id}` and prints the same lines, summary, `--json`
//! and exit code as a local run, through the same functions.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace, store_error};
use airlock_engine::{Engine, EngineOptions, Observer};
use airlock_ops as ops;
use airlock_store::{JournalEntry, NewJournalEntry, Run, RunStatus, Settlement, StepStatus};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options<'a> {
    pub workflow: &'a str,
    pub environment: &'a str,
    pub input: Option<&'a Path>,
    pub lease: Duration,
}

pub fn run(global: &Global, options: Options<'_>) -> Result<ExitCode, CliError> {
    if let Some(remote) = Remote::from_global(global)? {
        return run_on_server(global, &remote, &options);
    }
    let workspace = Workspace::open(global)?;
    let workflow = workspace.workflow(options.workflow)?;
    let environment = workspace.environment(options.environment)?;
    let body = input_body(options.input)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        // An environment runs what is deployed there; an unprotected one with nothing
        // deployed yet runs the working copy.
        let started = ops::runs::start(
            &*workspace.store,
            &workspace.project().manifest,
            ops::runs::StartRun {
                id: airlock_engine::new_run_id(),
                environment: &environment.name.value,
                workflow: &workflow.workflow.name.value,
                body,
                by: None,
                working_copy: Some((workspace.project(), workflow)),
                now: workspace::now(),
            },
        )
        .await
        .map_err(super::ops_error)?;
        if environment.protected && !global.json {
            super::validate::note_configuration(
                &*workspace.store,
                &workspace.project().manifest,
                Some(&environment.name.value),
            )
            .await;
        }
        let working = airlock_core::canonical::version_id(&workflow.workflow).0;
        if started.version != working && !global.json {
            errln!(
                "note: `{}` runs the deployed version {}; the working copy ({}) differs{}",
                environment.name.value,
                ops::short(&started.version),
                ops::short(&working),
                if environment.protected {
                    ""
                } else {
                    " — `airlock deploy` to run it"
                }
            );
        }
        if !global.json {
            print_header(
                &started.run,
                &workflow.workflow.name.value,
                &started.version,
                &environment.name.value,
            );
        }
        let run = started;
        let engine = workspace.engine(EngineOptions {
            lease_ms: options.lease.as_millis() as i64,
            ..EngineOptions::default()
        });
        follow(&workspace, engine, &run.run, global.json).await
    })
}

/// Drives `run_id`, and no other run, until it finishes or waits for a person, printing
/// its journal; then prints the outcome. Used by `run`, `approve-step` and `runs retry`.
///
/// Only this run is claimed ([`Engine::process_run`]): a command the user started for one
/// run must not take another process's work (a production run waiting out a backoff, say)
/// and execute it here. While another process holds the run, this one waits for it.
pub async fn follow(
    workspace: &Workspace,
    engine: Engine,
    run_id: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let engine = if json {
        engine
    } else {
        engine.with_observer(Arc::new(Printer {
            run: run_id.to_owned(),
        }))
    };
    let started = Instant::now();
    let run = loop {
        engine
            .process_run(run_id)
            .await
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        let run = workspace
            .store
            .run(run_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| CliError::usage(format!("run {run_id} vanished"), None))?;
        match run.status {
            status if status.is_final() || status == RunStatus::Waiting => break run,
            RunStatus::Queued => {
                let wait = run
                    .wake_at
                    .map_or(5, |at| (at - workspace::now()).clamp(1, 1_000));
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let journal = workspace.store.journal(run_id).await.map_err(store_error)?;
    Ok(conclude(&run, &journal, started.elapsed(), json))
}

/// How often a run on a server is asked about while it is under way.
const POLL: Duration = Duration::from_millis(50);
/// A run due this long and still not claimed is worth a word: perhaps no process of that
/// server executes (`serve --no-execute` without a worker).
const UNCLAIMED_NOTE_AFTER: Duration = Duration::from_secs(10);

/// `run --server`: the server starts the run of what it has deployed, with the input
/// file as the trigger's body; then it is followed there.
fn run_on_server(
    global: &Global,
    remote: &Remote,
    options: &Options<'_>,
) -> Result<ExitCode, CliError> {
    let body = input_body(options.input)?;
    let started: StartedRun = remote.post(
        &format!(
            "/api/v1/environments/{}/workflows/{}/runs",
            segment(options.environment),
            segment(options.workflow)
        ),
        body,
    )?;
    if !global.json {
        print_header(
            &started.run,
            options.workflow,
            &started.version,
            options.environment,
        );
    }
    follow_on_server(remote, &started.run, global.json)
}

/// [`follow`] for a run a server executes: asks for the run and its journal until it
/// finishes or waits for a person, printing each entry once, in journal order (the order
/// a local run prints them as they are committed); then the same outcome. A sleeping run
/// (a delay, a backoff) is waited for, as locally.
fn follow_on_server(remote: &Remote, run_id: &str, json: bool) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let path = format!("/api/v1/runs/{}", segment(run_id));
    let mut printed = 0;
    let mut unclaimed_since: Option<Instant> = None;
    // Under `--json` the output is the answer only, as for every other note.
    let mut noted = json;
    loop {
        let shown: super::runs::RunWithJournal = remote.get(&path)?;
        if !json {
            for entry in &shown.journal {
                if entry.seq > printed {
                    print_entry(&entry.entry);
                    printed = entry.seq;
                }
            }
        }
        let run = &shown.run;
        if run.status.is_final() || run.status == RunStatus::Waiting {
            return Ok(conclude(run, &shown.journal, started.elapsed(), json));
        }
        let due_in = run.wake_at.map_or(0, |at| at - workspace::now());
        if run.status == RunStatus::Queued && due_in <= 0 {
            let since = *unclaimed_since.get_or_insert_with(Instant::now);
            if !noted && since.elapsed() >= UNCLAIMED_NOTE_AFTER {
                errln!(
                    "note: run {run_id} is due but no process of the server has taken it: does one execute runs (not `serve --no-execute` alone)? Ctrl-C stops following; the run stays queued there"
                );
                noted = true;
            }
        } else {
            unclaimed_since = None;
        }
        // A sleeping run is asked about again when it is due (by this machine's clock; at
        // most a second late if the server's differs), any other one soon.
        let wait = if run.status == RunStatus::Queued {
            Duration::from_millis(due_in.clamp(0, 1_000) as u64).max(POLL)
        } else {
            POLL
        };
        std::thread::sleep(wait);
    }
}

/// The answer of `POST /api/v1/environments/{environment}/workflows/{workflow}/runs`.
#[derive(serde::Deserialize)]
struct StartedRun {
    run: String,
    version: String,
}

/// The first line of a run: its id, workflow, short version and environment.
fn print_header(id: &str, workflow: &str, version: &str, environment: &str) {
    outln!(
        "run {id} · {workflow}@{} · {environment}",
        airlock_ops::short(version)
    );
}

/// One journal entry as a run prints it while it goes.
fn print_entry(entry: &NewJournalEntry) {
    outln!("  {}", journal_line(entry));
}

/// The end of a followed run, local or on a server: the run and its journal as JSON, or
/// its outcome; and the exit code (0 when it succeeded or waits for a person).
fn conclude(run: &Run, journal: &[JournalEntry], elapsed: Duration, json: bool) -> ExitCode {
    if json {
        crate::output::json(&json!({ "run": run, "journal": journal }));
    } else {
        print_outcome(run, elapsed);
    }
    match run.status {
        RunStatus::Succeeded | RunStatus::Waiting => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_CHECK_FAILED),
    }
}

fn print_outcome(run: &Run, elapsed: Duration) {
    match run.status {
        RunStatus::Waiting => outln!(
            "waiting for approval · continue with `airlock approve-step {} STEP --as NAME`",
            run.id
        ),
        status => {
            outln!("{} in {}ms", status.as_str(), elapsed.as_millis());
            if let Some(error) = &run.error {
                outln!("error: {error}");
            }
            if status == RunStatus::Dead {
                outln!("dead-lettered · retry with `airlock runs retry {}`", run.id);
            }
        }
    }
}

/// The trigger's body: the `--input` file's JSON, or an empty object.
fn input_body(input: Option<&Path>) -> Result<Value, CliError> {
    let Some(path) = input else {
        return Ok(json!({}));
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!(
                "{}:{}:{}: not JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
            None,
        )
    })
}

/// Prints one run's journal entries as they are committed.
struct Printer {
    run: String,
}

impl Observer for Printer {
    fn journaled(&self, run: &Run, entries: &[NewJournalEntry]) {
        if run.id != self.run {
            return;
        }
        for entry in entries {
            print_entry(entry);
        }
    }

    fn settled(&self, _run: &Run, _settlement: &Settlement) {}
}

/// One journal entry as a line: step, status, attempt, and what matters for that status.
pub fn journal_line(entry: &NewJournalEntry) -> String {
    let mut line = format!("{:<22} {:<16}", entry.step, entry.status.as_str());
    if entry.attempt > 1 {
        line.push_str(&format!(" attempt {}", entry.attempt));
    }
    match entry.status {
        StepStatus::Started => {
            if let Some(key) = &entry.idempotency_key {
                line.push_str(&format!(" key {key}"));
            }
        }
        StepStatus::Succeeded => {
            if let Some(branch) = entry.output.as_ref().and_then(|o| o.get("branch")) {
                line.push_str(&format!(" → {}", branch.as_str().unwrap_or_default()));
            }
            if let Some(finished) = entry.finished_at {
                let took = finished - entry.started_at;
                if took > 0 {
                    line.push_str(&format!(" {took}ms"));
                }
            }
        }
        StepStatus::Failed | StepStatus::OutcomeUnknown => {
            if let Some(error) = &entry.error {
                line.push_str(&format!(" {error}"));
            }
            if let Some(at) = entry
                .output
                .as_ref()
                .and_then(|o| o.get("retry_at"))
                .and_then(Value::as_i64)
            {
                line.push_str(&format!(" (retry at {})", workspace::time(at)));
            }
        }
        StepStatus::Retried => line.push_str(" by hand: the step runs again"),
        StepStatus::Waiting => {
            if let Some(message) = entry
                .output
                .as_ref()
                .and_then(|o| o.get("message"))
                .and_then(Value::as_str)
            {
                line.push_str(&format!(" {message}"));
            }
        }
    }
    line
}
