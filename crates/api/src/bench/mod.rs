//! `vaxledger bench`: the macro benchmark. Each figure is measured beside its baseline in the
//! same run on the same machine, and reported as an absolute rate and a ratio, because the
//! machines this runs on are shared and noisy.

mod flows;
mod memory;
mod replay;
mod write;

use std::process::ExitCode;
use std::time::Duration;

/// Options of `vaxledger bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events appended per writer-count run of the append benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub append_events: u64,
    /// Events in the store that the replay benchmark rebuilds projections from.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: u64,
    /// Concurrent HTTP clients for the flow, search and verification benchmarks.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds each HTTP benchmark runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Largest event count of the memory benchmark (measured at 1/10 of it and at it).
    #[arg(long, default_value_t = 10_000_000)]
    pub memory_events: u64,
    /// Benchmarks to run, comma-separated: append, replay, flows, search, verify, memory.
    #[arg(long, default_value = "append,replay,flows,search,verify,memory")]
    pub only: String,
    /// Folder for the benchmark's temporary data (needs a few GB for the memory benchmark).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    pub work_dir: std::path::PathBuf,
}

/// One line of the result table.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Name of the measured figure.
    pub name: String,
    /// Our rate, or another absolute figure.
    pub value: String,
    /// The baseline measured in the same run, if any.
    pub baseline: String,
    /// value / baseline, if both are rates.
    pub ratio: Option<f64>,
    /// The target stated for the figure.
    pub target: String,
}

impl Figure {
    fn print(&self) {
        let ratio = self.ratio.map(|ratio| format!("{ratio:.2}")).unwrap_or_else(|| "-".into());
        println!("| {} | {} | {} | {} | {} |", self.name, self.value, self.baseline, ratio, self.target);
    }
}

/// Formats a rate per second with thousands separators.
pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Formats a number with a thin grouping, such as `123,456`.
pub(crate) fn grouped(value: f64) -> String {
    let text = format!("{:.0}", value);
    let mut out = String::new();
    for (index, ch) in text.chars().enumerate() {
        if index > 0 && (text.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Runs the selected benchmarks and prints a Markdown table.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let selected: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let known = ["append", "replay", "flows", "search", "verify", "memory"];
    if let Some(unknown) = selected.iter().find(|name| !known.contains(name)) {
        anyhow::bail!("unknown benchmark {unknown:?} in --only; choose from {}", known.join(", "));
    }
    println!("machine: {} cores, {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), memory::total_memory());
    let mut figures = Vec::new();
    if selected.contains(&"append") {
        figures.extend(write::append(&args).await?);
    }
    if selected.contains(&"replay") {
        figures.extend(replay::replay(&args).await?);
    }
    if selected.iter().any(|name| matches!(*name, "flows" | "search" | "verify")) {
        figures.extend(flows::http(&args, &selected).await?);
    }
    if selected.contains(&"memory") {
        figures.extend(memory::memory(&args).await?);
    }
    println!();
    println!("| figure | value | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for figure in &figures {
        figure.print();
    }
    Ok(ExitCode::SUCCESS)
}
