//! Batched apply of the status projections: the rows a batch touches are kept in memory while
//! its events are applied, then each touched row is written once, with cached prepared
//! statements, inside the batch's transaction.
//!
//! The result is the same as running the per-event statements of [`crate::apply`] one by one.
//! A row the batch has not seen is loaded from the file before its first update. An update of a
//! row that does not exist changes nothing, like an `UPDATE` that matches no row. An
//! `INSERT OR REPLACE` event replaces the whole row and resets the other columns to their defaults. The cache lives
//! for one batch only, so memory does not grow with the length of the log.

use std::collections::HashMap;

use domain::appointment::Status;
use domain::Event;
use rusqlite::{params, OptionalExtension, Transaction};
use store::RecordedEvent;

use crate::apply::enum_name;

/// One touched row of a table, in the batch cache.
pub(crate) struct Slot<R> {
    /// The row after the events applied so far, or `None` when it does not exist.
    pub row: Option<R>,
    /// Set when an event replaced the whole row, so the flush writes `INSERT OR REPLACE`
    /// rather than an `UPDATE` of an existing row.
    pub replaced: bool,
    /// Set when an event changed the row, so the flush writes it.
    pub dirty: bool,
}

/// The touched rows of one table, keyed by primary key, in first-touch order.
pub(crate) struct Rows<R> {
    /// Key and slot of each touched row, in the order the batch first touched them, so that
    /// the flush writes rows in event order.
    slots: Vec<(String, Slot<R>)>,
    /// Index into `slots` by key.
    index: HashMap<String, usize>,
}

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Self { slots: Vec::new(), index: HashMap::new() }
    }
}

impl<R> Rows<R> {
    /// Returns the slot of `key`, loading the row with `load` on its first touch.
    pub fn get(&mut self, key: &str, load: impl FnOnce() -> rusqlite::Result<Option<R>>) -> rusqlite::Result<&mut Slot<R>> {
        let at = match self.index.get(key) {
            Some(&at) => at,
            None => {
                let row = load()?;
                self.slots.push((key.to_owned(), Slot { row, replaced: false, dirty: false }));
                self.index.insert(key.to_owned(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        Ok(&mut self.slots[at].1)
    }

    /// Replaces the whole row of `key` without loading it.
    pub fn replace(&mut self, key: String, row: R) {
        let slot = Slot { row: Some(row), replaced: true, dirty: true };
        match self.index.get(&key) {
            Some(&at) => self.slots[at].1 = slot,
            None => {
                self.index.insert(key.clone(), self.slots.len());
                self.slots.push((key, slot));
            }
        }
    }

    /// Changes the row of `key` with `change` when it exists, loading it on its first touch.
    pub fn update(
        &mut self,
        key: &str,
        load: impl FnOnce() -> rusqlite::Result<Option<R>>,
        change: impl FnOnce(&mut R),
    ) -> rusqlite::Result<()> {
        let slot = self.get(key, load)?;
        if let Some(row) = slot.row.as_mut() {
            change(row);
            slot.dirty = true;
        }
        Ok(())
    }

    /// Writes every changed row: `replace` for replaced rows, `update` for the others. Both
    /// statements take the key as `?1` and the other columns in the same order.
    pub fn flush(
        &self,
        tx: &Transaction<'_>,
        replace: &str,
        update: &str,
        mut write: impl FnMut(&mut rusqlite::CachedStatement<'_>, &str, &R) -> rusqlite::Result<usize>,
    ) -> rusqlite::Result<()> {
        for (key, slot) in &self.slots {
            let (true, Some(row)) = (slot.dirty, slot.row.as_ref()) else { continue };
            let sql = if slot.replaced { replace } else { update };
            write(&mut tx.prepare_cached(sql)?, key, row)?;
        }
        Ok(())
    }
}

/// A row of `sessions` without its key.
struct Session {
    centre_id: String,
    district: String,
    date: String,
    vaccine: String,
    capacity: i64,
    booked: i64,
    min_age: i64,
    cancelled: i64,
}

/// A row of `beneficiaries` without its key.
struct Beneficiary {
    mobile_hash: String,
    name: String,
    year_of_birth: i64,
    gender: String,
    photo_id_type: String,
    photo_id_masked: String,
    walk_in: bool,
    doses_received: i64,
    registered_position: i64,
}

/// A row of `appointments` without its key.
struct Appointment {
    beneficiary_id: String,
    session_id: String,
    centre_id: String,
    date: String,
    vaccine: String,
    dose_number: i64,
    walk_in: bool,
    status: String,
    locked: i64,
    rejected_attempts: i64,
    code_verified_position: Option<i64>,
    dose_position: Option<i64>,
    batch: Option<String>,
    certificate_id: Option<String>,
    certificate_revoked: i64,
    booked_position: i64,
}

/// The rows one batch of the status projections touches.
#[derive(Default)]
pub(crate) struct StatusBatch {
    /// Touched `sessions` rows.
    sessions: Rows<Session>,
    /// Touched `beneficiaries` rows.
    beneficiaries: Rows<Beneficiary>,
    /// Touched `appointments` rows.
    appointments: Rows<Appointment>,
}

fn load_session(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Session>> {
    tx.prepare_cached(
        "SELECT centre_id, district, date, vaccine, capacity, booked, min_age, cancelled FROM sessions WHERE session_id = ?1",
    )?
    .query_row(params![key], |row| {
        Ok(Session {
            centre_id: row.get(0)?,
            district: row.get(1)?,
            date: row.get(2)?,
            vaccine: row.get(3)?,
            capacity: row.get(4)?,
            booked: row.get(5)?,
            min_age: row.get(6)?,
            cancelled: row.get(7)?,
        })
    })
    .optional()
}

fn load_beneficiary(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Beneficiary>> {
    tx.prepare_cached(
        "SELECT mobile_hash, name, year_of_birth, gender, photo_id_type, photo_id_masked, walk_in, doses_received,
                registered_position
         FROM beneficiaries WHERE beneficiary_id = ?1",
    )?
    .query_row(params![key], |row| {
        Ok(Beneficiary {
            mobile_hash: row.get(0)?,
            name: row.get(1)?,
            year_of_birth: row.get(2)?,
            gender: row.get(3)?,
            photo_id_type: row.get(4)?,
            photo_id_masked: row.get(5)?,
            walk_in: row.get(6)?,
            doses_received: row.get(7)?,
            registered_position: row.get(8)?,
        })
    })
    .optional()
}

fn load_appointment(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Appointment>> {
    tx.prepare_cached(
        "SELECT beneficiary_id, session_id, centre_id, date, vaccine, dose_number, walk_in, status, locked, rejected_attempts,
                code_verified_position, dose_position, batch, certificate_id, certificate_revoked, booked_position
         FROM appointments WHERE appointment_id = ?1",
    )?
    .query_row(params![key], |row| {
        Ok(Appointment {
            beneficiary_id: row.get(0)?,
            session_id: row.get(1)?,
            centre_id: row.get(2)?,
            date: row.get(3)?,
            vaccine: row.get(4)?,
            dose_number: row.get(5)?,
            walk_in: row.get(6)?,
            status: row.get(7)?,
            locked: row.get(8)?,
            rejected_attempts: row.get(9)?,
            code_verified_position: row.get(10)?,
            dose_position: row.get(11)?,
            batch: row.get(12)?,
            certificate_id: row.get(13)?,
            certificate_revoked: row.get(14)?,
            booked_position: row.get(15)?,
        })
    })
    .optional()
}

impl StatusBatch {
    /// Applies one decoded event to the cached rows (and writes the rows of tables that are
    /// only ever inserted: `centres` and `revoked_certificates`).
    pub fn apply(&mut self, tx: &Transaction<'_>, recorded: &RecordedEvent, event: &Event) -> rusqlite::Result<()> {
        let position = recorded.position as i64;
        match event {
            Event::CentreRegistered { centre_id, name, district, state, pincode } => {
                tx.prepare_cached("INSERT OR REPLACE INTO centres (centre_id, name, district, state, pincode) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![centre_id.to_string(), name, district, state, pincode])?;
            }
            Event::SessionScheduled { session_id, centre_id, district, date, vaccine, capacity, min_age } => {
                self.sessions.replace(session_id.to_string(), Session {
                    centre_id: centre_id.to_string(),
                    district: district.clone(),
                    date: date.to_string(),
                    vaccine: vaccine.clone(),
                    capacity: i64::from(*capacity),
                    booked: 0,
                    min_age: i64::from(*min_age),
                    cancelled: 0,
                });
            }
            Event::SessionCancelled { session_id, .. } => {
                self.sessions.update(&session_id.to_string(), || load_session(tx, &session_id.to_string()), |row| row.cancelled = 1)?;
            }
            Event::SeatReserved { session_id, .. } => {
                self.sessions.update(&session_id.to_string(), || load_session(tx, &session_id.to_string()), |row| row.booked += 1)?;
            }
            Event::SeatReleased { session_id, .. } => {
                self.sessions.update(&session_id.to_string(), || load_session(tx, &session_id.to_string()), |row| row.booked -= 1)?;
            }
            Event::BeneficiaryRegistered { beneficiary_id, mobile_hash, name, year_of_birth, gender, photo_id_type, photo_id_masked, walk_in } => {
                self.beneficiaries.replace(beneficiary_id.to_string(), Beneficiary {
                    mobile_hash: mobile_hash.clone(),
                    name: name.clone(),
                    year_of_birth: i64::from(*year_of_birth),
                    gender: enum_name(gender),
                    photo_id_type: enum_name(photo_id_type),
                    photo_id_masked: photo_id_masked.clone(),
                    walk_in: *walk_in,
                    doses_received: 0,
                    registered_position: position,
                });
            }
            Event::BeneficiaryCorrected { beneficiary_id, name, year_of_birth, gender } => {
                let key = beneficiary_id.to_string();
                self.beneficiaries.update(&key, || load_beneficiary(tx, &key), |row| {
                    row.name = name.clone();
                    row.year_of_birth = i64::from(*year_of_birth);
                    row.gender = enum_name(gender);
                })?;
            }
            Event::BeneficiaryDoseRecorded { beneficiary_id, dose_number, .. } => {
                let key = beneficiary_id.to_string();
                self.beneficiaries.update(&key, || load_beneficiary(tx, &key), |row| {
                    row.doses_received = row.doses_received.max(i64::from(*dose_number));
                })?;
            }
            Event::AppointmentBooked { appointment_id, beneficiary_id, session_id, centre_id, date, vaccine, dose_number, walk_in } => {
                self.appointments.replace(appointment_id.to_string(), Appointment {
                    beneficiary_id: beneficiary_id.to_string(),
                    session_id: session_id.to_string(),
                    centre_id: centre_id.to_string(),
                    date: date.to_string(),
                    vaccine: vaccine.clone(),
                    dose_number: i64::from(*dose_number),
                    walk_in: *walk_in,
                    status: Status::Booked.as_str().to_owned(),
                    locked: 0,
                    rejected_attempts: 0,
                    code_verified_position: None,
                    dose_position: None,
                    batch: None,
                    certificate_id: None,
                    certificate_revoked: 0,
                    booked_position: position,
                });
            }
            Event::AppointmentCancelled { appointment_id, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| row.status = Status::Cancelled.as_str().to_owned())?;
            }
            Event::CodeVerified { appointment_id, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| {
                    row.status = Status::Verified.as_str().to_owned();
                    row.code_verified_position = Some(position);
                })?;
            }
            Event::CodeRejected { appointment_id, attempt, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| row.rejected_attempts = i64::from(*attempt))?;
            }
            Event::AppointmentLocked { appointment_id, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| row.locked = 1)?;
            }
            Event::AppointmentUnlocked { appointment_id, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| {
                    row.locked = 0;
                    row.rejected_attempts = 0;
                })?;
            }
            Event::DoseAdministered { appointment_id, batch, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| {
                    row.status = Status::Administered.as_str().to_owned();
                    row.dose_position = Some(position);
                    row.batch = Some(batch.clone());
                })?;
            }
            Event::CertificateIssued { appointment_id, certificate_id, .. } => {
                self.update_appointment(tx, &appointment_id.to_string(), |row| {
                    row.certificate_id = Some(certificate_id.to_string());
                    row.certificate_revoked = 0;
                })?;
            }
            Event::CertificateRevoked { appointment_id, certificate_id, reason, .. } => {
                let certificate_id = certificate_id.to_string();
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO revoked_certificates (certificate_id, appointment_id, reason, revoked_at_ms, position)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![certificate_id, appointment_id.to_string(), enum_name(reason), recorded.recorded_at_ms, position])?;
                let key = appointment_id.to_string();
                let slot = self.appointments.get(&key, || load_appointment(tx, &key))?;
                if let Some(row) = slot.row.as_mut() {
                    if row.certificate_id.as_deref() == Some(certificate_id.as_str()) {
                        row.certificate_revoked = 1;
                        slot.dirty = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn update_appointment(&mut self, tx: &Transaction<'_>, key: &str, change: impl FnOnce(&mut Appointment)) -> rusqlite::Result<()> {
        self.appointments.update(key, || load_appointment(tx, key), change)
    }

    /// Writes every row the batch changed, once each.
    pub fn flush(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        self.sessions.flush(
            tx,
            "INSERT OR REPLACE INTO sessions (session_id, centre_id, district, date, vaccine, capacity, booked, min_age, cancelled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            "UPDATE sessions SET centre_id = ?2, district = ?3, date = ?4, vaccine = ?5, capacity = ?6, booked = ?7, min_age = ?8,
                 cancelled = ?9
             WHERE session_id = ?1",
            |statement, key, row| {
                statement.execute(params![key, row.centre_id, row.district, row.date, row.vaccine, row.capacity, row.booked, row.min_age, row.cancelled])
            },
        )?;
        self.beneficiaries.flush(
            tx,
            "INSERT OR REPLACE INTO beneficiaries (beneficiary_id, mobile_hash, name, year_of_birth, gender, photo_id_type,
                 photo_id_masked, walk_in, doses_received, registered_position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            "UPDATE beneficiaries SET mobile_hash = ?2, name = ?3, year_of_birth = ?4, gender = ?5, photo_id_type = ?6,
                 photo_id_masked = ?7, walk_in = ?8, doses_received = ?9, registered_position = ?10
             WHERE beneficiary_id = ?1",
            |statement, key, row| {
                statement.execute(params![
                    key,
                    row.mobile_hash,
                    row.name,
                    row.year_of_birth,
                    row.gender,
                    row.photo_id_type,
                    row.photo_id_masked,
                    row.walk_in,
                    row.doses_received,
                    row.registered_position
                ])
            },
        )?;
        self.appointments.flush(
            tx,
            "INSERT OR REPLACE INTO appointments (appointment_id, beneficiary_id, session_id, centre_id, date, vaccine, dose_number,
                 walk_in, status, locked, rejected_attempts, code_verified_position, dose_position, batch, certificate_id,
                 certificate_revoked, booked_position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            "UPDATE appointments SET beneficiary_id = ?2, session_id = ?3, centre_id = ?4, date = ?5, vaccine = ?6,
                 dose_number = ?7, walk_in = ?8, status = ?9, locked = ?10, rejected_attempts = ?11, code_verified_position = ?12,
                 dose_position = ?13, batch = ?14, certificate_id = ?15, certificate_revoked = ?16, booked_position = ?17
             WHERE appointment_id = ?1",
            |statement, key, row| {
                statement.execute(params![
                    key,
                    row.beneficiary_id,
                    row.session_id,
                    row.centre_id,
                    row.date,
                    row.vaccine,
                    row.dose_number,
                    row.walk_in,
                    row.status,
                    row.locked,
                    row.rejected_attempts,
                    row.code_verified_position,
                    row.dose_position,
                    row.batch,
                    row.certificate_id,
                    row.certificate_revoked,
                    row.booked_position
                ])
            },
        )
    }
}
