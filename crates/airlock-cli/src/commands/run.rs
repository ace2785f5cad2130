//! `airlock run WORKFLOW --env E [--input FILE]`: one durable run, its journal printed
//! as it is written.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace, store_error};
use airlock_engine::{Engine, EngineOptions, Observer};
use airlock_store::{NewJournalEntry, NewRun, Run, RunStatus, Settlement, StepStatus};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub struct Options<'a> {
    pub workflow: &'a str,
    pub environment: &'a str,
    pub input: Option<&'a Path>,
    pub lease: Duration,
}

pub fn run(global: &Global, options: Options<'_>) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let workflow = workspace.workflow(options.workflow)?;
    let environment = workspace.environment(options.environment)?;
    let trigger = trigger_payload(options.input)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        // An environment runs what is deployed there; an unprotected one with nothing
        // deployed yet runs the working copy.
        let deployed = workspace
            .store
            .deployment(&environment.name, &workflow.workflow.name)
            .await
            .map_err(store_error)?;
        let working = airlock_core::canonical::version_id(&workflow.workflow).0;
        let version = match deployed {
            Some(d) => {
                if d.version != working && !global.json {
                    eprintln!(
                        "note: `{}` runs the deployed version {}; the working copy ({}) differs{}",
                        environment.name.value,
                        &d.version[..12],
                        &working[..12],
                        if environment.protected { "" } else { " — `airlock deploy` to run it" }
                    );
                }
                d.version
            }
            None if environment.protected => {
                return Err(CliError::usage(
                    format!(
                        "`{}` is protected and runs only released versions; none of `{}` is released there",
                        environment.name.value, workflow.workflow.name.value
                    ),
                    Some("release a version with `airlock promote`".into()),
                ));
            }
            None => workspace.store_working_version(workflow).await?,
        };
        let run = NewRun {
            id: airlock_engine::new_run_id(),
            environment: environment.name.value.clone(),
            workflow: workflow.workflow.name.value.clone(),
            version,
            trigger,
            dedupe_key: None,
            created_at: workspace::now(),
        };
        workspace.store.enqueue(&run).await.map_err(store_error)?;
        if !global.json {
            println!(
                "run {} · {}@{} · {}",
                run.id,
                run.workflow,
                &run.version[..12.min(run.version.len())],
                run.environment
            );
        }
        let engine = workspace.engine(EngineOptions {
            lease_ms: options.lease.as_millis() as i64,
            ..EngineOptions::default()
        });
        follow(&workspace, engine, &run.id, global.json).await
    })
}

/// Drives the store's due work until `run_id` finishes or waits for a person, printing
/// its journal; then prints the outcome. Used by `run`, `approve-step` and `runs retry`.
pub async fn follow(
    workspace: &Workspace,
    engine: Engine,
    run_id: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let engine = if json {
        Arc::new(engine)
    } else {
        Arc::new(engine.with_observer(Arc::new(Printer {
            run: run_id.to_owned(),
        })))
    };
    let started = std::time::Instant::now();
    let run = loop {
        engine
            .process_due()
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
    if json {
        crate::output::json(&json!({ "run": run, "journal": journal }));
    } else {
        print_outcome(&run, started.elapsed());
    }
    Ok(match run.status {
        RunStatus::Succeeded | RunStatus::Waiting => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_CHECK_FAILED),
    })
}

fn print_outcome(run: &Run, elapsed: Duration) {
    match run.status {
        RunStatus::Waiting => println!(
            "waiting for approval · continue with `airlock approve-step {} STEP --as NAME`",
            run.id
        ),
        status => {
            println!("{} in {}ms", status.as_str(), elapsed.as_millis());
            if let Some(error) = &run.error {
                println!("error: {error}");
            }
            if status == RunStatus::Dead {
                println!("dead-lettered · retry with `airlock runs retry {}`", run.id);
            }
        }
    }
}

fn trigger_payload(input: Option<&Path>) -> Result<Value, CliError> {
    let Some(path) = input else {
        return Ok(
            json!({ "body": {}, "headers": {}, "query": {}, "time": workspace::time(workspace::now()) }),
        );
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
    let body: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!(
                "{}:{}:{}: not JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
            None,
        )
    })?;
    Ok(
        json!({ "body": body, "headers": {}, "query": {}, "time": workspace::time(workspace::now()) }),
    )
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
            println!("  {}", journal_line(entry));
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
