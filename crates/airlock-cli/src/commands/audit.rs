//! `airlock audit` and `airlock audit verify`.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace, store_error};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use std::process::ExitCode;

pub fn list(global: &Global) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let events = workspace::runtime()?
        .block_on(workspace.store.audit_log())
        .map_err(store_error)?;
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
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub fn verify(global: &Global) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
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
            Ok(()) => println!("audit chain intact: {} events", events.len()),
            Err(seq) => println!(
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
