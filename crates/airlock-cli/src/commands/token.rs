//! `airlock token create|list|revoke`: API tokens, one role in one environment each.

use crate::cli::{Global, TokenCommand};
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_ops as ops;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::process::ExitCode;

pub fn run(global: &Global, command: &TokenCommand) -> Result<ExitCode, CliError> {
    let workspace = Workspace::open_deployed(global)?;
    let rt = workspace::runtime()?;
    match command {
        TokenCommand::Create {
            environment,
            role,
            name,
            actor,
        } => rt.block_on(create(global, &workspace, environment, role, name, actor)),
        TokenCommand::List => rt.block_on(list(global, &workspace)),
        TokenCommand::Revoke { id, actor } => rt.block_on(revoke(global, &workspace, id, actor)),
    }
}

async fn create(
    global: &Global,
    workspace: &Workspace,
    environment: &str,
    role: &str,
    name: &str,
    actor: &str,
) -> Result<ExitCode, CliError> {
    let created = ops::tokens::create(
        &*workspace.store,
        &workspace.project().manifest,
        ops::tokens::TokenToCreate {
            environment,
            role,
            name,
            actor,
            now: workspace::now(),
        },
    )
    .await
    .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&created);
    } else {
        outln!("{}", created.token);
        errln!(
            "token {} · {} · {} in {} — shown once; the store keeps only its hash",
            created.id,
            created.name,
            created.role,
            created.environment
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(global: &Global, workspace: &Workspace) -> Result<ExitCode, CliError> {
    let tokens = ops::tokens::list(&*workspace.store)
        .await
        .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&json!({ "tokens": tokens }));
        return Ok(ExitCode::SUCCESS);
    }
    if tokens.is_empty() {
        outln!("no tokens: `airlock token create --env ENV --role ROLE --name NAME`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["id", "name", "environment", "role", "created"]);
    for t in tokens {
        table.add_row([
            t.id,
            t.name,
            t.environment,
            t.role,
            format!("{} by {}", t.created_at, t.created_by),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

async fn revoke(
    global: &Global,
    workspace: &Workspace,
    id: &str,
    actor: &str,
) -> Result<ExitCode, CliError> {
    ops::tokens::revoke(&*workspace.store, id, actor, workspace::now())
        .await
        .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&json!({ "revoked": id }));
    } else {
        outln!("revoked {id}");
    }
    Ok(ExitCode::SUCCESS)
}
