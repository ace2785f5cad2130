//! What runs need from outside the store: workflow versions decoded, and connectors
//! built per environment with that environment's secrets and egress.

use airlock_connectors::record::{RecordSink, RecordedCall};
use airlock_connectors::secrets::{Keyring, Redactor, SecretError, SecretLookup};
use airlock_connectors::{CallError, Connector, Egress};
use airlock_core::model::manifest::Person;
use airlock_core::model::{BindingMode, Manifest, Workflow};
use airlock_store::{NewTestRecord, Store};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// What the executor asks of its surroundings.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The decoded workflow of a stored version.
    async fn workflow(&self, version: &str) -> Result<Arc<Workflow>, String>;
    /// The connector `name` as bound in `environment`.
    async fn connector(
        &self,
        environment: &str,
        name: &str,
    ) -> Result<Arc<dyn Connector>, CallError>;
    /// What to redact from anything journaled for `environment`.
    fn redactor(&self, environment: &str) -> Redactor;
    /// Who is who (`people:`): the contacts `{{ release.* }}` reads. A runtime that was
    /// told of nobody maps nobody.
    fn people(&self) -> &[Person] {
        &[]
    }
}

/// One connector of one environment, built on first use.
type ConnectorCell = tokio::sync::OnceCell<Arc<dyn Connector>>;

/// How long a protected environment's released configuration is trusted before the
/// store is asked again whether a newer one was released (by any process).
const CONFIGURATION_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The configuration one environment's connectors are built from.
struct EnvironmentConfig {
    /// When the store was last asked which configuration is released.
    checked: std::time::Instant,
    /// The released configuration's id (`None`: the working copy's, as nothing is released).
    version: Option<String>,
    /// The manifest to build from: the working copy with this environment's parts
    /// taken from its release.
    manifest: Arc<Manifest>,
}

/// The runtime of a project folder: its manifest's bindings, its keys, one store.
///
/// A protected environment's connectors are built from its *released* configuration
/// (`airlock_core::config`), never from the working copy's: the runtime reads which one
/// is released from the store, again at most every second, and builds that
/// environment's connectors anew when it changed, so the next call after a configuration
/// release (by any process) uses it.
pub struct ProjectRuntime {
    store: Arc<dyn Store>,
    manifest: Arc<Manifest>,
    configs: Mutex<HashMap<String, EnvironmentConfig>>,
    base_dir: PathBuf,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    workflows: Mutex<HashMap<String, Arc<Workflow>>>,
    /// environment → connector name → the connector, built once. The lock is held only to
    /// find the cell: building (which reads secrets from the store) happens outside it,
    /// and only callers of the same connector wait for one build.
    connectors: Mutex<HashMap<String, HashMap<String, Arc<ConnectorCell>>>>,
    redactors: Mutex<HashMap<String, Redactor>>,
}

impl ProjectRuntime {
    /// A runtime over a project's manifest, its folder, the keys this process holds and a store.
    pub fn new(
        store: Arc<dyn Store>,
        manifest: Manifest,
        base_dir: PathBuf,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            manifest: Arc::new(manifest),
            configs: Mutex::new(HashMap::new()),
            base_dir,
            keyring,
            clock,
            workflows: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            redactors: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest `environment`'s connectors are built from now (see the type's
    /// documentation). When the released configuration changed since the last look, the
    /// environment's built connectors are dropped, so the next call builds them anew.
    async fn manifest_for(&self, environment: &str) -> Result<Arc<Manifest>, CallError> {
        let protected = self
            .manifest
            .environment(environment)
            .is_some_and(|e| e.protected);
        if !protected {
            return Ok(self.manifest.clone());
        }
        if let Some(known) = self
            .configs
            .lock()
            .ok()
            .and_then(|c| c.get(environment).map(|k| (k.checked, k.manifest.clone())))
            && known.0.elapsed() < CONFIGURATION_RECHECK
        {
            return Ok(known.1);
        }
        let released = self
            .store
            .deployment(environment, airlock_core::config::CONFIG_SUBJECT)
            .await
            .map_err(|e| CallError::Connection(format!("the released configuration: {e}")))?
            .map(|d| d.version);
        let unchanged = self.configs.lock().ok().and_then(|mut c| {
            let known = c.get_mut(environment)?;
            (known.version == released).then(|| {
                known.checked = std::time::Instant::now();
                known.manifest.clone()
            })
        });
        if let Some(manifest) = unchanged {
            return Ok(manifest);
        }
        let manifest = match &released {
            None => self.manifest.clone(),
            Some(version) => {
                let stored = self
                    .store
                    .version(version)
                    .await
                    .map_err(|e| CallError::Connection(format!("the released configuration: {e}")))?
                    .ok_or_else(|| {
                        CallError::Invalid(format!(
                            "the released configuration {version} of `{environment}` is not in the store"
                        ))
                    })?;
                let released =
                    airlock_core::config::decode(&stored.source).map_err(CallError::Invalid)?;
                Arc::new(airlock_core::config::overlay(
                    &self.manifest,
                    environment,
                    &released,
                ))
            }
        };
        if let Ok(mut configs) = self.configs.lock() {
            let changed = configs
                .get(environment)
                .is_some_and(|known| known.version != released);
            configs.insert(
                environment.to_owned(),
                EnvironmentConfig {
                    checked: std::time::Instant::now(),
                    version: released,
                    manifest: manifest.clone(),
                },
            );
            if changed && let Ok(mut connectors) = self.connectors.lock() {
                connectors.remove(environment);
            }
        }
        Ok(manifest)
    }

    async fn build(&self, environment: &str, name: &str) -> Result<Arc<dyn Connector>, CallError> {
        let manifest = self.manifest_for(environment).await?;
        let env = manifest
            .environment(environment)
            .ok_or_else(|| CallError::Invalid(format!("unknown environment `{environment}`")))?;
        let binding = env.binding(name).ok_or_else(|| {
            CallError::Invalid(format!(
                "connector `{name}` is not bound in environment `{environment}`"
            ))
        })?;
        let kind = manifest
            .connector(name)
            .and_then(|c| c.kind)
            .ok_or_else(|| CallError::Invalid(format!("unknown connector `{name}`")))?;
        let sink: Arc<dyn RecordSink> = Arc::new(StoreRecords {
            store: self.store.clone(),
            clock: self.clock.clone(),
        });
        let lookup = StoreSecrets {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
        };
        let mut redactor = Redactor::default();
        let resolved = airlock_connectors::secrets::resolve_binding(
            binding,
            kind,
            environment,
            &self.base_dir,
            &lookup,
            &mut redactor,
        )
        .await
        .map_err(|e| CallError::Invalid(e.to_string()))?;
        if let Ok(mut redactors) = self.redactors.lock() {
            redactors
                .entry(environment.to_owned())
                .or_default()
                .extend(&redactor);
        }
        let egress = Arc::new(Egress::new(
            environment,
            env.egress.iter().map(|h| h.value.clone()).collect(),
        ));
        let responses = binding
            .responses
            .iter()
            .map(|(k, v)| (k.value.clone(), v.to_json()))
            .collect();
        airlock_connectors::build(
            resolved,
            binding.mode.value == BindingMode::Record,
            responses,
            egress,
            sink,
        )
    }
}

#[async_trait]
impl Runtime for ProjectRuntime {
    async fn workflow(&self, version: &str) -> Result<Arc<Workflow>, String> {
        if let Some(found) = self
            .workflows
            .lock()
            .ok()
            .and_then(|w| w.get(version).cloned())
        {
            return Ok(found);
        }
        let stored = self
            .store
            .version(version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("version {version} is not in the store"))?;
        let workflow = Arc::new(airlock_core::model::workflow::decode_source(
            &stored.source,
        )?);
        if let Ok(mut cache) = self.workflows.lock() {
            cache.insert(version.to_owned(), workflow.clone());
        }
        Ok(workflow)
    }

    async fn connector(
        &self,
        environment: &str,
        name: &str,
    ) -> Result<Arc<dyn Connector>, CallError> {
        // First: a protected environment's configuration may have been released anew,
        // which drops its built connectors.
        self.manifest_for(environment).await?;
        let cell = {
            let mut connectors = self
                .connectors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let environment = match connectors.get_mut(environment) {
                Some(found) => found,
                None => connectors.entry(environment.to_owned()).or_default(),
            };
            match environment.get(name) {
                Some(cell) => Arc::clone(cell),
                None => Arc::clone(environment.entry(name.to_owned()).or_default()),
            }
        };
        // A build that fails is not kept: the next call tries again (a secret set since).
        cell.get_or_try_init(|| self.build(environment, name))
            .await
            .cloned()
    }

    fn people(&self) -> &[Person] {
        &self.manifest.people
    }

    fn redactor(&self, environment: &str) -> Redactor {
        self.redactors
            .lock()
            .ok()
            .and_then(|r| r.get(environment).cloned())
            .unwrap_or_default()
    }
}

/// Secrets of one environment: sealed in the store, opened with this process's key.
pub struct StoreSecrets {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The keys this process holds.
    pub keyring: Keyring,
}

#[async_trait]
impl SecretLookup for StoreSecrets {
    async fn lookup(&self, environment: &str, name: &str) -> Result<Option<String>, SecretError> {
        let sealed = self
            .store
            .secret(environment, name)
            .await
            .map_err(|e| SecretError::Lookup(e.to_string()))?;
        match sealed {
            Some(sealed) => self
                .keyring
                .unseal(environment, name, &sealed.sealed)
                .map(Some),
            None => Ok(None),
        }
    }
}

/// Record-mode calls, kept as test records in the store.
pub struct StoreRecords {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl RecordSink for StoreRecords {
    async fn record(&self, call: RecordedCall) -> Result<(), String> {
        self.store
            .add_record(&NewTestRecord {
                environment: call.environment,
                run: call.run,
                step: call.step,
                connector: call.connector,
                action: call.action,
                arguments: call.arguments,
                idempotency_key: Some(call.idempotency_key),
                at: self.clock.now(),
            })
            .await
            .map_err(|e| e.to_string())
    }
}
