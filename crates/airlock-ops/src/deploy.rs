//! `deploy`: make an unprotected environment run the working copy.

use super::{OpsError, audit, audit_policy_change, environment, store_working_version};
use airlock_core::project::Project;
use airlock_store::{Deployment, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// What a deploy changed, workflow by workflow. Deserialize too: the CLI reads it back
/// from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// The environment deployed to.
    pub environment: String,
    /// One entry per workflow of the project, then one per workflow no longer in it.
    pub changes: Vec<Change>,
    /// The deployed bundle's content id, when the deploy carried its files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The scenario suites the server ran on the versions it received, each recorded as
    /// evidence bound to its hash (a deploy that carried its files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<super::evidence::Recorded>,
}

/// One workflow's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub workflow: String,
    /// `added`, `changed`, `unchanged` or `removed`.
    pub change: ChangeKind,
    /// The version it ran before.
    pub from: Option<String>,
    /// The version it runs now (`None`: removed from the project).
    pub to: Option<String>,
}

/// How a workflow's deployment changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// It ran nothing there before.
    Added,
    /// It ran another version before.
    Changed,
    /// It ran this version already.
    Unchanged,
    /// It is no longer in the project (its deployment stays; its runs stop being started).
    Removed,
}

/// Checks that the project's working copy is exactly the one a deploy was asked for:
/// `expected` names every workflow with the version id its caller computed. The ids
/// compared are the ones computed here, from the files this process loaded, so a caller
/// can only confirm what will be deployed, never choose it; a difference either way
/// (another version, a workflow only on one side) refuses the deploy (409), nothing
/// written.
pub fn check_expected(
    project: &Project,
    expected: &BTreeMap<String, String>,
) -> Result<(), OpsError> {
    let here: BTreeMap<&str, String> = project
        .workflows
        .iter()
        .map(|w| {
            (
                w.workflow.name.value.as_str(),
                airlock_core::canonical::version_id(&w.workflow).0,
            )
        })
        .collect();
    let mut differences = Vec::new();
    for (name, version) in &here {
        match expected.get(*name) {
            Some(asked) if asked == version => {}
            Some(asked) => differences.push(format!(
                "`{name}` is {} on the server, {} in the request",
                super::short(version),
                super::short(asked)
            )),
            None => differences.push(format!("`{name}` is only on the server")),
        }
    }
    for name in expected.keys() {
        if !here.contains_key(name.as_str()) {
            differences.push(format!("`{name}` is only in the request"));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(OpsError::conflict(
        format!(
            "the server's working copy is not the one this deploy was asked for: {}; nothing was deployed",
            differences.join(", ")
        ),
        Some(
            "the server deploys its own files, exactly as it hashes them: bring its project to the same commit as yours, then deploy again"
                .into(),
        ),
    ))
}

/// Makes `environment` run the project's working copy. A protected environment is
/// refused (and the refusal audited): it changes only by promotion or rollback. With
/// `expected` (a remote caller's versions, see [`check_expected`]), a working copy that
/// does not hash to exactly those is refused before anything is written.
pub async fn deploy(
    store: &dyn Store,
    project: &Project,
    environment_name: &str,
    expected: Option<&BTreeMap<String, String>>,
    actor: &str,
    now: i64,
) -> Result<Deployed, OpsError> {
    let env = environment(&project.manifest, environment_name)?;
    if env.protected {
        audit(
            store,
            now,
            actor,
            "deploy.refused",
            Some(environment_name),
            "*",
            json!({ "reason": "protected environment" }),
        )
        .await?;
        return Err(OpsError::forbidden(
            format!(
                "`{environment_name}` is protected: it changes only by promotion or rollback, never by deploy"
            ),
            Some(format!(
                "move a tested version there with `airlock promote WORKFLOW --from staging --to {environment_name}`"
            )),
        ));
    }
    // Checked on the very project that is then deployed (loaded once by the caller), so
    // the files cannot change between the check and the deploy.
    if let Some(expected) = expected {
        check_expected(project, expected)?;
    }
    audit_policy_change(store, &project.manifest, actor, now).await?;
    let mut changes = Vec::new();
    for workflow in &project.workflows {
        let name = &workflow.workflow.name.value;
        let version = store_working_version(store, project, workflow, now).await?;
        let previous = store
            .set_deployment(&Deployment {
                environment: environment_name.to_owned(),
                workflow: name.clone(),
                version: version.clone(),
                actor: actor.to_owned(),
                updated_at: now,
            })
            .await?;
        let change = match &previous {
            None => ChangeKind::Added,
            Some(old) if *old == version => ChangeKind::Unchanged,
            Some(_) => ChangeKind::Changed,
        };
        if change != ChangeKind::Unchanged {
            audit(
                store,
                now,
                actor,
                "deploy",
                Some(environment_name),
                name,
                json!({ "from": previous, "to": version }),
            )
            .await?;
        }
        changes.push(Change {
            workflow: name.clone(),
            change,
            from: previous,
            to: Some(version),
        });
    }
    for deployed in store.deployments(Some(environment_name)).await? {
        if project.workflow(&deployed.workflow).is_none()
            && deployed.workflow != airlock_core::config::CONFIG_SUBJECT
        {
            changes.push(Change {
                workflow: deployed.workflow,
                change: ChangeKind::Removed,
                from: Some(deployed.version),
                to: None,
            });
        }
    }
    Ok(Deployed {
        environment: environment_name.to_owned(),
        changes,
        bundle: None,
        evidence: Vec::new(),
    })
}

/// Deploys the files a deploy carried (a server with or without a checkout of its own).
/// In order, each refusing before anything is written: the files must hash to the bundle
/// id their sender computed (`claimed`; 409: changed after hashing or in transit); they
/// must validate, judged here exactly as `validate` judges a folder (400 with every
/// problem, positioned); the environment must be unprotected (403) and, with `expected`,
/// the workflows must hash to exactly the sender's version ids (409, see
/// [`check_expected`]). Then the versions are deployed, the bundle is kept (the project a
/// server with no folder serves, [`super::bundle`]), and the scenario suite is run here,
/// offline, on those very versions and recorded as evidence bound to their hashes: what a
/// sender claims about its tests counts for nothing.
pub async fn deploy_files(
    store: &dyn Store,
    bundle: &airlock_core::bundle::Bundle,
    claimed: Option<&str>,
    environment_name: &str,
    expected: Option<&BTreeMap<String, String>>,
    actor: &str,
    now: i64,
) -> Result<Deployed, OpsError> {
    let id = bundle.id();
    if let Some(claimed) = claimed
        && claimed != id
    {
        return Err(OpsError::conflict(
            format!(
                "the files do not hash to the bundle the deploy named: {} was sent, the files hash to {}; nothing was deployed",
                super::short(claimed),
                super::short(&id)
            ),
            Some(
                "a file changed after it was hashed: deploy again from a clean working copy".into(),
            ),
        ));
    }
    let loaded = airlock_core::project::load(bundle.source_files());
    if !loaded.diagnostics.is_empty() {
        let validation = super::validate::validate(&loaded);
        let n = validation.errors.len();
        return Err(OpsError::Invalid {
            message: format!(
                "the deployed files do not validate: {n} problem{}; nothing was deployed",
                if n == 1 { "" } else { "s" }
            ),
            problems: validation.errors,
        });
    }
    let project = &loaded.project;
    let mut deployed = deploy(store, project, environment_name, expected, actor, now).await?;
    store
        .add_bundle(&airlock_store::StoredBundle {
            id: id.clone(),
            environment: environment_name.to_owned(),
            files: bundle
                .files()
                .iter()
                .map(|f| airlock_store::BundleFile {
                    path: f.path.clone(),
                    text: f.text.clone(),
                })
                .collect(),
            deployed_by: actor.to_owned(),
            deployed_at: now,
        })
        .await?;
    audit(
        store,
        now,
        actor,
        "deploy.bundle",
        Some(environment_name),
        "project",
        json!({ "bundle": id, "files": bundle.files().len(), "bytes": bundle.bytes() }),
    )
    .await?;
    deployed.evidence = super::evidence::run(store, project, None, actor, now).await?;
    deployed.bundle = Some(id);
    Ok(deployed)
}
