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

/// The checklist for one workflow (`only`) or every workflow of the project.
pub async fn readiness(
    store: &dyn Store,
    project: &Project,
    only: Option<&str>,
    now: i64,
) -> Result<Checklist, OpsError> {
    let workflows = match only {
        Some(name) => vec![&find_workflow(project, name)?.workflow],
        None => project.workflows.iter().map(|w| &w.workflow).collect(),
    };
    let manifest = &project.manifest;
    let path = promotion_path(manifest);
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
            facts.releases = store
                .releases(to, name)
                .await?
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
    Ok(Checklist {
        ready: answers.iter().all(|a| a.ready),
        path: path.map(|(from, to)| PromotionPath { from, to }),
        workflows: answers,
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
