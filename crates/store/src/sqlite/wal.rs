//! WAL checkpoints on a thread of their own, so that the writer does not copy pages into the
//! main file between a commit and its replies.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
//! `wal_autocheckpoint` pages, which delays the replies of that group. The checkpointer thread
//! instead runs a PASSIVE checkpoint on its own connection after commits, at most once per
//! [`CHECKPOINT_INTERVAL`]. The writer keeps a higher automatic threshold,
//! [`WRITER_AUTOCHECKPOINT_PAGES`], as a bound on the WAL's size: under steady load a commit
//! lands during nearly every background checkpoint, so SQLite cannot restart the WAL from its
//! start until the writer's own checkpoint, which then copies only the few pages not yet copied.
//!
//! Durability does not change: commits still sync the WAL (`synchronous=FULL`), and a checkpoint
//! syncs the WAL before it copies pages and the main file after.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::{debug, info, warn};

use super::connection;

/// Minimum time between two background checkpoints. Pages that many commits rewrite, such as
/// index pages, are then copied once per interval instead of once per commit.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// WAL size in pages (4 KiB each by default) at which the writer checkpoints by itself, for
/// when the background checkpoints cannot let SQLite restart the WAL. SQLite's default is 1000.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Handle of the checkpointer thread, owned by the writer thread.
pub(super) struct Checkpointer {
    /// Wakes the thread after a commit; a full slot means a wake-up is already pending.
    wake: SyncSender<()>,
    /// The thread, joined by [`Checkpointer::stop`] so that its connection is closed.
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens a second read-write connection, starts the thread, and raises the writer's automatic
    /// checkpoint threshold. Returns `None`, leaving SQLite's default automatic checkpoints, when
    /// the connection or the thread cannot be started.
    pub(super) fn start(writer: &Connection, path: &Path) -> Option<Checkpointer> {
        let connection = match connection::open_side_writer(path) {
            Ok(connection) => connection,
            Err(err) => {
                warn!(
                    path = %path.display(),
                    cause = %err,
                    "cannot open the WAL checkpointer's connection; the writer checkpoints by itself"
                );
                return None;
            }
        };

        let (wake, woken) = mpsc::sync_channel(1);
        let thread_path = path.to_path_buf();
        let thread = thread::Builder::new()
            .name("event-store-checkpointer".to_owned())
            .spawn(move || run(connection, thread_path, woken));
        let thread = match thread {
            Ok(thread) => thread,
            Err(err) => {
                warn!(
                    path = %path.display(),
                    cause = %err,
                    "cannot start the WAL checkpointer thread; the writer checkpoints by itself"
                );
                return None;
            }
        };

        if let Err(err) = writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
        {
            warn!(
                path = %path.display(),
                cause = %err,
                "cannot raise wal_autocheckpoint; the writer keeps checkpointing every 1000 pages"
            );
        }

        Some(Checkpointer { wake, thread })
    }

    /// Tells the thread that a group was committed. Never blocks.
    pub(super) fn notify_commit(&self) {
        // A full slot already contains a wake-up, and a closed channel means that the thread
        // has stopped. Neither needs more work here.
        let _ = self.wake.try_send(());
    }

    /// Stops the thread after its current checkpoint and closes its connection.
    pub(super) fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            warn!("the WAL checkpointer thread panicked");
        }
    }
}

/// Runs a PASSIVE checkpoint after a wake-up, then waits out [`CHECKPOINT_INTERVAL`] and folds
/// the wake-ups of that time into the next checkpoint. Returns when the writer drops its sender.
fn run(connection: Connection, path: PathBuf, woken: mpsc::Receiver<()>) {
    debug!(path = %path.display(), "WAL checkpointer started");

    let mut pending = woken.recv().is_ok();
    while pending {
        checkpoint_passive(&connection, &path);
        pending = false;

        let until = Instant::now() + CHECKPOINT_INTERVAL;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match woken.recv_timeout(left) {
                Ok(()) => pending = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    debug!(path = %path.display(), "WAL checkpointer stopped");
                    return;
                }
            }
        }

        if !pending {
            pending = woken.recv().is_ok();
        }
    }

    debug!(path = %path.display(), "WAL checkpointer stopped");
}

/// Copies committed WAL frames into the main file without waiting for readers or the writer.
fn checkpoint_passive(connection: &Connection, path: &Path) {
    let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });

    match result {
        Ok((wal_frames, checkpointed_frames)) => debug!(
            path = %path.display(),
            wal_frames,
            checkpointed_frames,
            "WAL checkpoint done"
        ),
        // SQLITE_BUSY only means another checkpoint is running; the next wake-up retries.
        Err(err) => info!(
            path = %path.display(),
            cause = %err,
            "WAL checkpoint failed; the next commit retries it"
        ),
    }
}
