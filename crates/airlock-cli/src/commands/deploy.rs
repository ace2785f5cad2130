//! `airlock deploy --env E`: make an unprotected environment run the working copy.
//!
//! Against a server (`--server`), the deploy carries its files: the bundle of exactly what
//! `validate` reads here (`airlock_ops::bundle`), with its content id and each workflow's
//! version id. The server checks, validates and hashes the files itself and deploys only
//! when they hash to exactly those ids (409 and nothing deployed otherwise), keeps them,
//! so it needs no checkout of the project, and runs their scenario suites on its side,
//! recording the evidence the promotion gate then reads.

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
            // Checked here first, so a problem prints as `validate` prints it.
            let root = crate::project_dir::ProjectDir::locate(global.project.as_deref())?.root;
            super::validate::load_or_report(global)?;
            remote.confirm_as(actor)?;
            let bundle = ops::bundle::read_folder(&root).map_err(|e| match e {
                ops::bundle::ReadError::Io { path, error } => CliError::io("read", &path, error),
                ops::bundle::ReadError::Problems { .. } => CliError::usage(
                    e.to_string(),
                    Some("a bundle holds the project's own files: relative paths, no symbolic links, UTF-8, at most 1 MiB each and 8 MiB in all".into()),
                ),
            })?;
            // The ids of exactly the files sent, not of a second reading of the folder.
            let loaded = airlock_core::project::load(bundle.source_files());
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
                json!({ "versions": versions, "bundle": ops::bundle::WireBundle::of(&bundle) }),
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
    if let Some(bundle) = &deployed.bundle {
        outln!("files: bundle {}, kept by the server", ops::short(bundle));
    }
    if !deployed.evidence.is_empty() {
        outln!("tested by the server, recorded as evidence:");
        for recorded in &deployed.evidence {
            outln!(
                "  {} {:<20} {} — {} of {} scenarios passed",
                if recorded.passed { "✓" } else { "✗" },
                recorded.workflow,
                ops::short(&recorded.version),
                recorded.summary["passed"].as_u64().unwrap_or(0),
                recorded.summary["scenarios"].as_u64().unwrap_or(0)
            );
        }
    }
}
