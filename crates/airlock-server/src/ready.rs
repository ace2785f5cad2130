//! Whether this process can accept work now: what `/readyz` answers.
//!
//! Ready means a delivery sent now would be accepted: the process is serving and not
//! stopping, and the store takes a write with the schema this build writes
//! ([`airlock_store::Store::probe_write`]). Asking the store whether it answers a read is
//! not enough: a full disk reads fine and refuses every delivery. The probe's answer is
//! kept for [`FRESH`], and one probe runs at a time, so that a load balancer asking
//! often (or many at once) costs at most one tiny write per second.

use airlock_store::Store;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

/// How long a probe's answer stands.
const FRESH: Duration = Duration::from_secs(1);
/// How long a probe may take before the store counts as not taking writes: a store that
/// hangs is as unready as one that refuses.
const PATIENCE: Duration = Duration::from_secs(2);

/// The last write probe: when, and whether the store took it.
#[derive(Default)]
pub(crate) struct WriteProbe {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl WriteProbe {
    /// Whether `store` takes writes: the last answer while it is fresh, else a new probe.
    /// Callers that arrive during a probe wait for it and share its answer.
    pub async fn takes_writes(&self, store: &dyn Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at.elapsed() < FRESH
        {
            return answer;
        }
        let answer = match tokio::time::timeout(PATIENCE, store.probe_write()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                // Logged here, not answered: `/readyz` needs no token, and a store's
                // error may name paths and hosts.
                tracing::warn!(error = %e, "not ready: the store refuses writes");
                false
            }
            Err(_) => {
                tracing::warn!(after = ?PATIENCE, "not ready: the store did not take a write in time");
                false
            }
        };
        *last = Some((Instant::now(), answer));
        answer
    }
}

/// `/readyz`'s answer, for a server and a worker alike: 200 while `serving` and the store
/// takes writes, else 503 saying which.
pub(crate) async fn answer(serving: bool, probe: &WriteProbe, store: &dyn Store) -> Response {
    if !serving {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping",
        )
            .into_response();
    }
    if probe.takes_writes(store).await {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store does not take writes",
        )
            .into_response()
    }
}
