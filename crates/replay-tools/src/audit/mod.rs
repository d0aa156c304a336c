//! `vaxledger audit`: tools that let an auditor check a copy of a data folder without trusting
//! the server that wrote it.
//!
//! - [`verify`]: proves that no event was changed, removed, reordered or inserted, and checks
//!   every certificate against its events and the issuer keys.
//! - [`replay`]: rebuilds the status projections as they stood at a time or position.
//! - [`rebuild`]: rebuilds every projection from position 0 and lists the rows where the live
//!   `projections.db` differs.
//! - [`timeline`]: one beneficiary's events in order, personal data masked.
//! - [`export`]: every event with its decoded payload, as JSON Lines or CSV.
//!
//! Every command reads the data folder through [`snapshot::Snapshot`], which copies the SQLite
//! files it needs into a private temporary folder first. SQLite creates `-wal` and `-shm` files
//! beside a WAL database even for a read-only connection, so opening the originals would change
//! the folder under audit.

pub mod export;
mod pages;
mod progress;
pub mod rebuild;
pub mod replay;
pub mod snapshot;
pub mod timeline;
pub mod verify;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};

pub use export::{ExportArgs, ExportFormat};
pub use rebuild::RebuildArgs;
pub use replay::ReplayArgs;
pub use timeline::TimelineArgs;
pub use verify::AuditVerifyArgs;

/// Audit subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Prove that no event was changed, removed, reordered or inserted, and check every
    /// certificate.
    ///
    /// Exits with status 0 when every check passes and 1 when one fails, naming the first bad
    /// position.
    Verify(AuditVerifyArgs),
    /// Rebuild the status projections from the events up to a time or a position, into a new
    /// folder, and print their counts.
    Replay(ReplayArgs),
    /// Rebuild every projection from position 0 and list the rows where the live
    /// projections.db differs. Exits with status 1 when rows differ.
    Rebuild(RebuildArgs),
    /// Print one beneficiary's events in position order, with names masked unless --unmask.
    Timeline(TimelineArgs),
    /// Export events with decoded payloads and metadata as JSON Lines or CSV.
    Export(ExportArgs),
}

/// Data folder option of every audit subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditDataDir {
    /// Data folder to inspect (a copy is fine): the folder that contains events.db. It is only
    /// read; the SQLite files are copied into a temporary folder first (TMPDIR sets where).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// Verdict of an audit subcommand, turned into the process exit status by the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Every check passed, or the command only reports.
    Passed,
    /// A check failed: tampering, a broken invariant, or projections that differ.
    Failed,
}

impl From<AuditOutcome> for ExitCode {
    fn from(outcome: AuditOutcome) -> Self {
        match outcome {
            AuditOutcome::Passed => ExitCode::SUCCESS,
            AuditOutcome::Failed => ExitCode::from(1),
        }
    }
}

/// Runs an audit subcommand, printing its report to standard output.
///
/// An error (unreadable or corrupt file, bad argument) is returned rather than printed, so the
/// binary reports it and exits with a non-zero status.
pub async fn run_audit(command: AuditCommand) -> anyhow::Result<AuditOutcome> {
    let mut out = BufWriter::new(io::stdout());
    let outcome = run_audit_to(command, &mut out, Utc::now()).await;
    out.flush().context("writing to standard output failed")?;
    outcome
}

/// Runs an audit subcommand, writing its report to `out`; certificates are judged at `now`.
pub async fn run_audit_to(
    command: AuditCommand,
    out: &mut (dyn Write + Send),
    now: DateTime<Utc>,
) -> anyhow::Result<AuditOutcome> {
    match command {
        AuditCommand::Verify(args) => verify::run(&args, out, now).await,
        AuditCommand::Replay(args) => replay::run(&args, out).await,
        AuditCommand::Rebuild(args) => rebuild::run(&args, out).await,
        AuditCommand::Timeline(args) => timeline::run(&args, out).await,
        AuditCommand::Export(args) => export::run(&args, out).await,
    }
}

/// Fails when `output` lies inside the data folder, because the audit tools never write there.
///
/// `output` need not exist yet; its nearest existing ancestor is compared.
pub(crate) fn ensure_outside(data_dir: &Path, output: &Path) -> anyhow::Result<()> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("data folder {} not found", data_dir.display()))?;

    let absolute = if output.is_absolute() {
        output.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current folder failed")?
            .join(output)
    };
    let mut existing = absolute.as_path();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(path) => break path,
            Err(_) => match existing.parent() {
                Some(parent) => existing = parent,
                None => break absolute.clone(),
            },
        }
    };

    if resolved.starts_with(&data_dir) {
        anyhow::bail!(
            "{} is inside the data folder {}; the audit tools never write there, so choose an \
             output outside it",
            output.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Formats a store time (milliseconds since the Unix epoch) as RFC 3339 UTC with milliseconds.
pub(crate) fn format_time(recorded_at_ms: i64) -> String {
    match DateTime::from_timestamp_millis(recorded_at_ms) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("{recorded_at_ms} ms (out of range)"),
    }
}
