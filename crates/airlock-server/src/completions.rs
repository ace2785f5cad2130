//! Synchronous webhook answers: a request waits for its run to finish in this process.

use airlock_store::{Run, RunStatus};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// How a run ended: what a synchronous answer is made of.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub run: String,
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
}

impl Outcome {
    /// The outcome of a finished run read from the store.
    pub fn of(run: Run) -> Outcome {
        Outcome {
            run: run.id,
            status: run.status,
            output: run.output,
            error: run.error,
        }
    }
}

/// Who waits for which run to finish. The engine's observer calls [`Completions::finished`].
#[derive(Default)]
pub(crate) struct Completions {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>,
}

impl Completions {
    /// Registers interest before the run can finish; the receiver gets its outcome.
    pub fn wait_for(&self, run: &str) -> oneshot::Receiver<Outcome> {
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

    /// A run finished: answer everyone waiting for it. The outcome is made only when
    /// someone waits.
    pub fn finished(&self, run: &str, outcome: impl FnOnce() -> Outcome) {
        let senders = match self.waiting.lock() {
            Ok(mut waiting) if !waiting.is_empty() => waiting.remove(run),
            _ => None,
        };
        let Some(mut senders) = senders else {
            return;
        };
        let Some(last) = senders.pop() else {
            return;
        };
        let outcome = outcome();
        for sender in senders {
            let _ = sender.send(outcome.clone());
        }
        let _ = last.send(outcome);
    }
}
