//! Merkle tree and signed-checkpoint checks.
//!
//! The events are hashed again as RFC 9162 leaves (`store::merkle::event_leaf_hash`) in the
//! same pass as the row checks, folded into a [`CompactTree`], and compared three ways:
//!
//! - each leaf with the stored leaf in `merkle_nodes`, which names an edited row exactly;
//! - the root at each checkpoint's tree size with the root that checkpoint signed, which no
//!   one without the audit key can forge, even after rewriting `merkle_nodes`;
//! - the stored tree's size and root at the head with the events.
//!
//! Every stored checkpoint must carry a valid signature by the key in `keys/audit.pub`, name
//! this log's origin, and extend the checkpoint before it (RFC 9162 consistency proof).

use std::path::Path;

use anyhow::Context;
use rusqlite::Connection;
use store::checkpoint::{verify_checkpoint, CheckpointError, VerifierKey};
use store::merkle::{event_leaf_hash, verify_consistency, verify_inclusion, CompactTree, Hash};
use store::{EventStore, RecordedEvent, SqliteStore, StoredCheckpoint};

use super::report::{Check, CheckStatus, ProblemSlot};
use crate::audit::snapshot::has_table;

/// Checkpoints read per query.
const CHECKPOINT_PAGE: usize = 1_000;

/// Rows read after a suspect position when looking for the row it was swapped with.
const SWAP_WINDOW: usize = 64;

/// A checkpoint whose signature verified.
#[derive(Debug, Clone)]
struct SignedRoot {
    /// Sequence number of the stored checkpoint.
    id: u64,
    /// Tree size it commits to.
    tree_size: u64,
    /// Root it signed.
    root: Hash,
}

/// A leaf hash of an event that differs from the stored leaf.
#[derive(Debug, Clone, Copy)]
struct LeafMismatch {
    /// Position of the event.
    position: u64,
    /// Leaf hash stored in `merkle_nodes`; `None` when the node is missing.
    stored: Option<Hash>,
}

/// A checkpoint whose root differs from the root recomputed from the events.
#[derive(Debug, Clone)]
struct RootMismatch {
    /// The checkpoint.
    checkpoint: SignedRoot,
    /// Largest tree size below it whose checkpoint matched, 0 when none did: the bad event lies
    /// after it.
    last_good_size: u64,
}

/// State of the Merkle checks across pages.
pub(crate) struct TreeChecks {
    /// Reason the checks cannot run on this data folder, or `None` when they can.
    unavailable: Option<String>,
    /// Head position of the log.
    head: u64,
    /// Problems with the stored checkpoints themselves: signature, origin, order, consistency.
    checkpoint_problems: ProblemSlot,
    /// Checkpoints stored, valid or not.
    checkpoint_count: u64,
    /// Audit key name and hash, for the summary.
    key_label: String,
    /// Checkpoints whose signature verified, by tree size.
    signed: Vec<SignedRoot>,
    /// Index into `signed` of the next checkpoint to compare.
    next_signed: usize,
    /// Leaves of the events read so far.
    tree: CompactTree,
    /// Largest tree size whose checkpoint root matched so far.
    last_good_size: u64,
    /// First checkpoint whose root differs from the events.
    first_root_mismatch: Option<RootMismatch>,
    /// Checkpoints whose root differs, in all.
    root_mismatches: u64,
    /// First event whose leaf differs from the stored leaf.
    first_leaf_mismatch: Option<LeafMismatch>,
    /// Events whose leaf differs, in all.
    leaf_mismatches: u64,
    /// First position missing from the events; the recomputed tree is shifted after it.
    first_gap: Option<u64>,
}

impl TreeChecks {
    /// Reads and checks the stored checkpoints before the pass over the events.
    pub(crate) async fn prepare(
        store: &SqliteStore,
        events_copy: &Connection,
        audit_key_file: &Path,
        head: u64,
    ) -> anyhow::Result<TreeChecks> {
        let mut checks = TreeChecks {
            unavailable: None,
            head,
            checkpoint_problems: ProblemSlot::default(),
            checkpoint_count: 0,
            key_label: String::new(),
            signed: Vec::new(),
            next_signed: 0,
            tree: CompactTree::new(),
            last_good_size: 0,
            first_root_mismatch: None,
            root_mismatches: 0,
            first_leaf_mismatch: None,
            leaf_mismatches: 0,
            first_gap: None,
        };

        if !has_table(events_copy, "merkle_nodes")? || !has_table(events_copy, "checkpoints")? {
            checks.unavailable =
                Some("events.db has no merkle_nodes or checkpoints table (written before the Merkle tree existed)".to_owned());
            return Ok(checks);
        }

        let checkpoints = read_all_checkpoints(store).await?;
        checks.checkpoint_count = checkpoints.len() as u64;
        if checkpoints.is_empty() {
            if head > 0 {
                checks.checkpoint_problems.record(
                    None,
                    format!(
                        "events.db has {head} events but no signed checkpoint, so no event can be proven against a signed root (missing checkpoint)"
                    ),
                );
            }
            return Ok(checks);
        }

        let key = match read_audit_key(audit_key_file) {
            Ok(key) => key,
            Err(message) => {
                checks.checkpoint_problems.record(None, message);
                return Ok(checks);
            }
        };
        checks.key_label = format!("{}+{:08x}", key.name(), key.key_hash());

        let origin = store
            .log_origin()
            .await
            .context("reading the log origin from events.db failed")?;
        checks.check_checkpoints(&checkpoints, &key, &origin);
        checks.check_consistency(store).await?;

        checks.signed.sort_by_key(|signed| signed.tree_size);
        checks.compare_empty_tree_checkpoints();
        Ok(checks)
    }

    /// Checks each stored checkpoint's signature, origin, columns and order.
    fn check_checkpoints(&mut self, checkpoints: &[StoredCheckpoint], key: &VerifierKey, origin: &str) {
        let mut largest: Option<(u64, u64)> = None;
        for stored in checkpoints {
            let label = format!("checkpoint {} (tree size {})", stored.id, stored.tree_size);
            let body = match verify_checkpoint(&stored.note, key) {
                Ok(body) => body,
                Err(err) => {
                    let reason = match err {
                        CheckpointError::UnknownKey { .. } => format!(
                            "is not signed by the audit key {} in keys/audit.pub (signed by an unknown key?)",
                            self.key_label
                        ),
                        CheckpointError::BadSignature { .. } => {
                            "has a signature by the audit key that does not verify (note edited?)".to_owned()
                        }
                        other => format!("cannot be read: {other}"),
                    };
                    self.checkpoint_problems.record(None, format!("{label} {reason}"));
                    continue;
                }
            };

            if body.origin != origin {
                self.checkpoint_problems.record(
                    None,
                    format!("{label} names origin {:?}, but this log's origin is {origin:?} (checkpoint from another log?)", body.origin),
                );
                continue;
            }
            if body.tree_size != stored.tree_size || body.root_hash != stored.root_hash {
                self.checkpoint_problems.record(
                    None,
                    format!("{label}: the tree_size or root_hash column differs from the signed note (row edited?)"),
                );
                continue;
            }
            if body.tree_size > self.head {
                self.checkpoint_problems.record(
                    Some(self.head + 1),
                    format!(
                        "positions {} to {} missing: {label} signed a tree of {} events, but events.db ends at position {} (rows deleted?)",
                        self.head + 1,
                        body.tree_size,
                        body.tree_size,
                        self.head
                    ),
                );
            }
            if let Some((previous_id, previous_size)) = largest {
                if body.tree_size < previous_size {
                    self.checkpoint_problems.record(
                        None,
                        format!("{label} is smaller than checkpoint {previous_id} (tree size {previous_size}) stored before it (log truncated?)"),
                    );
                }
            }
            if largest.is_none_or(|(_, size)| body.tree_size >= size) {
                largest = Some((stored.id, body.tree_size));
            }

            self.signed.push(SignedRoot { id: stored.id, tree_size: body.tree_size, root: body.root_hash });
        }
    }

    /// Checks that each signed checkpoint extends the one before it, with consistency proofs
    /// built from the stored nodes.
    async fn check_consistency(&mut self, store: &SqliteStore) -> anyhow::Result<()> {
        for pair in self.signed.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            if earlier.tree_size == 0 || earlier.tree_size > later.tree_size || later.tree_size > self.head {
                continue;
            }

            let proof = match store.consistency_proof(earlier.tree_size, later.tree_size).await {
                Ok(proof) => proof,
                Err(err) => {
                    self.checkpoint_problems.record(
                        None,
                        format!(
                            "no consistency proof from checkpoint {} to checkpoint {} can be built from merkle_nodes: {err} (nodes deleted?)",
                            earlier.id, later.id
                        ),
                    );
                    continue;
                }
            };
            if let Err(err) = verify_consistency(earlier.tree_size, later.tree_size, &proof, &earlier.root, &later.root) {
                self.checkpoint_problems.record(
                    None,
                    format!(
                        "checkpoint {} (tree size {}) does not extend checkpoint {} (tree size {}): {err} (history rewritten, or merkle_nodes edited?)",
                        later.id, later.tree_size, earlier.id, earlier.tree_size
                    ),
                );
            }
        }
        Ok(())
    }

    /// Compares checkpoints of the empty tree, which no event reaches.
    fn compare_empty_tree_checkpoints(&mut self) {
        while let Some(signed) = self.signed.get(self.next_signed) {
            if signed.tree_size != 0 {
                break;
            }
            let signed = signed.clone();
            self.compare_root(&signed);
            self.next_signed += 1;
        }
    }

    /// Hashes a page of events, compares the leaves with the stored ones, and compares the root
    /// at every checkpoint size the page reaches.
    pub(crate) fn check_page(&mut self, page: &[RecordedEvent], events_copy: &Connection) -> anyhow::Result<()> {
        if self.unavailable.is_some() {
            return Ok(());
        }
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(());
        };
        let stored = read_stored_leaves(events_copy, first.position, last.position)?;
        let mut stored = stored.iter().peekable();

        for event in page {
            if event.position != self.tree.size() + 1 && self.first_gap.is_none() {
                self.first_gap = Some(self.tree.size() + 1);
            }
            let leaf = event_leaf_hash(event);
            // The store reads only positions above 0, so every event here has a leaf index.
            let index = event.position.saturating_sub(1);
            while stored.next_if(|(stored_index, _)| *stored_index < index).is_some() {}
            let stored_leaf = stored.next_if(|(stored_index, _)| *stored_index == index).map(|(_, hash)| *hash);
            if stored_leaf != Some(leaf) {
                self.leaf_mismatches += 1;
                if self.first_leaf_mismatch.is_none() {
                    self.first_leaf_mismatch = Some(LeafMismatch { position: event.position, stored: stored_leaf });
                }
            }

            self.tree.push(leaf);
            while let Some(signed) = self.signed.get(self.next_signed) {
                if signed.tree_size != self.tree.size() {
                    break;
                }
                let signed = signed.clone();
                self.compare_root(&signed);
                self.next_signed += 1;
            }
        }
        Ok(())
    }

    /// Compares the recomputed root with a checkpoint of the current tree size.
    fn compare_root(&mut self, signed: &SignedRoot) {
        if self.tree.root() == signed.root {
            self.last_good_size = self.last_good_size.max(signed.tree_size);
            return;
        }
        self.root_mismatches += 1;
        if self.first_root_mismatch.is_none() {
            self.first_root_mismatch =
                Some(RootMismatch { checkpoint: signed.clone(), last_good_size: self.last_good_size });
        }
    }

    /// Finishes the checks after the pass and returns them.
    pub(crate) async fn finish(self, store: &SqliteStore, events_copy: &Connection) -> anyhow::Result<Vec<Check>> {
        if let Some(reason) = &self.unavailable {
            return Ok(vec![
                Check::not_available("merkle tree", reason.clone()),
                Check::not_available("checkpoints", reason.clone()),
            ]);
        }

        let mut checks = Vec::new();
        checks.push(self.leaf_check(store, events_copy).await?);
        checks.push(self.stored_tree_check(store).await?);

        let signed_count = self.signed.len();
        let checkpoint_summary = format!(
            "{} checkpoints signed by the audit key {}, each extending the one before",
            self.checkpoint_count, self.key_label
        );
        let mut checkpoint_problems = self.checkpoint_problems;
        for unreached in &self.signed[self.next_signed..] {
            if unreached.tree_size <= self.head {
                checkpoint_problems.record(
                    None,
                    format!(
                        "checkpoint {} (tree size {}) was never reached: the events give only {} leaves (rows deleted?)",
                        unreached.id,
                        unreached.tree_size,
                        self.tree.size()
                    ),
                );
            }
        }
        if self.checkpoint_count == 0 && self.head == 0 {
            checks.push(Check::passed("checkpoints", "the log is empty, so no checkpoint is needed"));
        } else {
            checks.push(Check::from_problems("checkpoints", checkpoint_problems, checkpoint_summary));
        }

        let suspects = Suspects {
            first_leaf_mismatch: self.first_leaf_mismatch.map(|mismatch| mismatch.position),
            first_gap: self.first_gap,
        };
        checks.push(root_check(self.first_root_mismatch.as_ref(), self.root_mismatches, signed_count, suspects));
        checks.push(coverage_check(self.signed.last().map(|signed| signed.tree_size), self.head));
        Ok(checks)
    }

    /// Builds the leaf check, naming the first edited or swapped position and the checkpoint
    /// that proves the stored leaf.
    async fn leaf_check(&self, store: &SqliteStore, events_copy: &Connection) -> anyhow::Result<Check> {
        let Some(mismatch) = self.first_leaf_mismatch else {
            return Ok(Check::passed(
                "merkle leaves",
                format!("{} events hash to their stored RFC 9162 leaves", self.tree.size()),
            ));
        };
        let position = mismatch.position;

        let covering = self.signed.iter().find(|signed| signed.tree_size >= position);
        let proven = match (covering, mismatch.stored) {
            (Some(checkpoint), Some(stored_leaf)) => {
                stored_leaf_proven(store, position, stored_leaf, checkpoint).await
            }
            _ => false,
        };
        let evidence = match covering {
            Some(checkpoint) if proven => format!("checkpoint at tree size {}", checkpoint.tree_size),
            _ => "the stored Merkle leaf".to_owned(),
        };

        let message = match find_swapped_leaf(store, events_copy, position, mismatch.stored).await? {
            Some(other) => format!(
                "positions {position} and {other} swapped: each row hashes to the other's leaf in {evidence}"
            ),
            None if mismatch.stored.is_none() => {
                format!("position {position} has no stored Merkle leaf (merkle_nodes edited, or row inserted?)")
            }
            None => format!("position {position}: leaf hash differs from {evidence} (row edited?)"),
        };
        Ok(Check {
            name: "merkle leaves",
            status: CheckStatus::Failed(super::report::Problem {
                position: Some(position),
                message,
                more: self.leaf_mismatches.saturating_sub(1),
            }),
        })
    }

    /// Compares the stored tree's size and root at the head with the events.
    async fn stored_tree_check(&self, store: &SqliteStore) -> anyhow::Result<Check> {
        let mut problems = ProblemSlot::default();
        let tree_size = store.tree_size().await.context("reading the Merkle tree size failed")?;

        if tree_size > self.head {
            problems.record(
                Some(self.head + 1),
                format!(
                    "positions {} to {tree_size} missing: merkle_nodes has {tree_size} leaves but events.db ends at position {} (rows deleted?)",
                    self.head + 1,
                    self.head
                ),
            );
        } else if tree_size < self.head {
            problems.record(
                Some(tree_size + 1),
                format!(
                    "positions {} to {} have no Merkle leaf (rows inserted?)",
                    tree_size + 1,
                    self.head
                ),
            );
        } else if self.tree.size() == self.head {
            match store.root_at(self.head).await {
                Ok(stored_root) if stored_root == self.tree.root() => {}
                Ok(_) => problems.record(
                    None,
                    format!("the root of merkle_nodes at tree size {} differs from the root of the events (merkle_nodes edited?)", self.head),
                ),
                Err(err) => problems.record(
                    None,
                    format!("the root of merkle_nodes at tree size {} cannot be built: {err} (merkle_nodes edited?)", self.head),
                ),
            }
        }

        Ok(Check::from_problems(
            "merkle tree",
            problems,
            format!("{tree_size} leaves, and the stored root equals the root recomputed from the events"),
        ))
    }
}

/// Positions the pass found wrong, which may explain a root that differs.
#[derive(Debug, Clone, Copy)]
struct Suspects {
    /// First event whose leaf differs from the stored leaf.
    first_leaf_mismatch: Option<u64>,
    /// First position missing from the events.
    first_gap: Option<u64>,
}

/// Builds the check that compares each signed root with the root recomputed from the events.
///
/// The bad event lies after the largest checkpoint that matched. The report names the first
/// missing position or the first event whose leaf differs from its stored leaf in that range.
/// When there is neither, the stored nodes were rewritten too, so only the range is named.
fn root_check(first: Option<&RootMismatch>, mismatches: u64, signed_count: usize, suspects: Suspects) -> Check {
    let Some(mismatch) = first else {
        return Check::passed(
            "checkpoint roots",
            format!("the events reproduce the signed root of all {signed_count} valid checkpoints"),
        );
    };
    let checkpoint = &mismatch.checkpoint;
    let first_suspect = mismatch.last_good_size + 1;
    let in_range = |position: &u64| (first_suspect..=checkpoint.tree_size).contains(position);
    let gap = suspects.first_gap.filter(in_range);
    let edited = suspects.first_leaf_mismatch.filter(in_range);
    let (position, message) = match (gap, edited) {
        (Some(position), _) if edited.is_none_or(|edited| position <= edited) => (
            position,
            format!(
                "position {position} missing: without it the events do not reproduce the root that checkpoint {} signed at tree size {} (row deleted?)",
                checkpoint.id, checkpoint.tree_size
            ),
        ),
        (_, Some(position)) => (
            position,
            format!(
                "position {position}: leaf hash differs from checkpoint at tree size {} (row edited?); the events do not reproduce the root that checkpoint {} signed",
                checkpoint.tree_size, checkpoint.id
            ),
        ),
        _ => (
            first_suspect,
            format!(
                "positions {first_suspect} to {}: the root recomputed from the events differs from the root signed by checkpoint {} at tree size {} (rows edited, deleted or reordered, and merkle_nodes rewritten to match)",
                checkpoint.tree_size, checkpoint.id, checkpoint.tree_size
            ),
        ),
    };
    Check {
        name: "checkpoint roots",
        status: CheckStatus::Failed(super::report::Problem {
            position: Some(position),
            message,
            more: mismatches.saturating_sub(1),
        }),
    }
}

/// Builds the check that reports how much of the log the latest checkpoint covers.
fn coverage_check(latest_size: Option<u64>, head: u64) -> Check {
    match latest_size {
        Some(size) if size >= head => Check::passed("checkpoint coverage", format!("the latest checkpoint covers all {head} events")),
        Some(size) => Check {
            name: "checkpoint coverage",
            status: CheckStatus::Warning(format!(
                "positions {} to {head} are newer than the latest valid checkpoint (tree size {size}); only merkle_nodes covers them until the server signs the next one",
                size + 1
            )),
        },
        None if head == 0 => Check::passed("checkpoint coverage", "the log is empty"),
        None => Check {
            name: "checkpoint coverage",
            status: CheckStatus::Warning(format!("no valid checkpoint covers any of the {head} events")),
        },
    }
}

/// Returns whether the stored leaf at `position` is in the tree that `checkpoint` signed,
/// by an inclusion proof built from `merkle_nodes`.
async fn stored_leaf_proven(store: &SqliteStore, position: u64, stored_leaf: Hash, checkpoint: &SignedRoot) -> bool {
    let leaf_index = position.saturating_sub(1);
    match store.inclusion_proof(leaf_index, checkpoint.tree_size).await {
        Ok(proof) => verify_inclusion(&stored_leaf, leaf_index, checkpoint.tree_size, &proof, &checkpoint.root).is_ok(),
        Err(_) => false,
    }
}

/// Looks for the row that the row at `position` was swapped with, and returns its position.
///
/// A later row matches when its content hashes to the stored leaf at `position` and the content
/// at `position` hashes to the later row's stored leaf. The leaf includes the position, so each
/// content gets the other's position before hashing.
async fn find_swapped_leaf(
    store: &SqliteStore,
    events_copy: &Connection,
    position: u64,
    stored: Option<Hash>,
) -> anyhow::Result<Option<u64>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let window = store
        .read_all(position.saturating_sub(1), SWAP_WINDOW)
        .await
        .with_context(|| format!("reading the events after position {position} failed"))?;
    let Some((suspect, later)) = window.split_first() else {
        return Ok(None);
    };
    for other in later {
        let moved_here = RecordedEvent { position, ..other.clone() };
        if event_leaf_hash(&moved_here) != stored {
            continue;
        }
        let moved_there = RecordedEvent { position: other.position, ..suspect.clone() };
        let other_stored = read_stored_leaves(events_copy, other.position, other.position)?;
        if other_stored.first().map(|(_, hash)| *hash) == Some(event_leaf_hash(&moved_there)) {
            return Ok(Some(other.position));
        }
    }
    Ok(None)
}

/// Reads the stored leaves for positions `first..=last`, in index order.
fn read_stored_leaves(events_copy: &Connection, first: u64, last: u64) -> anyhow::Result<Vec<(u64, Hash)>> {
    let mut statement = events_copy
        .prepare_cached("SELECT idx, hash FROM merkle_nodes WHERE level = 0 AND idx BETWEEN ?1 AND ?2 ORDER BY idx")
        .context("reading merkle_nodes failed")?;
    let first_index = i64::try_from(first.saturating_sub(1)).unwrap_or(i64::MAX);
    let last_index = i64::try_from(last.saturating_sub(1)).unwrap_or(i64::MAX);
    let mut rows = statement.query((first_index, last_index)).context("reading merkle_nodes failed")?;

    let mut leaves = Vec::new();
    while let Some(row) = rows.next().context("reading merkle_nodes failed")? {
        let index: i64 = row.get(0).context("reading a Merkle leaf index failed")?;
        let hash: Vec<u8> = row.get(1).context("reading a Merkle leaf hash failed")?;
        let Ok(index) = u64::try_from(index) else {
            continue;
        };
        // A stored hash of the wrong length cannot equal any leaf, so it counts as missing.
        if let Ok(hash) = Hash::try_from(hash.as_slice()) {
            leaves.push((index, hash));
        }
    }
    Ok(leaves)
}

/// Reads every stored checkpoint, in id order.
async fn read_all_checkpoints(store: &SqliteStore) -> anyhow::Result<Vec<StoredCheckpoint>> {
    let mut checkpoints = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_checkpoints(after, CHECKPOINT_PAGE)
            .await
            .context("reading the checkpoints of events.db failed")?;
        let Some(last) = page.last() else {
            return Ok(checkpoints);
        };
        after = last.id;
        checkpoints.extend(page);
    }
}

/// Reads the audit verifier key from `keys/audit.pub` of the audited folder; the error is the
/// report line.
fn read_audit_key(path: &Path) -> Result<VerifierKey, String> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        format!(
            "{} cannot be read ({err}), so no checkpoint signature can be checked; copy keys/audit.pub with the data folder",
            path.display()
        )
    })?;
    VerifierKey::parse(&text).map_err(|err| format!("{} is not a signed-note verifier key: {err}", path.display()))
}
