//! A protected environment's configuration goes through the gate: bindings, egress,
//! approvers, declared secrets, the differences about it and the rules into it are
//! released, not edited live (`airlock_core::config` has the form and the hash).
//!
//! Configuration versions, requests and releases are stored as a workflow's are, under
//! the subject [`CONFIG_SUBJECT`] (`@config`), so they have the same history, audit events,
//! compare-and-set releases and rollback. A protected environment runs its released
//! configuration: [`effective`] is the project as every use case must see it, the working
//! copy with each protected environment's parts taken from its release. The first time a
//! store meets a protected environment with no released configuration, it adopts the
//! files' one as the first release (`adopted`, audited): the trust root every later
//! change is judged against, by the approvers that configuration names.

use super::{Actor, OpsError, audit, environment, new_id};
use airlock_core::config::{self as form, CONFIG_SUBJECT, DiffLine};
use airlock_core::model::Manifest;
use airlock_core::policy::{Check, Verdict};
use airlock_core::project::Project;
use airlock_store::{
    NewPromotionRequest, NewRelease, PromotionRequest, ReleaseKind, Store, WorkflowVersion,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The configuration an environment runs from its release: the version id and the
/// manifest decoded from it (that environment, its connectors, differences and rules).
pub async fn released(
    store: &dyn Store,
    environment: &str,
) -> Result<Option<(String, Manifest)>, OpsError> {
    let Some(deployed) = store.deployment(environment, CONFIG_SUBJECT).await? else {
        return Ok(None);
    };
    let stored = store
        .version(&deployed.version)
        .await?
        .ok_or_else(|| OpsError::Unavailable {
            message: format!(
                "the released configuration {} of `{environment}` is missing from the store",
                super::short(&deployed.version)
            ),
        })?;
    let manifest = form::decode(&stored.source).map_err(|message| OpsError::Unavailable {
        message: format!("`{environment}`: {message}"),
    })?;
    Ok(Some((deployed.version, manifest)))
}

/// The project as a use case must judge and run it: the working copy, with each protected
/// environment's configuration taken from its release. A protected environment the store
/// meets for the first time has its files' configuration adopted as its first release.
pub async fn effective(
    store: &dyn Store,
    project: &Project,
    actor: &str,
    now: i64,
) -> Result<Project, OpsError> {
    let mut effective = project.clone();
    effective.manifest = effective_manifest(store, &project.manifest, actor, now).await?;
    Ok(effective)
}

/// [`effective`] for a manifest alone (what the engine's runtime and the server hold).
pub async fn effective_manifest(
    store: &dyn Store,
    working: &Manifest,
    actor: &str,
    now: i64,
) -> Result<Manifest, OpsError> {
    let mut manifest = working.clone();
    let protected: Vec<String> = working
        .environments
        .iter()
        .filter(|e| e.protected)
        .map(|e| e.name.value.clone())
        .collect();
    for name in protected {
        if released(store, &name).await?.is_none() {
            adopt(store, working, &name, actor, now).await?;
        }
        // What the store holds now: this process's adoption or another's.
        if let Some((_, released)) = released(store, &name).await? {
            manifest = form::overlay(&manifest, &name, &released);
        }
    }
    Ok(manifest)
}

/// Stores `environment`'s configuration as it is in `manifest` and returns its id.
async fn store_version(
    store: &dyn Store,
    manifest: &Manifest,
    environment: &str,
    now: i64,
) -> Result<String, OpsError> {
    let (id, document) = form::of(manifest, environment).ok_or_else(|| {
        OpsError::not_found(format!("no environment named `{environment}`"), None)
    })?;
    let text = form::canonical_text(&document);
    store
        .put_version(&WorkflowVersion {
            id: id.clone(),
            workflow: CONFIG_SUBJECT.to_owned(),
            canonical: text.clone(),
            source: text,
            created_at: now,
        })
        .await?;
    Ok(id)
}

async fn adopt(
    store: &dyn Store,
    working: &Manifest,
    environment: &str,
    actor: &str,
    now: i64,
) -> Result<(), OpsError> {
    let version = store_version(store, working, environment, now).await?;
    let adopted = store
        .release(&NewRelease {
            id: new_id("rel"),
            environment: environment.to_owned(),
            workflow: CONFIG_SUBJECT.to_owned(),
            version: version.clone(),
            kind: ReleaseKind::Adopted,
            request: None,
            author: actor.to_owned(),
            approvers: Vec::new(),
            evidence: super::with_audit_head(store, json!({ "adopted_from": "airlock.yaml" }))
                .await?,
            expected_current: None,
            at: now,
        })
        .await;
    match adopted {
        Ok(release) => {
            audit(
                store,
                now,
                actor,
                "config.adopt",
                Some(environment),
                CONFIG_SUBJECT,
                json!({ "release": release.release.id, "version": version }),
            )
            .await
        }
        // Another process adopted it first: theirs is the first release.
        Err(airlock_store::Error::Conflict(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Where a protected environment's configuration stands: released against working copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub environment: String,
    /// The released configuration's id (`None`: the environment is not protected, or the
    /// store has not met it yet).
    pub released: Option<String>,
    /// The working copy's configuration id.
    pub working: String,
    /// What a configuration promotion would change (empty: the same).
    pub diff: Vec<DiffLine>,
}

impl ConfigStatus {
    /// Whether the working copy differs from what the environment runs.
    pub fn differs(&self) -> bool {
        self.released.as_deref().is_some_and(|r| r != self.working)
    }
}

/// Each protected environment's configuration, released against working copy (read only:
/// nothing is adopted).
pub async fn statuses(
    store: &dyn Store,
    working: &Manifest,
) -> Result<Vec<ConfigStatus>, OpsError> {
    let mut out = Vec::new();
    for env in working.environments.iter().filter(|e| e.protected) {
        out.push(status(store, working, &env.name.value).await?);
    }
    Ok(out)
}

/// One environment's configuration, released against working copy.
pub async fn status(
    store: &dyn Store,
    working: &Manifest,
    environment_name: &str,
) -> Result<ConfigStatus, OpsError> {
    environment(working, environment_name)?;
    let (working_id, working_doc) = form::of(working, environment_name)
        .ok_or_else(|| OpsError::not_found(format!("no environment `{environment_name}`"), None))?;
    let released = released(store, environment_name).await?;
    let diff = match &released {
        Some((id, manifest)) if *id != working_id => form::diff(
            form::document(manifest, environment_name).as_ref(),
            Some(&working_doc),
        ),
        _ => Vec::new(),
    };
    Ok(ConfigStatus {
        environment: environment_name.to_owned(),
        released: released.map(|(id, _)| id),
        working: working_id,
        diff,
    })
}

/// How many approvals a configuration change into `environment` needs: the most any rule
/// into it asks for any risk (a configuration serves every workflow there), and never
/// fewer than one.
pub fn approvals_required(released: &Manifest, environment: &str) -> u32 {
    released
        .promotion
        .iter()
        .filter(|r| r.to.value == environment)
        .flat_map(|r| {
            std::iter::once(r.require.approvals)
                .chain(r.by_risk.iter().map(|(_, req)| req.approvals))
                .flatten()
        })
        .max()
        .unwrap_or(0)
        .max(airlock_core::policy::PROTECTED_MIN_APPROVALS)
}

/// The verdict on a configuration change into `environment`: approvals by the approvers
/// of the *released* configuration (never the author, never a name the change itself
/// adds), and whether that can ever be met.
pub fn verdict(
    released: &Manifest,
    environment: &str,
    author: &str,
    approvals: &[String],
) -> Verdict {
    let required = approvals_required(released, environment);
    let approvers: Vec<String> = released
        .environment(environment)
        .map(|e| e.approvers.iter().map(|a| a.value.clone()).collect())
        .unwrap_or_default();
    let mut checks = Vec::new();
    if let Some(unmeetable) =
        airlock_core::policy::unmeetable_approvals(environment, required, &approvers, author)
    {
        checks.push(unmeetable);
    }
    let counted: Vec<&String> = approvals.iter().filter(|a| approvers.contains(a)).collect();
    checks.push(Check {
        requirement: "approvals".into(),
        required: format!(
            "{required} approval{} from {environment}'s approvers as released, not the author",
            if required == 1 { "" } else { "s" }
        ),
        actual: if counted.is_empty() {
            "none".into()
        } else {
            format!(
                "{} ({})",
                counted.len(),
                counted
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        met: counted.len() as u32 >= required,
    });
    Verdict {
        risk: airlock_core::model::Risk::Internal,
        checks,
    }
}

/// A configuration promotion's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigPromotion {
    pub environment: String,
    /// The working copy's configuration, which the request moves.
    pub version: String,
    /// The configuration the environment runs now.
    pub released: Option<String>,
    pub author: String,
    /// `true`: the environment runs this configuration already; nothing was opened.
    pub nothing_to_do: bool,
    /// Whether a request was opened now (`false` with a request: it was open already).
    pub opened: bool,
    pub request: Option<PromotionRequest>,
    pub verdict: Option<Verdict>,
    /// What changes, released → working copy (secret values are never part of it).
    pub diff: Vec<DiffLine>,
}

/// Opens a request to make `environment` run the working copy's configuration. Nothing to
/// do when it runs it already; the open request for the same configuration when there is
/// one; refused (not opened) when the approval rule cannot be met for this author.
pub async fn promote(
    store: &dyn Store,
    project: &Project,
    environment_name: &str,
    actor: Actor<'_>,
    now: i64,
) -> Result<ConfigPromotion, OpsError> {
    let env = environment(&project.manifest, environment_name)?;
    if !env.protected {
        return Err(OpsError::bad_request(
            format!(
                "`{environment_name}` is not protected: it runs its configuration as the files say, with no release"
            ),
            Some(
                "a configuration is promoted into a protected environment, e.g. `airlock promote --config --to production`"
                    .into(),
            ),
        ));
    }
    super::require_server_when_served(store, &project.manifest, environment_name, actor).await?;
    // Adopts the first configuration if the store never met this environment.
    effective_manifest(store, &project.manifest, actor.name, now).await?;
    let (released_id, released) =
        released(store, environment_name)
            .await?
            .ok_or_else(|| OpsError::Unavailable {
                message: format!("`{environment_name}` has no released configuration"),
            })?;
    let (version, working_doc) = form::of(&project.manifest, environment_name)
        .ok_or_else(|| OpsError::not_found(format!("no environment `{environment_name}`"), None))?;
    let mut outcome = ConfigPromotion {
        environment: environment_name.to_owned(),
        version: version.clone(),
        released: Some(released_id.clone()),
        author: actor.name.to_owned(),
        nothing_to_do: false,
        opened: false,
        request: None,
        verdict: None,
        diff: Vec::new(),
    };
    if version == released_id {
        outcome.nothing_to_do = true;
        return Ok(outcome);
    }
    outcome.diff = form::diff(
        form::document(&released, environment_name).as_ref(),
        Some(&working_doc),
    );
    if let Some(open) = super::promotion::open_request_for(
        store,
        &project.manifest,
        CONFIG_SUBJECT,
        &version,
        environment_name,
        now,
    )
    .await?
    {
        let approvals = super::promotion::approvers_of(store, &open.request.id).await?;
        outcome.verdict = Some(verdict(
            &released,
            environment_name,
            &open.request.author,
            &approvals,
        ));
        outcome.request = Some(open);
        return Ok(outcome);
    }
    let verdict = verdict(&released, environment_name, actor.name, &[]);
    if !verdict.ready_for_approval() {
        audit(
            store,
            now,
            actor.name,
            "config.refused",
            Some(environment_name),
            CONFIG_SUBJECT,
            json!({ "version": version, "verdict": verdict }),
        )
        .await?;
        outcome.verdict = Some(verdict);
        return Ok(outcome);
    }
    store_version(store, &project.manifest, environment_name, now).await?;
    let request = store
        .open_request(&NewPromotionRequest {
            id: new_id("req"),
            workflow: CONFIG_SUBJECT.to_owned(),
            version: version.clone(),
            from_environment: environment_name.to_owned(),
            to_environment: environment_name.to_owned(),
            author: actor.name.to_owned(),
            created_at: now,
        })
        .await?;
    audit(
        store,
        now,
        actor.name,
        "config.request",
        Some(environment_name),
        CONFIG_SUBJECT,
        json!({
            "request": request.request.id,
            "version": version,
            "released": released_id,
            "verdict": verdict,
            "diff": outcome.diff,
        }),
    )
    .await?;
    outcome.opened = true;
    outcome.verdict = Some(verdict);
    outcome.request = Some(request);
    Ok(outcome)
}

/// The verdict on an open configuration request with its approvals so far.
pub async fn request_verdict(
    store: &dyn Store,
    request: &PromotionRequest,
    approvals: &[String],
) -> Result<Verdict, OpsError> {
    let r = &request.request;
    let (_, released) =
        released(store, &r.to_environment)
            .await?
            .ok_or_else(|| OpsError::Unavailable {
                message: format!("`{}` has no released configuration", r.to_environment),
            })?;
    Ok(verdict(&released, &r.to_environment, &r.author, approvals))
}

/// Whether `request` is a configuration request.
pub fn is_config(request: &PromotionRequest) -> bool {
    request.request.workflow == CONFIG_SUBJECT
}
