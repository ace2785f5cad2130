//! `airlock runs prune --older-than D [--env E]`: retention. Deletes the runs accepted and
//! finished more than D ago, with their journals, so that a store's size and the cost of
//! its writes stay flat however long it runs. Meant for cron, beside `airlock serve`.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace, store_error};
use serde_json::json;
use std::process::ExitCode;

/// Runs deleted per write: small enough that a serving process's own writes never wait
/// long behind retention, large enough that a year of history goes in minutes.
const BATCH: usize = 1_000;

/// Retention shorter than this is refused: a webhook redelivered after its run was pruned
/// is no longer recognised as a duplicate, and senders retry for hours.
const SHORTEST_MS: i64 = 60 * 60 * 1_000;

pub fn run(
    global: &Global,
    older_than_ms: i64,
    environment: Option<&str>,
) -> Result<ExitCode, CliError> {
    if older_than_ms < SHORTEST_MS {
        return Err(CliError::usage(
            "--older-than must be at least 1h",
            Some(
                "a run's webhook idempotency key goes with it, so a shorter retention would let a \
                 sender's retry run twice; keep runs longer than your senders retry (days, say 30d)"
                    .into(),
            ),
        ));
    }
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    if let Some(name) = environment {
        workspace.environment(name)?;
    }
    let before = workspace::now().saturating_sub(older_than_ms);
    let pruned = workspace::runtime()?.block_on(async {
        let mut pruned = 0u64;
        loop {
            let batch = workspace
                .store
                .prune_runs(before, environment, BATCH)
                .await
                .map_err(store_error)?;
            if batch == 0 {
                break;
            }
            pruned += batch;
        }
        workspace
            .audit(
                "cli",
                "runs.prune",
                environment,
                environment.unwrap_or("every environment"),
                json!({ "before": workspace::time(before), "pruned": pruned }),
            )
            .await?;
        Ok::<_, CliError>(pruned)
    })?;
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
        println!(
            "pruned {pruned} run{} {scope} accepted and finished before {}",
            if pruned == 1 { "" } else { "s" },
            workspace::time(before)
        );
    }
    Ok(ExitCode::SUCCESS)
}
