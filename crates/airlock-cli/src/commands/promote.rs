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
use airlock_ops::config::ConfigPromotion;
use airlock_ops::promotion::{Decision, Enabling, Promotion, ReleaseRow, RequestRow, Rollback};
use airlock_ops::{self as ops, OpsError, short};
use airlock_store::{PromotionRequest, Release};
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
                    ops::Actor::local(author),
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
    if promotion.nothing_to_do {
        if global.json {
            crate::output::json(
                &json!({ "workflow": workflow, "version": promotion.version, "nothing_to_do": true }),
            );
        } else {
            outln!("nothing to do: {to} runs {workflow}@{version} already");
        }
        return ExitCode::SUCCESS;
    }
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
        if !promotion.opened {
            outln!(
                "a request for {workflow}@{version} into {to} is open already (by {}):",
                request.request.author
            );
        }
        outln!(
            "promotion request {} · {workflow}@{version} · {from} → {to} · by {}",
            request.request.id,
            request.request.author
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
                    ops::Actor::local(approver),
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
    if let (Some(earlier), false) = (decision.changed_from, global.json) {
        outln!(
            "{approver} changes their decision on {id} (was: {})",
            match earlier {
                ops::promotion::DecisionStatus::Approved => "approved",
                ops::promotion::DecisionStatus::Rejected => "rejected",
            }
        );
    }
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
                    ops::Actor::local(author.unwrap_or("cli")),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&rollback.release);
        return Ok(ExitCode::SUCCESS);
    }
    let shown = shown_subject(workflow);
    match &rollback.restored {
        Some(restored) => {
            let target = &restored.release;
            outln!(
                "rolled back {shown} in `{environment}` to {} ({}): new runs use {}; runs in flight finish on the version they started with",
                target.id,
                short(&target.version),
                short(&target.version)
            );
        }
        None => outln!(
            "rolled back the first release of {shown} in `{environment}`: it is disabled there ({}); its triggers stop, runs in flight finish",
            rollback.release.release.id
        ),
    }
    if let Some(warning) = &rollback.warning {
        outln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The subject of `rollback` and `releases`: a workflow, or the configuration.
pub fn subject(workflow: Option<&str>, config: bool) -> String {
    if config {
        airlock_core::config::CONFIG_SUBJECT.to_owned()
    } else {
        workflow.unwrap_or_default().to_owned()
    }
}

fn shown_subject(subject: &str) -> String {
    if subject == airlock_core::config::CONFIG_SUBJECT {
        "the configuration".to_owned()
    } else {
        format!("`{subject}`")
    }
}

/// `promote --config --to ENV`.
pub fn promote_config(
    global: &Global,
    environment: &str,
    author: Option<&str>,
) -> Result<ExitCode, CliError> {
    let promotion: ConfigPromotion = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(author)?;
            let answer = remote.post_answer(
                &format!(
                    "/api/v1/environments/{}/config/promote",
                    segment(environment)
                ),
                json!({}),
                |status, answer| {
                    status == reqwest::StatusCode::CONFLICT && answer.get("verdict").is_some()
                },
            )?;
            remote.decode(answer)?
        }
        None => {
            let author = local_identity(author, "asks")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::config::promote(
                    &*workspace.store,
                    workspace.project(),
                    environment,
                    ops::Actor::local(author),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&promotion).unwrap_or_default());
        return Ok(if promotion.nothing_to_do || promotion.request.is_some() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_CHECK_FAILED)
        });
    }
    let version = short(&promotion.version);
    if promotion.nothing_to_do {
        outln!("nothing to do: {environment} runs configuration {version} already");
        return Ok(ExitCode::SUCCESS);
    }
    print_config_diff(&promotion.diff);
    let code = match &promotion.request {
        Some(request) => {
            if !promotion.opened {
                outln!("a request for this configuration is open already:");
            }
            outln!(
                "configuration request {} · {environment} · {} → {version} · by {}",
                request.request.id,
                promotion.released.as_deref().map(short).unwrap_or("none"),
                request.request.author
            );
            ExitCode::SUCCESS
        }
        None => {
            outln!("configuration promotion into {environment} refused:");
            ExitCode::from(EXIT_CHECK_FAILED)
        }
    };
    if let Some(verdict) = &promotion.verdict {
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
    if let Some(request) = &promotion.request {
        outln!(
            "until it is released, {environment} keeps running configuration {}: `airlock approve {}` by an approver of {environment}, not {}",
            promotion.released.as_deref().map(short).unwrap_or("none"),
            request.request.id,
            request.request.author
        );
    }
    Ok(code)
}

/// A configuration diff, `-` what the environment runs, `+` the working copy.
pub(crate) fn print_config_diff(diff: &[airlock_core::config::DiffLine]) {
    for line in diff {
        outln!("{}{}", line.sign, line.text);
    }
}

/// `GET /api/v1/promotions`.
#[derive(serde::Deserialize)]
struct PromotionsPage {
    requests: Vec<RequestRow>,
}

/// `promotions [--status S] [--env E]`.
pub fn promotions(
    global: &Global,
    status: Option<&str>,
    environment: Option<&str>,
) -> Result<ExitCode, CliError> {
    let parsed = match status {
        None => None,
        Some(text) => Some(airlock_store::RequestStatus::parse(text).ok_or_else(|| {
            CliError::usage(
                format!("unknown status `{text}`"),
                Some("open, released, rejected, withdrawn or expired".into()),
            )
        })?),
    };
    let rows = match Remote::from_global(global)? {
        Some(remote) => {
            let environment = remote.listed_environment(environment, global.json, "requests")?;
            let mut query = format!("/api/v1/promotions?env={}", segment(&environment));
            if let Some(status) = status {
                query.push_str(&format!("&status={}", segment(status)));
            }
            let page: PromotionsPage = remote.get(&query)?;
            page.requests
        }
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::list(
                    &*workspace.store,
                    workspace.project(),
                    parsed,
                    environment,
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&rows).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!(
            "no promotion requests{}",
            status.map(|s| format!(" {s}")).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "request",
        "what",
        "into",
        "by",
        "status",
        "approvals",
        "waits on",
    ]);
    for row in &rows {
        let r = &row.request.request;
        let what = if r.workflow == airlock_core::config::CONFIG_SUBJECT {
            format!("configuration {}", short(&r.version))
        } else {
            format!("{}@{}", r.workflow, short(&r.version))
        };
        let approvals = row
            .approvals
            .iter()
            .map(|a| format!("{} {}", if a.approved { "✓" } else { "✗" }, a.approver))
            .collect::<Vec<_>>()
            .join(", ");
        let waits = match &row.verdict {
            Some(verdict) => verdict
                .checks
                .iter()
                .filter(|c| !c.met)
                .map(|c| format!("{}: {}", c.requirement, c.actual))
                .collect::<Vec<_>>()
                .join("; "),
            None => String::new(),
        };
        table.add_row([
            r.id.clone(),
            what,
            r.to_environment.clone(),
            r.author.clone(),
            match row.expires_at {
                Some(at) => format!("open until {}", workspace::time(at)),
                None => row.request.status.as_str().to_owned(),
            },
            approvals,
            waits,
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// `promotions --inbox [--as NAME]`: the open requests one approver may decide, with each
/// verdict requirement by requirement. Here, `--as` names the approver; against a server,
/// the token does (`GET /api/v1/inbox`, the one use case, `ops::promotion::inbox`).
pub fn inbox(
    global: &Global,
    environment: Option<&str>,
    status: Option<&str>,
    approver: Option<&str>,
) -> Result<ExitCode, CliError> {
    if status.is_some_and(|s| s != "open") {
        return Err(CliError::usage(
            "the inbox lists open requests only",
            Some("leave out --status, or leave out --inbox to list requests of any status".into()),
        ));
    }
    let inbox: ops::promotion::Inbox = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(approver)?;
            if let Some(name) = environment
                && name != remote.environment()?
            {
                return Err(CliError::usage(
                    format!("a token acts in one environment, and this one's is not `{name}`"),
                    Some(format!(
                        "put a token of `{name}` in {}",
                        crate::remote::TOKEN_VARIABLE
                    )),
                ));
            }
            remote.get("/api/v1/inbox")?
        }
        None => {
            let approver = local_identity(approver, "reads the inbox")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::inbox(
                    &*workspace.store,
                    workspace.project(),
                    approver,
                    environment,
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&inbox).unwrap_or_default());
    } else {
        outln!("{}", inbox_report(&inbox, global.server.is_some()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The inbox as a person reads it: each request, what it moves where, who asked, until
/// when, and every requirement of its verdict, met or not, then the commands to decide.
pub fn inbox_report(inbox: &ops::promotion::Inbox, remote: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let who = &inbox.approver;
    if inbox.environments.is_empty() {
        let _ = write!(
            out,
            "`{who}` approves in no environment: nothing waits for them"
        );
        return out;
    }
    let n = inbox.requests.len();
    let _ = writeln!(
        out,
        "inbox of `{who}` (approver in {}): {}",
        inbox.environments.join(", "),
        match n {
            0 => "nothing waits".to_owned(),
            1 => "1 request waits".to_owned(),
            n => format!("{n} requests wait"),
        }
    );
    let as_flag = if remote {
        String::new()
    } else {
        format!(" --as {who}")
    };
    for row in &inbox.requests {
        let r = &row.request.request;
        let what = if r.workflow == airlock_core::config::CONFIG_SUBJECT {
            format!("configuration {}", short(&r.version))
        } else {
            format!("{} {}", r.workflow, short(&r.version))
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{}  {what}  {} → {}  asked by {}{}",
            r.id,
            r.from_environment,
            r.to_environment,
            r.author,
            row.expires_at
                .map(|at| format!("  open until {}", workspace::time(at)))
                .unwrap_or_default()
        );
        for approval in &row.approvals {
            let _ = writeln!(
                out,
                "  {} {} by {}",
                if approval.approved {
                    "approved"
                } else {
                    "rejected"
                },
                short(&r.version),
                approval.approver
            );
        }
        match &row.verdict {
            Some(verdict) => {
                for check in &verdict.checks {
                    let _ = writeln!(
                        out,
                        "  {} {:<13} {} — {}",
                        if check.met { "✓" } else { "✗" },
                        check.requirement,
                        check.required,
                        check.actual
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  (no verdict: the workflow is no longer in the project)"
                );
            }
        }
        let _ = writeln!(
            out,
            "  decide: airlock approve {id}{as_flag}  ·  airlock reject {id}{as_flag} --reason WHY",
            id = r.id
        );
    }
    out.trim_end().to_owned()
}

/// `withdraw REQUEST --as AUTHOR`.
pub fn withdraw(
    global: &Global,
    request_id: &str,
    author: Option<&str>,
) -> Result<ExitCode, CliError> {
    let request: PromotionRequest = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(author)?;
            remote.post(
                &format!("/api/v1/promotions/{}/withdraw", segment(request_id)),
                json!({}),
            )?
        }
        None => {
            let author = local_identity(author, "withdraws")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::withdraw(
                    &*workspace.store,
                    workspace.project(),
                    request_id,
                    ops::Actor::local(author),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&request).unwrap_or_default());
    } else {
        outln!(
            "withdrew {} ({} into {}) by {}",
            request.request.id,
            shown_subject(&request.request.workflow),
            request.request.to_environment,
            request.request.author
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `disable W --env E`.
pub fn disable(
    global: &Global,
    workflow: &str,
    environment: &str,
    actor: Option<&str>,
) -> Result<ExitCode, CliError> {
    let release: Release = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(actor)?;
            remote.post(
                &format!(
                    "/api/v1/environments/{}/workflows/{}/disable",
                    segment(environment),
                    segment(workflow)
                ),
                json!({}),
            )?
        }
        None => {
            let actor = local_identity(actor, "disables it")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::disable(
                    &*workspace.store,
                    workspace.project(),
                    workflow,
                    environment,
                    ops::Actor::local(actor),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&release).unwrap_or_default());
    } else {
        outln!(
            "disabled `{workflow}` in `{environment}` ({}): its triggers stop, runs in flight finish; `airlock enable {workflow} --env {environment}` brings {} back",
            release.release.id,
            short(&release.release.version)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `enable W --env E`.
pub fn enable(
    global: &Global,
    workflow: &str,
    environment: &str,
    actor: Option<&str>,
) -> Result<ExitCode, CliError> {
    let enabling: Enabling = match Remote::from_global(global)? {
        Some(remote) => {
            remote.confirm_as(actor)?;
            remote.post(
                &format!(
                    "/api/v1/environments/{}/workflows/{}/enable",
                    segment(environment),
                    segment(workflow)
                ),
                json!({}),
            )?
        }
        None => {
            let actor = local_identity(actor, "asks")?;
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::promotion::enable(
                    &*workspace.store,
                    workspace.project(),
                    workflow,
                    environment,
                    ops::Actor::local(actor),
                    workspace::now(),
                ))
                .map_err(ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&enabling).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let version = short(&enabling.version);
    if let Some(release) = &enabling.release {
        outln!(
            "enabled `{workflow}` in `{environment}` again ({}): new runs use {version}",
            release.release.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    match &enabling.request {
        Some(request) => outln!(
            "enable request {} · {workflow}@{version} · {environment} is protected: its approvers decide",
            request.request.id
        ),
        None => outln!("enabling {workflow}@{version} in {environment} refused:"),
    }
    if let Some(verdict) = &enabling.verdict {
        print_verdict(verdict);
    }
    Ok(if enabling.request.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
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
