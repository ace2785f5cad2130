//! API tokens: `airlock token create|list|revoke`. A token grants one role in one
//! environment, and its name is who acts with it (the approver, the author, the actor in
//! the audit log). It is shown once, when created; the store keeps only its SHA-256 (the
//! token has 256 bits of entropy, so a fast hash is enough, and no one can log in with
//! the hash).

use crate::{OpsError, audit, environment};
use airlock_core::authz::Role;
use airlock_core::model::Manifest;
use airlock_store::{ApiToken, NewApiToken, Store};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Every token starts with this, so a leaked one is recognisable in a scanner.
pub const TOKEN_PREFIX: &str = "alk_";

/// A new token: what to show once, and the hash to store.
pub struct MintedToken {
    /// The token, for the person who asked; never stored.
    pub token: String,
    /// Its SHA-256, hex: what the store keeps.
    pub hash: String,
}

/// Mints a high-entropy token.
pub fn mint_token() -> MintedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = ApiToken::hash_secret(&token);
    MintedToken { token, hash }
}

/// A token to create.
pub struct TokenToCreate<'a> {
    /// The one environment it is valid in.
    pub environment: &'a str,
    /// Its role, as typed (`viewer`, `runner`, `deployer`, `approver`, `admin`).
    pub role: &'a str,
    /// Who acts with it.
    pub name: &'a str,
    /// Who creates it.
    pub actor: &'a str,
    /// Now.
    pub now: i64,
}

/// A token just created: the only time its value is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Its id (`tok_…`), how it is revoked.
    pub id: String,
    /// Who acts with it.
    pub name: String,
    /// Its environment.
    pub environment: String,
    /// Its role.
    pub role: String,
    /// The token itself.
    pub token: String,
}

/// Creates a token for an environment of the manifest (404 otherwise) with a known role
/// and a name (400 otherwise); audited as `token.create` (without the token).
pub async fn create(
    store: &dyn Store,
    manifest: &Manifest,
    create: TokenToCreate<'_>,
) -> Result<CreatedToken, OpsError> {
    // A store that serves no project yet (a server with no checkout, before its first
    // deploy) knows no environment: its first tokens name the one they will deploy to.
    if !manifest.environments.is_empty() {
        environment(manifest, create.environment)?;
    } else if airlock_core::bundle::path_problem(create.environment).is_some()
        || create.environment.contains('/')
        || create.environment.trim().is_empty()
    {
        return Err(OpsError::bad_request(
            format!("`{}` cannot name an environment", create.environment),
            None,
        ));
    }
    let role: Role = create
        .role
        .parse()
        .map_err(|e: airlock_core::authz::UnknownRole| {
            OpsError::bad_request(e.to_string(), None)
        })?;
    if create.name.trim().is_empty() {
        return Err(OpsError::bad_request("a token needs a name (--name)", None));
    }
    let minted = mint_token();
    let token = store
        .create_token(&NewApiToken {
            id: format!("tok_{}", &minted.hash[..16]),
            name: create.name.to_owned(),
            environment: create.environment.to_owned(),
            role: role.to_string(),
            secret_hash: minted.hash,
            created_by: create.actor.to_owned(),
            created_at: create.now,
        })
        .await
        .map_err(|e| match e {
            airlock_store::Error::Conflict(why) => OpsError::conflict(why, None),
            other => other.into(),
        })?;
    audit(
        store,
        create.now,
        create.actor,
        "token.create",
        Some(create.environment),
        &token.token.id,
        json!({ "name": create.name, "role": role.to_string() }),
    )
    .await?;
    Ok(CreatedToken {
        id: token.token.id,
        name: token.token.name,
        environment: token.token.environment,
        role: token.token.role,
        token: minted.token,
    })
}

/// One token as listed: never its value, never its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    /// Its id.
    pub id: String,
    /// Who acts with it.
    pub name: String,
    /// Its environment.
    pub environment: String,
    /// Its role.
    pub role: String,
    /// Who created it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// The live tokens, of every environment.
pub async fn list(store: &dyn Store) -> Result<Vec<TokenRow>, OpsError> {
    Ok(store
        .tokens(None)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.token.id,
            name: t.token.name,
            environment: t.token.environment,
            role: t.token.role,
            created_by: t.token.created_by,
            created_at: airlock_core::time::rfc3339(t.token.created_at),
        })
        .collect())
}

/// Revokes a token; audited as `token.revoke`.
pub async fn revoke(store: &dyn Store, id: &str, actor: &str, now: i64) -> Result<(), OpsError> {
    store.revoke_token(id, now).await.map_err(|e| match e {
        airlock_store::Error::NotFound(_) => OpsError::not_found(
            format!("no live token `{id}`"),
            Some("`airlock token list` lists them".into()),
        ),
        other => other.into(),
    })?;
    audit(store, now, actor, "token.revoke", None, id, json!({})).await
}
