//! Runs as people act on them: start one, look one up, retry one that died, decide the
//! approval step one waits on. The CLI (`run`, `runs show`, `runs retry`, `approve-step`)
//! and the API (`POST …/runs`, `GET /runs/{id}`, `POST /runs/{id}/retry`, `POST
//! /runs/{id}/steps/{step}/approve`) both call these, so a rule holds on both sides or on
//! neither. Executing the run is the engine's: these only change what the store holds.

use crate::{Decides, OpsError, audit, environment, nothing_deployed, require_approver};
use airlock_core::model::Manifest;
use airlock_core::project::{Project, WorkflowFile};
use airlock_store::{JournalEntry, NewRun, Run, RunFilter, RunStatus, StepDecision, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A run to start: of the version `environment` runs, with `body` as the trigger's body.
pub struct StartRun<'a> {
    /// The new run's id (`airlock_engine::Engine::new_run_id`).
    pub id: String,
    /// The environment.
    pub environment: &'a str,
    /// The workflow.
    pub workflow: &'a str,
    /// The trigger's body.
    pub body: Value,
    /// Who starts it, when known (a token's name, shown to templates as `trigger.by`); a
    /// local `airlock run` has no identity to give.
    pub by: Option<&'a str>,
    /// The working copy, run where nothing is deployed in an unprotected environment
    /// (a local `airlock run`); a server runs deployed versions only and passes `None`.
    pub working_copy: Option<(&'a Project, &'a WorkflowFile)>,
    /// Now.
    pub now: i64,
}

/// A run started: queued for any engine of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Started {
    /// The run's id.
    pub run: String,
    /// `queued`.
    pub status: String,
    /// The version it runs, to its end.
    pub version: String,
}

/// Starts a run: of the version deployed in the environment; where nothing is deployed,
/// of the working copy when one is given and the environment is not protected; refused
/// (404) otherwise. The trigger is what a webhook would carry, with the body given.
pub async fn start(
    store: &dyn Store,
    manifest: &Manifest,
    start: StartRun<'_>,
) -> Result<Started, OpsError> {
    let env = environment(manifest, start.environment)?;
    let deployed = store.deployment(start.environment, start.workflow).await?;
    let version = match (&deployed, start.working_copy) {
        (Some(deployment), _) => deployment.version.clone(),
        (None, Some((project, workflow))) if !env.protected => {
            crate::store_working_version(store, project, workflow, start.now).await?
        }
        (None, _) => return Err(nothing_deployed(env, start.workflow)),
    };
    let mut trigger = json!({
        "body": start.body,
        "headers": {},
        "query": {},
        "time": airlock_core::time::rfc3339(start.now),
    });
    if let Some(by) = start.by {
        trigger["by"] = json!(by);
    }
    store
        .enqueue(&NewRun {
            id: start.id.clone(),
            environment: start.environment.to_owned(),
            workflow: start.workflow.to_owned(),
            version: version.clone(),
            trigger: trigger.into(),
            dedupe_key: None,
            created_at: start.now,
        })
        .await?;
    Ok(Started {
        run: start.id,
        status: RunStatus::Queued.as_str().to_owned(),
        version,
    })
}

/// Runs listed when no limit is asked for.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// The most runs one listing returns, whatever is asked.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Runs matching `filter`, newest first, never more than [`MAX_LIST_LIMIT`]
/// ([`DEFAULT_LIST_LIMIT`] when the filter asks for no limit): `airlock runs` and
/// `GET …/runs` list through here.
pub async fn list(store: &dyn Store, filter: RunFilter) -> Result<Vec<Run>, OpsError> {
    let limit = filter
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .min(MAX_LIST_LIMIT);
    Ok(store
        .runs(&RunFilter {
            limit: Some(limit),
            ..filter
        })
        .await?)
}

/// A run, or a 404.
pub async fn run(store: &dyn Store, id: &str) -> Result<Run, OpsError> {
    store.run(id).await?.ok_or_else(|| no_such_run(id))
}

/// The refusal of a run id nothing answers to: what an unknown id gets, and what the API
/// answers for a run its caller may not see, so that the two cannot be told apart.
pub fn no_such_run(id: &str) -> OpsError {
    OpsError::not_found(
        format!("no run `{id}`"),
        Some("list runs with `airlock runs`".into()),
    )
}

/// A run and its journal, as `runs show` prints it and `GET /runs/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWithJournal {
    /// The run.
    pub run: Run,
    /// Its journal, in order.
    pub journal: Vec<JournalEntry>,
}

/// A run with its journal, or a 404.
pub async fn show(store: &dyn Store, id: &str) -> Result<RunWithJournal, OpsError> {
    let run = run(store, id).await?;
    let journal = store.journal(id).await?;
    Ok(RunWithJournal { run, journal })
}

/// A run put back in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retried {
    /// The run.
    pub run: String,
    /// `queued`.
    pub status: String,
}

/// Puts a dead or failed run back in the queue (409 for any other): the step that failed
/// for good and its failure handlers start over, the steps that succeeded are kept and
/// never run again. Audited as `run.retry`.
pub async fn retry(
    store: &dyn Store,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<Retried, OpsError> {
    let found = run(store, id).await?;
    if !matches!(found.status, RunStatus::Dead | RunStatus::Failed) {
        return Err(OpsError::conflict(
            format!(
                "run `{id}` is {}; only dead or failed runs are retried",
                found.status.as_str()
            ),
            None,
        ));
    }
    let journal: Vec<_> = store
        .journal(id)
        .await?
        .into_iter()
        .map(|e| e.entry)
        .collect();
    let marks = airlock_core::interpreter::retry_marks(&journal, now);
    store
        .retry_run(id, now, &marks)
        .await
        .map_err(|e| match e {
            // Someone else retried it (or it finished) since it was read.
            airlock_store::Error::Conflict(why) => OpsError::conflict(why, None),
            other => other.into(),
        })?;
    audit(
        store,
        now,
        actor,
        "run.retry",
        Some(&found.environment),
        id,
        json!({ "workflow": found.workflow }),
    )
    .await?;
    Ok(Retried {
        run: id.to_owned(),
        status: RunStatus::Queued.as_str().to_owned(),
    })
}

/// A person's decision on the approval step a run waits on.
pub struct DecideStep<'a> {
    /// The run.
    pub run: &'a str,
    /// The approval step.
    pub step: &'a str,
    /// Who decides: one of the run's environment's approvers.
    pub approver: &'a str,
    /// How they were identified (a typed name is refused in a protected environment of a
    /// store served with tokens).
    pub via: super::Via,
    /// Yes or no.
    pub approved: bool,
    /// Why, for the audit log.
    pub comment: Option<String>,
    /// Now.
    pub now: i64,
}

/// A decided step; the run is queued again and goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepDecided {
    /// The run.
    pub run: String,
    /// The step.
    pub step: String,
    /// Yes or no.
    pub approved: bool,
}

/// Decides an approval step: 404 for an unknown run; 403 (audited) for anyone who is not
/// an approver of the run's environment; 409 unless the run waits on exactly that step
/// (the store checks it inside the decision's write, so a race cannot slip past it).
/// Audited as `step.approve` or `step.reject`.
pub async fn decide_step(
    store: &dyn Store,
    manifest: &Manifest,
    decide: DecideStep<'_>,
) -> Result<StepDecided, OpsError> {
    let found = run(store, decide.run).await?;
    let actor = super::Actor {
        name: decide.approver,
        via: decide.via,
    };
    super::require_server_when_served(store, manifest, &found.environment, actor).await?;
    // The approvers a protected environment runs with are its released configuration's.
    let manifest =
        &super::config::effective_manifest(store, manifest, decide.approver, decide.now).await?;
    require_approver(
        store,
        manifest,
        &found.environment,
        decide.approver,
        Decides::Step {
            run: decide.run,
            step: decide.step,
        },
        decide.now,
    )
    .await?;
    store
        .decide_step(&StepDecision {
            run: decide.run.to_owned(),
            step: decide.step.to_owned(),
            approver: decide.approver.to_owned(),
            approved: decide.approved,
            decided_at: decide.now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(why) => OpsError::conflict(
                why,
                Some(format!(
                    "`airlock runs show {}` shows the step it waits on",
                    decide.run
                )),
            ),
            other => other.into(),
        })?;
    audit(
        store,
        decide.now,
        decide.approver,
        if decide.approved {
            "step.approve"
        } else {
            "step.reject"
        },
        Some(&found.environment),
        decide.run,
        json!({ "step": decide.step, "comment": decide.comment }),
    )
    .await?;
    Ok(StepDecided {
        run: decide.run.to_owned(),
        step: decide.step.to_owned(),
        approved: decide.approved,
    })
}
