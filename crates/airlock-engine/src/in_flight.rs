//! The runs an engine is executing, wherever they were started: accepted from a webhook
//! ([`crate::Engine::admit`], [`crate::Engine::go_on`]), claimed by the worker loop, or
//! claimed alone ([`crate::Engine::process_run`]). A process that stops waits on this
//! (within its grace period), so a run it executes is not cut off with the runtime and
//! left to wait out its lease; and the engine never takes over a run it executes itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The runs in flight, by id, each with how many tasks of this engine hold it.
#[derive(Debug)]
pub(crate) struct InFlight {
    runs: Mutex<HashMap<String, usize>>,
    /// How many runs are in flight, for those who wait for none.
    count: tokio::sync::watch::Sender<usize>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            count: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl InFlight {
    /// Marks `run` in flight until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>, run: &str) -> Running {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        *runs.entry(run.to_owned()).or_default() += 1;
        self.count.send_replace(runs.len());
        Running {
            in_flight: Arc::clone(self),
            run: run.to_owned(),
        }
    }

    /// How many runs are in flight.
    pub(crate) fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Whether `run` is in flight here.
    pub(crate) fn holds(&self, run: &str) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(run)
    }

    /// Completes once no run is in flight.
    pub(crate) async fn idle(&self) {
        let mut count = self.count.subscribe();
        // The sender lives as long as `self`, so this only ends with zero.
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// A run held in flight; dropping it (the run finished, was released, or its task ended
/// in any way) lets it go.
#[derive(Debug)]
pub(crate) struct Running {
    in_flight: Arc<InFlight>,
    run: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut runs = self
            .in_flight
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(holders) = runs.get_mut(&self.run) {
            *holders -= 1;
            if *holders == 0 {
                runs.remove(&self.run);
            }
        }
        self.in_flight.count.send_replace(runs.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_holder_of_every_run() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.enter("a");
        let a_again = in_flight.enter("a");
        let b = in_flight.enter("b");
        assert_eq!(in_flight.len(), 2, "runs, not holders");
        drop(a);
        assert!(in_flight.holds("a"), "another task still holds it");
        drop(b);
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a is still in flight");
        drop(a_again);
        waiting.await.unwrap();
        assert_eq!(in_flight.len(), 0);
        assert!(!in_flight.holds("a"));
    }
}
