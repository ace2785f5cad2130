//! `airlock deploy --env E`: make an unprotected environment run the working copy.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_server::ops;
use std::process::ExitCode;

pub fn run(global: &Global, environment: &str, actor: &str) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let deployed = workspace::runtime()?
        .block_on(ops::deploy::deploy(
            &*workspace.store,
            workspace.project(),
            environment,
            actor,
            workspace::now(),
        ))
        .map_err(super::promote::ops_error)?;
    if global.json {
        crate::output::json(&serde_json::to_value(&deployed).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("deployed to `{environment}`:");
    for change in &deployed.changes {
        let short = |v: &Option<String>| {
            v.as_deref()
                .map(|s| s.chars().take(12).collect::<String>())
                .unwrap_or_default()
        };
        let workflow = change.workflow.as_str();
        match change.change {
            "added" => println!("  + {workflow:<20} {}", short(&change.to)),
            "changed" => println!(
                "  ~ {workflow:<20} {} → {}",
                short(&change.from),
                short(&change.to)
            ),
            "removed" => println!(
                "  - {workflow:<20} {} (no longer in the project; its runs stop being started)",
                short(&change.from)
            ),
            _ => println!("    {workflow:<20} {} (unchanged)", short(&change.to)),
        }
    }
    Ok(ExitCode::SUCCESS)
}
