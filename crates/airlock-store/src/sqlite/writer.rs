//! A SQLite group-commit writer: one thread owns the write connection and commits jobs in
//! groups. The store's SQLite backend and the `sql` connector both write through it.
//!
//! A job is a closure over the connection, sent over a channel with a oneshot for its
//! answer. The thread waits for one job, takes every other job already pending (up to a
//! batch limit), and runs them all in one `BEGIN IMMEDIATE` transaction, each inside its own
//! savepoint: a job that fails (or panics) is rolled back to its savepoint and leaves the
//! others alone. One `COMMIT` — one fsync — then makes the whole batch durable, and only then
//! are the answers sent, so no caller hears "done" before its write is on disk. Under load,
//! jobs pile up while the previous batch syncs, so the batches grow by themselves and the
//! cost of the sync is shared.
//!
//! If the batch fails as a whole (the `COMMIT` fails, SQLite abandons the transaction
//! midway), every caller of that batch hears the batch's failure, even one whose own work
//! failed: its answer may rest on a write of the same batch that is now undone.
//!
//! Besides that:
//! - the connection is given ready ([`Writer::start`]) or opened on the first batch and
//!   again after an open failed ([`Writer::start_lazy`]);
//! - a [`Job::solo`] job runs alone in autocommit mode (statements SQLite refuses inside a
//!   transaction); one that leaves a transaction open is rolled back and refused;
//! - a [`Job::timeout`] bounds the caller's wait and is SQLite's busy timeout while its
//!   batch runs;
//! - a caller that gives up (its timeout ran out, or it dropped its future) has its job
//!   skipped if it is still queued, and interrupted if it is running — that job only,
//!   because the interrupt is sent under the job's state lock. A [`Job::detached`] job runs
//!   to the end whatever its caller does.
//!
//! The caller's error type says, through [`WriterError`], how the writer's own failures
//! read to it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, InterruptHandle};
use tokio::sync::oneshot;

/// How the writer's own failures read in the caller's error type.
pub trait WriterError: Send + Sized + 'static {
    /// One of the writer's own statements (`BEGIN IMMEDIATE`, `SAVEPOINT`, `COMMIT`…)
    /// failed. `context` says what it was doing; `timeout` is the longest wait of the
    /// batch's callers (SQLite's busy timeout), if any of them gave one.
    fn sqlite(context: &str, error: rusqlite::Error, timeout: Option<Duration>) -> Self;
    /// The writer failed a job for a reason of its own (see [`Fault`]).
    fn fault(fault: Fault) -> Self;
    /// The caller's [`Job::timeout`] ran out.
    fn timeout(after: Duration) -> Self;
    /// The same failure, for another caller whose job never ran (the batch could not start:
    /// the connection would not open, `BEGIN` failed).
    fn duplicate(&self) -> Self;
    /// The failure of a batch, as the answer of one of its callers whose job ran but was
    /// undone with the rest of the batch. By default the failure itself.
    fn batch_failure(&self) -> Self {
        self.duplicate()
    }
}

/// Why the writer failed a job on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The writer's thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Start(std::io::Error),
    /// The writer has stopped taking jobs.
    #[error("the writer has stopped")]
    Stopped,
    /// The writer dropped the job without an answer (its thread died).
    #[error("the writer dropped the job")]
    Dropped,
    /// SQLite abandoned the batch's transaction midway (an interrupt, a full disk, an I/O
    /// error): nothing of it was written.
    #[error("SQLite rolled the transaction back (nothing was written)")]
    Aborted,
    /// The job panicked; what it wrote was rolled back.
    #[error("the job panicked (what it wrote was rolled back)")]
    Panicked,
    /// A solo job left a transaction open; it was rolled back.
    #[error("the job left a transaction open; it was rolled back")]
    LeftOpen,
}

/// How to start a [`Writer`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// How many jobs one transaction takes at most.
    pub max_batch: usize,
    /// The writer thread's name.
    pub thread_name: String,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: 256,
            thread_name: "airlock-sqlite-writer".to_owned(),
        }
    }
}

/// What the writer has done so far (counters, for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions begun: one per batch, or more when SQLite abandoned one midway.
    pub transactions: u64,
    /// Solo jobs run, each alone outside a transaction.
    pub solo: u64,
    /// Jobs run (solo or not).
    pub ran: u64,
    /// Jobs skipped because their caller had given up while they were queued.
    pub skipped: u64,
}

/// One job for the writer: `work` on the connection, and how to run it.
#[must_use = "a job does nothing until it is given to `Writer::run`"]
pub struct Job<F> {
    work: F,
    solo: bool,
    timeout: Option<Duration>,
    detached: bool,
}

impl<F> Job<F> {
    /// A job that runs in the next batch, inside its own savepoint.
    pub fn new(work: F) -> Self {
        Job {
            work,
            solo: false,
            timeout: None,
            detached: false,
        }
    }

    /// With `solo`, the job runs alone in autocommit mode, outside any transaction (for
    /// statements SQLite refuses inside one: `PRAGMA`, `VACUUM`, `ATTACH`, `BEGIN`…). If it
    /// leaves a transaction open, that is rolled back and the job fails with
    /// [`Fault::LeftOpen`].
    pub fn solo(mut self, solo: bool) -> Self {
        self.solo = solo;
        self
    }

    /// The caller waits `limit` at most, then hears [`WriterError::timeout`]: the job is
    /// skipped if it is still queued and interrupted if it is running. While its batch
    /// runs, SQLite's busy timeout is the longest limit of the batch.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The job runs (to the end) even if its caller drops the future that waits for it.
    /// Without this, a dropped caller's job is skipped while queued and interrupted while
    /// running.
    pub fn detached(mut self) -> Self {
        self.detached = true;
        self
    }
}

/// The handle on the writer thread. Dropping it lets the thread finish what was sent
/// (jobs whose callers gave up are skipped), close the connection and stop; the drop waits
/// for that.
pub struct Writer<E> {
    sender: Option<mpsc::Sender<Box<dyn Request<E>>>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl<E> std::fmt::Debug for Writer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

/// What the handle and the thread share.
#[derive(Default)]
struct Shared {
    /// Interrupts the statement running on the connection (set once it is open).
    interrupt: Mutex<Option<InterruptHandle>>,
    transactions: AtomicU64,
    solo: AtomicU64,
    ran: AtomicU64,
    skipped: AtomicU64,
}

impl Shared {
    fn stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            solo: self.solo.load(Ordering::Relaxed),
            ran: self.ran.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Opens the connection, on the writer thread.
type Opener<E> = Box<dyn FnMut() -> Result<Connection, E> + Send>;

impl<E: WriterError> Writer<E> {
    /// Starts the thread that owns `conn`, already open and set up.
    pub fn start(conn: Connection, options: WriterOptions) -> Result<Writer<E>, E> {
        let shared = Arc::new(Shared::default());
        *lock(&shared.interrupt) = Some(conn.get_interrupt_handle());
        Writer::spawn(Some(conn), None, shared, options)
    }

    /// Starts the thread, which opens its connection with `open` on the first batch, and
    /// again on the next batch after an open failed (that batch's callers hear the error).
    pub fn start_lazy(
        open: impl FnMut() -> Result<Connection, E> + Send + 'static,
        options: WriterOptions,
    ) -> Result<Writer<E>, E> {
        let shared = Arc::new(Shared::default());
        Writer::spawn(None, Some(Box::new(open)), shared, options)
    }

    fn spawn(
        conn: Option<Connection>,
        open: Option<Opener<E>>,
        shared: Arc<Shared>,
        options: WriterOptions,
    ) -> Result<Writer<E>, E> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Request<E>>>();
        let thread = WriterThread {
            conn,
            open,
            busy_timeout: None,
            shared: Arc::clone(&shared),
            max_batch: options.max_batch.max(1),
        };
        let thread = std::thread::Builder::new()
            .name(options.thread_name)
            .spawn(move || thread.serve(receiver))
            .map_err(|e| E::fault(Fault::Start(e)))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            shared,
        })
    }

    /// Runs `job` and returns its result once its batch is committed (or, for a solo job,
    /// once it ran).
    pub async fn run<T, F>(&self, job: Job<F>) -> Result<T, E>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let Job {
            work,
            solo,
            timeout,
            detached,
        } = job;
        let state = Arc::new(Mutex::new(JobState::Queued));
        let (reply, answer) = oneshot::channel();
        let request = Box::new(Queued {
            work,
            solo,
            timeout,
            state: Arc::clone(&state),
            reply,
        });
        self.sender
            .as_ref()
            .ok_or_else(|| E::fault(Fault::Stopped))?
            .send(request)
            .map_err(|_| E::fault(Fault::Stopped))?;
        let mut give_up = GiveUp {
            state: &state,
            interrupt: &self.shared.interrupt,
            armed: !detached,
        };
        let answer = match timeout {
            None => answer.await,
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    give_up.armed = false;
                    give_up_on(&state, &self.shared.interrupt);
                    return Err(E::timeout(limit));
                }
            },
        };
        give_up.armed = false;
        answer.map_err(|_| E::fault(Fault::Dropped))?
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }
}

impl<E> Drop for Writer<E> {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where one job is, so that a caller giving up interrupts that job and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Queued,
    Running,
    Cancelled,
    Done,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The caller gave up on its job: skip it if it is queued, interrupt it if it is running.
fn give_up_on(state: &Mutex<JobState>, interrupt: &Mutex<Option<InterruptHandle>>) {
    let mut state = lock(state);
    match *state {
        JobState::Queued => *state = JobState::Cancelled,
        JobState::Running => {
            // Under the job's lock: the job cannot finish and let another start in between,
            // so the interrupt reaches this job only.
            if let Some(handle) = lock(interrupt).as_ref() {
                handle.interrupt();
            }
        }
        JobState::Cancelled | JobState::Done => {}
    }
}

/// Gives up on the job when the caller's future is dropped before its answer came.
struct GiveUp<'a> {
    state: &'a Mutex<JobState>,
    interrupt: &'a Mutex<Option<InterruptHandle>>,
    armed: bool,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        if self.armed {
            give_up_on(self.state, self.interrupt);
        }
    }
}

/// A job waiting for the writer thread.
trait Request<E>: Send {
    fn solo(&self) -> bool;
    fn timeout(&self) -> Option<Duration>;
    /// Whether its caller gave up while it was queued.
    fn cancelled(&self) -> bool;
    /// Marks the job running; false when its caller already gave up (then it is skipped).
    fn start(&self) -> bool;
    /// Runs the job on the connection (a panic is caught and is its failure).
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Pending<E>>;
    /// Answers without running it.
    fn fail(self: Box<Self>, error: E);
}

/// A job that ran, waiting for its transaction to commit.
trait Pending<E>: Send {
    /// Whether its work succeeded (and so is kept).
    fn succeeded(&self) -> bool;
    /// Sends the answer: its own result, or (for every job of a failed batch) the batch's
    /// failure.
    fn finish(self: Box<Self>, batch_failure: Option<&E>);
    /// Sends `error` instead of its own result.
    fn refuse(self: Box<Self>, error: E);
}

struct Queued<T, F, E> {
    work: F,
    solo: bool,
    timeout: Option<Duration>,
    state: Arc<Mutex<JobState>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, F, E> Request<E> for Queued<T, F, E>
where
    T: Send + 'static,
    E: WriterError,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    fn solo(&self) -> bool {
        self.solo
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn cancelled(&self) -> bool {
        *lock(&self.state) == JobState::Cancelled
    }

    fn start(&self) -> bool {
        let mut state = lock(&self.state);
        if *state == JobState::Cancelled {
            return false;
        }
        *state = JobState::Running;
        true
    }

    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Pending<E>> {
        let Queued {
            work, state, reply, ..
        } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(E::fault(Fault::Panicked)));
        // Under the job's lock: a caller that saw `Running` has interrupted this job, not
        // the next statement.
        *lock(&state) = JobState::Done;
        Box::new(Ran { result, reply })
    }

    fn fail(self: Box<Self>, error: E) {
        *lock(&self.state) = JobState::Done;
        // The caller may have gone away; nothing to do then.
        let _ = self.reply.send(Err(error));
    }
}

struct Ran<T, E> {
    result: Result<T, E>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T: Send + 'static, E: WriterError> Pending<E> for Ran<T, E> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn finish(self: Box<Self>, batch_failure: Option<&E>) {
        let result = match batch_failure {
            // Even a job that failed on its own hears of the batch's failure: its answer
            // may rest on a write of the same batch that is now undone.
            Some(failure) => Err(failure.batch_failure()),
            None => self.result,
        };
        let _ = self.reply.send(result);
    }

    fn refuse(self: Box<Self>, error: E) {
        let _ = self.reply.send(Err(error));
    }
}

/// What the writer thread owns.
struct WriterThread<E> {
    conn: Option<Connection>,
    open: Option<Opener<E>>,
    /// The busy timeout last set on `conn`.
    busy_timeout: Option<Duration>,
    shared: Arc<Shared>,
    max_batch: usize,
}

impl<E: WriterError> WriterThread<E> {
    fn serve(mut self, receiver: mpsc::Receiver<Box<dyn Request<E>>>) {
        let mut batch: Vec<Box<dyn Request<E>>> = Vec::with_capacity(self.max_batch);
        // A solo job met while gathering a batch: it runs after that batch.
        let mut waiting: Option<Box<dyn Request<E>>> = None;
        loop {
            let first = match waiting.take() {
                Some(job) => job,
                None => match receiver.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            if first.solo() {
                self.run_solo(first);
                continue;
            }
            batch.push(first);
            while batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(job) if job.solo() => {
                        waiting = Some(job);
                        break;
                    }
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch);
        }
    }

    /// The connection, opened if needed.
    fn open(&mut self) -> Result<(), E> {
        if self.conn.is_some() {
            return Ok(());
        }
        let open = self.open.as_mut().ok_or_else(|| E::fault(Fault::Stopped))?;
        let conn = open()?;
        *lock(&self.shared.interrupt) = Some(conn.get_interrupt_handle());
        self.conn = Some(conn);
        self.busy_timeout = None;
        Ok(())
    }

    /// Waiting for a lock held by another connection counts against the callers' timeout.
    fn set_busy_timeout(&mut self, timeout: Option<Duration>) {
        if let Some(timeout) = timeout
            && self.busy_timeout != Some(timeout)
            && let Some(conn) = &self.conn
            && conn.busy_timeout(timeout).is_ok()
        {
            self.busy_timeout = Some(timeout);
        }
    }

    /// A job SQLite runs only outside a transaction: alone, in autocommit mode.
    fn run_solo(&mut self, job: Box<dyn Request<E>>) {
        if job.cancelled() {
            Shared::count(&self.shared.skipped, 1);
            return;
        }
        if let Err(e) = self.open() {
            job.fail(e);
            return;
        }
        self.set_busy_timeout(job.timeout());
        let Some(conn) = &self.conn else { return };
        if !job.start() {
            Shared::count(&self.shared.skipped, 1);
            return;
        }
        let done = job.run(conn);
        Shared::count(&self.shared.solo, 1);
        Shared::count(&self.shared.ran, 1);
        if conn.is_autocommit() {
            done.finish(None);
        } else {
            let _ = conn.execute_batch("ROLLBACK");
            done.refuse(E::fault(Fault::LeftOpen));
        }
    }

    /// Runs jobs in one transaction, each in its own savepoint, and answers them after the
    /// one `COMMIT`. If SQLite abandons the transaction midway, the jobs run so far hear it
    /// and the rest go on in a new one.
    fn run_batch(&mut self, batch: &mut Vec<Box<dyn Request<E>>>) {
        let queued = batch.len();
        // Callers that gave up while queued cost nothing, not even an empty transaction.
        batch.retain(|job| !job.cancelled());
        // Counted before any answer is sent, so that a caller who has its answer sees it.
        Shared::count(&self.shared.skipped, (queued - batch.len()) as u64);
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.open() {
            for job in batch.drain(..) {
                job.fail(e.duplicate());
            }
            return;
        }
        let timeout = batch.iter().filter_map(|job| job.timeout()).max();
        self.set_busy_timeout(timeout);
        let Some(conn) = &self.conn else { return };
        let shared = &self.shared;
        let sql_error = |context: &str, e| E::sqlite(context, e, timeout);
        let mut jobs = batch.drain(..).peekable();
        let mut pending: Vec<Box<dyn Pending<E>>> = Vec::new();
        while jobs.peek().is_some() {
            Shared::count(&shared.transactions, 1);
            if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
                let failure = sql_error("cannot begin a write", e);
                for job in jobs.by_ref() {
                    job.fail(failure.duplicate());
                }
                break;
            }
            let mut failure = None;
            for job in jobs.by_ref() {
                if !job.start() {
                    Shared::count(&shared.skipped, 1);
                    continue;
                }
                if let Err(e) = exec(conn, "SAVEPOINT airlock_job") {
                    let error = sql_error("cannot open a savepoint", e);
                    job.fail(error.duplicate());
                    failure = Some(error);
                    break;
                }
                let done = job.run(conn);
                Shared::count(&shared.ran, 1);
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back: nothing of it is kept.
                    pending.push(done);
                    failure = Some(E::fault(Fault::Aborted));
                    break;
                }
                let closed = if done.succeeded() {
                    exec(conn, "RELEASE airlock_job")
                } else {
                    exec(conn, "ROLLBACK TO airlock_job")
                        .and_then(|()| exec(conn, "RELEASE airlock_job"))
                };
                pending.push(done);
                if let Err(e) = closed {
                    failure = Some(sql_error("cannot close a savepoint", e));
                    break;
                }
            }
            let failure = match failure {
                None => exec(conn, "COMMIT")
                    .err()
                    .map(|e| sql_error("cannot commit", e)),
                some => some,
            };
            if failure.is_some() && !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            for done in pending.drain(..) {
                done.finish(failure.as_ref());
            }
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// The caller's error type in these tests: which of the writer's paths produced it.
    #[derive(Debug)]
    enum TestError {
        Sqlite(String),
        Fault(String),
        Timeout(Duration),
        Work(String),
        Batch(Box<TestError>),
    }

    impl WriterError for TestError {
        fn sqlite(context: &str, error: rusqlite::Error, _: Option<Duration>) -> Self {
            TestError::Sqlite(format!("{context}: {error}"))
        }
        fn fault(fault: Fault) -> Self {
            TestError::Fault(fault.to_string())
        }
        fn timeout(after: Duration) -> Self {
            TestError::Timeout(after)
        }
        fn duplicate(&self) -> Self {
            match self {
                TestError::Sqlite(m) => TestError::Sqlite(m.clone()),
                TestError::Fault(m) => TestError::Fault(m.clone()),
                TestError::Timeout(t) => TestError::Timeout(*t),
                TestError::Work(m) => TestError::Work(m.clone()),
                TestError::Batch(e) => TestError::Batch(Box::new(e.duplicate())),
            }
        }
        fn batch_failure(&self) -> Self {
            TestError::Batch(Box::new(self.duplicate()))
        }
    }

    type Result<T, E = TestError> = std::result::Result<T, E>;

    fn work(e: rusqlite::Error) -> TestError {
        TestError::Work(e.to_string())
    }

    fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY);",
        )?;
        Ok(conn)
    }

    fn writer_with(max_batch: usize) -> (tempfile::TempDir, Arc<Writer<TestError>>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let conn = open(&dir.path().join("w.db")).expect("open");
        let options = WriterOptions {
            max_batch,
            thread_name: "test-writer".to_owned(),
        };
        let writer = Writer::start(conn, options).expect("start");
        (dir, Arc::new(writer))
    }

    fn writer() -> (tempfile::TempDir, Arc<Writer<TestError>>) {
        writer_with(64)
    }

    fn insert(conn: &Connection, x: i64) -> Result<()> {
        conn.execute("INSERT INTO t (x) VALUES (?1)", [x])
            .map(|_| ())
            .map_err(work)
    }

    fn rows(conn: &Connection) -> Result<Vec<i64>> {
        let mut statement = conn.prepare("SELECT x FROM t ORDER BY x").map_err(work)?;
        statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
            .map_err(work)
    }

    /// Keeps the writer busy for `busy`, so that what is sent meanwhile piles up.
    fn occupy(
        writer: &Arc<Writer<TestError>>,
        busy: Duration,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let writer = Arc::clone(writer);
        tokio::spawn(async move {
            writer
                .run(Job::new(move |_: &Connection| {
                    std::thread::sleep(busy);
                    Ok(())
                }))
                .await
        })
    }

    /// Waits until the writer has started `n` jobs or skipped them.
    async fn settle(writer: &Writer<TestError>, n: u64) {
        for _ in 0..200 {
            let stats = writer.stats();
            if stats.ran + stats.skipped >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the writer did not get through {n} jobs: {:?}",
            writer.stats()
        );
    }

    /// A job that fails after writing, and one that panics, are undone alone: the others
    /// of their batch are kept and see neither.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_or_panicking_job_is_undone_alone_within_its_batch() {
        let (_dir, writer) = writer();
        let busy = occupy(&writer, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (kept, failed, panicked, seen) = tokio::join!(
            writer.run(Job::new(|conn: &Connection| {
                assert!(
                    !conn.is_autocommit(),
                    "a job runs inside the batch's transaction"
                );
                insert(conn, 1)
            })),
            writer.run(Job::new(|conn: &Connection| {
                insert(conn, 2)?;
                Err::<(), _>(TestError::Work("after writing".to_owned()))
            })),
            writer.run(Job::new(|conn: &Connection| -> Result<()> {
                insert(conn, 3)?;
                panic!("a bug in a job");
            })),
            writer.run(Job::new(rows)),
        );
        busy.await.expect("busy task").expect("busy job");
        kept.expect("the first job is kept");
        assert!(matches!(failed, Err(TestError::Work(_))), "{failed:?}");
        assert!(matches!(panicked, Err(TestError::Fault(_))), "{panicked:?}");
        assert_eq!(
            seen.expect("read in the batch"),
            vec![1],
            "2 and 3 were rolled back alone"
        );
        assert_eq!(
            writer.stats().transactions,
            2,
            "the four jobs shared one transaction"
        );
        let after = writer.run(Job::new(rows)).await.expect("the writer serves");
        assert_eq!(after, vec![1], "only the successful job was committed");
    }

    /// Jobs sent while the writer is busy share one transaction, up to the batch limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_piled_up_while_busy_share_one_batch() {
        for (max_batch, transactions) in [(64, 1), (4, 3)] {
            let (_dir, writer) = writer_with(max_batch);
            let busy = occupy(&writer, Duration::from_millis(200));
            tokio::time::sleep(Duration::from_millis(50)).await;
            let calls: Vec<_> = (0..10)
                .map(|x| writer.run(Job::new(move |conn: &Connection| insert(conn, x))))
                .collect();
            for result in futures_join(calls).await {
                result.expect("insert");
            }
            busy.await.expect("busy task").expect("busy job");
            let stats = writer.stats();
            assert_eq!(
                stats.transactions,
                1 + transactions,
                "max_batch {max_batch}: {stats:?}"
            );
            assert_eq!(stats.ran, 11);
            let all = writer.run(Job::new(rows)).await.expect("rows");
            assert_eq!(all, (0..10).collect::<Vec<_>>());
        }
    }

    /// Awaits every future, concurrently, in order.
    async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut ready = true;
            for (future, slot) in pinned.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(value) => *slot = Some(value),
                        std::task::Poll::Pending => ready = false,
                    }
                }
            }
            if ready {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        out.into_iter().flatten().collect()
    }

    /// A caller that drops its future while its job is queued has the job skipped; a
    /// detached job runs all the same; the writer goes on serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_caller_is_skipped_and_the_writer_goes_on() {
        let (_dir, writer) = writer();
        let busy = occupy(&writer, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dropped = tokio::time::timeout(
            Duration::from_millis(20),
            writer.run(Job::new(|conn: &Connection| insert(conn, 1))),
        )
        .await;
        assert!(dropped.is_err(), "the caller stopped waiting");
        let detached = tokio::time::timeout(
            Duration::from_millis(20),
            writer.run(Job::new(|conn: &Connection| insert(conn, 2)).detached()),
        )
        .await;
        assert!(detached.is_err(), "this caller stopped waiting too");
        busy.await.expect("busy task").expect("busy job");
        writer
            .run(Job::new(|conn: &Connection| insert(conn, 3)))
            .await
            .expect("the writer still serves");
        settle(&writer, 4).await;
        let stats = writer.stats();
        assert_eq!((stats.ran, stats.skipped), (3, 1), "{stats:?}");
        let all = writer.run(Job::new(rows)).await.expect("rows");
        assert_eq!(
            all,
            vec![2, 3],
            "the dropped job never ran; the detached one did"
        );
    }

    /// A solo job runs outside a transaction; one that leaves a transaction open has it
    /// rolled back and is refused, and the writer goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_solo_job_that_leaves_a_transaction_open_is_rolled_back_and_refused() {
        let (_dir, writer) = writer();
        let mode = writer
            .run(
                Job::new(|conn: &Connection| {
                    assert!(
                        conn.is_autocommit(),
                        "a solo job runs outside a transaction"
                    );
                    conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
                        .map_err(work)
                })
                .solo(true),
            )
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        let left_open = writer
            .run(
                Job::new(|conn: &Connection| {
                    conn.execute_batch("BEGIN; INSERT INTO t (x) VALUES (1);")
                        .map_err(work)
                })
                .solo(true),
            )
            .await;
        assert!(
            matches!(&left_open, Err(TestError::Fault(m)) if m.contains("transaction open")),
            "{left_open:?}"
        );
        writer
            .run(Job::new(|conn: &Connection| insert(conn, 2)))
            .await
            .expect("the writer still serves");
        let all = writer.run(Job::new(rows)).await.expect("rows");
        assert_eq!(all, vec![2], "the solo job's write was rolled back");
        assert_eq!(writer.stats().solo, 2);
    }

    /// A job whose caller's timeout runs out while it runs is interrupted; the job queued
    /// behind it is not, and one whose timeout ran out while queued is skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeout_interrupts_only_the_running_job() {
        let (_dir, writer) = writer();
        let endless = writer.run(
            Job::new(|conn: &Connection| {
                conn.query_row(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
                     SELECT count(*) FROM c",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .map_err(work)
            })
            .timeout(Duration::from_millis(300)),
        );
        let short = writer
            .run(Job::new(|conn: &Connection| insert(conn, 1)).timeout(Duration::from_millis(100)));
        let next = writer.run(
            Job::new(|conn: &Connection| {
                // Long enough that an interrupt meant for the endless job would land here.
                std::thread::sleep(Duration::from_millis(50));
                insert(conn, 2)?;
                rows(conn)
            })
            .timeout(Duration::from_secs(10)),
        );
        let (endless, short, next) = tokio::join!(endless, short, next);
        assert!(
            matches!(endless, Err(TestError::Timeout(t)) if t == Duration::from_millis(300)),
            "{endless:?}"
        );
        assert!(matches!(short, Err(TestError::Timeout(_))), "{short:?}");
        assert_eq!(next.expect("the next job is not interrupted"), vec![2]);
        let stats = writer.stats();
        assert_eq!((stats.ran, stats.skipped), (2, 1), "{stats:?}");
    }

    /// A lazy writer opens its connection on the first batch, and again on the next batch
    /// after an open failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_writer_opens_on_first_use_and_again_after_a_failure() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("lazy.db");
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&opens);
        let writer: Writer<TestError> = Writer::start_lazy(
            move || {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(TestError::Sqlite("the disk is not there yet".to_owned()));
                }
                open(&path).map_err(|e| TestError::Sqlite(e.to_string()))
            },
            WriterOptions::default(),
        )
        .expect("start");
        assert_eq!(
            opens.load(Ordering::SeqCst),
            0,
            "nothing is opened up front"
        );
        let first = writer
            .run(Job::new(|conn: &Connection| insert(conn, 1)))
            .await;
        assert!(matches!(first, Err(TestError::Sqlite(_))), "{first:?}");
        writer
            .run(Job::new(|conn: &Connection| insert(conn, 2)))
            .await
            .expect("opened the second time");
        assert_eq!(writer.run(Job::new(rows)).await.expect("rows"), vec![2]);
        assert_eq!(opens.load(Ordering::SeqCst), 2);
    }

    /// When SQLite abandons the transaction midway, every job of it hears the batch's
    /// failure, even the one whose own work failed, and the writer goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_of_an_aborted_batch_hears_its_failure() {
        let (_dir, writer) = writer();
        let busy = occupy(&writer, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (first, own_failure, aborting) = tokio::join!(
            writer.run(Job::new(|conn: &Connection| insert(conn, 1))),
            writer.run(Job::new(|conn: &Connection| -> Result<()> {
                insert(conn, 2)?;
                Err(TestError::Work("its own failure".to_owned()))
            })),
            // Ends the transaction under the writer's feet, as an I/O error would.
            writer.run(Job::new(|conn: &Connection| {
                conn.execute_batch("ROLLBACK").map_err(work)
            })),
        );
        busy.await.expect("busy task").expect("busy job");
        for result in [first, own_failure, aborting] {
            assert!(
                matches!(&result, Err(TestError::Batch(inner)) if matches!(**inner, TestError::Fault(_))),
                "{result:?}"
            );
        }
        writer
            .run(Job::new(|conn: &Connection| insert(conn, 3)))
            .await
            .expect("the writer still serves");
        assert_eq!(writer.run(Job::new(rows)).await.expect("rows"), vec![3]);
    }
}
