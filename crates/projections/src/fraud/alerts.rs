//! Alert rules. Each rule runs when its event is applied, inside the projector's transaction,
//! and stores the alert with the positions of the events that raised it.
//!
//! An alert's id is `<kind>-<position>` (the position of the event that raised it), so a
//! rebuild from position 0 produces the same ids. Window rules raise at most one alert per
//! subject and window: a subject alerted less than one window ago is not alerted again.

use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use rusqlite::{params, OptionalExtension, Transaction};

use super::apply::{AppointmentFacts, OUTCOME_REJECTED};
use super::FraudConfig;

/// Maximum number of evidence positions stored with one alert. The count in the summary stays exact.
const MAX_EVIDENCE: usize = 200;

/// Kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Rejected codes locked an appointment.
    Lockout,
    /// A verifier had many code rejections in a short window.
    VerifierRejections,
    /// Several wrong codes by one verifier on one appointment in a short window.
    EnumerationAppointment,
    /// One verifier's wrong codes spread over many appointments in a short window.
    EnumerationSpread,
    /// A dose was pushed for an appointment whose code was not verified.
    DoseWithoutCode,
    /// A code or dose was submitted at a centre other than the booked one.
    WrongCentre,
    /// A citizen raised a dispute.
    Dispute,
}

impl AlertKind {
    /// Every kind, for filters and messages.
    pub const ALL: [AlertKind; 7] = [
        AlertKind::Lockout,
        AlertKind::VerifierRejections,
        AlertKind::EnumerationAppointment,
        AlertKind::EnumerationSpread,
        AlertKind::DoseWithoutCode,
        AlertKind::WrongCentre,
        AlertKind::Dispute,
    ];

    /// Returns the snake_case name used in ids, JSON and CSV.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::Lockout => "lockout",
            AlertKind::VerifierRejections => "verifier_rejections",
            AlertKind::EnumerationAppointment => "enumeration_appointment",
            AlertKind::EnumerationSpread => "enumeration_spread",
            AlertKind::DoseWithoutCode => "dose_without_code",
            AlertKind::WrongCentre => "wrong_centre",
            AlertKind::Dispute => "dispute",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Facts about the event being applied, as the alert rules need them.
#[derive(Debug, Clone)]
pub(crate) struct AttemptFacts {
    /// Position of the event.
    pub position: i64,
    /// Time the store recorded it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Appointment the event is about.
    pub appointment_id: String,
    /// Centre where the attempt happened (the verifier's centre).
    pub centre_id: String,
    /// District of that centre.
    pub district: String,
    /// Verifier or vaccinator token id.
    pub verifier_id: String,
    /// The appointment's booking and progress.
    pub appointment: AppointmentFacts,
}

/// An alert about to be stored.
struct NewAlert<'a> {
    kind: AlertKind,
    /// Key of the window rule: the verifier, or verifier and appointment.
    subject: String,
    facts: &'a AttemptFacts,
    summary: String,
    evidence: Vec<i64>,
}

/// Runs the rules of a rejected code: wrong centre, verifier rejections, and both
/// enumeration rules.
pub(crate) fn on_code_rejected(tx: &Transaction<'_>, config: &FraudConfig, facts: &AttemptFacts, reason: CodeRejectionReason) -> rusqlite::Result<()> {
    if reason == CodeRejectionReason::WrongCentre {
        let booked = facts.appointment.centre_id.as_deref().unwrap_or("unknown");
        let mut evidence = vec![facts.position];
        evidence.extend(facts.appointment.booked_position);
        insert(tx, NewAlert {
            kind: AlertKind::WrongCentre,
            subject: facts.verifier_id.clone(),
            facts,
            summary: format!("code submitted at centre {} for an appointment booked at centre {booked}", facts.centre_id),
            evidence,
        })?;
    }

    verifier_rejections(tx, config, facts)?;
    if reason == CodeRejectionReason::WrongCode {
        enumeration_appointment(tx, config, facts)?;
        enumeration_spread(tx, config, facts)?;
    }
    Ok(())
}

/// Raises `lockout`, with the counted rejections since the last unlock as evidence.
pub(crate) fn on_lockout(tx: &Transaction<'_>, facts: &AttemptFacts, rejected_attempts: u32) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "SELECT position FROM attempts INDEXED BY attempts_by_appointment
         WHERE appointment_id = ?1 AND position > ?2 AND outcome = 'rejected'
           AND reason IN ('wrong_code', 'wrong_centre', 'wrong_date')
         ORDER BY position LIMIT ?3",
    )?;
    let rows = statement.query_map(params![facts.appointment_id, facts.appointment.unlocked_position, MAX_EVIDENCE as i64], |row| row.get(0))?;
    let mut evidence: Vec<i64> = rows.collect::<rusqlite::Result<_>>()?;
    evidence.push(facts.position);
    insert(tx, NewAlert {
        kind: AlertKind::Lockout,
        subject: facts.appointment_id.clone(),
        facts,
        summary: format!("appointment locked after {rejected_attempts} rejected codes; last by verifier {}", facts.verifier_id),
        evidence,
    })
}

/// Raises `dose_without_code` and `wrong_centre` for rejected doses.
pub(crate) fn on_dose_rejected(tx: &Transaction<'_>, facts: &AttemptFacts, reason: DoseRejectionReason) -> rusqlite::Result<()> {
    let (kind, summary) = match reason {
        DoseRejectionReason::CodeNotVerified => {
            (AlertKind::DoseWithoutCode, format!("dose pushed by {} without a verified code", facts.verifier_id))
        }
        DoseRejectionReason::WrongCentre => {
            let booked = facts.appointment.centre_id.as_deref().unwrap_or("unknown");
            (AlertKind::WrongCentre, format!("dose pushed at centre {} for an appointment booked at centre {booked}", facts.centre_id))
        }
        _ => return Ok(()),
    };
    let mut evidence = vec![facts.position];
    evidence.extend(facts.appointment.booked_position);
    insert(tx, NewAlert { kind, subject: facts.verifier_id.clone(), facts, summary, evidence })
}

/// Raises `dispute`, with the verification, dose and certificate of the appointment as evidence.
pub(crate) fn on_dispute(tx: &Transaction<'_>, facts: &AttemptFacts, beneficiary_id: &str, kind: &str) -> rusqlite::Result<()> {
    let appointment = &facts.appointment;
    let mut evidence = vec![facts.position];
    evidence.extend([appointment.verified_position, appointment.dose_position, appointment.certificate_position].into_iter().flatten());
    let mut facts = facts.clone();
    facts.appointment.beneficiary_id = Some(beneficiary_id.to_owned());
    insert(tx, NewAlert {
        kind: AlertKind::Dispute,
        subject: facts.appointment_id.clone(),
        facts: &facts,
        summary: format!("citizen dispute {kind}; dose recorded by {}", if facts.verifier_id.is_empty() { "nobody" } else { &facts.verifier_id }),
        evidence,
    })
}

/// `verifier_rejections`: code rejections of any reason by one verifier inside the window.
fn verifier_rejections(tx: &Transaction<'_>, config: &FraudConfig, facts: &AttemptFacts) -> rusqlite::Result<()> {
    let since = facts.at_ms - config.window_ms();
    let lower = first_position_after(tx, since)?;
    let count: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM attempts INDEXED BY attempts_by_verifier
             WHERE verifier_id = ?1 AND position >= ?2 AND outcome = ?3 AND at_ms > ?4",
        )?
        .query_row(params![facts.verifier_id, lower, OUTCOME_REJECTED, since], |row| row.get(0))?;
    if count < i64::from(config.verifier_rejections) || alerted_since(tx, AlertKind::VerifierRejections, &facts.verifier_id, since)? {
        return Ok(());
    }
    let evidence = positions(
        tx,
        "SELECT position FROM attempts INDEXED BY attempts_by_verifier
         WHERE verifier_id = ?1 AND position >= ?2 AND outcome = 'rejected' AND at_ms > ?3 ORDER BY position DESC LIMIT ?4",
        params![facts.verifier_id, lower, since, MAX_EVIDENCE as i64],
    )?;
    insert(tx, NewAlert {
        kind: AlertKind::VerifierRejections,
        subject: facts.verifier_id.clone(),
        facts,
        summary: format!("verifier {}: {count} code rejections in {} minutes", facts.verifier_id, config.window_minutes),
        evidence,
    })
}

/// `enumeration_appointment`: wrong codes by one verifier on one appointment inside the
/// enumeration window.
fn enumeration_appointment(tx: &Transaction<'_>, config: &FraudConfig, facts: &AttemptFacts) -> rusqlite::Result<()> {
    let since = facts.at_ms - config.enumeration_window_ms();
    let evidence = positions(
        tx,
        "SELECT position FROM attempts INDEXED BY attempts_by_appointment
         WHERE appointment_id = ?1 AND verifier_id = ?2 AND reason = 'wrong_code' AND at_ms > ?3 ORDER BY position DESC LIMIT ?4",
        params![facts.appointment_id, facts.verifier_id, since, MAX_EVIDENCE as i64],
    )?;
    let subject = format!("{}/{}", facts.verifier_id, facts.appointment_id);
    if evidence.len() < config.enumeration_attempts as usize || alerted_since(tx, AlertKind::EnumerationAppointment, &subject, since)? {
        return Ok(());
    }
    insert(tx, NewAlert {
        kind: AlertKind::EnumerationAppointment,
        summary: format!(
            "{} wrong codes on one appointment by verifier {} within {} minutes (codes tried in sequence)",
            evidence.len(),
            facts.verifier_id,
            config.enumeration_window_minutes
        ),
        subject,
        facts,
        evidence,
    })
}

/// `enumeration_spread`: one verifier's wrong codes over many appointments inside the window,
/// which stays under the lock of each appointment.
fn enumeration_spread(tx: &Transaction<'_>, config: &FraudConfig, facts: &AttemptFacts) -> rusqlite::Result<()> {
    let since = facts.at_ms - config.window_ms();
    let lower = first_position_after(tx, since)?;
    let appointments: i64 = tx
        .prepare_cached(
            "SELECT COUNT(DISTINCT appointment_id) FROM attempts INDEXED BY attempts_by_verifier
             WHERE verifier_id = ?1 AND position >= ?2 AND reason = 'wrong_code' AND at_ms > ?3",
        )?
        .query_row(params![facts.verifier_id, lower, since], |row| row.get(0))?;
    if appointments < i64::from(config.spread_appointments) || alerted_since(tx, AlertKind::EnumerationSpread, &facts.verifier_id, since)? {
        return Ok(());
    }
    let evidence = positions(
        tx,
        "SELECT position FROM attempts INDEXED BY attempts_by_verifier
         WHERE verifier_id = ?1 AND position >= ?2 AND reason = 'wrong_code' AND at_ms > ?3 ORDER BY position DESC LIMIT ?4",
        params![facts.verifier_id, lower, since, MAX_EVIDENCE as i64],
    )?;
    insert(tx, NewAlert {
        kind: AlertKind::EnumerationSpread,
        subject: facts.verifier_id.clone(),
        facts,
        summary: format!(
            "verifier {}: wrong codes on {appointments} appointments within {} minutes",
            facts.verifier_id, config.window_minutes
        ),
        evidence,
    })
}

/// Returns the lowest attempt position recorded after `since_ms`.
///
/// NOTE: this bound relies on store times never decreasing with position, which the SQLite
/// store guarantees. With a store that breaks this, a window could miss earlier rows.
fn first_position_after(tx: &Transaction<'_>, since_ms: i64) -> rusqlite::Result<i64> {
    let first = tx
        .prepare_cached("SELECT position FROM attempts INDEXED BY attempts_by_time WHERE at_ms > ?1 ORDER BY at_ms, position LIMIT 1")?
        .query_row(params![since_ms], |row| row.get::<_, i64>(0))
        .optional()?;
    Ok(first.unwrap_or(i64::MAX))
}

/// Checks whether an alert of `kind` for `subject` was raised after `since_ms`.
fn alerted_since(tx: &Transaction<'_>, kind: AlertKind, subject: &str, since_ms: i64) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT 1 FROM alerts WHERE kind = ?1 AND subject = ?2 AND at_ms > ?3 LIMIT 1")?
        .query_row(params![kind.as_str(), subject, since_ms], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Runs a query of positions and returns them in ascending order.
fn positions(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<i64>> {
    let mut statement = tx.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| row.get::<_, i64>(0))?;
    let mut positions: Vec<i64> = rows.collect::<rusqlite::Result<_>>()?;
    positions.sort_unstable();
    Ok(positions)
}

/// Stores an alert; a second alert with the same id (same kind and position) is ignored.
fn insert(tx: &Transaction<'_>, mut alert: NewAlert<'_>) -> rusqlite::Result<()> {
    let facts = alert.facts;
    alert.evidence.sort_unstable();
    let alert_id = format!("{}-{}", alert.kind.as_str(), facts.position);
    let evidence = serde_json::to_string(&alert.evidence).unwrap_or_else(|_| "[]".into());
    let verifier_id = (!facts.verifier_id.is_empty()).then_some(facts.verifier_id.as_str());
    let district = (!facts.district.is_empty()).then_some(facts.district.as_str());
    let centre_id = (!facts.centre_id.is_empty()).then_some(facts.centre_id.as_str());
    tx.prepare_cached(
        "INSERT OR IGNORE INTO alerts (alert_id, kind, position, at_ms, subject, centre_id, district, verifier_id, appointment_id,
             beneficiary_id, summary, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        alert_id,
        alert.kind.as_str(),
        facts.position,
        facts.at_ms,
        alert.subject,
        centre_id,
        district,
        verifier_id,
        facts.appointment_id,
        facts.appointment.beneficiary_id,
        alert.summary,
        evidence
    ])?;
    tracing::debug!(alert_id, kind = alert.kind.as_str(), position = facts.position, "fraud alert raised");
    Ok(())
}
