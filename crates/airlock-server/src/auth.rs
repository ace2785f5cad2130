//! Who is asking: bearer tokens, per-environment grants, and the audited denials.
//!
//! A token is shown once, when created; the store keeps only its SHA-256 (the token has
//! 256 bits of entropy, so a fast hash is enough, and no one can log in with the hash).
//! A token grants one role in one environment; an approver's identity is the token's name.

use crate::App;
use crate::error::ApiError;
use airlock_connectors::secrets::SecretLookup;
use airlock_core::authz::{Action, Grant, Role};
use airlock_engine::runtime::StoreSecrets;
use axum::http::{HeaderMap, StatusCode, header};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    // One definition for the server, the CLI and every store backend.
    airlock_store::ApiToken::hash_secret(token)
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's name: the identity shown in the audit log and used as approver.
    pub name: String,
    pub grant: Grant,
}

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
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?
        .trim();
    let found = app
        .store
        .token_by_hash(&token_hash(token))
        .await?
        .ok_or_else(|| unauthorized("unknown or revoked API token"))?;
    let role: Role = found.token.role.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("token `{}` carries an unknown role", found.token.name),
        )
    })?;
    Ok(Caller {
        name: found.token.name,
        grant: Grant {
            environment: found.token.environment,
            role,
        },
    })
}

/// Authenticates and authorises `action` in `environment`; a denial is answered 403 with
/// its reason and written to the audit log.
pub(crate) async fn require(
    app: &App,
    headers: &HeaderMap,
    environment: &str,
    action: Action,
    subject: &str,
) -> Result<Caller, ApiError> {
    let caller = caller(app, headers).await?;
    if let Err(denial) = airlock_core::authz::permits(&caller.grant, environment, action) {
        let reason = denial.to_string();
        // A denial that cannot be audited is not answered as a plain 403: the store is
        // failing, and the caller is told so (503).
        airlock_ops::audit(
            &*app.store,
            app.clock.now(),
            &caller.name,
            "api.denied",
            Some(environment),
            subject,
            serde_json::json!({ "action": format!("{action:?}"), "reason": reason }),
        )
        .await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, reason));
    }
    Ok(caller)
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
