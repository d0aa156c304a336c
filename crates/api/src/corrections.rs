//! Corrections and revocations of certificates.
//!
//! A citizen corrects a beneficiary's name, year of birth or gender a configurable number of
//! times. Each certificate of that beneficiary that is still in force is then revoked as
//! superseded, and a new one is signed from the corrected record. An investigator may revoke
//! any certificate with a reason.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{Datelike, Utc};
use domain::appointment::Appointment;
use domain::beneficiary::{Beneficiary, CorrectBeneficiary};
use domain::events::RevocationReason;
use domain::ids::{AppointmentId, CertificateId};
use domain::{Decision, Event, Rejection};

use crate::commands::{check_owner, execute};
use crate::http::AppState;
use crate::ledger::{Actor, LedgerError, ReadSet};

/// Corrections allowed per beneficiary when `VAXLEDGER_MAX_CORRECTIONS` is not set.
pub const DEFAULT_MAX_CORRECTIONS: u32 = 2;

/// Returns the correction limit from `VAXLEDGER_MAX_CORRECTIONS`, read once.
pub fn max_corrections() -> u32 {
    static LIMIT: OnceLock<u32> = OnceLock::new();
    *LIMIT.get_or_init(|| match std::env::var("VAXLEDGER_MAX_CORRECTIONS") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(value = %text, default = DEFAULT_MAX_CORRECTIONS, "VAXLEDGER_MAX_CORRECTIONS is not a whole number; using the default");
            DEFAULT_MAX_CORRECTIONS
        }),
        Err(_) => DEFAULT_MAX_CORRECTIONS,
    })
}

/// Outcome of a correction.
#[derive(Debug, Clone)]
pub struct Corrected {
    /// Position of the last event appended.
    pub position: u64,
    /// Certificates revoked as superseded.
    pub superseded: Vec<CertificateId>,
    /// Certificates signed from the corrected record.
    pub issued: Vec<CertificateId>,
}

/// Records a correction, then supersedes and reissues the beneficiary's certificates.
pub async fn correct(state: &AppState, actor: &Actor, command: CorrectBeneficiary) -> Result<Corrected, LedgerError> {
    let ledger = &state.ledger;
    let beneficiary_id = command.beneficiary_id;
    let (_, outcome) = execute!(ledger, actor, |reads| {
        let beneficiary: Beneficiary = ledger.load(&beneficiary_id.stream_id(), &mut reads).await?;
        if beneficiary.info.is_some() {
            check_owner(actor, &beneficiary)?;
        }
        let events = beneficiary.handle_correct(command.clone(), max_corrections(), Utc::now().year())?;
        Ok(Decision::Accepted(events))
    });
    let mut position = outcome.last_position.unwrap_or(0);
    tracing::info!(beneficiary_id = %beneficiary_id, request_id = %actor.request_id, "beneficiary corrected");

    if let Err(err) = ledger.projections.wait_for(position, Duration::from_secs(5)).await {
        // NOTE: appointments the projection has not yet shown are skipped here, and nothing
        // reissues their certificates later.
        tracing::warn!(cause = %err, position, "projection lagging; certificates of appointments not yet projected are not reissued");
    }
    let appointments = ledger.projections.appointments_of(&beneficiary_id.to_string()).map_err(|err| LedgerError::Internal(err.to_string()))?;
    let mut superseded = Vec::new();
    let mut issued = Vec::new();
    for row in appointments.into_iter().filter(|row| row.certificate_id.is_some()) {
        let appointment_id = AppointmentId::parse(&row.appointment_id)?;
        let (revoked, _) = revoke_live(state, actor, appointment_id, None, RevocationReason::SupersededByCorrection, "superseded by a corrected certificate").await?;
        if revoked.is_empty() {
            continue;
        }
        superseded.extend(revoked);
        match crate::certificates::issue(state, actor, appointment_id).await {
            Ok((certificate_id, issued_position)) => {
                issued.push(certificate_id);
                position = position.max(issued_position);
            }
            Err(err) => {
                tracing::error!(cause = %err, appointment_id = %appointment_id, "reissue after correction failed");
                // NOTE: the old certificate is already revoked here, and a retried correction
                // is rejected as no_change, so this appointment needs an operator to reissue it.
                return Err(LedgerError::Internal(format!(
                    "the correction is recorded but reissuing the certificate of appointment {appointment_id} failed; the error was logged"
                )));
            }
        }
    }
    Ok(Corrected { position, superseded, issued })
}

/// Revokes the in-force certificates of an appointment (only `only` when given); returns them
/// and the position of the last event appended.
async fn revoke_live(
    state: &AppState,
    actor: &Actor,
    appointment_id: AppointmentId,
    only: Option<CertificateId>,
    reason: RevocationReason,
    note: &str,
) -> Result<(Vec<CertificateId>, u64), LedgerError> {
    let ledger = &state.ledger;
    let (decision, outcome) = execute!(ledger, actor, |reads| {
        let appointment: Appointment = ledger.load(&appointment_id.stream_id(), &mut reads).await?;
        let live: Vec<CertificateId> = appointment
            .certificates
            .iter()
            .filter(|(id, revoked)| !revoked && only.is_none_or(|wanted| wanted == *id))
            .map(|(id, _)| *id)
            .collect();
        if let Some(wanted) = only {
            if live.is_empty() {
                let known = appointment.certificates.iter().any(|(id, _)| *id == wanted);
                let message = if known { "the certificate is already revoked" } else { "the certificate does not belong to its appointment" };
                return Err(Rejection::conflict("certificate_id", "not_revocable", message).into());
            }
        }
        let events = live
            .iter()
            .map(|certificate_id| Event::CertificateRevoked { certificate_id: *certificate_id, appointment_id, reason, note: note.to_owned() })
            .collect();
        Ok(Decision::Accepted(events))
    });
    let revoked = decision
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::CertificateRevoked { certificate_id, .. } => Some(*certificate_id),
            _ => None,
        })
        .collect();
    Ok((revoked, outcome.last_position.unwrap_or(0)))
}

/// Revokes one certificate with a reason (investigator). Returns the position of the event.
pub async fn revoke(state: &AppState, actor: &Actor, certificate_id: CertificateId, reason: RevocationReason, note: &str) -> Result<u64, LedgerError> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(Rejection::invalid("note", "note must be 1 to 1000 characters explaining the revocation").into());
    }
    let stored = state
        .vault
        .get(certificate_id)
        .await
        .map_err(|err| LedgerError::Internal(err.to_string()))?
        .ok_or_else(|| Rejection::NotFound { entity: "certificate", id: certificate_id.to_string() })?;
    let (_, position) = revoke_live(state, actor, stored.appointment_id, Some(certificate_id), reason, note).await?;
    tracing::info!(certificate_id = %certificate_id, reason = ?reason, investigator_id = %actor.token_id, "certificate revoked");
    Ok(position)
}
