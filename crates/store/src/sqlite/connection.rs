//! Opening SQLite connections with the store's settings, and creating or checking the schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tracing::info;

use super::{backend_error, reader};
use crate::StoreError;

/// Schema version kept in `PRAGMA user_version`; a file with a higher one was written by a newer
/// release and is rejected.
const SCHEMA_VERSION: i64 = 1;

/// Value that `PRAGMA synchronous` reads back as when set to FULL.
const SYNCHRONOUS_FULL: i64 = 2;

/// How long a connection waits for a lock held by another connection before failing with
/// `SQLITE_BUSY`. The writer holds the write lock for one group commit, normally far shorter.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the tables. Positions are assigned by the writer, never by SQLite's rowid allocation,
/// and no row is ever deleted, so positions stay gap-free.
const CREATE_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        payload BLOB NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at_ms INTEGER NOT NULL,
        UNIQUE (stream_id, revision)
    );
    CREATE TABLE streams (
        stream_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID;
";

/// Opens the read-write connection of the writer thread, creating the file and the schema when
/// missing. Returns the connection and the current head position.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, u64), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags)
        .map_err(|err| backend_error(path, "open the database file", err))?;

    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|err| backend_error(path, "set busy_timeout", err))?;

    // This is the first statement that reads the file, so a file that is not an SQLite database
    // fails here.
    let journal_mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|err| backend_error(path, "switch to WAL mode", err))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(backend_error(
            path,
            "switch to WAL mode",
            format!("SQLite kept journal_mode={journal_mode}"),
        ));
    }

    // FULL syncs the WAL on every commit, so a commit that returned survives a power loss.
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(|err| backend_error(path, "set synchronous=FULL", err))?;
    let synchronous: i64 = connection
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .map_err(|err| backend_error(path, "read back synchronous", err))?;
    if synchronous != SYNCHRONOUS_FULL {
        return Err(backend_error(
            path,
            "set synchronous=FULL",
            format!("SQLite kept synchronous={synchronous}"),
        ));
    }

    create_schema_if_missing(&mut connection, path)?;
    check_schema(&connection, path)?;

    let head = reader::head_position(&connection, path)?;
    Ok((connection, head))
}

/// Opens a read-only connection; it can never change the file.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .map_err(|err| backend_error(path, "open the database file read-only", err))?;

    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|err| backend_error(path, "set busy_timeout", err))?;

    Ok(connection)
}

/// Creates the tables in a new, empty file. A file that already has tables but no schema
/// version belongs to another program and is rejected rather than changed.
fn create_schema_if_missing(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| backend_error(path, "begin the schema transaction", err))?;

    let version = schema_version(&transaction, path)?;
    if version != 0 {
        return Ok(());
    }

    let table_count: i64 = transaction
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(|err| backend_error(path, "list existing tables", err))?;
    if table_count != 0 {
        return Err(backend_error(
            path,
            "create the schema",
            "the file already has tables but no event store schema version; \
             it is not an event store",
        ));
    }

    transaction
        .execute_batch(CREATE_SCHEMA)
        .map_err(|err| backend_error(path, "create the schema", err))?;
    transaction
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|err| backend_error(path, "set the schema version", err))?;
    transaction
        .commit()
        .map_err(|err| backend_error(path, "commit the new schema", err))?;

    info!(path = %path.display(), schema_version = SCHEMA_VERSION, "created event store schema");
    Ok(())
}

/// Checks that the file has this release's schema, by version and by preparing every query the
/// store runs, so that a foreign or damaged file fails at open and not on the first append.
pub(super) fn check_schema(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let version = schema_version(connection, path)?;
    if version != SCHEMA_VERSION {
        return Err(backend_error(
            path,
            "check the schema",
            format!(
                "schema version is {version}, but this release reads only version \
                 {SCHEMA_VERSION}; 0 means the file is not an event store"
            ),
        ));
    }

    for query in [
        "SELECT position, stream_id, revision, event_type, schema_version, payload, metadata, \
         recorded_at_ms FROM events LIMIT 0",
        "SELECT stream_id, revision FROM streams LIMIT 0",
    ] {
        connection
            .prepare(query)
            .map_err(|err| backend_error(path, "check the schema", err))?;
    }

    Ok(())
}

/// Reads `PRAGMA user_version`.
fn schema_version(connection: &Connection, path: &Path) -> Result<i64, StoreError> {
    connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|err| backend_error(path, "read the schema version", err))
}
