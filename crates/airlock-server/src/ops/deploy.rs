//! `deploy`: make an unprotected environment run the working copy.

use super::{OpsError, audit, audit_policy_change, environment, store_working_version};
use airlock_core::project::Project;
use airlock_store::{Deployment, Store};
use serde::Serialize;
use serde_json::json;

/// What a deploy changed, workflow by workflow.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    /// The environment deployed to.
    pub environment: String,
    /// One entry per workflow of the project, then one per workflow no longer in it.
    pub changes: Vec<Change>,
}

/// One workflow's change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub workflow: String,
    /// `added`, `changed`, `unchanged` or `removed`.
    pub change: &'static str,
    /// The version it ran before.
    pub from: Option<String>,
    /// The version it runs now (`None`: removed from the project).
    pub to: Option<String>,
}

/// Makes `environment` run the project's working copy. A protected environment is
/// refused (and the refusal audited): it changes only by promotion or rollback.
pub async fn deploy(
    store: &dyn Store,
    project: &Project,
    environment_name: &str,
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
            None => "added",
            Some(old) if *old == version => "unchanged",
            Some(_) => "changed",
        };
        if change != "unchanged" {
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
        if project.workflow(&deployed.workflow).is_none() {
            changes.push(Change {
                workflow: deployed.workflow,
                change: "removed",
                from: Some(deployed.version),
                to: None,
            });
        }
    }
    Ok(Deployed {
        environment: environment_name.to_owned(),
        changes,
    })
}
