//! The path to a protected environment: `promote`, `approve`, `reject`, `rollback`,
//! `releases`. The decisions are `airlock_ops::promotion`'s, shared with the API:
//! locally the CLI calls them on the project's store, with `--as` saying who acts;
//! against a server (`--server`) it calls the API, whose token says who acts, and reads
//! back the same result types. Either way one renderer prints the result.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_core::policy::Verdict;
use airlock_ops::promotion::{Decision, Promotion, ReleaseRow, Rollback};
use airlock_ops::{self as ops, OpsError, short};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use std::process::ExitCode;

/// An operation's refusal as the CLI reports it: its message and hint, exit 2.
pub(crate) fn ops_error(error: OpsError) -> CliError {
    let help = error.help().map(str::to_owned);
    CliError::usage(error.to_string(), help)
}

fn print_verdict(verdict: &Verdict) {
    outln!(
        "risk class: {}",
        serde_json::to_value(verdict.risk)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    for check in &verdict.checks {
        outln!(
            "  {} {:<13} {} — {}",
            if check.met { "✓" } else { "✗" },
            check.requirement,
            check.required,
            check.actual
        );
    }
}

/// Who acts locally: `--as`, which the command needs.
fn local_identity<'a>(name: Option<&'a str>, who: &str) -> Result<&'a str, CliError> {
    name.ok_or_else(|| {
        CliError::usage(
            format!("who {who}? `--as NAME`"),
            Some("against a server (`--server`), the token's name says who".into()),
        )
    })
}

/// What `promote` is asked.
pub struct Ask<'a> {
    pub workflow: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// `--as` (locally; against a server the token's name asks).
    pub author: Option<&'a str>,
    /// `--freeze-exception REASON`.
    pub freeze_exception: Option<&'a str>,
}

pub fn promote(global: &Global, ask: Ask<'_>) -> Result<ExitCode, CliError> {
    let Ask {
        workflow,
        from,
        to,
        author,
        freeze_exception,
    } = ask;
    let promotion: Promotion = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(author)?;
            let answer = remote.post_answer(
                &format!("/api/v1/workflows/{}/promotions", segment(workflow)),
                json!({ "from": from, "to": to, "freeze_exception": freeze_exception }),
                // The gate's refusal is a result (409 with the verdict), printed as locally.
                |status, answer| {
                    status == reqwest::StatusCode::CONFLICT
                        && answer["opened"] == Value::Bool(false)
                        && answer.get("verdict").is_some()
                },
            )?;
            remote.decode(answer)?
        }
        None => {
            let author = local_identity(author, "asks")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::promote(
                    &*workspace.store,
                    workspace.project(),
                    workflow,
                    from,
                    to,
                    author,
                    freeze_exception,
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    Ok(print_promotion(
        global,
        &promotion,
        freeze_exception.is_some(),
    ))
}

fn print_promotion(global: &Global, promotion: &Promotion, excepted: bool) -> ExitCode {
    let Promotion {
        workflow,
        from,
        to,
        author,
        ..
    } = promotion;
    let version = short(&promotion.version);
    let Some(request) = &promotion.request else {
        if global.json {
            crate::output::json(
                &json!({ "workflow": workflow, "version": promotion.version, "opened": false, "verdict": promotion.verdict }),
            );
        } else {
            outln!("promotion of {workflow}@{version} from {from} to {to} refused:");
            print_verdict(&promotion.verdict);
            if promotion
                .verdict
                .checks
                .iter()
                .any(|c| c.requirement == "freeze" && !c.met)
            {
                outln!(
                    "inside a freeze, a promotion that cannot wait states why: `airlock promote {workflow} --freeze-exception \"REASON\"` (its approvers see it; the audit log keeps it)"
                );
            }
        }
        return ExitCode::from(EXIT_CHECK_FAILED);
    };
    if global.json {
        crate::output::json(
            &json!({ "request": request, "verdict": promotion.verdict, "release": promotion.release }),
        );
    } else {
        outln!(
            "promotion request {} · {workflow}@{version} · {from} → {to} · by {author}",
            request.request.id
        );
        print_verdict(&promotion.verdict);
        if excepted
            && !promotion
                .verdict
                .checks
                .iter()
                .any(|c| c.requirement == "freeze")
        {
            outln!(
                "no freeze window covers now; the freeze exception stays with the request in case one begins before it is released"
            );
        }
        match &promotion.release {
            Some(r) => outln!("released as {}: new {to} runs use {version}", r.release.id),
            None => outln!(
                "waiting for approval: `airlock approve {} --as NAME` (an approver of {to}, not {author})",
                request.request.id
            ),
        }
    }
    ExitCode::SUCCESS
}

pub fn decide(
    global: &Global,
    request_id: &str,
    approver: Option<&str>,
    approve: bool,
    reason: Option<&str>,
) -> Result<ExitCode, CliError> {
    let decision: Decision = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(approver)?;
            remote.post(
                &format!(
                    "/api/v1/promotions/{}/{}",
                    segment(request_id),
                    if approve { "approve" } else { "reject" }
                ),
                json!({ "reason": reason }),
            )?
        }
        None => {
            let approver = local_identity(approver, "decides")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::decide(
                    &*workspace.store,
                    workspace.project(),
                    request_id,
                    approver,
                    approve,
                    reason,
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    print_decision(global, &decision, approve);
    Ok(ExitCode::SUCCESS)
}

fn print_decision(global: &Global, decision: &Decision, approve: bool) {
    let id = &decision.request;
    let approver = &decision.approver;
    if !approve {
        if global.json {
            crate::output::json(&json!({ "request": id, "status": "rejected" }));
        } else {
            outln!(
                "rejected {id} by {approver}: {}",
                decision.reason.as_deref().unwrap_or_default()
            );
        }
        return;
    }
    if global.json {
        crate::output::json(
            &json!({ "request": id, "verdict": decision.verdict, "release": decision.release }),
        );
    } else {
        outln!("approved {id} by {approver}");
        if let Some(verdict) = &decision.verdict {
            print_verdict(verdict);
        }
        match &decision.release {
            Some(rel) => outln!(
                "released as {}: new {} runs use {}",
                rel.release.id,
                decision.to,
                short(&decision.version)
            ),
            None => outln!("not released yet: requirements above still unmet"),
        }
    }
}

pub fn rollback(
    global: &Global,
    workflow: &str,
    environment: &str,
    to: Option<&str>,
    author: Option<&str>,
) -> Result<ExitCode, CliError> {
    let rollback: Rollback = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(author)?;
            remote.post(
                &format!(
                    "/api/v1/environments/{}/workflows/{}/rollback",
                    segment(environment),
                    segment(workflow)
                ),
                json!({ "to": to }),
            )?
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::rollback(
                    &*workspace.store,
                    workspace.project(),
                    workflow,
                    environment,
                    to,
                    author.unwrap_or("cli"),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&rollback.release);
    } else {
        let target = &rollback.restored.release;
        outln!(
            "rolled back `{workflow}` in `{environment}` to {} ({}): new runs use {}; runs in flight finish on the version they started with",
            target.id,
            short(&target.version),
            short(&target.version)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /api/v1/environments/{environment}/workflows/{workflow}/releases`.
#[derive(serde::Deserialize)]
struct ReleasesPage {
    releases: Vec<ReleaseRow>,
}

pub fn releases(global: &Global, workflow: &str, environment: &str) -> Result<ExitCode, CliError> {
    let rows = match Remote::from_global(global)? {
        Some(remote) => {
            let page: ReleasesPage = remote.get(&format!(
                "/api/v1/environments/{}/workflows/{}/releases",
                segment(environment),
                segment(workflow)
            ))?;
            page.releases
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::releases(
                    &*workspace.store,
                    workflow,
                    environment,
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&rows).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("`{workflow}` was never released in `{environment}`");
        return Ok(ExitCode::SUCCESS);
    }
    let rate = |runs: usize, failed: usize| {
        if runs == 0 {
            "–".to_owned()
        } else {
            format!(
                "{failed}/{runs} ({:.0}%)",
                failed as f64 * 100.0 / runs as f64
            )
        }
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "release",
        "kind",
        "version",
        "by",
        "approved by",
        "at",
        "failed before",
        "failed after",
    ]);
    for row in &rows {
        table.add_row([
            format!(
                "{}{}",
                row.release,
                if row.current { " (current)" } else { "" }
            ),
            row.kind.as_str().to_owned(),
            row.version.chars().take(12).collect(),
            row.author.clone(),
            row.approvers.join(", "),
            workspace::time(row.at),
            rate(row.runs_before, row.failed_before),
            rate(row.runs_after, row.failed_after),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}
