//! `serve --retain D`: retention on its own, at start and then at a fixed interval. Safe
//! with several processes on one store: each pass deletes only finished runs, and on
//! PostgreSQL concurrent passes skip each other's rows.

use crate::App;
use airlock_ops::retention;
use std::sync::Arc;
use std::time::Duration;

pub(crate) async fn run(
    app: Arc<App>,
    retain: Duration,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = app.clock.now();
        match retention::prune(
            &*app.store,
            now.saturating_sub(retain_ms),
            None,
            "retention",
            now,
            false,
        )
        .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "retention deleted old finished runs"),
            Err(e) => tracing::warn!(error = %e, "retention could not run; it tries again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
