//! The ledger's commands: one method per use case, each a load-decide-append loop.

use chrono::{DateTime, Datelike, Utc};
use domain::appointment::{AdministerDose, Appointment, BookAppointment, VerifyCode};
use domain::beneficiary::{Beneficiary, RegisterBeneficiary};
use domain::centre::{Centre, RegisterCentre};
use domain::code::SecurityCode;
use domain::events::{mobile_stream_id, CancellationReason};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, SessionId};
use domain::mobile::Mobile;
use domain::session::{ScheduleSession, Session};
use domain::{Decision, Rejection};
use uuid::Uuid;

use crate::ledger::{today_in_india, Actor, Ledger, LedgerError, ReadSet};
use crate::service_db::Role;

/// Result of a booking: the plain code leaves the server only through this value.
pub struct Booked {
    /// New appointment.
    pub appointment_id: AppointmentId,
    /// The code, for the booking response and the SMS.
    pub code: SecurityCode,
    /// Position of the last event appended.
    pub position: u64,
    /// Addressee of the booking SMS, read from the beneficiary stream by the command itself.
    pub recipient: Option<Recipient>,
}

/// Addressee of a confirmation SMS, taken from the beneficiary stream that the command read, so
/// that the SMS does not wait for the status projections to catch up with the write.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// HMAC of the mobile number, the key of the contact lookup.
    pub mobile_hash: String,
    /// Beneficiary's name after corrections, for the SMS text.
    pub name: String,
}

impl Recipient {
    fn of(beneficiary: &Beneficiary) -> Option<Recipient> {
        let info = beneficiary.info.as_ref()?;
        Some(Recipient { mobile_hash: info.mobile_hash.clone(), name: info.name.clone() })
    }
}

/// A recorded dose, with the values its confirmation SMS contains.
#[derive(Debug, Clone)]
pub struct Administered {
    /// Position of the `DoseAdministered` event (or of the rejection's last event).
    pub position: u64,
    /// Addressee of the SMS.
    pub recipient: Option<Recipient>,
    /// Dose number of the appointment.
    pub dose_number: u8,
    /// Vaccine given.
    pub vaccine: String,
    /// Session date.
    pub date: chrono::NaiveDate,
}

/// Runs a load-decide-append round until the append lands without a revision conflict.
///
/// `$body` loads into `$reads` and evaluates to `Result<Decision, LedgerError>`. Written as a
/// macro rather than a closure because async closures over borrowed state do not satisfy the
/// `Send` bound of the HTTP handlers.
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
pub(crate) use execute;

/// Returns the position of the last event appended, or 0.
fn last_position(outcome: &store::AppendOutcome) -> u64 {
    outcome.last_position.unwrap_or(0)
}

/// Turns a rejected decision into an error after its events were appended.
fn accepted(decision: Decision) -> Result<(), LedgerError> {
    match decision {
        Decision::Accepted(_) => Ok(()),
        Decision::Rejected { rejection, .. } => Err(LedgerError::Rejected(rejection)),
    }
}

/// Rejects unless a citizen actor owns the beneficiary; staff pass.
pub fn check_owner(actor: &Actor, beneficiary: &Beneficiary) -> Result<(), LedgerError> {
    if actor.role != Role::Citizen {
        return Ok(());
    }
    let owner = beneficiary.info.as_ref().map(|info| info.mobile_hash.as_str());
    if owner.is_some() && owner == actor.mobile_hash.as_deref() {
        Ok(())
    } else {
        Err(LedgerError::Forbidden("the beneficiary is not registered under your mobile number".into()))
    }
}

/// Returns the actor's centre, or a rejection for a token with none.
fn actor_centre(actor: &Actor) -> Result<CentreId, LedgerError> {
    let text = actor.centre_id.as_deref().ok_or_else(|| LedgerError::Forbidden("this token is not scoped to a centre".into()))?;
    CentreId::parse(text).map_err(|_| LedgerError::Internal("token has a malformed centre id".into()))
}

impl Ledger {
    /// Registers a centre.
    pub async fn register_centre(&self, actor: &Actor, command: RegisterCentre) -> Result<u64, LedgerError> {
        let (_, outcome) = execute!(self, actor, |reads| {
                let centre: Centre = self.load(&command.centre_id.stream_id(), &mut reads).await?;
                let events = centre.handle_register(command.clone())?;
                Ok(Decision::Accepted(events))
        });
        Ok(last_position(&outcome))
    }

    /// Schedules a session at a registered centre.
    pub async fn schedule_session(&self, actor: &Actor, command: ScheduleSession, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        let (_, outcome) = execute!(self, actor, |reads| {
                let centre: Centre = self.load(&command.centre_id.stream_id(), &mut reads).await?;
                let session: Session = self.load(&command.session_id.stream_id(), &mut reads).await?;
                let events = session.handle_schedule(command.clone(), &centre, &self.catalogue, today_in_india(now))?;
                Ok(Decision::Accepted(events))
        });
        Ok(last_position(&outcome))
    }

    /// Cancels a session; its open appointments keep their seats until cancelled one by one.
    pub async fn cancel_session(&self, actor: &Actor, session_id: SessionId, reason: &str) -> Result<u64, LedgerError> {
        let (_, outcome) = execute!(self, actor, |reads| {
                let session: Session = self.load(&session_id.stream_id(), &mut reads).await?;
                let events = session.handle_cancel(session_id, reason)?;
                Ok(Decision::Accepted(events))
        });
        Ok(last_position(&outcome))
    }

    /// Registers a beneficiary under a mobile number (at most four per number).
    pub async fn register_beneficiary(&self, actor: &Actor, command: RegisterBeneficiary, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        let mobile_hash = self.server_key.mobile_hash(&command.mobile);
        let (_, outcome) = execute!(self, actor, |reads| {
                let mobile: Mobile = self.load(&mobile_stream_id(&mobile_hash), &mut reads).await?;
                let beneficiary: Beneficiary = self.load(&command.beneficiary_id.stream_id(), &mut reads).await?;
                let events = beneficiary.handle_register(command.clone(), &mobile, &self.server_key, now.year())?;
                Ok(Decision::Accepted(events))
        });
        self.service
            .save_contact(&mobile_hash, command.mobile.as_str())
            .map_err(|err| LedgerError::Internal(err.to_string()))?;
        Ok(last_position(&outcome))
    }

    /// Books an appointment and draws its security code from the OS RNG.
    ///
    /// A verifier books walk-ins, only in today's sessions at their own centre.
    pub async fn book(
        &self,
        actor: &Actor,
        beneficiary_id: BeneficiaryId,
        session_id: SessionId,
        dose_number: u8,
        now: DateTime<Utc>,
    ) -> Result<Booked, LedgerError> {
        let appointment_id = AppointmentId::new(Uuid::new_v4());
        let code = SecurityCode::generate(&mut rand::rngs::OsRng);
        let walk_in = actor.role == Role::Verifier;
        let command = BookAppointment {
            appointment_id,
            beneficiary_id,
            session_id,
            dose_number,
            code_hmac: self.server_key.code_hmac(&appointment_id, &code),
            key_id: self.server_key.key_id().to_owned(),
            walk_in,
            today: today_in_india(now),
        };
        let mut recipient = None;
        let (_, outcome) = execute!(self, actor, |reads| {
                let session: Session = self.load(&session_id.stream_id(), &mut reads).await?;
                let beneficiary: Beneficiary = self.load(&beneficiary_id.stream_id(), &mut reads).await?;
                recipient = Recipient::of(&beneficiary);
                let appointment: Appointment = self.load(&appointment_id.stream_id(), &mut reads).await?;
                if beneficiary.info.is_some() {
                    check_owner(actor, &beneficiary)?;
                }
                if walk_in {
                    let centre = actor_centre(actor)?;
                    if session.info.as_ref().is_some_and(|info| info.centre_id != centre) {
                        return Err(LedgerError::Forbidden("walk-ins can be booked only at your own centre".into()));
                    }
                }
                let events = appointment.handle_book(&command, &session, &beneficiary, &self.catalogue)?;
                Ok(Decision::Accepted(events))
        });
        Ok(Booked { appointment_id, code, position: last_position(&outcome), recipient })
    }

    /// Loads an appointment, or returns not found naming the id.
    pub async fn load_appointment(&self, appointment_id: AppointmentId, reads: &mut ReadSet) -> Result<Appointment, LedgerError> {
        let appointment: Appointment = self.load(&appointment_id.stream_id(), reads).await?;
        if appointment.booking.is_none() {
            return Err(Rejection::NotFound { entity: "appointment", id: appointment_id.to_string() }.into());
        }
        Ok(appointment)
    }

    /// Cancels an appointment and frees its seat.
    pub async fn cancel(&self, actor: &Actor, appointment_id: AppointmentId) -> Result<u64, LedgerError> {
        let (_, outcome) = execute!(self, actor, |reads| {
                let appointment = self.load_appointment(appointment_id, &mut reads).await?;
                let booking = appointment.booking.as_ref().expect("load_appointment checked the booking");
                let beneficiary: Beneficiary = self.load(&booking.beneficiary_id.stream_id(), &mut reads).await?;
                let _session: Session = self.load(&booking.session_id.stream_id(), &mut reads).await?;
                check_owner(actor, &beneficiary)?;
                let events = appointment.handle_cancel(CancellationReason::ByCitizen)?;
                Ok(Decision::Accepted(events))
        });
        Ok(last_position(&outcome))
    }

    /// Checks a security code at the verifier's centre. Rejections are appended, then returned.
    pub async fn verify_code(&self, actor: &Actor, appointment_id: AppointmentId, code: SecurityCode, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        let centre_id = actor_centre(actor)?;
        let command = VerifyCode { code, centre_id, verifier_id: actor.token_id.clone(), today: today_in_india(now) };
        let (decision, outcome) = execute!(self, actor, |reads| {
                let appointment = self.load_appointment(appointment_id, &mut reads).await?;
                let decision = appointment.handle_verify(&command, &self.server_key)?;
                Ok(decision)
        });
        accepted(decision)?;
        Ok(last_position(&outcome))
    }

    /// Records a dose at the vaccinator's centre. Rejections are appended, then returned.
    pub async fn administer(
        &self,
        actor: &Actor,
        appointment_id: AppointmentId,
        batch: String,
        vaccine: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Administered, LedgerError> {
        let centre_id = actor_centre(actor)?;
        let command = AdministerDose { centre_id, vaccinator_id: actor.token_id.clone(), batch, vaccine, at: now };
        let mut notice = None;
        let (decision, outcome) = execute!(self, actor, |reads| {
                let appointment = self.load_appointment(appointment_id, &mut reads).await?;
                let booking = appointment.booking.as_ref().expect("load_appointment checked the booking");
                let beneficiary: Beneficiary = self.load(&booking.beneficiary_id.stream_id(), &mut reads).await?;
                notice = Some((Recipient::of(&beneficiary), booking.dose_number, booking.vaccine.clone(), booking.date));
                let decision = appointment.handle_administer(&command)?;
                Ok(decision)
        });
        accepted(decision)?;
        let (recipient, dose_number, vaccine, date) =
            notice.ok_or_else(|| LedgerError::Internal("dose recorded without reading its appointment".into()))?;
        Ok(Administered { position: last_position(&outcome), recipient, dose_number, vaccine, date })
    }

    /// Unlocks a locked appointment (supervisor, at their centre).
    pub async fn unlock(&self, actor: &Actor, appointment_id: AppointmentId, reason: &str) -> Result<u64, LedgerError> {
        let centre_id = actor_centre(actor)?;
        let (_, outcome) = execute!(self, actor, |reads| {
                let appointment = self.load_appointment(appointment_id, &mut reads).await?;
                let booking = appointment.booking.as_ref().expect("load_appointment checked the booking");
                if booking.centre_id != centre_id {
                    return Err(LedgerError::Forbidden("the appointment is booked at another centre".into()));
                }
                let events = appointment.handle_unlock(&actor.token_id, reason)?;
                Ok(Decision::Accepted(events))
        });
        Ok(last_position(&outcome))
    }
}
