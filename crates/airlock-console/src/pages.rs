//! Each page and action: authorise as the API does, call the use case the API calls,
//! render. A page about one environment takes it from `?env=` (the caller's own by
//! default) and needs `Read` there; an action needs the action's role in the environment
//! it changes, then the use case's own rules (approvers, the author, protection) decide.

use crate::layout::{badge, csrf, html, json, page, short, took, when};
use crate::{Console, Refusal, check_csrf, over_tls, see_other, session};
use airlock_core::authz::Action;
use airlock_core::parity::{Finding, Status};
use airlock_core::release::{ReleaseKind, RequestStatus};
use airlock_core::run::{JournalEntry, RunStatus, StepStatus};
use airlock_ops::access::{self, Session};
use airlock_ops::{self as ops, Actor};
use airlock_store::{Page, RunCursor, RunFilter};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type Console_ = State<Arc<Console>>;
type Answer = Result<Response, Response>;

/// How many runs a page of the runs list shows.
const RUNS_PER_PAGE: usize = 50;

fn refuse(session: &Session) -> impl Fn(ops::OpsError) -> Response + '_ {
    move |e| Refusal::from(e).with_session(session).into_response()
}

fn ok(title: &str, session: &Session, content: Markup) -> Answer {
    Ok(html(page(title, Some(session), content)).into_response())
}

/// `Read` in `environment` for `subject`, audited when refused, as the API's `require`.
async fn may_read(
    console: &Console,
    session: &Session,
    environment: &str,
    subject: &str,
) -> Result<(), Response> {
    authorize(console, session, environment, Action::Read, subject).await
}

async fn authorize(
    console: &Console,
    session: &Session,
    environment: &str,
    action: Action,
    subject: &str,
) -> Result<(), Response> {
    access::authorize(
        &*console.store,
        console.clock.now(),
        &session.caller,
        environment,
        action,
        subject,
    )
    .await
    .map_err(refuse(session))
}

/// The environment a page is about: `?env=`, else the caller's own.
/// A page's reader: the session, the environment it asks for (`?env=`, else the token's
/// own), once the session may read there.
async fn reader(
    console: &Console,
    headers: &HeaderMap,
    asked: &Option<String>,
    subject: &str,
) -> Result<(Session, String), Response> {
    let session = session(console, headers).await?;
    let env = environment_of(&session, asked).to_owned();
    may_read(console, &session, &env, subject).await?;
    Ok((session, env))
}

fn environment_of<'a>(session: &'a Session, asked: &'a Option<String>) -> &'a str {
    asked
        .as_deref()
        .filter(|e| !e.is_empty())
        .unwrap_or(&session.caller.grant.environment)
}

fn changed(console: &Console) {
    if let Some(changed) = &console.changed {
        changed();
    }
}

// ---------------------------------------------------------------- sign-in

pub(crate) async fn sign_in_page() -> Response {
    html(sign_in_form(None)).into_response()
}

fn sign_in_form(problem: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            section.signin {
                @if let Some(problem) = problem { p.bad role="alert" { (problem) } }
                form method="post" action="/sign-in" {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="off" required
                        placeholder="alk_…" autofocus;
                    p.muted { "Your token is exchanged for a session; the console never shows it." }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
}

/// Exchanges a token for a session. A wrong token is answered 401 (the server counts
/// those per address, as for the API).
pub(crate) async fn sign_in(
    State(console): Console_,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let now = console.clock.now();
    let signed = match access::sign_in(&*console.store, &form.token, now).await {
        Ok(Ok(signed)) => signed,
        Ok(Err(why)) => {
            return (
                StatusCode::UNAUTHORIZED,
                html(sign_in_form(Some(&why.to_string()))),
            )
                .into_response();
        }
        Err(e) => return Refusal::from(e).into_response(),
    };
    let mut response = see_other("/");
    let max_age = (signed.expires_at - now).max(0) / 1000;
    let secure = if over_tls(&console, &headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        crate::SESSION_COOKIE,
        signed.session
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

pub(crate) async fn sign_out(
    State(console): Console_,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Answer {
    let session = session(&console, &headers).await?;
    check_csrf(&session, form.csrf.as_deref()).map_err(IntoResponse::into_response)?;
    if let Some(id) = crate::cookie(&headers, crate::SESSION_COOKIE) {
        access::sign_out(&*console.store, &id)
            .await
            .map_err(refuse(&session))?;
    }
    let mut response = see_other("/sign-in");
    let cleared = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        crate::SESSION_COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

// ---------------------------------------------------------------- home

/// Environments side by side: for each workflow, what each environment runs, its release
/// and its owner, each environment's configuration version, drift from the parity report
/// along the promotion path, open requests, disabled workflows.
///
/// A column is shown to whoever may read that environment, and a promotion path's source
/// to whoever may read its target (as the API's parity report is: the target's people
/// judge what comes in); other columns say they are not visible to this token.
pub(crate) async fn home(State(console): Console_, headers: HeaderMap) -> Answer {
    let session = session(&console, &headers).await?;
    let own = session.caller.grant.environment.clone();
    may_read(&console, &session, &own, "environments").await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let now = console.clock.now();
    let manifest = &project.manifest;
    let paths: Vec<(String, String)> = manifest
        .promotion
        .iter()
        .map(|r| (r.from.value.clone(), r.to.value.clone()))
        .collect();
    let visible = |env: &str| {
        access::may(&session.caller, env, Action::Read)
            || paths
                .iter()
                .any(|(from, to)| from == env && access::may(&session.caller, to, Action::Read))
    };
    let environments: Vec<&str> = manifest
        .environments
        .iter()
        .map(|e| e.name.value.as_str())
        .collect();
    // What each visible environment runs, by workflow.
    let mut deployed: BTreeMap<(String, String), airlock_store::Deployment> = BTreeMap::new();
    for env in environments.iter().filter(|e| visible(e)) {
        for d in console
            .store
            .deployments(Some(env))
            .await
            .map_err(|e| refuse(&session)(e.into()))?
        {
            deployed.insert((d.environment.clone(), d.workflow.clone()), d);
        }
    }
    let configs = ops::config::statuses(&*console.store, manifest)
        .await
        .map_err(refuse(&session))?;
    // Drift per workflow along each visible promotion path.
    let mut drift: BTreeMap<String, usize> = BTreeMap::new();
    let mut environment_drift = 0usize;
    for (from, to) in paths.iter().filter(|(_, to)| visible(to)) {
        let diff = ops::diff::diff(&*console.store, &project, from, to, now)
            .await
            .map_err(refuse(&session))?;
        for finding in diff.report.findings.iter().filter(|f| f.is_drift()) {
            match &finding.workflow {
                Some(w) => *drift.entry(w.clone()).or_default() += 1,
                None => environment_drift += 1,
            }
        }
    }
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for env in environments.iter().filter(|e| visible(e)) {
        for row in ops::promotion::list(
            &*console.store,
            &project,
            Some(RequestStatus::Open),
            Some(env),
            now,
        )
        .await
        .map_err(refuse(&session))?
        {
            *pending.entry(row.request.request.workflow).or_default() += 1;
        }
    }
    let first_path = paths.first().cloned();
    let mut disabled = std::collections::BTreeSet::new();
    if let Some((_, to)) = first_path.as_ref().filter(|(_, to)| visible(to)) {
        for w in &project.workflows {
            let name = w.workflow.name.value.as_str();
            if releases_disabled(&console, to, name).await {
                disabled.insert(name.to_owned());
            }
        }
    }
    let content = html! {
        section {
            h2 { "Configuration" }
            div.grid {
                @for env in &environments {
                    div.card {
                        strong { (env) }
                        @if manifest.environment(env).is_some_and(|e| e.protected) { " " (badge("info", "protected")) }
                        br;
                        @match configs.iter().find(|c| c.environment == *env) {
                            Some(c) => {
                                "configuration " code { (c.released.as_deref().map(short).unwrap_or("not yet released")) }
                                @if c.differs() { " " (badge("warn", "working copy differs")) }
                            }
                            None => { span.muted { "unprotected: runs the working copy's configuration" } }
                        }
                    }
                }
            }
            @if environment_drift > 0 {
                p { (badge("bad", &format!("{environment_drift} drift"))) " between the environments: see " a href="/parity" { "Parity" } }
            }
        }
        section.scroll {
            h2 { "Workflows" }
            table {
                thead { tr {
                    th scope="col" { "Workflow" }
                    @for env in &environments { th scope="col" { (env) } }
                    th scope="col" { "State" }
                } }
                tbody {
                    @for workflow in &project.workflows {
                        @let name = workflow.workflow.name.value.as_str();
                        tr {
                            th scope="row" { a href={"/releases?workflow=" (name)} { (name) } }
                            @for env in &environments {
                                td {
                                    @if !visible(env) {
                                        span.muted { "not visible to your token" }
                                    } @else {
                                        @match deployed.get(&(env.to_string(), name.to_owned())) {
                                            Some(d) => {
                                                code { (short(&d.version)) } br;
                                                span.muted { (when(d.updated_at)) " by " (d.actor) } br;
                                                // Release owners come with their own issue; their place is here.
                                                span.muted title="the release's owner" { "owner: not set" }
                                            }
                                            None => { span.muted { "not deployed" } }
                                        }
                                    }
                                }
                            }
                            td {
                                @if let Some((from, to)) = &first_path {
                                    @let source = deployed.get(&(from.clone(), name.to_owned()));
                                    @let target = deployed.get(&(to.clone(), name.to_owned()));
                                    @if visible(to) {
                                        @match (source, target) {
                                            (Some(s), Some(t)) if s.version != t.version => { (badge("warn", &format!("{from} ahead of {to}"))) " " }
                                            (Some(_), None) => { (badge("warn", &format!("{from} ahead of {to}"))) " " }
                                            (Some(_), Some(_)) => { (badge("ok", "same version")) " " }
                                            _ => {}
                                        }
                                        @if target.is_none() && disabled.contains(name) {
                                            (badge("bad", "disabled")) " "
                                        }
                                    }
                                }
                                @if let Some(n) = drift.get(name) { (badge("bad", &format!("{n} drift"))) " " }
                                @if let Some(n) = pending.get(name) { a href="/inbox" { (badge("info", &format!("{n} pending"))) } }
                            }
                        }
                    }
                }
            }
        }
    };
    ok("Environments", &session, content)
}

/// Whether the workflow's newest release in `environment` took it out.
async fn releases_disabled(console: &Console, environment: &str, workflow: &str) -> bool {
    console
        .store
        .releases(environment, workflow)
        .await
        .ok()
        .and_then(|r| r.first().map(|r| r.release.kind == ReleaseKind::Disable))
        .unwrap_or(false)
}

// ---------------------------------------------------------------- parity

#[derive(Deserialize)]
pub(crate) struct ParityQuery {
    from: Option<String>,
    to: Option<String>,
}

pub(crate) async fn parity(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<ParityQuery>,
) -> Answer {
    let session = session(&console, &headers).await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let rule = project.manifest.promotion.first();
    let from = query
        .from
        .or_else(|| rule.map(|r| r.from.value.clone()))
        .unwrap_or_default();
    let to = query
        .to
        .or_else(|| rule.map(|r| r.to.value.clone()))
        .unwrap_or_default();
    // As the API's diff: Read in the target.
    may_read(&console, &session, &to, "diff").await?;
    let diff = ops::diff::diff(&*console.store, &project, &from, &to, console.clock.now())
        .await
        .map_err(refuse(&session))?;
    let c = diff.counts;
    let content = html! {
        p {
            (diff.report.from) " → " (diff.report.to) ": "
            (c.same) " same, " (c.documented) " documented, " (c.drift) " drift, "
            (c.pending) " pending promotion, " (c.notes) " notes "
            @if diff.clean { (badge("ok", "clean")) } @else { (badge("bad", "drift")) }
        }
        @for dimension in airlock_core::parity::Dimension::ALL {
            @let rows: Vec<&Finding> = diff.report.findings.iter().filter(|f| f.dimension == dimension && f.status != Status::Same).collect();
            section.scroll {
                h2 { (format!("{dimension:?}")) }
                @if rows.is_empty() { p.muted { "no difference" } } @else {
                    table {
                        thead { tr { th { "What" } th { (diff.report.from) } th { (diff.report.to) } th { "Status" } } }
                        tbody {
                            @for f in rows {
                                tr {
                                    td { (f.what) @if let Some(w) = &f.workflow { br; span.muted { (w) } } }
                                    td { code { (f.from) } }
                                    td { code { (f.to) } }
                                    td {
                                        @match &f.status {
                                            Status::Documented { by, reason } => { (badge("ok", "documented")) br; span.muted { (reason) " (" (by) ")" } }
                                            Status::Drift => {
                                                (badge("bad", "drift")) br;
                                                span.muted { (airlock_core::parity::fix_hint(f)) }
                                            }
                                            Status::Pending => { (badge("info", "pending promotion")) }
                                            Status::Note => { (badge("warn", "note")) }
                                            Status::Same => { "same" }
                                        }
                                        @if let Some(d) = &f.detail { br; span.muted { (d) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !diff.report.notes.is_empty() {
            section { h2 { "Not compared" } ul { @for n in &diff.report.notes { li { (n) } } } }
        }
        @for c in &diff.configuration {
            section {
                h2 { "Configuration of " (c.environment) }
                p { "released " code { (c.released.as_deref().map(short).unwrap_or("none")) } ", working copy " code { (short(&c.working)) } }
                @if !c.diff.is_empty() {
                    pre { @for line in &c.diff { (line.sign) " " (line.text) "\n" } }
                }
            }
        }
    };
    ok("Parity", &session, content)
}

// ---------------------------------------------------------------- inbox

#[derive(Deserialize)]
pub(crate) struct EnvQuery {
    env: Option<String>,
}

/// Open requests into the environment, each with its verdict requirement by requirement,
/// the change (the released version against the requested one) and the decision buttons
/// for its approvers, never for its author.
pub(crate) async fn inbox(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<EnvQuery>,
) -> Answer {
    let (session, env) = reader(&console, &headers, &query.env, "promotions").await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let now = console.clock.now();
    let rows = ops::promotion::list(
        &*console.store,
        &project,
        Some(RequestStatus::Open),
        Some(&env),
        now,
    )
    .await
    .map_err(refuse(&session))?;
    let effective =
        ops::config::effective_manifest(&*console.store, &project.manifest, "airlock", now)
            .await
            .map_err(refuse(&session))?;
    let approvers: Vec<&str> = effective
        .environment(&env)
        .map(|e| e.approvers.iter().map(|a| a.value.as_str()).collect())
        .unwrap_or_default();
    let mut changes = Vec::new();
    for row in &rows {
        changes.push(change_of(&console, &row.request.request).await);
    }
    let name = session.caller.name.as_str();
    let content = html! {
        @if rows.is_empty() { p.muted { "No open request into " (env) "." } }
        @for (row, change) in rows.iter().zip(&changes) {
            @let r = &row.request.request;
            section aria-labelledby={"req-" (r.id)} {
                h2 id={"req-" (r.id)} { (r.workflow) " " code { (short(&r.version)) } " → " (r.to_environment) }
                p.muted { (r.id) " · asked by " (r.author) " at " (when(r.created_at))
                    @if let Some(e) = row.expires_at { " · expires " (when(e)) } }
                @if let Some(verdict) = &row.verdict {
                    table {
                        thead { tr { th { "Requirement" } th { "Required" } th { "Found" } th { "" } } }
                        tbody {
                            @for c in &verdict.checks {
                                tr {
                                    td { (c.requirement) } td { (c.required) } td { (c.actual) }
                                    td { @if c.met { (badge("ok", "met")) } @else { (badge("bad", "not met")) } }
                                }
                            }
                        }
                    }
                }
                @if !row.approvals.is_empty() {
                    p { "Decisions: "
                        @for a in &row.approvals {
                            (a.approver) " " @if a.approved { (badge("ok", "approved")) } @else { (badge("bad", "rejected")) } " "
                        }
                    }
                }
                h3 { "The change" }
                (change)
                @if r.author == name {
                    p.muted { "You asked for this promotion: another approver decides it." }
                } @else if access::may(&session.caller, &r.to_environment, Action::Approve) && approvers.contains(&name) {
                    form.inline method="post" action={"/inbox/" (r.id) "/approve"} {
                        (csrf(&session))
                        button type="submit" { "Approve" }
                    }
                    form.inline method="post" action={"/inbox/" (r.id) "/reject"} {
                        (csrf(&session))
                        label { "Reason for rejecting" input type="text" name="reason" required; }
                        button.danger type="submit" { "Reject" }
                    }
                }
            }
        }
    };
    ok("Inbox", &session, content)
}

/// The released version's text against the requested one's, line by line (`similar`).
async fn change_of(console: &Console, request: &airlock_store::NewPromotionRequest) -> Markup {
    let requested = console.store.version(&request.version).await.ok().flatten();
    let released = match console
        .store
        .deployment(&request.to_environment, &request.workflow)
        .await
    {
        Ok(Some(deployed)) => console
            .store
            .version(&deployed.version)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let Some(requested) = requested else {
        return html! { p.muted { "the requested version's text is not in the store" } };
    };
    let old = released.as_ref().map(|v| v.source.as_str()).unwrap_or("");
    let diff = similar::TextDiff::from_lines(old, requested.source.as_str());
    html! {
        @if released.is_none() { p.muted { "nothing of it is released there yet: all of it is new" } }
        div.diff.scroll {
            pre {
                @for change in diff.iter_all_changes() {
                    @let (class, sign) = match change.tag() {
                        similar::ChangeTag::Delete => ("del", "-"),
                        similar::ChangeTag::Insert => ("add", "+"),
                        similar::ChangeTag::Equal => ("", " "),
                    };
                    span class=(class) { (sign) " " (change.value().trim_end_matches('\n')) }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct DecisionForm {
    csrf: Option<String>,
    reason: Option<String>,
}

pub(crate) async fn approve(
    state: Console_,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Answer {
    decide(state, headers, id, form, true).await
}

pub(crate) async fn reject(
    state: Console_,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Answer {
    decide(state, headers, id, form, false).await
}

/// As the API's approve and reject: the request's target decides who may.
async fn decide(
    State(console): Console_,
    headers: HeaderMap,
    id: String,
    form: DecisionForm,
    approve: bool,
) -> Answer {
    let session = session(&console, &headers).await?;
    check_csrf(&session, form.csrf.as_deref()).map_err(IntoResponse::into_response)?;
    let request = ops::promotion::request(&*console.store, &id)
        .await
        .map_err(refuse(&session))?;
    let target = request.request.to_environment.clone();
    authorize(&console, &session, &target, Action::Approve, &id).await?;
    let reason = form.reason.filter(|r| !r.trim().is_empty());
    if !approve && reason.is_none() {
        return Err(
            Refusal::new(StatusCode::BAD_REQUEST, "a rejection needs a reason")
                .with_session(&session)
                .into_response(),
        );
    }
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let decision = ops::promotion::decide(
        &*console.store,
        &project,
        &id,
        Actor::token(&session.caller.name),
        approve,
        reason.as_deref(),
        console.clock.now(),
    )
    .await
    .map_err(refuse(&session))?;
    if decision.release.is_some() {
        changed(&console);
        return Ok(see_other(&format!(
            "/releases?env={target}&workflow={}",
            decision.workflow
        )));
    }
    Ok(see_other(&format!("/inbox?env={target}")))
}

// ---------------------------------------------------------------- runs

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    env: Option<String>,
    workflow: Option<String>,
    status: Option<String>,
    /// Accepted before this time (`YYYY-MM-DD` or RFC 3339).
    before: Option<String>,
    /// The page after this run (`CREATED_AT:ID`, from the previous page's link).
    after: Option<String>,
}

/// An environment's runs, newest first, a page at a time: each next page reads the index
/// from where the last ended (a cursor, never an offset).
pub(crate) async fn runs(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<RunsQuery>,
) -> Answer {
    let (session, env) = reader(&console, &headers, &query.env, "runs").await?;
    let bad = |message: String| {
        Refusal::new(StatusCode::BAD_REQUEST, message)
            .with_session(&session)
            .into_response()
    };
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            bad(format!(
                "unknown status `{text}`: expected queued, running, waiting, succeeded, failed or dead"
            ))
        })?),
    };
    let workflow = query.workflow.clone().filter(|w| !w.is_empty());
    let before_time = query.before.as_deref().filter(|b| !b.trim().is_empty());
    let cursor = match (
        query.after.as_deref().filter(|a| !a.is_empty()),
        before_time,
    ) {
        (Some(after), _) => Some(
            parse_cursor(after)
                .ok_or_else(|| bad(format!("`after={after}` is not a page of this list")))?,
        ),
        (None, Some(before)) => Some(RunCursor {
            created_at: parse_time(before).ok_or_else(|| {
                bad(format!(
                    "`before={before}` is not a time: write 2026-12-02 or 2026-12-02T10:00:00Z"
                ))
            })?,
            // Below every id: the runs accepted before that instant.
            id: String::new(),
        }),
        (None, None) => None,
    };
    let page_runs = ops::runs::list(
        &*console.store,
        RunFilter {
            environment: Some(env.clone()),
            workflow: workflow.clone(),
            status,
            limit: Some(RUNS_PER_PAGE),
            before: cursor,
        },
    )
    .await
    .map_err(refuse(&session))?;
    let next = (page_runs.len() == RUNS_PER_PAGE)
        .then(|| page_runs.last())
        .flatten()
        .map(|last| {
            let mut link = format!(
                "/runs?env={}&after={}:{}",
                encode(&env),
                last.created_at,
                encode(&last.id)
            );
            if let Some(w) = &workflow {
                link.push_str(&format!("&workflow={}", encode(w)));
            }
            if let Some(s) = status {
                link.push_str(&format!("&status={}", s.as_str()));
            }
            link
        });
    let statuses = [
        "queued",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "dead",
    ];
    let content = html! {
        form.inline method="get" action="/runs" {
            label { "Environment" select name="env" {
                @for e in &console.manifest.environments {
                    option value=(e.name.value) selected[e.name.value == env] { (e.name.value) }
                }
            } }
            label { "Workflow" input type="text" name="workflow" value=(workflow.as_deref().unwrap_or("")); }
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in statuses { option value=(s) selected[status.map(RunStatus::as_str) == Some(s)] { (s) } }
            } }
            label { "Accepted before" input type="text" name="before" placeholder="2026-12-02" value=(before_time.unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        section.scroll {
            @if page_runs.is_empty() { p.muted { "No run matches." } } @else {
                table {
                    thead { tr { th { "Run" } th { "Workflow" } th { "Version" } th { "Status" } th { "Accepted" } th { "Took" } } }
                    tbody {
                        @for r in &page_runs {
                            tr {
                                td { a href={"/runs/" (r.id)} { code { (r.id) } } }
                                td { (r.workflow) }
                                td { code { (short(&r.version)) } }
                                td { (status_badge(r.status)) }
                                td { (when(r.created_at)) }
                                td { @if let (Some(s), Some(f)) = (r.started_at, r.finished_at) { (took(f - s)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &next { p { a href=(next) rel="next" { "Older runs →" } } }
        }
    };
    ok("Runs", &session, content)
}

fn status_badge(status: RunStatus) -> Markup {
    let class = match status {
        RunStatus::Succeeded => "ok",
        RunStatus::Failed | RunStatus::Dead => "bad",
        RunStatus::Waiting => "info",
        RunStatus::Queued | RunStatus::Running => "warn",
    };
    badge(class, status.as_str())
}

fn parse_cursor(text: &str) -> Option<RunCursor> {
    let (at, id) = text.split_once(':')?;
    Some(RunCursor {
        created_at: at.parse().ok()?,
        id: id.to_owned(),
    })
}

fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.len() == 10 {
        return airlock_core::time::parse_rfc3339(&format!("{text}T00:00:00Z"));
    }
    airlock_core::time::parse_rfc3339(text)
}

/// A query value, percent-encoded (ids and names are plain, but a link must hold whatever).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A run and its journal as a timeline: attempts, idempotency keys, outcomes (an
/// interrupted call reads `outcome unknown`), timings, the inputs as journaled (secrets
/// were redacted before they were written), with retry and the approval step's decision
/// for those allowed.
pub(crate) async fn run(
    State(console): Console_,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let session = session(&console, &headers).await?;
    let shown = ops::runs::show(&*console.store, &id)
        .await
        .map_err(refuse(&session))?;
    let run = &shown.run;
    // As the API: a run of an environment the caller cannot read is a run that does not
    // exist (so ids do not leak across environments).
    if !access::may(&session.caller, &run.environment, Action::Read) {
        return Err(Refusal::from(ops::runs::no_such_run(&id))
            .with_session(&session)
            .into_response());
    }
    let waiting_on = waiting_step(&shown.journal).filter(|_| run.status == RunStatus::Waiting);
    let may_retry = matches!(run.status, RunStatus::Dead | RunStatus::Failed)
        && access::may(&session.caller, &run.environment, Action::Run);
    let may_decide = access::may(&session.caller, &run.environment, Action::Approve);
    let content = html! {
        section {
            p {
                (status_badge(run.status)) " "
                (run.workflow) " " code { (short(&run.version)) } " in " (run.environment)
                " · accepted " (when(run.created_at))
                @if let Some(f) = run.finished_at { " · finished " (when(f)) }
                " · claimed " (run.claims) " time" @if run.claims != 1 { "s" }
            }
            @if let Some(key) = &run.dedupe_key { p.muted { "delivery key " code { (key) } } }
            @if let Some(e) = &run.error { p.bad { (e) } }
            @if may_retry {
                form.inline method="post" action={"/runs/" (run.id) "/retry"} {
                    (csrf(&session))
                    button type="submit" { "Retry" }
                }
            }
            @if let (Some(step), true) = (waiting_on, may_decide) {
                form.inline method="post" action={"/runs/" (run.id) "/steps/" (step) "/decide"} {
                    (csrf(&session))
                    label { "Comment" input type="text" name="comment"; }
                    button type="submit" name="decision" value="approve" { "Approve step " (step) }
                    button.danger type="submit" name="decision" value="reject" { "Reject" }
                }
            }
        }
        section {
            h2 { "Trigger" }
            pre { (json(&run.trigger)) }
            @if let Some(out) = &run.output { h2 { "Output" } pre { (json(out)) } }
        }
        section {
            h2 { "Journal" }
            ol.timeline {
                @for e in &shown.journal { (entry(e)) }
            }
        }
    };
    ok(&format!("Run {}", run.id), &session, content)
}

fn entry(e: &JournalEntry) -> Markup {
    let entry = &e.entry;
    let (class, label) = match entry.status {
        StepStatus::OutcomeUnknown => ("outcome_unknown", "outcome unknown"),
        other => (other.as_str(), other.as_str()),
    };
    html! {
        li class=(class) {
            strong { (entry.step) } " · attempt " (entry.attempt) " · "
            (badge(match entry.status {
                StepStatus::Succeeded => "ok",
                StepStatus::Failed => "bad",
                StepStatus::OutcomeUnknown => "warn",
                _ => "info",
            }, label))
            br;
            span.muted {
                (when(entry.started_at))
                @if let Some(f) = entry.finished_at { " · took " (took(f - entry.started_at)) }
                @if let Some(k) = &entry.idempotency_key { " · key " code { (k) } }
            }
            @if entry.status == StepStatus::OutcomeUnknown {
                p.warn { "The process stopped while this call was under way: it is retried with the same idempotency key." }
            }
            @if let Some(err) = &entry.error { p.bad { (err) } }
            @if let Some(input) = &entry.input { details { summary { "inputs (secrets redacted)" } pre { (json(input)) } } }
            @if let Some(output) = &entry.output { details { summary { "output" } pre { (json(output)) } } }
        }
    }
}

/// The step a run waits on: its journal's last `waiting` entry (what the store checks).
fn waiting_step(journal: &[JournalEntry]) -> Option<&str> {
    journal
        .iter()
        .rev()
        .find(|e| e.entry.status == StepStatus::Waiting)
        .map(|e| e.entry.step.as_str())
}

pub(crate) async fn retry(
    State(console): Console_,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Answer {
    let session = session(&console, &headers).await?;
    check_csrf(&session, form.csrf.as_deref()).map_err(IntoResponse::into_response)?;
    let found = run_for(&console, &session, &id, Action::Run).await?;
    ops::runs::retry(
        &*console.store,
        &found.id,
        &session.caller.name,
        console.clock.now(),
    )
    .await
    .map_err(refuse(&session))?;
    Ok(see_other(&format!("/runs/{}", encode(&id))))
}

/// The run, if the caller may `action` in its environment (as the API's `authorised_run`:
/// unknown when they cannot even read there).
async fn run_for(
    console: &Console,
    session: &Session,
    id: &str,
    action: Action,
) -> Result<airlock_store::Run, Response> {
    let found = ops::runs::run(&*console.store, id)
        .await
        .map_err(refuse(session))?;
    if !access::may(&session.caller, &found.environment, Action::Read) {
        return Err(Refusal::from(ops::runs::no_such_run(id))
            .with_session(session)
            .into_response());
    }
    authorize(console, session, &found.environment, action, id).await?;
    Ok(found)
}

#[derive(Deserialize)]
pub(crate) struct StepForm {
    csrf: Option<String>,
    decision: Option<String>,
    comment: Option<String>,
}

pub(crate) async fn decide_step(
    State(console): Console_,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    Form(form): Form<StepForm>,
) -> Answer {
    let session = session(&console, &headers).await?;
    check_csrf(&session, form.csrf.as_deref()).map_err(IntoResponse::into_response)?;
    run_for(&console, &session, &id, Action::Approve).await?;
    let approved = match form.decision.as_deref() {
        None | Some("approve") => true,
        Some("reject") => false,
        Some(other) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("unknown decision `{other}`: expected approve or reject"),
            )
            .with_session(&session)
            .into_response());
        }
    };
    ops::runs::decide_step(
        &*console.store,
        &console.manifest,
        ops::runs::DecideStep {
            run: &id,
            step: &step,
            approver: &session.caller.name,
            via: ops::Via::Token,
            approved,
            comment: form.comment.filter(|c| !c.trim().is_empty()),
            now: console.clock.now(),
        },
    )
    .await
    .map_err(refuse(&session))?;
    Ok(see_other(&format!("/runs/{}", encode(&id))))
}

// ---------------------------------------------------------------- releases

#[derive(Deserialize)]
pub(crate) struct ReleasesQuery {
    env: Option<String>,
    workflow: Option<String>,
}

/// Per workflow: every release (who, when, which hash, approvers, evidence), the failure
/// rate before and after each as a chart, and rollback for those allowed.
pub(crate) async fn releases(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<ReleasesQuery>,
) -> Answer {
    let (session, env) = reader(&console, &headers, &query.env, "releases").await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let names: Vec<String> = match query.workflow.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => vec![
            ops::workflow(&project, w)
                .map_err(refuse(&session))?
                .workflow
                .name
                .value
                .clone(),
        ],
        None => project
            .workflows
            .iter()
            .map(|w| w.workflow.name.value.clone())
            .collect(),
    };
    let may_roll_back = access::may(&session.caller, &env, Action::Rollback);
    let mut sections = Vec::new();
    for name in &names {
        let rows = ops::promotion::releases(&*console.store, name, &env)
            .await
            .map_err(refuse(&session))?;
        let evidence = console
            .store
            .releases(&env, name)
            .await
            .map_err(|e| refuse(&session)(e.into()))?;
        sections.push(html! {
            section aria-labelledby={"wf-" (name)} {
                h2 id={"wf-" (name)} { (name) " in " (env) }
                @if rows.is_empty() { p.muted { "Never released here." } } @else {
                    (crate::chart::failure_rates(name, &rows))
                    div.scroll { table {
                        thead { tr { th { "Release" } th { "Kind" } th { "Version" } th { "Who" } th { "When" } th { "Failed before" } th { "Failed after" } th { "Evidence" } } }
                        tbody {
                            @for row in &rows {
                                tr {
                                    td { code { (row.release) } @if row.current { " " (badge("ok", "current")) } }
                                    td { (format!("{:?}", row.kind).to_lowercase()) }
                                    td { code { (short(&row.version)) } }
                                    td { (row.author) @if !row.approvers.is_empty() { br; span.muted { "approved by " (row.approvers.join(", ")) } } }
                                    td { (when(row.at)) }
                                    td { (row.failed_before) " / " (row.runs_before) }
                                    td { (row.failed_after) " / " (row.runs_after) }
                                    td {
                                        @if let Some(r) = evidence.iter().find(|r| r.release.id == row.release) {
                                            details { summary { "evidence" } pre { (json(&r.release.evidence)) } }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                    @if may_roll_back && rows.first().is_some_and(|r| r.kind != ReleaseKind::Disable) {
                        form.inline method="post" action={"/releases/" (env) "/" (name) "/rollback"} {
                            (csrf(&session))
                            button.danger type="submit" { "Roll back " (name) " in " (env) }
                        }
                    }
                }
            }
        });
    }
    let content = html! {
        form.inline method="get" action="/releases" {
            label { "Environment" select name="env" {
                @for e in &console.manifest.environments {
                    option value=(e.name.value) selected[e.name.value == env] { (e.name.value) }
                }
            } }
            button type="submit" { "Show" }
        }
        @for s in sections { (s) }
    };
    ok("Releases", &session, content)
}

#[derive(Deserialize)]
pub(crate) struct RollbackForm {
    csrf: Option<String>,
    to: Option<String>,
}

pub(crate) async fn rollback(
    State(console): Console_,
    headers: HeaderMap,
    Path((environment, workflow)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Answer {
    let session = session(&console, &headers).await?;
    check_csrf(&session, form.csrf.as_deref()).map_err(IntoResponse::into_response)?;
    authorize(
        &console,
        &session,
        &environment,
        Action::Rollback,
        &workflow,
    )
    .await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    ops::promotion::rollback(
        &*console.store,
        &project,
        &workflow,
        &environment,
        form.to.as_deref().filter(|t| !t.is_empty()),
        Actor::token(&session.caller.name),
        console.clock.now(),
    )
    .await
    .map_err(refuse(&session))?;
    changed(&console);
    Ok(see_other(&format!(
        "/releases?env={}&workflow={}",
        encode(&environment),
        encode(&workflow)
    )))
}

// ---------------------------------------------------------------- readiness, audit, records

pub(crate) async fn readiness(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<EnvQuery>,
) -> Answer {
    let (session, _) = reader(&console, &headers, &query.env, "readiness").await?;
    let project = ops::served_project(console.project.clone())
        .await
        .map_err(refuse(&session))?;
    let checklist =
        ops::readiness::readiness(&*console.store, &project, None, None, console.clock.now())
            .await
            .map_err(refuse(&session))?;
    let content = html! {
        @if let Some(path) = &checklist.path { p { "Judged on the path " (path.from) " → " (path.to) "." } }
        @for w in &checklist.workflows {
            section {
                h2 { (w.workflow) " " @if w.ready { (badge("ok", "ready")) } @else { (badge("warn", "unclear")) }
                    " " span.muted { (format!("{:?}", w.risk).to_lowercase()) " risk" } }
                dl {
                    @for a in &w.answers {
                        dt { (a.asks) " " @if a.clear { (badge("ok", "clear")) } @else { (badge("warn", "unclear")) } }
                        dd { (a.answer) }
                    }
                }
            }
        }
    };
    ok("Readiness", &session, content)
}

/// A page of a log read newest first: the environment, and where the previous page ended.
#[derive(Deserialize)]
pub(crate) struct LogQuery {
    env: Option<String>,
    /// Entries numbered below this (the last of the previous page).
    before: Option<i64>,
}

/// How many audit events or test records a page shows.
const LOG_PAGE: usize = 100;

/// The link to the page after `last`, when this page was full.
fn older(path: &str, env: &str, shown: usize, last: Option<i64>) -> Option<String> {
    (shown == LOG_PAGE)
        .then_some(last)
        .flatten()
        .map(|last| format!("{path}?env={}&before={last}", encode(env)))
}

/// The environment's audit events, newest first, a page at a time, with the whole chain's
/// verification and its head.
pub(crate) async fn audit(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> Answer {
    let (session, env) = reader(&console, &headers, &query.env, "audit").await?;
    let verification = ops::audit_chain::verify(&*console.store, None)
        .await
        .map_err(refuse(&session))?;
    let page = Page {
        before: query.before,
        limit: LOG_PAGE,
    };
    let events = ops::audit_page(&*console.store, &console.manifest, Some(&env), page)
        .await
        .map_err(refuse(&session))?;
    let next = older("/audit", &env, events.len(), events.last().map(|e| e.seq));
    let content = html! {
        section {
            p {
                @if verification.ok { (badge("ok", "chain verified")) } @else { (badge("bad", "chain broken")) }
                " " (verification.events) " events"
                @if let Some(bad) = verification.first_bad { " · first bad event " (bad) }
            }
            @if let Some(head) = &verification.head { p { "Head " code { (head.to_string()) } } }
        }
        section.scroll {
            h2 { "Events in " (env) ", newest first" }
            @if events.is_empty() { p.muted { "No event." } } @else {
                table {
                    thead { tr { th { "Seq" } th { "When" } th { "Who" } th { "Action" } th { "Subject" } th { "Detail" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (e.seq) } td { (when(e.event.at)) } td { (e.event.actor) }
                                td { code { (e.event.action) } } td { (e.event.subject) }
                                td { code { (e.event.detail.to_string()) } }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &next { p { a href=(next) rel="next" { "Older events →" } } }
        }
    };
    ok("Audit", &session, content)
}

/// What the environment's record-mode bindings received, newest first, a page at a time.
pub(crate) async fn records(
    State(console): Console_,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> Answer {
    let (session, env) = reader(&console, &headers, &query.env, "records").await?;
    let page = Page {
        before: query.before,
        limit: LOG_PAGE,
    };
    let records = ops::records_page(&*console.store, &console.manifest, &env, page)
        .await
        .map_err(refuse(&session))?;
    let next = older(
        "/records",
        &env,
        records.len(),
        records.last().map(|r| r.id),
    );
    let content = html! {
        section.scroll {
            @if records.is_empty() {
                p.muted { @if query.before.is_some() { "No older record." } @else { "No record-mode binding in " (env) " received anything." } }
            } @else {
                p.muted { "Newest first." }
                table {
                    thead { tr { th { "#" } th { "When" } th { "Connector" } th { "Run" } th { "Arguments" } } }
                    tbody {
                        @for r in &records {
                            tr {
                                td { (r.id) } td { (when(r.record.at)) }
                                td { (r.record.connector) "." (r.record.action) br; span.muted { "step " (r.record.step) } }
                                td { a href={"/runs/" (r.record.run)} { code { (r.record.run) } } }
                                td { pre { (json(&r.record.arguments)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &next { p { a href=(next) rel="next" { "Older records →" } } }
        }
    };
    ok("Staging records", &session, content)
}
