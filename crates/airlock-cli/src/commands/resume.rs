//! `airlock resume [RUN]`: finish the runs a stopped process left behind, or one of them.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_engine::EngineOptions;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub fn run(
    global: &Global,
    run: Option<&str>,
    lease: Duration,
    patience: Duration,
) -> Result<ExitCode, CliError> {
    let workspace = Workspace::open(global)?;
    let engine = workspace.engine(EngineOptions {
        lease_ms: lease.as_millis() as i64,
        ..EngineOptions::default()
    });
    let rt = workspace::runtime()?;
    if let Some(id) = run {
        // One run: it alone is claimed (once its holder's lease is seen unrenewed for its
        // length) and followed, as `airlock run` follows the run it starts.
        return rt.block_on(async {
            super::runs::stored_run(&workspace, id).await?;
            super::run::follow(&workspace, engine, id, global.json).await
        });
    }
    // Runs held by a stopped process are taken over once this process has seen their lease
    // go unrenewed for its length (the wall clock cannot tell a dead holder from a clock
    // set forward): wait for that (and for short sleeps) up to `patience`, not longer.
    let processed = rt
        .block_on(Arc::new(engine).drain(patience))
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    if global.json {
        crate::output::json(&serde_json::json!({ "processed": processed }));
    } else {
        outln!(
            "resumed {processed} run{}",
            if processed == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
