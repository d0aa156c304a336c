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
    /// Times each benchmark but memory runs; the table reports the run with the median ratio and
    /// the spread of the ratios.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
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

/// One line of the result table over repeated runs of the same figure.
struct Summary {
    /// The run whose ratio is the median, or the last run for a figure without a ratio.
    median: Figure,
    /// Ratios of every run, sorted.
    ratios: Vec<f64>,
    /// Values of every run, in run order, for a figure without a ratio.
    values: Vec<String>,
}

impl Summary {
    /// Summarizes the runs of one figure: the run with the median ratio, and the spread.
    fn of(runs: Vec<Figure>) -> Option<Summary> {
        let values: Vec<String> = runs.iter().map(|figure| figure.value.clone()).collect();
        let mut ratios: Vec<(f64, Figure)> = Vec::new();
        let mut last = None;
        for figure in runs {
            match figure.ratio {
                Some(ratio) => ratios.push((ratio, figure)),
                None => last = Some(figure),
            }
        }
        if ratios.is_empty() {
            return last.map(|median| Summary { median, ratios: Vec::new(), values });
        }

        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<f64> = ratios.iter().map(|(ratio, _)| *ratio).collect();
        let middle = ratios.len() / 2;
        let median = ratios.swap_remove(middle).1;
        Some(Summary { median, ratios: sorted, values })
    }

    fn print(&self) {
        let figure = &self.median;
        let (value, ratio) = match (self.ratios.as_slice(), figure.ratio) {
            ([_, _, ..], Some(ratio)) => {
                let spread = format!("{ratio:.2} ({:.2}–{:.2})", self.ratios[0], self.ratios[self.ratios.len() - 1]);
                (figure.value.clone(), spread)
            }
            (_, Some(ratio)) => (figure.value.clone(), format!("{ratio:.2}")),
            (_, None) if self.values.len() > 1 => (self.values.join("; "), "-".to_owned()),
            (_, None) => (figure.value.clone(), "-".to_owned()),
        };
        println!("| {} | {} | {} | {} | {} |", figure.name, value, figure.baseline, ratio, figure.target);
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

    // The memory benchmark loads ten million events, so it runs once. It runs first, so that the
    // resident memory it reports is not left over from the other benchmarks' allocations.
    let mut memory_figures = Vec::new();
    if selected.contains(&"memory") {
        memory_figures = memory::memory(&args).await?;
    }

    // Each repetition runs every selected benchmark once, so that a slow spell of the shared
    // machine spreads over all figures instead of hitting one figure's every run.
    let mut runs: Vec<Vec<Figure>> = Vec::new();
    let repeated = selected.iter().any(|name| *name != "memory");
    for repetition in (1..=args.repeat).filter(|_| repeated) {
        println!("run {repetition} of {}", args.repeat);
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
        runs.push(figures);
    }
    let mut summaries = Vec::new();
    let figure_count = runs.first().map(Vec::len).unwrap_or(0);
    for index in 0..figure_count {
        let figure_runs: Vec<Figure> = runs.iter().filter_map(|figures| figures.get(index).cloned()).collect();
        summaries.extend(Summary::of(figure_runs));
    }
    for figure in memory_figures {
        summaries.extend(Summary::of(vec![figure]));
    }


    if repeated {
        println!();
        println!("{} runs; each row shows the run with the median ratio, and the ratio's range over all runs in brackets.", args.repeat);
    }
    println!();
    println!("| figure | value | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for summary in &summaries {
        summary.print();
    }
    Ok(ExitCode::SUCCESS)
}
