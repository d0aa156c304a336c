//! `audit timeline`: one beneficiary's events in position order: the beneficiary stream and the
//! streams of its appointments, one line each, with names masked unless `--unmask`.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{bail, Context};
use domain::ids::{AppointmentId, BeneficiaryId};
use domain::Event;
use serde_json::Value;
use store::{EventStore, RecordedEvent, SqliteStore};

use super::snapshot::Snapshot;
use super::{format_time, AuditDataDir, AuditOutcome};

/// Payload fields that hold a person's name, masked unless `--unmask`.
const NAME_FIELDS: [&str; 1] = ["name"];

/// Payload fields left out of the timeline lines: ids already implied by the stream, and keyed
/// hashes that mean nothing to a reader.
const OMITTED_FIELDS: [&str; 4] = ["beneficiary_id", "appointment_id", "code_hmac", "mobile_hash"];

/// Arguments of `audit timeline`.
#[derive(Debug, Clone, clap::Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub data: AuditDataDir,

    /// Beneficiary id (UUID), as shown in the beneficiary's certificate or the API.
    #[arg(long, value_name = "ID")]
    pub beneficiary: String,

    /// Show names in full instead of masking them.
    #[arg(long)]
    pub unmask: bool,
}

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Global position.
    pub position: u64,
    /// Commit time, RFC 3339 UTC.
    pub recorded_at: String,
    /// Stream the event belongs to.
    pub stream_id: String,
    /// Event type.
    pub event_type: String,
    /// Role and token id of the actor.
    pub actor: String,
    /// Key payload fields as `name=value`, names masked unless unmasked.
    pub fields: String,
}

/// Runs `audit timeline`.
pub(crate) async fn run(args: &TimelineArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<AuditOutcome> {
    let beneficiary_id = BeneficiaryId::parse(&args.beneficiary)
        .map_err(|_| anyhow::anyhow!("--beneficiary {:?} is not a UUID such as 0c5b3f1e-7d2a-4c7e-9a51-2f1e9b7c4d10", args.beneficiary))?;
    let snapshot = Snapshot::open(&args.data.data_dir)?;
    let store = snapshot.open_events()?;

    let entries = beneficiary_timeline(&store, beneficiary_id, args.unmask).await?;
    writeln!(out, "timeline of beneficiary {beneficiary_id} ({} events)", entries.len())?;
    for entry in &entries {
        writeln!(
            out,
            "{}  #{:<8} {:<30} {:<45} by {}  {}",
            entry.recorded_at, entry.position, entry.event_type, entry.stream_id, entry.actor, entry.fields
        )?;
    }
    if !args.unmask {
        writeln!(out, "(names masked; pass --unmask to show them)")?;
    }
    Ok(AuditOutcome::Passed)
}

/// Returns the events of a beneficiary and of its appointments, in position order.
///
/// Appointments are found in the beneficiary stream (`BeneficiaryAppointmentOpened`, `Closed`
/// and `DoseRecorded`), so an appointment stream is included even when its booking event was
/// removed.
pub async fn beneficiary_timeline(
    store: &SqliteStore,
    beneficiary_id: BeneficiaryId,
    unmask: bool,
) -> anyhow::Result<Vec<TimelineEntry>> {
    let stream_id = beneficiary_id.stream_id();
    let mut events = read_stream(store, &stream_id).await?;
    if events.is_empty() {
        bail!("beneficiary {beneficiary_id} not found: events.db has no stream {stream_id}");
    }

    let mut appointments = BTreeSet::new();
    for event in &events {
        if let Ok(decoded) = Event::decode(&event.event_type, event.schema_version, &event.payload) {
            if let Some(appointment_id) = appointment_of(&decoded) {
                appointments.insert(appointment_id);
            }
        }
    }
    for appointment_id in appointments {
        events.extend(read_stream(store, &appointment_id.stream_id()).await?);
    }
    events.sort_by_key(|event| event.position);

    Ok(events.iter().map(|event| entry(event, unmask)).collect())
}

/// Reads a whole stream, naming it in the error.
async fn read_stream(store: &SqliteStore, stream_id: &str) -> anyhow::Result<Vec<RecordedEvent>> {
    store
        .read_stream(stream_id, 0)
        .await
        .with_context(|| format!("reading stream {stream_id} failed"))
}

/// Returns the appointment a beneficiary-stream event names.
fn appointment_of(event: &Event) -> Option<AppointmentId> {
    match event {
        Event::BeneficiaryAppointmentOpened { appointment_id, .. }
        | Event::BeneficiaryAppointmentClosed { appointment_id, .. }
        | Event::BeneficiaryDoseRecorded { appointment_id, .. } => Some(*appointment_id),
        _ => None,
    }
}

/// Builds the timeline line of one event.
fn entry(event: &RecordedEvent, unmask: bool) -> TimelineEntry {
    let fields = match Event::decode(&event.event_type, event.schema_version, &event.payload) {
        Ok(decoded) => payload_fields(&decoded, unmask),
        Err(err) => format!("(payload cannot be decoded: {err})"),
    };
    TimelineEntry {
        position: event.position,
        recorded_at: format_time(event.recorded_at_ms),
        stream_id: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        actor: format!("{} {}", event.metadata.actor_role, event.metadata.actor_id),
        fields,
    }
}

/// Formats the payload fields as `name=value` pairs.
fn payload_fields(event: &Event, unmask: bool) -> String {
    let data = match serde_json::to_value(event) {
        Ok(Value::Object(mut tagged)) => tagged.remove("data"),
        _ => None,
    };
    let Some(Value::Object(fields)) = data else {
        return String::new();
    };

    fields
        .iter()
        .filter(|(name, _)| !OMITTED_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let text = if !unmask && NAME_FIELDS.contains(&name.as_str()) { mask_name(&text) } else { text };
            format!("{name}={text}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Masks a person's name: the first letter of each word stays, the rest become `*`, so
/// "Asha Devi" becomes "A*** D***".
pub fn mask_name(name: &str) -> String {
    name.split_whitespace()
        .map(|word| {
            let mut characters = word.chars();
            match characters.next() {
                Some(first) => std::iter::once(first).chain(characters.map(|_| '*')).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_name_keeps_initials() {
        assert_eq!(mask_name("Asha Devi"), "A*** D***");
        assert_eq!(mask_name("  Ravi  "), "R***");
        assert_eq!(mask_name(""), "");
    }
}
