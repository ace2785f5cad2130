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

/// One suite the server ran and recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recorded {
    pub workflow: String,
    /// The version the suite ran on, and the evidence is bound to.
    pub version: String,
    pub passed: bool,
    /// The evidence's id in the store.
    pub evidence: i64,
    /// What the evidence keeps (counts, coverage, each failure).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

/// Runs the scenario suites of `project` here, offline (stubs only, a fake clock: nothing
/// is reached), on the versions its files hash to, and records each result as evidence
/// bound to that hash, marked as run by the server (`summary.runner`). `only`: one
/// workflow. This is how evidence reaches a served store: a client never submits it.
pub async fn run(
    store: &dyn Store,
    project: &Project,
    only: Option<&str>,
    actor: &str,
    now: i64,
) -> Result<Vec<Recorded>, OpsError> {
    if let Some(name) = only {
        find_workflow(project, name)?;
    }
    let suites = airlock_core::suite::suites(project, only);
    let reports = airlock_core::suite::run_suites(&suites, &|| {});
    let mut recorded = Vec::with_capacity(reports.len());
    for report in &reports {
        let workflow = find_workflow(project, &report.workflow)?;
        let version = store_working_version(store, project, workflow, now).await?;
        let mut summary = report.summary();
        if let serde_json::Value::Object(map) = &mut summary {
            map.insert("runner".into(), "server".into());
        }
        let evidence = store
            .add_evidence(&NewEvidence {
                workflow: report.workflow.clone(),
                version: version.clone(),
                kind: EVIDENCE_KIND.into(),
                passed: report.passed,
                summary: summary.clone(),
                at: now,
            })
            .await?;
        super::audit(
            store,
            now,
            actor,
            "evidence.run",
            None,
            &report.workflow,
            serde_json::json!({ "version": version, "passed": report.passed, "evidence": evidence.id }),
        )
        .await?;
        recorded.push(Recorded {
            workflow: report.workflow.clone(),
            version,
            passed: report.passed,
            evidence: evidence.id,
            summary,
        });
    }
    Ok(recorded)
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

/// A deployed version the server could not test, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub workflow: String,
    pub version: String,
    pub reason: String,
}

/// What `POST /api/v1/evidence/run` did: the suites run and recorded, and the deployed
/// versions it could not test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerRun {
    pub environment: String,
    pub recorded: Vec<Recorded>,
    pub skipped: Vec<Skipped>,
}

/// Runs, on the server, the scenario suites of what `environment` runs (every deployed
/// workflow, or `only` one), on the versions the served project holds, and records the
/// evidence. A version is tested only when the served project's files hash to it (the
/// scenarios are the ones deployed with it); one they do not is listed as skipped. With
/// `version` (and `only`), exactly that version of the workflow, deployed or not, or a
/// 409 when the served files are another.
pub async fn run_deployed(
    store: &dyn Store,
    project: &Project,
    environment: &str,
    only: Option<&str>,
    version: Option<&str>,
    actor: &str,
    now: i64,
) -> Result<ServerRun, OpsError> {
    super::environment(&project.manifest, environment)?;
    let here = |name: &str| {
        project
            .workflow(name)
            .map(|w| airlock_core::canonical::version_id(&w.workflow).0)
    };
    if let Some(asked) = version {
        let Some(name) = only else {
            return Err(OpsError::bad_request(
                "a version is named with its workflow",
                Some("{\"workflow\": NAME, \"version\": HASH}".into()),
            ));
        };
        let held = here(find_workflow(project, name)?.workflow.name.as_str());
        if held.as_deref() != Some(asked) {
            return Err(OpsError::conflict(
                format!(
                    "the server's project holds `{name}` {}, not {}: it tests only the files it received",
                    super::short(held.as_deref().unwrap_or("")),
                    super::short(asked)
                ),
                Some("deploy that version with `airlock deploy --server` first".into()),
            ));
        }
        return Ok(ServerRun {
            environment: environment.to_owned(),
            recorded: run(store, project, Some(name), actor, now).await?,
            skipped: Vec::new(),
        });
    }
    let mut recorded = Vec::new();
    let mut skipped = Vec::new();
    let deployments = store.deployments(Some(environment)).await?;
    for deployed in deployments
        .iter()
        .filter(|d| !d.workflow.starts_with('@'))
        .filter(|d| only.is_none_or(|name| d.workflow == name))
    {
        match here(&deployed.workflow) {
            Some(held) if held == deployed.version => {
                recorded.extend(run(store, project, Some(&deployed.workflow), actor, now).await?);
            }
            held => skipped.push(Skipped {
                workflow: deployed.workflow.clone(),
                version: deployed.version.clone(),
                reason: match held {
                    Some(held) => format!(
                        "the server's project holds {}, another version: its scenarios are not this one's",
                        super::short(&held)
                    ),
                    None => "the server's project no longer has this workflow".into(),
                },
            }),
        }
    }
    if recorded.is_empty() && skipped.is_empty() {
        return Err(OpsError::not_found(
            match only {
                Some(name) => format!("no version of `{name}` is deployed in `{environment}`"),
                None => format!("nothing is deployed in `{environment}`"),
            },
            Some(format!(
                "`airlock deploy --env {environment} --server URL` first"
            )),
        ));
    }
    Ok(ServerRun {
        environment: environment.to_owned(),
        recorded,
        skipped,
    })
}
