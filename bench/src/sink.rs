//! The in-process sink: HTTP/1.1 with keep-alive on 127.0.0.1, on a runtime (one thread)
//! of its own, counting every POST like `/work/shared/bench/sink.js`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A running sink.
pub struct Sink {
    /// Its base URL.
    pub url: String,
    received: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Sink {
    /// Starts a sink on a random port.
    pub fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sink")
            .enable_all()
            .build()
            .map_err(|e| format!("sink runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("sink bind: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("sink address: {e}"))?
            .port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::Json(serde_json::json!({ "ok": true }))
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            received,
            _runtime: runtime,
        })
    }

    /// Requests received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}
