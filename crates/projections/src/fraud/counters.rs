//! Daily counters kept per centre and per verifier, and their columns in `centre_days` and
//! `verifier_days`.

use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use rusqlite::Row;
use serde::Serialize;

/// One counter column. The order of the variants is the order of [`COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Attempts,
    Verified,
    Rejected,
    RejectedWrongCode,
    RejectedWrongCentre,
    RejectedWrongDate,
    RejectedAppointmentCancelled,
    RejectedAlreadyUsed,
    RejectedLocked,
    Lockouts,
    Doses,
    WalkInDoses,
    DosesRejected,
    DoseRejectedCodeNotVerified,
    DoseRejectedLocked,
    DoseRejectedWrongCentre,
    DoseRejectedAlreadyAdministered,
    DoseRejectedAppointmentCancelled,
    DoseRejectedWrongVaccine,
    Bookings,
    WalkInBookings,
    Disputes,
}

/// Column names, indexed by `Counter as usize`; the CSV exports use them as headers.
pub const COLUMNS: [&str; 22] = [
    "attempts",
    "verified",
    "rejected",
    "rejected_wrong_code",
    "rejected_wrong_centre",
    "rejected_wrong_date",
    "rejected_appointment_cancelled",
    "rejected_already_used",
    "rejected_locked",
    "lockouts",
    "doses",
    "walk_in_doses",
    "doses_rejected",
    "dose_rejected_code_not_verified",
    "dose_rejected_locked",
    "dose_rejected_wrong_centre",
    "dose_rejected_already_administered",
    "dose_rejected_appointment_cancelled",
    "dose_rejected_wrong_vaccine",
    "bookings",
    "walk_in_bookings",
    "disputes",
];

impl Counter {
    /// Returns the column name.
    pub(crate) fn column(self) -> &'static str {
        COLUMNS[self as usize]
    }

    /// Returns the counter of a code rejection reason.
    pub(crate) fn for_code_rejection(reason: CodeRejectionReason) -> Self {
        match reason {
            CodeRejectionReason::WrongCode => Counter::RejectedWrongCode,
            CodeRejectionReason::WrongCentre => Counter::RejectedWrongCentre,
            CodeRejectionReason::WrongDate => Counter::RejectedWrongDate,
            CodeRejectionReason::AppointmentCancelled => Counter::RejectedAppointmentCancelled,
            CodeRejectionReason::AlreadyUsed => Counter::RejectedAlreadyUsed,
            CodeRejectionReason::Locked => Counter::RejectedLocked,
        }
    }

    /// Returns the counter of a dose rejection reason.
    pub(crate) fn for_dose_rejection(reason: DoseRejectionReason) -> Self {
        match reason {
            DoseRejectionReason::CodeNotVerified => Counter::DoseRejectedCodeNotVerified,
            DoseRejectionReason::Locked => Counter::DoseRejectedLocked,
            DoseRejectionReason::WrongCentre => Counter::DoseRejectedWrongCentre,
            DoseRejectionReason::AlreadyAdministered => Counter::DoseRejectedAlreadyAdministered,
            DoseRejectionReason::AppointmentCancelled => Counter::DoseRejectedAppointmentCancelled,
            DoseRejectionReason::WrongVaccine => Counter::DoseRejectedWrongVaccine,
        }
    }
}

/// Column definitions that replace the `COUNTERS` marker of the schema.
pub(crate) fn column_definitions() -> String {
    COLUMNS.iter().map(|name| format!("{name} INTEGER NOT NULL DEFAULT 0")).collect::<Vec<_>>().join(",\n    ")
}

/// Comma-separated column list, in [`COLUMNS`] order, for SELECT statements.
pub(crate) fn select_list(prefix: &str) -> String {
    COLUMNS.iter().map(|name| format!("{prefix}{name}")).collect::<Vec<_>>().join(", ")
}

/// Code rejections by reason, as counted on a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CodeRejections {
    pub wrong_code: u64,
    pub wrong_centre: u64,
    pub wrong_date: u64,
    pub appointment_cancelled: u64,
    pub already_used: u64,
    pub locked: u64,
}

/// Dose rejections by reason, as counted on a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DoseRejections {
    pub code_not_verified: u64,
    pub locked: u64,
    pub wrong_centre: u64,
    pub already_administered: u64,
    pub appointment_cancelled: u64,
    pub wrong_vaccine: u64,
}

/// A centre's or a verifier's counters for one day (India Standard Time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Security codes submitted (verified plus rejected).
    pub attempts: u64,
    /// Codes accepted.
    pub verified: u64,
    /// Codes rejected, whatever the reason.
    pub rejected: u64,
    /// Code rejections split by reason.
    pub rejected_by_reason: CodeRejections,
    /// Appointments locked by a rejection at this centre or by this verifier.
    pub lockouts: u64,
    /// Doses recorded.
    pub doses: u64,
    /// Doses recorded for walk-in appointments (registered on site).
    pub walk_in_doses: u64,
    /// Dose attempts rejected.
    pub doses_rejected: u64,
    /// Dose rejections split by reason.
    pub doses_rejected_by_reason: DoseRejections,
    /// Appointments booked (for a centre: in its sessions; for a verifier: walk-ins it booked).
    pub bookings: u64,
    /// Walk-in appointments booked.
    pub walk_in_bookings: u64,
    /// Disputes raised against appointments of this centre or doses of this verifier.
    pub disputes: u64,
}

impl Counters {
    /// Reads the counters from `row`, starting at column `first`, in [`COLUMNS`] order.
    pub(crate) fn from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Self> {
        let get = |counter: Counter| -> rusqlite::Result<u64> { row.get::<_, i64>(first + counter as usize).map(|v| v.max(0) as u64) };
        Ok(Self {
            attempts: get(Counter::Attempts)?,
            verified: get(Counter::Verified)?,
            rejected: get(Counter::Rejected)?,
            rejected_by_reason: CodeRejections {
                wrong_code: get(Counter::RejectedWrongCode)?,
                wrong_centre: get(Counter::RejectedWrongCentre)?,
                wrong_date: get(Counter::RejectedWrongDate)?,
                appointment_cancelled: get(Counter::RejectedAppointmentCancelled)?,
                already_used: get(Counter::RejectedAlreadyUsed)?,
                locked: get(Counter::RejectedLocked)?,
            },
            lockouts: get(Counter::Lockouts)?,
            doses: get(Counter::Doses)?,
            walk_in_doses: get(Counter::WalkInDoses)?,
            doses_rejected: get(Counter::DosesRejected)?,
            doses_rejected_by_reason: DoseRejections {
                code_not_verified: get(Counter::DoseRejectedCodeNotVerified)?,
                locked: get(Counter::DoseRejectedLocked)?,
                wrong_centre: get(Counter::DoseRejectedWrongCentre)?,
                already_administered: get(Counter::DoseRejectedAlreadyAdministered)?,
                appointment_cancelled: get(Counter::DoseRejectedAppointmentCancelled)?,
                wrong_vaccine: get(Counter::DoseRejectedWrongVaccine)?,
            },
            bookings: get(Counter::Bookings)?,
            walk_in_bookings: get(Counter::WalkInBookings)?,
            disputes: get(Counter::Disputes)?,
        })
    }

    /// Share of code submissions rejected, or `None` with no submission.
    pub fn rejection_rate(&self) -> Option<f64> {
        ratio(self.rejected, self.attempts)
    }

    /// Share of recorded doses that went to walk-ins, or `None` with no dose.
    pub fn walk_in_share(&self) -> Option<f64> {
        ratio(self.walk_in_doses, self.doses)
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_variants() {
        assert_eq!(Counter::Disputes.column(), "disputes");
        assert_eq!(Counter::RejectedLocked.column(), "rejected_locked");
        assert_eq!(Counter::DoseRejectedWrongVaccine.column(), "dose_rejected_wrong_vaccine");
        assert_eq!(Counter::for_code_rejection(CodeRejectionReason::WrongDate).column(), "rejected_wrong_date");
        assert_eq!(Counter::for_dose_rejection(DoseRejectionReason::CodeNotVerified).column(), "dose_rejected_code_not_verified");
    }
}
