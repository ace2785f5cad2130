//! The web console: what an approver, an on-call engineer or a team lead sees and does
//! without a shell, served by `airlock serve` at `/` beside the API.
//!
//! Server-rendered HTML (maud: templates checked at compile time, every value escaped
//! unless a template says otherwise, which none does), plain forms and links, no script.
//! Every page and action goes through the application layer exactly as the API does:
//! the session stands for one API token ([`airlock_ops::access`]), every read and action
//! is authorised by [`airlock_ops::access::authorize`] (the API's check, audited the same
//! way), and every action calls the use case the API calls, with the token's name acting.
//!
//! Defences on every answer: a strict Content-Security-Policy (nothing inline, nothing
//! from elsewhere; the one style sheet is served from here), `X-Frame-Options: DENY`,
//! `nosniff`, `no-referrer`, `no-store`; a CSRF token per session in every form, checked
//! on every POST (a POST without it changes nothing and is answered 403); the session
//! cookie `HttpOnly; SameSite=Strict`, `Secure` when the request came over TLS, expiring
//! with the session.

#![forbid(unsafe_code)]
// A handler answers a `Response` whichever way it goes (`Result<Response, Response>`, axum's
// own idiom); the refusal is rendered once, on its way out, never passed along a hot path.
#![allow(clippy::result_large_err)]

mod chart;
mod layout;
mod pages;

use airlock_core::model::Manifest;
use airlock_ops::access::{self, Session};
use airlock_ops::{Clock, OpsError, ProjectSource};
use airlock_store::Store;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// The policy on every page: nothing runs inline, nothing loads from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The session cookie's name. `__Host-` would pin it to a secure origin, which a console
/// served over plain HTTP on loopback is not.
pub const SESSION_COOKIE: &str = "airlock_session";

/// What the console serves from: the server's own state.
pub struct ConsoleContext {
    /// The store the API uses.
    pub store: Arc<dyn Store>,
    /// The manifest the server runs with.
    pub manifest: Arc<Manifest>,
    /// The project's working copy, read again for what judges it (as the API does).
    pub project: Arc<dyn ProjectSource>,
    /// The server's clock.
    pub clock: Arc<dyn Clock>,
    /// Told after an action changed what an environment runs (a release, a rollback), so
    /// the server's webhook routes follow at once rather than at their next refresh.
    pub changed: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// How the console answers.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Mark the session cookie `Secure` whatever the request says (a console always
    /// reached over TLS). Without it, `Secure` is set when the request came over TLS as
    /// the proxy in front says (`X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
}

pub(crate) struct Console {
    pub store: Arc<dyn Store>,
    pub manifest: Arc<Manifest>,
    pub project: Arc<dyn ProjectSource>,
    pub clock: Arc<dyn Clock>,
    pub changed: Option<Arc<dyn Fn() + Send + Sync>>,
    pub options: ConsoleOptions,
}

/// The console's routes (every one outside `/api`, `/hooks` and the operations paths),
/// over the server's state; the server merges them into its router.
pub fn router(context: ConsoleContext, options: ConsoleOptions) -> Router {
    let console = Arc::new(Console {
        store: context.store,
        manifest: context.manifest,
        project: context.project,
        clock: context.clock,
        changed: context.changed,
        options,
    });
    Router::new()
        .route("/", get(pages::home))
        .route("/console.css", get(stylesheet))
        .route("/sign-in", get(pages::sign_in_page).post(pages::sign_in))
        .route("/sign-out", post(pages::sign_out))
        .route("/parity", get(pages::parity))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/{id}/approve", post(pages::approve))
        .route("/inbox/{id}/reject", post(pages::reject))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/retry", post(pages::retry))
        .route("/runs/{id}/steps/{step}/decide", post(pages::decide_step))
        .route("/releases", get(pages::releases))
        .route(
            "/releases/{environment}/{workflow}/rollback",
            post(pages::rollback),
        )
        .route("/readiness", get(pages::readiness))
        .route("/audit", get(pages::audit))
        .route("/records", get(pages::records))
        .layer(axum::middleware::from_fn(defend))
        .with_state(console)
}

const STYLESHEET: &str = include_str!("console.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The headers every console answer carries, pages and refusals alike.
async fn defend(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show a person's view of production: no shared cache keeps them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Why a page is not shown: its status and a sentence (and a hint), rendered as a page.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub help: Option<String>,
    /// The signed-in caller, for the page's header (absent before sign-in).
    pub session: Option<Session>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            help: None,
            session: None,
        }
    }

    pub fn with_session(mut self, session: &Session) -> Self {
        self.session = Some(session.clone());
        self
    }
}

impl From<OpsError> for Refusal {
    fn from(error: OpsError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let message = match &error {
            // A store's own failure is logged, never shown: its text may name internals.
            OpsError::Store(e)
                if !matches!(
                    e,
                    airlock_store::Error::NotFound(_) | airlock_store::Error::Conflict(_)
                ) =>
            {
                tracing::error!(error = %e, "store failure while rendering the console");
                "the store is unavailable".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            help: error.help().map(str::to_owned),
            message,
            session: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = layout::refusal(&self);
        (status, layout::html(body)).into_response()
    }
}

/// The session the request's cookie names, or the way to the sign-in page.
pub(crate) async fn session(console: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    let found = match cookie(headers, SESSION_COOKIE) {
        Some(id) => access::session(&*console.store, &id, console.clock.now())
            .await
            .map_err(|e| Refusal::from(e).into_response())?,
        None => None,
    };
    found.ok_or_else(|| see_other("/sign-in"))
}

/// A cookie's value, from the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request reached us over TLS (directly, or as the proxy in front says).
pub(crate) fn over_tls(console: &Console, headers: &HeaderMap) -> bool {
    console.options.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The answer to a form: go there (303, so a reload does not post again).
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Refuses (403, changing nothing) a POST whose form does not carry the session's CSRF
/// token.
pub(crate) fn check_csrf(session: &Session, sent: Option<&str>) -> Result<(), Refusal> {
    match sent {
        Some(sent) if access::csrf_matches(session, sent) => Ok(()),
        _ => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "this form is not from your session (its CSRF token is missing or wrong); nothing was changed".into(),
            help: Some("reload the page and submit the form again".into()),
            session: Some(session.clone()),
        }),
    }
}
