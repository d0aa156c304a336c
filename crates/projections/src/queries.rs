//! Queries on the status projections, returning plain rows for the API.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use crate::{ProjectionError, Projections};

/// A revoked certificate, as listed for offline verifiers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RevocationRow {
    pub certificate_id: String,
    pub appointment_id: String,
    /// superseded_by_correction, fraud or error.
    pub reason: String,
    /// Time the revocation was recorded, milliseconds since the Unix epoch.
    pub revoked_at_ms: i64,
    /// Position of the `CertificateRevoked` event.
    pub position: u64,
}

/// A centre as registered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CentreRow {
    pub centre_id: String,
    pub name: String,
    pub district: String,
    pub state: String,
    pub pincode: String,
}

/// A session with its free seats.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionRow {
    pub session_id: String,
    pub centre_id: String,
    pub centre_name: String,
    pub district: String,
    pub date: String,
    pub vaccine: String,
    pub capacity: u32,
    pub booked: u32,
    pub available: u32,
    pub min_age: u8,
    pub cancelled: bool,
}

/// A beneficiary's status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeneficiaryRow {
    pub beneficiary_id: String,
    /// HMAC of the mobile number; the API uses it to check ownership and does not return it.
    #[serde(skip)]
    pub mobile_hash: String,
    pub name: String,
    pub year_of_birth: u16,
    pub gender: String,
    pub photo_id_type: String,
    pub photo_id_masked: String,
    pub walk_in: bool,
    pub doses_received: u8,
}

/// An appointment's status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppointmentRow {
    pub appointment_id: String,
    pub beneficiary_id: String,
    pub session_id: String,
    pub centre_id: String,
    pub date: String,
    pub vaccine: String,
    pub dose_number: u8,
    pub walk_in: bool,
    pub status: String,
    pub locked: bool,
    pub rejected_attempts: u32,
    pub code_verified_position: Option<u64>,
    pub dose_position: Option<u64>,
    pub batch: Option<String>,
    pub certificate_id: Option<String>,
    pub certificate_revoked: bool,
}

const SESSION_COLUMNS: &str = "s.session_id, s.centre_id, COALESCE(c.name, ''), s.district, s.date, s.vaccine,
     s.capacity, s.booked, s.min_age, s.cancelled";

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let capacity: u32 = row.get(6)?;
    let booked: u32 = row.get(7)?;
    Ok(SessionRow {
        session_id: row.get(0)?,
        centre_id: row.get(1)?,
        centre_name: row.get(2)?,
        district: row.get(3)?,
        date: row.get(4)?,
        vaccine: row.get(5)?,
        capacity,
        booked,
        available: capacity.saturating_sub(booked),
        min_age: row.get(8)?,
        cancelled: row.get(9)?,
    })
}

const BENEFICIARY_COLUMNS: &str = "beneficiary_id, mobile_hash, name, year_of_birth, gender, photo_id_type,
     photo_id_masked, walk_in, doses_received";

fn beneficiary_row(row: &Row<'_>) -> rusqlite::Result<BeneficiaryRow> {
    Ok(BeneficiaryRow {
        beneficiary_id: row.get(0)?,
        mobile_hash: row.get(1)?,
        name: row.get(2)?,
        year_of_birth: row.get(3)?,
        gender: row.get(4)?,
        photo_id_type: row.get(5)?,
        photo_id_masked: row.get(6)?,
        walk_in: row.get(7)?,
        doses_received: row.get(8)?,
    })
}

const APPOINTMENT_COLUMNS: &str = "appointment_id, beneficiary_id, session_id, centre_id, date, vaccine, dose_number,
     walk_in, status, locked, rejected_attempts, code_verified_position, dose_position, batch, certificate_id,
     certificate_revoked";

fn appointment_row(row: &Row<'_>) -> rusqlite::Result<AppointmentRow> {
    Ok(AppointmentRow {
        appointment_id: row.get(0)?,
        beneficiary_id: row.get(1)?,
        session_id: row.get(2)?,
        centre_id: row.get(3)?,
        date: row.get(4)?,
        vaccine: row.get(5)?,
        dose_number: row.get(6)?,
        walk_in: row.get(7)?,
        status: row.get(8)?,
        locked: row.get(9)?,
        rejected_attempts: row.get(10)?,
        code_verified_position: row.get(11)?,
        dose_position: row.get(12)?,
        batch: row.get(13)?,
        certificate_id: row.get(14)?,
        certificate_revoked: row.get(15)?,
    })
}

impl Projections {
    /// Returns a centre by id.
    pub fn centre(&self, centre_id: &str) -> Result<Option<CentreRow>, ProjectionError> {
        self.with_reader(|connection| {
            connection
                .query_row(
                    "SELECT centre_id, name, district, state, pincode FROM centres WHERE centre_id = ?1",
                    params![centre_id],
                    |row| {
                        Ok(CentreRow {
                            centre_id: row.get(0)?,
                            name: row.get(1)?,
                            district: row.get(2)?,
                            state: row.get(3)?,
                            pincode: row.get(4)?,
                        })
                    },
                )
                .optional()
        })
    }

    /// Returns the sessions of a district on a date (district compared without case), at most
    /// `limit`, ordered by centre name.
    pub fn search_sessions(&self, district: &str, date: &str, limit: usize) -> Result<Vec<SessionRow>, ProjectionError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN centres c ON c.centre_id = s.centre_id
             WHERE s.district = ?1 COLLATE NOCASE AND s.date = ?2 ORDER BY c.name, s.session_id LIMIT ?3"
        );
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params![district, date, limit as i64], session_row)?;
            rows.collect()
        })
    }

    /// Returns a session by id.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRow>, ProjectionError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN centres c ON c.centre_id = s.centre_id WHERE s.session_id = ?1"
        );
        self.with_reader(|connection| connection.prepare_cached(&sql)?.query_row( params![session_id], session_row).optional())
    }

    /// Returns a beneficiary by id.
    pub fn beneficiary(&self, beneficiary_id: &str) -> Result<Option<BeneficiaryRow>, ProjectionError> {
        let sql = format!("SELECT {BENEFICIARY_COLUMNS} FROM beneficiaries WHERE beneficiary_id = ?1");
        self.with_reader(|connection| connection.prepare_cached(&sql)?.query_row( params![beneficiary_id], beneficiary_row).optional())
    }

    /// Returns the beneficiaries registered under a mobile hash, oldest first.
    pub fn beneficiaries_by_mobile(&self, mobile_hash: &str) -> Result<Vec<BeneficiaryRow>, ProjectionError> {
        let sql = format!(
            "SELECT {BENEFICIARY_COLUMNS} FROM beneficiaries WHERE mobile_hash = ?1 ORDER BY registered_position"
        );
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params![mobile_hash], beneficiary_row)?;
            rows.collect()
        })
    }

    /// Returns an appointment by id.
    pub fn appointment(&self, appointment_id: &str) -> Result<Option<AppointmentRow>, ProjectionError> {
        let sql = format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = ?1");
        self.with_reader(|connection| connection.prepare_cached(&sql)?.query_row( params![appointment_id], appointment_row).optional())
    }

    /// Returns a beneficiary's appointments, oldest first.
    pub fn appointments_of(&self, beneficiary_id: &str) -> Result<Vec<AppointmentRow>, ProjectionError> {
        let sql = format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE beneficiary_id = ?1 ORDER BY booked_position"
        );
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params![beneficiary_id], appointment_row)?;
            rows.collect()
        })
    }

    /// Returns every session's (session id, booked) pair, for the overbooking check.
    pub fn session_bookings(&self) -> Result<Vec<(String, u32, u32)>, ProjectionError> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare("SELECT session_id, booked, capacity FROM sessions")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            rows.collect()
        })
    }

    /// Returns the revocation of a certificate, if it was revoked.
    pub fn revocation(&self, certificate_id: &str) -> Result<Option<RevocationRow>, ProjectionError> {
        self.with_reader(|connection| {
            connection
                .prepare_cached(
                    "SELECT certificate_id, appointment_id, reason, revoked_at_ms, position FROM revoked_certificates WHERE certificate_id = ?1",
                )?
                .query_row(
                    params![certificate_id],
                    revocation_row,
                )
                .optional()
        })
    }

    /// Returns revocations recorded after `after` (a position), oldest first, at most `limit`.
    pub fn revocations(&self, after: u64, limit: usize) -> Result<Vec<RevocationRow>, ProjectionError> {
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT certificate_id, appointment_id, reason, revoked_at_ms, position FROM revoked_certificates
                 WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = statement.query_map(params![after as i64, limit as i64], revocation_row)?;
            rows.collect()
        })
    }
}

fn revocation_row(row: &Row<'_>) -> rusqlite::Result<RevocationRow> {
    Ok(RevocationRow {
        certificate_id: row.get(0)?,
        appointment_id: row.get(1)?,
        reason: row.get(2)?,
        revoked_at_ms: row.get(3)?,
        position: row.get(4)?,
    })
}
