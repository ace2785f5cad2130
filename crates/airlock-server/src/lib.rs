//! `airlock serve`: how automations meet the world.
//!
//! One axum application: webhooks per environment (`/hooks/{environment}/{path}`, signed,
//! limited, deduplicated), the REST API under `/api/v1` (per-environment scoped tokens),
//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`. The promotion path (deploy,
//! promote, approve, reject, rollback, releases, diff, readiness, evidence, validate) is
//! decided in [`ops`], which the CLI calls too, so both apply the same rules. Beside it,
//! in the same process, the engine's worker loop (unless the server runs without
//! executing) and the cron scheduler.
//!
//! **Invariant: a webhook is answered 202 only after its run is durably queued** (the
//! store's commit returned), so a process killed right after the answer still finishes
//! that run after a restart: any process's engine claims it.

#![forbid(unsafe_code)]

mod anchor;
mod api;
mod auth;
mod completions;
mod error;
mod hooks;
mod metrics;
mod operations;
mod promotion_api;
mod ready;
mod retention;
mod routes;
mod schedules;
mod tls;

pub use api::openapi_document;
pub use auth::token_hash;
pub use error::ServerError;
pub use metrics::Metrics;
pub use operations::Operations;
pub use tls::TlsFiles;

use airlock_connectors::secrets::Keyring;
use airlock_core::model::Manifest;
use airlock_engine::{Clock, Engine};
use airlock_store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a server process does.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen (loopback by default).
    pub listen: SocketAddr,
    /// Whether this process executes runs (`false`: accept only, workers execute).
    pub execute: bool,
    /// Whether this process fires cron schedules.
    pub schedules: bool,
    /// How long running steps may take to finish after SIGTERM before the process exits
    /// anyway (their runs stay resumable: their leases expire and another process claims them).
    pub shutdown_grace: Duration,
    /// How long a claim lasts without a write.
    pub lease_ms: i64,
    /// Runs executed at once.
    pub concurrency: usize,
    /// How often the scheduler looks at the clock.
    pub schedule_tick: Duration,
    /// Retention: finished runs older than this are deleted, at start and then every
    /// `retention_every` (none when `None`; see `ops::retention`).
    pub retain: Option<Duration>,
    /// How often retention runs.
    pub retention_every: Duration,
    /// Where and how often the audit chain's head is written, as an anchor kept outside
    /// the store (none when `None`; see `ops::audit_chain`).
    pub audit_anchor: Option<AuditAnchor>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`); plain HTTP
    /// when `None`. Over TLS the console's cookie is always `Secure`.
    pub tls: Option<TlsFiles>,
}

/// `serve --audit-anchor-file PATH --audit-anchor-every D`: the audit chain's head written
/// to `file` at start and then every `every`, so that a chain later cut short is detected
/// (`airlock audit verify --expect "$(cat PATH)"`).
#[derive(Debug, Clone)]
pub struct AuditAnchor {
    /// The file, replaced whole each time (temporary file and rename).
    pub file: PathBuf,
    /// How often.
    pub every: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            execute: true,
            schedules: true,
            shutdown_grace: Duration::from_secs(10),
            lease_ms: 30_000,
            concurrency: 64,
            schedule_tick: Duration::from_secs(1),
            retain: None,
            retention_every: Duration::from_secs(600),
            audit_anchor: None,
            tls: None,
        }
    }
}

/// Everything a server needs from the project it serves.
pub struct Context {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The project's manifest: environments, approvers, egress.
    pub manifest: Arc<Manifest>,
    /// The environment keys this process holds (webhook signing secrets are opened with them).
    pub keyring: Keyring,
    /// Fingerprints secrets set over the API (absent: no fingerprint is kept).
    pub fingerprinter: Option<airlock_connectors::secrets::Fingerprinter>,
    /// The engine (with its runtime over the same store and keys).
    pub engine: Engine,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The project's working copy: what `deploy` deploys and what promotions, `diff`,
    /// `readiness` and `validate` judge.
    pub project: Arc<dyn ProjectSource>,
    /// The project's folder, where bindings' relative paths (a SQLite file, a schema) are
    /// resolved, as the engine's runtime resolves them: `check` builds its connectors there.
    pub root: PathBuf,
}

pub use airlock_ops::ProjectSource;

/// The state every handler shares.
pub(crate) struct App {
    pub store: Arc<dyn Store>,
    pub manifest: Arc<Manifest>,
    pub keyring: Keyring,
    pub fingerprinter: Option<airlock_connectors::secrets::Fingerprinter>,
    pub clock: Arc<dyn Clock>,
    pub project: Arc<dyn ProjectSource>,
    pub root: PathBuf,
    pub routes: routes::RouteTable,
    pub limiters: hooks::Limiters,
    pub failed_authentications: auth::FailedAuthentications,
    pub secrets: auth::SecretCache,
    pub completions: Arc<completions::Completions>,
    pub metrics: Metrics,
    /// Serving and not stopping (false before serving and from the stop signal on).
    pub ready: std::sync::atomic::AtomicBool,
    pub write_probe: ready::WriteProbe,
    /// When this process executes: the engine, and the slots for runs a webhook accepts
    /// and claims in one write, executed at once in this process (no queue round trip).
    pub inline: Option<(Arc<Engine>, Arc<tokio::sync::Semaphore>)>,
}

/// A server bound to its address, not yet serving.
pub struct Server {
    app: Arc<App>,
    engine: Arc<Engine>,
    router: axum::Router,
    listener: tokio::net::TcpListener,
    /// With `--tls-cert`: the handshake every connection goes through.
    tls: Option<tokio_rustls::TlsAcceptor>,
    options: ServerOptions,
}

/// What a server serves, put together once: the shared state, the engine (with the
/// observer for metrics and synchronous answers) and the router over that state.
struct Assembled {
    app: Arc<App>,
    engine: Arc<Engine>,
    router: axum::Router,
}

/// The one construction of a server's application, shared by [`Server::bind`] and
/// [`router`], so the routes a test drives are the routes `airlock serve` answers.
fn assemble(context: Context, options: &ServerOptions) -> Result<Assembled, ServerError> {
    let metrics = Metrics::install()?;
    let completions = Arc::new(completions::Completions::default());
    let observer = Arc::new(metrics::EngineObserver::new(
        metrics.clone(),
        completions.clone(),
    ));
    // Runs that wait, fail or die are reported through the notification outbox too.
    let observer = Arc::new(airlock_ops::notify::RunAlerts::new(
        context.store.clone(),
        context.manifest.clone(),
        context.clock.clone(),
        Some(observer),
    ));
    let engine = Arc::new(context.engine.with_observer(observer));
    let inline = options.execute.then(|| {
        (
            engine.clone(),
            Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1))),
        )
    });
    let app = Arc::new(App {
        store: context.store.clone(),
        manifest: context.manifest,
        keyring: context.keyring,
        fingerprinter: context.fingerprinter,
        clock: context.clock,
        project: context.project,
        root: context.root,
        routes: routes::RouteTable::default(),
        limiters: hooks::Limiters::default(),
        failed_authentications: auth::FailedAuthentications::default(),
        secrets: auth::SecretCache::default(),
        completions,
        metrics,
        ready: std::sync::atomic::AtomicBool::new(false),
        write_probe: ready::WriteProbe::default(),
        inline,
    });
    let router = api::router(app.clone()).merge(console(
        &app,
        airlock_console::ConsoleOptions {
            // Reached over TLS, directly: the cookie never travels in the clear.
            secure_cookies: options.tls.is_some(),
        },
    ));
    Ok(Assembled {
        app,
        engine,
        router,
    })
}

/// The web console, over the same state as the API, at every path the API does not use.
/// A wrong token at its sign-in counts against the client's address as a wrong one on
/// the API does.
fn console(app: &Arc<App>, options: airlock_console::ConsoleOptions) -> axum::Router {
    let refresh = app.clone();
    let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        // What runs changed: the webhook routes follow now rather than at their next
        // refresh.
        let app = refresh.clone();
        tokio::spawn(async move {
            if let Err(e) = app.routes.refresh(&app).await {
                tracing::warn!(error = %e, "refreshing the webhook routes failed");
            }
        });
    });
    airlock_console::router(
        airlock_console::ConsoleContext {
            store: app.store.clone(),
            manifest: app.manifest.clone(),
            project: app.project.clone(),
            clock: app.clock.clone(),
            changed: Some(changed),
        },
        options,
    )
    .layer(axum::middleware::from_fn_with_state(
        app.clone(),
        auth::limit_failed_authentications,
    ))
}

/// The server's HTTP application without a listener: every route `airlock serve`
/// answers, over the same state, ready for requests driven by the caller (tower's
/// `oneshot` in tests, or a listener of the caller's own).
///
/// The webhook routes are read from the store's deployments once, now; a deploy,
/// promotion or rollback made through this router refreshes them, as in a server.
/// Nothing runs in the background: no worker loop, no scheduler, no periodic route
/// refresh, no retention. With `options.execute`, a webhook delivery is still accepted
/// and executed in the request's process, as `airlock serve` does with a free slot; runs
/// queued otherwise wait for an engine the caller drives. `listen` is not used.
pub async fn router(context: Context, options: ServerOptions) -> Result<axum::Router, ServerError> {
    Ok(router_with_stop(context, options).await?.0)
}

/// [`router`], with the handle that tells its application the process is stopping.
pub async fn router_with_stop(
    context: Context,
    options: ServerOptions,
) -> Result<(axum::Router, StopHandle), ServerError> {
    let Assembled { app, router, .. } = assemble(context, &options)?;
    app.routes.refresh(&app).await?;
    // Serving from now on: whoever holds the router answers with it.
    app.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok((router, StopHandle(app)))
}

/// Tells a router's application that its process is stopping, as SIGTERM tells
/// `airlock serve`'s: from then on `/readyz` answers 503, so a load balancer sends its
/// work elsewhere while what was accepted finishes.
#[derive(Clone)]
pub struct StopHandle(Arc<App>);

impl StopHandle {
    /// The process is stopping.
    pub fn stopping(&self) {
        self.0
            .ready
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Server {
    /// Binds the listener and wires the engine's observer for metrics and synchronous answers.
    pub async fn bind(context: Context, options: ServerOptions) -> Result<Self, ServerError> {
        // The certificate first: a bad file stops everything before a port is taken.
        let tls = options.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| ServerError::Bind(options.listen, e))?;
        let Assembled {
            app,
            engine,
            router,
        } = assemble(context, &options)?;
        Ok(Self {
            app,
            engine,
            router,
            listener,
            tls,
            options,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|e| ServerError::Bind(self.options.listen, e))
    }

    /// Serves until `shutdown` resolves: then stops accepting and claiming, lets every run
    /// this process executes finish (webhook runs included) within the grace period, and
    /// returns. Runs not finished by then stay resumable (their leases expire).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            app,
            engine,
            router,
            listener,
            tls,
            options,
        } = self;
        app.routes.refresh(&app).await?;
        app.metrics.queue_depth(&*app.store).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut background = tokio::task::JoinSet::new();
        if options.execute {
            let engine = engine.clone();
            let stop = stop_rx.clone();
            background.spawn(async move {
                if let Err(e) = engine.work(stop, Duration::from_millis(50)).await {
                    tracing::error!(error = %e, "the engine stopped");
                }
            });
        }
        {
            // The notification outbox, delivered by every serving process (the store's
            // claim keeps two from sending one notification).
            let deliverer = airlock_ops::notify::Deliverer::new(
                app.store.clone(),
                engine.runtime().clone(),
                engine.clock().clone(),
                engine.options().worker.clone(),
            );
            let stop = stop_rx.clone();
            background.spawn(deliverer.run(stop, Duration::from_millis(500)));
        }
        {
            let app = app.clone();
            let mut stop = stop_rx.clone();
            background.spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(routes::REFRESH) => {}
                        _ = stop.changed() => return,
                    }
                    if let Err(e) = app.routes.refresh(&app).await {
                        tracing::warn!(error = %e, "refreshing the webhook routes failed");
                    }
                    app.metrics.queue_depth(&*app.store).await;
                }
            });
        }
        if options.schedules {
            let app = app.clone();
            let stop = stop_rx.clone();
            let tick = options.schedule_tick;
            background.spawn(async move { schedules::run(app, tick, stop).await });
        }
        if let Some(retain) = options.retain {
            let app = app.clone();
            let stop = stop_rx.clone();
            let every = options.retention_every;
            background.spawn(async move { retention::run(app, retain, every, stop).await });
        }
        if let Some(anchor) = options.audit_anchor.clone() {
            let app = app.clone();
            let stop = stop_rx.clone();
            background.spawn(async move { anchor::run(app, anchor, stop).await });
        }
        app.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving");
        let stop_for_http = stop_tx.clone();
        // With each connection's peer address: failed authentications count per address.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let stopping = StopHandle(app.clone());
        let signalled = async move {
            shutdown.await;
            // Not ready from the signal on, not once the connections have drained.
            stopping.stopping();
            let _ = stop_for_http.send(true);
        };
        let served = match tls {
            None => {
                axum::serve(listener, service)
                    .with_graceful_shutdown(signalled)
                    .await
            }
            Some(acceptor) => {
                let listener =
                    tls::TlsListener::new(listener, acceptor).map_err(ServerError::Serve)?;
                // `tap_io` gives the connections their peer address (`ConnectInfo`) as a
                // plain listener's have it.
                axum::serve(axum::serve::ListenerExt::tap_io(listener, |_| {}), service)
                    .with_graceful_shutdown(signalled)
                    .await
            }
        };
        app.ready.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = stop_tx.send(true);
        tracing::info!(
            grace = ?options.shutdown_grace,
            runs = engine.in_flight(),
            "stopping: letting running runs finish"
        );
        // The background loops end on the stop signal (the worker loop once its runs are
        // done); the runs this process accepted from webhooks run on tasks of their own,
        // which end with the runtime when this returns: the engine tracks every run it
        // executes, so wait for all of them, not only the loop's.
        let drained = tokio::time::timeout(options.shutdown_grace, async {
            while background.join_next().await.is_some() {}
            engine.idle().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("every running run finished"),
            Err(_) => tracing::warn!(
                runs = engine.in_flight(),
                "grace period over; unfinished runs stay resumable"
            ),
        }
        served.map_err(ServerError::Serve)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
