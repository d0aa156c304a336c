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
pub(crate) enum Subject<'a> {
    /// A centre, with its district.
    Centre { centre_id: &'a str, district: &'a str },
    /// A verifier (or vaccinator) token, with the centre it works at.
    Verifier { verifier_id: &'a str, centre_id: &'a str, district: &'a str },
}

/// A change of one `appointments` row, one per event that moves it.
pub(crate) enum AppointmentChange<'a> {
    /// A code was verified at `position` by `verifier_id`.
    Verified { position: i64, verifier_id: &'a str },
    /// The appointment was unlocked at `position`.
    Unlocked { position: i64 },
    /// A dose was recorded at `position` by `vaccinator_id`.
    Dose { position: i64, vaccinator_id: &'a str },
    /// A certificate was issued at `position`.
    Certificate { position: i64 },
}

impl AppointmentChange<'_> {
    /// Applies the change to an appointment's facts, as the `UPDATE` of [`Direct`] does.
    pub(crate) fn apply_to(&self, facts: &mut AppointmentFacts) {
        match *self {
            AppointmentChange::Verified { position, verifier_id } => {
                facts.verified_position = Some(position);
                facts.verifier_id = Some(verifier_id.to_owned());
            }
            AppointmentChange::Unlocked { position } => facts.unlocked_position = position,
            AppointmentChange::Dose { position, vaccinator_id } => {
                facts.dose_position = Some(position);
                facts.vaccinator_id = Some(vaccinator_id.to_owned());
            }
            AppointmentChange::Certificate { position } => facts.certificate_position = Some(position),
        }
    }
}

/// The rows the fraud apply keeps per centre, per appointment and per day. [`Direct`] reads and
/// writes them with one SQL statement each; the batched path keeps them in memory for a batch
/// and writes each once. Attempts, alerts and disputes are always written straight away,
/// because the alert rules query them.
pub(crate) trait Rows {
    /// Returns the district of a centre, or an empty string for a centre never registered.
    fn district_of(&mut self, tx: &Transaction<'_>, centre_id: &str) -> rusqlite::Result<String>;
    /// Returns what is known of an appointment; all fields empty when it was never booked.
    fn appointment_facts(&mut self, tx: &Transaction<'_>, appointment_id: &str) -> rusqlite::Result<AppointmentFacts>;
    /// Stores a centre (`INSERT OR REPLACE`).
    fn register_centre(&mut self, tx: &Transaction<'_>, centre_id: &str, name: &str, district: &str) -> rusqlite::Result<()>;
    /// Stores a booking (`INSERT OR REPLACE`, so later columns take their defaults).
    fn book(&mut self, tx: &Transaction<'_>, appointment_id: &str, facts: AppointmentFacts) -> rusqlite::Result<()>;
    /// Changes an appointment's row; nothing happens for an appointment never booked.
    fn change_appointment(&mut self, tx: &Transaction<'_>, appointment_id: &str, change: AppointmentChange<'_>) -> rusqlite::Result<()>;
    /// Adds one to each counter of a subject's row for `day`, creating the row when missing.
    fn bump(&mut self, tx: &Transaction<'_>, subject: &Subject<'_>, day: &str, counters: &[Counter]) -> rusqlite::Result<()>;
}

/// [`Rows`] with one SQL statement per read and write: the reference behaviour.
pub(crate) struct Direct;

impl Rows for Direct {
    fn district_of(&mut self, tx: &Transaction<'_>, centre_id: &str) -> rusqlite::Result<String> {
        district_of(tx, centre_id)
    }

    fn appointment_facts(&mut self, tx: &Transaction<'_>, appointment_id: &str) -> rusqlite::Result<AppointmentFacts> {
        appointment_facts(tx, appointment_id)
    }

    fn register_centre(&mut self, tx: &Transaction<'_>, centre_id: &str, name: &str, district: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO centres (centre_id, name, district) VALUES (?1, ?2, ?3)")?
            .execute(params![centre_id, name, district])?;
        Ok(())
    }

    fn book(&mut self, tx: &Transaction<'_>, appointment_id: &str, facts: AppointmentFacts) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO appointments (appointment_id, beneficiary_id, centre_id, walk_in, booked_position)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![appointment_id, facts.beneficiary_id, facts.centre_id, facts.walk_in, facts.booked_position])?;
        Ok(())
    }

    fn change_appointment(&mut self, tx: &Transaction<'_>, appointment_id: &str, change: AppointmentChange<'_>) -> rusqlite::Result<()> {
        match change {
            AppointmentChange::Verified { position, verifier_id } => {
                tx.prepare_cached("UPDATE appointments SET verified_position = ?2, verifier_id = ?3 WHERE appointment_id = ?1")?
                    .execute(params![appointment_id, position, verifier_id])?;
            }
            AppointmentChange::Unlocked { position } => {
                tx.prepare_cached("UPDATE appointments SET unlocked_position = ?2 WHERE appointment_id = ?1")?
                    .execute(params![appointment_id, position])?;
            }
            AppointmentChange::Dose { position, vaccinator_id } => {
                tx.prepare_cached("UPDATE appointments SET dose_position = ?2, vaccinator_id = ?3 WHERE appointment_id = ?1")?
                    .execute(params![appointment_id, position, vaccinator_id])?;
            }
            AppointmentChange::Certificate { position } => {
                tx.prepare_cached("UPDATE appointments SET certificate_position = ?2 WHERE appointment_id = ?1")?
                    .execute(params![appointment_id, position])?;
            }
        }
        Ok(())
    }

    fn bump(&mut self, tx: &Transaction<'_>, subject: &Subject<'_>, day: &str, counters: &[Counter]) -> rusqlite::Result<()> {
        bump(tx, subject, day, counters)
    }
}

/// Applies one decoded event.
pub(crate) fn apply_event(
    tx: &Transaction<'_>,
    rows: &mut impl Rows,
    recorded: &RecordedEvent,
    event: &Event,
    config: &FraudConfig,
) -> rusqlite::Result<()> {
    let position = recorded.position as i64;
    let at_ms = recorded.recorded_at_ms;
    let day = india_day(at_ms).to_string();
    match event {
        Event::CentreRegistered { centre_id, name, district, .. } => {
            rows.register_centre(tx, &centre_id.to_string(), name, district)?;
        }
        Event::AppointmentBooked { appointment_id, beneficiary_id, centre_id, walk_in, .. } => {
            let centre_id = centre_id.to_string();
            let booked = AppointmentFacts {
                beneficiary_id: Some(beneficiary_id.to_string()),
                centre_id: Some(centre_id.clone()),
                walk_in: *walk_in,
                booked_position: Some(position),
                ..AppointmentFacts::default()
            };
            rows.book(tx, &appointment_id.to_string(), booked)?;

            let district = rows.district_of(tx, &centre_id)?;
            let counters: &[Counter] = if *walk_in { &[Counter::Bookings, Counter::WalkInBookings] } else { &[Counter::Bookings] };
            rows.bump(tx, &Subject::Centre { centre_id: &centre_id, district: &district }, &day, counters)?;
            if *walk_in && recorded.metadata.actor_role == "verifier" {
                let verifier = Subject::Verifier { verifier_id: &recorded.metadata.actor_id, centre_id: &centre_id, district: &district };
                rows.bump(tx, &verifier, &day, counters)?;
            }
        }
        Event::CodeVerified { appointment_id, centre_id, verifier_id } => {
            let appointment_id = appointment_id.to_string();
            let facts = AttemptFacts::load(tx, rows, recorded, &appointment_id, &centre_id.to_string(), verifier_id)?;
            insert_attempt(tx, &facts, OUTCOME_VERIFIED, None, None)?;
            rows.change_appointment(tx, &appointment_id, AppointmentChange::Verified { position, verifier_id })?;
            bump_both(tx, rows, &facts, &day, &[Counter::Attempts, Counter::Verified])?;
        }
        Event::CodeRejected { appointment_id, centre_id, verifier_id, reason, attempt, max_attempts } => {
            let facts = AttemptFacts::load(tx, rows, recorded, &appointment_id.to_string(), &centre_id.to_string(), verifier_id)?;
            insert_attempt(tx, &facts, OUTCOME_REJECTED, Some(reason.as_str()), Some((*attempt, *max_attempts)))?;
            bump_both(tx, rows, &facts, &day, &[Counter::Attempts, Counter::Rejected, Counter::for_code_rejection(*reason)])?;
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
            let facts = AttemptFacts::load(tx, rows, recorded, &appointment_id, &centre_id, &verifier_id)?;
            bump_both(tx, rows, &facts, &day, &[Counter::Lockouts])?;
            alerts::on_lockout(tx, &facts, *rejected_attempts)?;
        }
        Event::AppointmentUnlocked { appointment_id, .. } => {
            rows.change_appointment(tx, &appointment_id.to_string(), AppointmentChange::Unlocked { position })?;
        }
        Event::DoseAdministered { appointment_id, centre_id, vaccinator_id, .. } => {
            let appointment_id = appointment_id.to_string();
            let facts = AttemptFacts::load(tx, rows, recorded, &appointment_id, &centre_id.to_string(), vaccinator_id)?;
            rows.change_appointment(tx, &appointment_id, AppointmentChange::Dose { position, vaccinator_id })?;
            let counters: &[Counter] = if facts.appointment.walk_in { &[Counter::Doses, Counter::WalkInDoses] } else { &[Counter::Doses] };
            bump_both(tx, rows, &facts, &day, counters)?;
        }
        Event::DoseAdministrationRejected { appointment_id, centre_id, vaccinator_id, reason } => {
            let facts = AttemptFacts::load(tx, rows, recorded, &appointment_id.to_string(), &centre_id.to_string(), vaccinator_id)?;
            insert_attempt(tx, &facts, OUTCOME_DOSE_REJECTED, Some(reason.as_str()), None)?;
            bump_both(tx, rows, &facts, &day, &[Counter::DosesRejected, Counter::for_dose_rejection(*reason)])?;
            alerts::on_dose_rejected(tx, &facts, *reason)?;
        }
        Event::CertificateIssued { appointment_id, .. } => {
            rows.change_appointment(tx, &appointment_id.to_string(), AppointmentChange::Certificate { position })?;
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
            apply_dispute_raised(tx, rows, recorded, &day, &dispute_id.to_string(), &appointment_id.to_string(), &beneficiary_id.to_string(), kind, description)?;
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
    rows: &mut impl Rows,
    recorded: &RecordedEvent,
    day: &str,
    dispute_id: &str,
    appointment_id: &str,
    beneficiary_id: &str,
    kind: &str,
    description: &str,
) -> rusqlite::Result<()> {
    let position = recorded.position as i64;
    let appointment = rows.appointment_facts(tx, appointment_id)?;
    let centre_id = appointment.centre_id.clone().unwrap_or_default();
    let district = rows.district_of(tx, &centre_id)?;
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

    rows.bump(tx, &Subject::Centre { centre_id: &centre_id, district: &district }, day, &[Counter::Disputes])?;
    if let Some(suspect) = &suspect {
        rows.bump(tx, &Subject::Verifier { verifier_id: suspect, centre_id: &centre_id, district: &district }, day, &[Counter::Disputes])?;
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
fn bump_both(tx: &Transaction<'_>, rows: &mut impl Rows, facts: &AttemptFacts, day: &str, counters: &[Counter]) -> rusqlite::Result<()> {
    rows.bump(tx, &Subject::Centre { centre_id: &facts.centre_id, district: &facts.district }, day, counters)?;
    let verifier = Subject::Verifier { verifier_id: &facts.verifier_id, centre_id: &facts.centre_id, district: &facts.district };
    rows.bump(tx, &verifier, day, counters)
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
        rows: &mut impl Rows,
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
            district: rows.district_of(tx, centre_id)?,
            verifier_id: verifier_id.to_owned(),
            appointment: rows.appointment_facts(tx, appointment_id)?,
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
pub(crate) fn district_of(tx: &Transaction<'_>, centre_id: &str) -> rusqlite::Result<String> {
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
