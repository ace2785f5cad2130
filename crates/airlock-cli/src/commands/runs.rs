//! `airlock runs`, `airlock runs show ID`, `airlock runs retry ID`.

use crate::cli::Global;
use crate::error::CliError;
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace, store_error};
use airlock_engine::EngineOptions;
pub(super) use airlock_ops::runs::RunWithJournal;
use airlock_store::{Run, RunFilter, RunStatus};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::process::ExitCode;

pub struct ListOptions<'a> {
    pub environment: Option<&'a str>,
    pub workflow: Option<&'a str>,
    pub status: Option<&'a str>,
    pub limit: usize,
}

pub fn list(global: &Global, options: ListOptions<'_>) -> Result<ExitCode, CliError> {
    let status = options
        .status
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                CliError::usage(
                    format!("unknown status `{s}`"),
                    Some("statuses: queued, running, waiting, succeeded, failed, dead".into()),
                )
            })
        })
        .transpose()?;
    let filter = RunFilter {
        environment: options.environment.map(str::to_owned),
        workflow: options.workflow.map(str::to_owned),
        status,
        limit: Some(options.limit),
        before: None,
    };
    let runs = match Remote::from_global(global)? {
        Some(remote) => {
            let environment = match &filter.environment {
                Some(e) => e.clone(),
                None => remote.environment()?,
            };
            let mut query = format!("?limit={}", options.limit);
            if let Some(workflow) = &filter.workflow {
                query.push_str(&format!("&workflow={}", segment(workflow)));
            }
            if let Some(status) = filter.status {
                query.push_str(&format!("&status={}", status.as_str()));
            }
            let page: RunsPage = remote.get(&format!(
                "/api/v1/environments/{}/runs{query}",
                segment(&environment)
            ))?;
            page.runs
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(airlock_ops::runs::list(&*workspace.store, filter))
                .map_err(super::promote::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&runs);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        outln!("no runs");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "run",
        "workflow",
        "version",
        "environment",
        "status",
        "created",
        "took",
    ]);
    for run in runs {
        let took = run
            .finished_at
            .zip(run.started_at)
            .map(|(f, s)| format!("{}ms", f - s))
            .unwrap_or_default();
        table.add_row([
            run.id.clone(),
            run.workflow.clone(),
            run.version.chars().take(12).collect(),
            run.environment.clone(),
            run.status.as_str().to_owned(),
            workspace::time(run.created_at),
            took,
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub fn show(global: &Global, id: &str) -> Result<ExitCode, CliError> {
    let shown: RunWithJournal = match Remote::from_global(global)? {
        Some(remote) => remote.get(&format!("/api/v1/runs/{}", segment(id)))?,
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(airlock_ops::runs::show(&*workspace.store, id))
                .map_err(super::ops_error)?
        }
    };
    let RunWithJournal { run, journal } = shown;
    if global.json {
        crate::output::json(&json!({ "run": run, "journal": journal }));
        return Ok(ExitCode::SUCCESS);
    }
    outln!("run         {}", run.id);
    outln!("workflow    {} (version {})", run.workflow, run.version);
    outln!("environment {}", run.environment);
    outln!("status      {}", run.status.as_str());
    outln!("created     {}", workspace::time(run.created_at));
    if let Some(started) = run.started_at {
        outln!("started     {}", workspace::time(started));
    }
    if let Some(finished) = run.finished_at {
        outln!("finished    {}", workspace::time(finished));
    }
    if let Some(error) = &run.error {
        outln!("error       {error}");
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "#",
        "step",
        "attempt",
        "status",
        "idempotency key",
        "took",
        "detail",
    ]);
    for entry in &journal {
        let e = &entry.entry;
        let took = e
            .finished_at
            .map(|f| format!("{}ms", f - e.started_at))
            .unwrap_or_default();
        let detail = e
            .error
            .clone()
            .or_else(|| e.output.as_ref().map(|o| truncate(&o.to_string(), 80)))
            .unwrap_or_default();
        table.add_row([
            entry.seq.to_string(),
            e.step.clone(),
            e.attempt.to_string(),
            e.status.as_str().to_owned(),
            e.idempotency_key.clone().unwrap_or_default(),
            took,
            detail,
        ]);
    }
    outln!("{table}");
    if let Some(output) = &run.output {
        outln!("output      {}", truncate(&output.to_string(), 400));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn retry(global: &Global, id: &str) -> Result<ExitCode, CliError> {
    if let Some(remote) = Remote::from_global(global)? {
        // The server queues the run again; its engine executes it.
        let answer: serde_json::Value =
            remote.post(&format!("/api/v1/runs/{}/retry", segment(id)), json!({}))?;
        if global.json {
            crate::output::json(&answer);
        } else {
            outln!("run {id} queued again on the server; `airlock runs show {id}` follows it");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let workspace = Workspace::open(global)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        airlock_ops::runs::retry(&*workspace.store, id, "cli", workspace::now())
            .await
            .map_err(super::ops_error)?;
        let engine = workspace.engine(EngineOptions::default());
        super::run::follow(&workspace, engine, id, global.json).await
    })
}

/// Run `id` of the local store, or the refusal that names it and says where runs are listed.
pub(super) async fn stored_run(workspace: &Workspace, id: &str) -> Result<Run, CliError> {
    workspace
        .store
        .run(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            CliError::usage(
                format!("no run `{id}`"),
                Some("list runs with `airlock runs`".into()),
            )
        })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// `GET /api/v1/environments/{environment}/runs`.
#[derive(serde::Deserialize)]
struct RunsPage {
    runs: Vec<Run>,
}
