//! The Merkle tree in SQLite: table `merkle_nodes` stores the hash of every perfect subtree, and
//! the writer adds a leaf and the parents it completes in the transaction that inserts the
//! event, so events and nodes always commit together.
//!
//! Roots and proofs read O(log n) nodes (O(log² n) along a ragged right edge) through
//! [`NodeTable`], never the events.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tracing::{debug, info};

use super::{backend_error, reader};
use crate::merkle::{self, event_leaf_hash, node_hash, Hash, NodeReader};
use crate::StoreError;

/// Number of events whose nodes are built per transaction when a file has events without nodes,
/// so that a large backlog neither holds the write lock long nor grows the WAL without bound.
const BUILD_BATCH_EVENTS: usize = 10_000;

/// The last node inserted at each level of the tree in one transaction, so that adding a leaf
/// finds its left siblings without reading them back. It is valid only while none of those
/// inserts is rolled back, so its owner drops it together with a rollback.
#[derive(Debug, Default)]
pub(super) struct RightEdge {
    /// Index and hash of the last node inserted at each level, by level.
    last: Vec<Option<(u64, Hash)>>,
}

impl RightEdge {
    /// Returns the node at `(level, index)` when it was the last one inserted at its level.
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let (last_index, hash) = (*self.last.get(level as usize)?)?;
        (last_index == index).then_some(hash)
    }

    fn record(&mut self, level: u32, index: u64, hash: Hash) {
        let level = level as usize;
        if self.last.len() <= level {
            self.last.resize(level + 1, None);
        }
        self.last[level] = Some((index, hash));
    }
}

/// Adds the leaf at `leaf_index` and every parent it completes. Runs inside the caller's
/// transaction; the leaf before it must already be stored. Left siblings come from `edge` when
/// it has them and from the table otherwise.
pub(super) fn append_leaf(
    connection: &Connection,
    path: &Path,
    leaf_index: u64,
    leaf_hash: Hash,
    edge: &mut RightEdge,
) -> Result<(), StoreError> {
    let mut level = 0u32;
    let mut index = leaf_index;
    let mut hash = leaf_hash;
    insert_node(connection, path, level, index, &hash)?;
    edge.record(level, index, hash);

    // A right child completes its parent; the left sibling is already stored.
    while index & 1 == 1 {
        let left = match edge.node(level, index - 1) {
            Some(left) => left,
            None => read_node(connection, path, level, index - 1)?.ok_or_else(|| {
                backend_error(
                    path,
                    format!("add Merkle leaf {leaf_index}"),
                    format!(
                        "the left sibling at level {level}, index {} is missing",
                        index - 1
                    ),
                )
            })?,
        };
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        insert_node(connection, path, level, index, &hash)?;
        edge.record(level, index, hash);
    }

    Ok(())
}

/// Returns the number of leaves stored: one more than the highest leaf index, or 0.
pub(super) fn leaf_count(connection: &Connection, path: &Path) -> Result<u64, StoreError> {
    let highest: Option<i64> = connection
        .prepare_cached("SELECT idx FROM merkle_nodes WHERE level = 0 ORDER BY idx DESC LIMIT 1")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
        .map_err(|err| backend_error(path, "read the Merkle leaf count", err))?;

    match highest {
        None => Ok(0),
        Some(index) => u64::try_from(index).map(|index| index + 1).map_err(|_| {
            backend_error(
                path,
                "read the Merkle leaf count",
                format!("stored leaf index {index} is negative"),
            )
        }),
    }
}

/// Builds the nodes of every event that has none, in batches, and returns how many leaves were
/// added. A file from before the Merkle tree existed gets all its nodes here, once. Afterwards
/// the writer keeps nodes and events in step, so this finds nothing to do.
pub(super) fn build_missing_nodes(
    connection: &mut Connection,
    path: &Path,
) -> Result<u64, StoreError> {
    let head = reader::head_position(connection, path)?;
    let start = leaf_count(connection, path)?;
    if start > head {
        return Err(backend_error(
            path,
            "check the Merkle tree",
            format!("the tree has {start} leaves but the log only {head} events"),
        ));
    }
    if start == head {
        return Ok(0);
    }

    // NOTE: open blocks until a large backlog is built; only these log lines show progress.
    info!(
        path = %path.display(),
        from_position = start + 1,
        to_position = head,
        "building Merkle nodes for events stored without them"
    );

    let mut built = 0u64;
    loop {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| backend_error(path, "begin a Merkle build transaction", err))?;

        // Read the leaf count again inside the write lock, in case another process built or
        // appended since.
        let after = leaf_count(&transaction, path)?;
        let events = reader::read_all(&transaction, path, after, BUILD_BATCH_EVENTS)?;
        if events.is_empty() {
            break;
        }

        let mut edge = RightEdge::default();
        for (offset, event) in events.iter().enumerate() {
            let expected = after + 1 + offset as u64;
            if event.position != expected {
                return Err(backend_error(
                    path,
                    "build the Merkle tree",
                    format!(
                        "expected the event at position {expected}, found position {}; \
                         the log has a gap",
                        event.position
                    ),
                ));
            }
            append_leaf(
                &transaction,
                path,
                expected - 1,
                event_leaf_hash(event),
                &mut edge,
            )?;
        }

        transaction
            .commit()
            .map_err(|err| backend_error(path, "commit a Merkle build transaction", err))?;
        built += events.len() as u64;
        debug!(path = %path.display(), built, "Merkle build batch committed");
    }

    info!(path = %path.display(), leaves = built, "built missing Merkle nodes");
    Ok(built)
}

/// Reads nodes from `merkle_nodes` for proofs and roots. The leaf count is read once, on first
/// use, so that every check in one request uses the same size. Nodes never change once written.
pub(super) struct NodeTable<'c> {
    /// Connection to read from.
    connection: &'c Connection,
    /// Database file, for errors.
    path: &'c Path,
    /// Leaf count read on first use.
    leaf_count: Option<u64>,
}

impl<'c> NodeTable<'c> {
    pub(super) fn new(connection: &'c Connection, path: &'c Path) -> NodeTable<'c> {
        NodeTable {
            connection,
            path,
            leaf_count: None,
        }
    }
}

impl NodeReader for NodeTable<'_> {
    type Error = StoreError;

    fn leaf_count(&mut self) -> Result<u64, StoreError> {
        if let Some(count) = self.leaf_count {
            return Ok(count);
        }
        let count = leaf_count(self.connection, self.path)?;
        self.leaf_count = Some(count);
        Ok(count)
    }

    fn perfect_node(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        read_node(self.connection, self.path, level, index)?.ok_or(StoreError::InvalidProofRequest(
            merkle::ProofRequestError::NodeMissing { level, index },
        ))
    }
}

/// Reads one node, `None` when it is not stored.
fn read_node(
    connection: &Connection,
    path: &Path,
    level: u32,
    index: u64,
) -> Result<Option<Hash>, StoreError> {
    let Ok(signed_index) = i64::try_from(index) else {
        return Ok(None);
    };
    let action = || format!("read Merkle node at level {level}, index {index}");

    let bytes: Option<Vec<u8>> = connection
        .prepare_cached("SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx = ?2")
        .and_then(|mut statement| {
            statement
                .query_row((level, signed_index), |row| row.get(0))
                .optional()
        })
        .map_err(|err| backend_error(path, action(), err))?;

    bytes
        .map(|bytes| {
            Hash::try_from(bytes.as_slice()).map_err(|_| {
                backend_error(
                    path,
                    action(),
                    format!("the stored hash has {} bytes, not 32", bytes.len()),
                )
            })
        })
        .transpose()
}

/// Inserts one node; a node that already exists is an error, because nodes are written once.
fn insert_node(
    connection: &Connection,
    path: &Path,
    level: u32,
    index: u64,
    hash: &Hash,
) -> Result<(), StoreError> {
    let action = || format!("store Merkle node at level {level}, index {index}");
    let signed_index = i64::try_from(index)
        .map_err(|_| backend_error(path, action(), "the index exceeds SQLite's integer range"))?;

    connection
        .prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
        .and_then(|mut statement| statement.execute((level, signed_index, hash.as_slice())))
        .map_err(|err| backend_error(path, action(), err))?;
    Ok(())
}
