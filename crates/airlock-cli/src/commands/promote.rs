//! The path to a protected environment: `promote`, `approve`, `reject`, `rollback`,
//! `releases`. Until the server brings tokens, identity comes from `--as`.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace, store_error};
use airlock_core::policy::{self, Facts, Verdict};
use airlock_store::{
    Approval, NewPromotionRequest, NewRelease, PromotionRequest, Release, ReleaseKind,
    RequestStatus, RunFilter, RunStatus,
};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Facts about `version` of `workflow` on its way from `from` to `to`.
async fn facts(
    workspace: &Workspace,
    workflow: &str,
    version: &str,
    from: &str,
    to: &str,
    approvals: Vec<String>,
) -> Result<Facts, CliError> {
    let evidence = workspace
        .store
        .evidence(workflow, Some(version))
        .await
        .map_err(store_error)?;
    let tests_passed = evidence
        .iter()
        .find(|e| e.evidence.kind == "scenarios")
        .map(|e| e.evidence.passed);
    let runs = workspace
        .store
        .runs(&RunFilter {
            environment: Some(from.to_owned()),
            workflow: Some(workflow.to_owned()),
            ..RunFilter::default()
        })
        .await
        .map_err(store_error)?;
    let finished: Vec<_> = runs
        .iter()
        .filter(|r| r.version == version && r.status.is_final())
        .collect();
    let failures = finished
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .count();
    Ok(Facts {
        tests_passed,
        parity_clean: parity_clean(workspace, workflow, from, to).await?,
        source_runs: finished.len() as u32,
        source_failures: failures as u32,
        approvals,
        now_ms: workspace::now(),
    })
}

fn verdict_of(
    workspace: &Workspace,
    workflow: &str,
    from: &str,
    to: &str,
    facts: &Facts,
) -> Result<Verdict, CliError> {
    let manifest = &workspace.project().manifest;
    let rule = policy::rule(manifest, from, to).ok_or_else(|| {
        CliError::usage(
            format!("the promotion policy has no rule `{from} -> {to}`"),
            Some(format!(
                "add `promotion: {{ {from} -> {to}: {{ require: … }} }}` to airlock.yaml"
            )),
        )
    })?;
    let risk = policy::workflow_risk(manifest, &workspace.workflow(workflow)?.workflow);
    Ok(policy::verdict(rule, risk, facts))
}

fn print_verdict(verdict: &Verdict) {
    println!(
        "risk class: {}",
        serde_json::to_value(verdict.risk)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    for check in &verdict.checks {
        println!(
            "  {} {:<13} {} — {}",
            if check.met { "✓" } else { "✗" },
            check.requirement,
            check.required,
            check.actual
        );
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", &airlock_engine::new_run_id()[4..])
}

pub fn promote(
    global: &Global,
    workflow: &str,
    from: &str,
    to: &str,
    author: &str,
) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    workspace.workflow(workflow)?;
    workspace.environment(from)?;
    workspace.environment(to)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        workspace.audit_policy_change(author).await?;
        let version = workspace
            .store
            .deployment(from, workflow)
            .await
            .map_err(store_error)?
            .map(|d| d.version)
            .ok_or_else(|| {
                CliError::usage(
                    format!("`{from}` runs no version of `{workflow}`"),
                    Some(format!("deploy it first: `airlock deploy --env {from}`")),
                )
            })?;
        let facts = facts(&workspace, workflow, &version, from, to, Vec::new()).await?;
        let verdict = verdict_of(&workspace, workflow, from, to, &facts)?;
        if !verdict.ready_for_approval() {
            workspace
                .audit(author, "promotion.refused", Some(to), workflow, json!({ "version": version, "verdict": verdict }))
                .await?;
            if global.json {
                crate::output::json(&json!({ "workflow": workflow, "version": version, "opened": false, "verdict": verdict }));
            } else {
                println!("promotion of {workflow}@{} from {from} to {to} refused:", &version[..12]);
                print_verdict(&verdict);
            }
            return Ok(ExitCode::from(EXIT_CHECK_FAILED));
        }
        let request = workspace
            .store
            .open_request(&NewPromotionRequest {
                id: new_id("req"),
                workflow: workflow.to_owned(),
                version: version.clone(),
                from_environment: from.to_owned(),
                to_environment: to.to_owned(),
                author: author.to_owned(),
                created_at: workspace::now(),
            })
            .await
            .map_err(store_error)?;
        workspace
            .audit(author, "promotion.request", Some(to), workflow, json!({ "request": request.request.id, "version": version, "verdict": verdict }))
            .await?;
        let release = if verdict.passed() {
            Some(release(&workspace, &request, Vec::new(), &verdict).await?)
        } else {
            None
        };
        if global.json {
            crate::output::json(&json!({ "request": request, "verdict": verdict, "release": release }));
        } else {
            println!("promotion request {} · {workflow}@{} · {from} → {to} · by {author}", request.request.id, &version[..12]);
            print_verdict(&verdict);
            match &release {
                Some(r) => println!("released as {}: new {to} runs use {}", r.release.id, &version[..12]),
                None => println!("waiting for approval: `airlock approve {} --as NAME` (an approver of {to}, not {author})", request.request.id),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Makes the request a release (the verdict passed).
async fn release(
    workspace: &Workspace,
    request: &PromotionRequest,
    approvers: Vec<String>,
    verdict: &Verdict,
) -> Result<Release, CliError> {
    let r = &request.request;
    let current = workspace
        .store
        .releases(&r.to_environment, &r.workflow)
        .await
        .map_err(store_error)?;
    let evidence = workspace
        .store
        .evidence(&r.workflow, Some(&r.version))
        .await
        .map_err(store_error)?;
    let release = workspace
        .store
        .release(&NewRelease {
            id: new_id("rel"),
            environment: r.to_environment.clone(),
            workflow: r.workflow.clone(),
            version: r.version.clone(),
            kind: ReleaseKind::Promotion,
            request: Some(r.id.clone()),
            author: r.author.clone(),
            approvers,
            evidence: json!({ "verdict": verdict, "evidence": evidence.first() }),
            expected_current: current.first().map(|c| c.release.id.clone()),
            at: workspace::now(),
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(m) => CliError::usage(
                format!("release refused: {m}"),
                Some("look at `airlock releases` and try again".into()),
            ),
            other => store_error(other),
        })?;
    workspace
        .audit(&r.author, "release", Some(&r.to_environment), &r.workflow, json!({ "release": release.release.id, "version": r.version, "previous": release.previous, "request": r.id }))
        .await?;
    Ok(release)
}

pub fn decide(
    global: &Global,
    request_id: &str,
    approver: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let rt = workspace::runtime()?;
    rt.block_on(async {
        let request = workspace
            .store
            .request(request_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| CliError::usage(format!("no promotion request `{request_id}`"), None))?;
        let r = &request.request;
        let target = workspace.environment(&r.to_environment)?;
        let refuse = |why: String| async {
            workspace
                .audit(
                    approver,
                    if approve {
                        "approve.refused"
                    } else {
                        "reject.refused"
                    },
                    Some(&r.to_environment),
                    &r.workflow,
                    json!({ "request": r.id, "reason": why }),
                )
                .await?;
            Err::<ExitCode, CliError>(CliError::usage(why, None))
        };
        if !target.approvers.iter().any(|a| a.value == approver) {
            return refuse(format!(
                "`{approver}` is not an approver of `{}`",
                r.to_environment
            ))
            .await;
        }
        if approver == r.author {
            return refuse(format!(
                "`{approver}` opened this request and cannot approve their own promotion"
            ))
            .await;
        }
        if request.status != RequestStatus::Open {
            return refuse(format!(
                "request {request_id} is {}",
                request.status.as_str()
            ))
            .await;
        }
        workspace
            .store
            .decide_request(&Approval {
                request: r.id.clone(),
                approver: approver.to_owned(),
                approved: approve,
                reason: reason.map(str::to_owned),
                at: workspace::now(),
            })
            .await
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        workspace
            .audit(
                approver,
                if approve { "approve" } else { "reject" },
                Some(&r.to_environment),
                &r.workflow,
                json!({ "request": r.id, "reason": reason }),
            )
            .await?;
        if !approve {
            if global.json {
                crate::output::json(&json!({ "request": r.id, "status": "rejected" }));
            } else {
                println!(
                    "rejected {} by {approver}: {}",
                    r.id,
                    reason.unwrap_or_default()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        let approvers: Vec<String> = workspace
            .store
            .approvals(&r.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|a| a.approved)
            .map(|a| a.approver)
            .collect();
        let facts = facts(
            &workspace,
            &r.workflow,
            &r.version,
            &r.from_environment,
            &r.to_environment,
            approvers.clone(),
        )
        .await?;
        let verdict = verdict_of(
            &workspace,
            &r.workflow,
            &r.from_environment,
            &r.to_environment,
            &facts,
        )?;
        let released = if verdict.passed() {
            Some(release(&workspace, &request, approvers, &verdict).await?)
        } else {
            None
        };
        if global.json {
            crate::output::json(
                &json!({ "request": r.id, "verdict": verdict, "release": released }),
            );
        } else {
            println!("approved {} by {approver}", r.id);
            print_verdict(&verdict);
            match &released {
                Some(rel) => println!(
                    "released as {}: new {} runs use {}",
                    rel.release.id,
                    r.to_environment,
                    &r.version[..12]
                ),
                None => println!("not released yet: requirements above still unmet"),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn rollback(
    global: &Global,
    workflow: &str,
    environment: &str,
    to: Option<&str>,
    author: &str,
) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    workspace.environment(environment)?;
    let rt = workspace::runtime()?;
    rt.block_on(async {
        let history = workspace.store.releases(environment, workflow).await.map_err(store_error)?;
        let Some(current) = history.first() else {
            return Err(CliError::usage(format!("`{workflow}` was never released in `{environment}`: nothing to roll back"), None));
        };
        let target = match to {
            Some(id) => history.iter().find(|r| r.release.id == id).ok_or_else(|| {
                CliError::usage(
                    format!("release `{id}` was never made for `{workflow}` in `{environment}`"),
                    Some(format!("list them with `airlock releases {workflow} --env {environment}`")),
                )
            })?,
            None => {
                let previous = current.previous.as_deref().ok_or_else(|| {
                    CliError::usage(format!("release {} is the first of `{workflow}` in `{environment}`: there is no previous one", current.release.id), None)
                })?;
                history.iter().find(|r| r.release.id == previous).ok_or_else(|| CliError::usage(format!("release {previous} is missing"), None))?
            }
        };
        let release = workspace
            .store
            .release(&NewRelease {
                id: new_id("rel"),
                environment: environment.to_owned(),
                workflow: workflow.to_owned(),
                version: target.release.version.clone(),
                kind: ReleaseKind::Rollback,
                request: None,
                author: author.to_owned(),
                approvers: Vec::new(),
                evidence: json!({ "rollback_to": target.release.id, "from": current.release.id }),
                expected_current: Some(current.release.id.clone()),
                at: workspace::now(),
            })
            .await
            .map_err(|e| CliError::usage(format!("rollback refused: {e}"), None))?;
        workspace
            .audit(author, "rollback", Some(environment), workflow, json!({ "release": release.release.id, "to": target.release.id, "version": target.release.version }))
            .await?;
        if global.json {
            crate::output::json(&release);
        } else {
            println!(
                "rolled back `{workflow}` in `{environment}` to {} ({}): new runs use {}; runs in flight finish on the version they started with",
                target.release.id,
                &target.release.version[..12],
                &target.release.version[..12]
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn releases(global: &Global, workflow: &str, environment: &str) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let rt = workspace::runtime()?;
    let (history, runs) = rt.block_on(async {
        let history = workspace
            .store
            .releases(environment, workflow)
            .await
            .map_err(store_error)?;
        let runs = workspace
            .store
            .runs(&RunFilter {
                environment: Some(environment.to_owned()),
                workflow: Some(workflow.to_owned()),
                ..RunFilter::default()
            })
            .await
            .map_err(store_error)?;
        Ok::<_, CliError>((history, runs))
    })?;
    // Runs attributed to the release that was current when they were accepted.
    let stats = |from: i64, until: Option<i64>| {
        let window: Vec<_> = runs
            .iter()
            .filter(|r| {
                r.created_at >= from
                    && until.is_none_or(|u| r.created_at < u)
                    && r.status.is_final()
            })
            .collect();
        let failed = window
            .iter()
            .filter(|r| r.status != RunStatus::Succeeded)
            .count();
        (window.len(), failed)
    };
    let mut rows: Vec<Value> = Vec::new();
    for (i, release) in history.iter().enumerate() {
        let until = if i == 0 {
            None
        } else {
            Some(history[i - 1].release.at)
        };
        let (after_runs, after_failed) = stats(release.release.at, until);
        let (before_runs, before_failed) = history.get(i + 1).map_or((0, 0), |prev| {
            stats(prev.release.at, Some(release.release.at))
        });
        rows.push(json!({
            "release": release.release.id,
            "kind": release.release.kind.as_str(),
            "version": release.release.version,
            "author": release.release.author,
            "approvers": release.release.approvers,
            "at": release.release.at,
            "previous": release.previous,
            "runs_before": before_runs, "failed_before": before_failed,
            "runs_after": after_runs, "failed_after": after_failed,
            "current": i == 0,
        }));
    }
    if global.json {
        crate::output::json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("`{workflow}` was never released in `{environment}`");
        return Ok(ExitCode::SUCCESS);
    }
    let rate = |runs: u64, failed: u64| {
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
        let n = |k: &str| row[k].as_u64().unwrap_or(0);
        table.add_row([
            format!(
                "{}{}",
                row["release"].as_str().unwrap_or_default(),
                if row["current"] == true {
                    " (current)"
                } else {
                    ""
                }
            ),
            row["kind"].as_str().unwrap_or_default().to_owned(),
            row["version"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect(),
            row["author"].as_str().unwrap_or_default().to_owned(),
            row["approvers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            workspace::time(row["at"].as_i64().unwrap_or(0)),
            rate(n("runs_before"), n("failed_before")),
            rate(n("runs_after"), n("failed_after")),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// Whether the parity report between the environments shows no drift that concerns this
/// workflow (the same report `airlock diff` prints).
async fn parity_clean(
    workspace: &Workspace,
    workflow: &str,
    from: &str,
    to: &str,
) -> Result<Option<bool>, CliError> {
    let report = super::diff::report(workspace, from, to).await?;
    Ok(Some(
        report.clean_for(&workspace.workflow(workflow)?.workflow),
    ))
}
