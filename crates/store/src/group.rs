//! Group commit for the side databases of a data folder (`service.db`, `certificates.db`).
//!
//! A [`GroupWriter`] owns the only read-write connection to one SQLite file and runs it on its
//! own thread. Callers send write jobs. The thread takes every job queued at that moment and runs
//! each inside its own savepoint of one `BEGIN IMMEDIATE … COMMIT` transaction. It replies to
//! each caller only after that transaction is committed, so concurrent writers share one fsync
//! and no async worker thread waits for an fsync.
//!
//! A job that fails is rolled back to its savepoint and gets its own error; the other jobs of the
//! group still commit. When the commit itself fails, every job of the group gets that error and
//! nothing of the group is stored.
//!
//! The event log does not use this type: its writer (`sqlite::writer`) also checks revisions and
//! keeps the Merkle tree in the same transaction.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tracing::{error, info};

/// Maximum number of jobs committed in one transaction, which bounds the time the write lock is held.
const MAX_GROUP_JOBS: usize = 256;

/// Failure of one write job.
#[derive(Debug)]
pub enum GroupWriteError<E> {
    /// The job's own work failed; its savepoint was rolled back.
    Work(E),
    /// The group's transaction could not begin or commit; nothing of the job is stored. The text
    /// names the file and SQLite's message.
    Commit(String),
    /// The writer thread has stopped, so the job never ran.
    Stopped(String),
}

impl<E: fmt::Display> fmt::Display for GroupWriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupWriteError::Work(err) => write!(f, "{err}"),
            GroupWriteError::Commit(message) | GroupWriteError::Stopped(message) => f.write_str(message),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GroupWriteError<E> {}

/// Outcome of running one job: whether to keep its savepoint, and how to tell the caller the
/// result once the group's commit result is known.
struct Finish {
    /// `true` when the work succeeded and its changes stay in the group's transaction.
    keep: bool,
    /// Sends the outcome to the caller; receives the commit error, if the commit failed.
    reply: Box<dyn FnOnce(Option<&str>) + Send>,
}

/// A queued write: runs on the writer thread with the connection, or with the error that kept
/// the group's transaction from beginning.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;

/// Single writer thread with group commit over one SQLite file.
pub struct GroupWriter {
    /// File written, for error messages.
    path: PathBuf,
    /// Queue of jobs for the writer thread; `None` once dropping has begun.
    jobs: Option<mpsc::Sender<Job>>,
    /// Writer thread, joined on drop so that the file is closed when the drop returns.
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupWriter").field("path", &self.path).finish()
    }
}

impl GroupWriter {
    /// Starts the writer thread on `connection`, which must be the only connection that writes
    /// to `path`. `name` names the thread and the log lines.
    pub fn start(connection: Connection, path: &Path, name: &str) -> std::io::Result<GroupWriter> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread_path = path.to_path_buf();
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || run(connection, receiver, &thread_path, &thread_name))?;

        info!(path = %path.display(), writer = name, "group writer started");
        Ok(GroupWriter { path: path.to_path_buf(), jobs: Some(sender), thread: Some(thread) })
    }

    /// Runs `work` in the next group and waits, without blocking the async worker, until the
    /// group is committed.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, GroupWriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.submit(work, move |outcome| {
            let _ = sender.send(outcome);
        })?;
        receiver.await.map_err(|_| self.stopped())?
    }

    /// Runs `work` in the next group and blocks the calling thread until the group is committed.
    /// For command-line tools and other code outside the async runtime; it blocks an async
    /// worker thread for one commit when called from one.
    pub fn write_blocking<T, E, F>(&self, work: F) -> Result<T, GroupWriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(work, move |outcome| {
            let _ = sender.send(outcome);
        })?;
        receiver.recv().map_err(|_| self.stopped())?
    }

    /// Queues `work`; `deliver` receives its outcome after the group's commit.
    fn submit<T, E, F, D>(&self, work: F, deliver: D) -> Result<(), GroupWriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, GroupWriteError<E>>) + Send + 'static,
    {
        let job: Job = Box::new(move |connection| match connection {
            Err(begin_error) => {
                deliver(Err(GroupWriteError::Commit(begin_error.to_owned())));
                Finish { keep: false, reply: Box::new(|_| {}) }
            }
            Ok(connection) => match work(connection) {
                Ok(value) => Finish {
                    keep: true,
                    reply: Box::new(move |commit_error| match commit_error {
                        None => deliver(Ok(value)),
                        Some(message) => deliver(Err(GroupWriteError::Commit(message.to_owned()))),
                    }),
                },
                Err(err) => Finish { keep: false, reply: Box::new(move |_| deliver(Err(GroupWriteError::Work(err)))) },
            },
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| self.stopped())?;
        jobs.send(job).map_err(|_| self.stopped())
    }

    fn stopped<E>(&self) -> GroupWriteError<E> {
        GroupWriteError::Stopped(format!("writer of {} has stopped; the write did not run", self.path.display()))
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        // Closing the queue lets the thread commit what is queued and then stop.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(path = %self.path.display(), "group writer thread panicked");
            }
        }
    }
}

/// Body of the writer thread: commits groups until the queue is closed.
fn run(connection: Connection, receiver: mpsc::Receiver<Job>, path: &Path, name: &str) {
    let mut groups = 0u64;
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP_JOBS {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&connection, group, path, name);
        groups += 1;
    }
    info!(path = %path.display(), writer = name, groups, "group writer stopped");
}

/// Runs one group of jobs in one transaction and replies to each.
fn commit_group(connection: &Connection, group: Vec<Job>, path: &Path, name: &str) {
    if let Err(err) = connection.execute_batch("BEGIN IMMEDIATE") {
        let message = format!("failed to begin a transaction in {}: {err}", path.display());
        error!(path = %path.display(), writer = name, jobs = group.len(), cause = %err, "group not started");
        for job in group {
            let finish = job(Err(&message));
            (finish.reply)(Some(&message));
        }
        return;
    }

    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        if let Err(err) = connection.execute_batch("SAVEPOINT job") {
            let message = format!("failed to open a savepoint in {}: {err}", path.display());
            let finish = job(Err(&message));
            replies.push(finish.reply);
            continue;
        }
        let finish = job(Ok(connection));
        let closed = if finish.keep {
            connection.execute_batch("RELEASE job")
        } else {
            connection.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(err) = closed {
            error!(path = %path.display(), writer = name, cause = %err, "savepoint could not be closed");
        }
        replies.push(finish.reply);
    }

    match connection.execute_batch("COMMIT") {
        Ok(()) => {
            for reply in replies {
                reply(None);
            }
        }
        Err(err) => {
            let message = format!("failed to commit in {}: {err}", path.display());
            error!(path = %path.display(), writer = name, jobs = replies.len(), cause = %err, "group commit failed; rolling back");
            if let Err(rollback) = connection.execute_batch("ROLLBACK") {
                error!(path = %path.display(), writer = name, cause = %rollback, "rollback after a failed commit failed");
            }
            for reply in replies {
                reply(Some(&message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path) -> (GroupWriter, PathBuf) {
        let path = dir.join("side.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);")
            .unwrap();
        (GroupWriter::start(connection, &path, "test").unwrap(), path)
    }

    fn rows(path: &Path) -> Vec<(i64, String)> {
        let connection = Connection::open(path).unwrap();
        let mut statement = connection.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_writer_commits_concurrent_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(dir.path());
        let writer = std::sync::Arc::new(writer);
        let mut tasks = Vec::new();
        for key in 0..100i64 {
            let writer = std::sync::Arc::clone(&writer);
            tasks.push(tokio::spawn(async move {
                writer.write(move |connection| connection.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [key])).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 1);
        }
        assert_eq!(rows(&path).len(), 100);
    }

    #[test]
    fn group_writer_failed_job_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(dir.path());
        writer.write_blocking(|connection| connection.execute("INSERT INTO t (k, v) VALUES (1, 'kept')", [])).unwrap();

        let failed = writer.write_blocking(|connection| {
            connection.execute("INSERT INTO t (k, v) VALUES (2, 'partial')", [])?;
            connection.execute("INSERT INTO t (k, v) VALUES (1, 'duplicate')", [])
        });

        assert!(matches!(failed, Err(GroupWriteError::Work(_))));
        assert_eq!(rows(&path), vec![(1, "kept".to_owned())]);
    }

    #[test]
    fn group_writer_drop_commits_queued_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(dir.path());
        writer.write_blocking(|connection| connection.execute("INSERT INTO t (k, v) VALUES (7, 'seven')", [])).unwrap();
        drop(writer);
        assert_eq!(rows(&path), vec![(7, "seven".to_owned())]);
    }
}
