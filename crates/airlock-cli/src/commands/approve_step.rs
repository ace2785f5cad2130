//! `airlock approve-step RUN STEP --as NAME [--reject]`: a person's decision on an
//! approval step; the run then continues. Who may decide is
//! `airlock_ops::require_approver`, the rule the API applies too.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace, store_error};
use airlock_engine::EngineOptions;
use airlock_store::{RunStatus, StepDecision};
use serde_json::json;
use std::process::ExitCode;

pub fn run(
    global: &Global,
    run_id: &str,
    step: &str,
    approver: Option<&str>,
    reject: bool,
) -> Result<ExitCode, CliError> {
    if let Some(remote) = crate::remote::Remote::from_global(global)? {
        remote.confirm_as(approver)?;
        let answer: serde_json::Value = remote.post(
            &format!(
                "/api/v1/runs/{}/steps/{}/approve",
                crate::remote::segment(run_id),
                crate::remote::segment(step)
            ),
            json!({ "decision": if reject { "reject" } else { "approve" } }),
        )?;
        if global.json {
            crate::output::json(&answer);
        } else {
            println!(
                "{} step {step} of run {run_id}; the server continues the run",
                if reject { "rejected" } else { "approved" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let approver = approver.ok_or_else(|| {
        CliError::usage(
            "who decides? `--as NAME` (one of the environment's approvers)",
            None,
        )
    })?;
    let workspace = Workspace::open(global)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        let run = workspace
            .store
            .run(run_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| CliError::usage(format!("no run `{run_id}`"), None))?;
        airlock_ops::require_approver(
            &*workspace.store,
            &workspace.project().manifest,
            &run.environment,
            approver,
            airlock_ops::Decides::Step { run: run_id, step },
            workspace::now(),
        )
        .await
        .map_err(crate::commands::ops_error)?;
        if run.status != RunStatus::Waiting {
            return Err(CliError::usage(
                format!(
                    "run {run_id} is {}, not waiting for an approval",
                    run.status.as_str()
                ),
                None,
            ));
        }
        let journal = workspace.store.journal(run_id).await.map_err(store_error)?;
        let waiting_on = journal
            .iter()
            .rev()
            .find(|e| e.entry.status == airlock_store::StepStatus::Waiting)
            .map(|e| e.entry.step.clone());
        if waiting_on.as_deref() != Some(step) {
            return Err(CliError::usage(
                format!("run {run_id} is not waiting on step `{step}`"),
                waiting_on.map(|s| format!("it waits on `{s}`")),
            ));
        }
        workspace
            .store
            .decide_step(&StepDecision {
                run: run_id.to_owned(),
                step: step.to_owned(),
                approver: approver.to_owned(),
                approved: !reject,
                decided_at: workspace::now(),
            })
            .await
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        workspace
            .audit(
                approver,
                if reject {
                    "step.reject"
                } else {
                    "step.approve"
                },
                Some(&run.environment),
                run_id,
                json!({ "step": step }),
            )
            .await?;
        if !global.json {
            println!(
                "{} `{step}` of run {run_id} as {approver}",
                if reject { "rejected" } else { "approved" }
            );
        }
        let engine = workspace.engine(EngineOptions::default());
        super::run::follow(&workspace, engine, run_id, global.json).await
    })
}
