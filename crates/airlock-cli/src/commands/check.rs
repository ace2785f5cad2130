//! `airlock check --env E`: every binding of E reached for real, within E's egress.
//!
//! The rows are `airlock_ops::check`'s. Against a server (`--server`, a deployer's
//! token) the server reaches the bindings from its side, with its keys, secrets and
//! network (`GET /api/v1/environments/{environment}/check`), and answers the same rows,
//! which print the same way.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_ops::check::CheckReport;
use std::process::ExitCode;

pub fn run(global: &Global, environment: &str) -> Result<ExitCode, CliError> {
    let report: CheckReport = match Remote::from_global(global)? {
        Some(remote) => remote.get(&format!(
            "/api/v1/environments/{}/check",
            segment(environment)
        ))?,
        None => {
            let workspace = Workspace::open(global)?;
            let project = workspace.project();
            workspace::runtime()?
                .block_on(airlock_ops::check::check_and_record(
                    &*workspace.store,
                    &workspace.connectors(),
                    project,
                    environment,
                    "cli",
                    workspace::now(),
                ))
                .map_err(super::ops_error)?
        }
    };
    print(global, &report);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn print(global: &Global, report: &CheckReport) {
    if global.json {
        // Through a `Value`, whose keys are sorted: the order `check --json` has always had.
        crate::output::json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    outln!("check of `{}`:", report.environment);
    for row in &report.bindings {
        outln!(
            "  {:<4} {:<12} {:<13} {}",
            if row.ok { "OK" } else { "FAIL" },
            row.connector,
            format!("{} ({})", row.kind, row.mode),
            row.detail
        );
    }
    let failed = report.failed();
    if failed > 0 {
        outln!(
            "{failed} binding{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
}
