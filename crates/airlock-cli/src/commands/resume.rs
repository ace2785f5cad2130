//! `airlock resume`: finish the runs a stopped process left behind.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_engine::EngineOptions;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub fn run(global: &Global, lease: Duration, patience: Duration) -> Result<ExitCode, CliError> {
    let workspace = Workspace::open(global)?;
    let engine = Arc::new(workspace.engine(EngineOptions {
        lease_ms: lease.as_millis() as i64,
        ..EngineOptions::default()
    }));
    // Runs held by a stopped process become due when their lease expires: wait for that
    // (and for short sleeps) up to `patience`, not longer.
    let processed = workspace::runtime()?
        .block_on(engine.drain(patience))
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    if global.json {
        crate::output::json(&serde_json::json!({ "processed": processed }));
    } else {
        println!(
            "resumed {processed} run{}",
            if processed == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
