//! `airlock token create|list|revoke`: API tokens, one role in one environment each.

use crate::cli::{Global, TokenCommand};
use crate::error::CliError;
use crate::workspace::{self, Workspace, store_error};
use airlock_core::authz::Role;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::process::ExitCode;

pub fn run(global: &Global, command: &TokenCommand) -> Result<ExitCode, CliError> {
    let workspace = Workspace::open(global)?;
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
    workspace.environment(environment)?;
    let role: Role = role
        .parse()
        .map_err(|e: airlock_core::authz::UnknownRole| CliError::usage(e.to_string(), None))?;
    if name.trim().is_empty() {
        return Err(CliError::usage("a token needs a name (--name)", None));
    }
    let minted = airlock_server::mint_token();
    let id = format!("tok_{}", &minted.hash[..16]);
    let token = workspace
        .store
        .create_token(&airlock_store::NewApiToken {
            id,
            name: name.to_owned(),
            environment: environment.to_owned(),
            role: role.to_string(),
            secret_hash: minted.hash.clone(),
            created_by: actor.to_owned(),
            created_at: workspace::now(),
        })
        .await
        .map_err(store_error)?;
    workspace
        .audit(
            actor,
            "token.create",
            Some(environment),
            &token.token.id,
            json!({ "name": name, "role": role.to_string() }),
        )
        .await?;
    if global.json {
        crate::output::json(&json!({
            "id": token.token.id,
            "name": name,
            "environment": environment,
            "role": role.to_string(),
            "token": minted.token,
        }));
    } else {
        println!("{}", minted.token);
        eprintln!(
            "token {} · {name} · {role} in {environment} — shown once; the store keeps only its hash",
            token.token.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(global: &Global, workspace: &Workspace) -> Result<ExitCode, CliError> {
    let tokens = workspace.store.tokens(None).await.map_err(store_error)?;
    if global.json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.token.id, "name": t.token.name, "environment": t.token.environment,
                    "role": t.token.role, "created_by": t.token.created_by,
                    "created_at": workspace::time(t.token.created_at),
                })
            })
            .collect();
        crate::output::json(&json!({ "tokens": rows }));
        return Ok(ExitCode::SUCCESS);
    }
    if tokens.is_empty() {
        println!("no tokens: `airlock token create --env ENV --role ROLE --name NAME`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["id", "name", "environment", "role", "created"]);
    for t in &tokens {
        table.add_row([
            t.token.id.clone(),
            t.token.name.clone(),
            t.token.environment.clone(),
            t.token.role.clone(),
            format!(
                "{} by {}",
                workspace::time(t.token.created_at),
                t.token.created_by
            ),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

async fn revoke(
    global: &Global,
    workspace: &Workspace,
    id: &str,
    actor: &str,
) -> Result<ExitCode, CliError> {
    workspace
        .store
        .revoke_token(id, workspace::now())
        .await
        .map_err(store_error)?;
    workspace
        .audit(actor, "token.revoke", None, id, json!({}))
        .await?;
    if global.json {
        crate::output::json(&json!({ "revoked": id }));
    } else {
        println!("revoked {id}");
    }
    Ok(ExitCode::SUCCESS)
}
