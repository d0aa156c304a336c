//! Typed rejections: a command that breaks a rule returns one of these, never a panic.

use serde::{Deserialize, Serialize};

/// Reason for rejecting a security code, stored in `CodeRejected` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeRejectionReason {
    /// The digits do not match the code issued for the appointment.
    WrongCode,
    /// Submitted at a centre other than the booked one.
    WrongCentre,
    /// Submitted on a day other than the session date.
    WrongDate,
    /// The appointment was cancelled.
    AppointmentCancelled,
    /// The code was already verified for this appointment.
    AlreadyUsed,
    /// The appointment is locked after too many rejected attempts.
    Locked,
}

impl CodeRejectionReason {
    /// Returns the snake_case name used in events, JSON and CSV.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::WrongCode => "wrong_code",
            Self::WrongCentre => "wrong_centre",
            Self::WrongDate => "wrong_date",
            Self::AppointmentCancelled => "appointment_cancelled",
            Self::AlreadyUsed => "already_used",
            Self::Locked => "locked",
        }
    }
}

/// Reason for not recording a dose, stored in `DoseAdministrationRejected` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoseRejectionReason {
    /// No `CodeVerified` is recorded for the appointment.
    CodeNotVerified,
    /// The appointment is locked.
    Locked,
    /// The vaccinator's centre is not the booked centre.
    WrongCentre,
    /// A dose is already recorded for the appointment.
    AlreadyAdministered,
    /// The appointment was cancelled.
    AppointmentCancelled,
    /// The vaccine given is not the session's vaccine.
    WrongVaccine,
}

impl DoseRejectionReason {
    /// Returns the snake_case name used in events, JSON and CSV.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CodeNotVerified => "code_not_verified",
            Self::Locked => "locked",
            Self::WrongCentre => "wrong_centre",
            Self::AlreadyAdministered => "already_administered",
            Self::AppointmentCancelled => "appointment_cancelled",
            Self::WrongVaccine => "wrong_vaccine",
        }
    }
}

/// A command broke a domain rule or carried an invalid value.
///
/// These are user errors: the API maps them to 4xx problem documents. Technical failures
/// (store, I/O) are separate types in the crates that do I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A field value is malformed or out of range.
    #[error("{message}")]
    Invalid {
        /// Request field that failed.
        field: &'static str,
        /// Explanation of the problem and an example of a valid value.
        message: String,
    },
    /// The entity the command addresses does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// Entity kind, such as `session`.
        entity: &'static str,
        /// Id as given.
        id: String,
    },
    /// The entity already exists.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// Entity kind.
        entity: &'static str,
        /// Id as given.
        id: String,
    },
    /// A rule of the domain forbids the command in the current state.
    #[error("{message}")]
    Conflict {
        /// Field the rule is about.
        field: &'static str,
        /// Stable machine-readable code, such as `session_full`.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The security code was rejected.
    #[error("security code rejected: {}", reason.as_str())]
    CodeRejected {
        /// Why.
        reason: CodeRejectionReason,
        /// Rejected attempts since the code was issued or the appointment unlocked.
        attempts: u32,
        /// Whether this rejection locked the appointment, or it was locked already.
        locked: bool,
    },
    /// The dose was not recorded.
    #[error("dose not recorded: {}", reason.as_str())]
    DoseRejected {
        /// Why.
        reason: DoseRejectionReason,
    },
}

impl Rejection {
    /// Returns the request field the rejection is about, for the problem document.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Rejection::Invalid { field, .. } | Rejection::Conflict { field, .. } => Some(field),
            Rejection::NotFound { entity, .. } | Rejection::AlreadyExists { entity, .. } => {
                Some(match *entity {
                    "centre" => "centre_id",
                    "session" => "session_id",
                    "beneficiary" => "beneficiary_id",
                    "appointment" => "appointment_id",
                    "certificate" => "certificate_id",
                    other => other,
                })
            }
            Rejection::CodeRejected { .. } => Some("code"),
            Rejection::DoseRejected { .. } => Some("appointment_id"),
        }
    }

    /// Shorthand for an [`Rejection::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Rejection::Invalid { field, message: message.into() }
    }

    /// Shorthand for a [`Rejection::Conflict`].
    pub fn conflict(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Rejection::Conflict { field, code, message: message.into() }
    }
}
