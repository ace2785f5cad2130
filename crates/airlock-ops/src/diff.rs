//! `diff FROM TO`: the parity report between two environments. The facts come from the
//! project and the store; `airlock_core::parity` judges them.

use super::{OpsError, environment};
use airlock_core::canonical;
use airlock_core::parity::{
    self, Counts, Origin, ParityFacts, ParityReport, RunSample, Running, SecretFact, Side,
    TokenFact, WorkflowFacts,
};
use airlock_core::project::Project;
use airlock_store::{ReleaseKind, RunFilter, StepStatus, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many of the source's runs are searched for the target's version.
const HISTORY_RUNS: usize = 1_000;

/// The report with its verdict: clean (no drift) and the counts by status. Deserialize
/// too: the CLI reads it back from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    #[serde(flatten)]
    pub report: ParityReport,
    /// No drift anywhere.
    pub clean: bool,
    pub counts: Counts,
    /// Each protected environment of the two: its released configuration against the
    /// working copy's, with what a configuration promotion would change.
    #[serde(default)]
    pub configuration: Vec<super::config::ConfigStatus>,
}

/// The parity report between two different environments of the project.
pub async fn diff(
    store: &dyn Store,
    project: &Project,
    from: &str,
    to: &str,
    now: i64,
) -> Result<Diff, OpsError> {
    if from == to {
        return Err(OpsError::bad_request(
            format!("`{from}` compared with itself"),
            Some("name two environments, e.g. `airlock diff staging production`".into()),
        ));
    }
    environment(&project.manifest, from)?;
    environment(&project.manifest, to)?;
    let mut configuration = Vec::new();
    for name in [from, to] {
        if environment(&project.manifest, name)?.protected {
            configuration.push(super::config::status(store, &project.manifest, name).await?);
        }
    }
    // The parity report is between the environments as they run: a protected one by its
    // released configuration.
    let effective = super::config::effective(store, project, "airlock", now).await?;
    let report = report(store, &effective, from, to).await?;
    Ok(Diff {
        clean: report.clean(),
        counts: report.counts(),
        report,
        configuration,
    })
}

/// The parity report between two environments. `promote` and `readiness` use it too, so
/// that the gate and the checklist judge what `diff` shows.
pub async fn report(
    store: &dyn Store,
    project: &Project,
    from: &str,
    to: &str,
) -> Result<ParityReport, OpsError> {
    let facts = facts(store, project, from, to).await?;
    Ok(parity::compare(&project.manifest, from, to, &facts))
}

/// What each environment runs, its recent runs, and its secrets' fingerprints.
pub async fn facts(
    store: &dyn Store,
    project: &Project,
    from: &str,
    to: &str,
) -> Result<ParityFacts, OpsError> {
    let manifest = &project.manifest;
    let mut names: Vec<String> = project
        .workflows
        .iter()
        .map(|w| w.workflow.name.value.clone())
        .collect();
    for environment in [from, to] {
        for deployed in store.deployments(Some(environment)).await? {
            if !names.contains(&deployed.workflow)
                && deployed.workflow != airlock_core::config::CONFIG_SUBJECT
            {
                names.push(deployed.workflow);
            }
        }
    }
    let target = parity::promotion_target(manifest, from, to);
    let source = if target == to { from } else { to };
    let mut workflows = Vec::new();
    for name in names {
        let from_side = side(store, project, from, &name).await?;
        let to_side = side(store, project, to, &name).await?;
        let target_side = if target == to { &to_side } else { &from_side };
        let came_through = match &target_side.running {
            Some(running) if running.origin == Origin::Deployed => {
                Some(came_through(store, source, target, &name, &running.version).await?)
            }
            _ => None,
        };
        workflows.push(WorkflowFacts {
            name,
            from: from_side,
            to: to_side,
            target_came_through_source: came_through,
        });
    }
    let mut secrets = Vec::new();
    for name in [from, to] {
        for secret in &environment(manifest, name)?.secrets {
            if let Some(sealed) = store.secret(name, secret).await? {
                // Only the keyed fingerprint leaves the store here, never the sealed value.
                secrets.push(SecretFact {
                    environment: name.to_owned(),
                    name: secret.value.clone(),
                    fingerprint: sealed.fingerprint,
                });
            }
        }
    }
    let mut tokens = Vec::new();
    for name in [from, to] {
        // Only where each live token acts and its role leave the store here: never its
        // secret's hash, id or name.
        tokens.extend(
            store
                .tokens(Some(name))
                .await?
                .into_iter()
                .filter(|t| t.revoked_at.is_none())
                .map(|t| TokenFact {
                    environment: t.token.environment,
                    role: t.token.role,
                }),
        );
    }
    Ok(ParityFacts {
        workflows,
        secrets,
        tokens,
    })
}

/// What one environment runs of one workflow, and samples of its recent runs.
async fn side(
    store: &dyn Store,
    project: &Project,
    environment_name: &str,
    workflow: &str,
) -> Result<Side, OpsError> {
    let protected = environment(&project.manifest, environment_name)?.protected;
    let running = match store.deployment(environment_name, workflow).await? {
        Some(deployed) => {
            let decoded = store
                .version(&deployed.version)
                .await?
                .and_then(|v| airlock_core::model::workflow::decode_source(&v.source).ok());
            Some(Running {
                version: deployed.version,
                origin: Origin::Deployed,
                workflow: decoded,
            })
        }
        // An unprotected environment with nothing deployed runs the working copy.
        None if !protected => project.workflow(workflow).map(|w| Running {
            version: canonical::version_id(&w.workflow).0,
            origin: Origin::WorkingCopy,
            workflow: Some(w.workflow.clone()),
        }),
        None => None,
    };
    let filter = RunFilter {
        environment: Some(environment_name.to_owned()),
        workflow: Some(workflow.to_owned()),
        status: None,
        limit: Some(parity::SAMPLE_RUNS),
        before: None,
    };
    let mut samples = Vec::new();
    for run in store.runs(&filter).await? {
        let mut outputs: Vec<(String, Value)> = Vec::new();
        for entry in store.journal(&run.id).await? {
            let entry = entry.entry;
            if entry.status != StepStatus::Succeeded {
                continue;
            }
            let Some(output) = entry.output else { continue };
            match outputs.iter_mut().find(|(step, _)| *step == entry.step) {
                Some(slot) => slot.1 = output,
                None => outputs.push((entry.step, output)),
            }
        }
        samples.push(RunSample {
            run: run.id,
            version: run.version,
            trigger: std::sync::Arc::unwrap_or_clone(run.trigger),
            outputs,
        });
    }
    Ok(Side { running, samples })
}

/// Whether `version`, which the target runs, came through the source: promoted from it,
/// or run there.
async fn came_through(
    store: &dyn Store,
    source: &str,
    target: &str,
    workflow: &str,
    version: &str,
) -> Result<bool, OpsError> {
    for release in store.releases(target, workflow).await? {
        let release = release.release;
        if release.version != version || release.kind != ReleaseKind::Promotion {
            continue;
        }
        if let Some(request) = &release.request
            && let Some(request) = store.request(request).await?
            && request.request.from_environment == source
        {
            return Ok(true);
        }
    }
    let filter = RunFilter {
        environment: Some(source.to_owned()),
        workflow: Some(workflow.to_owned()),
        status: None,
        limit: Some(HISTORY_RUNS),
        before: None,
    };
    let runs = store.runs(&filter).await?;
    Ok(runs.iter().any(|r| r.version == version))
}
