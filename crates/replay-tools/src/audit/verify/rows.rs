//! Row-level checks that need nothing but the `events` rows: gap-free positions, gap-free
//! revisions per stream, payloads that decode and belong to their row, the `streams` table, and
//! the order of commit times.
//!
//! These checks run in one pass over the pages of the log, keeping per stream only its next
//! revision. They catch deleted rows, reordered rows and payloads that no longer fit their row.
//! An edit that keeps a payload valid (a changed batch number) is caught by the certificate
//! checks when a certificate states the value, and otherwise only by the Merkle tree.

use std::collections::HashMap;

use anyhow::Context;
use domain::ids::{AppointmentId, BeneficiaryId, CertificateId};
use domain::Event;
use rusqlite::Connection;
use store::{EventStore, RecordedEvent, SqliteStore};

use super::report::{Check, CheckStatus, ProblemSlot};
use crate::audit::format_time;

/// Rows read after a suspect position when looking for the row it was swapped with.
const SWAP_WINDOW: usize = 64;

/// A `CertificateIssued` event as read from the log, for the certificate checks.
#[derive(Debug, Clone)]
pub(crate) struct IssuedRecord {
    /// Position of the `CertificateIssued` event.
    pub position: u64,
    /// Certificate id, the key into `certificates.db`.
    pub certificate_id: CertificateId,
    /// Appointment whose stream must hold the evidence.
    pub appointment_id: AppointmentId,
    /// Beneficiary the event names.
    pub beneficiary_id: BeneficiaryId,
    /// Issuer key id the event names, in hex.
    pub key_id: String,
    /// Hex SHA-256 of the COSE bytes, as the event states.
    pub cose_sha256: String,
    /// Position of the `CodeVerified` the signer relied on.
    pub code_verified_position: u64,
    /// Position of the `DoseAdministered` the signer relied on.
    pub dose_position: u64,
}

/// Progress of one stream in the pass.
#[derive(Debug, Clone, Copy)]
struct StreamProgress {
    /// Revision the stream's next event must have.
    next_revision: u64,
    /// Position of its last event so far.
    last_position: u64,
}

/// Kind of the first payload or revision problem, so the pass can look for a swapped row.
#[derive(Debug, Clone)]
enum SwapProbe {
    /// The payload at the position does not fit its row.
    Payload,
    /// The stream skipped `expected` at the position.
    Revision {
        /// Stream whose revisions jumped.
        stream_id: String,
        /// Revision that was expected at the position.
        expected: u64,
    },
}

/// State of the row checks across pages.
#[derive(Default)]
pub(crate) struct RowChecks {
    /// Position the next event must have.
    next_position: u64,
    /// Events seen.
    events: u64,
    /// Positions missing from 1..head.
    gaps: ProblemSlot,
    /// Every stream seen, by id.
    streams: HashMap<String, StreamProgress>,
    /// Revision sequences that skip or repeat.
    revisions: ProblemSlot,
    /// Probe for the first revision problem.
    revision_probe: Option<(u64, SwapProbe)>,
    /// Payloads that do not decode or belong to another stream.
    payloads: ProblemSlot,
    /// Probe for the first payload problem.
    payload_probe: Option<(u64, SwapProbe)>,
    /// Time of the previous event, in milliseconds since the Unix epoch.
    previous_recorded_at_ms: Option<i64>,
    /// First commit time lower than the one before it, and how many there were.
    time_reversals: (Option<String>, u64),
    /// `CertificateIssued` events found since the caller last drained the list, in position
    /// order.
    pub(crate) certificates: Vec<IssuedRecord>,
}

impl RowChecks {
    /// Starts a pass at position 1.
    pub(crate) fn new() -> RowChecks {
        RowChecks { next_position: 1, ..RowChecks::default() }
    }

    /// Returns the number of events seen.
    pub(crate) fn event_count(&self) -> u64 {
        self.events
    }

    /// Returns the number of streams seen.
    pub(crate) fn stream_count(&self) -> u64 {
        self.streams.len() as u64
    }

    /// Checks one event; events must come in position order.
    pub(crate) fn check(&mut self, event: &RecordedEvent) {
        self.events += 1;
        self.check_position(event);
        self.check_revision(event);
        self.check_time(event);
        self.check_payload(event);
    }

    fn check_position(&mut self, event: &RecordedEvent) {
        let expected = self.next_position;
        if event.position > expected {
            let missing = if event.position - expected == 1 {
                format!("position {expected} missing")
            } else {
                format!("positions {expected} to {} missing", event.position - 1)
            };
            self.gaps.record(
                Some(expected),
                format!(
                    "{missing}: position {} is followed by {} (rows deleted?)",
                    expected.saturating_sub(1),
                    event.position
                ),
            );
        }
        self.next_position = event.position + 1;
    }

    fn check_revision(&mut self, event: &RecordedEvent) {
        if !self.streams.contains_key(&event.stream_id) {
            let start = StreamProgress { next_revision: 0, last_position: 0 };
            self.streams.insert(event.stream_id.clone(), start);
        }
        let Some(progress) = self.streams.get_mut(&event.stream_id) else {
            return;
        };
        let expected = progress.next_revision;

        if event.revision != expected {
            let message = if event.revision > expected {
                format!(
                    "position {}: stream {} jumps to revision {} but revision {expected} is missing (rows deleted or reordered?)",
                    event.position, event.stream_id, event.revision
                )
            } else {
                format!(
                    "position {}: stream {} goes back to revision {} after revision {} at position {} (rows reordered?)",
                    event.position,
                    event.stream_id,
                    event.revision,
                    expected.saturating_sub(1),
                    progress.last_position
                )
            };
            if self.revisions.is_empty() {
                let probe = SwapProbe::Revision { stream_id: event.stream_id.clone(), expected };
                self.revision_probe = Some((event.position, probe));
            }
            self.revisions.record(Some(event.position), message);
        }

        progress.next_revision = progress.next_revision.max(event.revision + 1);
        progress.last_position = event.position;
    }

    fn check_time(&mut self, event: &RecordedEvent) {
        if let Some(previous) = self.previous_recorded_at_ms {
            if event.recorded_at_ms < previous {
                self.time_reversals.1 += 1;
                if self.time_reversals.0.is_none() {
                    self.time_reversals.0 = Some(format!(
                        "position {} was committed at {}, before position {} at {}",
                        event.position,
                        format_time(event.recorded_at_ms),
                        event.position.saturating_sub(1),
                        format_time(previous)
                    ));
                }
            }
        }
        self.previous_recorded_at_ms = Some(event.recorded_at_ms);
    }

    fn check_payload(&mut self, event: &RecordedEvent) {
        let decoded = match Event::decode(&event.event_type, event.schema_version, &event.payload) {
            Ok(decoded) => decoded,
            Err(err) => {
                self.record_payload_problem(
                    event.position,
                    format!("position {}: {err} (row edited?)", event.position),
                );
                return;
            }
        };

        if decoded.stream_id() != event.stream_id {
            self.record_payload_problem(
                event.position,
                format!(
                    "position {}: the payload is a {} of stream {}, but the row is in stream {} (row edited?)",
                    event.position,
                    decoded.event_type(),
                    decoded.stream_id(),
                    event.stream_id
                ),
            );
            return;
        }

        if let Event::CertificateIssued {
            certificate_id,
            appointment_id,
            beneficiary_id,
            key_id,
            cose_sha256,
            code_verified_position,
            dose_position,
        } = decoded
        {
            self.certificates.push(IssuedRecord {
                position: event.position,
                certificate_id,
                appointment_id,
                beneficiary_id,
                key_id,
                cose_sha256,
                code_verified_position,
                dose_position,
            });
        }
    }

    fn record_payload_problem(&mut self, position: u64, message: String) {
        if self.payloads.is_empty() {
            self.payload_probe = Some((position, SwapProbe::Payload));
        }
        self.payloads.record(Some(position), message);
    }

    /// Finishes the pass: looks for swapped rows behind the first problems, compares the
    /// `streams` table, and returns the checks.
    pub(crate) async fn finish(
        mut self,
        store: &SqliteStore,
        events_copy: &Connection,
    ) -> anyhow::Result<Vec<Check>> {
        if let Some((position, probe)) = self.payload_probe.take() {
            if let Some(message) = explain_swap(store, position, &probe).await? {
                self.payloads.explain_first(message);
            }
        }
        if let Some((position, probe)) = self.revision_probe.take() {
            if let Some(message) = explain_swap(store, position, &probe).await? {
                self.revisions.explain_first(message);
            }
        }

        self.check_positions_below_one(events_copy)?;
        let streams_table = self.check_streams_table(events_copy)?;
        let head = self.next_position.saturating_sub(1);
        let stream_count = self.streams.len();
        let mut checks = vec![
            Check::from_problems("positions", self.gaps, format!("1..{head} without gaps")),
            Check::from_problems(
                "stream revisions",
                self.revisions,
                format!("{stream_count} streams, each gap-free from revision 0"),
            ),
            Check::from_problems(
                "payloads",
                self.payloads,
                format!("{} payloads decode and belong to their stream", self.events),
            ),
            streams_table,
        ];

        let time_check = match self.time_reversals {
            (Some(first), count) => Check {
                name: "commit times",
                status: CheckStatus::Warning(format!(
                    "{count} events committed earlier than the event before them; first: {first} \
                     (a clock stepped back, or rows were reordered)"
                )),
            },
            (None, _) => Check::passed("commit times", "non-decreasing with position"),
        };
        checks.push(time_check);
        Ok(checks)
    }

    /// Looks for rows at position 0 or below. The store never writes them and its log reads
    /// never return them, but a stream read would, so an inserted row there could change an
    /// aggregate without touching the Merkle tree.
    fn check_positions_below_one(&mut self, events_copy: &Connection) -> anyhow::Result<()> {
        let (count, lowest): (i64, Option<i64>) = events_copy
            .query_row("SELECT count(*), min(position) FROM events WHERE position < 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .context("reading the events table of events.db failed")?;
        if let (true, Some(lowest)) = (count > 0, lowest) {
            self.gaps.record(
                Some(0),
                format!("{count} rows at positions below 1 (lowest {lowest}), outside the log (rows inserted?)"),
            );
        }
        Ok(())
    }

    /// Compares each stream's revision in the `streams` table with its last event. The store
    /// updates both in one transaction, so a difference means rows were deleted or inserted.
    fn check_streams_table(&self, events_copy: &Connection) -> anyhow::Result<Check> {
        let mut problems = ProblemSlot::default();
        let mut statement = events_copy
            .prepare("SELECT stream_id, revision FROM streams")
            .context("reading the streams table of events.db failed")?;
        let mut rows = statement.query([]).context("reading the streams table of events.db failed")?;

        let mut listed = 0u64;
        let mut matched = 0u64;
        while let Some(row) = rows.next().context("reading the streams table of events.db failed")? {
            listed += 1;
            let stream_id: String = row.get(0).context("reading a stream id failed")?;
            let revision: i64 = row.get(1).context("reading a stream revision failed")?;

            match self.streams.get(&stream_id) {
                None => problems.record(
                    None,
                    format!(
                        "stream {stream_id}: the streams table records revision {revision}, but events.db has no event of it (rows deleted?)"
                    ),
                ),
                Some(progress) => {
                    matched += 1;
                    let last_revision = progress.next_revision.saturating_sub(1);
                    if i64::try_from(last_revision).ok() != Some(revision) {
                        let position = (i64::try_from(last_revision).unwrap_or(i64::MAX) > revision)
                            .then_some(progress.last_position);
                        problems.record(
                            position,
                            format!(
                                "stream {stream_id}: the streams table records revision {revision}, but the last event is revision {last_revision} at position {} (rows deleted or inserted?)",
                                progress.last_position
                            ),
                        );
                    }
                }
            }
        }

        let unlisted = self.streams.len() as u64 - matched;
        if unlisted > 0 {
            let mut lookup = events_copy
                .prepare("SELECT count(*) FROM streams WHERE stream_id = ?1")
                .context("reading the streams table of events.db failed")?;
            let mut streams: Vec<(&String, &StreamProgress)> = self.streams.iter().collect();
            streams.sort_by_key(|(_, progress)| progress.last_position);
            for (stream_id, progress) in streams {
                let rows: i64 = lookup
                    .query_row([stream_id], |row| row.get(0))
                    .context("reading the streams table of events.db failed")?;
                if rows == 0 {
                    problems.record(
                        Some(progress.last_position),
                        format!(
                            "stream {stream_id} has events up to position {} but no row in the streams table (rows inserted?)",
                            progress.last_position
                        ),
                    );
                    break;
                }
            }
        }

        Ok(Check::from_problems(
            "streams table",
            problems,
            format!("{listed} streams, each at the revision of its last event"),
        ))
    }
}

/// Looks for the row that the row at `position` was swapped with, in the rows after it, and
/// returns a message naming both positions.
async fn explain_swap(
    store: &SqliteStore,
    position: u64,
    probe: &SwapProbe,
) -> anyhow::Result<Option<String>> {
    let window = store
        .read_all(position.saturating_sub(1), SWAP_WINDOW)
        .await
        .with_context(|| format!("reading the events after position {position} failed"))?;
    let Some((suspect, later)) = window.split_first() else {
        return Ok(None);
    };
    if suspect.position != position {
        return Ok(None);
    }

    for other in later {
        let swapped = match probe {
            SwapProbe::Payload => {
                payload_fits(suspect, &other.payload) && payload_fits(other, &suspect.payload)
            }
            SwapProbe::Revision { stream_id, expected } => {
                other.stream_id == *stream_id && other.revision == *expected
            }
        };
        if !swapped {
            continue;
        }

        let message = match probe {
            SwapProbe::Payload => format!(
                "positions {} and {} swapped: each row holds the other's payload ({} and {})",
                suspect.position, other.position, other.event_type, suspect.event_type
            ),
            SwapProbe::Revision { stream_id, expected } => format!(
                "positions {} and {} swapped: stream {stream_id} has revision {} at position {} and revision {expected} at position {}",
                suspect.position, other.position, suspect.revision, suspect.position, other.position
            ),
        };
        return Ok(Some(message));
    }
    Ok(None)
}

/// Returns whether `payload` decodes as the type and version of `row` and belongs to its stream.
fn payload_fits(row: &RecordedEvent, payload: &[u8]) -> bool {
    Event::decode(&row.event_type, row.schema_version, payload)
        .map(|event| event.stream_id() == row.stream_id)
        .unwrap_or(false)
}
