//! Synchronous webhook answers: a request waits for its run to finish in this process.

use airlock_store::Run;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Who waits for which run to finish. The engine's observer calls [`Completions::finished`].
#[derive(Default)]
pub(crate) struct Completions {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Run>>>>,
}

impl Completions {
    /// Registers interest before the run can finish; the receiver gets the finished run.
    pub fn wait_for(&self, run: &str) -> oneshot::Receiver<Run> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.entry(run.to_owned()).or_default().push(tx);
        }
        rx
    }

    /// Forgets a waiter that gave up.
    pub fn forget(&self, run: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(run);
        }
    }

    /// A run finished: answer everyone waiting for it.
    pub fn finished(&self, run: &Run) {
        let senders = match self.waiting.lock() {
            Ok(mut waiting) if !waiting.is_empty() => waiting.remove(&run.id),
            _ => None,
        };
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(run.clone());
        }
    }
}
