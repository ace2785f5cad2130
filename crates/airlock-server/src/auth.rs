//! Who is asking: bearer tokens, per-environment grants, and the audited denials.
//!
//! A token is shown once, when created; the store keeps only its SHA-256 (the token has
//! 256 bits of entropy, so a fast hash is enough, and no one can log in with the hash).
//! A token grants one role in one environment; an approver's identity is the token's name.

use crate::App;
use crate::error::ApiError;
use airlock_connectors::secrets::SecretLookup;
use airlock_core::authz::Action;
use airlock_engine::runtime::StoreSecrets;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    // One definition for the server, the CLI and every store backend.
    airlock_store::ApiToken::hash_secret(token)
}

/// An authenticated caller: the same one the console's sessions stand for.
pub(crate) use airlock_ops::access::Caller;

/// Authenticates the bearer token (401 when absent or unknown).
pub(crate) async fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |reason: &str| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("an API token is required: `Authorization: Bearer <token>`"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    airlock_ops::access::authenticate(&*app.store, token)
        .await?
        .map_err(|why| unauthorized(&why.0))
}

/// Authenticates and authorises `action` in `environment`; a denial is answered 403 with
/// its reason and written to the audit log (`airlock_ops::access::authorize`, which the
/// console asks too).
pub(crate) async fn require(
    app: &App,
    headers: &HeaderMap,
    environment: &str,
    action: Action,
    subject: &str,
) -> Result<Caller, ApiError> {
    let caller = caller(app, headers).await?;
    airlock_ops::access::authorize(
        &*app.store,
        app.clock.now(),
        &caller,
        environment,
        action,
        subject,
    )
    .await?;
    Ok(caller)
}

/// Failed authentications one client address may make at once before it is slowed.
const FAILURES_AT_ONCE: u32 = 10;
/// Then one more per this long: ten a minute.
const ONE_FAILURE_PER: Duration = Duration::from_secs(6);
/// A burst of refusals from one address is audited once per this long.
const BURST_AUDITED_PER: Duration = Duration::from_secs(600);
/// Addresses remembered before the forgotten ones are swept out (each costs a few bytes).
const REMEMBERED_ADDRESSES: usize = 10_000;

/// Who a failed authentication is counted against: the peer's address when the router
/// is served from a socket (`ConnectInfo`), else one shared key (a router driven in
/// process, as the API tests drive it). IPv6 addresses count by their /64, which one
/// host is commonly given whole; forwarded-for headers are not read, since any client
/// can write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    Address(IpAddr),
    Unknown,
}

impl Client {
    fn of(request: &Request) -> Self {
        let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
            return Client::Unknown;
        };
        Client::Address(match peer.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let [a, b, c, d, ..] = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
                }
            },
            v4 => v4,
        })
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Address(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Client::Address(ip) => write!(f, "{ip}"),
            Client::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// Failed authentications per client address (governor's GCRA, keyed by [`Client`]),
/// and which addresses' bursts were audited lately.
pub(crate) struct FailedAuthentications {
    failures: DefaultKeyedRateLimiter<Client>,
    audited: DefaultKeyedRateLimiter<Client>,
}

impl Default for FailedAuthentications {
    fn default() -> Self {
        let at_once = NonZeroU32::new(FAILURES_AT_ONCE).unwrap_or(NonZeroU32::MIN);
        let failures = Quota::with_period(ONE_FAILURE_PER)
            .unwrap_or_else(|| Quota::per_minute(at_once))
            .allow_burst(at_once);
        let audited = Quota::with_period(BURST_AUDITED_PER)
            .unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN));
        Self {
            failures: RateLimiter::keyed(failures),
            audited: RateLimiter::keyed(audited),
        }
    }
}

/// What a failed authentication from an address over its limit is answered after.
struct Slowed {
    retry_after: Duration,
    /// The first refusal of a burst (since [`BURST_AUDITED_PER`]): the one audited.
    audit: bool,
}

impl FailedAuthentications {
    /// Counts one failure of `client`; `Err` when it is over its limit.
    fn fail(&self, client: Client) -> Result<(), Slowed> {
        self.sweep();
        match self.failures.check_key(&client) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(Slowed {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                audit: self.audited.check_key(&client).is_ok(),
            }),
        }
    }

    /// Forgets the addresses whose limits have refilled, once many are remembered, so a
    /// scan from many addresses does not grow memory without bound.
    fn sweep(&self) {
        for limiter in [&self.failures, &self.audited] {
            if limiter.len() > REMEMBERED_ADDRESSES {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

/// Slows token guessing: a failed authentication (401) counts against the client's
/// address, and past [`FAILURES_AT_ONCE`] (then one per [`ONE_FAILURE_PER`]) it is
/// answered 429 with `Retry-After`, the first of each burst audited as
/// `api.auth_throttled`. The token is checked first and only failures count, so a valid
/// token is never slowed, even from an address that is over its limit: refusing before
/// checking would let anyone behind the same address (a NAT, a proxy) lock its valid
/// tokens out for the price of a few wrong ones, and a token's 256 random bits, not this
/// limit, are what make guessing one hopeless. What the limit buys is a flood's cost and
/// its record.
pub(crate) async fn limit_failed_authentications(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let client = Client::of(&request);
    let response = next.run(request).await;
    // On the API, 401 is answered by `caller` alone: the token was missing or wrong.
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let Err(slowed) = app.failed_authentications.fail(client) else {
        return response;
    };
    let retry_after = slowed.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    if slowed.audit {
        // Once per burst, not per failure: a flood must not become a flood of audit writes.
        let audited = airlock_ops::audit(
            &*app.store,
            app.clock.now(),
            "anonymous",
            "api.auth_throttled",
            None,
            &client.to_string(),
            serde_json::json!({
                "reason": format!(
                    "more than {FAILURES_AT_ONCE} failed authentications at once; \
                     one per {}s from now", ONE_FAILURE_PER.as_secs()
                ),
                "retry_after_s": retry_after,
            }),
        )
        .await;
        if let Err(e) = audited {
            return ApiError::from(e).into_response();
        }
    }
    let mut slowed = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed authentications from {client}; retry in {retry_after}s"),
    )
    .into_response();
    slowed.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after.to_string()).unwrap_or(HeaderValue::from_static("1")),
    );
    slowed
}

/// Authenticates a caller that may read its own environment: for what belongs to no one
/// environment (a workflow's evidence, the audit chain's head), which any reader may see.
pub(crate) async fn require_reader(
    app: &App,
    headers: &HeaderMap,
    subject: &str,
) -> Result<Caller, ApiError> {
    let caller = caller(app, headers).await?;
    require(
        app,
        headers,
        &caller.grant.environment,
        Action::Read,
        subject,
    )
    .await
}

/// How long an opened signing secret is kept in memory: a rotated secret takes effect
/// within this time, and a burst of deliveries opens it once.
const SECRET_TTL: Duration = Duration::from_secs(5);

/// (environment, name) → when it was opened, and its value (`None`: not set).
type OpenedSecrets = HashMap<(String, String), (Instant, Option<String>)>;

#[derive(Default)]
pub(crate) struct SecretCache {
    entries: Mutex<OpenedSecrets>,
}

impl SecretCache {
    /// Drops what is kept of a secret that was just set.
    pub fn forget(&self, environment: &str, name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(environment.to_owned(), name.to_owned()));
        }
    }
}

/// A secret of `environment`, opened with this process's key for that environment.
pub(crate) async fn secret(
    app: &App,
    environment: &str,
    name: &str,
) -> Result<Option<String>, String> {
    let key = (environment.to_owned(), name.to_owned());
    if let Ok(entries) = app.secrets.entries.lock()
        && let Some((at, value)) = entries.get(&key)
        && at.elapsed() < SECRET_TTL
    {
        return Ok(value.clone());
    }
    let lookup = StoreSecrets {
        store: app.store.clone(),
        keyring: app.keyring.clone(),
    };
    let value = lookup
        .lookup(environment, name)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(mut entries) = app.secrets.entries.lock() {
        entries.insert(key, (Instant::now(), value.clone()));
    }
    Ok(value)
}
