//! The path to a protected environment: `promote`, `approve`, `reject`, `rollback`,
//! `releases`.
//!
//! A promotion judges the exact hash the source runs (`policy::verdict` with parity and
//! evidence) and opens a request; an approver of the target, never the author, approves
//! it; when every requirement holds it becomes a release (`Store::release`, a
//! compare-and-set on the current release). A rollback is a release of an earlier version.
//!
//! Inside one of the policy's freeze windows a promotion is refused unless its author
//! states an exception (`promote --freeze-exception REASON`). The exception is kept with
//! the request (as evidence on its version, `freeze_exception`, naming the request), so
//! that every later judgement of that request (each approval) sees it; it is in the
//! verdict the approvers are shown and in the audit log. It lifts the freeze alone: every
//! other requirement, the approvals included, still holds.

use super::{OpsError, audit, audit_policy_change, environment, new_id, workflow as find_workflow};
use airlock_core::policy::{self, Facts, FreezeException, Verdict};
use airlock_core::project::Project;
use airlock_core::suite::Category;
use airlock_store::{
    Approval, NewEvidence, NewPromotionRequest, NewRelease, OutcomeQuery, PromotionRequest,
    Release, ReleaseKind, RequestStatus, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The evidence kind a request's freeze exception is kept under.
pub const FREEZE_EXCEPTION_KIND: &str = "freeze_exception";

/// Facts about `version` of `workflow` on its way from `from` to `to`.
#[allow(clippy::too_many_arguments)]
async fn facts(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    version: &str,
    (from, to): (&str, &str),
    approvals: Vec<String>,
    freeze_exception: Option<FreezeException>,
    now: i64,
) -> Result<Facts, OpsError> {
    let evidence = store.evidence(workflow, Some(version)).await?;
    let tested = super::evidence::newest_scenarios(&evidence);
    let tests_passed = tested.map(|e| e.evidence.passed);
    let coverage = |category| tested.and_then(|e| super::evidence::covered(e, category));
    let outcomes = store
        .run_outcomes(&OutcomeQuery {
            environment: from.to_owned(),
            workflow: workflow.to_owned(),
            version: Some(version.to_owned()),
            ..OutcomeQuery::default()
        })
        .await?;
    // Whether the parity report between the environments (the one `diff` shows) has no
    // drift that concerns this workflow.
    let report = super::diff::report(store, project, from, to).await?;
    let parity_clean = report.clean_for(&find_workflow(project, workflow)?.workflow);
    Ok(Facts {
        tests_passed,
        branches: coverage(Category::Branches),
        failure_paths: coverage(Category::FailurePaths),
        parity_clean: Some(parity_clean),
        source_runs: saturating_u32(outcomes.finished),
        source_failures: saturating_u32(outcomes.failed),
        approvals,
        now_ms: now,
        freeze_exception,
    })
}

/// The freeze exception stated when `request` was opened, if one was.
async fn freeze_exception_of(
    store: &dyn Store,
    request: &PromotionRequest,
) -> Result<Option<FreezeException>, OpsError> {
    let r = &request.request;
    let evidence = store.evidence(&r.workflow, Some(&r.version)).await?;
    Ok(evidence
        .into_iter()
        .filter(|e| e.evidence.kind == FREEZE_EXCEPTION_KIND)
        .find(|e| e.evidence.summary["request"] == r.id.as_str())
        .and_then(|e| {
            let summary = &e.evidence.summary;
            Some(FreezeException {
                by: summary["by"].as_str()?.to_owned(),
                reason: summary["reason"].as_str()?.to_owned(),
            })
        }))
}

fn verdict_of(
    project: &Project,
    workflow: &str,
    from: &str,
    to: &str,
    facts: &Facts,
) -> Result<Verdict, OpsError> {
    let manifest = &project.manifest;
    let rule = policy::rule(manifest, from, to).ok_or_else(|| {
        OpsError::bad_request(
            format!("the promotion policy has no rule `{from} -> {to}`"),
            Some(format!(
                "add `promotion: {{ {from} -> {to}: {{ require: … }} }}` to airlock.yaml"
            )),
        )
    })?;
    let risk = policy::workflow_risk(manifest, &find_workflow(project, workflow)?.workflow);
    Ok(policy::verdict(rule, risk, facts))
}

/// A promotion's outcome: the request (when the gate let it open), the verdict, and the
/// release (when no approval was still needed). Deserialize too, as every result here:
/// the CLI reads it back from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub workflow: String,
    /// The exact version the source runs, which the request moves.
    pub version: String,
    pub from: String,
    pub to: String,
    pub author: String,
    /// Whether a request was opened (`false`: the gate refused it; see the verdict).
    pub opened: bool,
    pub request: Option<PromotionRequest>,
    pub verdict: Verdict,
    pub release: Option<Release>,
}

/// Opens a promotion request for the exact version `from` runs into `to`, judged by the
/// policy. A request the gate refuses is not opened (`opened: false`) and the refusal is
/// audited; one that needs no approval is released at once. `freeze_exception` is the
/// author's reason for going ahead inside a freeze window (see the module's
/// documentation); it is kept with the request whether a window covers now or not, so
/// that a freeze that begins before the last approval does not strand the request.
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    from: &str,
    to: &str,
    author: &str,
    freeze_exception: Option<&str>,
    now: i64,
) -> Result<Promotion, OpsError> {
    let freeze_exception = match freeze_exception.map(str::trim) {
        Some("") => {
            return Err(OpsError::bad_request(
                "a freeze exception says why: its reason is empty",
                Some("e.g. --freeze-exception \"the fix for INC-42 cannot wait\"".into()),
            ));
        }
        Some(reason) => Some(FreezeException {
            by: author.to_owned(),
            reason: reason.to_owned(),
        }),
        None => None,
    };
    find_workflow(project, workflow)?;
    environment(&project.manifest, from)?;
    environment(&project.manifest, to)?;
    audit_policy_change(store, &project.manifest, author, now).await?;
    let version = store
        .deployment(from, workflow)
        .await?
        .map(|d| d.version)
        .ok_or_else(|| {
            OpsError::conflict(
                format!("`{from}` runs no version of `{workflow}`"),
                Some(format!("deploy it first: `airlock deploy --env {from}`")),
            )
        })?;
    let facts = facts(
        store,
        project,
        workflow,
        &version,
        (from, to),
        Vec::new(),
        freeze_exception.clone(),
        now,
    )
    .await?;
    let verdict = verdict_of(project, workflow, from, to, &facts)?;
    let mut promotion = Promotion {
        workflow: workflow.to_owned(),
        version: version.clone(),
        from: from.to_owned(),
        to: to.to_owned(),
        author: author.to_owned(),
        opened: false,
        request: None,
        verdict,
        release: None,
    };
    if !promotion.verdict.ready_for_approval() {
        audit(
            store,
            now,
            author,
            "promotion.refused",
            Some(to),
            workflow,
            json!({ "version": version, "verdict": promotion.verdict }),
        )
        .await?;
        return Ok(promotion);
    }
    let request = store
        .open_request(&NewPromotionRequest {
            id: new_id("req"),
            workflow: workflow.to_owned(),
            version: version.clone(),
            from_environment: from.to_owned(),
            to_environment: to.to_owned(),
            author: author.to_owned(),
            created_at: now,
        })
        .await?;
    if let Some(exception) = &freeze_exception {
        store
            .add_evidence(&NewEvidence {
                workflow: workflow.to_owned(),
                version: version.clone(),
                kind: FREEZE_EXCEPTION_KIND.into(),
                passed: true,
                summary: json!({
                    "request": request.request.id,
                    "by": exception.by,
                    "reason": exception.reason,
                }),
                at: now,
            })
            .await?;
    }
    audit(
        store,
        now,
        author,
        "promotion.request",
        Some(to),
        workflow,
        json!({
            "request": request.request.id,
            "version": version,
            "verdict": promotion.verdict,
            "freeze_exception": freeze_exception,
        }),
    )
    .await?;
    if promotion.verdict.passed() {
        promotion.release =
            Some(release(store, &request, Vec::new(), &promotion.verdict, now).await?);
    }
    promotion.opened = true;
    promotion.request = Some(request);
    Ok(promotion)
}

/// Makes the request a release (the verdict passed).
async fn release(
    store: &dyn Store,
    request: &PromotionRequest,
    approvers: Vec<String>,
    verdict: &Verdict,
    now: i64,
) -> Result<Release, OpsError> {
    let r = &request.request;
    let current = store.releases(&r.to_environment, &r.workflow).await?;
    let evidence = store.evidence(&r.workflow, Some(&r.version)).await?;
    // The newest scenario result: what the release was tested with (a freeze exception is
    // in the verdict already).
    let tested = super::evidence::newest_scenarios(&evidence);
    let release = store
        .release(&NewRelease {
            id: new_id("rel"),
            environment: r.to_environment.clone(),
            workflow: r.workflow.clone(),
            version: r.version.clone(),
            kind: ReleaseKind::Promotion,
            request: Some(r.id.clone()),
            author: r.author.clone(),
            approvers,
            evidence: json!({ "verdict": verdict, "evidence": tested }),
            expected_current: current.first().map(|c| c.release.id.clone()),
            at: now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(m) => OpsError::conflict(
                format!("release refused: {m}"),
                Some("look at `airlock releases` and try again".into()),
            ),
            other => OpsError::Store(other),
        })?;
    audit(
        store,
        now,
        &r.author,
        "release",
        Some(&r.to_environment),
        &r.workflow,
        json!({ "release": release.release.id, "version": r.version, "previous": release.previous, "request": r.id }),
    )
    .await?;
    Ok(release)
}

/// The promotion request a decision is about, or a 404.
pub async fn request(store: &dyn Store, id: &str) -> Result<PromotionRequest, OpsError> {
    store
        .request(id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("no promotion request `{id}`"), None))
}

/// An approver's decision and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The request's id.
    pub request: String,
    pub workflow: String,
    pub version: String,
    pub from: String,
    pub to: String,
    /// Who decided.
    pub approver: String,
    /// `approved` or `rejected`.
    pub status: DecisionStatus,
    pub reason: Option<String>,
    /// The gate's verdict with every approval so far (an approval only).
    pub verdict: Option<Verdict>,
    /// The release, when the approval completed the requirements.
    pub release: Option<Release>,
}

/// What an approver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionStatus {
    Approved,
    Rejected,
}

/// Approves (or rejects) request `request_id` as `approver`, who must be an approver of
/// the target and not the request's author; refusals are audited. An approval that
/// completes the requirements makes the release.
pub async fn decide(
    store: &dyn Store,
    project: &Project,
    request_id: &str,
    approver: &str,
    approve: bool,
    reason: Option<&str>,
    now: i64,
) -> Result<Decision, OpsError> {
    let request = request(store, request_id).await?;
    let r = &request.request;
    super::require_approver(
        store,
        &project.manifest,
        &r.to_environment,
        approver,
        super::Decides::Promotion {
            request: &r.id,
            workflow: &r.workflow,
            approve,
        },
        now,
    )
    .await?;
    let refusal = if approver == r.author {
        Some(OpsError::forbidden(
            format!("`{approver}` opened this request and cannot approve their own promotion"),
            None,
        ))
    } else if request.status != RequestStatus::Open {
        Some(OpsError::conflict(
            format!("request {request_id} is {}", request.status.as_str()),
            None,
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        audit(
            store,
            now,
            approver,
            if approve {
                "approve.refused"
            } else {
                "reject.refused"
            },
            Some(&r.to_environment),
            &r.workflow,
            json!({ "request": r.id, "reason": refusal.to_string() }),
        )
        .await?;
        return Err(refusal);
    }
    store
        .decide_request(&Approval {
            request: r.id.clone(),
            approver: approver.to_owned(),
            approved: approve,
            reason: reason.map(str::to_owned),
            at: now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(_) | airlock_store::Error::NotFound(_) => {
                OpsError::conflict(e.to_string(), None)
            }
            other => OpsError::Unavailable {
                message: other.to_string(),
            },
        })?;
    audit(
        store,
        now,
        approver,
        if approve { "approve" } else { "reject" },
        Some(&r.to_environment),
        &r.workflow,
        json!({ "request": r.id, "reason": reason }),
    )
    .await?;
    let mut decision = Decision {
        request: r.id.clone(),
        workflow: r.workflow.clone(),
        version: r.version.clone(),
        from: r.from_environment.clone(),
        to: r.to_environment.clone(),
        approver: approver.to_owned(),
        status: if approve {
            DecisionStatus::Approved
        } else {
            DecisionStatus::Rejected
        },
        reason: reason.map(str::to_owned),
        verdict: None,
        release: None,
    };
    if !approve {
        return Ok(decision);
    }
    let approvers: Vec<String> = store
        .approvals(&r.id)
        .await?
        .into_iter()
        .filter(|a| a.approved)
        .map(|a| a.approver)
        .collect();
    let facts = facts(
        store,
        project,
        &r.workflow,
        &r.version,
        (&r.from_environment, &r.to_environment),
        approvers.clone(),
        freeze_exception_of(store, &request).await?,
        now,
    )
    .await?;
    let verdict = verdict_of(
        project,
        &r.workflow,
        &r.from_environment,
        &r.to_environment,
        &facts,
    )?;
    if verdict.passed() {
        decision.release = Some(release(store, &request, approvers, &verdict, now).await?);
    }
    decision.verdict = Some(verdict);
    Ok(decision)
}

/// A rollback: the new release and the earlier one it returned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The release the rollback made (kind `rollback`), now current.
    pub release: Release,
    /// The earlier release whose version runs again.
    pub restored: Release,
}

/// Makes `environment` run the release before the current one of `workflow` again (or
/// release `to`), at once. Runs in flight finish on the version they started with.
pub async fn rollback(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    environment_name: &str,
    to: Option<&str>,
    author: &str,
    now: i64,
) -> Result<Rollback, OpsError> {
    environment(&project.manifest, environment_name)?;
    let history = store.releases(environment_name, workflow).await?;
    let Some(current) = history.first() else {
        return Err(OpsError::conflict(
            format!(
                "`{workflow}` was never released in `{environment_name}`: nothing to roll back"
            ),
            None,
        ));
    };
    let target = match to {
        Some(id) => history.iter().find(|r| r.release.id == id).ok_or_else(|| {
            OpsError::not_found(
                format!("release `{id}` was never made for `{workflow}` in `{environment_name}`"),
                Some(format!(
                    "list them with `airlock releases {workflow} --env {environment_name}`"
                )),
            )
        })?,
        None => {
            let previous = current.previous.as_deref().ok_or_else(|| {
                OpsError::conflict(
                    format!(
                        "release {} is the first of `{workflow}` in `{environment_name}`: there is no previous one",
                        current.release.id
                    ),
                    None,
                )
            })?;
            history
                .iter()
                .find(|r| r.release.id == previous)
                .ok_or_else(|| {
                    OpsError::not_found(format!("release {previous} is missing"), None)
                })?
        }
    };
    let release = store
        .release(&NewRelease {
            id: new_id("rel"),
            environment: environment_name.to_owned(),
            workflow: workflow.to_owned(),
            version: target.release.version.clone(),
            kind: ReleaseKind::Rollback,
            request: None,
            author: author.to_owned(),
            approvers: Vec::new(),
            evidence: json!({ "rollback_to": target.release.id, "from": current.release.id }),
            expected_current: Some(current.release.id.clone()),
            at: now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(_) => {
                OpsError::conflict(format!("rollback refused: {e}"), None)
            }
            other => OpsError::Unavailable {
                message: format!("rollback refused: {other}"),
            },
        })?;
    audit(
        store,
        now,
        author,
        "rollback",
        Some(environment_name),
        workflow,
        json!({ "release": release.release.id, "to": target.release.id, "version": target.release.version }),
    )
    .await?;
    Ok(Rollback {
        release,
        restored: target.clone(),
    })
}

/// One release in a workflow's history, with the failure rate of the runs accepted while
/// it was current (after) and while the one before it was (before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRow {
    pub release: String,
    /// `promotion` or `rollback`.
    pub kind: ReleaseKind,
    pub version: String,
    pub author: String,
    pub approvers: Vec<String>,
    /// When, in milliseconds since the epoch.
    pub at: i64,
    pub previous: Option<String>,
    pub runs_before: usize,
    pub failed_before: usize,
    pub runs_after: usize,
    pub failed_after: usize,
    /// Whether it is the current release.
    pub current: bool,
}

/// A count as the policy's facts hold it (a count past `u32::MAX` is as good as it).
pub(super) fn saturating_u32(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The release history of `workflow` in `environment`, newest first.
pub async fn releases(
    store: &dyn Store,
    workflow: &str,
    environment: &str,
) -> Result<Vec<ReleaseRow>, OpsError> {
    let history = store.releases(environment, workflow).await?;
    // Runs are attributed to the release that was current when they were accepted: the
    // window of release i runs from its time to that of the next one (newer, at i - 1).
    // Each window is counted once, by the store: it is release i's "after" and release
    // i - 1's "before".
    let mut windows = Vec::with_capacity(history.len());
    for (i, release) in history.iter().enumerate() {
        let until = i.checked_sub(1).map(|newer| history[newer].release.at);
        let outcomes = store
            .run_outcomes(&OutcomeQuery {
                environment: environment.to_owned(),
                workflow: workflow.to_owned(),
                version: None,
                from: Some(release.release.at),
                until,
            })
            .await?;
        windows.push((outcomes.finished as usize, outcomes.failed as usize));
    }
    let mut rows = Vec::new();
    for (i, release) in history.iter().enumerate() {
        let (runs_after, failed_after) = windows[i];
        let (runs_before, failed_before) = windows.get(i + 1).copied().unwrap_or((0, 0));
        rows.push(ReleaseRow {
            release: release.release.id.clone(),
            kind: release.release.kind,
            version: release.release.version.clone(),
            author: release.release.author.clone(),
            approvers: release.release.approvers.clone(),
            at: release.release.at,
            previous: release.previous.clone(),
            runs_before,
            failed_before,
            runs_after,
            failed_after,
            current: i == 0,
        });
    }
    Ok(rows)
}
