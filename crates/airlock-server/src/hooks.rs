//! `POST /hooks/{environment}/{path}`: a delivery becomes a durably queued run.
//!
//! In order, each step refusing before anything is written: the path is one a workflow
//! could declare (`webhook::hook_path`: no `.`/`..` or empty segment, no backslash, no
//! percent-encoding; 400), the environment and the route exist (404), the hook's rate
//! limit (429), the body's size (413), the signature over the raw bytes (401), the JSON
//! and its depth (400), the idempotency key (a duplicate answers the first run's id).
//! Only then is the run enqueued, and only after the store's commit is the delivery
//! answered.

use crate::App;
use crate::completions::Outcome;
use crate::error::ApiError;
use crate::routes::Route;
use airlock_core::expr::render::{self, Scope};
use airlock_core::model::workflow::{RateLimit, RateUnit, Respond, Trigger, WebhookSignature};
use airlock_core::webhook::{self, Scheme, Verifier};
use airlock_store::{Enqueued, NewRun, RunStatus};
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Headers never copied into a run's trigger payload: credentials and signatures are for
/// the door, not for the journal.
const PRIVATE_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-signature",
    "x-signature",
];

/// (environment, path) → the version whose limit the limiter enforces, and the limiter.
type HookLimiters = HashMap<(String, String), (String, Arc<DefaultDirectRateLimiter>)>;

/// One rate limiter per hook, created from the trigger's declared limit; a new version
/// of the workflow gets a fresh limiter with its own limit.
#[derive(Default)]
pub(crate) struct Limiters {
    by_hook: Mutex<HookLimiters>,
}

impl Limiters {
    fn check(&self, route: &Route, path: &str, spec: &RateLimit) -> bool {
        let key = (route.environment.clone(), path.to_owned());
        let limiter = {
            let Ok(mut by_hook) = self.by_hook.lock() else {
                return true;
            };
            match by_hook.get(&key) {
                Some((version, limiter)) if *version == route.version => limiter.clone(),
                _ => {
                    let limiter = Arc::new(RateLimiter::direct(quota(spec)));
                    by_hook.insert(key, (route.version.clone(), limiter.clone()));
                    limiter
                }
            }
        };
        limiter.check().is_ok()
    }
}

fn quota(spec: &RateLimit) -> Quota {
    let count = NonZeroU32::new(spec.requests.max(1)).unwrap_or(NonZeroU32::MIN);
    let per = Duration::from_secs(match spec.per {
        RateUnit::Second => 1,
        RateUnit::Minute => 60,
        RateUnit::Hour => 3600,
    });
    // `count` requests per `per`, with a burst of `count`.
    Quota::with_period(per / count.get())
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

/// A webhook delivery. Answered 202 with the run id once the run is durably queued
/// (`respond: async`), or with the run's output (`respond: sync`, bounded wait).
#[utoipa::path(post, path = "/hooks/{environment}/{path}", tag = "webhooks",
    params(("environment" = String, Path, description = "The environment that owns the hook"),
           ("path" = String, Path, description = "The path the workflow's trigger declares")),
    request_body(content = Object, description = "The sender's JSON payload, signed if the trigger says so"),
    responses(
        (status = 202, description = "Queued (or a duplicate of an accepted delivery)", body = Object),
        (status = 200, description = "Synchronous: the run's output", body = Object),
        (status = 400, description = "Malformed or too deeply nested JSON, or a path that only looks safe (a `.`, `..` or empty segment, a backslash, percent-encoding)"),
        (status = 401, description = "Bad, missing or stale signature; nothing queued"),
        (status = 404, description = "No such environment or hook"),
        (status = 413, description = "Body larger than the hook's limit"),
        (status = 429, description = "The hook's rate limit is exceeded")))]
pub(crate) async fn deliver(
    State(app): State<Arc<App>>,
    Path((environment, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let decided = requested_path(request.uri().path(), &environment, &path);
    let path = match decided {
        Ok(path) => path,
        Err(refusal) => {
            app.metrics.webhook(&environment, refusal.outcome);
            return refusal.error.into_response();
        }
    };
    match accept(&app, &environment, &path, query.as_deref(), request).await {
        Ok(answer) => answer,
        Err(refusal) => {
            app.metrics.webhook(&environment, refusal.outcome);
            refusal.error.into_response()
        }
    }
}

/// The hook path a delivery asks for, decided from the request's path as sent (axum's
/// `Path` has decoded it already: `%2F` would be a `/` there) by the rule every declared
/// path passes, [`webhook::hook_path`]: a `.`/`..` or empty segment, a backslash or a
/// percent-encoded character is refused with 400 before anything is read or written, so
/// no path is served that a proxy would route elsewhere. The environment's segment must
/// be written plainly too.
fn requested_path(raw: &str, environment: &str, decoded: &str) -> Result<String, Refusal> {
    let refused = |reason: String| refuse("malformed", StatusCode::BAD_REQUEST, reason);
    let Some((raw_environment, rest)) = raw
        .strip_prefix("/hooks/")
        .and_then(|r| r.find('/').map(|slash| (&r[..slash], &r[slash..])))
    else {
        // Not the route's shape: only the decoded parts are known (a test router, say).
        return webhook::hook_path(decoded)
            .map_err(|e| refused(format!("the webhook path `{decoded}` {e}")));
    };
    if raw_environment != environment {
        return Err(refused(format!(
            "the environment in /hooks/{raw_environment}/ must be written plainly"
        )));
    }
    webhook::hook_path(rest).map_err(|e| {
        refused(format!(
            "the webhook path /hooks/{raw_environment}{rest} {e}; nothing was queued"
        ))
    })
}

struct Refusal {
    outcome: &'static str,
    error: ApiError,
}

fn refuse(outcome: &'static str, status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        outcome,
        error: ApiError::new(status, reason),
    }
}

async fn accept(
    app: &Arc<App>,
    environment: &str,
    path: &str,
    query: Option<&str>,
    request: Request,
) -> Result<Response, Refusal> {
    if app.manifest.environment(environment).is_none() {
        return Err(refuse(
            "not_found",
            StatusCode::NOT_FOUND,
            format!("no environment named `{environment}`"),
        ));
    }
    let route = app.routes.hook(environment, path).ok_or_else(|| {
        refuse(
            "not_found",
            StatusCode::NOT_FOUND,
            format!(
                "no workflow deployed in `{environment}` listens on /hooks/{environment}/{path}"
            ),
        )
    })?;
    let Some(Trigger::Webhook {
        signature,
        idempotency_key,
        respond,
        wait_ms,
        max_body,
        max_depth,
        rate_limit,
        ..
    }) = &route.definition.trigger
    else {
        return Err(refuse(
            "not_found",
            StatusCode::NOT_FOUND,
            "this workflow has no webhook trigger",
        ));
    };
    if let Some(limit) = rate_limit
        && !app.limiters.check(&route, path, limit)
    {
        let mut answer = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of /hooks/{environment}/{path} exceeded; retry later"),
        )
        .into_response();
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        app.metrics.webhook(environment, "rate_limited");
        return Ok(answer);
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, &parts.headers, *max_body).await?;
    if let Some(signature) = signature {
        verify(app, environment, signature, &parts.headers, &bytes).await?;
    }
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        webhook::parse_json_payload(&bytes, *max_depth as usize).map_err(|e| {
            refuse(
                "malformed",
                StatusCode::BAD_REQUEST,
                format!("the body is not acceptable JSON: {e}"),
            )
        })?
    };
    let now = app.clock.now();
    // Built once and shared, never copied: by the idempotency key, the run, every decision.
    let trigger = Arc::new(json!({
        "body": body,
        "headers": public_headers(&parts.headers),
        "query": query_map(query),
        "time": rfc3339(now),
    }));
    let dedupe_key = dedupe_key(&route, idempotency_key.as_deref(), &trigger, &parts.headers)?;
    let run_id = airlock_engine::new_run_id();
    let sync = *respond == Respond::Sync;
    let waiter = sync.then(|| app.completions.wait_for(&run_id));
    let run = NewRun {
        id: run_id.clone(),
        environment: environment.to_owned(),
        workflow: route.workflow.clone(),
        version: route.version.clone(),
        trigger,
        dedupe_key,
        created_at: now,
    };
    // With a free slot, accept and claim in one write and execute here at once; without
    // one (or when this process does not execute), queue it for any worker.
    let slot = app.inline.as_ref().and_then(|(engine, slots)| {
        slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| (engine.clone(), permit))
    });
    let enqueued = match slot {
        // The run goes on whether or not this request is still there to hear of it.
        Some((engine, permit)) => engine
            .admit(run, Arc::clone(&route.definition), permit)
            .await
            .map_err(ApiError::from),
        None => app.store.enqueue(&run).await.map_err(ApiError::from),
    };
    let enqueued = match enqueued {
        Ok(e) => e,
        Err(error) => {
            app.completions.forget(&run_id);
            return Err(Refusal {
                outcome: "error",
                error,
            });
        }
    };
    if !enqueued.created {
        app.completions.forget(&run_id);
    }
    app.metrics.webhook(
        environment,
        if enqueued.created {
            "accepted"
        } else {
            "duplicate"
        },
    );
    tracing::debug!(
        run = %enqueued.run, workflow = %route.workflow, version = %route.version,
        environment = %route.environment, created = enqueued.created,
        "run accepted"
    );
    if !sync {
        return Ok(accepted(app, &enqueued).await);
    }
    let waiter = if enqueued.created { waiter } else { None };
    let finished = wait_finished(app, &enqueued.run, waiter, Duration::from_millis(*wait_ms)).await;
    Ok(match finished {
        Some(outcome) => finished_answer(&outcome),
        None => accepted(app, &enqueued).await,
    })
}

/// The 202 answer. A new run is queued; a duplicate delivery names the first run and
/// where it is now, which may be long finished (one read, off the new-run path).
async fn accepted(app: &App, enqueued: &Enqueued) -> Response {
    let status = if enqueued.created {
        RunStatus::Queued
    } else {
        match app.store.run(&enqueued.run).await {
            Ok(Some(stored)) => stored.status,
            // The delivery was accepted before; not knowing where its run is now is no
            // reason to refuse it again.
            _ => RunStatus::Queued,
        }
    };
    (
        StatusCode::ACCEPTED,
        [("airlock-run", enqueued.run.clone())],
        axum::Json(json!({
            "run": enqueued.run,
            "status": status.as_str(),
            "duplicate": !enqueued.created,
        })),
    )
        .into_response()
}

async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<bytes::Bytes, Refusal> {
    let too_large = || {
        refuse(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than this hook's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            too_large()
        } else {
            refuse(
                "malformed",
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        }
    })
}

async fn verify(
    app: &App,
    environment: &str,
    signature: &WebhookSignature,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    let current = opened(app, environment, &signature.secret).await?;
    let previous = match &signature.previous_secret {
        Some(name) => opened(app, environment, name).await?,
        None => None,
    };
    let Some(current) = current else {
        tracing::error!(environment, secret = %signature.secret, "a hook's signing secret is not set");
        return Err(refuse(
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            format!(
                "the signing secret `{}` is not set in `{environment}`; no delivery can be verified",
                signature.secret
            ),
        ));
    };
    let scheme = Scheme::from_name(&signature.scheme).ok_or_else(|| {
        refuse(
            "error",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unknown signature scheme `{}`", signature.scheme),
        )
    })?;
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now =
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(app.clock.now()).unwrap_or_default();
    Verifier::new(scheme, current.as_bytes())
        .with_previous(previous.as_deref().map(str::as_bytes))
        .with_header(signature.header.as_deref())
        .verify(&lookup, body, now)
        .map(|_| ())
        .map_err(|e| {
            refuse(
                "unauthorized",
                StatusCode::UNAUTHORIZED,
                format!("signature refused: {e}"),
            )
        })
}

/// A signing secret of `environment`, opened; `None` when it is not set.
async fn opened(app: &App, environment: &str, name: &str) -> Result<Option<String>, Refusal> {
    crate::auth::secret(app, environment, name).await.map_err(|reason| {
        tracing::error!(environment, secret = %name, %reason, "a signing secret cannot be opened");
        refuse(
            "error",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the signing secret `{name}` of `{environment}` cannot be opened"),
        )
    })
}

fn dedupe_key(
    route: &Route,
    template: Option<&str>,
    trigger: &Arc<Value>,
    headers: &HeaderMap,
) -> Result<Option<String>, Refusal> {
    let key = match template {
        Some(template) => {
            let scope = Scope {
                trigger: Arc::clone(trigger),
                ..Scope::default()
            };
            let key = render::string(template, &scope).map_err(|e| {
                refuse(
                    "malformed",
                    StatusCode::BAD_REQUEST,
                    format!("the idempotency key cannot be computed from this delivery: {e}"),
                )
            })?;
            Some(key)
        }
        None => ["idempotency-key", "webhook-id", "x-github-delivery"]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .map(str::to_owned),
    };
    // Keys are scoped to the workflow: two hooks of one environment may reuse a sender's ids.
    Ok(key
        .filter(|k| !k.is_empty())
        .map(|k| format!("hook:{}:{k}", route.workflow)))
}

async fn wait_finished(
    app: &App,
    run: &str,
    waiter: Option<tokio::sync::oneshot::Receiver<Outcome>>,
    wait: Duration,
) -> Option<Outcome> {
    let deadline = tokio::time::Instant::now() + wait;
    if let Some(waiter) = waiter {
        // The run may be executed here (the observer answers at once) or by another
        // process (then only the store knows): listen for both.
        tokio::pin!(waiter);
        loop {
            tokio::select! {
                finished = &mut waiter => {
                    if let Ok(run) = finished {
                        return Some(run);
                    }
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Ok(Some(stored)) = app.store.run(run).await
                        && is_finished(stored.status)
                    {
                        app.completions.forget(run);
                        return Some(Outcome::of(stored));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        app.completions.forget(run);
                        return None;
                    }
                }
            }
        }
    }
    loop {
        if let Ok(Some(stored)) = app.store.run(run).await
            && is_finished(stored.status)
        {
            return Some(Outcome::of(stored));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn finished_answer(outcome: &Outcome) -> Response {
    let header = [("airlock-run", outcome.run.clone())];
    match outcome.status {
        RunStatus::Succeeded => (
            StatusCode::OK,
            header,
            axum::Json(outcome.output.clone().unwrap_or(Value::Null)),
        )
            .into_response(),
        status => (
            StatusCode::INTERNAL_SERVER_ERROR,
            header,
            axum::Json(json!({
                "run": outcome.run,
                "status": status.as_str(),
                "error": outcome.error,
            })),
        )
            .into_response(),
    }
}

fn public_headers(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if PRIVATE_HEADERS.contains(&name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            map.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    Value::Object(map)
}

fn query_map(query: Option<&str>) -> Value {
    let mut map = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        map.insert(key.into_owned(), Value::String(value.into_owned()));
    }
    Value::Object(map)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn is_finished(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Dead
    )
}
