//! Durable append through the real store against raw rusqlite inserts of the same rows in
//! batched transactions with the same durability settings (WAL, `synchronous=FULL`). Both sides
//! run in alternating slices, so that both see the same spells of a shared disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};

use super::{grouped, per_second, BenchArgs, Figure};

/// Returns a realistic payload: an encoded `AppointmentBooked`, about 200 bytes.
pub(crate) fn sample_payload() -> Vec<u8> {
    use domain::ids::{AppointmentId, BeneficiaryId, CentreId, SessionId};
    let event = domain::Event::AppointmentBooked {
        appointment_id: AppointmentId::new(uuid::Uuid::new_v4()),
        beneficiary_id: BeneficiaryId::new(uuid::Uuid::new_v4()),
        session_id: SessionId::new(uuid::Uuid::new_v4()),
        centre_id: CentreId::new(uuid::Uuid::new_v4()),
        date: chrono::NaiveDate::from_ymd_opt(2021, 9, 17).unwrap_or_default(),
        vaccine: "COVISHIELD".into(),
        dose_number: 1,
        walk_in: false,
    };
    event.encode()
}

fn metadata() -> Metadata {
    Metadata {
        actor_id: "0123456789abcdef".into(),
        actor_role: "citizen".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        idempotency_key: None,
    }
}

/// Number of alternating slices each side's events are split into. On a shared machine the
/// disk's speed changes within seconds, so running the store and the raw baseline in turns, each
/// slice's order swapped, exposes both to the same slow and fast spells.
const SLICES: u64 = 10;

/// The store side of one writer count: an open store and the time spent appending so far.
struct StoreSide {
    /// Store under test, open across all slices.
    store: Arc<SqliteStore>,
    /// Next stream number, shared by all writers.
    next_stream: Arc<AtomicU64>,
    /// Payload of every event.
    payload: Vec<u8>,
    /// Appends acknowledged so far.
    appends: u64,
    /// Time spent in the slices so far.
    elapsed: Duration,
}

impl StoreSide {
    async fn open(dir: &std::path::Path, writers: usize) -> anyhow::Result<StoreSide> {
        Ok(StoreSide {
            store: SqliteStore::open(&dir.join(format!("store-{writers}.db"))).await?,
            next_stream: Arc::new(AtomicU64::new(0)),
            payload: sample_payload(),
            appends: 0,
            elapsed: Duration::ZERO,
        })
    }

    /// Runs `writers` concurrent tasks that each append `per_writer` single-event appends.
    async fn run_slice(&mut self, writers: usize, per_writer: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let store = Arc::clone(&self.store);
            let payload = self.payload.clone();
            // Stream ids come from one counter shared by all writers, as the raw baseline
            // numbers its rows, so both sides insert into the `(stream_id, revision)` index near
            // one place. Ids numbered per writer would touch one index page per writer and
            // commit, which measures key spread rather than the store.
            let next_stream = Arc::clone(&self.next_stream);
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_writer {
                    let stream = next_stream.fetch_add(1, Ordering::Relaxed);
                    let append = StreamAppend {
                        stream_id: format!("appointment-{stream}"),
                        expected: ExpectedRevision::NoStream,
                        events: vec![NewEvent {
                            event_type: "AppointmentBooked".into(),
                            schema_version: 1,
                            payload: payload.clone(),
                            metadata: metadata(),
                        }],
                    };
                    store.append(vec![append]).await?;
                }
                Ok::<_, store::StoreError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }

        self.elapsed += started.elapsed();
        self.appends += per_writer * writers as u64;
        Ok(())
    }
}

/// The raw rusqlite side of one writer count: the connection and the time spent so far.
struct RawSide {
    /// Connection with the store's durability settings (WAL, `synchronous=FULL`) and SQLite's
    /// default automatic checkpoint every 1000 pages, inside the commit that crosses it.
    connection: Connection,
    /// Payload of every row.
    payload: Vec<u8>,
    /// Metadata of every row, JSON as the store writes it.
    metadata: Vec<u8>,
    /// Rows written so far, which also numbers the stream ids.
    written: u64,
    /// Time spent in the slices so far.
    elapsed: Duration,
}

impl RawSide {
    fn open(dir: &std::path::Path, batch: usize) -> anyhow::Result<RawSide> {
        let connection = Connection::open(dir.join(format!("raw-{batch}.db")))?;
        connection.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, revision INTEGER NOT NULL,
                 event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL, metadata BLOB NOT NULL,
                 recorded_at_ms INTEGER NOT NULL, UNIQUE (stream_id, revision));",
        )?;
        Ok(RawSide {
            connection,
            payload: sample_payload(),
            metadata: serde_json::to_vec(&metadata())?,
            written: 0,
            elapsed: Duration::ZERO,
        })
    }

    /// Inserts `count` rows in transactions of `batch` rows.
    fn run_slice(&mut self, batch: usize, count: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let end = self.written + count;
        while self.written < end {
            let transaction = self.connection.unchecked_transaction()?;
            {
                let mut statement = transaction.prepare_cached(
                    "INSERT INTO events (stream_id, revision, event_type, schema_version, payload, metadata, recorded_at_ms)
                     VALUES (?1, 0, 'AppointmentBooked', 1, ?2, ?3, ?4)",
                )?;
                for _ in 0..batch.min((end - self.written) as usize) {
                    statement.execute(params![format!("appointment-raw-{}", self.written), self.payload, self.metadata, 0i64])?;
                    self.written += 1;
                }
            }
            transaction.commit()?;
        }
        self.elapsed += started.elapsed();
        Ok(())
    }
}

/// Measures the store with `writers` concurrent writers and the raw baseline with batches of
/// `writers` rows, in alternating slices. Returns both rates in events per second.
async fn measure(dir: &std::path::Path, writers: usize, total: u64) -> anyhow::Result<(f64, f64)> {
    let per_writer = (total / writers as u64 / SLICES).max(1);
    let per_slice = per_writer * writers as u64;
    let mut ours = StoreSide::open(dir, writers).await?;
    let mut raw = RawSide::open(dir, writers)?;

    for slice in 0..SLICES {
        if slice % 2 == 0 {
            ours.run_slice(writers, per_writer).await?;
            raw.run_slice(writers, per_slice)?;
        } else {
            raw.run_slice(writers, per_slice)?;
            ours.run_slice(writers, per_writer).await?;
        }
    }

    let commits = ours.store.commit_count();
    let mean_group = ours.appends as f64 / commits.max(1) as f64;
    println!(
        "append: {writers} writers: {commits} commits for {} appends, mean group size {mean_group:.1}",
        ours.appends
    );
    Ok((per_second(ours.appends, ours.elapsed), per_second(raw.written, raw.elapsed)))
}

/// Measures durable appends with 1, 8 and 64 concurrent writers.
pub async fn append(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let mut figures = Vec::new();
    for writers in [1usize, 8, 64] {
        // One writer commits one event per transaction, so it is bound by fsync: run fewer.
        let total = if writers == 1 { (args.append_events / 20).max(500) } else { args.append_events };
        let (ours, raw) = measure(dir.path(), writers, total).await?;
        println!("append: {writers} writers: {} events/s, raw rusqlite batches of {writers}: {} events/s", grouped(ours), grouped(raw));
        figures.push(Figure {
            name: format!("durable append, {writers} writers ({total} events)"),
            value: format!("{} events/s", grouped(ours)),
            baseline: format!("{} events/s raw rusqlite, batches of {writers}", grouped(raw)),
            ratio: Some(ours / raw),
            target: "≥ 100,000 events/s with concurrent writers, ≥ 0.5×".into(),
        });
    }
    Ok(figures)
}
