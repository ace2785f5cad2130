//! What an operator's tooling asks of a process that only executes (`airlock worker
//! --listen ADDR`): `/healthz`, `/readyz` and `/metrics`, answered as `airlock serve`
//! answers them (the same readiness rule and the same metrics), and nothing else: no API,
//! no webhooks, no token.

use crate::metrics::Metrics;
use crate::ready::WriteProbe;
use airlock_store::Store;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The worker's side of the three endpoints.
pub struct Operations {
    store: Arc<dyn Store>,
    metrics: Metrics,
    executing: AtomicBool,
    write_probe: WriteProbe,
}

impl Operations {
    /// Not ready until [`Operations::executing`] says so.
    pub fn new(store: Arc<dyn Store>, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            executing: AtomicBool::new(false),
            write_probe: WriteProbe::default(),
        })
    }

    /// Whether the worker claims work now (false from the stop signal on, so a
    /// supervisor sees it draining).
    pub fn executing(&self, executing: bool) {
        self.executing.store(executing, Ordering::SeqCst);
    }

    /// Serves the three endpoints on `listener` until `stop` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(stop)
            .await
    }

    /// The router of the three endpoints.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(self))
    }
}

async fn readyz(State(ops): State<Arc<Operations>>) -> Response {
    crate::ready::answer(
        ops.executing.load(Ordering::SeqCst),
        &ops.write_probe,
        &*ops.store,
    )
    .await
}

async fn metrics(State(ops): State<Arc<Operations>>) -> Response {
    ops.metrics.exposition()
}
