//! The promotion path over HTTP: deploy, promote, approve, reject, rollback, releases,
//! readiness, diff, evidence and validate. Each handler authorises the caller, then calls
//! the same [`airlock_ops`] function the CLI calls; the caller's token name is the actor
//! (and the approver's identity).

use crate::App;
use crate::api::ErrorBody;
use crate::auth;
use crate::error::ApiError;
use airlock_core::authz::Action;
use airlock_core::project::{Loaded, Project};
use airlock_ops as ops;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The project's files as they are now (problems included).
async fn load(app: &App) -> Result<Loaded, ApiError> {
    Ok(ops::load_served(app.project.clone()).await?)
}

pub(crate) async fn project(app: &App) -> Result<Project, ApiError> {
    Ok(ops::served_project(app.project.clone()).await?)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct DeployBody {
    /// The version id the caller computed for each workflow of its working copy, by name
    /// (what `airlock hash` prints). When given, the server deploys only if its own files
    /// hash to exactly these, every workflow and no other; it computes the ids itself.
    #[serde(default)]
    versions: Option<std::collections::BTreeMap<String, String>>,
    /// The project's files (`airlock deploy --server` sends them): the server checks and
    /// validates them itself, deploys their versions only if they hash to the bundle's id
    /// and to `versions`, keeps them (a server needs no checkout of the project), and runs
    /// their scenario suites, recording the evidence.
    #[serde(default)]
    bundle: Option<ops::bundle::WireBundle>,
}

/// At most this many bytes in a deploy's body: a bundle's 8 MiB in base64, and its JSON.
pub(crate) const DEPLOY_BODY_LIMIT: usize = 12 * 1024 * 1024;

/// Makes an unprotected environment run the files the request carries (`bundle`), or
/// else the server's working copy. A protected
/// environment is refused (403, audited): it changes only by promotion or rollback.
/// The server deploys its own files, never content from the request: a caller that
/// names the versions it hashed (`versions`, as `airlock deploy --server` does) gets
/// exactly those deployed, or a 409 and nothing deployed.
#[utoipa::path(post, path = "/api/v1/environments/{environment}/deploy", tag = "promotion",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    request_body(content = DeployBody, description = "Optionally, the versions expected"),
    responses((status = 200, description = "What changed, workflow by workflow", body = Object),
              (status = 400, description = "A bad body", body = ErrorBody),
              (status = 403, description = "Not allowed, or the environment is protected", body = ErrorBody),
              (status = 404, description = "No such environment", body = ErrorBody),
              (status = 409, description = "The project does not validate, the files do not hash to the bundle's id, or its versions are not the ones expected", body = ErrorBody),
              (status = 413, description = "A body over 12 MiB", body = ErrorBody)))]
pub(crate) async fn deploy(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
    body: Result<Option<Json<DeployBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Deploy, "*").await?;
    let (expected, bundle) = match body {
        Ok(None) => (None, None),
        Ok(Some(Json(body))) => (body.versions, body.bundle),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a deploy's body holds at most {} MiB: a bundle's 8 MiB of files in base64",
                    DEPLOY_BODY_LIMIT / (1024 * 1024)
                ),
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the body must be {{\"versions\": {{WORKFLOW: VERSION}}, \"bundle\": {{\"id\": …, \"files\": […]}}}} or empty: {}",
                e.body_text()
            )));
        }
    };
    if let Some(bundle) = bundle {
        let (bundle, claimed) = bundle.open()?;
        let deployed = ops::deploy::deploy_files(
            &*app.store,
            &bundle,
            Some(&claimed),
            &environment,
            expected.as_ref(),
            &caller.name,
            app.clock.now(),
        )
        .await?;
        app.routes.refresh(&app).await?;
        return Ok(Json(to_json(&deployed)?));
    }
    let project = project(&app).await?;
    let deployed = ops::deploy::deploy(
        &*app.store,
        &project,
        &environment,
        expected.as_ref(),
        &caller.name,
        app.clock.now(),
    )
    .await?;
    app.routes.refresh(&app).await?;
    Ok(Json(to_json(&deployed)?))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PromotionBody {
    /// The source environment, whose deployed version is promoted (e.g. `staging`).
    from: String,
    /// The target environment (e.g. `production`).
    to: String,
    /// Why the promotion goes ahead inside a freeze window, if it must: the caller's
    /// stated exception, kept with the request, shown to its approvers and audited.
    #[serde(default)]
    freeze_exception: Option<String>,
}

/// Opens a promotion request for the exact version `from` runs, judged by the policy.
/// Authorised in the TARGET environment (`Promote`). 201 with the request and the verdict
/// (and the release, when no approval is needed); 409 with the verdict when the gate
/// refuses to open it.
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/promotions", tag = "promotion",
    security(("token" = [])),
    params(("workflow" = String, Path, description = "The workflow")),
    request_body(content = PromotionBody, description = "From where to where"),
    responses((status = 201, description = "Opened: the request, the verdict, and the release if any", body = Object),
              (status = 400, description = "No promotion rule between the environments, or a bad body", body = ErrorBody),
              (status = 403, description = "Not allowed in the target", body = ErrorBody),
              (status = 404, description = "No such workflow or environment", body = ErrorBody),
              (status = 409, description = "The gate refused it (the verdict says why), or the source runs nothing", body = Object)))]
pub(crate) async fn promote(
    State(app): State<Arc<App>>,
    Path(workflow): Path<String>,
    headers: HeaderMap,
    body: Result<Json<PromotionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Authenticate before reading the body, so an unknown caller learns nothing.
    auth::caller(&app, &headers).await?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"from\": ENV, \"to\": ENV}}: {}",
            e.body_text()
        ))
    })?;
    let caller = auth::require(&app, &headers, &body.to, Action::Promote, &workflow).await?;
    let project = project(&app).await?;
    let promotion = ops::promotion::promote(
        &*app.store,
        &project,
        &workflow,
        &body.from,
        &body.to,
        ops::Actor::token(&caller.name),
        body.freeze_exception.as_deref(),
        app.clock.now(),
    )
    .await?;
    let mut answer = to_json(&promotion)?;
    // Nothing to do, or the request open already for this version: nothing new, 200.
    if promotion.nothing_to_do || (!promotion.opened && promotion.request.is_some()) {
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    if !promotion.opened {
        if let Value::Object(map) = &mut answer {
            let unmet: Vec<&str> = promotion
                .verdict
                .checks
                .iter()
                .filter(|c| !c.met)
                .map(|c| c.requirement.as_str())
                .collect();
            map.insert(
                "error".into(),
                Value::String(format!(
                    "promotion of {workflow} from {} to {} refused: {} not met",
                    body.from,
                    body.to,
                    unmet.join(", ")
                )),
            );
        }
        return Ok((StatusCode::CONFLICT, Json(answer)).into_response());
    }
    if promotion.release.is_some() {
        app.routes.refresh(&app).await?;
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct DecisionBody {
    /// Why (required to reject).
    #[serde(default)]
    reason: Option<String>,
}

/// Looks a promotion request up and authorises `Approve` in its target environment.
async fn decide(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    approve: bool,
    reason: Result<Option<String>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    // Authenticate first, so an unknown token learns nothing about which requests exist
    // (nor about the body).
    auth::caller(app, headers).await?;
    let reason = reason?;
    let request = ops::promotion::request(&*app.store, id).await?;
    let caller = auth::require(
        app,
        headers,
        &request.request.to_environment,
        Action::Approve,
        id,
    )
    .await?;
    if !approve && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "a rejection needs a reason: {\"reason\": \"…\"}",
        ));
    }
    let project = project(app).await?;
    let decision = ops::promotion::decide(
        &*app.store,
        &project,
        id,
        ops::Actor::token(&caller.name),
        approve,
        reason.as_deref(),
        app.clock.now(),
    )
    .await?;
    if decision.release.is_some() {
        app.routes.refresh(app).await?;
    }
    Ok(Json(to_json(&decision)?))
}

fn reason_of(
    body: Result<Option<Json<DecisionBody>>, JsonRejection>,
) -> Result<Option<String>, ApiError> {
    match body {
        Ok(None) => Ok(None),
        Ok(Some(Json(body))) => Ok(body.reason),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body must be {{\"reason\": \"…\"}}: {}",
            e.body_text()
        ))),
    }
}

/// Approves a promotion request. The approver is the token's name, which must be one of
/// the target environment's approvers and not the request's author. When every
/// requirement then holds, the request becomes a release.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/approve", tag = "promotion",
    security(("token" = [])),
    params(("id" = String, Path, description = "The promotion request")),
    request_body(content = DecisionBody, description = "Optionally, why"),
    responses((status = 200, description = "Approved: the verdict, and the release if it was made", body = Object),
              (status = 403, description = "Not an approver of the target, or the request's author", body = ErrorBody),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "The request is not open", body = ErrorBody)))]
pub(crate) async fn approve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Option<Json<DecisionBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    decide(&app, &id, &headers, true, reason_of(body)).await
}

/// Rejects a promotion request, with a reason. The same rules as approving.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/reject", tag = "promotion",
    security(("token" = [])),
    params(("id" = String, Path, description = "The promotion request")),
    request_body(content = DecisionBody, description = "Why"),
    responses((status = 200, description = "Rejected", body = Object),
              (status = 400, description = "No reason given", body = ErrorBody),
              (status = 403, description = "Not an approver of the target, or the request's author", body = ErrorBody),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "The request is not open", body = ErrorBody)))]
pub(crate) async fn reject(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Option<Json<DecisionBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    decide(&app, &id, &headers, false, reason_of(body)).await
}

#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct RollbackBody {
    /// The release to return to (default: the one before the current).
    #[serde(default)]
    to: Option<String>,
}

/// Makes the previous (or a named) release of the workflow current again, at once. Runs
/// in flight finish on the version they started with.
#[utoipa::path(post, path = "/api/v1/environments/{environment}/workflows/{workflow}/rollback",
    tag = "promotion", security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("workflow" = String, Path, description = "The workflow")),
    request_body(content = RollbackBody, description = "Optionally, the release to return to"),
    responses((status = 200, description = "The rollback's release and the release restored", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 404, description = "No such environment or release", body = ErrorBody),
              (status = 409, description = "Nothing to roll back to", body = ErrorBody)))]
pub(crate) async fn rollback(
    State(app): State<Arc<App>>,
    Path((environment, workflow)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Option<Json<RollbackBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Rollback, &workflow).await?;
    let to = match body {
        Ok(None) => None,
        Ok(Some(Json(body))) => body.to,
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the body must be {{\"to\": RELEASE}} or empty: {}",
                e.body_text()
            )));
        }
    };
    let project = project(&app).await?;
    let rollback = ops::promotion::rollback(
        &*app.store,
        &project,
        &workflow,
        &environment,
        to.as_deref(),
        ops::Actor::token(&caller.name),
        app.clock.now(),
    )
    .await?;
    app.routes.refresh(&app).await?;
    Ok(Json(to_json(&rollback)?))
}

/// A workflow's release history in an environment, newest first: who, when, which hash,
/// and the failure rate of runs before and after each release.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/workflows/{workflow}/releases",
    tag = "promotion", security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("workflow" = String, Path, description = "The workflow")),
    responses((status = 200, description = "Releases, newest first", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
pub(crate) async fn releases(
    State(app): State<Arc<App>>,
    Path((environment, workflow)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, &workflow).await?;
    let rows = ops::promotion::releases(&*app.store, &workflow, &environment).await?;
    Ok(Json(json!({
        "environment": environment,
        "workflow": workflow,
        "releases": to_json(&rows)?,
    })))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct ReadinessQuery {
    /// Only this workflow.
    workflow: Option<String>,
    /// Check the target's bindings now, from the server's side, first (needs `check`'s
    /// role: deployer or admin).
    #[serde(default)]
    check: bool,
}

/// The readiness checklist per workflow, judged on the policy's promotion path: what was
/// tested, what differs, what is documented, how it moves and who owns the release, how
/// it rolls back.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/readiness", tag = "promotion",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"), ReadinessQuery),
    responses((status = 200, description = "The checklist", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 404, description = "No such workflow", body = ErrorBody)))]
pub(crate) async fn readiness(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    Query(query): Query<ReadinessQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "readiness").await?;
    let project = project(&app).await?;
    ops::environment(&project.manifest, &environment)?;
    let runtime = if query.check {
        auth::require(&app, &headers, &environment, Action::Check, "check").await?;
        Some(airlock_engine::ProjectRuntime::new(
            app.store.clone(),
            (*app.manifest).clone(),
            app.root.clone(),
            app.keyring.clone(),
            app.clock.clone(),
        ))
    } else {
        None
    };
    let checklist = ops::readiness::readiness(
        &*app.store,
        &project,
        query.workflow.as_deref(),
        runtime.as_ref().map(|r| r as &dyn airlock_engine::Runtime),
        app.clock.now(),
    )
    .await?;
    Ok(Json(to_json(&checklist)?))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DiffQuery {
    /// The first environment (usually the source of promotions).
    from: Option<String>,
    /// The second environment (usually the target).
    to: Option<String>,
}

/// The parity report between two environments: each difference documented or drift.
/// Needs `Read` in the target environment (`to`).
#[utoipa::path(get, path = "/api/v1/diff", tag = "promotion", security(("token" = [])),
    params(DiffQuery),
    responses((status = 200, description = "The report, with `clean` and the counts", body = Object),
              (status = 400, description = "An environment is missing or compared with itself", body = ErrorBody),
              (status = 403, description = "Not allowed in one of them", body = ErrorBody)))]
pub(crate) async fn diff(
    State(app): State<Arc<App>>,
    Query(query): Query<DiffQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::caller(&app, &headers).await?;
    let (Some(from), Some(to)) = (query.from, query.to) else {
        return Err(ApiError::bad_request(
            "name both environments: /api/v1/diff?from=staging&to=production",
        ));
    };
    // The report is judged by the people of the target (a promotion into `to` is theirs to
    // accept), so Read there is enough: it shows both configurations, never a secret's value
    // (shared credentials are flagged by keyed fingerprint).
    auth::require(&app, &headers, &to, Action::Read, "diff").await?;
    let project = project(&app).await?;
    let diff = ops::diff::diff(&*app.store, &project, &from, &to, app.clock.now()).await?;
    Ok(Json(to_json(&diff)?))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct EvidenceQuery {
    /// Only the evidence of this version.
    version: Option<String>,
}

/// The test evidence recorded for a workflow, bound to version hashes, newest first.
/// Evidence belongs to a version, not to an environment: any token may read it in its
/// own environment.
#[utoipa::path(get, path = "/api/v1/workflows/{workflow}/evidence", tag = "promotion",
    security(("token" = [])),
    params(("workflow" = String, Path, description = "The workflow"), EvidenceQuery),
    responses((status = 200, description = "Evidence, newest first", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
pub(crate) async fn evidence(
    State(app): State<Arc<App>>,
    Path(workflow): Path<String>,
    Query(query): Query<EvidenceQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require_reader(&app, &headers, &workflow).await?;
    let list = ops::evidence::list(&*app.store, &workflow, query.version.as_deref()).await?;
    Ok(Json(to_json(&list)?))
}

/// Validates the server's project as its files are now; every problem with its file,
/// line and column. 200 either way: `ok` says whether it validates.
#[utoipa::path(post, path = "/api/v1/validate", tag = "promotion", security(("token" = [])),
    responses((status = 200, description = "The diagnostics and what the project declares", body = Object),
              (status = 401, description = "No or unknown token", body = ErrorBody)))]
pub(crate) async fn validate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&app, &headers).await?;
    auth::require(
        &app,
        &headers,
        &caller.grant.environment,
        Action::Validate,
        "project",
    )
    .await?;
    let loaded = load(&app).await?;
    let validation = ops::validate::validate(&loaded);
    Ok(Json(to_json(&validation)?))
}

/// Takes a workflow out of the environment: its triggers stop, runs in flight finish;
/// recorded as a release (`disable`).
#[utoipa::path(post, path = "/api/v1/environments/{environment}/workflows/{workflow}/disable",
    tag = "promotion", security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("workflow" = String, Path, description = "The workflow")),
    responses((status = 200, description = "The disable release", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 409, description = "It does not run there", body = ErrorBody)))]
pub(crate) async fn disable(
    State(app): State<Arc<App>>,
    Path((environment, workflow)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Rollback, &workflow).await?;
    let project = project(&app).await?;
    let release = ops::promotion::disable(
        &*app.store,
        &project,
        &workflow,
        &environment,
        ops::Actor::token(&caller.name),
        app.clock.now(),
    )
    .await?;
    app.routes.refresh(&app).await?;
    Ok(Json(to_json(&release)?))
}

/// Brings a disabled workflow back: at once in an unprotected environment, through the
/// gate (a request) in a protected one.
#[utoipa::path(post, path = "/api/v1/environments/{environment}/workflows/{workflow}/enable",
    tag = "promotion", security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("workflow" = String, Path, description = "The workflow")),
    responses((status = 200, description = "The release, or the request and its verdict", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 409, description = "It is not disabled", body = ErrorBody)))]
pub(crate) async fn enable(
    State(app): State<Arc<App>>,
    Path((environment, workflow)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Promote, &workflow).await?;
    let project = project(&app).await?;
    let enabling = ops::promotion::enable(
        &*app.store,
        &project,
        &workflow,
        &environment,
        ops::Actor::token(&caller.name),
        app.clock.now(),
    )
    .await?;
    if enabling.release.is_some() {
        app.routes.refresh(&app).await?;
    }
    Ok(Json(to_json(&enabling)?))
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct PromotionsQuery {
    /// Only requests of this status: open, released, rejected, withdrawn, expired.
    status: Option<String>,
    /// Only requests into this environment (default: the token's).
    env: Option<String>,
}

/// The promotion requests into an environment, newest first, with each open one's verdict
/// now: the approvers' inbox.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "promotion", security(("token" = [])),
    params(PromotionsQuery),
    responses((status = 200, description = "Requests, newest first", body = Object),
              (status = 400, description = "An unknown status", body = ErrorBody),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
pub(crate) async fn promotions(
    State(app): State<Arc<App>>,
    Query(query): Query<PromotionsQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&app, &headers).await?;
    let environment = query
        .env
        .unwrap_or_else(|| caller.grant.environment.clone());
    auth::require(&app, &headers, &environment, Action::Read, "promotions").await?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(airlock_store::RequestStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status `{text}`: open, released, rejected, withdrawn or expired"
            ))
        })?),
    };
    let project = project(&app).await?;
    let rows = ops::promotion::list(
        &*app.store,
        &project,
        status,
        Some(&environment),
        app.clock.now(),
    )
    .await?;
    Ok(Json(
        json!({ "environment": environment, "requests": to_json(&rows)? }),
    ))
}

/// The author takes their open request back.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/withdraw", tag = "promotion",
    security(("token" = [])),
    params(("id" = String, Path, description = "The promotion request")),
    responses((status = 200, description = "Withdrawn: the request", body = Object),
              (status = 403, description = "Not the request's author", body = ErrorBody),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "The request is not open", body = ErrorBody)))]
pub(crate) async fn withdraw(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::caller(&app, &headers).await?;
    let request = ops::promotion::request(&*app.store, &id).await?;
    let caller = auth::require(
        &app,
        &headers,
        &request.request.to_environment,
        Action::Promote,
        &id,
    )
    .await?;
    let project = project(&app).await?;
    let withdrawn = ops::promotion::withdraw(
        &*app.store,
        &project,
        &id,
        ops::Actor::token(&caller.name),
        app.clock.now(),
    )
    .await?;
    Ok(Json(to_json(&withdrawn)?))
}

/// The environment's configuration: released against the server's working copy, with
/// what a configuration promotion would change.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/config", tag = "promotion",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "Released and working ids, and the diff", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
pub(crate) async fn config_status(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "config").await?;
    let project = project(&app).await?;
    let status = ops::config::status(&*app.store, &project.manifest, &environment).await?;
    Ok(Json(to_json(&status)?))
}

/// Opens a request to make a protected environment run the working copy's configuration
/// (bindings, egress, approvers, secrets declared, differences and rules into it).
#[utoipa::path(post, path = "/api/v1/environments/{environment}/config/promote", tag = "promotion",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The protected environment")),
    responses((status = 201, description = "Opened: the request, its verdict and the diff", body = Object),
              (status = 200, description = "Nothing to do, or the request already open", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 409, description = "The approval rule cannot be met (the verdict says why)", body = Object)))]
pub(crate) async fn config_promote(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Promote, "config").await?;
    let project = project(&app).await?;
    let promotion = ops::config::promote(
        &*app.store,
        &project,
        &environment,
        ops::Actor::token(&caller.name),
        app.clock.now(),
    )
    .await?;
    let status = if promotion.opened {
        StatusCode::CREATED
    } else if promotion.nothing_to_do || promotion.request.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Json(to_json(&promotion)?)).into_response())
}

#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct EvidenceRunBody {
    /// The environment whose deployed versions are tested (default: the token's).
    #[serde(default)]
    environment: Option<String>,
    /// Only this workflow.
    #[serde(default)]
    workflow: Option<String>,
    /// Exactly this version of `workflow` (the server's files must hash to it).
    #[serde(default)]
    version: Option<String>,
}

/// Runs the scenario suites on the server, offline (stubs, a fake clock; nothing is
/// reached), on the versions it received, and records the evidence bound to their hashes.
/// There is no route through which a client submits evidence: this is how it is made.
/// Needs `Test` in the environment.
#[utoipa::path(post, path = "/api/v1/evidence/run", tag = "promotion", security(("token" = [])),
    request_body(content = EvidenceRunBody, description = "Which environment, workflow or version"),
    responses((status = 200, description = "The suites run and recorded, and what could not be tested", body = ops::evidence::ServerRun),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 404, description = "Nothing deployed, or no such workflow or environment", body = ErrorBody),
              (status = 409, description = "The server's files are another version", body = ErrorBody)))]
pub(crate) async fn evidence_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Option<Json<EvidenceRunBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&app, &headers).await?;
    let body = match body {
        Ok(None) => EvidenceRunBody::default(),
        Ok(Some(Json(body))) => body,
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the body must be {{\"environment\": ENV, \"workflow\": NAME, \"version\": HASH}}, each optional: {}",
                e.body_text()
            )));
        }
    };
    let environment = body
        .environment
        .unwrap_or_else(|| caller.grant.environment.clone());
    let subject = body.workflow.as_deref().unwrap_or("*");
    let caller = auth::require(&app, &headers, &environment, Action::Test, subject).await?;
    let project = project(&app).await?;
    let run = ops::evidence::run_deployed(
        &*app.store,
        &project,
        &environment,
        body.workflow.as_deref(),
        body.version.as_deref(),
        &caller.name,
        app.clock.now(),
    )
    .await?;
    Ok(Json(to_json(&run)?))
}

/// The approvers' inbox: the open requests the token may decide (into its environment,
/// when its role approves there and its name is one of the environment's approvers; never
/// its own), each with its verdict requirement by requirement, in one call.
#[utoipa::path(get, path = "/api/v1/inbox", tag = "promotion", security(("token" = [])),
    responses((status = 200, description = "The approver, the environments and the requests", body = Object),
              (status = 401, description = "No or unknown token", body = ErrorBody)))]
pub(crate) async fn inbox(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&app, &headers).await?;
    let environment = caller.grant.environment.clone();
    // A token whose role does not approve has an empty inbox, not a refusal: the
    // question "what waits for me" has an answer for everyone.
    let inbox = if caller.grant.role.allows(Action::Approve) {
        let project = project(&app).await?;
        ops::promotion::inbox(
            &*app.store,
            &project,
            &caller.name,
            Some(&environment),
            app.clock.now(),
        )
        .await?
    } else {
        ops::promotion::Inbox {
            approver: caller.name.clone(),
            environments: Vec::new(),
            requests: Vec::new(),
        }
    };
    Ok(Json(to_json(&inbox)?))
}
