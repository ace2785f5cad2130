//! `check`: every binding of an environment reached for real, within its egress, with
//! its secrets. What `airlock check --env E` prints and `GET /api/v1/environments/
//! {environment}/check` answers, built here once so the two cannot drift apart: locally
//! the bindings are reached from this machine with the local store's secrets, through a
//! server from the server's side (its keys, its network, its egress).
//!
//! A row says OK or why not; connectors never put a setting's value in either (see
//! `airlock_connectors`), so neither side can show a secret.

use super::{OpsError, environment};
use airlock_connectors::{CheckContext, CheckOutcome};
use airlock_core::model::{BindingMode, Manifest, StepKind};
use airlock_core::project::WorkflowFile;
use airlock_engine::Runtime;
use serde::{Deserialize, Serialize};

/// How an environment's bindings answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// The environment checked.
    pub environment: String,
    /// Whether every binding passed.
    pub ok: bool,
    /// One row per binding, in the manifest's order.
    pub bindings: Vec<BindingCheck>,
}

/// One binding's answer. Deserialize too: the CLI reads the API's rows back and prints
/// them as it prints its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BindingCheck {
    /// The connector bound.
    pub connector: String,
    /// Its kind (`http`, `sql`, …).
    pub kind: String,
    /// `live`, or `record` (nothing is sent; the check passes without reaching anything).
    pub mode: String,
    /// Whether it is reachable and, where the kind can tell, its credential accepted.
    pub ok: bool,
    /// What was checked, or why it failed; never a secret's value.
    pub detail: String,
}

impl CheckReport {
    /// How many bindings failed.
    pub fn failed(&self) -> usize {
        self.bindings.iter().filter(|b| !b.ok).count()
    }
}

/// Reaches each binding of `environment_name` (an environment of `manifest`, or a 404
/// with a did-you-mean) through `runtime`'s connectors. `workflows` say which tables a SQL
/// binding must have (those they insert or upsert into).
pub async fn check(
    runtime: &dyn Runtime,
    manifest: &Manifest,
    workflows: &[WorkflowFile],
    environment_name: &str,
) -> Result<CheckReport, OpsError> {
    let env = environment(manifest, environment_name)?;
    let mut bindings = Vec::with_capacity(env.bindings.len());
    for binding in &env.bindings {
        let name = &binding.connector.value;
        let context = CheckContext {
            tables: tables_written(workflows, name),
        };
        let outcome = match runtime.connector(environment_name, name).await {
            Ok(connector) => connector.check(&context).await,
            Err(e) => CheckOutcome::failed(e.to_string()),
        };
        let kind = manifest
            .connector(name)
            .and_then(|c| c.kind)
            .map_or("?", |k| k.name());
        let mode = if binding.mode.value == BindingMode::Record {
            "record"
        } else {
            "live"
        };
        bindings.push(BindingCheck {
            connector: name.clone(),
            kind: kind.to_owned(),
            mode: mode.to_owned(),
            ok: outcome.ok,
            detail: outcome.detail,
        });
    }
    Ok(CheckReport {
        environment: env.name.value.clone(),
        ok: bindings.iter().all(|b| b.ok),
        bindings,
    })
}

/// The tables `workflows` insert into or upsert into through `connector` (literal table
/// names only).
fn tables_written(workflows: &[WorkflowFile], connector: &str) -> Vec<String> {
    let mut tables = Vec::new();
    for workflow in workflows {
        for step in workflow.workflow.all_steps() {
            if let StepKind::Call {
                connector: c,
                action,
                with: Some(with),
                ..
            } = &step.kind
                && c == connector
                && (action == "insert" || action == "upsert")
                && let Some(table) = with
                    .to_json()
                    .get("table")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                && !tables.contains(&table)
            {
                tables.push(table);
            }
        }
    }
    tables
}

/// The evidence subject a check of `environment` is recorded under: checks are bound to
/// the configuration they reached (the version id), as test results are to a workflow's.
pub fn recorded_subject(environment: &str) -> String {
    format!("@check:{environment}")
}

/// Keeps a check's result, bound to the configuration `environment` runs (its released
/// one when protected), so that `readiness` answers from the newest check of what runs.
pub async fn record(
    store: &dyn airlock_store::Store,
    effective: &Manifest,
    report: &CheckReport,
    now: i64,
) -> Result<(), OpsError> {
    let Some(version) = airlock_core::config::of(effective, &report.environment).map(|(id, _)| id)
    else {
        return Ok(());
    };
    store
        .add_evidence(&airlock_store::NewEvidence {
            workflow: recorded_subject(&report.environment),
            version,
            kind: "check".into(),
            passed: report.ok,
            summary: serde_json::to_value(report).unwrap_or_default(),
            at: now,
        })
        .await?;
    Ok(())
}

/// Checks `environment` as it runs (a protected one: its released configuration) and
/// records the result: what `airlock check` and `GET …/check` do.
pub async fn check_and_record(
    store: &dyn airlock_store::Store,
    runtime: &dyn Runtime,
    project: &airlock_core::project::Project,
    environment_name: &str,
    actor: &str,
    now: i64,
) -> Result<CheckReport, OpsError> {
    let effective = super::config::effective_manifest(store, &project.manifest, actor, now).await?;
    let report = check(runtime, &effective, &project.workflows, environment_name).await?;
    record(store, &effective, &report, now).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_connectors::secrets::Keyring;
    use airlock_core::project::load;
    use airlock_core::source::SourceFile;
    use airlock_engine::{ProjectRuntime, SystemClock};
    use airlock_store::sqlite::SqliteStore;
    use std::sync::Arc;

    const MANIFEST: &str = r#"project: checks
connectors:
  crm: { kind: http, description: "Recorded" }
  api: { kind: http, description: "Needs a secret nobody set" }
environments:
  staging:
    egress: [127.0.0.1]
    secrets: [API_TOKEN]
    bindings:
      crm:
        mode: record
        responses:
          request: { status: 201 }
      api: { base_url: "http://127.0.0.1:9", token: "${secret:API_TOKEN}" }
"#;

    #[tokio::test]
    async fn each_binding_gets_a_row_in_the_manifests_order_and_a_missing_secret_fails_by_name() {
        let temp = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&temp.path().join("airlock.db")).unwrap());
        let loaded = load(vec![SourceFile::new("airlock.yaml", MANIFEST)]);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        let manifest = loaded.project.manifest;
        let runtime = ProjectRuntime::new(
            store,
            manifest.clone(),
            temp.path().to_owned(),
            Keyring::load(temp.path(), &[]).unwrap(),
            Arc::new(SystemClock),
        );
        let report = check(&runtime, &manifest, &[], "staging").await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.failed(), 1);
        let rows: Vec<(&str, &str, &str, bool)> = report
            .bindings
            .iter()
            .map(|b| (b.connector.as_str(), b.kind.as_str(), b.mode.as_str(), b.ok))
            .collect();
        assert_eq!(
            rows,
            [
                ("crm", "http", "record", true),
                ("api", "http", "live", false)
            ]
        );
        assert!(
            report.bindings[1].detail.contains("API_TOKEN"),
            "{:?}",
            report.bindings[1]
        );
        let missing = check(&runtime, &manifest, &[], "stagign")
            .await
            .unwrap_err();
        assert!(matches!(missing, OpsError::NotFound { .. }), "{missing:?}");
        assert_eq!(missing.help(), Some("did you mean `staging`?"));
    }
}
