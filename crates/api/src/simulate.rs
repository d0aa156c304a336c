//! Workload simulator (being written).

use std::process::ExitCode;

/// Options of `vaxledger simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

/// Runs the simulation.
pub async fn run(_args: SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simulate is not built yet")
}
