//! `airlock audit [--env E]` and `airlock audit verify`.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace, store_error};
use airlock_store::AuditEvent;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::process::ExitCode;

/// The audit log, oldest first: every event locally, or `only`'s; against a server the
/// events of `only` or of the token's environment (the API answers one environment's),
/// read back as the store's own type so they print the same.
pub fn list(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    let events = match Remote::from_global(global)? {
        Some(remote) => {
            let environment = remote.listed_environment(only, global.json, "events")?;
            let page: AuditPage = remote.get(&format!(
                "/api/v1/environments/{}/audit",
                segment(&environment)
            ))?;
            page.events
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(airlock_ops::audit_events(
                    &*workspace.store,
                    &workspace.project().manifest,
                    only,
                ))
                .map_err(super::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&events);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "#",
        "at",
        "actor",
        "action",
        "environment",
        "subject",
        "detail",
    ]);
    for event in events {
        let e = &event.event;
        table.add_row([
            event.seq.to_string(),
            workspace::time(e.at),
            e.actor.clone(),
            e.action.clone(),
            e.environment.clone().unwrap_or_default(),
            e.subject.clone(),
            truncate(&e.detail.to_string(), 100),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub fn verify(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    if only.is_some() {
        // Each event's hash covers the one before it, whatever its environment: a part
        // of the chain cannot be checked on its own.
        return Err(CliError::usage(
            "`audit verify` checks the whole chain, which links every environment's events: --env does not apply",
            Some("run `airlock audit verify` without --env".into()),
        ));
    }
    let workspace = Workspace::open(global)?;
    let events = workspace::runtime()?
        .block_on(workspace.store.audit_log())
        .map_err(store_error)?;
    let result = airlock_store::verify_audit_chain(&events);
    if global.json {
        crate::output::json(
            &json!({ "events": events.len(), "ok": result.is_ok(), "first_bad": result.err() }),
        );
    } else {
        match result {
            Ok(()) => outln!("audit chain intact: {} events", events.len()),
            Err(seq) => outln!(
                "audit chain BROKEN at event {seq}: it was changed, removed or inserted after the fact"
            ),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// `GET /api/v1/environments/{environment}/audit`.
#[derive(serde::Deserialize)]
struct AuditPage {
    events: Vec<AuditEvent>,
}
