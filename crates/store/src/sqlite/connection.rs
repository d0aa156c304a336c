//! Opening SQLite connections with the store's settings, and creating, upgrading or checking the
//! schema.

use std::path::Path;
use std::time::Duration;

use rand::RngCore;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tracing::info;

use super::{backend_error, reader, tree};
use crate::checkpoint::ORIGIN_PREFIX;
use crate::StoreError;

/// Schema version kept in `PRAGMA user_version`; a file with a higher one was written by a newer
/// release and is rejected. Version 1 had only the events; version 2 added the Merkle tree,
/// the checkpoints and the log's origin, and opening a version 1 file read-write upgrades it.
const SCHEMA_VERSION: i64 = 2;

/// Schema version of files written before the Merkle tree existed.
const SCHEMA_VERSION_WITHOUT_TREE: i64 = 1;

/// Value that `PRAGMA synchronous` reads back as when set to FULL.
const SYNCHRONOUS_FULL: i64 = 2;

/// How long a connection waits for a lock held by another connection before failing with
/// `SQLITE_BUSY`. The writer holds the write lock for one group commit, normally far shorter.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the event tables (schema version 1). Positions are assigned by the writer, never by
/// SQLite's rowid allocation, and no row is ever deleted, so positions stay gap-free.
const CREATE_EVENT_TABLES: &str = "
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

/// Creates the tables added by schema version 2.
///
/// `merkle_nodes` holds the hash of every perfect subtree of the Merkle tree: the node at
/// `(level, idx)` covers the leaves `[idx * 2^level, (idx + 1) * 2^level)`, and level 0 holds
/// the leaf hashes. `checkpoints` holds signed checkpoint notes. Triggers reject any change or
/// deletion of both, because nodes follow from the events and checkpoints are signed statements.
/// `log_info` holds the log's origin.
const CREATE_AUDIT_TABLES: &str = "
    CREATE TABLE merkle_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TRIGGER merkle_nodes_never_updated BEFORE UPDATE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'Merkle nodes are never changed'); END;
    CREATE TRIGGER merkle_nodes_never_deleted BEFORE DELETE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'Merkle nodes are never deleted'); END;
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        tree_size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TRIGGER checkpoints_never_updated BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'signed checkpoints are never changed'); END;
    CREATE TRIGGER checkpoints_never_deleted BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'signed checkpoints are never deleted'); END;
    CREATE TABLE log_info (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
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

    set_synchronous_full(&connection, path)?;

    create_schema_if_missing(&mut connection, path)?;
    check_schema(&connection, path)?;
    tree::build_missing_nodes(&mut connection, path)?;

    let head = reader::head_position(&connection, path)?;
    Ok((connection, head))
}

/// Opens a read-write connection to an existing store, for writes outside the writer thread
/// (signed checkpoints). It never creates the file or changes the schema.
pub(super) fn open_side_writer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .map_err(|err| backend_error(path, "open the database file for checkpoints", err))?;

    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|err| backend_error(path, "set busy_timeout", err))?;
    set_synchronous_full(&connection, path)?;

    Ok(connection)
}

/// Sets `synchronous=FULL`, which syncs the WAL on every commit, so a commit that returned
/// survives a power loss. The setting belongs to the connection, so every writer sets it.
fn set_synchronous_full(connection: &Connection, path: &Path) -> Result<(), StoreError> {
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
    Ok(())
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

/// Creates the tables in a new, empty file, or adds the version 2 tables to a version 1 file.
/// A file that already has tables but no schema version belongs to another program and is
/// rejected rather than changed. The Merkle nodes of existing events are built afterwards by
/// [`tree::build_missing_nodes`].
fn create_schema_if_missing(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| backend_error(path, "begin the schema transaction", err))?;

    let version = schema_version(&transaction, path)?;
    if version == SCHEMA_VERSION_WITHOUT_TREE {
        return upgrade_to_tree_schema(transaction, path);
    }
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
        .execute_batch(CREATE_EVENT_TABLES)
        .map_err(|err| backend_error(path, "create the schema", err))?;
    let origin = create_audit_tables(&transaction, path)?;
    transaction
        .commit()
        .map_err(|err| backend_error(path, "commit the new schema", err))?;

    info!(
        path = %path.display(),
        schema_version = SCHEMA_VERSION,
        origin = %origin,
        "created event store schema"
    );
    Ok(())
}

/// Adds the Merkle, checkpoint and origin tables to a version 1 file and commits.
fn upgrade_to_tree_schema(transaction: Transaction<'_>, path: &Path) -> Result<(), StoreError> {
    let origin = create_audit_tables(&transaction, path)?;
    transaction
        .commit()
        .map_err(|err| backend_error(path, "commit the schema upgrade", err))?;

    info!(
        path = %path.display(),
        from_version = SCHEMA_VERSION_WITHOUT_TREE,
        to_version = SCHEMA_VERSION,
        origin = %origin,
        "upgraded event store schema; the Merkle nodes of existing events are built next"
    );
    Ok(())
}

/// Creates the version 2 tables, stores a new random origin and sets the schema version.
/// Returns the origin.
fn create_audit_tables(transaction: &Transaction<'_>, path: &Path) -> Result<String, StoreError> {
    transaction
        .execute_batch(CREATE_AUDIT_TABLES)
        .map_err(|err| backend_error(path, "create the Merkle and checkpoint tables", err))?;

    let origin = new_origin();
    transaction
        .execute(
            "INSERT INTO log_info (name, value) VALUES ('origin', ?1)",
            [&origin],
        )
        .map_err(|err| backend_error(path, "store the log origin", err))?;

    transaction
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|err| backend_error(path, "set the schema version", err))?;
    Ok(origin)
}

/// Returns a new origin: the prefix and 128 random bits in hex. It names the log, not the
/// host, so a copied or moved data folder keeps it.
fn new_origin() -> String {
    let mut ledger_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut ledger_id);
    let hex: String = ledger_id.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{ORIGIN_PREFIX}{hex}")
}

/// Checks that the file has this release's schema, by version and by preparing every query the
/// store runs, so that a foreign or damaged file fails at open and not on the first append.
pub(super) fn check_schema(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let version = schema_version(connection, path)?;
    if version == SCHEMA_VERSION_WITHOUT_TREE {
        return Err(backend_error(
            path,
            "check the schema",
            "schema version 1 has no Merkle tree yet; open the file read-write once, \
             for example by starting `vaxledger serve` on it or on a copy, to build it",
        ));
    }
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
        "SELECT level, idx, hash FROM merkle_nodes LIMIT 0",
        "SELECT id, tree_size, root_hash, note, created_at_ms FROM checkpoints LIMIT 0",
        "SELECT name, value FROM log_info LIMIT 0",
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
