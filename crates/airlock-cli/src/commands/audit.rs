//! `airlock audit [--env E]`, `airlock audit verify [--expect SEQ:HASH]` and `airlock
//! audit head`.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_ops::audit_chain::{self, AuditHead, Verification};
use airlock_store::AuditEvent;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
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

/// `audit verify` and `audit head` are about the whole chain: each event's hash covers the
/// one before it, whatever its environment, so a part of the chain cannot be checked or
/// anchored on its own.
fn whole_chain(command: &str, only: Option<&str>) -> Result<(), CliError> {
    match only {
        Some(_) => Err(CliError::usage(
            format!(
                "`audit {command}` is about the whole chain, which links every environment's events: --env does not apply"
            ),
            Some(format!("run `airlock audit {command}` without --env")),
        )),
        None => Ok(()),
    }
}

pub fn verify(
    global: &Global,
    only: Option<&str>,
    expect: Option<&AuditHead>,
) -> Result<ExitCode, CliError> {
    whole_chain("verify", only)?;
    let workspace = Workspace::open(global)?;
    let verification = workspace::runtime()?
        .block_on(audit_chain::verify(&*workspace.store, expect))
        .map_err(super::ops_error)?;
    if global.json {
        crate::output::json(&verification);
    } else {
        outln!("{}", report(&verification));
    }
    Ok(if verification.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// The human report of `audit verify`: the chain, then the anchor when one was given.
fn report(v: &Verification) -> String {
    let mut lines = Vec::new();
    lines.push(match (v.first_bad, &v.head) {
        (Some(seq), _) => format!(
            "audit chain BROKEN at event {seq}: it was changed, removed or inserted after the fact"
        ),
        (None, Some(head)) => format!("audit chain intact: {} events, newest {head}", v.events),
        (None, None) => "audit chain intact: no events yet".to_owned(),
    });
    if let Some(anchor) = &v.anchor {
        lines.push(match &v.anchor_mismatch {
            None => format!("anchor {anchor}: held (event {} is unchanged)", anchor.seq),
            Some(mismatch) => format!("anchor {anchor}: NOT HELD: {mismatch}"),
        });
    }
    lines.join("\n")
}

/// `airlock audit head`: `SEQ:HASH` alone on stdout, so that `$(airlock audit head)` is
/// the anchor; against a server, its store's head.
pub fn head(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    whole_chain("head", only)?;
    let head: audit_chain::Head = match Remote::from_global(global)? {
        Some(remote) => remote.get("/api/v1/audit/head")?,
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(audit_chain::head(&*workspace.store))
                .map_err(super::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&head);
    } else {
        match &head.anchor {
            Some(anchor) => outln!("{anchor}"),
            None => errln!("the audit log is empty: there is no head to anchor yet"),
        }
    }
    Ok(ExitCode::SUCCESS)
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
