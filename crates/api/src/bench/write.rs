//! Durable append through the real store against raw rusqlite inserts of the same rows in
//! batched transactions with the same durability settings (WAL, `synchronous=FULL`).

use std::sync::Arc;
use std::time::Instant;

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

async fn store_rate(dir: &std::path::Path, writers: usize, total: u64) -> anyhow::Result<f64> {
    let store = SqliteStore::open(&dir.join(format!("store-{writers}.db"))).await?;
    let payload = sample_payload();
    let per_writer = total / writers as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(&store);
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..per_writer {
                let append = StreamAppend {
                    stream_id: format!("appointment-{writer}-{index}"),
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
    let rate = per_second(per_writer * writers as u64, started.elapsed());
    println!("append: {writers} writers: {} commits for {} appends", store.commit_count(), per_writer * writers as u64);
    Ok(rate)
}

fn raw_rate(dir: &std::path::Path, batch: usize, total: u64) -> anyhow::Result<f64> {
    let connection = Connection::open(dir.join(format!("raw-{batch}.db")))?;
    connection.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, revision INTEGER NOT NULL,
             event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL, metadata BLOB NOT NULL,
             recorded_at_ms INTEGER NOT NULL, UNIQUE (stream_id, revision));",
    )?;
    let payload = sample_payload();
    let metadata = serde_json::to_vec(&metadata())?;
    let started = Instant::now();
    let mut written = 0u64;
    while written < total {
        let transaction = connection.unchecked_transaction()?;
        {
            let mut statement = transaction.prepare_cached(
                "INSERT INTO events (stream_id, revision, event_type, schema_version, payload, metadata, recorded_at_ms)
                 VALUES (?1, 0, 'AppointmentBooked', 1, ?2, ?3, ?4)",
            )?;
            for _ in 0..batch.min((total - written) as usize) {
                statement.execute(params![format!("appointment-raw-{written}"), payload, metadata, 0i64])?;
                written += 1;
            }
        }
        transaction.commit()?;
    }
    Ok(per_second(total, started.elapsed()))
}

/// Measures durable appends with 1, 8 and 64 concurrent writers.
pub async fn append(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let mut figures = Vec::new();
    for writers in [1usize, 8, 64] {
        // One writer commits one event per transaction, so it is bound by fsync: run fewer.
        let total = if writers == 1 { (args.append_events / 20).max(500) } else { args.append_events };
        let ours = store_rate(dir.path(), writers, total).await?;
        let raw = raw_rate(dir.path(), writers, total)?;
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
