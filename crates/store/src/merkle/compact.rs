//! Recomputing a root from leaves in O(log n) memory, for auditors that replay the whole log.

use super::{empty_root, event_leaf_hash, node_hash, Hash};
use crate::RecordedEvent;

/// Events given to a root computation were not the positions 1, 2, 3, … in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected the event at position {expected}, found position {found}; the log has a gap, a duplicate or a reordering")]
pub struct LeafSequenceError {
    /// Position the next leaf must have.
    pub expected: u64,
    /// Position of the event given.
    pub found: u64,
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first. It takes leaves
/// one at a time and returns the root at any point, keeping at most 64 hashes.
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    /// Number of leaves appended.
    size: u64,
    /// `(level, hash)` of each perfect subtree on the right edge, largest (leftmost) first.
    peaks: Vec<(u32, Hash)>,
}

impl CompactTree {
    /// Creates an empty tree.
    pub fn new() -> CompactTree {
        CompactTree::default()
    }

    /// Returns the number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut level = 0;
        let mut hash = leaf_hash;
        while let Some(&(peak_level, peak_hash)) = self.peaks.last() {
            if peak_level != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&peak_hash, &hash);
            level += 1;
        }
        self.peaks.push((level, hash));
        self.size += 1;
    }

    /// Appends an event as the next leaf and returns its leaf hash. Fails, appending nothing,
    /// unless the event's position is the tree size plus one.
    pub fn push_event(&mut self, event: &RecordedEvent) -> Result<Hash, LeafSequenceError> {
        let expected = self.size + 1;
        if event.position != expected {
            return Err(LeafSequenceError {
                expected,
                found: event.position,
            });
        }

        let hash = event_leaf_hash(event);
        self.push(hash);
        Ok(hash)
    }

    /// Returns the root of the leaves appended so far; the empty root when there are none.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut root)) = peaks.next() else {
            return empty_root();
        };
        for (_, peak) in peaks {
            root = node_hash(peak, &root);
        }
        root
    }
}

/// Returns the root of a tree with these leaf hashes, in leaf order.
pub fn root_from_leaves(leaf_hashes: &[Hash]) -> Hash {
    let mut tree = CompactTree::new();
    for leaf_hash in leaf_hashes {
        tree.push(*leaf_hash);
    }
    tree.root()
}

/// Returns the root of a tree of these events, which must be the positions 1, 2, 3, … in
/// order with no gap.
pub fn root_from_events(events: &[RecordedEvent]) -> Result<Hash, LeafSequenceError> {
    let mut tree = CompactTree::new();
    for event in events {
        tree.push_event(event)?;
    }
    Ok(tree.root())
}
