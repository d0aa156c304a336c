//! Private copies of a data folder's SQLite files.
//!
//! SQLite creates `-wal` and `-shm` files beside a WAL database even when the connection is
//! read-only, and a folder copied from a stopped or killed server may hold commits that exist
//! only in `events.db-wal`. Copying the database together with its `-wal` file into a temporary
//! folder, then opening the copy, solves both: the audited folder is never written, and every
//! committed event is seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rusqlite::{Connection, OpenFlags};
use store::SqliteStore;
use tempfile::TempDir;
use tracing::info;

/// Name of the event log inside a data folder.
pub const EVENTS_DB: &str = "events.db";
/// Name of the status projections inside a data folder.
pub const PROJECTIONS_DB: &str = "projections.db";
/// Name of the certificate vault inside a data folder.
pub const CERTIFICATES_DB: &str = "certificates.db";
/// Name of the issuer-key folder inside a data folder.
pub const KEYS_DIR: &str = "keys";

/// Suffixes of the files that belong to one SQLite database: the database itself, its WAL, and a
/// rollback journal that a crash may have left.
const DATABASE_FILE_SUFFIXES: [&str; 3] = ["", "-wal", "-journal"];

/// A data folder under audit and the temporary folder that holds copies of its databases.
pub struct Snapshot {
    /// Data folder being audited; only ever read.
    source: PathBuf,
    /// Temporary folder with the copies; deleted when the snapshot is dropped.
    copies: TempDir,
}

impl Snapshot {
    /// Checks that `data_dir` is a data folder and creates the temporary folder for the copies.
    pub fn open(data_dir: &Path) -> anyhow::Result<Snapshot> {
        if !data_dir.is_dir() {
            bail!(
                "data folder {} not found; pass the folder that contains events.db",
                data_dir.display()
            );
        }
        if !data_dir.join(EVENTS_DB).is_file() {
            bail!(
                "{} has no {EVENTS_DB}; pass a vaxledger data folder",
                data_dir.display()
            );
        }

        let copies = tempfile::Builder::new()
            .prefix("vaxledger-audit-")
            .tempdir()
            .context("creating a temporary folder for the database copies failed; set TMPDIR")?;

        let source = data_dir
            .canonicalize()
            .with_context(|| format!("resolving {} failed", data_dir.display()))?;
        let copies_path = copies
            .path()
            .canonicalize()
            .context("resolving the temporary folder failed")?;
        if copies_path.starts_with(&source) {
            bail!(
                "the temporary folder {} is inside the data folder {}; set TMPDIR to a folder \
                 outside it",
                copies_path.display(),
                source.display()
            );
        }

        Ok(Snapshot { source, copies })
    }

    /// Returns the audited data folder.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Returns the path of a file in the audited data folder.
    pub fn source_file(&self, name: &str) -> PathBuf {
        self.source.join(name)
    }

    /// Copies a database of the data folder with its `-wal` and `-journal` files, when present,
    /// into the temporary folder, and returns the copy's path; `None` when the database is
    /// missing. Copying the same database twice returns the first copy. The temporary folder
    /// needs as much free space as the files copied.
    ///
    /// NOTE: the files are copied one after the other, so the copy is consistent only when no
    /// server writes to the folder meanwhile; audit a stopped server's folder or a copy of it.
    pub fn copy_database(&self, name: &str) -> anyhow::Result<Option<PathBuf>> {
        let original = self.source.join(name);
        let copy = self.copies.path().join(name);
        if copy.exists() {
            return Ok(Some(copy));
        }
        if !original.is_file() {
            return Ok(None);
        }

        for suffix in DATABASE_FILE_SUFFIXES {
            let from = PathBuf::from(format!("{}{suffix}", original.display()));
            if !from.is_file() {
                continue;
            }
            let to = PathBuf::from(format!("{}{suffix}", copy.display()));
            let bytes = std::fs::copy(&from, &to).with_context(|| {
                format!("copying {} to {} failed", from.display(), to.display())
            })?;
            info!(from = %from.display(), to = %to.display(), bytes, "copied database file for audit");
        }
        Ok(Some(copy))
    }

    /// Copies `events.db` and opens the copy as a read-only event store.
    pub fn open_events(&self) -> anyhow::Result<Arc<SqliteStore>> {
        let copy = self
            .copy_database(EVENTS_DB)?
            .with_context(|| format!("{} has no {EVENTS_DB}", self.source.display()))?;
        SqliteStore::open_read_only(&copy).with_context(|| {
            format!(
                "{} cannot be read as an event store (corrupt or truncated file?)",
                self.source_file(EVENTS_DB).display()
            )
        })
    }

    /// Copies a database and opens the copy with a read-only SQLite connection; `None` when the
    /// database is missing.
    pub fn open_connection(&self, name: &str) -> anyhow::Result<Option<Connection>> {
        let Some(copy) = self.copy_database(name)? else {
            return Ok(None);
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&copy, flags)
            .with_context(|| format!("opening {} failed", self.source_file(name).display()))?;

        // The first query that reads the file: a corrupt or non-SQLite file fails here.
        connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get::<_, i64>(0))
            .with_context(|| {
                format!(
                    "{} is not a readable SQLite database (corrupt or truncated file?)",
                    self.source_file(name).display()
                )
            })?;
        Ok(Some(connection))
    }
}

/// Returns whether a table exists in the connection's main database.
pub fn has_table(connection: &Connection, table: &str) -> anyhow::Result<bool> {
    let count: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )
        .with_context(|| format!("looking up table {table} failed"))?;
    Ok(count > 0)
}
