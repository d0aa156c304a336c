//! `audit replay`: rebuilds the status projections as they stood at a time or position, into a
//! new `projections.db`, and prints their counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use projections::Projections;
use rusqlite::{Connection, OpenFlags};
use store::{EventStore, SqliteStore};
use tracing::info;

use super::pages::EventPages;
use super::progress::event_bar;
use super::snapshot::{Snapshot, PROJECTIONS_DB};
use super::{ensure_outside, format_time, AuditDataDir, AuditOutcome};

/// Arguments of `audit replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("until").required(true).args(["as_of", "until_position"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub data: AuditDataDir,

    /// Replay the events committed at or before this time: RFC 3339 (2021-05-10T18:00:00+05:30)
    /// or a date (2021-05-10, meaning the end of that day in UTC). Replay stops at the first
    /// event committed later.
    #[arg(long, value_name = "TIME", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,

    /// Replay the events at positions 1 to N.
    #[arg(long, value_name = "N")]
    pub until_position: Option<u64>,

    /// Folder for the rebuilt projections.db; created when missing. It must not already contain
    /// a projections.db and must lie outside the data folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Last event a replay applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayLimit {
    /// After the event at this position.
    Position(u64),
    /// Before the first event committed after this time.
    Time(DateTime<Utc>),
}

/// Counts of the rebuilt projections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionSummary {
    /// Position of the last event applied, 0 when none.
    pub position: u64,
    /// Commit time of that event, in milliseconds since the Unix epoch.
    pub recorded_at_ms: Option<i64>,
    /// Registered centres.
    pub centres: u64,
    /// Scheduled sessions, cancelled ones included.
    pub sessions: u64,
    /// Cancelled sessions.
    pub sessions_cancelled: u64,
    /// Seats booked over all sessions.
    pub seats_booked: u64,
    /// Registered beneficiaries.
    pub beneficiaries: u64,
    /// Appointments by status (`booked`, `verified`, `administered`, `cancelled`).
    pub appointments_by_status: BTreeMap<String, u64>,
    /// Appointments locked after too many rejected codes.
    pub appointments_locked: u64,
    /// Doses recorded (`DoseAdministered` events).
    pub doses: u64,
    /// Certificates issued (`CertificateIssued` events).
    pub certificates_issued: u64,
    /// Certificates revoked (`CertificateRevoked` events).
    pub certificates_revoked: u64,
}

impl ProjectionSummary {
    /// Writes the summary, one count per line.
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let time = self.recorded_at_ms.map(format_time).unwrap_or_else(|| "-".to_owned());
        writeln!(out, "state after position {} (committed {time})", self.position)?;
        writeln!(out, "  centres:                {}", self.centres)?;
        writeln!(
            out,
            "  sessions:               {} ({} cancelled, {} seats booked)",
            self.sessions, self.sessions_cancelled, self.seats_booked
        )?;
        writeln!(out, "  beneficiaries:          {}", self.beneficiaries)?;
        let total: u64 = self.appointments_by_status.values().sum();
        writeln!(out, "  appointments:           {total} ({} locked)", self.appointments_locked)?;
        for (status, count) in &self.appointments_by_status {
            writeln!(out, "    {status:<20}  {count}")?;
        }
        writeln!(out, "  doses:                  {}", self.doses)?;
        writeln!(
            out,
            "  certificates:           {} issued, {} revoked",
            self.certificates_issued, self.certificates_revoked
        )
    }
}

/// Runs `audit replay`.
pub(crate) async fn run(args: &ReplayArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<AuditOutcome> {
    let limit = match (args.as_of, args.until_position) {
        (Some(time), None) => ReplayLimit::Time(time),
        (None, Some(position)) => ReplayLimit::Position(position),
        _ => bail!("pass exactly one of --as-of TIME and --until-position N"),
    };

    let summary = replay_data_dir(&args.data.data_dir, limit, &args.out).await?;
    writeln!(out, "replayed into {}", args.out.join(PROJECTIONS_DB).display())?;
    summary.write_to(out).context("writing the summary failed")?;
    Ok(AuditOutcome::Passed)
}

/// Rebuilds the projections of the data folder up to `limit` into `out_dir/projections.db` and
/// returns their counts. The data folder is only read.
pub async fn replay_data_dir(data_dir: &Path, limit: ReplayLimit, out_dir: &Path) -> anyhow::Result<ProjectionSummary> {
    let snapshot = Snapshot::open(data_dir)?;
    let store = snapshot.open_events()?;

    let head = store.head_position().await.context("reading the head position of events.db failed")?;
    if let ReplayLimit::Position(position) = limit {
        if position > head {
            bail!("--until-position {position} is beyond the log, whose last position is {head}");
        }
    }
    let output = prepare_output(data_dir, out_dir)?;
    info!(data_dir = %snapshot.source().display(), ?limit, out = %output.display(), "audit replay started");

    let projections = Projections::open(&output).with_context(|| format!("creating {} failed", output.display()))?;
    let mut counts = EventCounts::default();
    build_projections(&store, &projections, limit, head, &mut counts).await?;
    drop(projections);

    let mut summary = summarize(&output)?;
    summary.doses = counts.doses;
    summary.certificates_issued = counts.certificates_issued;
    summary.certificates_revoked = counts.certificates_revoked;
    summary.recorded_at_ms = counts.last_recorded_at_ms;
    Ok(summary)
}

/// Counts of event types that no projection column keeps.
#[derive(Debug, Default)]
pub(crate) struct EventCounts {
    /// `DoseAdministered` events applied.
    pub(crate) doses: u64,
    /// `CertificateIssued` events applied.
    pub(crate) certificates_issued: u64,
    /// `CertificateRevoked` events applied.
    pub(crate) certificates_revoked: u64,
    /// Commit time of the last event applied.
    pub(crate) last_recorded_at_ms: Option<i64>,
}

/// Applies the events up to `limit` to `projections`, one page per transaction, and returns the
/// last position applied.
pub(crate) async fn build_projections(
    store: &Arc<SqliteStore>,
    projections: &Arc<Projections>,
    limit: ReplayLimit,
    head: u64,
    counts: &mut EventCounts,
) -> anyhow::Result<u64> {
    let last = match limit {
        ReplayLimit::Position(position) => position.min(head),
        ReplayLimit::Time(_) => head,
    };
    let bar = event_bar(last, "replay");
    let mut pages = EventPages::new(store, 0, last);
    let mut applied = 0;

    while let Some(mut page) = pages.next_page().await? {
        let mut reached_time = false;
        if let ReplayLimit::Time(time) = limit {
            // NOTE: an event committed later but stamped earlier (a clock stepped back) is not
            // applied; `audit verify` warns when commit times go backwards.
            let cutoff = time.timestamp_millis();
            if let Some(later) = page.iter().position(|event| event.recorded_at_ms > cutoff) {
                page.truncate(later);
                reached_time = true;
            }
        }

        for event in &page {
            match event.event_type.as_str() {
                "DoseAdministered" => counts.doses += 1,
                "CertificateIssued" => counts.certificates_issued += 1,
                "CertificateRevoked" => counts.certificates_revoked += 1,
                _ => {}
            }
            counts.last_recorded_at_ms = Some(event.recorded_at_ms);
        }
        if !page.is_empty() {
            applied = projections.apply_batch(&page).context("applying events to the projections failed")?;
        }
        bar.inc(page.len() as u64);

        if reached_time {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(applied)
}

/// Checks the output folder and returns the path of the new projections file.
fn prepare_output(data_dir: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_outside(data_dir, out_dir)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {} failed", out_dir.display()))?;

    let output = out_dir.join(PROJECTIONS_DB);
    if output.exists() {
        bail!(
            "{} already exists; remove it or pass another --out folder, because replay builds from position 1",
            output.display()
        );
    }
    Ok(output)
}

/// Counts the rows of a projections file.
pub(crate) fn summarize(path: &Path) -> anyhow::Result<ProjectionSummary> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {} failed", path.display()))?;
    let count = |sql: &str| -> anyhow::Result<u64> {
        let value: i64 = connection
            .query_row(sql, [], |row| row.get(0))
            .with_context(|| format!("counting in {} failed", path.display()))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };

    let mut summary = ProjectionSummary {
        position: count("SELECT COALESCE(MAX(position), 0) FROM checkpoint")?,
        centres: count("SELECT count(*) FROM centres")?,
        sessions: count("SELECT count(*) FROM sessions")?,
        sessions_cancelled: count("SELECT count(*) FROM sessions WHERE cancelled != 0")?,
        seats_booked: count("SELECT COALESCE(SUM(booked), 0) FROM sessions")?,
        beneficiaries: count("SELECT count(*) FROM beneficiaries")?,
        appointments_locked: count("SELECT count(*) FROM appointments WHERE locked != 0")?,
        ..ProjectionSummary::default()
    };

    let mut statement = connection
        .prepare("SELECT status, count(*) FROM appointments GROUP BY status ORDER BY status")
        .context("counting appointments failed")?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
        .context("counting appointments failed")?;
    for row in rows {
        let (status, count) = row.context("counting appointments failed")?;
        summary.appointments_by_status.insert(status, u64::try_from(count).unwrap_or(0));
    }
    Ok(summary)
}

/// Parses `--as-of`: RFC 3339, or a date meaning the last millisecond of that day in UTC.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let end_of_day = NaiveTime::from_hms_milli_opt(23, 59, 59, 999).unwrap_or(NaiveTime::MIN);
        return Ok(date.and_time(end_of_day).and_utc());
    }
    Err(format!(
        "{text:?} is not an RFC 3339 time (2021-05-10T18:00:00+05:30) or a date (2021-05-10)"
    ))
}
