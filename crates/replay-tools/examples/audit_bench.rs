//! Generates a large data folder and measures `audit verify` and `audit rebuild --diff` on it
//! against a raw sequential read of the same rows, in one run. BENCHMARKS.md records the
//! results.
//!
//! ```text
//! cargo run --release -p replay-tools --example audit_bench -- generate DIR [EVENTS]
//! cargo run --release -p replay-tools --example audit_bench -- measure DIR
//! ```
//!
//! `generate` appends realistic journeys (registration, booking, wrong codes, cancellations,
//! verification, dose, certificate signed by the real gate) until the log contains at least
//! EVENTS events (default 1,000,000). It signs a checkpoint after every batch of citizens.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use common::LedgerFixture;
use replay_tools::audit::rebuild::{rebuild_data_dir, CompareOptions};
use replay_tools::audit::verify::verify_data_dir;
use rusqlite::{Connection, OpenFlags};

/// Citizens per batch; each batch's phases are appended concurrently, then a checkpoint is
/// signed. About 10 events per citizen.
const CITIZENS_PER_BATCH: usize = 5_000;

/// Centres, each with one session of the maximum capacity (5,000 seats).
const CENTRES: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, dir] if mode == "generate" => generate(Path::new(dir), 1_000_000).await,
        [mode, dir, events] if mode == "generate" => {
            let events = events.parse().with_context(|| format!("EVENTS {events:?} is not a number"))?;
            generate(Path::new(dir), events).await
        }
        [mode, dir] if mode == "measure" => measure(Path::new(dir)).await,
        _ => bail!("usage: audit_bench generate DIR [EVENTS] | audit_bench measure DIR"),
    }
}

/// Fills a new data folder until it contains at least `target` events.
async fn generate(dir: &Path, target: u64) -> anyhow::Result<()> {
    if dir.exists() {
        bail!("{} exists; pass a new folder", dir.display());
    }
    let started = Instant::now();
    let mut fixture = LedgerFixture::create(dir).await;
    fixture.add_centres(CENTRES, 5_000).await;

    let mut citizens = 0;
    while fixture.head().await < target {
        fixture.add_citizens(CITIZENS_PER_BATCH).await;
        fixture.checkpoint().await;
        citizens += CITIZENS_PER_BATCH;
        println!("{:>9} events, {citizens} citizens, {:.0?}", fixture.head().await, started.elapsed());
    }
    let head = fixture.head().await;
    let checkpoints = fixture.checkpoints_signed;
    let data_dir = fixture.finish().await;
    println!(
        "generated {head} events, {citizens} citizens, {checkpoints} checkpoints in {} in {:.1?}",
        data_dir.display(),
        started.elapsed()
    );
    Ok(())
}

/// Measures the raw read, verify and rebuild --diff on one folder, in that order.
async fn measure(dir: &Path) -> anyhow::Result<()> {
    let events_db = dir.join("events.db");
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("events.db");
    let started = Instant::now();
    std::fs::copy(&events_db, &copy)?;
    let copied = started.elapsed();

    // Counted on the copy, because even a read-only SQLite connection adds -wal and -shm files
    // beside the database it opens.
    let events = count_events(&copy)?;
    println!("{events} events in {} ({} MB)", events_db.display(), std::fs::metadata(&events_db)?.len() / 1_000_000);
    report("copy events.db (part of every audit command)", events, copied);

    let started = Instant::now();
    let read = raw_select(&copy)?;
    let raw = started.elapsed();
    report("raw sequential SELECT of every events row", read, raw);

    let started = Instant::now();
    let paged = store_pages(&copy).await?;
    report("SqliteStore::read_all in pages of 10,000, no checks", paged, started.elapsed());

    let started = Instant::now();
    let verified = verify_data_dir(dir, Utc::now()).await?;
    let verify = started.elapsed();
    if !verified.passed() {
        bail!("verify failed: {:?}", verified.first_problem());
    }
    report("audit verify", events, verify);

    let rebuilt = tempfile::tempdir()?;
    let options = CompareOptions { max_rows: 10, unmask: false, compare: true };
    let started = Instant::now();
    let diff = rebuild_data_dir(dir, rebuilt.path(), &options).await?;
    let rebuild = started.elapsed();
    if !diff.is_empty() {
        bail!(
            "rebuild found {} differing rows and these table differences: {:?}",
            diff.difference_count,
            diff.schema_problems
        );
    }
    report("audit rebuild --diff", events, rebuild);

    println!("ratio verify / raw SELECT time: {:.1}", verify.as_secs_f64() / raw.as_secs_f64());
    println!("ratio rebuild --diff / raw SELECT time: {:.1}", rebuild.as_secs_f64() / raw.as_secs_f64());
    Ok(())
}

/// Prints one measurement with its rate.
fn report(what: &str, events: u64, elapsed: Duration) {
    let rate = events as f64 / elapsed.as_secs_f64();
    println!("{what}: {elapsed:.2?}, {rate:.0} events/s");
}

/// Reads every event through the store in pages, as the audit commands do, and returns the
/// number read.
async fn store_pages(path: &Path) -> anyhow::Result<u64> {
    let store = store::SqliteStore::open_read_only(path)?;
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = store::EventStore::read_all(store.as_ref(), after, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.position;
        count += page.len() as u64;
    }
}

/// Returns the number of rows in `events`.
fn count_events(path: &Path) -> anyhow::Result<u64> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count: i64 = connection.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    Ok(u64::try_from(count)?)
}

/// Reads every column of every row in position order into owned values, as the store's reader
/// does before decoding, and returns the number of rows.
fn raw_select(path: &PathBuf) -> anyhow::Result<u64> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = connection.prepare(
        "SELECT position, stream_id, revision, event_type, schema_version, payload, metadata, recorded_at_ms \
         FROM events ORDER BY position",
    )?;
    let mut rows = statement.query([])?;
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let stream_id: String = row.get(1)?;
        let event_type: String = row.get(3)?;
        let payload: Vec<u8> = row.get(5)?;
        let metadata: String = row.get(6)?;
        let _: (i64, i64, i64, i64) = (row.get(0)?, row.get(2)?, row.get(4)?, row.get(7)?);
        bytes += stream_id.len() + event_type.len() + payload.len() + metadata.len();
        count += 1;
    }
    std::hint::black_box(bytes);
    Ok(count)
}
