//! Waking idle workers: `LISTEN airlock_work` on a dedicated connection.
//!
//! A trigger on `runs` (see the schema) notifies the channel whenever a released run gets
//! a due time (queued, or waiting with a deadline), by any process. One task per store listens and counts notifications in a
//! generation number; [`WorkSignal::wait`] returns as soon as the generation moves past
//! what the last wait saw, or after `max`. Notifications are only a hint to look now: a
//! worker always claims with its own query, and sleeps at most `max` whatever happens, so
//! a lost notification costs latency, never work.
//!
//! The listener starts on the first wait (a CLI command that never waits never opens the
//! connection). When the connection drops, notifications sent meanwhile are lost, so every
//! reconnection counts as a notification; while it cannot connect, waits just sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{OnceCell, watch};
use tokio::task::AbortHandle;

/// The channel the schema's trigger notifies.
pub(super) const CHANNEL: &str = "airlock_work";

/// How long the listener waits before connecting again after a failure, at first and at
/// most (it doubles in between).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the listener task and the waiters share.
struct Shared {
    /// Rises with each notification (and each reconnection).
    generation: watch::Sender<u64>,
    /// Whether the listener is connected and listening now.
    listening: AtomicBool,
}

/// The store's side: starts the listener once, waits on it, stops it when dropped.
pub(super) struct WorkSignal {
    connect: PgConnectOptions,
    shared: Arc<Shared>,
    /// The highest generation a wait has returned on: a notification that arrived while
    /// nobody waited still ends the next wait at once, so it is not lost between a
    /// worker's empty claim and its wait.
    consumed: AtomicU64,
    listener: OnceCell<AbortHandle>,
}

impl WorkSignal {
    pub(super) fn new(connect: PgConnectOptions) -> WorkSignal {
        WorkSignal {
            connect,
            shared: Arc::new(Shared {
                generation: watch::Sender::new(0),
                listening: AtomicBool::new(false),
            }),
            consumed: AtomicU64::new(0),
            listener: OnceCell::new(),
        }
    }

    pub(super) fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::Acquire)
    }

    /// Waits for a notification newer than the last wait's, or `max`.
    pub(super) async fn wait(&self, max: Duration) {
        self.listener
            .get_or_init(|| async {
                let task = tokio::spawn(listen(self.connect.clone(), Arc::clone(&self.shared)));
                task.abort_handle()
            })
            .await;
        let mut changes = self.shared.generation.subscribe();
        let seen = *changes.borrow_and_update();
        if seen > self.consumed.load(Ordering::Acquire) {
            self.consumed.fetch_max(seen, Ordering::AcqRel);
            return;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_ok() {
                    let now = *changes.borrow_and_update();
                    self.consumed.fetch_max(now, Ordering::AcqRel);
                } else {
                    // The listener is gone (it never is while the store lives): sleep.
                    tokio::time::sleep(max).await;
                }
            }
            () = tokio::time::sleep(max) => {}
        }
    }
}

impl Drop for WorkSignal {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get() {
            task.abort();
        }
    }
}

fn bump(shared: &Shared) {
    shared.generation.send_modify(|generation| *generation += 1);
}

/// The listener task: connects, listens, counts notifications; reconnects with a backoff
/// when the connection fails. Runs until aborted.
async fn listen(connect: PgConnectOptions, shared: Arc<Shared>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connect_listener(&connect).await {
            Ok(mut listener) => {
                shared.listening.store(true, Ordering::Release);
                // Anything queued before (or while reconnecting) went unheard.
                bump(&shared);
                backoff = FIRST_BACKOFF;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => bump(&shared),
                        // The connection dropped and sqlx reconnected (and listens again):
                        // what was sent in between is lost.
                        Ok(None) => bump(&shared),
                        Err(_) => break,
                    }
                }
                shared.listening.store(false, Ordering::Release);
            }
            Err(_) => shared.listening.store(false, Ordering::Release),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_listener(connect: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool of one connection that never expires: PgListener reconnects through it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(connect.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
