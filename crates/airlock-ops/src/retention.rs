//! Retention: the runs accepted and finished before a cutoff go, with their journals, so
//! that a store's size and the cost of its writes stay flat however long it runs. One
//! pass, the same for `airlock runs prune` and for `airlock serve --retain`.

use super::{OpsError, audit};
use airlock_store::{Store, Timestamp};
use serde_json::json;

/// Runs deleted per write: small enough that a serving process's own writes never wait
/// long behind retention, large enough that a year of history goes in minutes.
const BATCH: usize = 1_000;

/// The shortest retention accepted. A run's webhook idempotency key goes with it, so a
/// delivery retried after its run was pruned would run again; senders retry for hours.
pub const SHORTEST_MS: i64 = 60 * 60 * 1_000;

/// Why a retention shorter than [`SHORTEST_MS`] is refused, for the one who asked.
pub const SHORTEST_WHY: &str = "a run's webhook idempotency key goes with it, so a shorter \
     retention would let a sender's retry run twice; keep runs longer than your senders retry \
     (days, say 30d)";

/// Deletes the runs of `environment` (of every environment when `None`) accepted and
/// finished before `before`, batch by batch, and audits the pass as `actor` when it
/// deleted any (or always, when `audit_empty`: a person who asked hears of it in the log
/// too). Answers how many went.
pub async fn prune(
    store: &dyn Store,
    before: Timestamp,
    environment: Option<&str>,
    actor: &str,
    now: Timestamp,
    audit_empty: bool,
) -> Result<u64, OpsError> {
    let mut pruned = 0u64;
    loop {
        let batch = store.prune_runs(before, environment, BATCH).await?;
        if batch == 0 {
            break;
        }
        pruned += batch;
        // Let the process's other work (its own writes among them) go between batches.
        tokio::task::yield_now().await;
    }
    if pruned > 0 || audit_empty {
        audit(
            store,
            now,
            actor,
            "runs.prune",
            environment,
            environment.unwrap_or("every environment"),
            json!({ "before": airlock_core::time::rfc3339(before), "pruned": pruned }),
        )
        .await?;
    }
    Ok(pruned)
}
