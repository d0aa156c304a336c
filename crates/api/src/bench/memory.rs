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

/// Loads events in two steps and reports resident memory after each.
pub async fn memory(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let store = SqliteStore::open(&dir.path().join("events.db")).await?;
    let projections = Projections::open(&dir.path().join("projections.db"))?;
    let start_kib = status_kib("VmRSS:").unwrap_or(0);
    let first = args.memory_events / 10;
    let bar = bar(args.memory_events, "loading");
    let started = Instant::now();
    fill_store(&store, first, &bar).await?;
    project_all(&store, &projections).await?;
    let first_kib = status_kib("VmRSS:").unwrap_or(0);
    let rest = fill_store(&store, args.memory_events - first, &bar).await?;
    project_all(&store, &projections).await?;
    let last_kib = status_kib("VmRSS:").unwrap_or(0);
    bar.finish_and_clear();
    let loaded = store.head_position().await?;
    let rate = per_second(first + rest, started.elapsed());
    println!(
        "memory: RSS {} MiB before, {} MiB after {} events, {} MiB after {} events ({} events/s load + project)",
        start_kib / 1024,
        first_kib / 1024,
        grouped(first as f64),
        last_kib / 1024,
        grouped(loaded as f64),
        grouped(rate)
    );
    Ok(vec![Figure {
        name: format!("resident memory after {} events (store + projections)", grouped(loaded as f64)),
        value: format!("{} MiB", last_kib / 1024),
        baseline: format!("{} MiB after {} events", first_kib / 1024, grouped(first as f64)),
        ratio: Some(last_kib as f64 / first_kib.max(1) as f64),
        target: "flat in history length (ratio near 1)".into(),
    }])
}
