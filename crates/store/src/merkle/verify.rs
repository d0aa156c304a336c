//! Verification of inclusion and consistency proofs, following the algorithms of RFC 9162
//! sections 2.1.3.2 and 2.1.4.2.
//!
//! Hashes come in as byte slices, because proofs and roots arrive from files and the network.
//! A hash of the wrong length is a [`ProofError::WrongHashLength`], never a panic.

use super::{node_hash, Hash};

/// Reason a proof failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {leaf_index} is not below tree size {tree_size}")]
    LeafIndexOutOfRange {
        /// Leaf index the proof was for, from 0.
        leaf_index: u64,
        /// Tree size the proof was for.
        tree_size: u64,
    },
    /// The first tree is larger than the second.
    #[error(
        "size1 {size1} is greater than size2 {size2}, so the second tree cannot extend the first"
    )]
    SizesOutOfOrder {
        /// Size of the earlier tree.
        size1: u64,
        /// Size of the later tree.
        size2: u64,
    },
    /// A consistency proof from the empty tree was given. Every tree extends the empty tree,
    /// whose root is fixed, so such a proof proves nothing and is rejected, as the
    /// transparency-dev/merkle test vectors expect.
    #[error(
        "size1 is 0: a consistency proof from the empty tree proves nothing; \
         verify from a tree of at least one leaf"
    )]
    ConsistencyFromEmptyTree,
    /// A hash is not 32 bytes long.
    #[error("{hash_name} is {length} bytes long, but a SHA-256 hash has 32")]
    WrongHashLength {
        /// Name of the hash: `leaf hash`, `root`, `root1`, `root2` or `proof hash N`.
        hash_name: String,
        /// Length found.
        length: usize,
    },
    /// The trees differ in size, but the proof is empty.
    #[error("the proof is empty, but trees of different sizes need at least one hash")]
    EmptyProof,
    /// The trees have the same size, so the proof must be empty.
    #[error("the sizes are equal, so the proof must be empty, but it has {length} hashes")]
    ProofNotEmpty {
        /// Number of hashes in the proof.
        length: usize,
    },
    /// The proof has more hashes than the tree shape allows.
    #[error("the proof has more hashes than trees of these sizes need")]
    ProofTooLong,
    /// The proof has fewer hashes than the tree shape needs.
    #[error("the proof has fewer hashes than trees of these sizes need")]
    ProofTooShort,
    /// The trees have the same size but different roots.
    #[error("the sizes are equal, but root1 and root2 differ")]
    RootsDiffer,
    /// The root computed from an inclusion proof differs from the expected root.
    #[error("the root computed from the inclusion proof does not match the expected root")]
    RootMismatch,
    /// The first root computed from a consistency proof differs from `root1`.
    #[error("the first-tree root computed from the consistency proof does not match root1")]
    FirstRootMismatch,
    /// The second root computed from a consistency proof differs from `root2`.
    #[error("the second-tree root computed from the consistency proof does not match root2")]
    SecondRootMismatch,
}

/// Verifies that `leaf_hash` is the leaf at `leaf_index` (from 0) of the tree of `tree_size`
/// leaves whose root is `root`, using an inclusion proof ordered from the leaf up, as
/// RFC 9162 section 2.1.3.1 builds it.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_hash: &[u8],
    leaf_index: u64,
    tree_size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexOutOfRange {
            leaf_index,
            tree_size,
        });
    }

    let leaf_hash = to_hash("leaf hash", leaf_hash)?;
    let root = to_hash("root", root)?;
    let proof = to_hashes(proof)?;

    // RFC 9162 section 2.1.3.2: fn walks the leaf's index and sn the last index up the tree.
    let mut index = leaf_index;
    let mut last = tree_size - 1;
    let mut computed = leaf_hash;
    for sibling in &proof {
        if last == 0 {
            return Err(ProofError::ProofTooLong);
        }

        if index & 1 == 1 || index == last {
            computed = node_hash(sibling, &computed);
            // A right-edge node with no right sibling moves up without hashing.
            while index & 1 == 0 && index != 0 {
                index >>= 1;
                last >>= 1;
            }
        } else {
            computed = node_hash(&computed, sibling);
        }

        index >>= 1;
        last >>= 1;
    }

    if last != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if computed != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1`, using a consistency proof as RFC 9162 section 2.1.4.1 builds it.
///
/// `size1` must be at least 1 ([`ProofError::ConsistencyFromEmptyTree`]). When the sizes are
/// equal, the proof must be empty and the roots must be the same bytes. That case does not
/// check the roots' length, because equal sizes prove nothing beyond equality.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::ConsistencyFromEmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::ProofNotEmpty {
                length: proof.len(),
            });
        }
        if root1 != root2 {
            return Err(ProofError::RootsDiffer);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::EmptyProof);
    }

    let root1 = to_hash("root1", root1)?;
    let root2 = to_hash("root2", root2)?;
    let mut path = to_hashes(proof)?;

    // RFC 9162 section 2.1.4.2. When the first tree is a perfect subtree, its root is the
    // starting node and the proof omits it.
    if size1.is_power_of_two() {
        path.insert(0, root1);
    }

    let mut first = size1 - 1;
    let mut second = size2 - 1;
    while first & 1 == 1 {
        first >>= 1;
        second >>= 1;
    }

    let mut first_root = path[0];
    let mut second_root = path[0];
    for node in &path[1..] {
        if second == 0 {
            return Err(ProofError::ProofTooLong);
        }

        if first & 1 == 1 || first == second {
            first_root = node_hash(node, &first_root);
            second_root = node_hash(node, &second_root);
            while first & 1 == 0 && first != 0 {
                first >>= 1;
                second >>= 1;
            }
        } else {
            second_root = node_hash(&second_root, node);
        }

        first >>= 1;
        second >>= 1;
    }

    if second != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if first_root != root1 {
        return Err(ProofError::FirstRootMismatch);
    }
    if second_root != root2 {
        return Err(ProofError::SecondRootMismatch);
    }
    Ok(())
}

/// Converts a byte slice to a hash, naming it in the error when its length is wrong.
fn to_hash(hash_name: &str, bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::WrongHashLength {
        hash_name: hash_name.to_owned(),
        length: bytes.len(),
    })
}

/// Converts every proof element to a hash, naming the first one of the wrong length.
fn to_hashes<P: AsRef<[u8]>>(proof: &[P]) -> Result<Vec<Hash>, ProofError> {
    proof
        .iter()
        .enumerate()
        .map(|(index, hash)| to_hash(&format!("proof hash {index}"), hash.as_ref()))
        .collect()
}
