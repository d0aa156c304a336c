//! Event-to-row updates of the status projections, one SQL statement per event. Each function
//! runs inside the projector's transaction; an event that does not concern a table leaves it
//! alone. This is the reference that the batched path in [`crate::batch`] must match.

use domain::appointment::Status;
use domain::Event;
use rusqlite::{params, Transaction};
use store::RecordedEvent;

/// Applies one decoded event.
pub(crate) fn apply_event(tx: &Transaction<'_>, recorded: &RecordedEvent, event: &Event) -> rusqlite::Result<()> {
    let position = recorded.position as i64;
    match event {
        Event::CentreRegistered { centre_id, name, district, state, pincode } => {
            tx.prepare_cached("INSERT OR REPLACE INTO centres (centre_id, name, district, state, pincode) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
                params![centre_id.to_string(), name, district, state, pincode],
            )?;
        }
        Event::SessionScheduled { session_id, centre_id, district, date, vaccine, capacity, min_age } => {
            tx.prepare_cached("INSERT OR REPLACE INTO sessions (session_id, centre_id, district, date, vaccine, capacity, min_age)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                params![session_id.to_string(), centre_id.to_string(), district, date.to_string(), vaccine, capacity, min_age],
            )?;
        }
        Event::SessionCancelled { session_id, .. } => {
            tx.prepare_cached("UPDATE sessions SET cancelled = 1 WHERE session_id = ?1")?.execute( params![session_id.to_string()])?;
        }
        Event::SeatReserved { session_id, .. } => {
            tx.prepare_cached("UPDATE sessions SET booked = booked + 1 WHERE session_id = ?1")?.execute( params![session_id.to_string()])?;
        }
        Event::SeatReleased { session_id, .. } => {
            tx.prepare_cached("UPDATE sessions SET booked = booked - 1 WHERE session_id = ?1")?.execute( params![session_id.to_string()])?;
        }
        Event::BeneficiaryRegistered {
            beneficiary_id,
            mobile_hash,
            name,
            year_of_birth,
            gender,
            photo_id_type,
            photo_id_masked,
            walk_in,
        } => {
            tx.prepare_cached("INSERT OR REPLACE INTO beneficiaries (beneficiary_id, mobile_hash, name, year_of_birth, gender,
                     photo_id_type, photo_id_masked, walk_in, registered_position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?.execute(
                params![
                    beneficiary_id.to_string(),
                    mobile_hash,
                    name,
                    year_of_birth,
                    enum_name(gender),
                    enum_name(photo_id_type),
                    photo_id_masked,
                    walk_in,
                    position
                ],
            )?;
        }
        Event::BeneficiaryCorrected { beneficiary_id, name, year_of_birth, gender } => {
            tx.prepare_cached("UPDATE beneficiaries SET name = ?2, year_of_birth = ?3, gender = ?4 WHERE beneficiary_id = ?1")?.execute(
                params![beneficiary_id.to_string(), name, year_of_birth, enum_name(gender)],
            )?;
        }
        Event::BeneficiaryDoseRecorded { beneficiary_id, dose_number, .. } => {
            tx.prepare_cached("UPDATE beneficiaries SET doses_received = MAX(doses_received, ?2) WHERE beneficiary_id = ?1")?.execute(
                params![beneficiary_id.to_string(), dose_number],
            )?;
        }
        Event::AppointmentBooked {
            appointment_id,
            beneficiary_id,
            session_id,
            centre_id,
            date,
            vaccine,
            dose_number,
            walk_in,
        } => {
            tx.prepare_cached("INSERT OR REPLACE INTO appointments (appointment_id, beneficiary_id, session_id, centre_id, date,
                     vaccine, dose_number, walk_in, status, booked_position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?.execute(
                params![
                    appointment_id.to_string(),
                    beneficiary_id.to_string(),
                    session_id.to_string(),
                    centre_id.to_string(),
                    date.to_string(),
                    vaccine,
                    dose_number,
                    walk_in,
                    Status::Booked.as_str(),
                    position
                ],
            )?;
        }
        Event::AppointmentCancelled { appointment_id, .. } => {
            set_status(tx, &appointment_id.to_string(), Status::Cancelled)?;
        }
        Event::CodeVerified { appointment_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET status = ?2, code_verified_position = ?3 WHERE appointment_id = ?1")?.execute(
                params![appointment_id.to_string(), Status::Verified.as_str(), position],
            )?;
        }
        Event::CodeRejected { appointment_id, attempt, .. } => {
            tx.prepare_cached("UPDATE appointments SET rejected_attempts = ?2 WHERE appointment_id = ?1")?.execute(
                params![appointment_id.to_string(), attempt],
            )?;
        }
        Event::AppointmentLocked { appointment_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET locked = 1 WHERE appointment_id = ?1")?.execute( params![appointment_id.to_string()])?;
        }
        Event::AppointmentUnlocked { appointment_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET locked = 0, rejected_attempts = 0 WHERE appointment_id = ?1")?.execute(
                params![appointment_id.to_string()],
            )?;
        }
        Event::DoseAdministered { appointment_id, batch, .. } => {
            tx.prepare_cached("UPDATE appointments SET status = ?2, dose_position = ?3, batch = ?4 WHERE appointment_id = ?1")?.execute(
                params![appointment_id.to_string(), Status::Administered.as_str(), position, batch],
            )?;
        }
        Event::CertificateIssued { appointment_id, certificate_id, .. } => {
            tx.prepare_cached("UPDATE appointments SET certificate_id = ?2, certificate_revoked = 0 WHERE appointment_id = ?1")?.execute(
                params![appointment_id.to_string(), certificate_id.to_string()],
            )?;
        }
        Event::CertificateRevoked { appointment_id, certificate_id, reason, .. } => {
            tx.prepare_cached("INSERT OR IGNORE INTO revoked_certificates (certificate_id, appointment_id, reason, revoked_at_ms, position)
                 VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
                params![certificate_id.to_string(), appointment_id.to_string(), enum_name(reason), recorded.recorded_at_ms, position],
            )?;
            tx.prepare_cached("UPDATE appointments SET certificate_revoked = 1 WHERE appointment_id = ?1 AND certificate_id = ?2")?.execute(
                params![appointment_id.to_string(), certificate_id.to_string()],
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn set_status(tx: &Transaction<'_>, appointment_id: &str, status: Status) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE appointments SET status = ?2 WHERE appointment_id = ?1")?.execute( params![appointment_id, status.as_str()])?;
    Ok(())
}

/// Returns the serde name of a unit enum variant, such as `driving_licence`.
pub(crate) fn enum_name<T: serde::Serialize>(value: &T) -> String {
    let mut bytes = Vec::new();
    if ciborium::into_writer(value, &mut bytes).is_err() {
        return String::new();
    }
    ciborium::from_reader::<String, _>(bytes.as_slice()).unwrap_or_default()
}
