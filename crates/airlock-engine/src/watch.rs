//! Other holders' leases, as this engine has watched them: how it tells a dead holder from
//! a live one without trusting the wall clock.
//!
//! A lease's end is written by its holder's wall clock. Comparing it with this process's
//! wall clock is what a clock step defeats: set an hour forward, every live lease reads
//! as ended an hour ago and its run would be taken from a holder in mid-call; set an hour
//! back, a dead holder's lease reads as live for an hour more. So the wall clock is not
//! asked. A holder renews its lease while it works (before each call, and by heartbeat
//! every third of its lease during one), and every renewal changes the stored lease
//! ([`airlock_store::Lease`]). The engine remembers each lease it sees and when, by its own
//! monotonic clock ([`crate::Clock::monotonic`]), it last saw it change; a lease unchanged
//! for as long as its holder promised (its lease length) belongs to a holder that has not
//! been heard of for that long, and only then is its run taken over
//! ([`airlock_store::Store::take_over`], which takes nothing if the lease moved meanwhile).
//!
//! The cost: a process that has just started has watched nothing, so it takes over a dead
//! holder's run a lease after it first sees it, not at once, however old the lease looks.

use airlock_store::Lease;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// What this engine has seen of other holders' leases.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    lease: Lease,
    /// When (by the monotonic clock) the lease was first seen as it is now.
    since: Duration,
}

impl Watch {
    /// Records `leases`, read at `elapsed` by the monotonic clock, and answers those not
    /// renewed for their holder's promise (`promise_ms` for a lease that records none).
    /// Leases of runs `ours` says this engine executes are not watched: their holder is
    /// here. With `complete` (the leases of every running run), a run no longer listed is
    /// forgotten.
    pub(crate) fn stale(
        &self,
        leases: Vec<Lease>,
        elapsed: Duration,
        promise_ms: i64,
        ours: impl Fn(&str) -> bool,
        complete: bool,
    ) -> Vec<Lease> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if complete {
            seen.retain(|run, _| leases.iter().any(|lease| lease.run == *run));
        }
        let mut stale = Vec::new();
        for lease in leases {
            if ours(&lease.run) {
                seen.remove(&lease.run);
                continue;
            }
            match seen.get_mut(&lease.run) {
                Some(watched) if watched.lease == lease => {
                    if elapsed.saturating_sub(watched.since) >= promise(&lease, promise_ms) {
                        stale.push(lease);
                    }
                }
                Some(watched) => {
                    *watched = Seen {
                        lease,
                        since: elapsed,
                    }
                }
                None => {
                    seen.insert(
                        lease.run.clone(),
                        Seen {
                            lease,
                            since: elapsed,
                        },
                    );
                }
            }
        }
        stale
    }

    /// How long after `elapsed` the lease of `run`, as last watched, would be stale: zero
    /// once it is, `None` when it is not watched.
    pub(crate) fn stale_in(
        &self,
        run: &str,
        elapsed: Duration,
        promise_ms: i64,
    ) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(run).map(|watched| {
            (watched.since + promise(&watched.lease, promise_ms)).saturating_sub(elapsed)
        })
    }

    /// Stops watching `run` (taken over, or tried).
    pub(crate) fn forget(&self, run: &str) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run);
    }
}

/// How long `lease`'s holder may go without renewing it.
fn promise(lease: &Lease, promise_ms: i64) -> Duration {
    let ms = lease.promised_ms.unwrap_or(promise_ms).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(run: &str, expires_at: i64) -> Lease {
        Lease {
            run: run.into(),
            owner: Some("w1".into()),
            token: 1,
            expires_at,
            promised_ms: Some(1_000),
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_lease_is_stale_only_after_its_promise_without_a_change_by_elapsed_time() {
        let watch = Watch::default();
        let stale = |leases: Vec<Lease>, at: u64| {
            watch
                .stale(leases, ms(at), 30_000, |_| false, true)
                .into_iter()
                .map(|l| l.run)
                .collect::<Vec<_>>()
        };
        // However far in the past its end reads, a lease first seen is not stale.
        assert!(stale(vec![lease("a", -3_600_000)], 0).is_empty());
        assert!(stale(vec![lease("a", -3_600_000)], 999).is_empty());
        assert_eq!(stale(vec![lease("a", -3_600_000)], 1_000), ["a"]);
        // A renewal, to any end (later, or earlier by a clock set back), starts over.
        assert!(stale(vec![lease("a", -7_200_000)], 1_500).is_empty());
        assert_eq!(watch.stale_in("a", ms(1_600), 30_000), Some(ms(900)));
        assert!(stale(vec![lease("a", -7_200_000)], 2_499).is_empty());
        assert_eq!(stale(vec![lease("a", -7_200_000)], 2_500), ["a"]);
        // A run no longer running is forgotten; one of this engine's own is never stale.
        assert!(stale(vec![], 3_000).is_empty());
        assert_eq!(watch.stale_in("a", ms(3_000), 30_000), None);
        let mine = watch.stale(vec![lease("b", 0)], ms(0), 30_000, |run| run == "b", true);
        let mine_later = watch.stale(
            vec![lease("b", 0)],
            ms(60_000),
            30_000,
            |run| run == "b",
            true,
        );
        assert!(mine.is_empty() && mine_later.is_empty());
        // Without a recorded promise, the caller's lease length stands for it.
        let unrecorded = Lease {
            promised_ms: None,
            ..lease("c", 0)
        };
        assert!(stale(vec![unrecorded.clone()], 0).is_empty());
        assert!(stale(vec![unrecorded.clone()], 29_999).is_empty());
        assert_eq!(stale(vec![unrecorded], 30_000), ["c"]);
    }
}
