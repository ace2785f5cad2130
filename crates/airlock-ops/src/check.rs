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
use airlock_core::model::{BindingMode, Manifest, StepKind, Trigger};
use airlock_core::project::WorkflowFile;
use airlock_engine::Runtime;
use airlock_store::Store;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How an environment's bindings answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// The environment checked.
    pub environment: String,
    /// Whether every binding passed.
    pub ok: bool,
    /// One row per binding, in the manifest's order.
    pub bindings: Vec<BindingCheck>,
    /// What is wrong in the environment though no binding failed (they do not fail the
    /// check): a webhook signing secret nobody set, a store file others can read.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The store's file on the machine that checked, and who may read it; absent for a
    /// database elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreFile>,
}

/// The embedded store's file and its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreFile {
    /// Where it is.
    pub path: String,
    /// Its permission bits, in octal (`0600`).
    pub mode: String,
    /// Its folder's permission bits, in octal (`0700`).
    pub folder_mode: String,
    /// Whether only its owner may read it and its `-wal` and `-shm` files.
    pub private: bool,
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

/// What a record-mode binding's row says: its check reaches nothing.
pub const NOT_REACHED: &str = "record mode: not reached (answers from the configured responses)";

/// Reaches each binding of `environment_name` (an environment of `manifest`, or a 404
/// with a did-you-mean) through `runtime`'s connectors. `workflows` say which tables a SQL
/// binding must have (those they insert or upsert into). The bindings only: what
/// `airlock check` prints adds [`check_in`]'s warnings.
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
        let record = binding.mode.value == BindingMode::Record;
        // A record-mode binding is still built (a bad setup fails here), but nothing is
        // reached, so its row does not claim it was.
        let outcome = match runtime.connector(environment_name, name).await {
            Ok(_) if record => CheckOutcome::ok(NOT_REACHED),
            Ok(connector) => connector.check(&context).await,
            Err(e) => CheckOutcome::failed(e.to_string()),
        };
        let kind = manifest
            .connector(name)
            .and_then(|c| c.kind)
            .map_or("?", |k| k.name());
        let mode = if record { "record" } else { "live" };
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
        warnings: Vec::new(),
        store: None,
    })
}

/// [`check`], with what `store` tells beyond the bindings: the webhook signing secrets of
/// `workflows` not set in the environment, and the store's file and who may read it.
/// Warnings do not fail the check.
pub async fn check_in(
    store: &dyn Store,
    runtime: &dyn Runtime,
    manifest: &Manifest,
    workflows: &[WorkflowFile],
    environment_name: &str,
) -> Result<CheckReport, OpsError> {
    let mut report = check(runtime, manifest, workflows, environment_name).await?;
    report.warnings = unset_signing_secrets(store, workflows, environment_name).await?;
    report.store = store.local_file().and_then(store_file);
    if let Some(file) = report.store.as_ref().filter(|f| !f.private) {
        let warning = format!(
            "the store `{}` can be read by group or others ({}): `chmod 600` it and its -wal and -shm files",
            file.path, file.mode
        );
        report.warnings.push(warning);
    }
    Ok(report)
}

/// A warning per webhook whose signing secret is not set in `environment`: every
/// delivery to it there is refused (401) until it is.
async fn unset_signing_secrets(
    store: &dyn Store,
    workflows: &[WorkflowFile],
    environment: &str,
) -> Result<Vec<String>, OpsError> {
    let mut warnings = Vec::new();
    for workflow in workflows {
        if let Some(Trigger::Webhook {
            path,
            signature: Some(signature),
            ..
        }) = &workflow.workflow.trigger
            && store
                .secret(environment, &signature.secret)
                .await?
                .is_none()
        {
            warnings.push(format!(
                "the webhook signing secret `{}` of `{}` is not set in `{environment}`: every delivery to /hooks/{environment}/{path} is refused; `airlock secrets set {} --env {environment}`",
                signature.secret, workflow.workflow.name.value, signature.secret
            ));
        }
    }
    Ok(warnings)
}

/// The store's file and who may read it (`None` where permissions cannot be read).
#[cfg(unix)]
fn store_file(path: &Path) -> Option<StoreFile> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    let file = mode(path)?;
    let folder = path.parent().and_then(mode).unwrap_or(0);
    // SQLite gives the WAL and shared-memory files the database's mode, but an operator's
    // chmod of the database alone leaves them as they were.
    let readable_by_others = [
        path.to_owned(),
        suffixed(path, "-wal"),
        suffixed(path, "-shm"),
    ]
    .iter()
    .filter_map(|p| mode(p))
    .any(|m| m & 0o044 != 0);
    Some(StoreFile {
        path: path.display().to_string(),
        mode: format!("{file:04o}"),
        folder_mode: format!("{folder:04o}"),
        private: !readable_by_others,
    })
}

#[cfg(not(unix))]
fn store_file(_path: &Path) -> Option<StoreFile> {
    None
}

#[cfg(unix)]
fn suffixed(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
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
    let report = check_in(
        store,
        runtime,
        &effective,
        &project.workflows,
        environment_name,
    )
    .await?;
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
            store.clone(),
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
        assert_eq!(report.bindings[0].detail, NOT_REACHED);
        let missing = check(&runtime, &manifest, &[], "stagign")
            .await
            .unwrap_err();
        assert!(matches!(missing, OpsError::NotFound { .. }), "{missing:?}");
        assert_eq!(missing.help(), Some("did you mean `staging`?"));
    }

    const HOOK_MANIFEST: &str = r#"project: hooks
connectors:
  crm: { kind: http, description: "Recorded" }
environments:
  staging:
    secrets: [HOOK_SECRET]
    bindings:
      crm:
        mode: record
        responses:
          request: { status: 201 }
"#;

    const HOOK_WORKFLOW: &str = r#"name: intake
trigger:
  webhook:
    path: orders
    signature: { scheme: github, secret: HOOK_SECRET }
steps:
  - id: save
    call: crm.request
    with: { method: POST, path: /orders }
"#;

    /// The checked project: a webhook signed with `HOOK_SECRET`, one record binding, and
    /// its store in `.airlock/` below `temp`.
    fn hooked(
        temp: &Path,
    ) -> (
        Arc<SqliteStore>,
        ProjectRuntime,
        Manifest,
        Vec<WorkflowFile>,
    ) {
        let loaded = load(vec![
            SourceFile::new("airlock.yaml", HOOK_MANIFEST),
            SourceFile::new("workflows/intake.yaml", HOOK_WORKFLOW),
        ]);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        let state = temp.join(".airlock");
        airlock_store::private_files::create_dir(&state).unwrap();
        let store = Arc::new(SqliteStore::open(&state.join("airlock.db")).unwrap());
        let runtime = ProjectRuntime::new(
            store.clone(),
            loaded.project.manifest.clone(),
            temp.to_owned(),
            Keyring::load(temp, &[]).unwrap(),
            Arc::new(SystemClock),
        );
        (
            store,
            runtime,
            loaded.project.manifest,
            loaded.project.workflows,
        )
    }

    /// Regression (`check` reports record-mode bindings as OK though nothing was reached,
    /// and says nothing of an unset webhook signing secret): the row says it was not
    /// reached, and the secret, until it is set, is a warning naming it and the hook.
    #[tokio::test]
    async fn check_says_a_record_binding_was_not_reached_and_flags_an_unset_signing_secret() {
        let temp = tempfile::tempdir().unwrap();
        let (store, runtime, manifest, workflows) = hooked(temp.path());
        let report = check_in(&*store, &runtime, &manifest, &workflows, "staging")
            .await
            .unwrap();
        assert!(report.ok, "a warning does not fail the check: {report:?}");
        assert_eq!(report.bindings[0].detail, NOT_REACHED);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("`HOOK_SECRET` of `intake` is not set in `staging`")
                && report.warnings[0].contains("/hooks/staging/orders"),
            "{:?}",
            report.warnings
        );
        store
            .put_secret(&airlock_store::SealedSecret {
                environment: "staging".into(),
                name: "HOOK_SECRET".into(),
                sealed: vec![1, 2, 3],
                fingerprint: None,
                updated_at: 1,
            })
            .await
            .unwrap();
        let report = check_in(&*store, &runtime, &manifest, &workflows, "staging")
            .await
            .unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    /// Regression (files readable by others): `check` reports the store's permissions,
    /// private when created, and warns about an existing file others can read.
    #[cfg(unix)]
    #[tokio::test]
    async fn check_reports_the_stores_permissions_and_warns_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let (store, runtime, manifest, _) = hooked(temp.path());
        let report = check_in(&*store, &runtime, &manifest, &[], "staging")
            .await
            .unwrap();
        let file = report.store.clone().expect("a SQLite store is a file");
        assert_eq!(
            (file.mode.as_str(), file.folder_mode.as_str(), file.private),
            ("0600", "0700", true),
            "{file:?}"
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        let path = temp.path().join(".airlock/airlock.db");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let report = check_in(&*store, &runtime, &manifest, &[], "staging")
            .await
            .unwrap();
        let file = report.store.clone().expect("a SQLite store is a file");
        assert_eq!((file.mode.as_str(), file.private), ("0644", false));
        assert!(report.ok, "a warning does not fail the check");
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("can be read by group or others (0644)"),
            "{:?}",
            report.warnings
        );
    }
}
