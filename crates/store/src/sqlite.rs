//! Embedded SQLite backend of the event store.
//!
//! One file stores the whole log (table `events`) and each stream's current revision (table
//! `streams`). The file runs in WAL mode with `synchronous=FULL`, so an append acknowledged to its
//! caller survives a killed process and, on a disk that honours fsync, a power loss.
//!
//! A single writer thread owns the only read-write connection. It takes the append requests
//! queued at that moment and commits them in one transaction (group commit), which amortizes the
//! fsync of each commit over many appends. A second read-write connection on its own thread
//! copies the WAL into the main file (`wal`), so the writer's commits do not wait for that.
//! Reads use a small pool of read-only connections. In
//! WAL mode they do not wait for the writer's transactions, and each read uses one committed
//! snapshot.
//!
//! The same file contains the Merkle tree over the events (table `merkle_nodes`, kept by the writer
//! in each group's transaction), the signed checkpoints (table `checkpoints`, written on a
//! separate connection) and the log's origin (table `log_info`).

#[doc(hidden)]
pub mod bench_support;
mod checkpoints;
mod connection;
mod reader;
mod tree;
mod wal;
mod writer;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info};

use crate::merkle::{self, Hash};
use crate::{
    validate_appends, AppendOutcome, EventStore, RecordedEvent, StoreError, StoredCheckpoint,
    StreamAppend,
};
use reader::ReaderPool;
use tree::NodeTable;
use writer::{AppendRequest, Writer};

/// Maximum number of append requests waiting for the writer; `append` waits for room beyond it.
const REQUEST_QUEUE_CAPACITY: usize = 1024;

/// Event store kept in one SQLite file.
///
/// Dropping the last handle stops the writer thread after it has committed every queued request,
/// checkpoints the WAL into the main file and closes it. That drop blocks the dropping thread for
/// at most one group commit.
///
/// NOTE: another process may append to the same file safely, since each group reads the last
/// position inside its locked transaction, but `watch_head` moves only for appends made through
/// this handle.
pub struct SqliteStore {
    /// Database file, named in log lines and error messages.
    path: PathBuf,
    /// Sends append requests to the writer thread; `None` when the store is open read-only.
    requests: Option<mpsc::Sender<AppendRequest>>,
    /// Writer thread, joined on drop so that the file is closed when the drop returns.
    writer_thread: Option<JoinHandle<()>>,
    /// Read-only connections shared by all reads.
    readers: Arc<ReaderPool>,
    /// Position of the last committed event; the writer thread updates it after every commit.
    head: Arc<watch::Sender<u64>>,
    /// Number of transactions the writer thread has committed, so tests can check that group
    /// commit batches appends.
    commits: Arc<AtomicU64>,
    /// Read-write connection for storing checkpoints, opened on first use; `None` inside the
    /// mutex until then. Unused when the store is open read-only.
    checkpoint_writer: Arc<Mutex<Option<rusqlite::Connection>>>,
}

impl SqliteStore {
    /// Opens the event store in the file at `path` for reading and appending, creating the file
    /// and its schema when they are missing, and starts the writer thread.
    ///
    /// Fails with [`StoreError::Backend`] when the file is not an SQLite database, belongs to
    /// another program, was written by a newer schema, or cannot be switched to WAL mode.
    pub async fn open(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        let path = path.to_path_buf();
        let setup_path = path.clone();
        let (connection, head_position) =
            run_blocking(&path, move || connection::open_writer(&setup_path)).await?;

        let (head, _) = watch::channel(head_position);
        let head = Arc::new(head);
        let commits = Arc::new(AtomicU64::new(0));
        let (requests, request_receiver) = mpsc::channel(REQUEST_QUEUE_CAPACITY);

        let writer = Writer::new(connection, path.clone(), head.clone(), commits.clone());
        let writer_thread = writer.spawn(request_receiver)?;

        info!(path = %path.display(), head_position, "opened event store");
        Ok(Arc::new(SqliteStore {
            readers: Arc::new(ReaderPool::new(path.clone())),
            path,
            requests: Some(requests),
            writer_thread: Some(writer_thread),
            head,
            commits,
            checkpoint_writer: Arc::new(Mutex::new(None)),
        }))
    }

    /// Opens an existing event store file for reading only, for audit tools working on a copy of
    /// the data folder.
    ///
    /// Every connection is opened with `SQLITE_OPEN_READONLY`, so the database is never changed,
    /// and [`EventStore::append`] fails with [`StoreError::Backend`]. SQLite may still create the
    /// `-wal` and `-shm` files beside the database when the folder is writable. A copy must include
    /// the `-wal` file when one exists, because recent commits may still be only in it. The head
    /// position is read once here, and `watch_head` never changes afterwards. The Merkle tree,
    /// proofs and stored checkpoints can be read. A file written before the tree existed
    /// (schema version 1) is rejected, because building its nodes needs a write.
    pub fn open_read_only(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        if !path.exists() {
            return Err(StoreError::Backend(format!(
                "event store file {} not found; read-only opening never creates it",
                path.display()
            )));
        }

        let readers = Arc::new(ReaderPool::new(path.to_path_buf()));
        let head_position = readers.with_connection(|connection| {
            connection::check_schema(connection, path)?;
            reader::head_position(connection, path)
        })?;

        let (head, _) = watch::channel(head_position);

        info!(path = %path.display(), head_position, "opened event store read-only");
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            requests: None,
            writer_thread: None,
            readers,
            head: Arc::new(head),
            commits: Arc::new(AtomicU64::new(0)),
            checkpoint_writer: Arc::new(Mutex::new(None)),
        }))
    }

    /// Returns the path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns how many transactions the writer thread has committed since this store was opened.
    /// Each transaction may hold many appends (group commit), so the count can be far below the
    /// number of appends.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `read` on a pooled read-only connection on Tokio's blocking thread pool.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        run_blocking(&self.path, move || {
            readers.with_connection(|connection| read(connection, readers.path()))
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, appends: Vec<StreamAppend>) -> Result<AppendOutcome, StoreError> {
        validate_appends(&appends)?;

        if appends.is_empty() {
            return Ok(AppendOutcome {
                first_position: None,
                last_position: None,
                revisions: Vec::new(),
            });
        }

        let Some(requests) = &self.requests else {
            return Err(StoreError::Backend(format!(
                "event store {} is open read-only, so appends are rejected",
                self.path.display()
            )));
        };

        // NOTE: once the request is queued, dropping this future does not cancel it; the writer
        // still commits it and only the reply is lost.
        let (reply, outcome) = oneshot::channel();
        requests
            .send(AppendRequest { appends, reply })
            .await
            .map_err(|_| writer_stopped(&self.path))?;

        outcome.await.map_err(|_| writer_stopped(&self.path))?
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |connection, path| {
            reader::read_stream(connection, path, &stream_id, from_revision)
        })
        .await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |connection, path| reader::read_all(connection, path, after, limit))
            .await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.read(reader::head_position).await
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    async fn tree_size(&self) -> Result<u64, StoreError> {
        self.read(tree::leaf_count).await
    }

    async fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError> {
        self.read(move |connection, path| {
            merkle::root_at(&mut NodeTable::new(connection, path), tree_size)
        })
        .await
    }

    async fn inclusion_proof(
        &self,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.read(move |connection, path| {
            merkle::inclusion_proof(&mut NodeTable::new(connection, path), leaf_index, tree_size)
        })
        .await
    }

    async fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, StoreError> {
        self.read(move |connection, path| {
            merkle::consistency_proof(&mut NodeTable::new(connection, path), size1, size2)
        })
        .await
    }

    async fn log_origin(&self) -> Result<String, StoreError> {
        self.read(checkpoints::read_origin).await
    }

    async fn append_checkpoint(&self, note: String) -> Result<StoredCheckpoint, StoreError> {
        if self.requests.is_none() {
            return Err(StoreError::Backend(format!(
                "event store {} is open read-only, so checkpoints cannot be stored",
                self.path.display()
            )));
        }

        let path = self.path.clone();
        let checkpoint_writer = self.checkpoint_writer.clone();
        run_blocking(&self.path, move || {
            let mut slot = checkpoint_writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(connection::open_side_writer(&path)?),
            };
            checkpoints::insert_checkpoint(connection, &path, &note)
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(checkpoints::latest).await
    }

    async fn read_checkpoints(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read(move |connection, path| {
            checkpoints::read_after(connection, path, after_id, limit)
        })
        .await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Close idle readers first. The writer's connection is then the last one open, and only
        // a read-write connection can checkpoint the WAL into the main file on shutdown.
        self.readers.close_idle();
        self.checkpoint_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();

        // Closing the request channel lets the writer commit what is queued and then stop.
        self.requests = None;
        if let Some(writer_thread) = self.writer_thread.take() {
            if writer_thread.join().is_err() {
                error!(path = %self.path.display(), "event store writer thread panicked");
            }
        }
    }
}

/// Builds the error for an append that reached no running writer thread.
fn writer_stopped(path: &Path) -> StoreError {
    StoreError::Backend(format!(
        "event store writer for {} stopped before replying; the append may or may not be committed",
        path.display()
    ))
}

/// Builds a [`StoreError::Backend`] naming the file, the failed action and its cause.
fn backend_error(path: &Path, action: impl Display, cause: impl Display) -> StoreError {
    StoreError::Backend(failure_message(path, action, cause))
}

/// Formats the message of a backend failure: what failed, in which file, and why.
fn failure_message(path: &Path, action: impl Display, cause: impl Display) -> String {
    format!(
        "failed to {action} in event store {}: {cause}",
        path.display()
    )
}

/// Runs blocking SQLite work on Tokio's blocking thread pool.
async fn run_blocking<T, F>(path: &Path, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| backend_error(path, "run a blocking task", err))?
}
