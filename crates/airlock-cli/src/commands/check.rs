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
        // A record-mode binding passes without being reached: not "OK", which would say
        // it answered.
        let status = match (row.ok, row.mode.as_str()) {
            (true, "record") => "SKIP",
            (true, _) => "OK",
            (false, _) => "FAIL",
        };
        outln!(
            "  {:<4} {:<12} {:<13} {}",
            status,
            row.connector,
            format!("{} ({})", row.kind, row.mode),
            row.detail
        );
    }
    if let Some(store) = &report.store {
        outln!(
            "store: {} (file {}, folder {}){}",
            store.path,
            store.mode,
            store.folder_mode,
            if store.private {
                ": private"
            } else {
                ": readable by others"
            }
        );
    }
    for warning in &report.warnings {
        outln!("warning: {warning}");
    }
    let failed = report.failed();
    if failed > 0 {
        outln!(
            "{failed} binding{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
}
