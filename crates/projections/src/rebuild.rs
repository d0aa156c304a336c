//! Rebuild of a projection file from position 0 into a fresh file that replaces the old one
//! only when complete.
//!
//! The fresh file is written without a journal and without fsync (`journal_mode=OFF`,
//! `synchronous=OFF`), and the indexes that the apply path does not read are created once at
//! the end, by sorting, rather than kept up to date row by row. Both are safe only because
//! the file is not in use until it is finished: a crash leaves a partial `*.rebuild` file that
//! the next rebuild deletes, and the old file stays as it was. When done, the fresh file is
//! switched to WAL, flushed to disk, and renamed over the old one.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::ProjectionError;

/// Settings of the writing connection of a fresh rebuild file.
const REBUILD_PRAGMAS: &str = "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE;
     PRAGMA cache_size=-65536;";

/// Returns the path of the fresh file that a rebuild of `target` writes.
pub(crate) fn fresh_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".rebuild");
    PathBuf::from(name)
}

/// Deletes a partial rebuild file left by a crash and opens a new one for writing.
pub(crate) fn open_fresh(target: &Path) -> Result<Connection, ProjectionError> {
    let fresh = fresh_path(target);
    let to_error = crate::sqlite_error(&fresh);
    remove_with_sidecars(&fresh)?;
    let writer = Connection::open(&fresh).map_err(&to_error)?;
    writer.execute_batch(REBUILD_PRAGMAS).map_err(&to_error)?;
    Ok(writer)
}

/// Splits a schema into the statements needed while applying and the `CREATE INDEX`
/// statements that can wait until the end: every index not named in `keep`.
pub(crate) fn split_schema(schema: &str, keep: &[&str]) -> (String, String) {
    let mut now = String::new();
    let mut deferred = String::new();
    for statement in schema.split(';').map(str::trim).filter(|statement| !statement.is_empty()) {
        let index_name = statement.strip_prefix("CREATE INDEX IF NOT EXISTS ").and_then(|rest| rest.split_whitespace().next());
        let target = match index_name {
            Some(name) if !keep.contains(&name) => &mut deferred,
            _ => &mut now,
        };
        target.push_str(statement);
        target.push_str(";\n");
    }
    (now, deferred)
}

/// Creates the deferred indexes, switches the fresh file to WAL, closes it, flushes it to disk
/// and renames it over `target`.
///
/// The caller must hold the only connections to the fresh file, and no process may have
/// `target` open. The `-wal` and `-shm` files of `target` are deleted before the rename,
/// because SQLite would replay an old WAL into the new file.
pub(crate) fn finish(writer: Connection, deferred: &str, target: &Path) -> Result<(), ProjectionError> {
    let fresh = fresh_path(target);
    let to_error = crate::sqlite_error(&fresh);
    // The deferred indexes are built by sorting whole tables, so the sort spills to files
    // rather than to memory, which would grow with the length of the log.
    writer.execute_batch("PRAGMA temp_store=FILE;").map_err(&to_error)?;
    writer.execute_batch(deferred).map_err(&to_error)?;
    writer.execute_batch("PRAGMA journal_mode=WAL;").map_err(&to_error)?;
    writer.close().map_err(|(_, err)| to_error(err))?;

    let io_error = |err: std::io::Error| ProjectionError::Sqlite { path: fresh.clone(), cause: err.to_string() };
    std::fs::File::open(&fresh).and_then(|file| file.sync_all()).map_err(io_error)?;
    for sidecar in ["-wal", "-shm"] {
        remove_if_present(&sidecar_path(target, sidecar))?;
    }
    std::fs::rename(&fresh, target).map_err(io_error)?;
    if let Some(folder) = target.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::File::open(folder).and_then(|folder| folder.sync_all()).map_err(io_error)?;
    }
    tracing::info!(path = %target.display(), "projection rebuild swapped in");
    Ok(())
}

fn sidecar_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_with_sidecars(path: &Path) -> Result<(), ProjectionError> {
    remove_if_present(path)?;
    for sidecar in ["-journal", "-wal", "-shm"] {
        remove_if_present(&sidecar_path(path, sidecar))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), ProjectionError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(ProjectionError::Sqlite { path: path.to_owned(), cause: err.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_named_indexes() {
        let schema = "CREATE TABLE t (a, b);\nCREATE INDEX IF NOT EXISTS t_by_a ON t (a);\nCREATE INDEX IF NOT EXISTS t_by_b ON t (b);\n";
        let (now, deferred) = split_schema(schema, &["t_by_a"]);
        assert_eq!(now, "CREATE TABLE t (a, b);\nCREATE INDEX IF NOT EXISTS t_by_a ON t (a);\n");
        assert_eq!(deferred, "CREATE INDEX IF NOT EXISTS t_by_b ON t (b);\n");
    }
}
