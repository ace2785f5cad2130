//! `airlock approve-step RUN STEP --as NAME [--reject]`: a person's decision on an
//! approval step; the run then continues. The decision is `airlock_ops::runs::decide_step`,
//! the one the API makes too: who may decide, and on which step the run waits.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_engine::EngineOptions;
use airlock_ops as ops;
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
            outln!(
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
        ops::runs::decide_step(
            &*workspace.store,
            &workspace.project().manifest,
            ops::runs::DecideStep {
                run: run_id,
                step,
                approver,
                via: ops::Via::Local,
                approved: !reject,
                comment: None,
                now: workspace::now(),
            },
        )
        .await
        .map_err(crate::commands::ops_error)?;
        if !global.json {
            outln!(
                "{} `{step}` of run {run_id} as {approver}",
                if reject { "rejected" } else { "approved" }
            );
        }
        let engine = workspace.engine(EngineOptions::default());
        super::run::follow(&workspace, engine, run_id, global.json).await
    })
}
