//! What runs need from outside the store: workflow versions decoded, and connectors
//! built per environment with that environment's secrets and egress.

use airlock_connectors::record::{RecordSink, RecordedCall};
use airlock_connectors::secrets::{Keyring, Redactor, SecretError, SecretLookup};
use airlock_connectors::{CallError, Connector, Egress};
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
}

/// One connector of one environment, built on first use.
type ConnectorCell = tokio::sync::OnceCell<Arc<dyn Connector>>;

/// The runtime of a project folder: its manifest's bindings, its keys, one store.
pub struct ProjectRuntime {
    store: Arc<dyn Store>,
    manifest: Manifest,
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
            manifest,
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

    async fn build(&self, environment: &str, name: &str) -> Result<Arc<dyn Connector>, CallError> {
        let env = self
            .manifest
            .environment(environment)
            .ok_or_else(|| CallError::Invalid(format!("unknown environment `{environment}`")))?;
        let binding = env.binding(name).ok_or_else(|| {
            CallError::Invalid(format!(
                "connector `{name}` is not bound in environment `{environment}`"
            ))
        })?;
        let kind = self
            .manifest
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
