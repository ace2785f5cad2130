//! A project opened for work: its validated files, its store, its keys, and an engine.

use crate::cli::Global;
use crate::error::CliError;
use crate::project_dir::ProjectDir;
use airlock_connectors::secrets::Keyring;
use airlock_core::diagnostic::suggestion;
use airlock_core::project::{Loaded, Project, WorkflowFile};
use airlock_engine::{Clock, Engine, EngineOptions, ProjectRuntime, SystemClock};
use airlock_store::Store;
use airlock_store::sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The project's local state folder.
pub const STATE_DIR: &str = ".airlock";
/// The embedded store's file inside it.
pub const STORE_FILE: &str = "airlock.db";

/// Creates the project's state folder, private (0700): it holds the store and the
/// environments' keys. An existing folder is left as it is (`check` reports the store).
/// How long a serving process keeps trying a PostgreSQL store that cannot be reached for
/// a reason that passes: long enough for a database restart, short enough that a wrong
/// port is reported within seconds.
pub const SERVING_CONNECT_RETRY: Duration = Duration::from_secs(10);

pub fn create_state_dir(state: &std::path::Path) -> Result<(), CliError> {
    airlock_store::private_files::create_dir(state).map_err(|e| CliError::io("create", state, e))
}

pub struct Workspace {
    pub root: PathBuf,
    pub loaded: Loaded,
    pub store: Arc<dyn Store>,
    pub keyring: Keyring,
    /// The folder holds no project: `loaded` is the bundle deployed last to the store
    /// (empty before the first deploy), as a server with no checkout serves it.
    pub deployed: bool,
}

impl Workspace {
    /// Opens the project (which must validate) and its embedded store.
    /// `Err(code)` inside means the diagnostics were printed already.
    /// Loads the project (printing its problems, if any, as `validate` does: then
    /// [`CliError::Reported`]), opens its store and its environments' keys.
    pub fn open(global: &Global) -> Result<Self, CliError> {
        Self::open_with(global, Duration::ZERO, false)
    }

    /// [`Workspace::open`] for a process that serves (`serve`, `worker`): a PostgreSQL
    /// store that refuses connections for a while (restarting, not up yet) is tried again
    /// for [`SERVING_CONNECT_RETRY`] before the process gives up, saying why.
    ///
    /// A folder with no `airlock.yaml` is a server with no checkout of the project: it
    /// serves the bundle deployed to its store last (see [`Workspace::open_deployed`]).
    pub fn open_serving(global: &Global) -> Result<Self, CliError> {
        Self::open_with(global, SERVING_CONNECT_RETRY, true)
    }

    /// [`Workspace::open`], or, in a folder with no `airlock.yaml`, its store with the
    /// project deployed to it last (`airlock deploy --server` carries the files): what a
    /// server with no checkout serves, and what `token` manages tokens of. Before the first
    /// deploy the project is empty.
    pub fn open_deployed(global: &Global) -> Result<Self, CliError> {
        Self::open_with(global, Duration::ZERO, true)
    }

    fn open_with(
        global: &Global,
        connect_retry: Duration,
        deployed: bool,
    ) -> Result<Self, CliError> {
        if deployed {
            let root = match global.project.as_deref() {
                Some(dir) => dir.to_path_buf(),
                None => std::env::current_dir()
                    .map_err(|e| CliError::io("read", std::path::Path::new("."), e))?,
            };
            if root.is_dir() && !root.join(airlock_core::project::MANIFEST).exists() {
                return Self::open_store_only(global, root, connect_retry);
            }
        }
        let loaded = crate::commands::validate::load_or_report(global)?;
        let root = ProjectDir::locate(global.project.as_deref())?.root;
        let state = root.join(STATE_DIR);
        create_state_dir(&state)?;
        let store = open_store_with(
            global.store.as_deref(),
            &state.join(STORE_FILE),
            connect_retry,
        )?;
        let keyring = keyring_of(&state, &loaded)?;
        Ok(Self {
            root,
            loaded,
            store,
            keyring,
            deployed: false,
        })
    }

    /// A folder with no project: its store, and the project deployed to it last.
    fn open_store_only(
        global: &Global,
        root: PathBuf,
        connect_retry: Duration,
    ) -> Result<Self, CliError> {
        let state = root.join(STATE_DIR);
        create_state_dir(&state)?;
        let store = open_store_with(
            global.store.as_deref(),
            &state.join(STORE_FILE),
            connect_retry,
        )?;
        let latest = runtime()?
            .block_on(airlock_ops::bundle::latest_project(&*store))
            .map_err(crate::commands::ops_error)?;
        let loaded = match latest {
            Some(loaded) => loaded,
            // Nothing deployed yet: no environment, no workflow, until the first deploy.
            None => Loaded {
                project: airlock_core::project::load(Vec::new()).project,
                diagnostics: Vec::new(),
            },
        };
        let keyring = keyring_of(&state, &loaded)?;
        Ok(Self {
            root,
            loaded,
            store,
            keyring,
            deployed: true,
        })
    }

    pub fn project(&self) -> &Project {
        &self.loaded.project
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn workflow(&self, name: &str) -> Result<&WorkflowFile, CliError> {
        self.project().workflow(name).ok_or_else(|| {
            let names = self
                .project()
                .workflows
                .iter()
                .map(|w| w.workflow.name.as_str());
            CliError::usage(
                format!("no workflow named `{name}`"),
                suggestion(name, names),
            )
        })
    }

    pub fn environment(&self, name: &str) -> Result<&airlock_core::model::Environment, CliError> {
        let manifest = &self.project().manifest;
        manifest.environment(name).ok_or_else(|| {
            let names = manifest.environments.iter().map(|e| e.name.as_str());
            CliError::usage(
                format!("no environment named `{name}`"),
                suggestion(name, names),
            )
        })
    }

    /// Stores the working copy's version of a workflow and returns its id.
    pub async fn store_working_version(&self, workflow: &WorkflowFile) -> Result<String, CliError> {
        airlock_ops::store_working_version(&*self.store, self.project(), workflow, now())
            .await
            .map_err(crate::commands::ops_error)
    }

    /// An engine over this project.
    pub fn engine(&self, options: EngineOptions) -> Engine {
        Engine::new(
            self.store.clone(),
            Arc::new(self.connectors()),
            Arc::new(CliClock),
            options,
        )
    }

    /// The project's connectors per environment, with this store's secrets and this
    /// machine's keys: what the engine calls, and what `check` reaches.
    pub fn connectors(&self) -> ProjectRuntime {
        ProjectRuntime::new(
            self.store.clone(),
            self.project().manifest.clone(),
            self.root.clone(),
            self.keyring.clone(),
            Arc::new(CliClock),
        )
    }

    /// Appends an audit event.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        environment: Option<&str>,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), CliError> {
        airlock_ops::audit(
            &*self.store,
            now(),
            actor,
            action,
            environment,
            subject,
            detail,
        )
        .await
        .map_err(crate::commands::ops_error)
    }
}

/// Now, by [`CliClock`], in milliseconds since the epoch.
pub fn now() -> i64 {
    CliClock.now()
}

/// The variable a debug build's clock starts from (see [`CliClock`]).
pub const TEST_NOW: &str = "AIRLOCK_TEST_NOW";

/// Every command's clock, and the engine's and connectors' it builds: the system's.
///
/// Except in a debug build (what `cargo test` runs) started with `AIRLOCK_TEST_NOW` set to
/// an RFC 3339 instant: its clock then counts from that instant on, at the system clock's
/// pace, so that an end-to-end test can put a whole tour inside or outside a freeze window
/// whatever the day it runs. A release build ignores the variable: no environment variable
/// moves a user's clock past a freeze.
#[derive(Debug, Clone, Copy, Default)]
pub struct CliClock;

impl Clock for CliClock {
    fn now(&self) -> i64 {
        SystemClock.now().saturating_add(test_offset())
    }
}

/// How far a debug build's clock is moved by `AIRLOCK_TEST_NOW` (0 without it), fixed at the
/// first reading so that the process's time runs on evenly.
fn test_offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return 0;
        }
        let Ok(at) = std::env::var(TEST_NOW) else {
            return 0;
        };
        match humantime::parse_rfc3339(&at) {
            Ok(instant) => {
                let ms = instant
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                ms - SystemClock.now()
            }
            Err(error) => {
                errln!("note: {TEST_NOW}={at} is not an RFC 3339 instant ({error}); the system clock is used");
                0
            }
        }
    })
}

pub fn store_error(e: airlock_store::Error) -> CliError {
    CliError::usage(format!("store: {e}"), None)
}

/// `2026-11-27T05:21:01.123Z`
pub fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The process's tokio runtime, started on first use. One for the whole command, so that
/// a store's connection pool (PostgreSQL) opened in one step serves the next.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, CliError> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}"), None))
}

/// The store a command works on: PostgreSQL when `--store` (or `AIRLOCK_STORE`) names a
/// `postgres://` URL, a SQLite file for `sqlite:PATH`, and the project's embedded file otherwise.
pub fn open_store(
    location: Option<&str>,
    embedded: &std::path::Path,
) -> Result<Arc<dyn Store>, CliError> {
    open_store_with(location, embedded, Duration::ZERO)
}

/// [`open_store`], trying an unreachable PostgreSQL again for `connect_retry` (zero: once).
pub fn open_store_with(
    location: Option<&str>,
    embedded: &std::path::Path,
    connect_retry: Duration,
) -> Result<Arc<dyn Store>, CliError> {
    let cannot = |what: &str, e: airlock_store::Error| {
        CliError::usage(format!("cannot open the store {what}: {e}"), None)
    };
    match location {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = runtime()?
                .block_on(airlock_store::postgres::PostgresStore::connect_with(
                    url,
                    airlock_store::PostgresOptions {
                        connect_retry,
                        ..airlock_store::PostgresOptions::default()
                    },
                ))
                .map_err(|e| cannot(&redact_url(url), e))?;
            Ok(Arc::new(store))
        }
        Some(location) => {
            let path = location.strip_prefix("sqlite:").unwrap_or(location);
            let store =
                SqliteStore::open(std::path::Path::new(path)).map_err(|e| cannot(path, e))?;
            Ok(Arc::new(store))
        }
        None => {
            let store = SqliteStore::open(embedded)
                .map_err(|e| cannot(&embedded.display().to_string(), e))?;
            Ok(Arc::new(store))
        }
    }
}

/// A store URL as it may be shown: without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The keyring of the environments a project declares, from the state folder.
fn keyring_of(state: &std::path::Path, loaded: &Loaded) -> Result<Keyring, CliError> {
    let environments: Vec<&str> = loaded
        .project
        .manifest
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    Keyring::load(state, &environments).map_err(|e| CliError::usage(e.to_string(), None))
}
