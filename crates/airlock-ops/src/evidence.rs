//! Test evidence: what `test` records for each tested version, bound to its hash, and
//! what the promotion gate and the readiness checklist read back.

use super::{OpsError, store_working_version, workflow as find_workflow};
use airlock_core::policy::Covered;
use airlock_core::project::Project;
use airlock_core::suite::{Category, WorkflowReport};
use airlock_store::{Evidence, NewEvidence, Store};
use serde::{Deserialize, Serialize};

/// The evidence kind a scenario suite's result is recorded under.
pub const EVIDENCE_KIND: &str = "scenarios";

/// Stores each tested version and its evidence; returns the evidence ids in report order.
/// A workflow whose working copy changed while it was tested is refused (409): its
/// evidence would name a version that was not the one tested.
pub async fn record(
    store: &dyn Store,
    project: &Project,
    reports: &[WorkflowReport],
    now: i64,
) -> Result<Vec<i64>, OpsError> {
    let mut ids = Vec::with_capacity(reports.len());
    for report in reports {
        let workflow = find_workflow(project, &report.workflow)?;
        let version = store_working_version(store, project, workflow, now).await?;
        if version != report.version {
            return Err(OpsError::conflict(
                format!(
                    "`{}` changed while it was tested; run `airlock test` again",
                    report.workflow
                ),
                None,
            ));
        }
        let evidence = store
            .add_evidence(&NewEvidence {
                workflow: report.workflow.clone(),
                version: report.version.clone(),
                kind: EVIDENCE_KIND.into(),
                passed: report.passed,
                summary: report.summary(),
                at: now,
            })
            .await?;
        ids.push(evidence.id);
    }
    Ok(ids)
}

/// A workflow's recorded evidence, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceList {
    pub workflow: String,
    pub evidence: Vec<Evidence>,
}

/// Every piece of evidence recorded for `workflow` (of `version` only, when given).
pub async fn list(
    store: &dyn Store,
    workflow: &str,
    version: Option<&str>,
) -> Result<EvidenceList, OpsError> {
    Ok(EvidenceList {
        workflow: workflow.to_owned(),
        evidence: store.evidence(workflow, version).await?,
    })
}

/// The newest scenario-suite evidence among `evidence` (newest first, as the store lists
/// it): what the gate judges a version's tests by.
pub fn newest_scenarios(evidence: &[Evidence]) -> Option<&Evidence> {
    evidence.iter().find(|e| e.evidence.kind == EVIDENCE_KIND)
}

/// What a suite's scenarios covered of one category, from the counts its evidence keeps
/// (`coverage.{category}.{covered,total}`); `None` for evidence without them (recorded
/// before coverage was), which a coverage requirement then does not take as met.
pub fn covered(evidence: &Evidence, category: Category) -> Option<Covered> {
    let tally = evidence
        .evidence
        .summary
        .get("coverage")?
        .get(category.as_str())?;
    Some(Covered {
        covered: tally.get("covered")?.as_u64()?,
        total: tally.get("total")?.as_u64()?,
    })
}
