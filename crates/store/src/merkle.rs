//! Merkle tree over the event log (RFC 9162 section 2.1): leaf encoding, hashing, proof building
//! and proof verification.
//!
//! Every stored event is one leaf, in position order: the leaf at index `i` is the event at
//! position `i + 1`, so the tree size equals the head position. The tree uses SHA-256 with the
//! RFC 9162 domain separation:
//!
//! - leaf hash = SHA-256(0x00 || leaf bytes), where the leaf bytes are [`leaf_bytes`] of the event;
//! - node hash = SHA-256(0x01 || left || right);
//! - the root of the empty tree is SHA-256 of no bytes ([`empty_root`]).
//!
//! Nothing here does I/O. The SQLite backend stores the hashes of complete (perfect) subtrees and
//! builds proofs from them through [`NodeReader`], and an auditor verifies proofs with
//! [`verify_inclusion`] and [`verify_consistency`], or recomputes a root from the events with
//! [`CompactTree`] or [`root_from_events`].

mod compact;
mod leaf;
mod prove;
mod verify;

pub use compact::{root_from_events, root_from_leaves, CompactTree, LeafSequenceError};
pub(crate) use leaf::{encode_leaf, LeafFields};
pub use leaf::{event_leaf_hash, leaf_bytes, LEAF_FORMAT_VERSION};
pub use prove::{
    consistency_proof, inclusion_proof, root_at, MemoryTree, NodeReader, ProofRequestError,
};
pub use verify::{verify_consistency, verify_inclusion, ProofError};

use sha2::{Digest, Sha256};

/// Size of every hash in the tree, in bytes (SHA-256).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; HASH_SIZE];

/// Domain-separation prefix of a leaf hash (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Domain-separation prefix of an interior node hash (RFC 9162 section 2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Returns the root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Hashes leaf bytes: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Hashes two child hashes into their parent: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Returns the largest power of two strictly below `n`; `n` must be at least 2.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(
        n >= 2,
        "the split point of a tree of {n} leaves is undefined"
    );
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let hex: String = empty_root()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn split_point_of_small_sizes() {
        let split: Vec<u64> = (2..=9).map(largest_power_of_two_below).collect();
        assert_eq!(split, vec![1, 2, 2, 4, 4, 4, 4, 8]);
    }

    #[test]
    fn leaf_and_node_prefixes_differ() {
        let left = leaf_hash(b"a");
        let right = leaf_hash(b"b");
        let mut joined = Vec::new();
        joined.extend_from_slice(&left);
        joined.extend_from_slice(&right);
        assert_ne!(node_hash(&left, &right), leaf_hash(&joined));
    }
}
