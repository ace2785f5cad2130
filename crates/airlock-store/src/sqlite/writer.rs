//! The writer: one thread owns the write connection and commits requests in groups.
//!
//! A request is a closure over the connection, sent over a channel with a oneshot for its
//! answer. The thread waits for one request, takes every other request already pending
//! (up to a batch limit), and runs them all in one `BEGIN IMMEDIATE` transaction, each inside
//! its own savepoint: a request that fails (a `Fenced` commit, a conflict) is rolled back to
//! its savepoint and leaves the others alone. One `COMMIT` — one fsync — then makes the whole
//! batch durable, and only then are the answers sent, so no caller hears "done" before its
//! write is on disk. Under load, requests pile up while the previous batch syncs, so the
//! batches grow by themselves and the cost of the sync is shared.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// A request waiting to run.
trait Request: Send {
    /// Runs the request on the connection, inside its savepoint.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Pending>;
    /// Answers without running: the batch could not start.
    fn fail(self: Box<Self>, error: Error);
}

/// A request that ran, waiting for its batch to commit.
trait Pending: Send {
    /// Whether its work succeeded (and so is to be kept).
    fn succeeded(&self) -> bool;
    /// Sends the answer: the request's own result, or the batch's failure.
    fn finish(self: Box<Self>, batch_failure: Option<&Error>);
}

struct Job<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Request for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Pending> {
        let Job { work, reply } = *self;
        Box::new(Done {
            result: work(conn),
            reply,
        })
    }

    fn fail(self: Box<Self>, error: Error) {
        // The caller may have gone away; nothing to do then.
        let _ = self.reply.send(Err(error));
    }
}

struct Done<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> Pending for Done<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn finish(self: Box<Self>, batch_failure: Option<&Error>) {
        let result = match batch_failure {
            // Even a request that failed on its own hears of the batch's failure: its answer
            // may rest on a write of the same batch that is now undone.
            Some(failure) => Err(copy_error(failure)),
            None => self.result,
        };
        let _ = self.reply.send(result);
    }
}

fn copy_error(error: &Error) -> Error {
    match error {
        Error::Backend(message) => Error::Backend(message.clone()),
        other => Error::Backend(other.to_string()),
    }
}

fn sql_error(context: &str, error: rusqlite::Error) -> Error {
    Error::Backend(format!("{context}: {error}"))
}

/// The handle on the writer thread. Dropping it lets the thread finish what was sent, close
/// the connection and stop; the drop waits for that.
pub(super) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread that owns `conn`.
    pub(super) fn start(conn: Connection, max_batch: usize) -> Result<Writer> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Request>>();
        let max_batch = max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("airlock-store-writer".to_owned())
            .spawn(move || serve(conn, receiver, max_batch))
            .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| Error::Backend("the store is closed".to_owned()))?;
        sender
            .send(Box::new(Job { work, reply }))
            .map_err(|_| Error::Backend("the store's writer has stopped".to_owned()))?;
        answer.await.map_err(|_| {
            Error::Backend("the store's writer dropped the request (it panicked)".to_owned())
        })?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(conn: Connection, receiver: mpsc::Receiver<Box<dyn Request>>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Request>> = Vec::with_capacity(max_batch);
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch.drain(..));
    }
}

/// Runs one batch. Normally one transaction; if SQLite abandons the transaction midway (a
/// full disk, an I/O error), what ran so far fails and the rest goes on in a new one.
fn run_batch(conn: &Connection, requests: impl Iterator<Item = Box<dyn Request>>) {
    let mut requests = requests.peekable();
    let mut pending: Vec<Box<dyn Pending>> = Vec::new();
    while requests.peek().is_some() {
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            let failure = sql_error("cannot begin a write", e);
            for request in requests {
                request.fail(copy_error(&failure));
            }
            return;
        }
        let mut failure = None;
        for request in requests.by_ref() {
            if let Err(e) = exec(conn, "SAVEPOINT request") {
                let error = sql_error("cannot open a savepoint", e);
                request.fail(copy_error(&error));
                failure = Some(error);
                break;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| request.run(conn)));
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back: nothing of this batch is kept.
                failure = Some(Error::Backend(
                    "the write transaction was aborted".to_owned(),
                ));
                if let Ok(done) = outcome {
                    pending.push(done);
                }
                break;
            }
            let keep = matches!(&outcome, Ok(done) if done.succeeded());
            let closed = if keep {
                exec(conn, "RELEASE request")
            } else {
                exec(conn, "ROLLBACK TO request").and_then(|()| exec(conn, "RELEASE request"))
            };
            if let Ok(done) = outcome {
                pending.push(done);
            }
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

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY);")
            .expect("schema");
        let writer = Writer::start(conn, 64).expect("start");
        (dir, writer)
    }

    fn insert(conn: &Connection, x: i64) -> Result<()> {
        conn.execute("INSERT INTO t (x) VALUES (?1)", [x])
            .map(|_| ())
            .map_err(|e| Error::Backend(e.to_string()))
    }

    fn rows(conn: &Connection) -> Result<Vec<i64>> {
        let mut statement = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .map_err(|e| Error::Backend(e.to_string()))?;
        statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
            .map_err(|e| Error::Backend(e.to_string()))
    }

    /// Requests that pile up while the writer is busy share one transaction; one that fails
    /// after writing (or panics) is undone alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_request_is_undone_alone_within_its_batch() {
        let (_dir, writer) = writer();
        let writer = Arc::new(writer);
        // Keep the writer busy so the next requests arrive together.
        let busy = {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                writer
                    .run(|_| {
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (kept, failed, panicked, seen) = tokio::join!(
            writer.run(|conn| {
                assert!(
                    !conn.is_autocommit(),
                    "a request runs inside the batch's transaction"
                );
                insert(conn, 1)
            }),
            writer.run(|conn| {
                insert(conn, 2)?;
                Err::<(), _>(Error::Conflict("after writing".to_owned()))
            }),
            writer.run(|conn| -> Result<()> {
                insert(conn, 3)?;
                panic!("a bug in a request");
            }),
            writer.run(rows),
        );
        busy.await.expect("busy task").expect("busy request");
        kept.expect("the first request is kept");
        assert!(matches!(failed, Err(Error::Conflict(_))), "{failed:?}");
        assert!(matches!(panicked, Err(Error::Backend(_))), "{panicked:?}");
        assert_eq!(
            seen.expect("read in the batch"),
            vec![1],
            "2 and 3 were rolled back alone"
        );
        let after = writer.run(rows).await.expect("the writer still serves");
        assert_eq!(after, vec![1], "only the successful request was committed");
    }
}
