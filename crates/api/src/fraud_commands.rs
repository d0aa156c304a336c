//! Dispute commands: a citizen raises a dispute on their own appointment, and an investigator
//! resolves it, revoking the appointment's certificate when asked. Both are load-decide-append
//! rounds on the appointment stream, like the commands in `commands.rs`.

use domain::appointment::Appointment;
use domain::beneficiary::Beneficiary;
use domain::dispute::{DisputeKind, Disputes, Finding, RaiseDispute, ResolveDispute};
use domain::events::RevocationReason;
use domain::ids::{AppointmentId, BeneficiaryId, CertificateId, DisputeId};
use domain::{Decision, Event, Rejection};
use uuid::Uuid;

use crate::commands::check_owner;
use crate::ledger::{Actor, Aggregate, Ledger, LedgerError, ReadSet};

/// Runs a load-decide-append round until the append lands without a revision conflict; the
/// same loop as `commands.rs` uses.
macro_rules! execute {
    ($ledger:expr, $actor:expr, |$reads:ident| $body:block) => {{
        let mut attempt = 0usize;
        loop {
            let mut $reads = ReadSet::default();
            let decision: Result<Decision, LedgerError> = async { $body }.await;
            let decision = decision?;
            if let Some(outcome) = $ledger.try_commit(&decision, &$reads, $actor, attempt).await? {
                break (decision, outcome);
            }
            attempt += 1;
        }
    }};
}

/// An appointment stream folded into the appointment and its disputes.
#[derive(Debug, Clone, Default)]
pub struct DisputedAppointment {
    /// Booking, status and certificates.
    pub appointment: Appointment,
    /// Disputes raised on the appointment.
    pub disputes: Disputes,
}

impl Aggregate for DisputedAppointment {
    fn apply_event(&mut self, event: &Event) {
        self.appointment.apply(event);
        self.disputes.apply(event);
    }
}

/// A dispute just raised.
#[derive(Debug, Clone)]
pub struct Raised {
    /// New dispute id.
    pub dispute_id: DisputeId,
    /// Beneficiary of the appointment, for the acknowledgement SMS.
    pub beneficiary_id: BeneficiaryId,
    /// Position of `DisputeRaised`.
    pub position: u64,
}

/// A dispute just resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Beneficiary of the appointment, for the outcome SMS.
    pub beneficiary_id: BeneficiaryId,
    /// Certificates revoked by the resolution.
    pub revoked: Vec<CertificateId>,
    /// Position of the last event appended.
    pub position: u64,
}

impl Ledger {
    /// Raises a dispute on an appointment. A citizen may dispute only an appointment of a
    /// beneficiary registered under their mobile number; otherwise this returns `Forbidden`.
    pub async fn raise_dispute(
        &self,
        actor: &Actor,
        appointment_id: AppointmentId,
        kind: DisputeKind,
        description: String,
    ) -> Result<Raised, LedgerError> {
        let command = RaiseDispute { dispute_id: DisputeId::new(Uuid::new_v4()), kind, description };
        let (decision, outcome) = execute!(self, actor, |reads| {
            let stream: DisputedAppointment = self.load(&appointment_id.stream_id(), &mut reads).await?;
            let Some(booking) = &stream.appointment.booking else {
                return Err(Rejection::NotFound { entity: "appointment", id: appointment_id.to_string() }.into());
            };
            let beneficiary: Beneficiary = self.load(&booking.beneficiary_id.stream_id(), &mut reads).await?;
            check_owner(actor, &beneficiary)?;
            let events = stream.disputes.handle_raise(&stream.appointment, &command)?;
            Ok(Decision::Accepted(events))
        });
        let beneficiary_id = decision
            .events()
            .iter()
            .find_map(|event| match event {
                Event::DisputeRaised { beneficiary_id, .. } => Some(*beneficiary_id),
                _ => None,
            })
            .ok_or_else(|| LedgerError::Internal("dispute decision without DisputeRaised".into()))?;
        tracing::info!(dispute_id = %command.dispute_id, appointment_id = %appointment_id, kind = kind.as_str(), request_id = %actor.request_id, "dispute raised");
        Ok(Raised { dispute_id: command.dispute_id, beneficiary_id, position: outcome.last_position.unwrap_or(0) })
    }

    /// Resolves a dispute of an appointment with a finding and a note, and revokes the
    /// appointment's certificates when `revoke` is set (allowed only for an upheld dispute).
    pub async fn resolve_dispute(
        &self,
        actor: &Actor,
        appointment_id: AppointmentId,
        dispute_id: DisputeId,
        finding: Finding,
        note: String,
        revoke: Option<RevocationReason>,
    ) -> Result<Resolved, LedgerError> {
        let command = ResolveDispute { dispute_id, finding, note, investigator_id: actor.token_id.clone(), revoke };
        let mut beneficiary_id = None;
        let (decision, outcome) = execute!(self, actor, |reads| {
            let stream: DisputedAppointment = self.load(&appointment_id.stream_id(), &mut reads).await?;
            beneficiary_id = stream.appointment.booking.as_ref().map(|booking| booking.beneficiary_id);
            let events = stream.disputes.handle_resolve(&stream.appointment, &command)?;
            Ok(Decision::Accepted(events))
        });
        let beneficiary_id = beneficiary_id.ok_or_else(|| LedgerError::Internal("resolved a dispute of an appointment without booking".into()))?;
        let revoked: Vec<CertificateId> = decision
            .events()
            .iter()
            .filter_map(|event| match event {
                Event::CertificateRevoked { certificate_id, .. } => Some(*certificate_id),
                _ => None,
            })
            .collect();
        tracing::info!(
            dispute_id = %dispute_id,
            appointment_id = %appointment_id,
            finding = finding.as_str(),
            revoked = revoked.len(),
            investigator_id = %actor.token_id,
            "dispute resolved"
        );
        Ok(Resolved { beneficiary_id, revoked, position: outcome.last_position.unwrap_or(0) })
    }
}
