//! `airlock worker` (execute only), `airlock migrate`, `airlock store copy`: scale-out on
//! PostgreSQL, and the move there from the embedded store.

use crate::cli::{Global, LogFormat, StoreCommand};
use crate::error::CliError;
use crate::workspace::{self, Workspace, redact_url};
use airlock_engine::EngineOptions;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `airlock worker`'s arguments.
pub struct WorkerArgs {
    pub concurrency: usize,
    pub lease: Duration,
    pub grace: Duration,
    pub log_format: LogFormat,
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(global: &Global, args: WorkerArgs) -> Result<ExitCode, CliError> {
    let WorkerArgs {
        concurrency,
        lease,
        grace,
        log_format,
        listen,
    } = args;
    super::serve::init_logging(log_format);
    let workspace = Workspace::open_serving(global)?;
    let metrics = airlock_server::Metrics::install()
        .map_err(|e| CliError::usage(format!("cannot start metrics: {e}"), None))?;
    let engine = Arc::new(
        workspace
            .engine(EngineOptions {
                lease_ms: lease.as_millis() as i64,
                concurrency,
                ..EngineOptions::default()
            })
            .with_observer(Arc::new(airlock_ops::notify::RunAlerts::new(
                workspace.store.clone(),
                Arc::new(workspace.loaded.project.manifest.clone()),
                Arc::new(airlock_engine::SystemClock),
                Some(metrics.observer()),
            ))),
    );
    let operations = airlock_server::Operations::new(workspace.store.clone(), metrics);
    let rt = workspace::runtime()?;
    rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let endpoints = match listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}"), None))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}"), None))?;
                outln!("worker endpoints on http://{bound} (/healthz, /readyz, /metrics)");
                let mut stopped = stop_rx.clone();
                Some(tokio::spawn(operations.clone().serve(
                    listener,
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )))
            }
            None => None,
        };
        let deliver_stop = stop_rx.clone();
        let work = tokio::spawn({
            let engine = engine.clone();
            async move { engine.work(stop_rx, Duration::from_millis(100)).await }
        });
        let deliver = tokio::spawn(
            airlock_ops::notify::Deliverer::new(
                engine.store().clone(),
                engine.runtime().clone(),
                engine.clock().clone(),
                engine.options().worker.clone(),
            )
            .run(deliver_stop, Duration::from_millis(500)),
        );
        operations.executing(true);
        outln!("worker ready (concurrency {concurrency})");
        airlock_server::shutdown_signal().await;
        operations.executing(false);
        tracing::info!(?grace, "stopping: letting running runs finish");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(grace, work).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the engine stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "the engine task failed"),
            Err(_) => tracing::warn!("grace period over; unfinished runs stay resumable"),
        }
        let _ = deliver.await;
        if let Some(endpoints) = endpoints {
            let _ = endpoints.await;
        }
        Ok::<(), CliError>(())
    })?;
    outln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Creates or upgrades the schema of the store `--store` names.
pub fn migrate(global: &Global) -> Result<ExitCode, CliError> {
    let rt = workspace::runtime()?;
    let (store, applied) = match global.store.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let applied = rt
                .block_on(airlock_store::postgres::PostgresStore::migrate(url))
                .map_err(|e| {
                    CliError::usage(format!("migrating {}: {e}", redact_url(url)), None)
                })?;
            (redact_url(url), applied)
        }
        location => {
            let root = crate::project_dir::ProjectDir::locate(global.project.as_deref())?.root;
            let embedded = root.join(workspace::STATE_DIR).join(workspace::STORE_FILE);
            // Opening a SQLite store applies its migrations.
            workspace::open_store(location, &embedded)?;
            (
                location.map_or_else(|| embedded.display().to_string(), str::to_owned),
                Vec::new(),
            )
        }
    };
    if global.json {
        crate::output::json(&json!({ "store": store, "applied": applied }));
    } else if applied.is_empty() {
        outln!("{store}: schema up to date");
    } else {
        outln!("{store}: applied schema versions {applied:?}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn store(global: &Global, command: &StoreCommand) -> Result<ExitCode, CliError> {
    let StoreCommand::Copy { from, to } = command;
    let path = std::path::Path::new(from.strip_prefix("sqlite:").unwrap_or(from));
    let report = workspace::runtime()?
        .block_on(airlock_store::copy::sqlite_to_postgres(path, to))
        .map_err(|e| {
            CliError::usage(
                format!("copying {} to {}: {e}", path.display(), redact_url(to)),
                None,
            )
        })?;
    let chain_ok = report.audit_chain.is_ok();
    if global.json {
        crate::output::json(&json!({
            "tables": report.tables.iter().map(|t| json!({"table": t.table, "rows": t.rows})).collect::<Vec<_>>(),
            "audit_chain_intact": chain_ok,
        }));
    } else {
        for table in &report.tables {
            outln!("{:<24} {:>8} rows", table.table, table.rows);
        }
        match report.audit_chain {
            Ok(()) => outln!("audit chain verified in {}", redact_url(to)),
            Err(seq) => {
                outln!("audit chain broken at event {seq} (it was broken in the source too)")
            }
        }
    }
    Ok(if chain_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::EXIT_CHECK_FAILED)
    })
}
