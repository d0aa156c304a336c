//! Fraud read models for investigators: every code verification attempt and rejected dose,
//! daily counters per centre and per verifier, alerts with their evidence, and disputes.
//!
//! They live in their own SQLite file, `fraud.db`, with their own checkpoint row named `fraud`.
//! SQLite allows one writer per file, so a separate file lets this projector commit without
//! waiting on the status projector. Its millions of attempt rows also stay out of the status
//! file's WAL checkpoints, and deleting `fraud.db` rebuilds only these tables.
//!
//! The projector works like the status projector: it reads `read_all(checkpoint)` in batches
//! and commits each batch with the new checkpoint in one transaction. The store assigns
//! positions in commit order, so reading past the checkpoint never skips an event.

mod alerts;
mod apply;
mod batch;
mod config;
mod counters;
pub mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use store::{EventStore, RecordedEvent};
use tokio::sync::watch;
use tracing::info;

pub use alerts::AlertKind;
pub use config::{ConfigError, FraudConfig};
pub use counters::{CodeRejections, Counters, DoseRejections, COLUMNS as COUNTER_COLUMNS};

use crate::{DecodedPage, ProjectionError};


/// Name of this projection's checkpoint row.
const CHECKPOINT_NAME: &str = "fraud";

/// `meta` row holding the alert thresholds the stored alerts were computed with.
const META_CONFIG: &str = "config";
/// `meta` row holding the store time of the last applied event, in milliseconds.
const META_LAST_AT_MS: &str = "last_at_ms";
/// `meta` row set to `0` once an event's time was earlier than the one before it.
const META_TIME_MONOTONIC: &str = "time_monotonic";

/// The fraud projections and their projector.
pub struct FraudProjections {
    /// Path of the SQLite file, for error messages.
    path: PathBuf,
    /// Alert thresholds.
    config: FraudConfig,
    /// The one connection that writes; only the projector task uses it.
    writer: Mutex<Connection>,
    /// Connection for queries; WAL lets it read while the writer commits.
    reader: Mutex<Connection>,
    /// Position of the last event applied, published after each commit.
    position: watch::Sender<u64>,
    /// Set while store times never decreased with position, because only then can a time
    /// range become a position range. Queries read it and each commit updates it.
    time_monotonic: AtomicBool,
}

/// A rebuild of the fraud projections from position 0 into a fresh file (see
/// [`FraudProjections::rebuild`]).
pub struct FraudRebuild {
    /// The projections on the fresh file, written without journal or fsync.
    projections: FraudProjections,
    /// `CREATE INDEX` statements run once when the rebuild finishes.
    deferred: String,
    /// The file the fresh file replaces.
    target: PathBuf,
}

impl FraudRebuild {
    /// Applies a decoded page, like [`FraudProjections::apply_decoded`].
    pub fn apply_decoded(&self, page: &DecodedPage<'_>) -> Result<u64, ProjectionError> {
        self.projections.apply_decoded(page)
    }

    /// Returns the position of the last applied event.
    pub fn checkpoint(&self) -> u64 {
        self.projections.checkpoint()
    }

    /// Creates the deferred indexes and renames the fresh file over the old one. Returns the
    /// checkpoint of the new file.
    pub fn finish(self) -> Result<u64, ProjectionError> {
        let checkpoint = self.projections.checkpoint();
        let FraudProjections { writer, reader, .. } = self.projections;
        drop(reader);
        let writer = writer.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        crate::rebuild::finish(writer, &self.deferred, &self.target)?;
        Ok(checkpoint)
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> ProjectionError + '_ {
    move |err| ProjectionError::Sqlite { path: path.to_owned(), cause: err.to_string() }
}

impl FraudProjections {
    /// Opens or creates `fraud.db` and reads its checkpoint.
    ///
    /// When the alert thresholds differ from those the stored alerts were computed with, the
    /// tables are emptied so that the projector rebuilds them from position 0.
    pub fn open(path: &Path, config: FraudConfig) -> Result<Arc<Self>, ProjectionError> {
        let to_error = sqlite_error(path);
        let writer = Connection::open(path).map_err(&to_error)?;
        writer.execute_batch(crate::WRITER_PRAGMAS).map_err(&to_error)?;
        let schema = schema::SCHEMA.replace("COUNTERS", &counters::column_definitions());
        Self::init(path, writer, &schema, config).map(Arc::new)
    }

    /// Starts a rebuild from position 0 into a fresh file beside `path`, which replaces `path`
    /// when [`FraudRebuild::finish`] is called. Nothing opens `path` meanwhile.
    pub fn rebuild(path: &Path, config: FraudConfig) -> Result<FraudRebuild, ProjectionError> {
        let writer = crate::rebuild::open_fresh(path)?;
        let schema = schema::SCHEMA.replace("COUNTERS", &counters::column_definitions());
        let (schema, deferred) = crate::rebuild::split_schema(&schema, schema::APPLY_INDEXES);
        let projections = Self::init(&crate::rebuild::fresh_path(path), writer, &schema, config)?;
        Ok(FraudRebuild { projections, deferred, target: path.to_owned() })
    }

    /// Creates the tables on `writer`, empties them when the thresholds changed, opens the
    /// reading connection and reads the checkpoint.
    fn init(path: &Path, writer: Connection, schema: &str, config: FraudConfig) -> Result<Self, ProjectionError> {
        let to_error = sqlite_error(path);
        writer.execute_batch(schema).map_err(&to_error)?;
        writer.execute_batch(crate::APPLY_PRAGMAS).map_err(&to_error)?;
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(&to_error)?;
        reader.execute_batch("PRAGMA busy_timeout=5000;").map_err(&to_error)?;

        let stored_config = read_meta(&writer, META_CONFIG).map_err(&to_error)?;
        let fingerprint = config.fingerprint();
        if stored_config.as_deref() != Some(fingerprint.as_str()) {
            if stored_config.is_some() {
                info!(path = %path.display(), "alert thresholds changed; fraud projection rebuilds from position 0");
            }
            writer.execute_batch(&format!("BEGIN; {} COMMIT;", schema::RESET)).map_err(&to_error)?;
            write_meta(&writer, META_CONFIG, &fingerprint).map_err(&to_error)?;
        }

        let checkpoint: u64 = writer
            .query_row("SELECT position FROM checkpoint WHERE name = ?1", params![CHECKPOINT_NAME], |row| row.get(0))
            .optional()
            .map_err(&to_error)?
            .unwrap_or(0);
        let monotonic = read_meta(&writer, META_TIME_MONOTONIC).map_err(&to_error)?.as_deref() != Some("0");
        let (position, _) = watch::channel(checkpoint);
        info!(path = %path.display(), checkpoint, "fraud projections opened");
        Ok(Self {
            path: path.to_owned(),
            config,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            position,
            time_monotonic: AtomicBool::new(monotonic),
        })
    }

    /// Returns the alert thresholds in use.
    pub fn config(&self) -> &FraudConfig {
        &self.config
    }

    /// Returns the position of the last applied event.
    pub fn checkpoint(&self) -> u64 {
        *self.position.borrow()
    }

    /// Applies events in one transaction, in order, and moves the checkpoint to the last one.
    ///
    /// Events at or below the checkpoint are ignored, so a batch read twice is harmless. An
    /// event that cannot be decoded stops the batch with an error and nothing of it is stored.
    /// Appointments, districts and daily counters are cached for the batch and written once.
    pub fn apply_batch(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        let page = DecodedPage::decode_after(events, self.checkpoint())?;
        self.apply_decoded(&page)
    }

    /// Applies a page decoded by [`DecodedPage::decode`] like [`FraudProjections::apply_batch`].
    pub fn apply_decoded(&self, page: &DecodedPage<'_>) -> Result<u64, ProjectionError> {
        self.commit_batch(page, &mut batch::FraudBatch::default())
    }

    /// Applies events like [`FraudProjections::apply_batch`], but with one SQL statement per
    /// read and write and no cache: the reference implementation the batched path is tested
    /// against.
    pub fn apply_batch_per_event(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        let page = DecodedPage::decode_after(events, self.checkpoint())?;
        self.commit_batch(&page, &mut apply::Direct)
    }

    /// Applies a page through `rows`, writes the meta rows and the checkpoint, commits, and
    /// publishes the checkpoint.
    fn commit_batch<R: Flush>(&self, page: &DecodedPage<'_>, rows: &mut R) -> Result<u64, ProjectionError> {
        let to_error = sqlite_error(&self.path);
        let mut connection = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let transaction = connection.transaction().map_err(&to_error)?;
        let mut checkpoint = self.checkpoint();
        let mut last_at_ms: i64 = read_meta(&transaction, META_LAST_AT_MS).map_err(&to_error)?.and_then(|text| text.parse().ok()).unwrap_or(0);
        let mut monotonic = self.time_monotonic.load(Ordering::Acquire);

        for (recorded, event) in page.after(checkpoint) {
            apply::apply_event(&transaction, rows, recorded, event, &self.config).map_err(&to_error)?;
            if recorded.recorded_at_ms < last_at_ms && monotonic {
                tracing::warn!(position = recorded.position, "event time earlier than the one before it; time filters fall back to scans");
                monotonic = false;
            }
            last_at_ms = last_at_ms.max(recorded.recorded_at_ms);
            checkpoint = recorded.position;
        }
        rows.flush(&transaction).map_err(&to_error)?;

        write_meta(&transaction, META_LAST_AT_MS, &last_at_ms.to_string()).map_err(&to_error)?;
        write_meta(&transaction, META_TIME_MONOTONIC, if monotonic { "1" } else { "0" }).map_err(&to_error)?;
        transaction
            .prepare_cached(
                "INSERT INTO checkpoint (name, position) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .and_then(|mut statement| statement.execute(params![CHECKPOINT_NAME, checkpoint]))
            .map_err(&to_error)?;
        transaction.commit().map_err(&to_error)?;
        self.time_monotonic.store(monotonic, Ordering::Release);
        self.position.send_replace(checkpoint);
        Ok(checkpoint)
    }

    /// Deletes every row and resets the checkpoint to 0, so the projector rebuilds from the start.
    pub fn reset(&self) -> Result<(), ProjectionError> {
        let to_error = sqlite_error(&self.path);
        let connection = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connection.execute_batch(&format!("BEGIN; {} COMMIT;", schema::RESET)).map_err(&to_error)?;
        write_meta(&connection, META_CONFIG, &self.config.fingerprint()).map_err(&to_error)?;
        self.time_monotonic.store(true, Ordering::Release);
        self.position.send_replace(0);
        info!(path = %self.path.display(), "fraud projections reset; rebuilding from position 0");
        Ok(())
    }

    /// Catches up with the store, then follows it until the store's head channel closes.
    ///
    /// Returns an error, after logging it, when an event cannot be applied: the projector stops
    /// rather than skip an event.
    pub async fn run(self: Arc<Self>, store: Arc<dyn EventStore>) -> Result<(), ProjectionError> {
        crate::follow(self, store).await
    }

    /// Waits until the projector has applied `position`, for read-your-writes after a command.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        crate::wait_for_position(&self.position, position, timeout).await
    }

    fn with_reader<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ProjectionError> {
        let connection = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&connection).map_err(sqlite_error(&self.path))
    }
}

/// [`apply::Rows`] that may hold rows back until the batch ends.
trait Flush: apply::Rows {
    /// Writes the rows held back.
    fn flush(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()>;
}

impl Flush for apply::Direct {
    fn flush(&self, _tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        Ok(())
    }
}

impl Flush for batch::FraudBatch {
    fn flush(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        batch::FraudBatch::flush(self, tx)
    }
}

fn read_meta(connection: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    connection.query_row("SELECT value FROM meta WHERE name = ?1", params![name], |row| row.get(0)).optional()
}

fn write_meta(connection: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

impl crate::Projector for FraudProjections {
    const NAME: &'static str = "fraud";

    fn checkpoint(&self) -> u64 {
        FraudProjections::checkpoint(self)
    }

    fn apply_batch(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        FraudProjections::apply_batch(self, events)
    }

    fn path(&self) -> &std::path::Path {
        &self.path
    }
}
