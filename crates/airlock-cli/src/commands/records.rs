//! `airlock records --env E`: what record-mode bindings received.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace, store_error};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::process::ExitCode;

pub fn run(global: &Global, environment: &str) -> Result<ExitCode, CliError> {
    let records = match crate::remote::Remote::from_global(global)? {
        Some(remote) => {
            let page: RecordsPage = remote.get(&format!(
                "/api/v1/environments/{}/records",
                crate::remote::segment(environment)
            ))?;
            page.records
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace.environment(environment)?;
            workspace::runtime()?
                .block_on(workspace.store.records(environment))
                .map_err(store_error)?
        }
    };
    if global.json {
        crate::output::json(&records);
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        outln!("no test records in `{environment}`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "#",
        "at",
        "call",
        "run",
        "step",
        "arguments",
        "idempotency key",
    ]);
    for record in records {
        let r = &record.record;
        table.add_row([
            record.id.to_string(),
            workspace::time(r.at),
            format!("{}.{}", r.connector, r.action),
            r.run.clone(),
            r.step.clone(),
            r.arguments.to_string(),
            r.idempotency_key.clone().unwrap_or_default(),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// `GET /api/v1/environments/{environment}/records`.
#[derive(serde::Deserialize)]
struct RecordsPage {
    records: Vec<airlock_store::TestRecord>,
}
