//! Building roots and proofs from stored perfect-subtree hashes (RFC 9162 sections 2.1.3.1 and
//! 2.1.4.1).
//!
//! A perfect subtree at `(level, index)` covers the leaves `[index * 2^level, (index + 1) *
//! 2^level)`, and level 0 stores the leaf hashes. Every range the RFC recursion visits either
//! is such a subtree, read with one lookup, or splits at its largest power of two into a perfect
//! left part and a smaller right part. A proof therefore costs O(log n) lookups when the tree
//! size is a power of two, and O(log² n) at worst along a ragged right edge. Nothing is
//! recomputed from leaves.

use super::{empty_root, largest_power_of_two_below, node_hash, Hash};

/// A request for a root or proof that the tree cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofRequestError {
    /// The requested tree size is larger than the log.
    #[error("tree size {tree_size} is beyond the log, which has {log_size} events")]
    TreeSizeBeyondLog {
        /// Requested tree size.
        tree_size: u64,
        /// Number of leaves the log has.
        log_size: u64,
    },
    /// The leaf index is not inside the requested tree.
    #[error("leaf index {leaf_index} (position {position}) is not inside a tree of size {tree_size}", position = .leaf_index.saturating_add(1))]
    LeafIndexOutOfRange {
        /// Requested leaf index, from 0.
        leaf_index: u64,
        /// Requested tree size.
        tree_size: u64,
    },
    /// The first tree size of a consistency proof is larger than the second.
    #[error("size1 {size1} is greater than size2 {size2}")]
    SizesOutOfOrder {
        /// Earlier tree size.
        size1: u64,
        /// Later tree size.
        size2: u64,
    },
    /// A consistency proof from size 0 was requested. It would prove nothing, so
    /// [`super::verify_consistency`] rejects it, and no proof is built for it either.
    #[error("size1 is 0: a consistency proof from the empty tree proves nothing; ask from size 1 or more")]
    ConsistencyFromEmptyTree,
    /// A perfect-subtree hash that must exist for the log size is missing.
    #[error("Merkle node at level {level}, index {index} is missing")]
    NodeMissing {
        /// Level of the node, 0 for leaves.
        level: u32,
        /// Index of the node within its level.
        index: u64,
    },
}

/// Source of perfect-subtree hashes, such as the store's `merkle_nodes` table or a
/// [`MemoryTree`].
pub trait NodeReader {
    /// Error of a lookup; range errors of the request convert into it.
    type Error: From<ProofRequestError>;

    /// Returns the number of leaves in the source.
    fn leaf_count(&mut self) -> Result<u64, Self::Error>;

    /// Returns the hash of the perfect subtree at `level` and `index`, covering the leaves
    /// `[index << level, (index + 1) << level)`.
    fn perfect_node(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Returns the root of the tree made of the first `tree_size` leaves; the empty root for 0.
pub fn root_at<R: NodeReader>(reader: &mut R, tree_size: u64) -> Result<Hash, R::Error> {
    check_tree_size(reader, tree_size)?;
    if tree_size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(reader, 0, tree_size)
}

/// Builds the inclusion proof of the leaf at `leaf_index` (from 0) in the tree of `tree_size`
/// leaves, ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof<R: NodeReader>(
    reader: &mut R,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, R::Error> {
    if leaf_index >= tree_size {
        return Err(ProofRequestError::LeafIndexOutOfRange {
            leaf_index,
            tree_size,
        }
        .into());
    }
    check_tree_size(reader, tree_size)?;

    let mut proof = Vec::new();
    inclusion_path(reader, leaf_index, 0, tree_size, &mut proof)?;
    Ok(proof)
}

/// Builds the consistency proof between the trees of `size1` and `size2` leaves. Equal sizes
/// give an empty proof; `size1` must be at least 1.
pub fn consistency_proof<R: NodeReader>(
    reader: &mut R,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, R::Error> {
    if size1 > size2 {
        return Err(ProofRequestError::SizesOutOfOrder { size1, size2 }.into());
    }
    if size1 == 0 {
        return Err(ProofRequestError::ConsistencyFromEmptyTree.into());
    }
    check_tree_size(reader, size2)?;

    let mut proof = Vec::new();
    consistency_subproof(reader, size1, 0, size2, true, &mut proof)?;
    Ok(proof)
}

/// Fails unless the reader has at least `tree_size` leaves.
fn check_tree_size<R: NodeReader>(reader: &mut R, tree_size: u64) -> Result<(), R::Error> {
    let log_size = reader.leaf_count()?;
    if tree_size > log_size {
        return Err(ProofRequestError::TreeSizeBeyondLog {
            tree_size,
            log_size,
        }
        .into());
    }
    Ok(())
}

/// Returns the RFC 9162 tree hash of the leaves `[start, end)`, with `end > start`.
fn subtree_hash<R: NodeReader>(reader: &mut R, start: u64, end: u64) -> Result<Hash, R::Error> {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        let level = size.trailing_zeros();
        return reader.perfect_node(level, start >> level);
    }

    let split = largest_power_of_two_below(size);
    let left = subtree_hash(reader, start, start + split)?;
    let right = subtree_hash(reader, start + split, end)?;
    Ok(node_hash(&left, &right))
}

/// Appends PATH(leaf_index, D[start:end]) of RFC 9162 section 2.1.3.1, deepest hash first.
fn inclusion_path<R: NodeReader>(
    reader: &mut R,
    leaf_index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let size = end - start;
    if size == 1 {
        return Ok(());
    }

    let split = start + largest_power_of_two_below(size);
    if leaf_index < split {
        inclusion_path(reader, leaf_index, start, split, proof)?;
        proof.push(subtree_hash(reader, split, end)?);
    } else {
        inclusion_path(reader, leaf_index, split, end, proof)?;
        proof.push(subtree_hash(reader, start, split)?);
    }
    Ok(())
}

/// Appends SUBPROOF(old_size, D[start:end], whole) of RFC 9162 section 2.1.4.1, where
/// `old_size` counts the leaves of the old tree inside `[start, end)` and `whole` is true while
/// that range is the whole old tree's leftmost part.
fn consistency_subproof<R: NodeReader>(
    reader: &mut R,
    old_size: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let size = end - start;
    if old_size == size {
        if !whole {
            proof.push(subtree_hash(reader, start, end)?);
        }
        return Ok(());
    }

    let split = largest_power_of_two_below(size);
    if old_size <= split {
        consistency_subproof(reader, old_size, start, start + split, whole, proof)?;
        proof.push(subtree_hash(reader, start + split, end)?);
    } else {
        consistency_subproof(reader, old_size - split, start + split, end, false, proof)?;
        proof.push(subtree_hash(reader, start, start + split)?);
    }
    Ok(())
}

/// Every perfect-subtree hash of a tree, in memory: 2n hashes for n leaves. Tests use it as the
/// reference, and offline tools may use it to serve proofs from replayed events.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// Hashes by level: `levels[l][i]` is the perfect subtree at level `l`, index `i`, and
    /// `levels[0]` stores the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Creates an empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Builds a tree from leaf hashes in leaf order.
    pub fn from_leaf_hashes(leaf_hashes: &[Hash]) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf_hash in leaf_hashes {
            tree.push(*leaf_hash);
        }
        tree
    }

    /// Appends a leaf hash and every perfect subtree it completes.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut level = 0;
        let mut hash = leaf_hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(hash);

            let index = nodes.len() - 1;
            if index.is_multiple_of(2) {
                return;
            }
            hash = node_hash(&nodes[index - 1], &hash);
            level += 1;
        }
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }
}

impl NodeReader for MemoryTree {
    type Error = ProofRequestError;

    fn leaf_count(&mut self) -> Result<u64, ProofRequestError> {
        Ok(self.size())
    }

    fn perfect_node(&mut self, level: u32, index: u64) -> Result<Hash, ProofRequestError> {
        usize::try_from(level)
            .ok()
            .zip(usize::try_from(index).ok())
            .and_then(|(level, index)| self.levels.get(level)?.get(index))
            .copied()
            .ok_or(ProofRequestError::NodeMissing { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root_from_leaves, verify_consistency, verify_inclusion};

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|index| leaf_hash(&index.to_be_bytes()))
            .collect()
    }

    /// RFC 9162 MTH straight from its definition, as the reference for small trees.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            size => {
                let split = largest_power_of_two_below(size as u64) as usize;
                node_hash(
                    &reference_root(&leaves[..split]),
                    &reference_root(&leaves[split..]),
                )
            }
        }
    }

    #[test]
    fn roots_match_definition() {
        let all = leaves(70);
        let mut tree = MemoryTree::from_leaf_hashes(&all);
        for size in 0..=70u64 {
            let expected = reference_root(&all[..size as usize]);
            assert_eq!(
                root_at(&mut tree, size).expect("root"),
                expected,
                "size {size}"
            );
            assert_eq!(
                root_from_leaves(&all[..size as usize]),
                expected,
                "size {size}"
            );
        }
    }

    #[test]
    fn inclusion_proofs_verify() {
        let all = leaves(40);
        let mut tree = MemoryTree::from_leaf_hashes(&all);
        for size in 1..=40u64 {
            let root = root_at(&mut tree, size).expect("root");
            for index in 0..size {
                let proof = inclusion_proof(&mut tree, index, size).expect("proof");
                let verified = verify_inclusion(&all[index as usize], index, size, &proof, &root);
                assert_eq!(verified, Ok(()), "index {index}, size {size}");
            }
        }
    }

    #[test]
    fn consistency_proofs_verify() {
        let all = leaves(40);
        let mut tree = MemoryTree::from_leaf_hashes(&all);
        for size2 in 1..=40u64 {
            let root2 = root_at(&mut tree, size2).expect("root2");
            for size1 in 1..=size2 {
                let root1 = root_at(&mut tree, size1).expect("root1");
                let proof = consistency_proof(&mut tree, size1, size2).expect("proof");
                let verified = verify_consistency(size1, size2, &proof, &root1, &root2);
                assert_eq!(verified, Ok(()), "size1 {size1}, size2 {size2}");
            }
        }
    }

    #[test]
    fn requests_beyond_tree_fail() {
        let mut tree = MemoryTree::from_leaf_hashes(&leaves(5));
        assert_eq!(
            root_at(&mut tree, 6),
            Err(ProofRequestError::TreeSizeBeyondLog {
                tree_size: 6,
                log_size: 5
            })
        );
        assert_eq!(
            inclusion_proof(&mut tree, 5, 5),
            Err(ProofRequestError::LeafIndexOutOfRange {
                leaf_index: 5,
                tree_size: 5
            })
        );
        assert_eq!(
            consistency_proof(&mut tree, 0, 5),
            Err(ProofRequestError::ConsistencyFromEmptyTree)
        );
        assert_eq!(
            consistency_proof(&mut tree, 3, 2),
            Err(ProofRequestError::SizesOutOfOrder { size1: 3, size2: 2 })
        );
    }
}
