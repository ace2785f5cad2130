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

use super::{
    Actor, OpsError, audit, audit_policy_change, config, environment, new_id,
    require_server_when_served, workflow as find_workflow,
};
use crate::notify;
use airlock_core::config::CONFIG_SUBJECT;
use airlock_core::model::Manifest;
use airlock_core::model::manifest::DEFAULT_REQUEST_LIFETIME_MS;
use airlock_core::notify::{Event, EventKind};
use airlock_core::policy::{self, Facts, FreezeException, Gate, Verdict};
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
    author: &str,
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
        gate: gate(&project.manifest, to, author),
    })
}

/// The target's gate as it runs: protected or not, its approvers, the author.
fn gate(manifest: &Manifest, to: &str, author: &str) -> Gate {
    let env = manifest.environment(to);
    Gate {
        protected: env.is_some_and(|e| e.protected),
        approvers: env
            .map(|e| e.approvers.iter().map(|a| a.value.clone()).collect())
            .unwrap_or_default(),
        author: author.to_owned(),
    }
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

/// A promotion's outcome: the request (when the gate let it open, or the one already open
/// for this version), the verdict, and the release (when no approval was still needed).
/// Deserialize too, as every result here: the CLI reads it back from the API and prints it
/// as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub workflow: String,
    /// The exact version the source runs, which the request moves.
    pub version: String,
    pub from: String,
    pub to: String,
    pub author: String,
    /// Whether a request was opened now (`false` with no request: the gate refused it, see
    /// the verdict; `false` with a request: that one was open already for this version).
    pub opened: bool,
    /// The target runs this exact version already: nothing was opened.
    #[serde(default)]
    pub nothing_to_do: bool,
    pub request: Option<PromotionRequest>,
    pub verdict: Verdict,
    pub release: Option<Release>,
}

/// Opens a promotion request for the exact version `from` runs into `to`, judged by the
/// policy into `to` as `to` runs it (its released configuration). Nothing is opened when
/// `to` runs that version already, or when a request for it is open (that one is
/// returned). A request the gate refuses is not opened (`opened: false`) and the refusal
/// is audited; one that needs no approval is released at once. `freeze_exception` is the
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
    actor: Actor<'_>,
    freeze_exception: Option<&str>,
    now: i64,
) -> Result<Promotion, OpsError> {
    let author = actor.name;
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
    require_server_when_served(store, &project.manifest, to, actor).await?;
    let project = &config::effective(store, project, author, now).await?;
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
    let mut promotion = Promotion {
        workflow: workflow.to_owned(),
        version: version.clone(),
        from: from.to_owned(),
        to: to.to_owned(),
        author: author.to_owned(),
        opened: false,
        nothing_to_do: false,
        request: None,
        verdict: Verdict {
            risk: policy::workflow_risk(
                &project.manifest,
                &find_workflow(project, workflow)?.workflow,
            ),
            checks: Vec::new(),
        },
        release: None,
    };
    if store
        .deployment(to, workflow)
        .await?
        .is_some_and(|d| d.version == version)
    {
        promotion.nothing_to_do = true;
        return Ok(promotion);
    }
    if let Some(open) =
        open_request_for(store, &project.manifest, workflow, &version, to, now).await?
    {
        promotion.verdict = judge(store, project, &open, now).await?;
        promotion.request = Some(open);
        return Ok(promotion);
    }
    let facts = facts(
        store,
        project,
        workflow,
        &version,
        (from, to),
        Vec::new(),
        freeze_exception.clone(),
        author,
        now,
    )
    .await?;
    promotion.verdict = verdict_of(project, workflow, from, to, &facts)?;
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
    let requested = Event {
        kind: EventKind::PromotionRequested,
        environment: to.to_owned(),
        workflow: workflow.to_owned(),
        version: version.clone(),
        actor: author.to_owned(),
        recipients: notify::approvers(&project.manifest, to, author),
        subject: request.request.id.clone(),
        from: Some(from.to_owned()),
        step: None,
        detail: None,
    };
    if !promotion.verdict.passed() {
        notify::emit(store, &project.manifest, &requested, "", now).await;
    }
    if promotion.verdict.passed() {
        promotion.release = Some(
            release(
                store,
                &project.manifest,
                &request,
                Vec::new(),
                &promotion.verdict,
                now,
            )
            .await?,
        );
    }
    promotion.opened = true;
    promotion.request = Some(request);
    Ok(promotion)
}

/// When an open request expires: its rule's `expires`, or a week. A configuration or an
/// enable request (from and to the same environment) has the shortest of the rules into it.
pub fn expires_at(manifest: &Manifest, request: &PromotionRequest) -> i64 {
    let r = &request.request;
    let lifetime = if r.from_environment == r.to_environment {
        manifest
            .promotion
            .iter()
            .filter(|rule| rule.to.value == r.to_environment)
            .filter_map(|rule| rule.expires)
            .min()
    } else {
        policy::rule(manifest, &r.from_environment, &r.to_environment).and_then(|rule| rule.expires)
    }
    .unwrap_or(DEFAULT_REQUEST_LIFETIME_MS);
    r.created_at
        .saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX))
}

/// The request as it stands at `now`: an open one past its expiry is closed as expired
/// (and audited) first.
async fn expire_if_due(
    store: &dyn Store,
    manifest: &Manifest,
    request: PromotionRequest,
    now: i64,
) -> Result<PromotionRequest, OpsError> {
    if request.status != RequestStatus::Open || now < expires_at(manifest, &request) {
        return Ok(request);
    }
    let r = &request.request;
    match store
        .close_request(&r.id, RequestStatus::Expired, now)
        .await
    {
        Ok(()) => {
            audit(
                store,
                now,
                "airlock",
                "request.expired",
                Some(&r.to_environment),
                &r.workflow,
                json!({ "request": r.id, "version": r.version }),
            )
            .await?;
        }
        // Closed meanwhile by someone else: read what it is now.
        Err(airlock_store::Error::Conflict(_)) => {}
        Err(other) => return Err(other.into()),
    }
    self::request(store, &r.id).await
}

/// The open request for `version` of `subject` into `to`, if there is one (requests past
/// their expiry are closed on the way).
pub(crate) async fn open_request_for(
    store: &dyn Store,
    manifest: &Manifest,
    subject: &str,
    version: &str,
    to: &str,
    now: i64,
) -> Result<Option<PromotionRequest>, OpsError> {
    let mut found = None;
    for request in store.open_requests(Some(subject)).await? {
        if request.request.to_environment != to {
            continue;
        }
        let request = expire_if_due(store, manifest, request, now).await?;
        if request.status == RequestStatus::Open && request.request.version == version {
            found = Some(request);
        }
    }
    Ok(found)
}

/// Who has approved `request` (their newest decision is yes).
pub(crate) async fn approvers_of(
    store: &dyn Store,
    request: &str,
) -> Result<Vec<String>, OpsError> {
    Ok(store
        .approvals(request)
        .await?
        .into_iter()
        .filter(|a| a.approved)
        .map(|a| a.approver)
        .collect())
}

/// The verdict on an open request now, with its approvals so far: a workflow promotion's
/// by the policy, a configuration's or an enable's by the target's gate alone.
/// `project` is the effective one.
async fn judge(
    store: &dyn Store,
    project: &Project,
    request: &PromotionRequest,
    now: i64,
) -> Result<Verdict, OpsError> {
    let r = &request.request;
    let approvals = approvers_of(store, &r.id).await?;
    if config::is_config(request) {
        return config::request_verdict(store, request, &approvals).await;
    }
    if r.from_environment == r.to_environment {
        return enable_verdict(store, project, request, approvals).await;
    }
    let facts = facts(
        store,
        project,
        &r.workflow,
        &r.version,
        (&r.from_environment, &r.to_environment),
        approvals,
        freeze_exception_of(store, request).await?,
        &r.author,
        now,
    )
    .await?;
    verdict_of(
        project,
        &r.workflow,
        &r.from_environment,
        &r.to_environment,
        &facts,
    )
}

/// The gate for bringing a disabled workflow back into a protected environment: the
/// strictest approvals any rule into it asks at the workflow's risk (at least the floor),
/// by the target's approvers, never the author; and tests passed for the exact hash.
async fn enable_verdict(
    store: &dyn Store,
    project: &Project,
    request: &PromotionRequest,
    approvals: Vec<String>,
) -> Result<Verdict, OpsError> {
    let r = &request.request;
    let manifest = &project.manifest;
    let risk = match project.workflow(&r.workflow) {
        Some(w) => policy::workflow_risk(manifest, &w.workflow),
        None => airlock_core::model::Risk::Finance,
    };
    let mut merged = airlock_core::model::Requirements::default();
    for rule in manifest
        .promotion
        .iter()
        .filter(|x| x.to.value == r.to_environment)
    {
        let required = policy::requirements(rule, risk);
        merged.approvals = merged.approvals.max(required.approvals);
        merged.tests = merged.tests.or(required.tests);
    }
    let protected = manifest
        .environment(&r.to_environment)
        .is_some_and(|e| e.protected);
    let required = policy::with_floors(merged, protected);
    let rule = airlock_core::model::PromotionRule {
        from: airlock_core::decode::Located::new(r.to_environment.clone(), Default::default()),
        to: airlock_core::decode::Located::new(r.to_environment.clone(), Default::default()),
        require: airlock_core::model::Requirements {
            parity: None,
            staging_runs: None,
            ..required
        },
        by_risk: Vec::new(),
        freeze: Vec::new(),
        expires: None,
    };
    let tests_passed = store
        .evidence(&r.workflow, Some(&r.version))
        .await?
        .iter()
        .find(|e| e.evidence.kind == super::evidence::EVIDENCE_KIND)
        .map(|e| e.evidence.passed);
    let facts = Facts {
        tests_passed,
        approvals,
        gate: gate(manifest, &r.to_environment, &r.author),
        ..Facts::default()
    };
    Ok(policy::verdict(&rule, risk, &facts))
}

/// Makes the request a release (the verdict passed).
async fn release(
    store: &dyn Store,
    manifest: &Manifest,
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
            evidence: super::with_audit_head(
                store,
                json!({ "verdict": verdict, "evidence": tested }),
            )
            .await?,
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
        if r.workflow == CONFIG_SUBJECT {
            "config.release"
        } else {
            "release"
        },
        Some(&r.to_environment),
        &r.workflow,
        json!({ "release": release.release.id, "version": r.version, "previous": release.previous, "request": r.id }),
    )
    .await?;
    let released = notify::release_event(&release, &r.author);
    notify::emit(store, manifest, &released, "", now).await;
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
    /// The approver's earlier decision on this request, when this one changes it.
    #[serde(default)]
    pub changed_from: Option<DecisionStatus>,
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

/// Approves (or rejects) request `request_id` as `actor`, who must be an approver of the
/// target as it runs (its released configuration) and not the request's author; refusals
/// are audited. An approver may change their decision while the request is open (a
/// rejection closes it). An approval that completes the requirements makes the release.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    store: &dyn Store,
    project: &Project,
    request_id: &str,
    actor: Actor<'_>,
    approve: bool,
    reason: Option<&str>,
    now: i64,
) -> Result<Decision, OpsError> {
    let approver = actor.name;
    let request = request(store, request_id).await?;
    let to = request.request.to_environment.clone();
    require_server_when_served(store, &project.manifest, &to, actor).await?;
    let project = &config::effective(store, project, approver, now).await?;
    let request = expire_if_due(store, &project.manifest, request, now).await?;
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
            Some("the author can withdraw it: `airlock withdraw REQUEST`".into()),
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
    let earlier = store
        .approvals(&r.id)
        .await?
        .into_iter()
        .find(|a| a.approver == approver)
        .map(|a| {
            if a.approved {
                DecisionStatus::Approved
            } else {
                DecisionStatus::Rejected
            }
        });
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
    let status = if approve {
        DecisionStatus::Approved
    } else {
        DecisionStatus::Rejected
    };
    let changed_from = earlier.filter(|e| *e != status);
    audit(
        store,
        now,
        approver,
        if approve { "approve" } else { "reject" },
        Some(&r.to_environment),
        &r.workflow,
        json!({ "request": r.id, "reason": reason, "changed_from": changed_from }),
    )
    .await?;
    let mut told = vec![r.author.clone()];
    told.extend(notify::approvers(
        &project.manifest,
        &r.to_environment,
        approver,
    ));
    let decided = Event {
        kind: if approve {
            EventKind::PromotionApproved
        } else {
            EventKind::PromotionRejected
        },
        environment: r.to_environment.clone(),
        workflow: r.workflow.clone(),
        version: r.version.clone(),
        actor: approver.to_owned(),
        recipients: told,
        subject: r.id.clone(),
        from: Some(r.from_environment.clone()),
        step: None,
        detail: reason.map(str::to_owned),
    };
    // One event per approver's decision at this moment: a changed decision is news.
    notify::emit(
        store,
        &project.manifest,
        &decided,
        &format!("{approver}:{now}"),
        now,
    )
    .await;
    let mut decision = Decision {
        request: r.id.clone(),
        workflow: r.workflow.clone(),
        version: r.version.clone(),
        from: r.from_environment.clone(),
        to: r.to_environment.clone(),
        approver: approver.to_owned(),
        status,
        reason: reason.map(str::to_owned),
        changed_from,
        verdict: None,
        release: None,
    };
    if !approve {
        return Ok(decision);
    }
    let verdict = judge(store, project, &request, now).await?;
    if verdict.passed() {
        let approvers = approvers_of(store, &r.id).await?;
        decision.release =
            Some(release(store, &project.manifest, &request, approvers, &verdict, now).await?);
    }
    decision.verdict = Some(verdict);
    Ok(decision)
}

/// The author takes an open request back: it closes as withdrawn (audited).
pub async fn withdraw(
    store: &dyn Store,
    project: &Project,
    request_id: &str,
    actor: Actor<'_>,
    now: i64,
) -> Result<PromotionRequest, OpsError> {
    let request = request(store, request_id).await?;
    require_server_when_served(
        store,
        &project.manifest,
        &request.request.to_environment,
        actor,
    )
    .await?;
    let project = &config::effective(store, project, actor.name, now).await?;
    let request = expire_if_due(store, &project.manifest, request, now).await?;
    let r = &request.request;
    if r.author != actor.name {
        return Err(OpsError::forbidden(
            format!(
                "only the request's author ({}) can withdraw it; an approver rejects it instead",
                r.author
            ),
            Some(format!("airlock reject {} --reason \"…\"", r.id)),
        ));
    }
    if request.status != RequestStatus::Open {
        return Err(OpsError::conflict(
            format!("request {request_id} is {}", request.status.as_str()),
            None,
        ));
    }
    store
        .close_request(&r.id, RequestStatus::Withdrawn, now)
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(m) => OpsError::conflict(m, None),
            other => other.into(),
        })?;
    audit(
        store,
        now,
        actor.name,
        "withdraw",
        Some(&r.to_environment),
        &r.workflow,
        json!({ "request": r.id, "version": r.version }),
    )
    .await?;
    self::request(store, &r.id).await
}

/// One request as the approvers' inbox lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    pub request: PromotionRequest,
    /// `workflow`, `config` or `enable`.
    pub subject: RequestSubject,
    /// Every approver's newest decision.
    pub approvals: Vec<Approval>,
    /// When it expires (an open one).
    pub expires_at: Option<i64>,
    /// The verdict now (an open one).
    pub verdict: Option<Verdict>,
}

/// What a request moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestSubject {
    /// A workflow version from one environment into another.
    Workflow,
    /// An environment's configuration.
    Config,
    /// A disabled workflow brought back into the environment.
    Enable,
}

/// The approvers' inbox: the open requests one approver may decide, each with its
/// verdict now, in one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbox {
    /// Whose inbox (a token's name through the API, `--as` here).
    pub approver: String,
    /// The environments they may approve in (the listed approvers of each, as the
    /// released configuration of a protected one names them), in the manifest's order.
    pub environments: Vec<String>,
    /// The open requests into those environments that they did not open themselves
    /// (an author never approves their own request), newest first.
    pub requests: Vec<RequestRow>,
}

/// The open requests `approver` may decide: into an environment whose approvers list
/// them (`within`: only that one, e.g. a token's single environment), not opened by them,
/// each with its verdict, requirement by requirement. `airlock promotions --inbox` and
/// `GET /api/v1/inbox`.
pub async fn inbox(
    store: &dyn Store,
    project: &Project,
    approver: &str,
    within: Option<&str>,
    now: i64,
) -> Result<Inbox, OpsError> {
    if let Some(name) = within {
        environment(&project.manifest, name)?;
    }
    let effective = config::effective(store, project, "airlock", now).await?;
    let environments: Vec<String> = effective
        .manifest
        .environments
        .iter()
        .filter(|e| within.is_none_or(|name| e.name.value == name))
        .filter(|e| e.approvers.iter().any(|a| a.value == approver))
        .map(|e| e.name.value.clone())
        .collect();
    let requests = if environments.is_empty() {
        Vec::new()
    } else {
        list(store, project, Some(RequestStatus::Open), None, now)
            .await?
            .into_iter()
            .filter(|row| {
                environments.contains(&row.request.request.to_environment)
                    && row.request.request.author != approver
            })
            .collect()
    };
    Ok(Inbox {
        approver: approver.to_owned(),
        environments,
        requests,
    })
}

/// The requests, newest first, optionally of one status and one target environment:
/// `airlock promotions` and `GET /api/v1/promotions`.
pub async fn list(
    store: &dyn Store,
    project: &Project,
    status: Option<RequestStatus>,
    environment_name: Option<&str>,
    now: i64,
) -> Result<Vec<RequestRow>, OpsError> {
    if let Some(name) = environment_name {
        environment(&project.manifest, name)?;
    }
    let project = &config::effective(store, project, "airlock", now).await?;
    let mut rows = Vec::new();
    // The open ones (the inbox, the console's home page) are one read of their own index;
    // the history of every request is read only when asked for.
    let requests = match status {
        Some(RequestStatus::Open) => store.open_requests(None).await?,
        _ => store.requests(None).await?,
    };
    for request in requests {
        if environment_name.is_some_and(|e| e != request.request.to_environment) {
            continue;
        }
        let request = expire_if_due(store, &project.manifest, request, now).await?;
        if status.is_some_and(|s| s != request.status) {
            continue;
        }
        let open = request.status == RequestStatus::Open;
        let r = &request.request;
        let subject = if r.workflow == CONFIG_SUBJECT {
            RequestSubject::Config
        } else if r.from_environment == r.to_environment {
            RequestSubject::Enable
        } else {
            RequestSubject::Workflow
        };
        // A workflow gone from the project has no verdict to give.
        let judgeable =
            subject == RequestSubject::Config || project.workflow(&r.workflow).is_some();
        let verdict = if open && judgeable {
            Some(judge(store, project, &request, now).await?)
        } else {
            None
        };
        rows.push(RequestRow {
            approvals: store.approvals(&r.id).await?,
            expires_at: open.then(|| expires_at(&project.manifest, &request)),
            verdict,
            subject,
            request,
        });
    }
    rows.sort_by(|a, b| {
        b.request
            .request
            .created_at
            .cmp(&a.request.request.created_at)
            .then_with(|| b.request.request.id.cmp(&a.request.request.id))
    });
    Ok(rows)
}

/// A rollback: the new release and the earlier one it returned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The release the rollback made (kind `rollback`, or `disable` for a first release),
    /// now current.
    pub release: Release,
    /// The earlier release whose version runs again (`None`: the first release was rolled
    /// back, and the workflow no longer runs there).
    pub restored: Option<Release>,
    /// Said when the release returned to failed more of its runs than the current one.
    #[serde(default)]
    pub warning: Option<String>,
}

/// Makes `environment` run the release before the current one of `workflow` again (or
/// release `to`), at once. Runs in flight finish on the version they started with. The
/// rollback of a first release takes the workflow out ([`disable`]); a disabled workflow
/// comes back with [`enable`], not a rollback.
#[allow(clippy::too_many_arguments)]
pub async fn rollback(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    environment_name: &str,
    to: Option<&str>,
    actor: Actor<'_>,
    now: i64,
) -> Result<Rollback, OpsError> {
    let author = actor.name;
    environment(&project.manifest, environment_name)?;
    require_server_when_served(store, &project.manifest, environment_name, actor).await?;
    let history = store.releases(environment_name, workflow).await?;
    let Some(current) = history.first() else {
        return Err(OpsError::conflict(
            format!(
                "`{workflow}` was never released in `{environment_name}`: nothing to roll back"
            ),
            None,
        ));
    };
    if current.release.kind == ReleaseKind::Disable {
        return Err(OpsError::conflict(
            format!("`{workflow}` is disabled in `{environment_name}`"),
            Some(format!(
                "bring it back with `airlock enable {workflow} --env {environment_name}`"
            )),
        ));
    }
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
            let Some(previous) = current.previous.as_deref() else {
                if workflow == CONFIG_SUBJECT {
                    return Err(OpsError::conflict(
                        format!(
                            "release {} is `{environment_name}`'s first configuration: there is none before it",
                            current.release.id
                        ),
                        None,
                    ));
                }
                let disabled =
                    disable(store, project, workflow, environment_name, actor, now).await?;
                return Ok(Rollback {
                    release: disabled,
                    restored: None,
                    warning: None,
                });
            };
            history
                .iter()
                .find(|r| r.release.id == previous)
                .ok_or_else(|| {
                    OpsError::not_found(format!("release {previous} is missing"), None)
                })?
        }
    };
    if !target.release.kind.runs_version() {
        return Err(OpsError::conflict(
            format!(
                "release {} took `{workflow}` out of `{environment_name}`: there is no version to return to",
                target.release.id
            ),
            Some(format!(
                "airlock disable {workflow} --env {environment_name}"
            )),
        ));
    }
    let warning = if workflow == CONFIG_SUBJECT {
        None
    } else {
        worse_warning(
            store,
            environment_name,
            workflow,
            &history,
            &target.release.id,
        )
        .await?
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
            evidence: super::with_audit_head(store, json!({ "rollback_to": target.release.id, "from": current.release.id, "warning": warning })).await?,
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
        if workflow == CONFIG_SUBJECT {
            "config.rollback"
        } else {
            "rollback"
        },
        Some(environment_name),
        workflow,
        json!({ "release": release.release.id, "to": target.release.id, "version": target.release.version }),
    )
    .await?;
    // To who rolled back, the owners of the release rolled back to, and the approvers.
    let mut rolled = notify::release_event(&release, author);
    rolled.recipients = vec![author.to_owned()];
    for person in target.owners().into_iter().chain(notify::approvers(
        &project.manifest,
        environment_name,
        author,
    )) {
        if !rolled.recipients.contains(&person) {
            rolled.recipients.push(person);
        }
    }
    notify::emit(store, &project.manifest, &rolled, "", now).await;
    Ok(Rollback {
        release,
        restored: Some(target.clone()),
        warning,
    })
}

/// A warning when the runs accepted while `target` was current failed at a higher rate
/// than those of the current release.
async fn worse_warning(
    store: &dyn Store,
    environment: &str,
    workflow: &str,
    history: &[Release],
    target: &str,
) -> Result<Option<String>, OpsError> {
    let rows = rows_of(store, environment, workflow, history).await?;
    let rate = airlock_core::release::failure_rate;
    let current = rows
        .first()
        .and_then(|r| rate(r.runs_after, r.failed_after));
    let earlier = rows
        .iter()
        .find(|r| r.release == target)
        .and_then(|r| rate(r.runs_after, r.failed_after));
    Ok(match (earlier, current) {
        (Some(then), now) if then > now.unwrap_or(0.0) => Some(format!(
            "release {target} failed {:.0}% of its runs, the current one {:.0}%",
            then * 100.0,
            now.unwrap_or(0.0) * 100.0
        )),
        _ => None,
    })
}

/// Takes `workflow` out of `environment`: its triggers stop, runs in flight finish;
/// recorded as a release (`disable`), so it is in `releases` and the audit log.
pub async fn disable(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    environment_name: &str,
    actor: Actor<'_>,
    now: i64,
) -> Result<Release, OpsError> {
    environment(&project.manifest, environment_name)?;
    require_server_when_served(store, &project.manifest, environment_name, actor).await?;
    let running = store
        .deployment(environment_name, workflow)
        .await?
        .ok_or_else(|| {
            OpsError::conflict(
                format!("`{workflow}` does not run in `{environment_name}`: nothing to disable"),
                None,
            )
        })?;
    let current = store.releases(environment_name, workflow).await?;
    let release = store
        .release(&NewRelease {
            id: new_id("rel"),
            environment: environment_name.to_owned(),
            workflow: workflow.to_owned(),
            version: running.version.clone(),
            kind: ReleaseKind::Disable,
            request: None,
            author: actor.name.to_owned(),
            approvers: Vec::new(),
            evidence: super::with_audit_head(store, json!({ "disabled": running.version })).await?,
            expected_current: current.first().map(|c| c.release.id.clone()),
            at: now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(m) => {
                OpsError::conflict(format!("disable refused: {m}"), None)
            }
            other => other.into(),
        })?;
    audit(
        store,
        now,
        actor.name,
        "disable",
        Some(environment_name),
        workflow,
        json!({ "release": release.release.id, "version": running.version }),
    )
    .await?;
    Ok(release)
}

/// What `enable` did: released at once (an unprotected environment), or opened a request
/// through the target's gate (a protected one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enabling {
    pub workflow: String,
    pub environment: String,
    /// The version that runs again.
    pub version: String,
    pub release: Option<Release>,
    pub request: Option<PromotionRequest>,
    pub verdict: Option<Verdict>,
}

/// Brings a disabled workflow back, on the version it ran when it was disabled: at once
/// in an unprotected environment; through the gate (a request the target's approvers
/// decide, tests passed for the hash) in a protected one.
pub async fn enable(
    store: &dyn Store,
    project: &Project,
    workflow: &str,
    environment_name: &str,
    actor: Actor<'_>,
    now: i64,
) -> Result<Enabling, OpsError> {
    let env = environment(&project.manifest, environment_name)?;
    let protected = env.protected;
    require_server_when_served(store, &project.manifest, environment_name, actor).await?;
    let project = &config::effective(store, project, actor.name, now).await?;
    let history = store.releases(environment_name, workflow).await?;
    let disabled = history
        .first()
        .filter(|r| r.release.kind == ReleaseKind::Disable)
        .ok_or_else(|| {
            OpsError::conflict(
                format!("`{workflow}` is not disabled in `{environment_name}`"),
                None,
            )
        })?;
    let version = disabled.release.version.clone();
    let mut enabling = Enabling {
        workflow: workflow.to_owned(),
        environment: environment_name.to_owned(),
        version: version.clone(),
        release: None,
        request: None,
        verdict: None,
    };
    if !protected {
        let release = store
            .release(&NewRelease {
                id: new_id("rel"),
                environment: environment_name.to_owned(),
                workflow: workflow.to_owned(),
                version: version.clone(),
                kind: ReleaseKind::Rollback,
                request: None,
                author: actor.name.to_owned(),
                approvers: Vec::new(),
                evidence: super::with_audit_head(store, json!({ "enabled": disabled.release.id }))
                    .await?,
                expected_current: Some(disabled.release.id.clone()),
                at: now,
            })
            .await
            .map_err(|e| match e {
                airlock_store::Error::Conflict(m) => OpsError::conflict(m, None),
                other => other.into(),
            })?;
        audit(
            store,
            now,
            actor.name,
            "enable",
            Some(environment_name),
            workflow,
            json!({ "release": release.release.id, "version": version }),
        )
        .await?;
        enabling.release = Some(release);
        return Ok(enabling);
    }
    if let Some(open) = open_request_for(
        store,
        &project.manifest,
        workflow,
        &version,
        environment_name,
        now,
    )
    .await?
    {
        enabling.verdict = Some(judge(store, project, &open, now).await?);
        enabling.request = Some(open);
        return Ok(enabling);
    }
    let candidate = PromotionRequest {
        request: NewPromotionRequest {
            id: new_id("req"),
            workflow: workflow.to_owned(),
            version: version.clone(),
            from_environment: environment_name.to_owned(),
            to_environment: environment_name.to_owned(),
            author: actor.name.to_owned(),
            created_at: now,
        },
        status: RequestStatus::Open,
        closed_at: None,
    };
    let verdict = enable_verdict(store, project, &candidate, Vec::new()).await?;
    if !verdict.ready_for_approval() {
        audit(
            store,
            now,
            actor.name,
            "enable.refused",
            Some(environment_name),
            workflow,
            json!({ "version": version, "verdict": verdict }),
        )
        .await?;
        enabling.verdict = Some(verdict);
        return Ok(enabling);
    }
    let request = store.open_request(&candidate.request).await?;
    audit(
        store,
        now,
        actor.name,
        "enable.request",
        Some(environment_name),
        workflow,
        json!({ "request": request.request.id, "version": version, "verdict": verdict }),
    )
    .await?;
    enabling.verdict = Some(verdict);
    enabling.request = Some(request);
    Ok(enabling)
}

/// One release in a workflow's history, with the failure rate of the runs accepted while
/// it was current (after) and while the one before it was (before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRow {
    pub release: String,
    /// `promotion`, `rollback`, `adopted` (a first configuration) or `disable`.
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
    rows_of(store, environment, workflow, &history).await
}

/// The runs of release `i` of a history (newest first): (finished, failed) of those
/// accepted from its time until the next release's (newer, at `i - 1`), whatever version
/// they ran. Release `i`'s "after" and release `i + 1`'s "before" in the history's rows;
/// what the `release.failure_rate` notification compares too.
pub(crate) async fn window(
    store: &dyn Store,
    environment: &str,
    workflow: &str,
    history: &[Release],
    i: usize,
) -> Result<(usize, usize), airlock_store::Error> {
    let until = i.checked_sub(1).map(|newer| history[newer].release.at);
    let from = history.get(i).map(|r| r.release.at);
    let outcomes = store
        .run_outcomes(&OutcomeQuery {
            environment: environment.to_owned(),
            workflow: workflow.to_owned(),
            version: None,
            from,
            until,
        })
        .await?;
    Ok((
        usize::try_from(outcomes.finished).unwrap_or(usize::MAX),
        usize::try_from(outcomes.failed).unwrap_or(usize::MAX),
    ))
}

/// The rows of a release history (newest first) as read from the store.
async fn rows_of(
    store: &dyn Store,
    environment: &str,
    workflow: &str,
    history: &[Release],
) -> Result<Vec<ReleaseRow>, OpsError> {
    // Runs are attributed to the release that was current when they were accepted: the
    // window of release i runs from its time to that of the next one (newer, at i - 1).
    // Each window is counted once, by the store: it is release i's "after" and release
    // i - 1's "before".
    let mut windows = Vec::with_capacity(history.len());
    for i in 0..history.len() {
        windows.push(window(store, environment, workflow, history, i).await?);
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
