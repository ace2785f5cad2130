//! `airlock deploy --env E`: make an unprotected environment run the working copy.

use crate::cli::Global;
use crate::error::CliError;
use crate::workspace::{self, Workspace, store_error};
use airlock_store::Deployment;
use serde_json::json;
use std::process::ExitCode;

pub fn run(global: &Global, environment: &str, actor: &str) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let env = workspace.environment(environment)?;
    let rt = workspace::runtime()?;
    if env.protected {
        rt.block_on(workspace.audit(
            actor,
            "deploy.refused",
            Some(environment),
            "*",
            json!({ "reason": "protected environment" }),
        ))?;
        return Err(CliError::usage(
            format!(
                "`{environment}` is protected: it changes only by promotion or rollback, never by deploy"
            ),
            Some(format!(
                "move a tested version there with `airlock promote WORKFLOW --from staging --to {environment}`"
            )),
        ));
    }
    let changes = rt.block_on(async {
        workspace.audit_policy_change(actor).await?;
        let mut changes = Vec::new();
        for workflow in &workspace.project().workflows {
            let name = &workflow.workflow.name.value;
            let version = workspace.store_working_version(workflow).await?;
            let previous = workspace
                .store
                .set_deployment(&Deployment {
                    environment: environment.to_owned(),
                    workflow: name.clone(),
                    version: version.clone(),
                    actor: actor.to_owned(),
                    updated_at: workspace::now(),
                })
                .await
                .map_err(store_error)?;
            let change = match &previous {
                None => "added",
                Some(old) if *old == version => "unchanged",
                Some(_) => "changed",
            };
            if change != "unchanged" {
                workspace
                    .audit(actor, "deploy", Some(environment), name, json!({ "from": previous, "to": version }))
                    .await?;
            }
            changes.push(json!({ "workflow": name, "change": change, "from": previous, "to": version }));
        }
        for deployed in workspace.store.deployments(Some(environment)).await.map_err(store_error)? {
            if workspace.project().workflow(&deployed.workflow).is_none() {
                changes.push(json!({ "workflow": deployed.workflow, "change": "removed", "from": deployed.version, "to": null }));
            }
        }
        Ok::<_, CliError>(changes)
    })?;
    if global.json {
        crate::output::json(&json!({ "environment": environment, "changes": changes }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("deployed to `{environment}`:");
    for change in &changes {
        let short = |v: &serde_json::Value| {
            v.as_str()
                .map(|s| s.chars().take(12).collect::<String>())
                .unwrap_or_default()
        };
        let workflow = change["workflow"].as_str().unwrap_or_default();
        match change["change"].as_str().unwrap_or_default() {
            "added" => println!("  + {workflow:<20} {}", short(&change["to"])),
            "changed" => println!(
                "  ~ {workflow:<20} {} → {}",
                short(&change["from"]),
                short(&change["to"])
            ),
            "removed" => println!(
                "  - {workflow:<20} {} (no longer in the project; its runs stop being started)",
                short(&change["from"])
            ),
            _ => println!("    {workflow:<20} {} (unchanged)", short(&change["to"])),
        }
    }
    Ok(ExitCode::SUCCESS)
}
