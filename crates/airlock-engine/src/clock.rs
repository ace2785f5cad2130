//! Time, injected so that runs can be simulated: the executor reads the time and sleeps
//! (backoffs kept in process, heartbeats, call timeouts, `drain`) only through a [`Clock`].

use airlock_store::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// A source of the current time in milliseconds since the epoch, of time elapsed that
/// never steps, and of sleeps measured by the latter.
///
/// Two readings, because they answer two questions. [`Clock::now`] is the wall clock: what
/// is written down and compared across processes and restarts (a run's times, a sleep's
/// wake time, an approval's deadline, a cron tick); it jumps, forward or back, when the
/// system clock is set. [`Clock::monotonic`] only ever moves forward at the pace of real
/// time: what measures how long something took or has stayed quiet in this process (a
/// lease's holder not heard of, a drain's patience).
pub trait Clock: Send + Sync {
    /// Now, by the wall clock.
    fn now(&self) -> Timestamp;
    /// Time elapsed since an origin of the clock's own (fixed for the clock's life), which
    /// a change of the wall clock does not move. By default tokio's clock, the system's
    /// monotonic one.
    fn monotonic(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
        tokio::time::Instant::now().saturating_duration_since(origin)
    }
    /// Completes once `duration` has passed by [`Clock::monotonic`]. By default it waits
    /// on tokio's timer (a clock that only reads another time, a pinned one in a test,
    /// still waits in real time); a simulated clock moves its own time instead of waiting.
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
/// [`SimulatedClock::advance_to`]) or when something sleeps on it, and whose wall reading
/// can be set apart from its elapsed time ([`SimulatedClock::step`]), as an operator or
/// NTP sets a system clock.
///
/// Made by [`SimulatedClock::new`], a sleep moves the time to its own end at once and
/// completes, so a simulation never waits for real time, and a backoff, a call timeout or
/// a lease running out happens at an exact virtual instant. That makes runs repeatable as
/// long as one task at a time sleeps on it (a simulation that processes one run at a
/// time): two tasks sleeping side by side would each move the time for both.
///
/// Made by [`SimulatedClock::manual`], a sleep waits until the time has been moved past
/// its end, so tasks side by side (a call in flight and its heartbeat, a second worker)
/// move in the order the test moves the time.
///
/// Elapsed time never moves backwards; the wall reading moves with it, except when stepped.
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    inner: Arc<Simulated>,
}

#[derive(Debug)]
struct Simulated {
    /// The wall reading.
    now: AtomicI64,
    /// Elapsed time (ms), which only [`SimulatedClock::advance`], `advance_to` and sleeps move.
    elapsed: AtomicI64,
    /// Whether sleeps wait for the time to be moved (else they move it).
    manual: bool,
    /// The elapsed time, for manual sleeps waiting on it.
    moved: tokio::sync::watch::Sender<i64>,
}

impl SimulatedClock {
    /// A clock that reads `start` until it is moved; a sleep moves it to its own end.
    pub fn new(start: Timestamp) -> Self {
        Self::with(start, false)
    }

    /// A clock that reads `start` until it is moved; a sleep waits until it is moved to
    /// the sleep's end.
    pub fn manual(start: Timestamp) -> Self {
        Self::with(start, true)
    }

    fn with(start: Timestamp, manual: bool) -> Self {
        Self {
            inner: Arc::new(Simulated {
                now: AtomicI64::new(start),
                elapsed: AtomicI64::new(0),
                manual,
                moved: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// Moves the time forward by `by`: elapsed time and the wall reading alike.
    pub fn advance(&self, by: Duration) {
        self.move_elapsed_to(
            self.elapsed_ms()
                .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX)),
        );
    }

    /// Moves the wall reading to `to` (and elapsed time as far), unless it is already later.
    pub fn advance_to(&self, to: Timestamp) {
        let by = to.saturating_sub(self.now());
        if by > 0 {
            self.move_elapsed_to(self.elapsed_ms().saturating_add(by));
        }
    }

    /// Sets the wall reading `by` milliseconds forward (or back, when negative), as setting
    /// a system clock does: elapsed time does not move, and nothing sleeping wakes.
    pub fn step(&self, by: i64) {
        let _ = self
            .inner
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    fn elapsed_ms(&self) -> i64 {
        self.inner.elapsed.load(Ordering::SeqCst)
    }

    /// Moves elapsed time to `to`, if later, and the wall reading by as much.
    fn move_elapsed_to(&self, to: i64) {
        let before = self.inner.elapsed.fetch_max(to, Ordering::SeqCst);
        if to > before {
            self.inner.now.fetch_add(to - before, Ordering::SeqCst);
            self.inner.moved.send_replace(to);
        }
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        self.inner.now.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.elapsed_ms()).unwrap_or(0))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        // The end is fixed when the sleep is made, as a timer's is: a call bounded by a
        // timeout ends at the call's start plus the timeout, whatever happened meanwhile.
        let end = self
            .elapsed_ms()
            .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let clock = self.clone();
        if self.inner.manual {
            let mut moved = self.inner.moved.subscribe();
            Sleep::from_future(async move {
                // The sender lives in `clock`, held here: this only ends at `end`.
                let _ = moved.wait_for(|elapsed| *elapsed >= end).await;
                drop(clock);
            })
        } else {
            Sleep::from_future(async move { clock.move_elapsed_to(end) })
        }
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
        assert_eq!(clock.now(), 2_000, "advancing never moves backwards");
        assert_eq!(clock.monotonic(), Duration::from_millis(1_000));
    }

    #[tokio::test]
    async fn a_step_moves_the_wall_reading_and_not_the_elapsed_time() {
        let clock = SimulatedClock::new(10_000);
        clock.advance(Duration::from_millis(500));
        clock.step(-3_600_000);
        assert_eq!(
            clock.now(),
            10_500 - 3_600_000,
            "the wall reading went back"
        );
        assert_eq!(
            clock.monotonic(),
            Duration::from_millis(500),
            "elapsed did not"
        );
        clock.sleep(Duration::from_millis(100)).await;
        assert_eq!(clock.now(), 10_600 - 3_600_000, "both move on together");
        clock.step(7_200_000);
        assert_eq!(clock.monotonic(), Duration::from_millis(600));
    }

    #[tokio::test]
    async fn a_manual_sleep_waits_until_the_time_is_moved_past_its_end() {
        let clock = SimulatedClock::manual(0);
        let sleeping = tokio::spawn(clock.sleep(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(99));
        clock.step(3_600_000);
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished(), "neither 99 ms nor a step ends it");
        clock.advance(Duration::from_millis(1));
        sleeping.await.unwrap();
        assert_eq!(clock.now(), 3_600_100);
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_for_real() {
        let started = std::time::Instant::now();
        SystemClock.sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
