//! `airlock readiness [WORKFLOW]`: the five checklist answers per workflow (DESIGN.md §1),
//! from the store and the project; `airlock_core::readiness` answers them.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace, store_error};
use airlock_core::canonical;
use airlock_core::model::Manifest;
use airlock_core::readiness::{self, Facts, Readiness, ReleaseFact, Tally, TestEvidence};
use airlock_store::{Evidence, RunFilter, RunStatus};
use serde_json::{Value, json};
use std::process::ExitCode;

/// The coverage categories in the order they are shown.
const CATEGORIES: [&str; 3] = ["branches", "failure_paths", "connectors"];

pub fn run(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let workflows = match only {
        Some(name) => vec![&workspace.workflow(name)?.workflow],
        None => workspace
            .project()
            .workflows
            .iter()
            .map(|w| &w.workflow)
            .collect(),
    };
    let manifest = &workspace.project().manifest;
    let path = promotion_path(manifest);
    let now = workspace::now();
    let answers = workspace::runtime()?.block_on(async {
        let report = match &path {
            Some((from, to)) => Some(super::diff::report(&workspace, from, to).await?),
            None => None,
        };
        let mut answers = Vec::new();
        for workflow in workflows {
            let name = workflow.name.value.as_str();
            let mut facts = Facts {
                workflow,
                path: path.clone(),
                source_version: None,
                tests: None,
                newest_tests: None,
                source_runs: 0,
                source_failures: 0,
                parity: report.as_ref(),
                releases: Vec::new(),
                now_ms: now,
            };
            if let Some((from, to)) = &path {
                facts.source_version = source_version(&workspace, from, name).await?;
                let evidence = workspace
                    .store
                    .evidence(name, None)
                    .await
                    .map_err(store_error)?;
                let scenarios: Vec<&Evidence> = evidence
                    .iter()
                    .filter(|e| e.evidence.kind == "scenarios")
                    .collect();
                facts.newest_tests = scenarios.first().map(|e| test_evidence(e));
                facts.tests = facts
                    .source_version
                    .as_ref()
                    .and_then(|v| scenarios.iter().find(|e| &e.evidence.version == v))
                    .map(|e| test_evidence(e));
                if let Some(version) = &facts.source_version {
                    let runs = workspace
                        .store
                        .runs(&RunFilter {
                            environment: Some(from.clone()),
                            workflow: Some(name.to_owned()),
                            ..RunFilter::default()
                        })
                        .await
                        .map_err(store_error)?;
                    let finished: Vec<_> = runs
                        .iter()
                        .filter(|r| &r.version == version && r.status.is_final())
                        .collect();
                    facts.source_runs = finished.len() as u32;
                    facts.source_failures = finished
                        .iter()
                        .filter(|r| r.status != RunStatus::Succeeded)
                        .count() as u32;
                }
                facts.releases = workspace
                    .store
                    .releases(to, name)
                    .await
                    .map_err(store_error)?
                    .into_iter()
                    .map(|r| ReleaseFact {
                        id: r.release.id,
                        version: r.release.version,
                        kind: r.release.kind.as_str().to_owned(),
                        author: r.release.author,
                        approvers: r.release.approvers,
                        at_ms: r.release.at,
                        previous: r.previous,
                    })
                    .collect();
            }
            answers.push(readiness::assess(manifest, &facts));
        }
        Ok::<_, CliError>(answers)
    })?;
    let ready = answers.iter().all(|a| a.ready);
    if global.json {
        crate::output::json(&json!({
            "ready": ready,
            "path": path.as_ref().map(|(from, to)| json!({ "from": from, "to": to })),
            "workflows": answers,
        }));
    } else {
        print(&answers, path.as_ref());
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// The path readiness is judged on: the promotion rule into a protected environment (the
/// first one, when there are several), or else the first rule.
fn promotion_path(manifest: &Manifest) -> Option<(String, String)> {
    let into_protected = manifest
        .promotion
        .iter()
        .find(|r| manifest.environment(&r.to).is_some_and(|e| e.protected));
    into_protected
        .or(manifest.promotion.first())
        .map(|r| (r.from.value.clone(), r.to.value.clone()))
}

/// The version `environment` runs: its deployment, or the working copy's when it is
/// unprotected and has none.
async fn source_version(
    workspace: &Workspace,
    environment: &str,
    workflow: &str,
) -> Result<Option<String>, CliError> {
    if let Some(deployed) = workspace
        .store
        .deployment(environment, workflow)
        .await
        .map_err(store_error)?
    {
        return Ok(Some(deployed.version));
    }
    if workspace.environment(environment)?.protected {
        return Ok(None);
    }
    Ok(workspace
        .project()
        .workflow(workflow)
        .map(|w| canonical::version_id(&w.workflow).0))
}

/// Scenario evidence as `airlock test` records it (`scenarios`, `failed_scenarios`,
/// `coverage.{category}.{covered,total}`, `uncovered[].item`); missing parts stay empty.
fn test_evidence(evidence: &Evidence) -> TestEvidence {
    let e = &evidence.evidence;
    let summary = &e.summary;
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        item.as_str()
                            .or_else(|| item.get("item").and_then(Value::as_str))
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut coverage: Vec<Tally> = summary
        .get("coverage")
        .and_then(Value::as_object)
        .map(|categories| {
            categories
                .iter()
                .filter_map(|(category, tally)| {
                    Some(Tally {
                        category: category.clone(),
                        covered: tally.get("covered")?.as_u64()?,
                        total: tally.get("total")?.as_u64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    coverage.sort_by_key(|t| {
        CATEGORIES
            .iter()
            .position(|c| *c == t.category)
            .unwrap_or(CATEGORIES.len())
    });
    TestEvidence {
        version: e.version.clone(),
        passed: e.passed,
        at_ms: e.at,
        scenarios: summary.get("scenarios").and_then(Value::as_u64),
        failed: strings(&summary["failed_scenarios"]),
        coverage,
        uncovered: strings(&summary["uncovered"]),
    }
}

fn print(answers: &[Readiness], path: Option<&(String, String)>) {
    if let Some((from, to)) = path {
        println!("readiness of {from} → {to}\n");
    }
    for readiness in answers {
        let risk = serde_json::to_value(readiness.risk)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{} ({risk} risk): {}",
            readiness.workflow,
            if readiness.ready {
                "READY"
            } else {
                "NOT READY"
            }
        );
        for (i, answer) in readiness.answers.iter().enumerate() {
            println!(
                "  {} {}. {}",
                if answer.clear { "✓" } else { "✗" },
                i + 1,
                answer.asks
            );
            println!(
                "       {}{}",
                if answer.clear { "" } else { "unclear: " },
                answer.answer
            );
        }
        println!();
    }
    let not_ready: Vec<&str> = answers
        .iter()
        .filter(|r| !r.ready)
        .map(|r| r.workflow.as_str())
        .collect();
    if not_ready.is_empty() {
        println!("every workflow is ready");
    } else {
        println!("not ready: {}", not_ready.join(", "));
    }
}
