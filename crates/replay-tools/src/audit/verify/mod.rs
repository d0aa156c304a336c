//! `audit verify`: one pass over the log that proves no event was changed, removed, reordered
//! or inserted, followed by the certificate checks.
//!
//! The pass reads the events in pages and feeds each page to the row checks ([`rows`]) and the
//! Merkle checks ([`tree`]); neither keeps the events. The certificate checks
//! ([`certificates`]) then read the vault and the appointment stream of each certificate.

mod certificates;
pub mod report;
mod rows;
mod tree;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use store::EventStore;
use tracing::info;

pub use report::{Check, CheckStatus, Problem, VerifyReport};

use super::pages::EventPages;
use super::progress::event_bar;
use super::snapshot::{Snapshot, CERTIFICATES_DB, EVENTS_DB, KEYS_DIR};
use super::{AuditDataDir, AuditOutcome};
use rows::RowChecks;
use tree::TreeChecks;

/// File in `keys/` that contains the verifier key of the signed checkpoints.
pub const AUDIT_KEY_FILE: &str = "audit.pub";

/// Arguments of `audit verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub data: AuditDataDir,
}

/// Runs `audit verify`, writing the report to `out`.
pub(crate) async fn run(
    args: &AuditVerifyArgs,
    out: &mut (dyn Write + Send),
    now: DateTime<Utc>,
) -> anyhow::Result<AuditOutcome> {
    let report = verify_data_dir(&args.data.data_dir, now).await?;
    report.write_to(out).context("writing the report failed")?;

    Ok(if report.passed() { AuditOutcome::Passed } else { AuditOutcome::Failed })
}

/// Verifies the data folder at `data_dir` without writing to it. Certificates are judged at
/// `now`.
///
/// Returns an error only when the folder cannot be read at all: missing, or a corrupt or
/// truncated database. Every sign of tampering is a failed check in the report instead.
pub async fn verify_data_dir(data_dir: &Path, now: DateTime<Utc>) -> anyhow::Result<VerifyReport> {
    let snapshot = Snapshot::open(data_dir)?;
    let store = snapshot.open_events()?;
    let events_copy = snapshot
        .open_connection(EVENTS_DB)?
        .with_context(|| format!("{} has no {EVENTS_DB}", snapshot.source().display()))?;
    let head = store
        .head_position()
        .await
        .context("reading the head position of events.db failed")?;
    info!(data_dir = %snapshot.source().display(), head, "audit verify started");

    let audit_key_file = snapshot.source_file(KEYS_DIR).join(AUDIT_KEY_FILE);
    let mut tree = TreeChecks::prepare(&store, &events_copy, &audit_key_file, head).await?;
    let mut rows = RowChecks::new();

    // The certificate checks run on a blocking thread beside the pass; the pass sends each
    // CertificateIssued event as it finds it.
    // NOTE: the channel is unbounded, so if that thread falls behind, the queued records (about
    // 200 bytes each) grow with the number of certificates rather than staying per page.
    let (issued, issued_receiver) = std::sync::mpsc::channel();
    let certificate_events = snapshot
        .open_connection(EVENTS_DB)?
        .with_context(|| format!("{} has no {EVENTS_DB}", snapshot.source().display()))?;
    let vault = snapshot.open_connection(CERTIFICATES_DB)?;
    let keys_dir = snapshot.source_file(KEYS_DIR);
    let certificate_check = tokio::task::spawn_blocking(move || {
        certificates::check_certificates(&certificate_events, vault.as_ref(), &keys_dir, issued_receiver, now)
    });

    let bar = event_bar(head, "verify");
    let mut pages = EventPages::new(&store, 0, head);
    while let Some(page) = pages.next_page().await? {
        for event in &page {
            rows.check(event);
        }
        for record in rows.certificates.drain(..) {
            // A closed channel means the certificate thread stopped on an error, which the join
            // below reports.
            let _ = issued.send(record);
        }
        tree.check_page(&page, &events_copy)?;
        bar.inc(page.len() as u64);
    }
    bar.finish_and_clear();
    drop(issued);

    let event_count = rows.event_count();
    let stream_count = rows.stream_count();
    let mut checks = rows.finish(&store, &events_copy).await?;
    checks.extend(tree.finish(&store, &events_copy).await?);
    let certificates = certificate_check.await.context("the certificate check thread failed")??;
    checks.push(certificates);

    let report = VerifyReport {
        data_dir: snapshot.source().to_path_buf(),
        head_position: head,
        event_count,
        stream_count,
        checks,
    };
    match report.first_problem() {
        Some((check, problem)) => {
            info!(data_dir = %report.data_dir.display(), check, position = ?problem.position, problem = %problem.message, "audit verify failed")
        }
        None => info!(data_dir = %report.data_dir.display(), events = event_count, "audit verify passed"),
    }
    Ok(report)
}
