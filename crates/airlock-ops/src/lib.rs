//! The decisions of the path between environments, shared by the CLI and the API.
//!
//! Each function takes the store, the project (or its manifest), who acts and the clock's
//! now, and returns a result that serializes to JSON; the CLI prints it, the API answers
//! it. Refusals are [`OpsError`]s whose variants say how the API answers them (400, 403,
//! 404, 409); the CLI prints the same message and hint and exits 2.
//!
//! One module per area: [`deploy`], [`promotion`] (promote, approve, reject, rollback,
//! releases), [`diff`], [`readiness`], [`evidence`], [`validate`], [`secrets`] (the declared
//! secrets, set or not; setting one), [`check`] (each binding of an environment reached for
//! real), [`runs`] (start, show, retry, decide an approval step), [`retention`], [`tokens`],
//! and [`audit`], the one way anything is written to the audit log: a failed audit write
//! fails the operation, it is never skipped; [`audit_chain`] is the chain's head, its
//! verification against an anchor, and the anchor file.

pub mod access;
pub mod audit_chain;
pub mod bundle;
pub mod check;
pub mod config;
pub mod deploy;
pub mod diff;
pub mod evidence;
pub mod notify;
pub mod promotion;
pub mod readiness;
pub mod retention;
pub mod runs;
pub mod secrets;
pub mod tokens;
pub mod validate;

/// The clock every use case reads its now from (the fronts hold one).
pub use airlock_engine::Clock;
pub use audit_chain::{AuditHead, audit_head};

/// Where a server reads the project it serves. It is read again for each operation
/// that needs it, so the API and the console judge the files as they are now, as each CLI
/// command does.
pub trait ProjectSource: Send + Sync {
    /// Reads and loads the project's files (loading never fails; problems are diagnostics).
    /// `Err` only when the files cannot be read.
    fn load(&self) -> Result<airlock_core::project::Loaded, String>;
}

use airlock_core::canonical;
use airlock_core::diagnostic::suggestion;
use airlock_core::model::{Environment, Manifest};
use airlock_core::project::{Project, WorkflowFile};
use airlock_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why an operation was refused, and how an HTTP client is answered.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request does not make sense (400).
    #[error("{message}")]
    BadRequest {
        message: String,
        help: Option<String>,
    },
    /// The rules of the path refuse it, whoever asks (403); the refusal is audited.
    #[error("{message}")]
    Forbidden {
        message: String,
        help: Option<String>,
    },
    /// A workflow, environment, request or release that does not exist (404).
    #[error("{message}")]
    NotFound {
        message: String,
        help: Option<String>,
    },
    /// The state does not allow it now (409): nothing to roll back, a request already
    /// decided, a release that raced another.
    #[error("{message}")]
    Conflict {
        message: String,
        help: Option<String>,
    },
    /// The files are invalid (400): every problem, positioned as `validate` reports it
    /// (a bundle a deploy carried, which did not pass the bundle's rules or `validate`).
    #[error("{message}")]
    Invalid {
        message: String,
        problems: Vec<validate::Problem>,
    },
    /// The store failed while the operation was under way (503).
    #[error("{message}")]
    Unavailable { message: String },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] airlock_store::Error),
}

impl OpsError {
    pub fn bad_request(message: impl Into<String>, help: Option<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            help,
        }
    }

    pub fn forbidden(message: impl Into<String>, help: Option<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
            help,
        }
    }

    pub fn not_found(message: impl Into<String>, help: Option<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            help,
        }
    }

    pub fn conflict(message: impl Into<String>, help: Option<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            help,
        }
    }

    /// The HTTP status a front answers it with (the API, the console): 400, 403, 404,
    /// 409, or 503 for a store that fails (a store's own not-found and conflict keep
    /// theirs).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } | Self::Invalid { .. } => 400,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } | Self::Store(airlock_store::Error::NotFound(_)) => 404,
            Self::Conflict { .. } | Self::Store(airlock_store::Error::Conflict(_)) => 409,
            Self::Unavailable { .. } | Self::Store(_) => 503,
        }
    }

    /// The hint, when there is one.
    pub fn help(&self) -> Option<&str> {
        match self {
            Self::BadRequest { help, .. }
            | Self::Forbidden { help, .. }
            | Self::NotFound { help, .. }
            | Self::Conflict { help, .. } => help.as_deref(),
            Self::Invalid { .. } => {
                Some("each problem names its file, line and column: fix them, then deploy again")
            }
            Self::Unavailable { .. } | Self::Store(_) => None,
        }
    }
}

/// Reads the project a server serves (off the async threads: it reads files); 503 when
/// the files cannot be read.
pub async fn load_served(
    source: std::sync::Arc<dyn ProjectSource>,
) -> Result<airlock_core::project::Loaded, OpsError> {
    tokio::task::spawn_blocking(move || source.load())
        .await
        .map_err(|e| OpsError::Unavailable {
            message: format!("reading the project stopped: {e}"),
        })?
        .map_err(|e| OpsError::Unavailable {
            message: format!("the project cannot be read: {e}"),
        })
}

/// The project a server serves, valid: what every use case that judges or deploys reads.
/// 409 while it has problems: nothing is judged on files that do not validate.
pub async fn served_project(
    source: std::sync::Arc<dyn ProjectSource>,
) -> Result<Project, OpsError> {
    let loaded = load_served(source).await?;
    if !loaded.diagnostics.is_empty() {
        let n = loaded.diagnostics.len();
        return Err(OpsError::conflict(
            format!(
                "the server's project has {n} problem{}: nothing is judged or deployed until it validates",
                if n == 1 { "" } else { "s" }
            ),
            Some("see them with POST /api/v1/validate".into()),
        ));
    }
    Ok(loaded.project)
}

/// A workflow of the project, or a 404 with a did-you-mean.
pub fn workflow<'a>(project: &'a Project, name: &str) -> Result<&'a WorkflowFile, OpsError> {
    project.workflow(name).ok_or_else(|| {
        let names = project.workflows.iter().map(|w| w.workflow.name.as_str());
        OpsError::not_found(
            format!("no workflow named `{name}`"),
            suggestion(name, names),
        )
    })
}

/// An environment of the manifest, or a 404 with a did-you-mean.
pub fn environment<'a>(manifest: &'a Manifest, name: &str) -> Result<&'a Environment, OpsError> {
    manifest.environment(name).ok_or_else(|| {
        let names = manifest.environments.iter().map(|e| e.name.as_str());
        OpsError::not_found(
            format!("no environment named `{name}`"),
            suggestion(name, names),
        )
    })
}

/// The refusal of a run (404) of `workflow` in `environment`, where none of its versions
/// is deployed: `airlock run` here for a protected environment, and the API (and so `airlock
/// run --server`) for any, since a server runs deployed versions only. One wording, so the
/// same mistake reads the same on both sides.
pub fn nothing_deployed(environment: &Environment, workflow: &str) -> OpsError {
    let name = &environment.name.value;
    if environment.protected {
        OpsError::not_found(
            format!(
                "`{name}` is protected and runs only released versions; none of `{workflow}` is released there"
            ),
            Some("release a version with `airlock promote`".into()),
        )
    } else {
        OpsError::not_found(
            format!("no version of `{workflow}` is deployed in `{name}`"),
            Some(format!(
                "a server runs what is deployed: `airlock deploy --env {name}` first"
            )),
        )
    }
}

/// How the one acting reached the use case: on this machine, naming themselves (`--as`),
/// or through the API, named by the token they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The CLI on the store's machine: the name is whatever was typed.
    Local,
    /// The API: the name is the token's, which cannot be typed.
    Token,
}

/// Who acts, and how they were identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub via: Via,
}

impl<'a> Actor<'a> {
    /// Someone at this machine's shell, by the name they gave.
    pub fn local(name: &'a str) -> Self {
        Self {
            name,
            via: Via::Local,
        }
    }

    /// The holder of an API token, by the token's name.
    pub fn token(name: &'a str) -> Self {
        Self {
            name,
            via: Via::Token,
        }
    }
}

/// Refuses (403) a local change to a protected environment once the store is served with
/// API tokens: from then on identities are tokens, and a name typed after `--as` proves
/// nothing. A store nobody created a token for is a single machine's (the lightweight
/// staging of a small team), where `--as` is the identity.
pub async fn require_server_when_served(
    store: &dyn Store,
    manifest: &Manifest,
    environment_name: &str,
    actor: Actor<'_>,
) -> Result<(), OpsError> {
    if actor.via == Via::Token || !environment(manifest, environment_name)?.protected {
        return Ok(());
    }
    let served = store
        .tokens(None)
        .await?
        .iter()
        .any(|t| t.revoked_at.is_none());
    if !served {
        return Ok(());
    }
    Err(OpsError::forbidden(
        format!(
            "this store is served with API tokens: a change to protected `{environment_name}` is made through the server, with a token, not with a typed name"
        ),
        Some(
            "add `--server URL` (or set AIRLOCK_SERVER) and put your own token in AIRLOCK_TOKEN"
                .into(),
        ),
    ))
}

/// What an approver decides: the subject of [`require_approver`]'s audited refusal.
#[derive(Debug, Clone, Copy)]
pub enum Decides<'a> {
    /// An approval step of a run (`approve-step`).
    Step { run: &'a str, step: &'a str },
    /// A promotion request (`approve` or `reject`).
    Promotion {
        request: &'a str,
        workflow: &'a str,
        approve: bool,
    },
}

/// Refuses (403) anyone but one of `environment`'s approvers, and audits the refusal.
///
/// The one definition of "who may decide" for every approval, whoever asks: the CLI
/// (`approve-step`, `approve`, `reject` with `--as`) and the API (the token's name), so
/// that a name missing from `approvers` is refused the same way everywhere; nothing
/// falls back to another environment's approvers (DESIGN §5.11). The refusal is a rule
/// of the path, not of a token's role, so it is audited as `…refused` (not `api.denied`).
pub async fn require_approver(
    store: &dyn Store,
    manifest: &Manifest,
    environment_name: &str,
    name: &str,
    decides: Decides<'_>,
    now: i64,
) -> Result<(), OpsError> {
    let env = environment(manifest, environment_name)?;
    if env.approvers.iter().any(|a| a.value == name) {
        return Ok(());
    }
    let reason = format!("`{name}` is not an approver in environment `{environment_name}`");
    let (action, subject, detail) = match decides {
        Decides::Step { run, step } => (
            "approve-step.refused",
            run,
            json!({ "step": step, "reason": reason }),
        ),
        Decides::Promotion {
            request,
            workflow,
            approve,
        } => (
            if approve {
                "approve.refused"
            } else {
                "reject.refused"
            },
            workflow,
            json!({ "request": request, "reason": reason }),
        ),
    };
    audit(
        store,
        now,
        name,
        action,
        Some(environment_name),
        subject,
        detail,
    )
    .await?;
    let help = if env.approvers.is_empty() {
        format!(
            "`{environment_name}` lists no approvers: add them under `environments.{environment_name}.approvers` in airlock.yaml"
        )
    } else {
        format!(
            "approvers of `{environment_name}`: {}",
            env.approvers
                .iter()
                .map(|a| a.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(OpsError::forbidden(reason, Some(help)))
}

/// Appends an audit event.
pub async fn audit(
    store: &dyn Store,
    now: i64,
    actor: &str,
    action: &str,
    environment: Option<&str>,
    subject: &str,
    detail: Value,
) -> Result<(), OpsError> {
    store
        .audit(&airlock_store::NewAuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: action.to_owned(),
            environment: environment.map(str::to_owned),
            subject: subject.to_owned(),
            detail,
        })
        .await?;
    Ok(())
}

/// The audit log, oldest first: every event, or those of one environment of the manifest
/// (`only`; events of no environment, such as policy changes, belong to none). What
/// `airlock audit` lists and `GET …/audit` answers.
pub async fn audit_events(
    store: &dyn Store,
    manifest: &Manifest,
    only: Option<&str>,
) -> Result<Vec<airlock_store::AuditEvent>, OpsError> {
    if let Some(name) = only {
        environment(manifest, name)?;
    }
    let events = store.audit_log().await?;
    Ok(match only {
        Some(name) => events
            .into_iter()
            .filter(|e| e.event.environment.as_deref() == Some(name))
            .collect(),
        None => events,
    })
}

/// One page of the audit log, newest first: every event's, or one environment's (which
/// must be the project's).
pub async fn audit_page(
    store: &dyn Store,
    manifest: &Manifest,
    only: Option<&str>,
    page: airlock_store::Page,
) -> Result<Vec<airlock_store::AuditEvent>, OpsError> {
    if let Some(name) = only {
        environment(manifest, name)?;
    }
    Ok(store.audit_page(only, page).await?)
}

/// One page of what an environment's record-mode bindings received, newest first.
pub async fn records_page(
    store: &dyn Store,
    manifest: &Manifest,
    environment_name: &str,
    page: airlock_store::Page,
) -> Result<Vec<airlock_store::TestRecord>, OpsError> {
    environment(manifest, environment_name)?;
    Ok(store.records_page(environment_name, page).await?)
}

/// Stores the working copy's version of a workflow and returns its id.
pub async fn store_working_version(
    store: &dyn Store,
    project: &Project,
    workflow: &WorkflowFile,
    now: i64,
) -> Result<String, OpsError> {
    let id = canonical::version_id(&workflow.workflow).0;
    let canonical_json =
        String::from_utf8_lossy(&canonical::canonical_bytes(&workflow.workflow)).into_owned();
    store
        .put_version(&airlock_store::WorkflowVersion {
            id: id.clone(),
            workflow: workflow.workflow.name.value.clone(),
            canonical: canonical_json,
            source: project.files[workflow.file].text.clone(),
            created_at: now,
        })
        .await?;
    Ok(id)
}

/// The project's policy as data: promotion rules and each environment's protection,
/// approvers and egress. Changes to it are audited (they change who may do what).
pub fn policy(manifest: &Manifest) -> Value {
    let rules: Vec<Value> = manifest
        .promotion
        .iter()
        .map(|rule| {
            json!({
                "from": rule.from.value,
                "to": rule.to.value,
                "require": rule.require,
                "by_risk": rule.by_risk,
                "freeze": rule.freeze,
            })
        })
        .collect();
    let environments: Vec<Value> = manifest
        .environments
        .iter()
        .map(|e| {
            json!({
                "name": e.name.value,
                "protected": e.protected,
                "approvers": e.approvers.iter().map(|a| &a.value).collect::<Vec<_>>(),
                "egress": e.egress.iter().map(|h| &h.value).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "promotion": rules, "environments": environments })
}

/// Appends a `policy.change` audit event when the policy differs from the one last
/// audited (or none was).
pub async fn audit_policy_change(
    store: &dyn Store,
    manifest: &Manifest,
    actor: &str,
    now: i64,
) -> Result<(), OpsError> {
    use sha2::{Digest, Sha256};
    let policy = policy(manifest);
    let hash = hex::encode(Sha256::digest(policy.to_string().as_bytes()));
    let log = store.audit_log().await?;
    let last = log
        .iter()
        .rev()
        .find(|e| e.event.action == "policy.change")
        .and_then(|e| {
            e.event
                .detail
                .get("hash")
                .and_then(|h| h.as_str())
                .map(str::to_owned)
        });
    if last.as_deref() != Some(hash.as_str()) {
        audit(
            store,
            now,
            actor,
            "policy.change",
            None,
            "airlock.yaml",
            json!({ "hash": hash, "policy": policy }),
        )
        .await?;
    }
    Ok(())
}

/// A release's evidence with the audit chain's head at the time (`audit_head`: the newest
/// event's `SEQ:HASH`), so that every release record anchors the chain before it: a later
/// truncation of the log is caught against any release.
pub(crate) async fn with_audit_head(
    store: &dyn Store,
    mut evidence: Value,
) -> Result<Value, OpsError> {
    let head = audit_head(store).await?.map(|h| h.to_string());
    if let Value::Object(map) = &mut evidence {
        map.insert("audit_head".into(), json!(head));
    }
    Ok(evidence)
}

/// A new id with a readable prefix (`req_…`, `rel_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", &airlock_engine::new_run_id()[4..])
}

/// The first twelve characters of a version id.
pub fn short(version: &str) -> &str {
    &version[..12.min(version.len())]
}

#[cfg(test)]
mod tests;
