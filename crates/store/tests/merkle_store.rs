//! The Merkle tree kept by the SQLite store: stored nodes against a recompute from the event
//! rows, proofs from the store against the pure verifiers, concurrent writers, reopening, files
//! from before the tree existed, read-only copies and stored checkpoints.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{event, open_temp_store, read_everything, stream_append};
use rusqlite::{Connection, OpenFlags};
use store::checkpoint::{Checkpoint, NoteSigner};
use store::merkle::{
    root_from_events, verify_consistency, verify_inclusion, CompactTree, MemoryTree, NodeReader,
    ProofRequestError,
};
use store::{EventStore, ExpectedRevision, Metadata, SqliteStore, StoreError, StreamAppend};

/// Sizes checked beside every size up to 40: the edges around powers of two and the end.
const LARGER_SIZES: [u64; 12] = [63, 64, 65, 127, 128, 129, 200, 255, 256, 257, 299, 300];

/// Appends `count` events in requests of 1 to 4 events spread over several streams, so that
/// group commits and multi-event requests both add leaves.
async fn append_mixed(store: &dyn EventStore, count: usize) {
    let mut written = 0;
    let mut request = 0usize;
    while written < count {
        let size = (request % 4 + 1).min(count - written);
        let appends = (0..size)
            .map(|index| StreamAppend {
                stream_id: format!("stream-{}", (request + index) % 7),
                expected: ExpectedRevision::Any,
                events: vec![event(
                    "Tested",
                    format!("event {}", written + index).as_bytes(),
                )],
            })
            .collect();
        store.append(appends).await.expect("append");
        written += size;
        request += 1;
    }
}

/// Reads every row of `merkle_nodes` as `(level, index, hash)`.
fn stored_nodes(path: &Path) -> Vec<(u32, u64, Vec<u8>)> {
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut statement = connection
        .prepare("SELECT level, idx, hash FROM merkle_nodes ORDER BY level, idx")
        .expect("prepare");
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query");
    rows.map(|row| row.expect("row")).collect()
}

/// Checks that the stored nodes are exactly the perfect subtrees of a tree recomputed from the
/// event rows, and that every root matches.
async fn assert_tree_matches_rows(store: &SqliteStore) {
    let events = read_everything(store).await;
    let size = events.len() as u64;
    assert_eq!(store.tree_size().await.expect("tree size"), size);

    let mut reference = MemoryTree::new();
    let mut compact = CompactTree::new();
    for event in &events {
        reference.push(compact.push_event(event).expect("positions are gap-free"));
    }

    let nodes = stored_nodes(store.path());
    let expected_count: u64 = (0..64).map(|level| size >> level).sum();
    assert_eq!(nodes.len() as u64, expected_count, "number of stored nodes");
    for (level, index, hash) in nodes {
        let expected = reference
            .perfect_node(level, index)
            .expect("reference node");
        assert_eq!(hash, expected, "node at level {level}, index {index}");
    }

    assert_eq!(store.root_at(size).await.expect("root"), compact.root());
}

#[tokio::test]
async fn nodes_match_rows_up_to_300() {
    let (_folder, _path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 300).await;

    assert_tree_matches_rows(&store).await;

    let events = read_everything(store.as_ref()).await;
    for size in 1..=300u64 {
        let expected = root_from_events(&events[..size as usize]).expect("recompute");
        assert_eq!(
            store.root_at(size).await.expect("root"),
            expected,
            "size {size}"
        );
    }
}

#[tokio::test]
async fn store_proofs_verify() {
    let (_folder, _path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 300).await;
    let events = read_everything(store.as_ref()).await;
    let leaf_hashes: Vec<_> = events.iter().map(store::merkle::event_leaf_hash).collect();

    let sizes: Vec<u64> = (1..=40).chain(LARGER_SIZES).collect();
    let mut roots = std::collections::HashMap::new();
    for &size in &sizes {
        roots.insert(size, store.root_at(size).await.expect("root"));
    }

    for &size in &sizes {
        let root = roots[&size];
        let max_length = 64 - (size - 1).leading_zeros() as usize;
        for index in 0..size {
            let proof = store
                .inclusion_proof(index, size)
                .await
                .expect("inclusion proof");
            assert!(
                proof.len() <= max_length,
                "proof of {index} in {size} is too long"
            );
            let verified =
                verify_inclusion(&leaf_hashes[index as usize], index, size, &proof, &root);
            assert_eq!(verified, Ok(()), "inclusion of {index} in {size}");

            let other = leaf_hashes[((index + 1) % 300) as usize];
            let wrong_leaf = verify_inclusion(&other, index, size, &proof, &root);
            assert!(
                wrong_leaf.is_err(),
                "another leaf verified at {index} in {size}"
            );
        }
    }

    for &size2 in &sizes {
        for &size1 in sizes.iter().filter(|&&size1| size1 <= size2) {
            let proof = store
                .consistency_proof(size1, size2)
                .await
                .expect("consistency proof");
            let verified = verify_consistency(size1, size2, &proof, &roots[&size1], &roots[&size2]);
            assert_eq!(verified, Ok(()), "consistency from {size1} to {size2}");
        }
    }
}

#[tokio::test]
async fn proof_requests_out_of_range() {
    let (_folder, _path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 5).await;

    let beyond = store.root_at(6).await;
    assert!(matches!(
        beyond,
        Err(StoreError::InvalidProofRequest(
            ProofRequestError::TreeSizeBeyondLog {
                tree_size: 6,
                log_size: 5
            }
        ))
    ));
    let outside = store.inclusion_proof(5, 5).await;
    assert!(matches!(
        outside,
        Err(StoreError::InvalidProofRequest(
            ProofRequestError::LeafIndexOutOfRange { .. }
        ))
    ));
    let from_empty = store.consistency_proof(0, 5).await;
    assert!(matches!(
        from_empty,
        Err(StoreError::InvalidProofRequest(
            ProofRequestError::ConsistencyFromEmptyTree
        ))
    ));
    let reversed = store.consistency_proof(4, 3).await;
    assert!(matches!(
        reversed,
        Err(StoreError::InvalidProofRequest(
            ProofRequestError::SizesOutOfOrder { .. }
        ))
    ));
    assert_eq!(
        store.root_at(0).await.expect("empty root"),
        store::merkle::empty_root()
    );
}

#[tokio::test]
async fn rejected_append_adds_no_leaf() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("once", ExpectedRevision::NoStream, 2)])
        .await
        .expect("first append");

    let rejected = store
        .append(vec![
            stream_append("fresh", ExpectedRevision::NoStream, 3),
            stream_append("once", ExpectedRevision::NoStream, 1),
        ])
        .await;
    assert!(matches!(
        rejected,
        Err(StoreError::WrongExpectedRevision { .. })
    ));

    store
        .append(vec![stream_append("once", ExpectedRevision::Exact(1), 1)])
        .await
        .expect("append after the rejection");
    assert_tree_matches_rows(&store).await;
    assert_eq!(store.tree_size().await.expect("tree size"), 3);
}

#[tokio::test]
async fn concurrent_writers_keep_tree() {
    let (_folder, path, store) = open_temp_store().await;
    // A second handle has its own writer thread, like a second process on the same file.
    let second = SqliteStore::open(&path).await.expect("open second handle");

    let mut tasks = Vec::new();
    for task in 0..8 {
        let handle: Arc<SqliteStore> = if task % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            for round in 0..20 {
                let events = round % 3 + 1;
                handle
                    .append(vec![stream_append(
                        &format!("writer-{task}"),
                        ExpectedRevision::Any,
                        events,
                    )])
                    .await
                    .expect("concurrent append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }

    // 8 writers, 20 rounds each, 1 to 3 events per round in the cycle 1, 2, 3.
    let expected_events: u64 = 8 * (0..20u64).map(|round| round % 3 + 1).sum::<u64>();
    assert_eq!(store.tree_size().await.expect("tree size"), expected_events);
    assert_tree_matches_rows(&store).await;
}

#[tokio::test]
async fn reopen_keeps_tree() {
    let (_folder, path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 37).await;
    let root = store.root_at(37).await.expect("root");
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(reopened.tree_size().await.expect("tree size"), 37);
    assert_eq!(reopened.root_at(37).await.expect("root after reopen"), root);

    append_mixed(reopened.as_ref(), 5).await;
    assert_tree_matches_rows(&reopened).await;
    let proof = reopened
        .consistency_proof(37, 42)
        .await
        .expect("consistency proof");
    let root42 = reopened.root_at(42).await.expect("root 42");
    assert_eq!(verify_consistency(37, 42, &proof, &root, &root42), Ok(()));
}

/// Schema of a version 1 file, from before the Merkle tree existed.
const VERSION_1_SCHEMA: &str = "
    CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        payload BLOB NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at_ms INTEGER NOT NULL,
        UNIQUE (stream_id, revision)
    );
    CREATE TABLE streams (
        stream_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID;
    PRAGMA user_version = 1;
";

/// Writes a version 1 event store with `count` events over three streams.
fn write_version_1_file(path: &Path, count: u64) {
    let connection = Connection::open(path).expect("create file");
    connection
        .execute_batch(VERSION_1_SCHEMA)
        .expect("create version 1 schema");

    let metadata = Metadata {
        actor_id: "tok-1".to_owned(),
        actor_role: "admin".to_owned(),
        request_id: "req-1".to_owned(),
        idempotency_key: None,
    };
    let metadata = serde_json::to_string(&metadata).expect("metadata JSON");
    for position in 1..=count {
        let stream = format!("old-{}", position % 3);
        let revision = (position - 1) / 3;
        connection
            .execute(
                "INSERT INTO events VALUES (?1, ?2, ?3, 'OldEvent', 1, ?4, ?5, ?6)",
                rusqlite::params![
                    position as i64,
                    stream,
                    revision as i64,
                    format!("payload {position}").into_bytes(),
                    metadata,
                    1_600_000_000_000i64 + position as i64
                ],
            )
            .expect("insert event");
        connection
            .execute(
                "INSERT INTO streams VALUES (?1, ?2) ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision",
                rusqlite::params![stream, revision as i64],
            )
            .expect("update stream");
    }
}

#[tokio::test]
async fn old_store_gets_nodes() {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("events.db");
    write_version_1_file(&path, 45);

    let Err(read_only) = SqliteStore::open_read_only(&path) else {
        panic!("read-only open of a version 1 file succeeded");
    };
    assert!(
        read_only.to_string().contains("schema version 1"),
        "{read_only}"
    );

    let store = SqliteStore::open(&path).await.expect("open and upgrade");
    assert_eq!(store.tree_size().await.expect("tree size"), 45);
    assert_tree_matches_rows(&store).await;
    let origin = store.log_origin().await.expect("origin");
    assert!(origin.starts_with("vaxledger/"), "origin {origin}");
    let root45 = store.root_at(45).await.expect("root 45");

    store
        .append(vec![stream_append("old-1", ExpectedRevision::Exact(14), 5)])
        .await
        .expect("append after upgrade");
    assert_tree_matches_rows(&store).await;
    let proof = store
        .consistency_proof(45, 50)
        .await
        .expect("consistency proof");
    let root50 = store.root_at(50).await.expect("root 50");
    assert_eq!(verify_consistency(45, 50, &proof, &root45, &root50), Ok(()));
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        reopened.log_origin().await.expect("origin after reopen"),
        origin
    );
}

#[tokio::test]
async fn read_only_copy_serves_proofs() {
    let (folder, path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 21).await;
    let root = store.root_at(21).await.expect("root");
    drop(store);

    let copy = folder.path().join("copy.db");
    std::fs::copy(&path, &copy).expect("copy the closed store");
    let read_only = SqliteStore::open_read_only(&copy).expect("open copy read-only");

    assert_eq!(read_only.tree_size().await.expect("tree size"), 21);
    assert_eq!(read_only.root_at(21).await.expect("root of copy"), root);
    let events = read_everything(read_only.as_ref()).await;
    let proof = read_only
        .inclusion_proof(7, 21)
        .await
        .expect("inclusion proof");
    let leaf = store::merkle::event_leaf_hash(&events[7]);
    assert_eq!(verify_inclusion(&leaf, 7, 21, &proof, &root), Ok(()));

    let origin = read_only.log_origin().await.expect("origin");
    let signer = NoteSigner::generate(&origin).expect("signer");
    let note = Checkpoint::new(&origin, 21, root)
        .sign(&signer)
        .expect("sign");
    let stored = read_only.append_checkpoint(note).await;
    assert!(matches!(stored, Err(StoreError::Backend(_))), "{stored:?}");
}

#[tokio::test]
async fn checkpoints_are_checked_and_kept() {
    let (_folder, path, store) = open_temp_store().await;
    append_mixed(store.as_ref(), 10).await;
    let origin = store.log_origin().await.expect("origin");
    let signer = NoteSigner::generate(&origin).expect("signer");
    assert_eq!(store.latest_checkpoint().await.expect("latest"), None);

    let root6 = store.root_at(6).await.expect("root 6");
    let root10 = store.root_at(10).await.expect("root 10");
    let first_note = Checkpoint::new(&origin, 6, root6)
        .sign(&signer)
        .expect("sign");
    let first = store
        .append_checkpoint(first_note.clone())
        .await
        .expect("store first");
    let second_note = Checkpoint::new(&origin, 10, root10)
        .sign(&signer)
        .expect("sign");
    let second = store
        .append_checkpoint(second_note)
        .await
        .expect("store second");
    assert_eq!(first.tree_size, 6);
    assert_eq!(first.note, first_note);
    assert!(second.id > first.id);

    let rejected = [
        ("wrong root", Checkpoint::new(&origin, 10, root6)),
        (
            "other origin",
            Checkpoint::new("vaxledger/other", 10, root10),
        ),
        ("beyond the log", Checkpoint::new(&origin, 11, root10)),
    ];
    for (case, checkpoint) in rejected {
        let note = checkpoint.sign(&signer).expect("sign");
        let result = store.append_checkpoint(note).await;
        assert!(
            matches!(result, Err(StoreError::InvalidCheckpoint(_))),
            "{case}: {result:?}"
        );
    }
    let garbage = store.append_checkpoint("not a note".to_owned()).await;
    assert!(
        matches!(garbage, Err(StoreError::InvalidCheckpoint(_))),
        "{garbage:?}"
    );

    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(second.clone())
    );
    let all = store.read_checkpoints(0, 10).await.expect("read all");
    assert_eq!(all, vec![first.clone(), second]);
    let after_first = store
        .read_checkpoints(first.id, 10)
        .await
        .expect("read after first");
    assert_eq!(after_first.len(), 1);

    let connection = Connection::open(&path).expect("open for tampering");
    let update = connection.execute("UPDATE checkpoints SET tree_size = 1", []);
    assert!(update.is_err(), "a checkpoint was changed");
    let delete = connection.execute("DELETE FROM merkle_nodes WHERE level = 0", []);
    assert!(delete.is_err(), "Merkle nodes were deleted");
}
