//! Micro-benchmarks of the SQLite event store. They measure durable appends of 1, 16 and 256
//! events through `SqliteStore` (one commit and one fsync each), the writer's Merkle step alone
//! (leaf hash and node inserts, no commit), and inclusion proofs read from the stored nodes.
//!
//! Every file lives in a temporary folder on the disk that `TMPDIR` names, so the append figures
//! depend on that disk's fsync time. Run with `cargo bench -p store --bench append`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use store::merkle::leaf_bytes;
use store::sqlite::bench_support;
use store::{
    EventStore, ExpectedRevision, Metadata, NewEvent, RecordedEvent, SqliteStore, StreamAppend,
};

/// Events per append in the durable append benchmark.
const BATCH_SIZES: [usize; 3] = [1, 16, 256];

/// Events stored before the inclusion proofs are measured.
const PROOF_TREE_SIZE: u64 = 100_000;

/// Events written per transaction while the proof benchmark fills its store.
const FILL_BATCH: usize = 1_000;

/// Returns an event of the size of an encoded `AppointmentBooked`, about 200 bytes of payload.
fn sample_event() -> NewEvent {
    NewEvent {
        event_type: "AppointmentBooked".to_owned(),
        schema_version: 1,
        payload: vec![0xa5; 200],
        metadata: Metadata {
            actor_id: "0123456789abcdef".to_owned(),
            actor_role: "citizen".to_owned(),
            request_id: "6f1c1a52-44a4-4c1b-9f0e-2a1d7e0c9b11".to_owned(),
            idempotency_key: None,
        },
    }
}

/// Returns a stored event at `position`, for computing its leaf bytes.
fn recorded_event(position: u64) -> RecordedEvent {
    let event = sample_event();
    RecordedEvent {
        position,
        stream_id: format!("appointment-{position}"),
        revision: 0,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        metadata: event.metadata,
        recorded_at_ms: 1_631_836_800_000,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("build a Tokio runtime")
}

/// Measures one `append` call per iteration, each a new stream with `batch` events, so each
/// iteration is one group commit with its fsync.
fn durable_append(criterion: &mut Criterion) {
    let runtime = runtime();
    let folder = tempfile::tempdir().expect("create temp dir");
    let mut group = criterion.benchmark_group("sqlite_store_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    for batch in BATCH_SIZES {
        let path = folder.path().join(format!("append-{batch}.db"));
        let store = runtime
            .block_on(SqliteStore::open(&path))
            .expect("open the store");
        let next_stream = AtomicU64::new(0);

        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{batch}_events"), |bencher| {
            bencher.iter_batched(
                || StreamAppend {
                    stream_id: format!("bench-{}", next_stream.fetch_add(1, Ordering::Relaxed)),
                    expected: ExpectedRevision::NoStream,
                    events: (0..batch).map(|_| sample_event()).collect(),
                },
                |append| {
                    runtime
                        .block_on(store.append(vec![append]))
                        .expect("append")
                },
                BatchSize::SmallInput,
            );
        });

        drop(store);
    }
    group.finish();
}

/// Measures the writer's Merkle step for one event, without the event row and without a commit:
/// leaf bytes, leaf hash, and the inserts of the leaf and the parents it completes.
fn merkle_append(criterion: &mut Criterion) {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("merkle.db");
    let (connection, _) = bench_support::open_writer(&path).expect("open the writer connection");
    let mut next_leaf = 0u64;

    let mut group = criterion.benchmark_group("merkle");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_leaf", |bencher| {
        bencher.iter_custom(|iterations| {
            // The commit's fsync is outside the timed part, because the writer pays it once per
            // group, not per leaf.
            connection
                .execute_batch("BEGIN IMMEDIATE")
                .expect("begin a transaction");
            let mut edge = bench_support::MerkleRightEdge::default();
            let started = Instant::now();
            for _ in 0..iterations {
                let leaf = leaf_bytes(&recorded_event(next_leaf + 1));
                let hash = bench_support::append_merkle_leaf(
                    &connection,
                    &path,
                    next_leaf,
                    &leaf,
                    &mut edge,
                )
                .expect("append a Merkle leaf");
                black_box(hash);
                next_leaf += 1;
            }
            let elapsed = started.elapsed();
            connection.execute_batch("COMMIT").expect("commit");
            elapsed
        });
    });
    group.finish();
}

/// Measures inclusion proofs through `SqliteStore::inclusion_proof` (a pooled read-only connection on
/// Tokio's blocking pool) in a tree of [`PROOF_TREE_SIZE`] events.
fn inclusion_proof(criterion: &mut Criterion) {
    let runtime = runtime();
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("proofs.db");
    let store: Arc<SqliteStore> = runtime.block_on(async {
        let store = SqliteStore::open(&path).await.expect("open the store");
        let mut stored = 0u64;
        while stored < PROOF_TREE_SIZE {
            let append = StreamAppend {
                stream_id: format!("fill-{stored}"),
                expected: ExpectedRevision::NoStream,
                events: (0..FILL_BATCH).map(|_| sample_event()).collect(),
            };
            store.append(vec![append]).await.expect("fill the store");
            stored += FILL_BATCH as u64;
        }
        store
    });

    let mut group = criterion.benchmark_group("merkle");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut leaf_index = 0u64;
    group.bench_function(format!("inclusion_proof_{PROOF_TREE_SIZE}"), |bencher| {
        bencher.iter(|| {
            // Spread the leaves over the tree, so the ragged right edge is measured too.
            leaf_index = (leaf_index + 7_919) % PROOF_TREE_SIZE;
            let proof = runtime
                .block_on(store.inclusion_proof(leaf_index, PROOF_TREE_SIZE))
                .expect("inclusion proof");
            black_box(proof)
        });
    });
    group.finish();
}

criterion_group!(benches, durable_append, merkle_append, inclusion_proof);
criterion_main!(benches);
