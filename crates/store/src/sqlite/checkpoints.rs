//! Signed checkpoints and the log's origin in SQLite (tables `checkpoints` and `log_info`).
//!
//! A checkpoint is stored only when its body names this log's origin and its root equals the
//! root of this log's tree at its size, both checked inside the inserting transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};

use super::tree::NodeTable;
use super::{backend_error, writer};
use crate::checkpoint::parse_checkpoint;
use crate::merkle::{self, Hash, ProofRequestError};
use crate::{StoreError, StoredCheckpoint};

/// Columns of `checkpoints` in the order [`decode_checkpoint`] reads them.
const CHECKPOINT_COLUMNS: &str = "id, tree_size, root_hash, note, created_at_ms";

/// Reads the log's origin.
pub(super) fn read_origin(connection: &Connection, path: &Path) -> Result<String, StoreError> {
    connection
        .prepare_cached("SELECT value FROM log_info WHERE name = 'origin'")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
        .map_err(|err| backend_error(path, "read the log origin", err))?
        .ok_or_else(|| backend_error(path, "read the log origin", "table log_info has no origin"))
}

/// Checks a signed checkpoint against the log and stores it, in one write transaction.
pub(super) fn insert_checkpoint(
    connection: &mut Connection,
    path: &Path,
    note: &str,
) -> Result<StoredCheckpoint, StoreError> {
    let (checkpoint, _) =
        parse_checkpoint(note).map_err(|err| StoreError::InvalidCheckpoint(err.to_string()))?;

    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| backend_error(path, "begin the checkpoint transaction", err))?;

    let origin = read_origin(&transaction, path)?;
    if checkpoint.origin != origin {
        return Err(StoreError::InvalidCheckpoint(format!(
            "its origin {:?} is not this log's origin {origin:?}",
            checkpoint.origin
        )));
    }

    let root = match merkle::root_at(
        &mut NodeTable::new(&transaction, path),
        checkpoint.tree_size,
    ) {
        Ok(root) => root,
        Err(StoreError::InvalidProofRequest(ProofRequestError::TreeSizeBeyondLog {
            log_size,
            ..
        })) => {
            return Err(StoreError::InvalidCheckpoint(format!(
                "its tree size {} is beyond the log, which has {log_size} events",
                checkpoint.tree_size
            )));
        }
        Err(err) => return Err(err),
    };
    if root != checkpoint.root_hash {
        return Err(StoreError::InvalidCheckpoint(format!(
            "its root hash differs from the log's root at tree size {}",
            checkpoint.tree_size
        )));
    }

    let action = || format!("store the checkpoint of tree size {}", checkpoint.tree_size);
    let tree_size = i64::try_from(checkpoint.tree_size).map_err(|_| {
        backend_error(
            path,
            action(),
            "the tree size exceeds SQLite's integer range",
        )
    })?;
    let created_at_ms = writer::now_ms();
    transaction
        .execute(
            "INSERT INTO checkpoints (tree_size, root_hash, note, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            (
                tree_size,
                checkpoint.root_hash.as_slice(),
                note,
                created_at_ms,
            ),
        )
        .map_err(|err| backend_error(path, action(), err))?;
    let id = transaction.last_insert_rowid();
    let id = u64::try_from(id).map_err(|_| {
        backend_error(
            path,
            action(),
            format!("SQLite assigned a negative id {id}"),
        )
    })?;
    transaction
        .commit()
        .map_err(|err| backend_error(path, action(), err))?;

    Ok(StoredCheckpoint {
        id,
        tree_size: checkpoint.tree_size,
        root_hash: checkpoint.root_hash,
        note: note.to_owned(),
        created_at_ms,
    })
}

/// Reads the checkpoint with the highest id, `None` when none is stored.
pub(super) fn latest(
    connection: &Connection,
    path: &Path,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let action = "read the latest checkpoint";
    let row = connection
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY id DESC LIMIT 1"
        ))
        .and_then(|mut statement| {
            statement
                .query_row([], |row| Ok(decode_checkpoint(row, path)))
                .optional()
        })
        .map_err(|err| backend_error(path, action, err))?;
    row.transpose()
}

/// Reads up to `limit` checkpoints with id above `after_id`, in id order.
pub(super) fn read_after(
    connection: &Connection,
    path: &Path,
    after_id: u64,
    limit: usize,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let Ok(after_id) = i64::try_from(after_id) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);

    let action = || format!("read checkpoints after id {after_id}");
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .map_err(|err| backend_error(path, action(), err))?;
    let rows = statement
        .query_map((after_id, limit), |row| Ok(decode_checkpoint(row, path)))
        .map_err(|err| backend_error(path, action(), err))?;

    let mut checkpoints = Vec::new();
    for row in rows {
        checkpoints.push(row.map_err(|err| backend_error(path, action(), err))??);
    }
    Ok(checkpoints)
}

/// Decodes one row selected with [`CHECKPOINT_COLUMNS`].
fn decode_checkpoint(row: &Row<'_>, path: &Path) -> Result<StoredCheckpoint, StoreError> {
    let id: i64 = row
        .get(0)
        .map_err(|err| backend_error(path, "decode a checkpoint id", err))?;
    let action = || format!("decode checkpoint {id}");
    let column_error = |err: rusqlite::Error| backend_error(path, action(), err);

    let tree_size: i64 = row.get(1).map_err(column_error)?;
    let root_hash: Vec<u8> = row.get(2).map_err(column_error)?;
    let note: String = row.get(3).map_err(column_error)?;
    let created_at_ms: i64 = row.get(4).map_err(column_error)?;

    let negative = |column: &str, value: i64| {
        backend_error(path, action(), format!("{column} {value} is negative"))
    };
    Ok(StoredCheckpoint {
        id: u64::try_from(id).map_err(|_| negative("id", id))?,
        tree_size: u64::try_from(tree_size).map_err(|_| negative("tree_size", tree_size))?,
        root_hash: Hash::try_from(root_hash.as_slice()).map_err(|_| {
            backend_error(
                path,
                action(),
                format!("root_hash has {} bytes, not 32", root_hash.len()),
            )
        })?,
        note,
        created_at_ms,
    })
}
