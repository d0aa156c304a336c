//! Entry points for the store's criterion benchmarks (`benches/append.rs`), which measure the
//! writer's Merkle step without the rest of an append. Not part of the stable API.

use std::path::Path;

use rusqlite::Connection;

use super::{connection, tree};
use crate::merkle::{leaf_hash, Hash};
use crate::StoreError;

/// Opens the read-write connection that the writer thread would use, creating the file and the
/// schema when missing. Returns the connection and the number of events in the file.
pub fn open_writer(path: &Path) -> Result<(Connection, u64), StoreError> {
    connection::open_writer(path)
}

/// The writer's memory of the tree's right edge within one transaction; see
/// [`append_merkle_leaf`].
#[derive(Debug, Default)]
pub struct MerkleRightEdge(tree::RightEdge);

/// Hashes `leaf` and stores it as leaf `leaf_index` with the parents it completes, as the
/// writer does for every event. Runs in the connection's current transaction; leaf
/// `leaf_index - 1` must already be stored. `edge` must be new for each transaction, as in the
/// writer, which keeps one per group. Returns the leaf hash.
pub fn append_merkle_leaf(
    connection: &Connection,
    path: &Path,
    leaf_index: u64,
    leaf: &[u8],
    edge: &mut MerkleRightEdge,
) -> Result<Hash, StoreError> {
    let hash = leaf_hash(leaf);
    tree::append_leaf(connection, path, leaf_index, hash, &mut edge.0)?;
    Ok(hash)
}
