//! Who is asking, and whether they may: the one check every front makes before a use case.
//!
//! The API authenticates a bearer token, the console a session opened with one; both end
//! in a [`Caller`] (the token's name, its grant) and both ask [`authorize`], which applies
//! `airlock_core::authz::permits` and audits a denial as `api.denied`, so a role means
//! the same on every front and every refusal is on the record.
//!
//! A console session is a random 256-bit id in the browser's cookie; the store keeps only
//! its SHA-256 (as for tokens: the id has the entropy, so a fast hash is enough, and a copy
//! of the database signs no one in), the token it acts as, and its CSRF token. Revoking
//! the token ends its sessions.

use crate::{OpsError, audit};
use airlock_core::authz::{Action, Grant, Role};
use airlock_store::{ApiToken, NewConsoleSession, Store};
use rand::Rng;
use serde_json::json;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name: the identity shown in the audit log and used as approver.
    pub name: String,
    /// Its role in its one environment.
    pub grant: Grant,
    /// The token's id (what a session refers to).
    pub token_id: String,
}

/// Why a caller is not authenticated (the API answers 401, the console the sign-in page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub String);

/// The caller a stored, live token stands for; a role this build does not know
/// authenticates nothing.
pub fn caller_of(token: ApiToken) -> Result<Caller, Unauthenticated> {
    let role: Role = token.token.role.parse().map_err(|_| {
        Unauthenticated(format!(
            "token `{}` carries an unknown role",
            token.token.name
        ))
    })?;
    Ok(Caller {
        name: token.token.name,
        grant: Grant {
            environment: token.token.environment,
            role,
        },
        token_id: token.token.id,
    })
}

/// The caller holding `token` (as presented: `alk_…`), or why not.
pub async fn authenticate(
    store: &dyn Store,
    token: &str,
) -> Result<Result<Caller, Unauthenticated>, OpsError> {
    let found = store
        .token_by_hash(&ApiToken::hash_secret(token.trim()))
        .await?;
    Ok(match found {
        Some(token) => caller_of(token),
        None => Err(Unauthenticated("unknown or revoked API token".into())),
    })
}

/// Whether `caller` may `action` in `environment`: `Ok`, or a 403 whose reason is also
/// written to the audit log (`api.denied`, whichever front was used). A denial that cannot
/// be audited fails as the store's failure, never as a quiet 403.
pub async fn authorize(
    store: &dyn Store,
    now: i64,
    caller: &Caller,
    environment: &str,
    action: Action,
    subject: &str,
) -> Result<(), OpsError> {
    let Err(denial) = airlock_core::authz::permits(&caller.grant, environment, action) else {
        return Ok(());
    };
    let reason = denial.to_string();
    audit(
        store,
        now,
        &caller.name,
        "api.denied",
        Some(environment),
        subject,
        json!({ "action": format!("{action:?}"), "reason": reason }),
    )
    .await?;
    Err(OpsError::forbidden(reason, None))
}

/// Whether `caller`'s role would allow `action` in `environment`, asked without audit:
/// for what a page offers (a button shown or not), never for what it does.
pub fn may(caller: &Caller, environment: &str, action: Action) -> bool {
    airlock_core::authz::permits(&caller.grant, environment, action).is_ok()
}

/// How long a console session lasts, whatever happens: a working day.
pub const SESSION_MS: i64 = 8 * 60 * 60 * 1000;

/// A session just opened: its id (for the cookie, never stored) and who it is.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session's id, 256 random bits in hex: the cookie's value.
    pub session: String,
    /// Its CSRF token.
    pub csrf: String,
    /// When it ends.
    pub expires_at: i64,
    /// Who it acts as.
    pub caller: Caller,
}

/// A live session, found by its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who it acts as.
    pub caller: Caller,
    /// Its CSRF token, which every form carries and every POST must send back.
    pub csrf: String,
    /// When it ends.
    pub expires_at: i64,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Exchanges an API token for a console session; audited as `console.sign_in` (the
/// token's name, never the token). `Ok(Err)` for a token that authenticates no one.
pub async fn sign_in(
    store: &dyn Store,
    token: &str,
    now: i64,
) -> Result<Result<SignedIn, Unauthenticated>, OpsError> {
    let caller = match authenticate(store, token).await? {
        Ok(caller) => caller,
        Err(why) => return Ok(Err(why)),
    };
    let session = random_hex();
    let csrf = random_hex();
    let expires_at = now.saturating_add(SESSION_MS);
    store
        .create_session(&NewConsoleSession {
            id_hash: ApiToken::hash_secret(&session),
            token_id: caller.token_id.clone(),
            csrf: csrf.clone(),
            created_at: now,
            expires_at,
        })
        .await?;
    audit(
        store,
        now,
        &caller.name,
        "console.sign_in",
        Some(&caller.grant.environment),
        &caller.token_id,
        json!({ "role": caller.grant.role.to_string() }),
    )
    .await?;
    Ok(Ok(SignedIn {
        session,
        csrf,
        expires_at,
        caller,
    }))
}

/// The live session a cookie names (`None`: unknown, ended, expired, or its token revoked).
pub async fn session(
    store: &dyn Store,
    session: &str,
    now: i64,
) -> Result<Option<Session>, OpsError> {
    let Some(found) = store
        .session_by_hash(&ApiToken::hash_secret(session), now)
        .await?
    else {
        return Ok(None);
    };
    let csrf = found.session.csrf;
    let expires_at = found.session.expires_at;
    Ok(caller_of(found.token).ok().map(|caller| Session {
        caller,
        csrf,
        expires_at,
    }))
}

/// Ends a session (sign-out).
pub async fn sign_out(store: &dyn Store, session: &str) -> Result<(), OpsError> {
    store
        .end_session(&ApiToken::hash_secret(session))
        .await
        .map_err(OpsError::from)
}

/// Whether a form's CSRF token is the session's, compared in constant time.
pub fn csrf_matches(session: &Session, sent: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
