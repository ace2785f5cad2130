//! Time, injected so that runs can be simulated: the executor reads the time and sleeps
//! (backoffs kept in process, heartbeats, call timeouts, `drain`) only through a [`Clock`].

use airlock_store::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// A source of the current time in milliseconds since the epoch, and of sleeps measured
/// by that time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
    /// Completes once `duration` has passed by this clock. By default it waits on
    /// tokio's timer (a clock that only reads another time, a pinned one in a test, still
    /// waits in real time); a simulated clock moves its own time instead of waiting.
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::timer(duration)
    }
}

pin_project_lite::pin_project! {
    /// What [`Clock::sleep`] answers: tokio's timer held in place (no allocation, so a
    /// call bounded by the system clock costs what `tokio::time::timeout` costs), or
    /// another clock's future, boxed.
    #[must_use = "a sleep does nothing unless awaited"]
    pub struct Sleep {
        #[pin]
        inner: SleepInner,
    }
}

pin_project_lite::pin_project! {
    #[project = SleepProjection]
    enum SleepInner {
        Timer { #[pin] timer: tokio::time::Sleep },
        Other { future: Pin<Box<dyn Future<Output = ()> + Send>> },
    }
}

impl Sleep {
    /// Tokio's timer: completes after `duration` of real time.
    pub fn timer(duration: Duration) -> Self {
        Sleep {
            inner: SleepInner::Timer {
                timer: tokio::time::sleep(duration),
            },
        }
    }

    /// Any future, as the sleep of a clock that is not the system's.
    pub fn from_future(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Sleep {
            inner: SleepInner::Other {
                future: Box::pin(future),
            },
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().inner.project() {
            SleepProjection::Timer { timer } => timer.poll(cx),
            SleepProjection::Other { future } => future.as_mut().poll(cx),
        }
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Timestamp)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::timer(duration)
    }
}

/// A clock whose time moves only when it is told to ([`SimulatedClock::advance`],
/// [`SimulatedClock::advance_to`]) or when something sleeps on it: a sleep moves the time
/// to its own end at once and completes, so a simulation never waits for real time, and a
/// backoff, a call timeout or a lease running out happens at an exact virtual instant.
///
/// That makes runs repeatable as long as one task at a time sleeps on it (a simulation
/// that processes one run at a time): two tasks sleeping side by side would each move
/// the time for both. Time never moves backwards.
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    now: Arc<AtomicI64>,
}

impl SimulatedClock {
    /// A clock that reads `start` until it is moved.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start)),
        }
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Moves the time to `to`, unless it is already later.
    pub fn advance_to(&self, to: Timestamp) {
        self.now.fetch_max(to, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        // The end is fixed when the sleep is made, as a timer's is: a call bounded by a
        // timeout ends at the call's start plus the timeout, whatever happened meanwhile.
        let end = self
            .now()
            .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let now = self.now.clone();
        Sleep::from_future(async move {
            now.fetch_max(end, Ordering::SeqCst);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulated_sleep_moves_the_time_to_its_end_and_never_back() {
        let clock = SimulatedClock::new(1_000);
        let sleep = clock.sleep(Duration::from_millis(500));
        clock.advance(Duration::from_millis(100));
        sleep.await;
        assert_eq!(
            clock.now(),
            1_500,
            "the end was fixed when the sleep was made"
        );
        // A sleep whose end has passed completes without moving the time.
        let early = clock.sleep(Duration::from_millis(200));
        clock.advance_to(2_000);
        early.await;
        assert_eq!(clock.now(), 2_000);
        clock.advance_to(1_900);
        assert_eq!(clock.now(), 2_000, "time never moves backwards");
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_for_real() {
        let started = std::time::Instant::now();
        SystemClock.sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
