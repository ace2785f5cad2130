//! Secrets: `secrets set` seals a value under its environment's key and stores it
//! ([`set`]); `secrets list` lists every secret the manifest declares, each set or not,
//! from the store's names ([`list`]). What `airlock secrets …` does and `PUT`/`GET
//! /api/v1/environments/{environment}/secrets…` does, decided here once so the two cannot
//! drift apart.
//!
//! Declared rather than stored names: a secret an environment needs but nobody has set
//! is the row that matters most, and a name stored but no longer declared is used by
//! nothing. A row has no field a value could go in: secrets are write-only.

use super::{OpsError, audit, environment};
use airlock_connectors::secrets::{Fingerprinter, Keyring};
use airlock_core::model::Manifest;
use airlock_store::{SealedSecret, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Refuses (400) a secret `environment` does not declare: only declared secrets are set,
/// so nothing is stored that no binding can use, and a misspelt name is caught at once.
pub fn require_declared(
    manifest: &Manifest,
    environment_name: &str,
    name: &str,
) -> Result<(), OpsError> {
    let env = environment(manifest, environment_name)?;
    if env.secrets.iter().any(|s| s.value == name) {
        return Ok(());
    }
    Err(OpsError::bad_request(
        format!("environment `{environment_name}` does not declare a secret `{name}`"),
        Some(format!(
            "add `{name}` to environments.{environment_name}.secrets in airlock.yaml first"
        )),
    ))
}

/// A secret set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretSet {
    /// The environment.
    pub environment: String,
    /// The secret's name.
    pub name: String,
    /// Always true.
    pub set: bool,
}

/// Sets a declared secret: the value (its final line break dropped; an empty value is
/// refused) is sealed under the environment's key from `keyring`, stored with a keyed
/// fingerprint when a `fingerprinter` is given (so `diff` can flag a credential shared
/// between environments without reading either value), and audited as `secret.set`
/// (names only). The value goes nowhere else.
pub async fn set(
    store: &dyn Store,
    manifest: &Manifest,
    keyring: &Keyring,
    fingerprinter: Option<&Fingerprinter>,
    secret: SecretToSet<'_>,
) -> Result<SecretSet, OpsError> {
    let SecretToSet {
        environment,
        name,
        value,
        actor,
        via,
        now,
    } = secret;
    super::require_server_when_served(
        store,
        manifest,
        environment,
        super::Actor { name: actor, via },
    )
    .await?;
    // A secret the working copy declares may be set before its configuration is released
    // (so that the release finds it); one the release declares may be set as well.
    if require_declared(manifest, environment, name).is_err() {
        let released = super::config::released(store, environment).await?;
        match released {
            Some((_, released)) if require_declared(&released, environment, name).is_ok() => {}
            _ => require_declared(manifest, environment, name)?,
        }
    }
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(value);
    if value.is_empty() {
        return Err(OpsError::bad_request(
            "the secret's value is empty",
            Some(format!(
                "printf '%s' \"$VALUE\" | airlock secrets set {name} --env {environment}"
            )),
        ));
    }
    let sealed = keyring
        .seal(environment, name, value)
        .map_err(|e| OpsError::Unavailable {
            message: e.to_string(),
        })?;
    store
        .put_secret(&SealedSecret {
            environment: environment.to_owned(),
            name: name.to_owned(),
            sealed,
            fingerprint: fingerprinter.map(|f| f.fingerprint(value)),
            updated_at: now,
        })
        .await?;
    audit(
        store,
        now,
        actor,
        "secret.set",
        Some(environment),
        name,
        json!({}),
    )
    .await?;
    Ok(SecretSet {
        environment: environment.to_owned(),
        name: name.to_owned(),
        set: true,
    })
}

/// What [`set`] sets.
pub struct SecretToSet<'a> {
    /// The environment whose key seals it.
    pub environment: &'a str,
    /// The declared name.
    pub name: &'a str,
    /// The value, as read (stdin, a request body).
    pub value: &'a str,
    /// Who sets it.
    pub actor: &'a str,
    /// How they were identified.
    pub via: super::Via,
    /// Now.
    pub now: i64,
}

/// One declared secret. Deserialize too: the CLI reads the API's rows back and prints
/// them as it prints its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretRow {
    /// The environment that declares it (its key seals the value).
    pub environment: String,
    /// The secret's name, as declared under the environment's `secrets:`.
    pub name: String,
    /// Whether a value is stored.
    pub set: bool,
    /// When the value was last set (RFC 3339, UTC, milliseconds); null when not set.
    pub updated_at: Option<String>,
}

/// The declared secrets of `only` (an environment of the manifest, or a 404 with a
/// did-you-mean), or of every environment, in the manifest's order.
pub async fn list(
    store: &dyn Store,
    manifest: &Manifest,
    only: Option<&str>,
) -> Result<Vec<SecretRow>, OpsError> {
    let environments = match only {
        Some(name) => vec![environment(manifest, name)?],
        None => manifest.environments.iter().collect(),
    };
    let stored = store.secret_names().await?;
    let mut rows = Vec::new();
    for env in environments {
        for name in &env.secrets {
            let set = stored
                .iter()
                .find(|s| s.environment == env.name.value && s.name == name.value);
            rows.push(SecretRow {
                environment: env.name.value.clone(),
                name: name.value.clone(),
                set: set.is_some(),
                updated_at: set.map(|s| airlock_core::time::rfc3339(s.updated_at)),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::project::load;
    use airlock_core::source::SourceFile;
    use airlock_store::SealedSecret;
    use airlock_store::sqlite::SqliteStore;

    const MANIFEST: &str = r#"project: secret-rows
connectors: {}
environments:
  staging:
    secrets: [CRM_TOKEN, CHAT_HOOK]
  production:
    secrets: [CRM_TOKEN]
"#;

    fn manifest() -> Manifest {
        // Loading never fails; only the environments and their secrets matter here.
        let manifest = load(vec![SourceFile::new("airlock.yaml", MANIFEST)])
            .project
            .manifest;
        assert_eq!(manifest.environments.len(), 2);
        manifest
    }

    fn row(environment: &str, name: &str, updated_at: Option<&str>) -> SecretRow {
        SecretRow {
            environment: environment.to_owned(),
            name: name.to_owned(),
            set: updated_at.is_some(),
            updated_at: updated_at.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn every_declared_secret_is_listed_set_or_not_and_only_those() {
        let temp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&temp.path().join("airlock.db")).unwrap();
        let manifest = manifest();
        for (environment, name) in [("staging", "CRM_TOKEN"), ("staging", "RETIRED")] {
            store
                .put_secret(&SealedSecret {
                    environment: environment.to_owned(),
                    name: name.to_owned(),
                    sealed: vec![1, 2, 3],
                    fingerprint: None,
                    updated_at: 1_700_000_000_123,
                })
                .await
                .unwrap();
        }
        let at = Some("2023-11-14T22:13:20.123Z");
        // A stored name no environment declares any more (RETIRED) is used by nothing:
        // not listed. Production's CRM_TOKEN is its own, not staging's.
        assert_eq!(
            list(&store, &manifest, None).await.unwrap(),
            [
                row("staging", "CRM_TOKEN", at),
                row("staging", "CHAT_HOOK", None),
                row("production", "CRM_TOKEN", None),
            ]
        );
        assert_eq!(
            list(&store, &manifest, Some("production")).await.unwrap(),
            [row("production", "CRM_TOKEN", None)]
        );
        let written =
            serde_json::to_string(&list(&store, &manifest, Some("staging")).await.unwrap())
                .unwrap();
        assert_eq!(
            written,
            r#"[{"environment":"staging","name":"CRM_TOKEN","set":true,"updated_at":"2023-11-14T22:13:20.123Z"},{"environment":"staging","name":"CHAT_HOOK","set":false,"updated_at":null}]"#
        );
        let missing = list(&store, &manifest, Some("productoin"))
            .await
            .unwrap_err();
        assert!(matches!(missing, OpsError::NotFound { .. }), "{missing:?}");
        assert_eq!(missing.help(), Some("did you mean `production`?"));
    }
}
