//! `airlock secrets set NAME --env E` (value from stdin) and `airlock secrets list [--env E]`.

use crate::cli::Global;
use crate::error::CliError;
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_connectors::secrets::{Fingerprinter, Keyring};
use airlock_ops as ops;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;

pub fn set(global: &Global, name: &str, environment: &str) -> Result<ExitCode, CliError> {
    if let Some(remote) = Remote::from_global(global)? {
        let value = read_value()?;
        remote.put_text(
            &format!(
                "/api/v1/environments/{}/secrets/{}",
                segment(environment),
                segment(name)
            ),
            value,
        )?;
        if global.json {
            crate::output::json(&json!({ "environment": environment, "name": name, "set": true }));
        } else {
            outln!("set `{name}` in `{environment}`");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let workspace = Workspace::open(global)?;
    workspace.environment(environment)?;
    // Refused before anything is read from stdin: nobody types a value for nothing.
    ops::secrets::require_declared(&workspace.project().manifest, environment, name)
        .map_err(super::ops_error)?;
    let value = read_value()?;
    set_value(global, &workspace, name, environment, &value)
}

/// The secret's value from stdin, as read (`ops::secrets::set` drops the final line break).
fn read_value() -> Result<String, CliError> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| CliError::usage(format!("cannot read the secret from stdin: {e}"), None))?;
    Ok(value)
}

/// Seals `value` under `environment`'s key (creating the key file if needed), stores it
/// with its fingerprint, and audits the change.
pub fn set_value(
    global: &Global,
    workspace: &Workspace,
    name: &str,
    environment: &str,
    value: &str,
) -> Result<ExitCode, CliError> {
    let state = workspace.state_dir();
    let created_key = Keyring::create_key_file(&state, environment)
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    let keyring =
        Keyring::load(&state, &[environment]).map_err(|e| CliError::usage(e.to_string(), None))?;
    // A keyed fingerprint of the value, under a key of its own, so that `airlock diff` can
    // flag a credential shared between environments without reading either value.
    let environments: Vec<&str> = workspace
        .project()
        .manifest
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let (fingerprinter, created_fingerprint_key) =
        Fingerprinter::load_or_create(&state, &environments)
            .map_err(|e| CliError::usage(e.to_string(), None))?;
    fingerprinter
        .ensure_apart(&workspace.keyring)
        .and_then(|()| fingerprinter.ensure_apart(&keyring))
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    let rt = workspace::runtime()?;
    let set = rt
        .block_on(ops::secrets::set(
            &*workspace.store,
            &workspace.project().manifest,
            &keyring,
            Some(&fingerprinter),
            ops::secrets::SecretToSet {
                environment,
                name,
                value,
                actor: "cli",
                via: ops::Via::Local,
                now: workspace::now(),
            },
        ))
        .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&set);
    } else {
        if created_key {
            outln!(
                "created the key for `{environment}` in .airlock/keys/{environment}.key (keep it; without it the secrets of `{environment}` cannot be read)"
            );
        }
        if created_fingerprint_key {
            outln!(
                "created the fingerprint key in .airlock/keys/fingerprint.key (it tells whether two environments share a credential; keep it apart from the environments' keys)"
            );
        }
        outln!("set `{name}` in `{environment}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every declared secret, set or not: of `only`, or of every environment locally; of
/// `only` or the token's environment against a server (the only one its token may list).
/// The rows come from `ops::secrets` on both sides, so they print the same.
pub fn list(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    let rows = match Remote::from_global(global)? {
        Some(remote) => {
            let environment = remote.listed_environment(only, global.json, "secrets")?;
            let page: SecretList = remote.get(&format!(
                "/api/v1/environments/{}/secrets",
                segment(&environment)
            ))?;
            page.secrets
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::secrets::list(
                    &*workspace.store,
                    &workspace.project().manifest,
                    only,
                ))
                .map_err(super::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["environment", "secret", "state", "updated"]);
    for row in rows {
        table.add_row([
            row.environment,
            row.name,
            if row.set { "set" } else { "not set" }.to_owned(),
            row.updated_at.unwrap_or_default(),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// `GET /api/v1/environments/{environment}/secrets`.
#[derive(serde::Deserialize)]
struct SecretList {
    secrets: Vec<ops::secrets::SecretRow>,
}
