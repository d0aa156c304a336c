//! Read models folded from the event log: centres, sessions (with free seats), beneficiaries
//! and appointments, persisted in one SQLite file together with the checkpoint position.
//!
//! The projector reads the log in position order and writes each batch of events and the new
//! checkpoint in one transaction, so after a crash it resumes exactly where the last commit
//! ended. The store assigns positions in commit order from a single writer, so reading
//! `position > checkpoint` can never skip an event that commits later with a lower position.

mod apply;
mod batch;
pub mod fraud;
mod rebuild;
pub mod queries;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};
use store::{EventStore, RecordedEvent};
use tokio::sync::watch;
use tracing::{error, info};

/// Maximum number of events read from the store per projector transaction. A caught-up projector
/// reads only the few new events. While catching up, larger pages mean fewer commits, and a row
/// touched by several events of a page is written once.
const BATCH_SIZE: usize = 10_000;

/// Settings of each projection file's writing connection. The page cache (64 MiB, a fixed
/// bound whatever the log length) keeps every page a batch dirties. With the default 2 MiB,
/// inserts into the indexes keyed by random ids spilled dirty pages to the WAL in the middle of
/// each transaction, and then wrote them again at commit.
pub(crate) const WRITER_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; PRAGMA cache_size=-65536;";

/// Set on a writing connection once its schema exists. `temp_store=MEMORY` keeps the statement
/// journal of each `INSERT OR REPLACE` in memory: in a temporary file, it wrote every page such
/// a statement touched once more (half of the fraud apply time in the profile). It is set after
/// the schema because a `CREATE INDEX` on a large table sorts in temporary storage, which must
/// stay on disk.
pub(crate) const APPLY_PRAGMAS: &str = "PRAGMA temp_store=MEMORY;";

/// Failures of the projection database.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// SQLite failed on the projection file.
    #[error("projection database {path} failed: {cause}")]
    Sqlite {
        /// File that failed.
        path: PathBuf,
        /// SQLite's message.
        cause: String,
    },
    /// An event could not be decoded, so the projector stopped rather than skip it.
    #[error("event at position {position} could not be decoded: {cause}")]
    Decode {
        /// Position of the event.
        position: u64,
        /// Decoder message.
        cause: String,
    },
    /// Reading the event store failed.
    #[error("reading the event store failed: {0}")]
    Store(#[from] store::StoreError),
    /// Waiting for the projector to reach a position timed out.
    #[error("projection did not reach position {0} in time")]
    Lagging(u64),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS checkpoint (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS centres (
    centre_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    district TEXT NOT NULL,
    state TEXT NOT NULL,
    pincode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    centre_id TEXT NOT NULL,
    district TEXT NOT NULL,
    date TEXT NOT NULL,
    vaccine TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    booked INTEGER NOT NULL DEFAULT 0,
    min_age INTEGER NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_by_district_date ON sessions (district COLLATE NOCASE, date);
CREATE TABLE IF NOT EXISTS beneficiaries (
    beneficiary_id TEXT PRIMARY KEY,
    mobile_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    year_of_birth INTEGER NOT NULL,
    gender TEXT NOT NULL,
    photo_id_type TEXT NOT NULL,
    photo_id_masked TEXT NOT NULL,
    walk_in INTEGER NOT NULL,
    doses_received INTEGER NOT NULL DEFAULT 0,
    registered_position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS beneficiaries_by_mobile ON beneficiaries (mobile_hash);
CREATE TABLE IF NOT EXISTS appointments (
    appointment_id TEXT PRIMARY KEY,
    beneficiary_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    centre_id TEXT NOT NULL,
    date TEXT NOT NULL,
    vaccine TEXT NOT NULL,
    dose_number INTEGER NOT NULL,
    walk_in INTEGER NOT NULL,
    status TEXT NOT NULL,
    locked INTEGER NOT NULL DEFAULT 0,
    rejected_attempts INTEGER NOT NULL DEFAULT 0,
    code_verified_position INTEGER,
    dose_position INTEGER,
    batch TEXT,
    certificate_id TEXT,
    certificate_revoked INTEGER NOT NULL DEFAULT 0,
    booked_position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS appointments_by_beneficiary ON appointments (beneficiary_id);
CREATE TABLE IF NOT EXISTS revoked_certificates (
    certificate_id TEXT PRIMARY KEY,
    appointment_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS appointments_by_session ON appointments (session_id);
"#;

/// Version of the projection tables; a file with a lower `user_version` is rebuilt on open.
const SCHEMA_VERSION: i64 = 2;

/// A page of events read from the store with each payload decoded once, so that the status and
/// fraud projectors can apply the same page without decoding it twice.
pub struct DecodedPage<'a> {
    /// The events as stored, in position order.
    recorded: std::borrow::Cow<'a, [RecordedEvent]>,
    /// The decoded form of each event of `recorded`, at the same index.
    events: Vec<domain::Event>,
}

impl DecodedPage<'static> {
    /// Decodes every event of a page. Fails on the first event that cannot be decoded, so a
    /// projector stops there rather than skip it.
    pub fn decode(recorded: Vec<RecordedEvent>) -> Result<Self, ProjectionError> {
        let events = recorded.iter().map(decode_event).collect::<Result<_, _>>()?;
        Ok(Self { recorded: std::borrow::Cow::Owned(recorded), events })
    }
}

impl<'a> DecodedPage<'a> {
    /// Decodes the events of `recorded` after position `after`.
    pub(crate) fn decode_after(recorded: &'a [RecordedEvent], after: u64) -> Result<Self, ProjectionError> {
        let skip = recorded.iter().take_while(|event| event.position <= after).count();
        let recorded = &recorded[skip..];
        let events = recorded.iter().map(decode_event).collect::<Result<_, _>>()?;
        Ok(Self { recorded: std::borrow::Cow::Borrowed(recorded), events })
    }

    /// Returns the position of the last event, or `None` for an empty page.
    pub fn last_position(&self) -> Option<u64> {
        self.recorded.last().map(|event| event.position)
    }

    /// Returns the number of events in the page.
    pub fn len(&self) -> usize {
        self.recorded.len()
    }

    /// Checks whether the page contains no event.
    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty()
    }

    /// Returns the events after position `after`, each with its decoded form.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = (&RecordedEvent, &domain::Event)> {
        self.recorded.iter().zip(&self.events).filter(move |(recorded, _)| recorded.position > after)
    }
}

fn decode_event(recorded: &RecordedEvent) -> Result<domain::Event, ProjectionError> {
    domain::Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)
        .map_err(|err| ProjectionError::Decode { position: recorded.position, cause: err.to_string() })
}

/// A projection set that [`follow`] drives: it applies batches and reports its checkpoint.
pub(crate) trait Projector: Send + Sync + 'static {
    /// Name in log lines, such as `status` or `fraud`.
    const NAME: &'static str;

    /// Returns the position of the last applied event.
    fn checkpoint(&self) -> u64;

    /// Applies a batch of events in order and moves the checkpoint.
    fn apply_batch(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError>;

    /// Returns the projection file, for error messages.
    fn path(&self) -> &Path;
}

impl Projector for Projections {
    const NAME: &'static str = "status";

    fn checkpoint(&self) -> u64 {
        Projections::checkpoint(self)
    }

    fn apply_batch(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        Projections::apply_batch(self, events)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Catches up with the store from the projector's checkpoint, then follows new events until the
/// store's head channel closes. Returns an error, after logging it, when a batch cannot be
/// applied: the projector stops rather than skip an event.
pub(crate) async fn follow<P: Projector>(projector: Arc<P>, store: Arc<dyn EventStore>) -> Result<(), ProjectionError> {
    let mut head = store.watch_head();
    info!(projector = P::NAME, checkpoint = projector.checkpoint(), "projector started");
    loop {
        let checkpoint = projector.checkpoint();
        let events = match store.read_all(checkpoint, BATCH_SIZE).await {
            Ok(events) => events,
            Err(err) => {
                error!(projector = P::NAME, cause = %err, checkpoint, "projector read failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !events.is_empty() {
            let worker = Arc::clone(&projector);
            let applied = tokio::task::spawn_blocking(move || worker.apply_batch(&events))
                .await
                .unwrap_or_else(|join| Err(ProjectionError::Sqlite { path: projector.path().to_owned(), cause: join.to_string() }));
            if let Err(err) = applied {
                error!(projector = P::NAME, cause = %err, checkpoint, "projector stopped");
                return Err(err);
            }
            continue;
        }
        if *head.borrow_and_update() > checkpoint {
            continue;
        }
        if head.changed().await.is_err() {
            info!(projector = P::NAME, checkpoint, "projector stopped: event store closed");
            return Ok(());
        }
    }
}

/// Waits until a projector's published position reaches `position`.
pub(crate) async fn wait_for_position(published: &watch::Sender<u64>, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
    let mut receiver = published.subscribe();
    let reached = tokio::time::timeout(timeout, receiver.wait_for(|current| *current >= position)).await;
    match reached {
        Ok(Ok(_)) => Ok(()),
        _ => Err(ProjectionError::Lagging(position)),
    }
}

/// Name of the checkpoint row of this projection set.
const CHECKPOINT_NAME: &str = "status";

/// The status projections and their projector.
pub struct Projections {
    /// Path of the SQLite file, for error messages.
    path: PathBuf,
    /// The one connection that writes; only the projector task uses it.
    writer: Mutex<Connection>,
    /// Connection for queries; WAL lets it read while the writer commits.
    reader: Mutex<Connection>,
    /// Position of the last event applied, published after each commit.
    position: watch::Sender<u64>,
}

/// A rebuild of the status projections from position 0 into a fresh file (see
/// [`Projections::rebuild`]).
pub struct StatusRebuild {
    /// The projections on the fresh file, written without journal or fsync.
    projections: Projections,
    /// `CREATE INDEX` statements run once when the rebuild finishes.
    deferred: String,
    /// The file the fresh file replaces.
    target: PathBuf,
}

impl StatusRebuild {
    /// Applies a decoded page, like [`Projections::apply_decoded`].
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
        let Projections { writer, reader, .. } = self.projections;
        drop(reader);
        let writer = writer.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        rebuild::finish(writer, &self.deferred, &self.target)?;
        Ok(checkpoint)
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> ProjectionError + '_ {
    move |err| ProjectionError::Sqlite { path: path.to_owned(), cause: err.to_string() }
}

impl Projections {
    /// Opens or creates the projection file and reads its checkpoint.
    pub fn open(path: &Path) -> Result<Arc<Self>, ProjectionError> {
        let to_error = sqlite_error(path);
        let writer = Connection::open(path).map_err(&to_error)?;
        writer.execute_batch(crate::WRITER_PRAGMAS).map_err(&to_error)?;
        Self::init(path, writer, SCHEMA).map(Arc::new)
    }

    /// Starts a rebuild from position 0 into a fresh file beside `path`, which replaces `path`
    /// when [`StatusRebuild::finish`] is called. Nothing opens `path` meanwhile. The server calls
    /// it at start for a missing file, and `vaxledger bench` to time replay.
    pub fn rebuild(path: &Path) -> Result<StatusRebuild, ProjectionError> {
        let writer = rebuild::open_fresh(path)?;
        // The batched apply path reads rows by primary key only, so every index waits.
        let (schema, deferred) = rebuild::split_schema(SCHEMA, &[]);
        let projections = Self::init(&rebuild::fresh_path(path), writer, &schema)?;
        Ok(StatusRebuild { projections, deferred, target: path.to_owned() })
    }

    /// Creates the tables on `writer`, empties them when their schema version is old, opens the
    /// reading connection and reads the checkpoint.
    fn init(path: &Path, writer: Connection, schema: &str) -> Result<Self, ProjectionError> {
        let to_error = sqlite_error(path);
        writer.execute_batch(schema).map_err(&to_error)?;
        let version: i64 = writer.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(&to_error)?;
        if version < SCHEMA_VERSION {
            // Tables added since the file was written are empty for events before its checkpoint,
            // so the projections are rebuilt from position 0 on the new schema.
            writer
                .execute_batch(&format!(
                    "BEGIN; DELETE FROM centres; DELETE FROM sessions; DELETE FROM beneficiaries; DELETE FROM appointments;
                     DELETE FROM revoked_certificates; DELETE FROM checkpoint; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(&to_error)?;
            if version > 0 {
                info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "projection schema changed; rebuilding from position 0");
            }
        }
        writer.execute_batch(APPLY_PRAGMAS).map_err(&to_error)?;
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(&to_error)?;
        reader.execute_batch("PRAGMA busy_timeout=5000;").map_err(&to_error)?;
        let checkpoint: u64 = writer
            .query_row("SELECT position FROM checkpoint WHERE name = ?1", params![CHECKPOINT_NAME], |row| row.get(0))
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok(0),
                other => Err(other),
            })
            .map_err(&to_error)?;
        let (position, _) = watch::channel(checkpoint);
        info!(path = %path.display(), checkpoint, "projections opened");
        Ok(Self { path: path.to_owned(), writer: Mutex::new(writer), reader: Mutex::new(reader), position })
    }

    /// Returns the position of the last applied event.
    pub fn checkpoint(&self) -> u64 {
        *self.position.borrow()
    }

    /// Applies events in one transaction, in order, and moves the checkpoint to the last one.
    ///
    /// Events at or below the checkpoint are ignored, so a batch read twice is harmless. Each row
    /// the batch touches is written once (see [`batch`]).
    pub fn apply_batch(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        let page = DecodedPage::decode_after(events, self.checkpoint())?;
        self.apply_decoded(&page)
    }

    /// Applies a page decoded by [`DecodedPage::decode`] like [`Projections::apply_batch`], so that
    /// several projectors can share one decode.
    pub fn apply_decoded(&self, page: &DecodedPage<'_>) -> Result<u64, ProjectionError> {
        self.commit_batch(|transaction, checkpoint| {
            let mut batch = batch::StatusBatch::default();
            for (recorded, event) in page.after(*checkpoint) {
                batch.apply(transaction, recorded, event)?;
                *checkpoint = recorded.position;
            }
            batch.flush(transaction)
        })
    }

    /// Applies events like [`Projections::apply_batch`], but with one SQL statement per event
    /// and no cache: the reference implementation the batched path is tested against.
    pub fn apply_batch_per_event(&self, events: &[RecordedEvent]) -> Result<u64, ProjectionError> {
        let page = DecodedPage::decode_after(events, self.checkpoint())?;
        self.commit_batch(|transaction, checkpoint| {
            for (recorded, event) in page.after(*checkpoint) {
                apply::apply_event(transaction, recorded, event)?;
                *checkpoint = recorded.position;
            }
            Ok(())
        })
    }

    /// Runs `apply` and the checkpoint update in one transaction, then publishes the checkpoint.
    fn commit_batch(&self, apply: impl FnOnce(&rusqlite::Transaction<'_>, &mut u64) -> rusqlite::Result<()>) -> Result<u64, ProjectionError> {
        let to_error = sqlite_error(&self.path);
        let mut connection = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let transaction = connection.transaction().map_err(&to_error)?;
        let mut checkpoint = self.checkpoint();
        apply(&transaction, &mut checkpoint).map_err(&to_error)?;
        transaction
            .prepare_cached(
                "INSERT INTO checkpoint (name, position) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .and_then(|mut statement| statement.execute(params![CHECKPOINT_NAME, checkpoint]))
            .map_err(&to_error)?;
        transaction.commit().map_err(&to_error)?;
        self.position.send_replace(checkpoint);
        Ok(checkpoint)
    }

    /// Deletes every row and resets the checkpoint to 0, so the projector rebuilds from the start.
    pub fn reset(&self) -> Result<(), ProjectionError> {
        let to_error = sqlite_error(&self.path);
        let connection = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connection
            .execute_batch(
                "BEGIN; DELETE FROM centres; DELETE FROM sessions; DELETE FROM beneficiaries;
                 DELETE FROM appointments; DELETE FROM revoked_certificates; DELETE FROM checkpoint; COMMIT;",
            )
            .map_err(&to_error)?;
        self.position.send_replace(0);
        Ok(())
    }

    /// Catches up with the store, then follows it until the store's head channel closes.
    ///
    /// Returns an error, after logging it, when an event cannot be applied: the projector stops
    /// rather than skip an event.
    pub async fn run(self: Arc<Self>, store: Arc<dyn EventStore>) -> Result<(), ProjectionError> {
        follow(self, store).await
    }

    /// Waits until the projector has applied `position`, for read-your-writes after a command.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        wait_for_position(&self.position, position, timeout).await
    }

    fn with_reader<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ProjectionError> {
        let connection = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&connection).map_err(sqlite_error(&self.path))
    }
}
