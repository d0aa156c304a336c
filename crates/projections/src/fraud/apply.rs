//! Event-to-row updates of the fraud projection. Each function runs inside the projector's
//! transaction, so rows, daily counters, alerts and the checkpoint commit together.

use chrono::{DateTime, FixedOffset, NaiveDate};
use domain::dispute::decode_finding;
use domain::Event;
use rusqlite::{params, OptionalExtension, Transaction};
use store::RecordedEvent;

use super::alerts::{self, AttemptFacts};
use super::counters::Counter;
use super::FraudConfig;

/// `attempts.outcome` of an accepted code.
pub(crate) const OUTCOME_VERIFIED: &str = "verified";
/// `attempts.outcome` of a rejected code.
pub(crate) const OUTCOME_REJECTED: &str = "rejected";
/// `attempts.outcome` of a rejected dose.
pub(crate) const OUTCOME_DOSE_REJECTED: &str = "dose_rejected";

/// Facts the fraud projection keeps about a booked appointment.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppointmentFacts {
    pub beneficiary_id: Option<String>,
    pub centre_id: Option<String>,
    pub walk_in: bool,
    pub booked_position: Option<i64>,
    pub unlocked_position: i64,
    pub verified_position: Option<i64>,
    pub verifier_id: Option<String>,
    pub dose_position: Option<i64>,
    pub vaccinator_id: Option<String>,
    pub certificate_position: Option<i64>,
}

/// Whose daily counters an event moves.
enum Subject<'a> {
    /// A centre, with its district.
    Centre { centre_id: &'a str, district: &'a str },
    /// A verifier (or vaccinator) token, with the centre it works at.
    Verifier { verifier_id: &'a str, centre_id: &'a str, district: &'a str },
}

/// Applies one decoded event.
pub(crate) fn apply_event(tx: &Transaction<'_>, recorded: &RecordedEvent, event: &Event, config: &FraudConfig) -> rusqlite::Result<()> {
    let position = recorded.position as i64;
    let at_ms = recorded.recorded_at_ms;
    let day = india_day(at_ms).to_string();
    match event {
        Event::CentreRegistered { centre_id, name, district, .. } => {
            tx.prepare_cached("INSERT OR REPLACE INTO centres (centre_id, name, district) VALUES (?1, ?2, ?3)")?
                .execute(params![centre_id.to_string(), name, district])?;
        }
        Event::AppointmentBooked { appointment_id, beneficiary_id, centre_id, walk_in, .. } => {
            let centre_id = centre_id.to_string();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO appointments (appointment_id, beneficiary_id, centre_id, walk_in, booked_position)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![appointment_id.to_string(), beneficiary_id.to_string(), centre_id, walk_in, position])?;

            let district = district_of(tx, &centre_id)?;
            let counters: &[Counter] = if *walk_in { &[Counter::Bookings, Counter::WalkInBookings] } else { &[Counter::Bookings] };
            bump(tx, &Subject::Centre { centre_id: &centre_id, district: &district }, &day, counters)?;
            if *walk_in && recorded.metadata.actor_role == "verifier" {
                let verifier = Subject::Verifier { verifier_id: &recorded.metadata.actor_id, centre_id: &centre_id, district: &district };
                bump(tx, &verifier, &day, counters)?;
            }
        }
        Event::CodeVerified { appointment_id, centre_id, verifier_id } => {
            let appointment_id = appointment_id.to_string();
            let facts = AttemptFacts::load(tx, recorded, &appointment_id, &centre_id.to_string(), verifier_id)?;
            insert_attempt(tx, &facts, OUTCOME_VERIFIED, None, None)?;
            tx.prepare_cached("UPDATE appointments SET verified_position = ?2, verifier_id = ?3 WHERE appointment_id = ?1")?
                .execute(params![appointment_id, position, verifier_id])?;
            bump_both(tx, &facts, &day, &[Counter::Attempts, Counter::Verified])?;
        }
        Event::CodeRejected { appointment_id, centre_id, verifier_id, reason, attempt, max_attempts } => {
            let facts = AttemptFacts::load(tx, recorded, &appointment_id.to_string(), &centre_id.to_string(), verifier_id)?;
            insert_attempt(tx, &facts, OUTCOME_REJECTED, Some(reason.as_str()), Some((*attempt, *max_attempts)))?;
            bump_both(tx, &facts, &day, &[Counter::Attempts, Counter::Rejected, Counter::for_code_rejection(*reason)])?;
            alerts::on_code_rejected(tx, config, &facts, *reason)?;
        }
        Event::AppointmentLocked { appointment_id, rejected_attempts } => {
            let appointment_id = appointment_id.to_string();
            let locking = tx
                .prepare_cached(
                    "SELECT position, verifier_id, centre_id FROM attempts INDEXED BY attempts_by_appointment
                     WHERE appointment_id = ?1 ORDER BY position DESC LIMIT 1",
                )?
                .query_row(params![appointment_id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
                .optional()?;
            let Some((attempt_position, verifier_id, centre_id)) = locking else {
                tracing::warn!(position, appointment_id, "lock without a recorded rejection; lockout counted nowhere");
                return Ok(());
            };
            tx.prepare_cached("UPDATE attempts SET locked = 1 WHERE position = ?1")?.execute(params![attempt_position])?;
            let facts = AttemptFacts::load(tx, recorded, &appointment_id, &centre_id, &verifier_id)?;
            bump_both(tx, &facts, &day, &[Counter::Lockouts])?;
            alerts::on_lockout(tx, &facts, *rejected_attempts)?;
        }
        Event::AppointmentUnlocked { appointment_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET unlocked_position = ?2 WHERE appointment_id = ?1")?
                .execute(params![appointment_id.to_string(), position])?;
        }
        Event::DoseAdministered { appointment_id, centre_id, vaccinator_id, .. } => {
            let appointment_id = appointment_id.to_string();
            let facts = AttemptFacts::load(tx, recorded, &appointment_id, &centre_id.to_string(), vaccinator_id)?;
            tx.prepare_cached("UPDATE appointments SET dose_position = ?2, vaccinator_id = ?3 WHERE appointment_id = ?1")?
                .execute(params![appointment_id, position, vaccinator_id])?;
            let counters: &[Counter] = if facts.appointment.walk_in { &[Counter::Doses, Counter::WalkInDoses] } else { &[Counter::Doses] };
            bump_both(tx, &facts, &day, counters)?;
        }
        Event::DoseAdministrationRejected { appointment_id, centre_id, vaccinator_id, reason } => {
            let facts = AttemptFacts::load(tx, recorded, &appointment_id.to_string(), &centre_id.to_string(), vaccinator_id)?;
            insert_attempt(tx, &facts, OUTCOME_DOSE_REJECTED, Some(reason.as_str()), None)?;
            bump_both(tx, &facts, &day, &[Counter::DosesRejected, Counter::for_dose_rejection(*reason)])?;
            alerts::on_dose_rejected(tx, &facts, *reason)?;
        }
        Event::CertificateIssued { appointment_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET certificate_position = ?2 WHERE appointment_id = ?1")?
                .execute(params![appointment_id.to_string(), position])?;
        }
        Event::CertificateRevoked { appointment_id, reason, .. } => {
            let reason = serde_name(reason);
            tx.prepare_cached(
                "UPDATE disputes SET revocation_reason = ?3, revoked_position = ?4
                 WHERE appointment_id = ?1 AND resolution_request_id = ?2 AND revoked_position IS NULL",
            )?
            .execute(params![appointment_id.to_string(), recorded.metadata.request_id, reason, position])?;
        }
        Event::DisputeRaised { dispute_id, appointment_id, beneficiary_id, kind, description } => {
            apply_dispute_raised(tx, recorded, &day, &dispute_id.to_string(), &appointment_id.to_string(), &beneficiary_id.to_string(), kind, description)?;
        }
        Event::DisputeResolved { dispute_id, finding, investigator_id, .. } => {
            let (decoded, note) = decode_finding(finding);
            let status = decoded.map_or("resolved", |finding| finding.as_str());
            tx.prepare_cached(
                "UPDATE disputes SET status = ?2, note = ?3, investigator_id = ?4, resolved_position = ?5, resolved_at_ms = ?6,
                     resolution_request_id = ?7
                 WHERE dispute_id = ?1",
            )?
            .execute(params![dispute_id.to_string(), status, note, investigator_id, position, at_ms, recorded.metadata.request_id])?;
        }
        _ => {}
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_dispute_raised(
    tx: &Transaction<'_>,
    recorded: &RecordedEvent,
    day: &str,
    dispute_id: &str,
    appointment_id: &str,
    beneficiary_id: &str,
    kind: &str,
    description: &str,
) -> rusqlite::Result<()> {
    let position = recorded.position as i64;
    let appointment = appointment_facts(tx, appointment_id)?;
    let centre_id = appointment.centre_id.clone().unwrap_or_default();
    let district = district_of(tx, &centre_id)?;
    let suspect = appointment.vaccinator_id.clone().or_else(|| appointment.verifier_id.clone());
    tx.prepare_cached(
        "INSERT OR REPLACE INTO disputes (position, dispute_id, at_ms, appointment_id, beneficiary_id, centre_id, district,
             verifier_id, vaccinator_id, kind, description, status, verified_position, dose_position, certificate_position)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'open', ?12, ?13, ?14)",
    )?
    .execute(params![
        position,
        dispute_id,
        recorded.recorded_at_ms,
        appointment_id,
        beneficiary_id,
        centre_id,
        district,
        appointment.verifier_id,
        appointment.vaccinator_id,
        kind,
        description,
        appointment.verified_position,
        appointment.dose_position,
        appointment.certificate_position
    ])?;

    bump(tx, &Subject::Centre { centre_id: &centre_id, district: &district }, day, &[Counter::Disputes])?;
    if let Some(suspect) = &suspect {
        bump(tx, &Subject::Verifier { verifier_id: suspect, centre_id: &centre_id, district: &district }, day, &[Counter::Disputes])?;
    }
    let facts = AttemptFacts {
        position,
        at_ms: recorded.recorded_at_ms,
        appointment_id: appointment_id.to_owned(),
        centre_id,
        district,
        verifier_id: suspect.unwrap_or_default(),
        appointment,
    };
    alerts::on_dispute(tx, &facts, beneficiary_id, kind)
}

/// Inserts one row of `attempts`; `counted` is a code rejection's attempt number and lock limit.
fn insert_attempt(
    tx: &Transaction<'_>,
    facts: &AttemptFacts,
    outcome: &str,
    reason: Option<&str>,
    counted: Option<(u32, u32)>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (position, at_ms, outcome, reason, attempt, max_attempts, centre_id, district,
             booked_centre_id, verifier_id, appointment_id, beneficiary_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        facts.position,
        facts.at_ms,
        outcome,
        reason,
        counted.map(|(attempt, _)| attempt),
        counted.map(|(_, max_attempts)| max_attempts),
        facts.centre_id,
        facts.district,
        facts.appointment.centre_id,
        facts.verifier_id,
        facts.appointment_id,
        facts.appointment.beneficiary_id
    ])?;
    Ok(())
}

/// Adds one to each counter of the centre and of the verifier of an attempt.
fn bump_both(tx: &Transaction<'_>, facts: &AttemptFacts, day: &str, counters: &[Counter]) -> rusqlite::Result<()> {
    bump(tx, &Subject::Centre { centre_id: &facts.centre_id, district: &facts.district }, day, counters)?;
    let verifier = Subject::Verifier { verifier_id: &facts.verifier_id, centre_id: &facts.centre_id, district: &facts.district };
    bump(tx, &verifier, day, counters)
}

/// Adds one to each counter of a subject's row for `day`, creating the row when missing.
fn bump(tx: &Transaction<'_>, subject: &Subject<'_>, day: &str, counters: &[Counter]) -> rusqlite::Result<()> {
    let columns: Vec<&str> = counters.iter().map(|counter| counter.column()).collect();
    let ones = vec!["1"; columns.len()].join(", ");
    let increments = columns.iter().map(|column| format!("{column} = {column} + 1")).collect::<Vec<_>>().join(", ");
    match subject {
        Subject::Centre { centre_id, district } => {
            let sql = format!(
                "INSERT INTO centre_days (centre_id, day, district, {}) VALUES (?1, ?2, ?3, {ones})
                 ON CONFLICT (centre_id, day) DO UPDATE SET {increments}",
                columns.join(", ")
            );
            tx.prepare_cached(&sql)?.execute(params![centre_id, day, district])?;
        }
        Subject::Verifier { verifier_id, centre_id, district } => {
            let sql = format!(
                "INSERT INTO verifier_days (verifier_id, day, centre_id, district, {}) VALUES (?1, ?2, ?3, ?4, {ones})
                 ON CONFLICT (verifier_id, day) DO UPDATE SET {increments}",
                columns.join(", ")
            );
            tx.prepare_cached(&sql)?.execute(params![verifier_id, day, centre_id, district])?;
        }
    }
    Ok(())
}

impl AttemptFacts {
    /// Collects what an attempt row needs: the booking of the appointment and the district of
    /// the centre where the attempt happened.
    pub(crate) fn load(
        tx: &Transaction<'_>,
        recorded: &RecordedEvent,
        appointment_id: &str,
        centre_id: &str,
        verifier_id: &str,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            position: recorded.position as i64,
            at_ms: recorded.recorded_at_ms,
            appointment_id: appointment_id.to_owned(),
            centre_id: centre_id.to_owned(),
            district: district_of(tx, centre_id)?,
            verifier_id: verifier_id.to_owned(),
            appointment: appointment_facts(tx, appointment_id)?,
        })
    }
}

/// Returns what is known of an appointment; all fields empty when it was never booked.
pub(crate) fn appointment_facts(tx: &Transaction<'_>, appointment_id: &str) -> rusqlite::Result<AppointmentFacts> {
    let facts = tx
        .prepare_cached(
            "SELECT beneficiary_id, centre_id, walk_in, booked_position, unlocked_position, verified_position, verifier_id,
                    dose_position, vaccinator_id, certificate_position
             FROM appointments WHERE appointment_id = ?1",
        )?
        .query_row(params![appointment_id], |row| {
            Ok(AppointmentFacts {
                beneficiary_id: row.get(0)?,
                centre_id: row.get(1)?,
                walk_in: row.get(2)?,
                booked_position: row.get(3)?,
                unlocked_position: row.get(4)?,
                verified_position: row.get(5)?,
                verifier_id: row.get(6)?,
                dose_position: row.get(7)?,
                vaccinator_id: row.get(8)?,
                certificate_position: row.get(9)?,
            })
        })
        .optional()?;
    Ok(facts.unwrap_or_default())
}

/// Returns the district of a centre, or an empty string for a centre never registered.
fn district_of(tx: &Transaction<'_>, centre_id: &str) -> rusqlite::Result<String> {
    let district = tx
        .prepare_cached("SELECT district FROM centres WHERE centre_id = ?1")?
        .query_row(params![centre_id], |row| row.get::<_, String>(0))
        .optional()?;
    Ok(district.unwrap_or_default())
}

/// India Standard Time, UTC+05:30: the calendar the daily counters use, like session dates.
pub(crate) fn india_offset() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("+05:30 is a valid offset")
}

/// Returns the calendar day in India of a time in milliseconds since the Unix epoch.
pub(crate) fn india_day(at_ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(at_ms).unwrap_or_default().with_timezone(&india_offset()).date_naive()
}

/// Returns the serde name of a unit enum variant, such as `fraud`.
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}
