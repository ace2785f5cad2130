//! `airlock deploy --env E`: make an unprotected environment run the working copy.
//!
//! Against a server (`--server`), the server deploys its own working copy: the policy,
//! the evidence and the gate there judge the files the server holds, so it never runs
//! content uploaded by a caller. This command sends the version id of each workflow of
//! the working copy here, and the server deploys only when its files hash to exactly
//! those (it computes the ids itself), so what runs there is what was hashed and tested
//! here, or nothing.

use crate::cli::Global;
use crate::error::CliError;
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_core::canonical;
use airlock_ops as ops;
use airlock_ops::deploy::{ChangeKind, Deployed};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;

pub fn run(global: &Global, environment: &str, actor: Option<&str>) -> Result<ExitCode, CliError> {
    let deployed: Deployed = match Remote::from_global(global)? {
        Some(remote) => {
            let loaded = super::validate::load_or_report(global)?;
            remote.confirm_as(actor)?;
            let versions: BTreeMap<&str, String> = loaded
                .project
                .workflows
                .iter()
                .map(|w| {
                    (
                        w.workflow.name.value.as_str(),
                        canonical::version_id(&w.workflow).0,
                    )
                })
                .collect();
            remote.post(
                &format!("/api/v1/environments/{}/deploy", segment(environment)),
                json!({ "versions": versions }),
            )?
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::deploy::deploy(
                    &*workspace.store,
                    workspace.project(),
                    environment,
                    None,
                    actor.unwrap_or("cli"),
                    workspace::now(),
                ))
                .map_err(super::promote::ops_error)?
        }
    };
    print(global, &deployed);
    Ok(ExitCode::SUCCESS)
}

fn print(global: &Global, deployed: &Deployed) {
    if global.json {
        crate::output::json(&serde_json::to_value(deployed).unwrap_or_default());
        return;
    }
    outln!("deployed to `{}`:", deployed.environment);
    for change in &deployed.changes {
        let short = |v: &Option<String>| {
            v.as_deref()
                .map(|s| s.chars().take(12).collect::<String>())
                .unwrap_or_default()
        };
        let workflow = change.workflow.as_str();
        match change.change {
            ChangeKind::Added => outln!("  + {workflow:<20} {}", short(&change.to)),
            ChangeKind::Changed => outln!(
                "  ~ {workflow:<20} {} → {}",
                short(&change.from),
                short(&change.to)
            ),
            ChangeKind::Removed => outln!(
                "  - {workflow:<20} {} (no longer in the project; its runs stop being started)",
                short(&change.from)
            ),
            ChangeKind::Unchanged => {
                outln!("    {workflow:<20} {} (unchanged)", short(&change.to))
            }
        }
    }
}
