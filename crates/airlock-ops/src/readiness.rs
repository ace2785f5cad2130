//! `readiness [WORKFLOW]`: the five checklist answers per workflow (DESIGN.md §1), from
//! the store and the project; `airlock_core::readiness` answers them.

use super::promotion::saturating_u32;
use super::{OpsError, environment, workflow as find_workflow};
use airlock_core::canonical;
use airlock_core::model::Manifest;
use airlock_core::project::Project;
use airlock_core::readiness::{self, Facts, Readiness, ReleaseFact, Tally, TestEvidence};
use airlock_store::{Evidence, OutcomeQuery, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The coverage categories in the order they are shown.
const CATEGORIES: [&str; 3] = ["branches", "failure_paths", "connectors"];

/// The checklist of every workflow asked about. Deserialize too: the CLI reads it back
/// from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checklist {
    /// Every workflow is ready.
    pub ready: bool,
    /// The promotion path judged, when the policy has one.
    pub path: Option<PromotionPath>,
    pub workflows: Vec<Readiness>,
}

/// A promotion rule's source and target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionPath {
    pub from: String,
    pub to: String,
}

/// The checklist for one workflow (`only`) or every workflow of the project, judged on
/// the target as it runs (its released configuration) and on the newest recorded `check`
/// of it; with `check`, the target is checked now first (and the result recorded).
pub async fn readiness(
    store: &dyn Store,
    project: &Project,
    only: Option<&str>,
    check: Option<&dyn airlock_engine::Runtime>,
    now: i64,
) -> Result<Checklist, OpsError> {
    let working = project;
    let project = &super::config::effective(store, project, "airlock", now).await?;
    let workflows = match only {
        Some(name) => vec![&find_workflow(project, name)?.workflow],
        None => project.workflows.iter().map(|w| &w.workflow).collect(),
    };
    let manifest = &project.manifest;
    let path = promotion_path(manifest);
    if let (Some(runtime), Some((_, to))) = (check, &path) {
        let report = super::check::check(runtime, manifest, &project.workflows, to).await?;
        super::check::record(store, manifest, &report, now).await?;
    }
    let target = match &path {
        Some((_, to)) => Some(target_facts(store, working, manifest, to, now).await?),
        None => None,
    };
    let report = match &path {
        Some((from, to)) => Some(super::diff::report(store, project, from, to).await?),
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
            target: None,
        };
        if let Some((from, to)) = &path {
            facts.source_version = source_version(store, project, from, name).await?;
            let evidence = store.evidence(name, None).await?;
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
                let outcomes = store
                    .run_outcomes(&OutcomeQuery {
                        environment: from.clone(),
                        workflow: name.to_owned(),
                        version: Some(version.clone()),
                        ..OutcomeQuery::default()
                    })
                    .await?;
                facts.source_runs = saturating_u32(outcomes.finished);
                facts.source_failures = saturating_u32(outcomes.failed);
            }
            facts.releases = super::promotion::releases(store, name, to)
                .await?
                .into_iter()
                .map(|r| ReleaseFact {
                    id: r.release,
                    version: r.version,
                    kind: r.kind.as_str().to_owned(),
                    author: r.author,
                    approvers: r.approvers,
                    at_ms: r.at,
                    previous: r.previous,
                    runs: r.runs_after as u64,
                    failed: r.failed_after as u64,
                })
                .collect();
            facts.target = target.clone().map(|mut t| {
                t.facts.webhook_secret_unset =
                    webhook_secret(workflow).filter(|secret| t.unset_secrets.contains(secret));
                t.facts
            });
        }
        answers.push(readiness::assess(manifest, &facts));
    }
    Ok(Checklist {
        ready: answers.iter().all(|a| a.ready),
        path: path.map(|(from, to)| PromotionPath { from, to }),
        workflows: answers,
    })
}

/// The target's own state, and which of its secrets have no value (for the webhook's).
#[derive(Clone)]
struct Target {
    facts: airlock_core::readiness::TargetFacts,
    unset_secrets: Vec<String>,
}

async fn target_facts(
    store: &dyn Store,
    working: &Project,
    effective: &Manifest,
    to: &str,
    now: i64,
) -> Result<Target, OpsError> {
    let version = airlock_core::config::of(effective, to).map(|(id, _)| id);
    let check = match &version {
        Some(version) => store
            .evidence(&super::check::recorded_subject(to), Some(version))
            .await?
            .into_iter()
            .find(|e| e.evidence.kind == "check")
            .and_then(|e| {
                let report: super::check::CheckReport =
                    serde_json::from_value(e.evidence.summary.clone()).ok()?;
                Some(airlock_core::readiness::CheckFact {
                    at_ms: e.evidence.at,
                    bindings: report.bindings.len(),
                    failed: report
                        .bindings
                        .iter()
                        .filter(|b| !b.ok)
                        .map(|b| format!("{}: {}", b.connector, b.detail))
                        .collect(),
                })
            }),
        None => None,
    };
    // Every secret a webhook may name is checked, declared or not: an undeclared signing
    // secret has no value either.
    let stored = store.secret_names().await?;
    let is_set = |name: &str| stored.iter().any(|s| s.environment == to && s.name == name);
    let declared: Vec<String> = effective
        .environment(to)
        .map(|e| e.secrets.iter().map(|s| s.value.clone()).collect())
        .unwrap_or_default();
    let mut unset_secrets: Vec<String> = declared.iter().filter(|n| !is_set(n)).cloned().collect();
    for workflow in &working.workflows {
        if let Some(secret) = webhook_secret(&workflow.workflow)
            && !is_set(&secret)
            && !unset_secrets.contains(&secret)
        {
            unset_secrets.push(secret);
        }
    }
    let frozen = effective
        .promotion
        .iter()
        .filter(|r| r.to.value == to)
        .find_map(|r| airlock_core::policy::frozen(&r.freeze, now))
        .map(|w| {
            format!(
                "{} to {} ({})",
                airlock_core::policy::weekly(w.from),
                airlock_core::policy::weekly(w.to),
                w.timezone
            )
        });
    let protected = effective.environment(to).is_some_and(|e| e.protected);
    let config_changes = if protected {
        super::config::status(store, &working.manifest, to)
            .await?
            .diff
            .iter()
            .filter(|l| l.sign != ' ')
            .count()
    } else {
        0
    };
    Ok(Target {
        facts: airlock_core::readiness::TargetFacts {
            environment: to.to_owned(),
            check,
            missing_secrets: declared.into_iter().filter(|n| !is_set(n)).collect(),
            webhook_secret_unset: None,
            frozen,
            config_changes,
        },
        unset_secrets,
    })
}

/// The signing secret a workflow's webhook names, if it has one.
fn webhook_secret(workflow: &airlock_core::model::Workflow) -> Option<String> {
    match &workflow.trigger {
        Some(airlock_core::model::Trigger::Webhook {
            signature: Some(signature),
            ..
        }) => Some(signature.secret.clone()),
        _ => None,
    }
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
    store: &dyn Store,
    project: &Project,
    environment_name: &str,
    workflow: &str,
) -> Result<Option<String>, OpsError> {
    if let Some(deployed) = store.deployment(environment_name, workflow).await? {
        return Ok(Some(deployed.version));
    }
    if environment(&project.manifest, environment_name)?.protected {
        return Ok(None);
    }
    Ok(project
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
