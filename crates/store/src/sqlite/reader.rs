//! Read side of the SQLite store: a pool of read-only connections and the queries they run.
//!
//! Every read is a single SELECT, and in WAL mode each SELECT reads one committed snapshot. The
//! writer assigns positions inside its transaction and commits them in order, so a snapshot that
//! contains position N also contains every position below N. A catch-up reader that continues
//! after the last position it received can therefore never skip an event.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Row, Rows};

use super::{backend_error, connection};
use crate::{Metadata, RecordedEvent, StoreError};

/// Maximum number of idle read connections kept open. More reads may run at once, each on a
/// connection opened for it and closed afterwards.
const MAX_IDLE_READERS: usize = 4;

/// Columns of `events` in the order [`decode_event`] reads them.
const EVENT_COLUMNS: &str =
    "position, stream_id, revision, event_type, schema_version, payload, metadata, recorded_at_ms";

/// Idle read-only connections to one database file.
pub(super) struct ReaderPool {
    /// Database file the connections read.
    path: PathBuf,
    /// Connections not in use, taken by one read at a time.
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf) -> ReaderPool {
        ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` on an idle connection, or on a new one when none is idle, then keeps the
    /// connection for later reads unless enough are idle already. Blocks on SQLite I/O.
    pub(super) fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock_idle().pop();
        let connection = match idle {
            Some(connection) => connection,
            None => connection::open_reader(&self.path)?,
        };

        let result = read(&connection);

        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }

        result
    }

    /// Closes every idle connection.
    pub(super) fn close_idle(&self) {
        self.lock_idle().clear();
    }

    /// Locks the idle list. A panic while it was locked cannot leave the list inconsistent, so a
    /// poisoned lock is used as it is.
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the events of one stream with revision `from_revision` or above, in revision order.
pub(super) fn read_stream(
    connection: &Connection,
    path: &Path,
    stream_id: &str,
    from_revision: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // Revisions are stored as SQLite integers, which are signed, so none exceeds i64::MAX.
    let Ok(from_revision) = i64::try_from(from_revision) else {
        return Ok(Vec::new());
    };

    let action = || format!("read stream {stream_id}");
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE stream_id = ?1 AND revision >= ?2 ORDER BY revision"
        ))
        .map_err(|err| backend_error(path, action(), err))?;
    let rows = statement
        .query((stream_id, from_revision))
        .map_err(|err| backend_error(path, action(), err))?;

    collect_events(rows, path, &action)
}

/// Reads up to `limit` events with position above `after`, in position order.
pub(super) fn read_all(
    connection: &Connection,
    path: &Path,
    after: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);

    let action = || format!("read events after position {after}");
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .map_err(|err| backend_error(path, action(), err))?;
    let rows = statement
        .query((after, limit))
        .map_err(|err| backend_error(path, action(), err))?;

    collect_events(rows, path, &action)
}

/// Reads the position of the last event, or 0 when the store is empty.
pub(super) fn head_position(connection: &Connection, path: &Path) -> Result<u64, StoreError> {
    let position: Option<i64> = connection
        .query_row(
            "SELECT position FROM events ORDER BY position DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(|err| backend_error(path, "read the head position", err))?;

    match position {
        None => Ok(0),
        Some(position) => to_unsigned(position, path, "position", position),
    }
}

/// Decodes every row of a query over [`EVENT_COLUMNS`]; `action` names the read in errors.
fn collect_events(
    mut rows: Rows<'_>,
    path: &Path,
    action: &dyn Fn() -> String,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    loop {
        let row = rows
            .next()
            .map_err(|err| backend_error(path, action(), err))?;
        let Some(row) = row else {
            return Ok(events);
        };
        events.push(decode_event(row, path)?);
    }
}

/// Decodes one row selected with [`EVENT_COLUMNS`]. A value of the wrong type or range, or
/// metadata that is not valid JSON, fails with an error naming the event's position.
fn decode_event(row: &Row<'_>, path: &Path) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row
        .get(0)
        .map_err(|err| backend_error(path, "decode an event position", err))?;
    let column_error = |err: rusqlite::Error| {
        backend_error(
            path,
            format!("decode the event at position {position}"),
            err,
        )
    };

    let stream_id: String = row.get(1).map_err(column_error)?;
    let revision: i64 = row.get(2).map_err(column_error)?;
    let event_type: String = row.get(3).map_err(column_error)?;
    let schema_version: i64 = row.get(4).map_err(column_error)?;
    let payload: Vec<u8> = row.get(5).map_err(column_error)?;
    let metadata: String = row.get(6).map_err(column_error)?;
    let recorded_at_ms: i64 = row.get(7).map_err(column_error)?;

    let metadata: Metadata = serde_json::from_str(&metadata).map_err(|err| {
        backend_error(
            path,
            format!("decode the metadata of the event at position {position}"),
            err,
        )
    })?;
    let schema_version = u16::try_from(schema_version).map_err(|_| {
        backend_error(
            path,
            format!("decode the event at position {position}"),
            format!("schema_version {schema_version} is outside 0..=65535"),
        )
    })?;

    Ok(RecordedEvent {
        position: to_unsigned(position, path, "position", position)?,
        stream_id,
        revision: to_unsigned(revision, path, "revision", position)?,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at_ms,
    })
}

/// Converts a stored integer that must not be negative, naming the column and event position in
/// the error.
fn to_unsigned(value: i64, path: &Path, column: &str, position: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        backend_error(
            path,
            format!("decode the event at position {position}"),
            format!("{column} {value} is negative"),
        )
    })
}
