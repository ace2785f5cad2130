//! `airlock runs prune --older-than D [--env E]`: retention by hand or from cron (`serve
//! --retain D` does the same on its own). The pass is `ops::retention::prune`.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_ops::retention;
use serde_json::json;
use std::process::ExitCode;

pub fn run(
    global: &Global,
    older_than_ms: i64,
    environment: Option<&str>,
) -> Result<ExitCode, CliError> {
    if older_than_ms < retention::SHORTEST_MS {
        return Err(CliError::usage(
            "--older-than must be at least 1h",
            Some(retention::SHORTEST_WHY.into()),
        ));
    }
    let workspace = Workspace::open(global)?;
    if let Some(name) = environment {
        workspace.environment(name)?;
    }
    let now = workspace::now();
    let before = now.saturating_sub(older_than_ms);
    let pruned = workspace::runtime()?
        .block_on(retention::prune(
            &*workspace.store,
            before,
            environment,
            "cli",
            now,
            true,
        ))
        .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&json!({
            "pruned": pruned,
            "before": workspace::time(before),
            "environment": environment,
        }));
    } else {
        let scope = environment.map_or_else(
            || "in every environment".to_owned(),
            |name| format!("in `{name}`"),
        );
        outln!(
            "pruned {pruned} run{} {scope} accepted and finished before {}",
            if pruned == 1 { "" } else { "s" },
            workspace::time(before)
        );
    }
    Ok(ExitCode::SUCCESS)
}
