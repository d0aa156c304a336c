//! `audit export`: every event of a position range with its decoded payload and metadata, as
//! JSON Lines (one object per line) or CSV (RFC 4180, with a header row).
//!
//! The payload is decoded with `domain::Event::decode`, so an older schema version appears in
//! its current shape; `schema_version` still states the stored version. A payload that does not
//! decode is exported as hex with the decoding error, rather than stopping the export.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use domain::Event;
use serde_json::{json, Value};
use store::{EventStore, RecordedEvent};
use tracing::info;

use super::pages::EventPages;
use super::progress::event_bar;
use super::snapshot::Snapshot;
use super::{ensure_outside, format_time, AuditDataDir, AuditOutcome};

/// Column names of the CSV export, in order.
pub const CSV_HEADER: [&str; 13] = [
    "position",
    "stream_id",
    "revision",
    "event_type",
    "schema_version",
    "recorded_at",
    "recorded_at_ms",
    "actor_id",
    "actor_role",
    "request_id",
    "idempotency_key",
    "payload",
    "payload_error",
];

/// Output format of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines: one JSON object per event and line.
    Jsonl,
    /// CSV with a header row. The payload column contains the payload as JSON text.
    Csv,
}

/// Arguments of `audit export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: AuditDataDir,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,

    /// First position to export (inclusive); 1 when omitted.
    #[arg(long, value_name = "POS")]
    pub from: Option<u64>,

    /// Last position to export (inclusive); the last event when omitted or beyond it.
    #[arg(long, value_name = "POS")]
    pub to: Option<u64>,

    /// File to write, outside the data folder; it must not exist. Standard output when omitted.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `audit export`.
pub(crate) async fn run(args: &ExportArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<AuditOutcome> {
    let from = args.from.unwrap_or(1).max(1);
    if let Some(to) = args.to {
        if to < from {
            bail!("--to {to} is before --from {from}; pass a range with --from <= --to");
        }
    }

    let Some(path) = &args.out else {
        let exported = export_data_dir(&args.data.data_dir, args.format, from, args.to, out).await?;
        info!(exported, "audit export written to standard output");
        return Ok(AuditOutcome::Passed);
    };

    ensure_outside(&args.data.data_dir, path)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} failed; it must not exist yet", path.display()))?;
    let mut writer = BufWriter::new(file);
    let exported = export_data_dir(&args.data.data_dir, args.format, from, args.to, &mut writer).await?;
    writer.flush().with_context(|| format!("writing {} failed", path.display()))?;

    writeln!(out, "exported {exported} events to {}", path.display())?;
    Ok(AuditOutcome::Passed)
}

/// Writes the events at positions `from..=to` of the data folder to `out` and returns how many
/// were written. `to` defaults to, and is capped at, the last position.
pub async fn export_data_dir(
    data_dir: &Path,
    format: ExportFormat,
    from: u64,
    to: Option<u64>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    let snapshot = Snapshot::open(data_dir)?;
    let store = snapshot.open_events()?;
    let head = store.head_position().await.context("reading the head position of events.db failed")?;
    let last = to.unwrap_or(head).min(head);
    let after = from.saturating_sub(1);

    let bar = event_bar(last.saturating_sub(after), "export");
    let mut pages = EventPages::new(&store, after, last);
    let mut exported = 0u64;
    match format {
        ExportFormat::Jsonl => {
            while let Some(page) = pages.next_page().await? {
                for event in &page {
                    serde_json::to_writer(&mut *out, &json_record(event)).context("writing JSON failed")?;
                    out.write_all(b"\n").context("writing JSON failed")?;
                }
                exported += page.len() as u64;
                bar.inc(page.len() as u64);
            }
        }
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(CSV_HEADER).context("writing CSV failed")?;
            while let Some(page) = pages.next_page().await? {
                for event in &page {
                    csv.write_record(csv_record(event)).context("writing CSV failed")?;
                }
                exported += page.len() as u64;
                bar.inc(page.len() as u64);
            }
            csv.flush().context("writing CSV failed")?;
        }
    }
    bar.finish_and_clear();
    Ok(exported)
}

/// Decodes the payload to its JSON form (the `data` of the tagged event), or returns the error.
fn payload_json(event: &RecordedEvent) -> Result<Value, String> {
    let decoded = Event::decode(&event.event_type, event.schema_version, &event.payload).map_err(|err| err.to_string())?;
    let tagged = serde_json::to_value(&decoded).map_err(|err| err.to_string())?;
    match tagged {
        Value::Object(mut fields) => Ok(fields.remove("data").unwrap_or(Value::Null)),
        other => Ok(other),
    }
}

/// Builds the JSON Lines object of one event.
fn json_record(event: &RecordedEvent) -> Value {
    let mut record = json!({
        "position": event.position,
        "stream_id": event.stream_id,
        "revision": event.revision,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": format_time(event.recorded_at_ms),
        "recorded_at_ms": event.recorded_at_ms,
        "metadata": event.metadata,
    });
    match payload_json(event) {
        Ok(payload) => record["payload"] = payload,
        Err(err) => {
            record["payload"] = Value::Null;
            record["payload_error"] = Value::String(err);
            record["payload_cbor_hex"] = Value::String(hex::encode(&event.payload));
        }
    }
    record
}

/// Builds the CSV fields of one event, in [`CSV_HEADER`] order.
fn csv_record(event: &RecordedEvent) -> [String; 13] {
    let (payload, payload_error) = match payload_json(event) {
        Ok(payload) => (payload.to_string(), String::new()),
        Err(err) => (hex::encode(&event.payload), err),
    };
    [
        event.position.to_string(),
        event.stream_id.clone(),
        event.revision.to_string(),
        event.event_type.clone(),
        event.schema_version.to_string(),
        format_time(event.recorded_at_ms),
        event.recorded_at_ms.to_string(),
        event.metadata.actor_id.clone(),
        event.metadata.actor_role.clone(),
        event.metadata.request_id.clone(),
        event.metadata.idempotency_key.clone().unwrap_or_default(),
        payload,
        payload_error,
    ]
}
