//! The HTTP surface: webhooks, the REST API under `/api/v1`, health and metrics.
//!
//! Every route is declared once, with its OpenAPI description, through utoipa-axum's
//! `routes!`: the router and `/openapi.json` come from the same declarations, so the
//! document cannot list a route that does not exist or miss one that does.

use crate::App;
use crate::auth::{self, Caller};
use crate::error::ApiError;
use airlock_core::authz::Action;
use airlock_store::{RunFilter, RunStatus};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock",
        description = "Webhooks per environment and the REST API of an Airlock server. \
            API calls carry `Authorization: Bearer <token>`; a token grants one role in one environment.",
        license(name = "Apache-2.0")
    ),
    // Webhook paths may span several segments, which the router matches with a
    // catch-all (`{*path}`); the document names the same route `{path}`.
    paths(crate::hooks::deliver),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An error answer.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    /// Why the request was refused.
    error: String,
    /// How to get past it, when there is something useful to say.
    help: Option<String>,
}

/// The routes and their OpenAPI document, from one declaration.
pub(crate) fn openapi_router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(list_runs))
        .routes(routes!(show_run))
        .routes(routes!(retry_run))
        .routes(routes!(start_run))
        .routes(routes!(approve_step))
        .routes(routes!(deployments))
        .routes(routes!(records))
        .routes(routes!(list_secrets))
        .routes(routes!(set_secret))
        .routes(routes!(check_bindings))
        .routes(routes!(audit_log))
        .routes(routes!(audit_head))
        .routes(routes!(whoami))
        .routes(
            routes!(crate::promotion_api::deploy).layer(axum::extract::DefaultBodyLimit::max(
                crate::promotion_api::DEPLOY_BODY_LIMIT,
            )),
        )
        .routes(routes!(crate::promotion_api::evidence_run))
        .routes(routes!(crate::promotion_api::inbox))
        .routes(routes!(crate::promotion_api::promote))
        .routes(routes!(crate::promotion_api::approve))
        .routes(routes!(crate::promotion_api::reject))
        .routes(routes!(crate::promotion_api::rollback))
        .routes(routes!(crate::promotion_api::releases))
        .routes(routes!(crate::promotion_api::readiness))
        .routes(routes!(crate::promotion_api::diff))
        .routes(routes!(crate::promotion_api::evidence))
        .routes(routes!(crate::promotion_api::validate))
        .routes(routes!(crate::promotion_api::disable))
        .routes(routes!(crate::promotion_api::enable))
        .routes(routes!(crate::promotion_api::promotions))
        .routes(routes!(crate::promotion_api::withdraw))
        .routes(routes!(crate::promotion_api::config_status))
        .routes(routes!(crate::promotion_api::config_promote))
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi_router().into_openapi()
}

pub(crate) fn router(app: Arc<App>) -> axum::Router {
    let (router, document) = openapi_router().split_for_parts();
    let document = Arc::new(document);
    router
        // The API's routes only (a layer wraps the routes added before it): webhooks
        // answer their own signature failures.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::limit_failed_authentications,
        ))
        .route(
            "/hooks/{environment}/{*path}",
            axum::routing::post(crate::hooks::deliver),
        )
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .with_state(app)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: whether a delivery sent now would be accepted (see `ready`).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to accept deliveries: serving, not stopping, and the store takes writes with this build's schema"),
        (status = 503, description = "Starting, stopping, or the store refuses writes")))]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    crate::ready::answer(
        app.ready.load(Ordering::SeqCst),
        &app.write_probe,
        &*app.store,
    )
    .await
}

/// Prometheus metrics: runs by workflow, environment and status; step latency
/// histograms; queue depth; webhook outcomes.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.exposition()
}

/// Who the token is: its name, environment and role.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "api", security(("token" = [])),
    responses((status = 200, description = "The caller", body = Object),
              (status = 401, description = "No or unknown token", body = ErrorBody)))]
async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = auth::caller(&app, &headers).await?;
    Ok(Json(json!({
        "name": caller.name,
        "environment": caller.grant.environment,
        "role": caller.grant.role.to_string(),
    })))
}

#[derive(Deserialize, IntoParams)]
struct RunQuery {
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// Only runs in this status: queued, running, waiting, succeeded, failed, dead.
    status: Option<String>,
    /// At most this many (newest first); default 100.
    limit: Option<usize>,
}

fn parse_status(text: &str) -> Result<RunStatus, ApiError> {
    RunStatus::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown status `{text}`: expected queued, running, waiting, succeeded, failed or dead"
        ))
    })
}

/// An environment's runs, newest first.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/runs", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"), RunQuery),
    responses((status = 200, description = "Runs", body = Object),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
async fn list_runs(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    Query(query): Query<RunQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "runs").await?;
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let runs = airlock_ops::runs::list(
        &*app.store,
        RunFilter {
            environment: Some(environment),
            workflow: query.workflow,
            status,
            limit: query.limit,
            before: None,
        },
    )
    .await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Looks a run up and checks the caller may `action` in its environment.
async fn authorised_run(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    action: Action,
) -> Result<(airlock_store::Run, Caller), ApiError> {
    // Authenticate first, so an unknown token learns nothing about which runs exist.
    let caller = auth::caller(app, headers).await?;
    let run = airlock_ops::runs::run(&*app.store, id).await?;
    // A run of an environment the token cannot even read is answered as a run that does
    // not exist, with the same answer and without an audit write (whose cost would tell
    // the two apart as well): else a staging token could learn which production run ids
    // are real. Within its own environment a token may read every run, so a refusal
    // there (a role without the action) tells nothing and is answered 403 and audited.
    if airlock_core::authz::permits(&caller.grant, &run.environment, Action::Read).is_err() {
        return Err(airlock_ops::runs::no_such_run(id).into());
    }
    let caller = auth::require(app, headers, &run.environment, action, id).await?;
    Ok((run, caller))
}

/// One run with its journal.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "api", security(("token" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, description = "The run and its journal", body = Object),
              (status = 404, description = "No such run", body = ErrorBody)))]
async fn show_run(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<airlock_ops::runs::RunWithJournal>, ApiError> {
    authorised_run(&app, &headers, &id, Action::Read).await?;
    Ok(Json(airlock_ops::runs::show(&*app.store, &id).await?))
}

/// Puts a dead or failed run back in the queue; steps that succeeded are not run again.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "api", security(("token" = [])),
    params(("id" = String, Path, description = "The run id")),
    responses((status = 202, description = "Queued again", body = Object),
              (status = 409, description = "The run is not dead or failed", body = ErrorBody)))]
async fn retry_run(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, caller) = authorised_run(&app, &headers, &id, Action::Run).await?;
    let retried = airlock_ops::runs::retry(&*app.store, &id, &caller.name, app.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(retried)).into_response())
}

/// Starts a run of the version deployed in the environment, with the body as its input.
#[utoipa::path(post, path = "/api/v1/environments/{environment}/workflows/{workflow}/runs",
    tag = "api", security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("workflow" = String, Path, description = "The workflow")),
    request_body(content = Object, description = "The trigger body"),
    responses((status = 202, description = "Queued: the run's id, `queued`, and the version it runs", body = Object),
              (status = 403, description = "Not a runner of that environment", body = ErrorBody),
              (status = 404, description = "Nothing of that workflow is deployed there", body = ErrorBody)))]
async fn start_run(
    State(app): State<Arc<App>>,
    Path((environment, workflow)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::Run, &workflow).await?;
    let started = airlock_ops::runs::start(
        &*app.store,
        &app.manifest,
        airlock_ops::runs::StartRun {
            id: airlock_engine::new_run_id(),
            environment: &environment,
            workflow: &workflow,
            body: body.map(|Json(v)| v).unwrap_or_else(|| json!({})),
            by: Some(&caller.name),
            // A server runs what is deployed, never a working copy.
            working_copy: None,
            now: app.clock.now(),
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StepDecisionBody {
    /// `approve` (the default) or `reject`.
    #[serde(default)]
    decision: Option<String>,
    /// Why, for the journal.
    #[serde(default)]
    comment: Option<String>,
}

/// Decides an approval step. The approver is the token's name, which must be one of the
/// environment's approvers.
#[utoipa::path(post, path = "/api/v1/runs/{id}/steps/{step}/approve", tag = "api",
    security(("token" = [])),
    params(("id" = String, Path, description = "The run id"),
           ("step" = String, Path, description = "The approval step")),
    request_body(content = StepDecisionBody, description = "The decision"),
    responses((status = 200, description = "Decided; the run continues", body = Object),
              (status = 403, description = "Not an approver here", body = ErrorBody),
              (status = 409, description = "The run is not waiting on that step", body = ErrorBody)))]
async fn approve_step(
    State(app): State<Arc<App>>,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<StepDecisionBody>>,
) -> Result<Json<airlock_ops::runs::StepDecided>, ApiError> {
    // The role allows approving here; `decide_step` decides who is an approver and
    // whether the run waits on that step, as it does for the CLI.
    let (_, caller) = authorised_run(&app, &headers, &id, Action::Approve).await?;
    let body = body.map(|Json(b)| b);
    let approved = match body.as_ref().and_then(|b| b.decision.as_deref()) {
        None | Some("approve") => true,
        Some("reject") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown decision `{other}`: expected approve or reject"
            )));
        }
    };
    let decided = airlock_ops::runs::decide_step(
        &*app.store,
        &app.manifest,
        airlock_ops::runs::DecideStep {
            run: &id,
            step: &step,
            approver: &caller.name,
            via: airlock_ops::Via::Token,
            approved,
            comment: body.and_then(|b| b.comment),
            now: app.clock.now(),
        },
    )
    .await?;
    Ok(Json(decided))
}

/// What each workflow runs in an environment.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/deployments", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "Deployments", body = Object)))]
async fn deployments(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "deployments").await?;
    let mut deployments = app.store.deployments(Some(&environment)).await?;
    // The released configuration is not a workflow: `GET …/config` shows it.
    deployments.retain(|d| d.workflow != airlock_core::config::CONFIG_SUBJECT);
    Ok(Json(json!({ "deployments": deployments })))
}

/// Test records: what record-mode bindings would have sent.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/records", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "Test records", body = Object)))]
async fn records(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "records").await?;
    let records = app.store.records(&environment).await?;
    Ok(Json(json!({ "records": records })))
}

/// Every secret an environment declares, set or not.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SecretList {
    /// The secrets the environment declares in the server's airlock.yaml, in its order:
    /// names and update times, never values.
    secrets: Vec<airlock_ops::secrets::SecretRow>,
}

/// The secrets an environment declares in the server's airlock.yaml, each with whether a
/// value is stored and when it was set; never a value. The same rows as `airlock secrets
/// list` (a declared secret nobody set is listed too: it is the one that matters).
#[utoipa::path(get, path = "/api/v1/environments/{environment}/secrets", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "The declared secrets, set or not", body = SecretList),
              (status = 403, description = "Not allowed", body = ErrorBody),
              (status = 404, description = "The server's manifest has no such environment", body = ErrorBody)))]
async fn list_secrets(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SecretList>, ApiError> {
    auth::require(&app, &headers, &environment, Action::ListSecrets, "secrets").await?;
    // The manifest the server started with: the one `set_secret` checks declarations
    // against, so what is listed is exactly what may be set.
    let secrets =
        airlock_ops::secrets::list(&*app.store, &app.manifest, Some(&environment)).await?;
    Ok(Json(SecretList { secrets }))
}

/// Reaches each binding of the environment from this server, with its keys, its secrets
/// and its egress: one row per binding, OK or why not, never a value. The same rows as
/// `airlock check --env ENVIRONMENT` run where the project is; failed bindings answer 200
/// too (with `ok: false`): the check ran, and its answer is the rows.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/check", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "Each binding's answer", body = airlock_ops::check::CheckReport),
              (status = 403, description = "Not a deployer or admin of that environment", body = ErrorBody),
              (status = 404, description = "The server's manifest has no such environment", body = ErrorBody),
              (status = 409, description = "The server's project does not validate", body = ErrorBody)))]
async fn check_bindings(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<airlock_ops::check::CheckReport>, ApiError> {
    // Deployer rather than runner: see `Action::Check`.
    let caller_name = auth::require(&app, &headers, &environment, Action::Check, "check")
        .await?
        .name;
    let mut project = crate::promotion_api::project(&app).await?;
    project.manifest = (*app.manifest).clone();
    // Connectors of their own, built now: the check reads the secrets as they are now and
    // neither warms nor shares the engine's cached connectors. The bindings are those of
    // the manifest the server runs with.
    let runtime = airlock_engine::ProjectRuntime::new(
        app.store.clone(),
        (*app.manifest).clone(),
        app.root.clone(),
        app.keyring.clone(),
        app.clock.clone(),
    );
    let report = airlock_ops::check::check_and_record(
        &*app.store,
        &runtime,
        &project,
        &environment,
        &caller_name,
        app.clock.now(),
    )
    .await?;
    Ok(Json(report))
}

/// Sets a secret from the request body (plain text). Write-only: no route reads a value.
#[utoipa::path(put, path = "/api/v1/environments/{environment}/secrets/{name}", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment"),
           ("name" = String, Path, description = "The secret's name")),
    request_body(content = String, content_type = "text/plain", description = "The value"),
    responses((status = 204, description = "Stored, sealed under the environment's key"),
              (status = 403, description = "Not allowed", body = ErrorBody)))]
async fn set_secret(
    State(app): State<Arc<App>>,
    Path((environment, name)): Path<(String, String)>,
    headers: HeaderMap,
    value: String,
) -> Result<StatusCode, ApiError> {
    let caller = auth::require(&app, &headers, &environment, Action::SetSecret, &name).await?;
    airlock_ops::secrets::set(
        &*app.store,
        &app.manifest,
        &app.keyring,
        app.fingerprinter.as_ref(),
        airlock_ops::secrets::SecretToSet {
            environment: &environment,
            name: &name,
            value: &value,
            actor: &caller.name,
            via: airlock_ops::Via::Token,
            now: app.clock.now(),
        },
    )
    .await?;
    // A rotated signing secret takes effect at once in this process (others within the
    // cache's few seconds).
    app.secrets.forget(&environment, &name);
    Ok(StatusCode::NO_CONTENT)
}

/// The audit events of an environment, oldest first, with their chain hashes (what
/// `airlock audit --env ENVIRONMENT` lists). Only that environment's: the chain links every
/// environment's events and those of none (policy changes), so it is verified where the
/// store is (`airlock audit verify`), not from this answer.
#[utoipa::path(get, path = "/api/v1/environments/{environment}/audit", tag = "api",
    security(("token" = [])),
    params(("environment" = String, Path, description = "The environment")),
    responses((status = 200, description = "Audit events", body = Object)))]
async fn audit_log(
    State(app): State<Arc<App>>,
    Path(environment): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::require(&app, &headers, &environment, Action::Read, "audit").await?;
    let events = airlock_ops::audit_events(&*app.store, &app.manifest, Some(&environment)).await?;
    Ok(Json(json!({ "events": events })))
}

/// The audit chain's head: the newest event's sequence number and hash, what `airlock audit
/// head` prints and `airlock audit verify --expect SEQ:HASH` checks a chain against later.
/// The chain is one for every environment, so any token that may read its own
/// environment may read it (a viewer's).
#[utoipa::path(get, path = "/api/v1/audit/head", tag = "api",
    security(("token" = [])),
    responses((status = 200, description = "The newest event, or null for an empty log",
        body = airlock_ops::audit_chain::Head)))]
async fn audit_head(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<airlock_ops::audit_chain::Head>, ApiError> {
    auth::require_reader(&app, &headers, "audit").await?;
    Ok(Json(airlock_ops::audit_chain::head(&*app.store).await?))
}
