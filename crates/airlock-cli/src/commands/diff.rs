//! `airlock diff FROM TO`: the parity report between two environments. The facts come
//! from the project and the store; `airlock_core::parity` judges them.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace, store_error};
use airlock_core::canonical;
use airlock_core::parity::{
    self, Dimension, Finding, Origin, ParityFacts, ParityReport, RunSample, Running, SecretFact,
    Side, Status, WorkflowFacts,
};
use airlock_store::{ReleaseKind, RunFilter, StepStatus};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;
use std::process::ExitCode;

/// How many of the source's runs are searched for the target's version.
const HISTORY_RUNS: usize = 1_000;

pub fn run(global: &Global, from: &str, to: &str) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    if from == to {
        return Err(CliError::usage(
            format!("`{from}` compared with itself"),
            Some("name two environments, e.g. `airlock diff staging production`".into()),
        ));
    }
    workspace.environment(from)?;
    workspace.environment(to)?;
    let report = workspace::runtime()?.block_on(report(&workspace, from, to))?;
    if global.json {
        let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("clean".into(), Value::Bool(report.clean()));
            map.insert(
                "counts".into(),
                serde_json::to_value(report.counts()).unwrap_or(Value::Null),
            );
        }
        crate::output::json(&value);
    } else {
        print(&report);
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// The parity report between two environments of an open project. `promote` and
/// `readiness` use it too, so that the gate and the checklist judge what `diff` shows.
pub async fn report(workspace: &Workspace, from: &str, to: &str) -> Result<ParityReport, CliError> {
    let facts = facts(workspace, from, to).await?;
    Ok(parity::compare(
        &workspace.project().manifest,
        from,
        to,
        &facts,
    ))
}

/// What each environment runs, its recent runs, and its secrets' fingerprints.
pub async fn facts(workspace: &Workspace, from: &str, to: &str) -> Result<ParityFacts, CliError> {
    let store = &workspace.store;
    let manifest = &workspace.project().manifest;
    let mut names: Vec<String> = workspace
        .project()
        .workflows
        .iter()
        .map(|w| w.workflow.name.value.clone())
        .collect();
    for environment in [from, to] {
        for deployed in store
            .deployments(Some(environment))
            .await
            .map_err(store_error)?
        {
            if !names.contains(&deployed.workflow) {
                names.push(deployed.workflow);
            }
        }
    }
    let target = parity::promotion_target(manifest, from, to);
    let source = if target == to { from } else { to };
    let mut workflows = Vec::new();
    for name in names {
        let from_side = side(workspace, from, &name).await?;
        let to_side = side(workspace, to, &name).await?;
        let target_side = if target == to { &to_side } else { &from_side };
        let came_through = match &target_side.running {
            Some(running) if running.origin == Origin::Deployed => {
                Some(came_through(workspace, source, target, &name, &running.version).await?)
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
    for environment in [from, to] {
        for name in &workspace.environment(environment)?.secrets {
            if let Some(sealed) = store.secret(environment, name).await.map_err(store_error)? {
                // Only the keyed fingerprint leaves the store here, never the sealed value.
                secrets.push(SecretFact {
                    environment: environment.to_owned(),
                    name: name.value.clone(),
                    fingerprint: sealed.fingerprint,
                });
            }
        }
    }
    Ok(ParityFacts { workflows, secrets })
}

/// What one environment runs of one workflow, and samples of its recent runs.
async fn side(workspace: &Workspace, environment: &str, workflow: &str) -> Result<Side, CliError> {
    let store = &workspace.store;
    let protected = workspace.environment(environment)?.protected;
    let running = match store
        .deployment(environment, workflow)
        .await
        .map_err(store_error)?
    {
        Some(deployed) => {
            let decoded = store
                .version(&deployed.version)
                .await
                .map_err(store_error)?
                .and_then(|v| airlock_engine::runtime::decode_workflow(&v.source).ok());
            Some(Running {
                version: deployed.version,
                origin: Origin::Deployed,
                workflow: decoded,
            })
        }
        // An unprotected environment with nothing deployed runs the working copy.
        None if !protected => workspace.project().workflow(workflow).map(|w| Running {
            version: canonical::version_id(&w.workflow).0,
            origin: Origin::WorkingCopy,
            workflow: Some(w.workflow.clone()),
        }),
        None => None,
    };
    let filter = RunFilter {
        environment: Some(environment.to_owned()),
        workflow: Some(workflow.to_owned()),
        status: None,
        limit: Some(parity::SAMPLE_RUNS),
    };
    let mut samples = Vec::new();
    for run in store.runs(&filter).await.map_err(store_error)? {
        let mut outputs: Vec<(String, Value)> = Vec::new();
        for entry in store.journal(&run.id).await.map_err(store_error)? {
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
            trigger: run.trigger,
            outputs,
        });
    }
    Ok(Side { running, samples })
}

/// Whether `version`, which the target runs, came through the source: promoted from it,
/// or run there.
async fn came_through(
    workspace: &Workspace,
    source: &str,
    target: &str,
    workflow: &str,
    version: &str,
) -> Result<bool, CliError> {
    let store = &workspace.store;
    for release in store
        .releases(target, workflow)
        .await
        .map_err(store_error)?
    {
        let release = release.release;
        if release.version != version || release.kind != ReleaseKind::Promotion {
            continue;
        }
        if let Some(request) = &release.request
            && let Some(request) = store.request(request).await.map_err(store_error)?
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
    };
    let runs = store.runs(&filter).await.map_err(store_error)?;
    Ok(runs.iter().any(|r| r.version == version))
}

/// A row's status; an entry's reason is written out the first time a table cites it.
fn status_cell(finding: &Finding, cited: &mut Vec<String>) -> String {
    let detail = finding.detail.as_deref();
    match &finding.status {
        Status::Same => "same".to_owned(),
        Status::Documented { by, .. } if cited.contains(by) => {
            format!("documented ({by}, as above)")
        }
        Status::Documented { by, reason } => {
            cited.push(by.clone());
            format!("documented ({by}): {reason}")
        }
        Status::Drift => match detail {
            Some(d) => format!("DRIFT: {d}"),
            None => "DRIFT: not documented".to_owned(),
        },
        Status::Pending => format!(
            "pending: {}",
            detail.unwrap_or("the change promotion moves")
        ),
        Status::Note => format!("note: {}", detail.unwrap_or_default()),
    }
}

fn print(report: &ParityReport) {
    for dimension in Dimension::ALL {
        let rows: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.dimension == dimension)
            .collect();
        if rows.is_empty() {
            continue;
        }
        println!("{}", dimension.title());
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        // Wrapped to a terminal's width; one line per row when piped, so `grep` finds rows.
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(["what", report.from.as_str(), report.to.as_str(), "status"]);
        let mut cited = Vec::new();
        for row in rows {
            table.add_row([
                row.what.clone(),
                row.from.clone(),
                row.to.clone(),
                status_cell(row, &mut cited),
            ]);
        }
        println!("{table}\n");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    let counts = report.counts();
    let drift: Vec<&str> = report.drift().map(|f| f.what.as_str()).collect();
    println!(
        "{} → {}: {} same, {} documented, {} drift, {} pending promotion, {} notes",
        report.from,
        report.to,
        counts.same,
        counts.documented,
        counts.drift,
        counts.pending,
        counts.notes
    );
    if drift.is_empty() {
        println!("clean: every difference is documented");
        return;
    }
    println!("DRIFT: {}", drift.join(", "));
    let documentable: Vec<&str> = report.drift().filter_map(|f| f.path.as_deref()).collect();
    if !documentable.is_empty() {
        println!(
            "document each intended difference under `differences:` in airlock.yaml (`- {{ path: {}, reason: … }}`), or remove it",
            documentable[0]
        );
    }
    let fixable: Vec<&str> = report
        .drift()
        .filter(|f| f.path.is_none())
        .map(|f| f.what.as_str())
        .collect();
    if !fixable.is_empty() {
        println!(
            "{} cannot be documented away: give each environment its own credential, run the versions through promotion, and let staging see data like production's",
            fixable.join(", ")
        );
    }
}
