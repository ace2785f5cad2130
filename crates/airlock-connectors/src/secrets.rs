//! Secrets: sealed per environment, resolved per environment, redacted everywhere.
//!
//! Each environment has its own 256-bit key (from `AIRLOCK_KEY_<ENV>` or a 0600 key
//! file under the project's `.airlock/keys/`). A value is sealed with
//! XChaCha20-Poly1305 under its environment's key, with the environment and the name
//! as associated data, so a sealed value copied to another environment or name does
//! not open. A process that holds only the staging key cannot decrypt a production
//! secret, whatever the code does.

use crate::ResolvedBinding;
pub use crate::redact::{REDACTED, Redactor};
use airlock_core::model::{Binding, ConnectorKind};
use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NONCE_LEN: usize = 24;

/// Why a secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The environment has no such secret. Another environment's secret of the same name
    /// gets exactly this error too: secrets never cross.
    #[error("secret `{name}` not found in environment `{environment}`")]
    NotFound {
        /// The environment asked.
        environment: String,
        /// The name asked.
        name: String,
    },
    /// This process does not hold the environment's key.
    #[error(
        "no key for environment `{environment}`: set AIRLOCK_KEY_{} or create .airlock/keys/{environment}.key",
        env_var_suffix(environment)
    )]
    NoKey {
        /// The environment.
        environment: String,
    },
    /// The sealed value does not open under this environment's key.
    #[error(
        "secret `{name}` of environment `{environment}` does not decrypt with this environment's key"
    )]
    Undecryptable {
        /// The environment.
        environment: String,
        /// The name.
        name: String,
    },
    /// A key could not be read or written.
    #[error("key for environment `{environment}`: {reason}")]
    Key {
        /// The environment.
        environment: String,
        /// What went wrong.
        reason: String,
    },
    /// The store failed while looking a secret up.
    #[error("secret lookup failed: {0}")]
    Lookup(String),
    /// The fingerprint key could not be read, written or trusted.
    #[error("fingerprint key: {0}")]
    FingerprintKey(String),
}

/// `staging` → `STAGING`, `eu-prod` → `EU_PROD`.
pub fn env_var_suffix(environment: &str) -> String {
    environment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The keys this process holds, one per environment.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("environments", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where an environment's key file lives.
pub fn key_path(state_dir: &Path, environment: &str) -> PathBuf {
    state_dir.join("keys").join(format!("{environment}.key"))
}

impl Keyring {
    /// Loads the keys of `environments` that this process can find: the variable
    /// `AIRLOCK_KEY_<ENV>` (64 hex digits) first, then the key file. An environment
    /// without either is simply absent; using it fails with [`SecretError::NoKey`].
    pub fn load(state_dir: &Path, environments: &[&str]) -> Result<Self, SecretError> {
        let mut keys = BTreeMap::new();
        for environment in environments {
            let variable = format!("AIRLOCK_KEY_{}", env_var_suffix(environment));
            let text = match std::env::var(&variable) {
                Ok(text) => Some(text),
                Err(_) => {
                    let path = key_path(state_dir, environment);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => Some(text),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => {
                            return Err(SecretError::Key {
                                environment: environment.to_string(),
                                reason: format!("cannot read {}: {e}", path.display()),
                            });
                        }
                    }
                }
            };
            if let Some(text) = text {
                keys.insert(environment.to_string(), parse_key(environment, &text)?);
            }
        }
        Ok(Self { keys })
    }

    /// Creates a key file for `environment` (0600) unless a key exists already.
    /// Returns whether a file was written.
    pub fn create_key_file(state_dir: &Path, environment: &str) -> Result<bool, SecretError> {
        let path = key_path(state_dir, environment);
        if path.exists() {
            return Ok(false);
        }
        let key = Key::generate();
        let error = |e: std::io::Error| SecretError::Key {
            environment: environment.to_owned(),
            reason: format!("cannot write {}: {e}", path.display()),
        };
        if let Some(parent) = path.parent() {
            // Private: the folder may be `.airlock/` itself, which holds the store too.
            airlock_store::private_files::create_dir(parent).map_err(error)?;
        }
        write_private(&path, format!("{}\n", hex::encode(key)).as_bytes()).map_err(error)?;
        Ok(true)
    }

    /// A keyring holding exactly these keys (tests, and processes given keys directly).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(env, bytes)| (env, Key::from(bytes)))
                .collect(),
        }
    }

    /// Whether this process holds the key of `environment`.
    pub fn has(&self, environment: &str) -> bool {
        self.keys.contains_key(environment)
    }

    fn cipher(&self, environment: &str) -> Result<XChaCha20Poly1305, SecretError> {
        self.keys
            .get(environment)
            .map(XChaCha20Poly1305::new)
            .ok_or_else(|| SecretError::NoKey {
                environment: environment.to_owned(),
            })
    }

    /// Seals a value for one environment and name.
    pub fn seal(&self, environment: &str, name: &str, value: &str) -> Result<Vec<u8>, SecretError> {
        let cipher = self.cipher(environment)?;
        let nonce = XNonce::generate();
        let aad = associated_data(environment, name);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Key {
                environment: environment.to_owned(),
                reason: "encryption failed".into(),
            })?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens a value sealed for this environment and name.
    pub fn unseal(
        &self,
        environment: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<String, SecretError> {
        let cipher = self.cipher(environment)?;
        let undecryptable = || SecretError::Undecryptable {
            environment: environment.to_owned(),
            name: name.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| undecryptable())?;
        let aad = associated_data(environment, name);
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
    }
}

fn associated_data(environment: &str, name: &str) -> Vec<u8> {
    format!("airlock-secret\0{environment}\0{name}").into_bytes()
}

fn parse_key(environment: &str, text: &str) -> Result<Key, SecretError> {
    let bytes = hex::decode(text.trim()).map_err(|_| SecretError::Key {
        environment: environment.to_owned(),
        reason: "a key is 64 hex digits".into(),
    })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretError::Key {
        environment: environment.to_owned(),
        reason: "a key is 64 hex digits (32 bytes)".into(),
    })?;
    Ok(Key::from(bytes))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Looks secrets up for one environment (the engine implements it over the store and
/// the keyring).
#[async_trait]
pub trait SecretLookup: Send + Sync {
    /// The value of `name` in `environment`, or `None`.
    async fn lookup(&self, environment: &str, name: &str) -> Result<Option<String>, SecretError>;
}

/// Resolves a binding's `${secret:NAME}` references from its own environment only, and
/// adds every value used to `redactor`.
pub async fn resolve_binding(
    binding: &Binding,
    kind: ConnectorKind,
    environment: &str,
    base_dir: &Path,
    lookup: &dyn SecretLookup,
    redactor: &mut Redactor,
) -> Result<ResolvedBinding, SecretError> {
    let mut settings = serde_json::Map::new();
    for (key, node) in &binding.settings {
        let value = substitute(&node.to_json(), environment, lookup, redactor).await?;
        settings.insert(key.value.clone(), value);
    }
    Ok(ResolvedBinding {
        connector: binding.connector.value.clone(),
        kind,
        environment: environment.to_owned(),
        settings,
        base_dir: base_dir.to_path_buf(),
    })
}

async fn substitute(
    value: &Value,
    environment: &str,
    lookup: &dyn SecretLookup,
    redactor: &mut Redactor,
) -> Result<Value, SecretError> {
    Ok(match value {
        Value::String(text) => {
            let references = airlock_core::validate::secret_references(text);
            if references.is_empty() {
                return Ok(value.clone());
            }
            let mut out = String::new();
            let mut last = 0;
            for (name, range) in references {
                // `${secret:` is 9 bytes before the name; `}` one after.
                out.push_str(&text[last..range.start - 9]);
                let secret = lookup.lookup(environment, name).await?.ok_or_else(|| {
                    SecretError::NotFound {
                        environment: environment.to_owned(),
                        name: name.to_owned(),
                    }
                })?;
                redactor.add(&secret);
                out.push_str(&secret);
                last = (range.end + 1).min(text.len());
            }
            out.push_str(&text[last..]);
            Value::String(out)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(Box::pin(substitute(item, environment, lookup, redactor)).await?);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, item) in map {
                out.insert(
                    key.clone(),
                    Box::pin(substitute(item, environment, lookup, redactor)).await?,
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

// ---- keyed fingerprints: shared-credential detection without revealing values ----

/// The variable holding the fingerprint key (64 hex digits), read before the key file.
pub const FINGERPRINT_KEY_VARIABLE: &str = "AIRLOCK_FINGERPRINT_KEY";

/// Where the fingerprint key file lives: `.airlock/keys/fingerprint.key`.
pub fn fingerprint_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("keys").join("fingerprint.key")
}

/// Keyed fingerprints of secret values, so that the parity report can tell that two
/// environments hold the same credential without anyone reading either value.
///
/// A fingerprint is HMAC-SHA256 of the value under a key of its own, kept apart from the
/// environments' encryption keys: it depends on the value alone (not on the environment or
/// the name), so the same value gives the same fingerprint wherever it is set, and without
/// the key a fingerprint cannot be checked against guesses (a plain hash of a short token
/// could be).
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("Fingerprinter(..)")
    }
}

impl Fingerprinter {
    /// A fingerprinter with this key (tests, and processes given the key directly).
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The project's fingerprint key: [`FINGERPRINT_KEY_VARIABLE`] first, then the key
    /// file; `None` when neither exists. `environments` are the project's environments: one
    /// named `fingerprint` would keep its encryption key in the same file, so the file is
    /// refused then (set the variable instead).
    pub fn load(state_dir: &Path, environments: &[&str]) -> Result<Option<Self>, SecretError> {
        if let Ok(text) = std::env::var(FINGERPRINT_KEY_VARIABLE) {
            return parse_fingerprint_key(&text, FINGERPRINT_KEY_VARIABLE)
                .map(|key| Some(Self { key }));
        }
        let path = Self::file(state_dir, environments)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_fingerprint_key(&text, &path.display().to_string())
                .map(|key| Some(Self { key })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SecretError::FingerprintKey(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// The project's fingerprint key, creating the key file (0600) on first use. Returns
    /// whether a file was written.
    pub fn load_or_create(
        state_dir: &Path,
        environments: &[&str],
    ) -> Result<(Self, bool), SecretError> {
        if let Some(found) = Self::load(state_dir, environments)? {
            return Ok((found, false));
        }
        let path = Self::file(state_dir, environments)?;
        let key: [u8; 32] = Key::generate().into();
        let error = |e: std::io::Error| {
            SecretError::FingerprintKey(format!("cannot write {}: {e}", path.display()))
        };
        if let Some(parent) = path.parent() {
            // Private: the folder may be `.airlock/` itself, which holds the store too.
            airlock_store::private_files::create_dir(parent).map_err(error)?;
        }
        match write_private(&path, format!("{}\n", hex::encode(key)).as_bytes()) {
            Ok(()) => Ok((Self { key }, true)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match Self::load(state_dir, environments)? {
                    Some(found) => Ok((found, false)),
                    None => Err(error(e)),
                }
            }
            Err(e) => Err(error(e)),
        }
    }

    fn file(state_dir: &Path, environments: &[&str]) -> Result<PathBuf, SecretError> {
        let path = fingerprint_key_path(state_dir);
        if path == key_path(state_dir, "fingerprint") && environments.contains(&"fingerprint") {
            return Err(SecretError::FingerprintKey(format!(
                "environment `fingerprint` keeps its encryption key in {}, where the fingerprint key would go: set {FINGERPRINT_KEY_VARIABLE} instead",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Refuses a fingerprint key that is also an environment's encryption key: the two are
    /// kept apart, so that one leaking says nothing of the other.
    pub fn ensure_apart(&self, keyring: &Keyring) -> Result<(), SecretError> {
        match keyring
            .keys
            .iter()
            .find(|(_, key)| key.as_slice() == self.key.as_slice())
        {
            Some((environment, _)) => Err(SecretError::FingerprintKey(format!(
                "the fingerprint key is also the encryption key of `{environment}`: give it a key of its own"
            ))),
            None => Ok(()),
        }
    }

    /// The fingerprint of a value: HMAC-SHA256 under the fingerprint key, in hex.
    pub fn fingerprint(&self, value: &str) -> String {
        use hmac::{KeyInit, Mac};
        // HMAC takes a key of any length, so this cannot fail for 32 bytes.
        let mut mac = match <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(b"airlock-fingerprint\0");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn parse_fingerprint_key(text: &str, source: &str) -> Result<[u8; 32], SecretError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            SecretError::FingerprintKey(format!("{source}: a key is 64 hex digits (32 bytes)"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::from_keys([
            ("staging".to_owned(), [1; 32]),
            ("production".to_owned(), [2; 32]),
        ])
    }

    #[test]
    fn a_value_opens_only_in_its_environment_and_name() {
        let keys = keyring();
        let sealed = keys
            .seal("production", "CRM_TOKEN", "s3cret-token")
            .unwrap();
        assert_eq!(
            keys.unseal("production", "CRM_TOKEN", &sealed).unwrap(),
            "s3cret-token"
        );
        assert!(matches!(
            keys.unseal("staging", "CRM_TOKEN", &sealed),
            Err(SecretError::Undecryptable { .. })
        ));
        assert!(matches!(
            keys.unseal("production", "OTHER", &sealed),
            Err(SecretError::Undecryptable { .. })
        ));
        assert!(!String::from_utf8_lossy(&sealed).contains("s3cret-token"));
    }

    #[test]
    fn a_process_without_the_key_cannot_open_anything() {
        let only_staging = Keyring::from_keys([("staging".to_owned(), [1; 32])]);
        let sealed = keyring()
            .seal("production", "CRM_TOKEN", "s3cret-token")
            .unwrap();
        assert!(matches!(
            only_staging.unseal("production", "CRM_TOKEN", &sealed),
            Err(SecretError::NoKey { .. })
        ));
        assert!(format!("{only_staging:?}").contains("staging"));
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::create_key_file(dir.path(), "staging").unwrap());
        assert!(!Keyring::create_key_file(dir.path(), "staging").unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path(), "staging"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let keys = Keyring::load(dir.path(), &["staging", "production"]).unwrap();
        assert!(keys.has("staging"));
        assert!(!keys.has("production"));
    }

    #[test]
    fn a_fingerprint_depends_on_the_value_and_the_key_only() {
        let one = Fingerprinter::from_key([7; 32]);
        let other = Fingerprinter::from_key([8; 32]);
        let a = one.fingerprint("s3cret-token");
        assert_eq!(
            a,
            one.fingerprint("s3cret-token"),
            "the same value anywhere, the same fingerprint"
        );
        assert_ne!(a, one.fingerprint("s3cret-tokeN"));
        assert_ne!(
            a,
            other.fingerprint("s3cret-token"),
            "keyed: another key, another fingerprint"
        );
        assert_eq!(a.len(), 64);
        assert!(!a.contains("s3cret"));
        assert_eq!(format!("{one:?}"), "Fingerprinter(..)");
    }

    #[test]
    fn the_fingerprint_key_is_created_once_privately_and_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        // The variable would win over the file; these tests rely on it being unset.
        if std::env::var_os(FINGERPRINT_KEY_VARIABLE).is_some() {
            return;
        }
        assert!(
            Fingerprinter::load(dir.path(), &["staging"])
                .unwrap()
                .is_none()
        );
        let (created, wrote) = Fingerprinter::load_or_create(dir.path(), &["staging"]).unwrap();
        assert!(wrote);
        let (again, wrote) = Fingerprinter::load_or_create(dir.path(), &["staging"]).unwrap();
        assert!(!wrote);
        assert_eq!(created.fingerprint("x"), again.fingerprint("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(fingerprint_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Keyring::create_key_file(dir.path(), "staging").unwrap());
        let from_file = Keyring::load(dir.path(), &["staging"]).unwrap();
        assert!(created.ensure_apart(&from_file).is_ok());
        let same = Fingerprinter::from_key([1; 32]);
        assert!(
            same.ensure_apart(&keyring()).is_err(),
            "an environment's key is not a fingerprint key"
        );
        let clash = Fingerprinter::load_or_create(dir.path(), &["staging", "fingerprint"]);
        assert!(
            matches!(clash, Err(SecretError::FingerprintKey(_))),
            "an environment named `fingerprint` would share the file"
        );
    }
}
