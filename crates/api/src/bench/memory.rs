//! Resident memory of a store and its projections after loading N/10 and N events.

use std::time::Instant;

use projections::Projections;
use store::{EventStore, SqliteStore};

use super::replay::{fill_store, progress_bar as bar};
use super::{grouped, per_second, BenchArgs, Figure};

/// Reads a field such as `VmRSS` from /proc/self/status, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the machine's total memory as text.
pub(crate) fn total_memory() -> String {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    format!("{:.1} GiB memory", kib as f64 / 1024.0 / 1024.0)
}

async fn project_all(store: &std::sync::Arc<SqliteStore>, projections: &std::sync::Arc<Projections>) -> anyhow::Result<()> {
    loop {
        let page = store.read_all(projections.checkpoint(), 10_000).await?;
        if page.is_empty() {
            return Ok(());
        }
        let projections = std::sync::Arc::clone(projections);
        tokio::task::spawn_blocking(move || projections.apply_batch(&page)).await??;
    }
}

/// Resident memory at one point of the load, from /proc/self/status.
struct Resident {
    /// Events in the store at that point.
    events: u64,
    /// `VmRSS`: every resident page of the process, in KiB.
    total_kib: u64,
    /// `RssAnon`: heap and other anonymous pages (SQLite page caches, Rust allocations), in KiB.
    anonymous_kib: u64,
}

impl Resident {
    fn now(events: u64) -> Resident {
        Resident { events, total_kib: status_kib("VmRSS:").unwrap_or(0), anonymous_kib: status_kib("RssAnon:").unwrap_or(0) }
    }

    fn describe(&self) -> String {
        format!("{} MiB ({} MiB anonymous) after {} events", self.total_kib / 1024, self.anonymous_kib / 1024, grouped(self.events as f64))
    }
}

/// Loads events in three steps (a tenth, a half, all) and reports resident memory after each.
///
/// The SQLite page caches have fixed bounds, so memory rises until they are full and is flat
/// after that: the flatness figure compares the half-way point with the end.
pub async fn memory(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let store = SqliteStore::open(&dir.path().join("events.db")).await?;
    let projections = Projections::open(&dir.path().join("projections.db"))?;
    let start = Resident::now(0);
    let bar = bar(args.memory_events, "loading");
    let started = Instant::now();

    let mut points = Vec::new();
    let mut loaded = 0;
    for target in [args.memory_events / 10, args.memory_events / 2, args.memory_events] {
        loaded += fill_store(&store, target.saturating_sub(loaded), &bar).await?;
        project_all(&store, &projections).await?;
        points.push(Resident::now(store.head_position().await?));
    }
    bar.finish_and_clear();

    let rate = per_second(loaded, started.elapsed());
    let [first, middle, last] = [&points[0], &points[1], &points[2]];
    println!(
        "memory: {} at start; {}; {}; {} ({} events/s load + project)",
        start.describe(),
        first.describe(),
        middle.describe(),
        last.describe(),
        grouped(rate)
    );
    Ok(vec![Figure {
        name: format!("resident memory after {} events (store + projections)", grouped(last.events as f64)),
        value: last.describe(),
        baseline: format!("{}; {}", middle.describe(), first.describe()),
        ratio: Some(last.total_kib as f64 / middle.total_kib.max(1) as f64),
        target: "flat in history length (ratio of the end to the half-way point near 1)".into(),
    }])
}
