//! Events: the immutable facts of the ledger, versioned and encoded as CBOR.
//!
//! Every event names the stream it belongs to ([`Event::stream_id`]), so a command handler returns
//! a plain list and the caller groups it by stream. Payloads never hold a plain security code,
//! OTP, token or mobile number.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, DisputeId, SessionId};
use crate::rejection::{CodeRejectionReason, DoseRejectionReason};

/// First schema version of every event type. A type keeps it until its payload shape changes;
/// [`current_schema_version`] returns the version written today.
pub const INITIAL_SCHEMA_VERSION: u16 = 1;

/// Schema version of the `CodeRejected` payloads written today. Version 2 added `max_attempts`.
pub const CODE_REJECTED_SCHEMA_VERSION: u16 = 2;

/// Lock threshold that every build writing version-1 `CodeRejected` payloads used, so the
/// upcaster fills `max_attempts` with it. It stays 5 even if the live limit changes.
pub const CODE_REJECTED_V1_MAX_ATTEMPTS: u32 = 5;

/// Returns the schema version this build writes for an event type.
///
/// [`Event::decode`] reads every version from 1 up to this one, upcasting older payloads to the
/// current shape. An unknown type gets [`INITIAL_SCHEMA_VERSION`], and decoding it then fails.
pub fn current_schema_version(event_type: &str) -> u16 {
    match event_type {
        "CodeRejected" => CODE_REJECTED_SCHEMA_VERSION,
        _ => INITIAL_SCHEMA_VERSION,
    }
}

/// Gender as recorded on the photo ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    Other,
}

/// Photo-ID document types accepted at registration (CoWIN accepted these in 2021).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoIdType {
    Aadhaar,
    Pan,
    Passport,
    DrivingLicence,
    VoterId,
    DisabilityId,
    PensionPassbook,
}

/// Reason for cancelling an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    /// The citizen cancelled.
    ByCitizen,
    /// The session was cancelled by the centre.
    SessionCancelled,
    /// Replaced by a booking in another session.
    Rescheduled,
}

/// Reason for revoking a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    SupersededByCorrection,
    Fraud,
    Error,
}

/// Every event of the ledger. Variant names are the stored event type names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// An admin registered a vaccination centre.
    CentreRegistered {
        centre_id: CentreId,
        name: String,
        district: String,
        state: String,
        pincode: String,
    },
    /// An admin scheduled a session at a centre.
    SessionScheduled {
        session_id: SessionId,
        centre_id: CentreId,
        district: String,
        date: NaiveDate,
        vaccine: String,
        capacity: u32,
        min_age: u8,
    },
    /// An admin cancelled a session.
    SessionCancelled { session_id: SessionId, reason: String },
    /// A seat of the session was taken by an appointment (session stream).
    SeatReserved { session_id: SessionId, appointment_id: AppointmentId },
    /// A seat was given back when its appointment was cancelled (session stream).
    SeatReleased { session_id: SessionId, appointment_id: AppointmentId },
    /// A beneficiary was registered under a mobile number.
    BeneficiaryRegistered {
        beneficiary_id: BeneficiaryId,
        /// HMAC of the mobile number; the number itself is never stored in events.
        mobile_hash: String,
        name: String,
        year_of_birth: u16,
        gender: Gender,
        photo_id_type: PhotoIdType,
        /// ID number with all but the last four characters replaced by `X`.
        photo_id_masked: String,
        /// Registered on site by a verifier rather than online.
        walk_in: bool,
    },
    /// A beneficiary was linked to a mobile number (mobile stream; enforces at most 4).
    MobileBeneficiaryAdded { mobile_hash: String, beneficiary_id: BeneficiaryId },
    /// A beneficiary's name, year of birth or gender was corrected.
    BeneficiaryCorrected {
        beneficiary_id: BeneficiaryId,
        name: String,
        year_of_birth: u16,
        gender: Gender,
    },
    /// The beneficiary stream's record of an appointment being opened.
    BeneficiaryAppointmentOpened {
        beneficiary_id: BeneficiaryId,
        appointment_id: AppointmentId,
        dose_number: u8,
    },
    /// The beneficiary stream's record of an open appointment being closed without a dose.
    BeneficiaryAppointmentClosed {
        beneficiary_id: BeneficiaryId,
        appointment_id: AppointmentId,
        dose_number: u8,
    },
    /// The beneficiary stream's record of a dose, needed for the dose-interval rule.
    BeneficiaryDoseRecorded {
        beneficiary_id: BeneficiaryId,
        appointment_id: AppointmentId,
        dose_number: u8,
        vaccine: String,
        date: NaiveDate,
    },
    /// An appointment was booked (appointment stream).
    AppointmentBooked {
        appointment_id: AppointmentId,
        beneficiary_id: BeneficiaryId,
        session_id: SessionId,
        centre_id: CentreId,
        date: NaiveDate,
        vaccine: String,
        dose_number: u8,
        walk_in: bool,
    },
    /// An appointment was cancelled.
    AppointmentCancelled { appointment_id: AppointmentId, reason: CancellationReason },
    /// A security code was issued; only its keyed hash is stored.
    SecurityCodeIssued {
        appointment_id: AppointmentId,
        /// Hex HMAC-SHA-256 of appointment id and code under the server key.
        code_hmac: String,
        /// Id of the server key, so the key can rotate.
        key_id: String,
    },
    /// A supervisor issued a new code, replacing the earlier one.
    SecurityCodeReissued {
        appointment_id: AppointmentId,
        code_hmac: String,
        key_id: String,
        reason: String,
    },
    /// The beneficiary's code was accepted at the centre.
    CodeVerified {
        appointment_id: AppointmentId,
        centre_id: CentreId,
        /// Token id of the verifier who submitted the code.
        verifier_id: String,
    },
    /// A submitted code was rejected.
    CodeRejected {
        appointment_id: AppointmentId,
        /// Centre of the verifier who submitted it (may differ from the booked one).
        centre_id: CentreId,
        verifier_id: String,
        reason: CodeRejectionReason,
        /// Rejected attempts counted so far, this one included.
        attempt: u32,
        /// Rejected attempts that lock the appointment, as configured when this code was
        /// rejected, so an investigator can tell how close `attempt` was to the lock. Added in
        /// schema version 2. Version-1 payloads are upcast with
        /// [`CODE_REJECTED_V1_MAX_ATTEMPTS`].
        max_attempts: u32,
    },
    /// Too many rejected attempts locked the appointment.
    AppointmentLocked { appointment_id: AppointmentId, rejected_attempts: u32 },
    /// A supervisor unlocked the appointment.
    AppointmentUnlocked { appointment_id: AppointmentId, supervisor_id: String, reason: String },
    /// A dose was given after a verified code.
    DoseAdministered {
        appointment_id: AppointmentId,
        beneficiary_id: BeneficiaryId,
        centre_id: CentreId,
        vaccine: String,
        batch: String,
        dose_number: u8,
        vaccinator_id: String,
        administered_at: DateTime<Utc>,
    },
    /// A dose was pushed but not recorded.
    DoseAdministrationRejected {
        appointment_id: AppointmentId,
        centre_id: CentreId,
        vaccinator_id: String,
        reason: DoseRejectionReason,
    },
    /// A signed certificate was issued.
    CertificateIssued {
        certificate_id: CertificateId,
        appointment_id: AppointmentId,
        beneficiary_id: BeneficiaryId,
        /// Id of the issuer key that signed it.
        key_id: String,
        /// Hex SHA-256 of the COSE_Sign1 bytes.
        cose_sha256: String,
        /// Positions of the evidence the signer checked.
        code_verified_position: u64,
        dose_position: u64,
    },
    /// A certificate was revoked.
    CertificateRevoked {
        certificate_id: CertificateId,
        appointment_id: AppointmentId,
        reason: RevocationReason,
        note: String,
    },
    /// A citizen disputed an appointment's record.
    DisputeRaised {
        dispute_id: DisputeId,
        appointment_id: AppointmentId,
        beneficiary_id: BeneficiaryId,
        kind: String,
        description: String,
    },
    /// An investigator resolved a dispute.
    DisputeResolved {
        dispute_id: DisputeId,
        appointment_id: AppointmentId,
        finding: String,
        investigator_id: String,
    },
}

/// An event payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid CBOR for any event.
    #[error("event payload is not valid CBOR for {event_type} v{schema_version}: {cause}")]
    Malformed { event_type: String, schema_version: u16, cause: String },
    /// The payload decodes to another type than the stored type column names.
    #[error("stored type {stored} does not match payload type {decoded}")]
    TypeMismatch { stored: String, decoded: String },
    /// The schema version is newer than this build understands.
    #[error("unsupported schema version {schema_version} for {event_type}")]
    UnsupportedVersion { event_type: String, schema_version: u16 },
}

impl Event {
    /// Returns the event type name stored beside the payload.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::CentreRegistered { .. } => "CentreRegistered",
            Event::SessionScheduled { .. } => "SessionScheduled",
            Event::SessionCancelled { .. } => "SessionCancelled",
            Event::SeatReserved { .. } => "SeatReserved",
            Event::SeatReleased { .. } => "SeatReleased",
            Event::BeneficiaryRegistered { .. } => "BeneficiaryRegistered",
            Event::MobileBeneficiaryAdded { .. } => "MobileBeneficiaryAdded",
            Event::BeneficiaryCorrected { .. } => "BeneficiaryCorrected",
            Event::BeneficiaryAppointmentOpened { .. } => "BeneficiaryAppointmentOpened",
            Event::BeneficiaryAppointmentClosed { .. } => "BeneficiaryAppointmentClosed",
            Event::BeneficiaryDoseRecorded { .. } => "BeneficiaryDoseRecorded",
            Event::AppointmentBooked { .. } => "AppointmentBooked",
            Event::AppointmentCancelled { .. } => "AppointmentCancelled",
            Event::SecurityCodeIssued { .. } => "SecurityCodeIssued",
            Event::SecurityCodeReissued { .. } => "SecurityCodeReissued",
            Event::CodeVerified { .. } => "CodeVerified",
            Event::CodeRejected { .. } => "CodeRejected",
            Event::AppointmentLocked { .. } => "AppointmentLocked",
            Event::AppointmentUnlocked { .. } => "AppointmentUnlocked",
            Event::DoseAdministered { .. } => "DoseAdministered",
            Event::DoseAdministrationRejected { .. } => "DoseAdministrationRejected",
            Event::CertificateIssued { .. } => "CertificateIssued",
            Event::CertificateRevoked { .. } => "CertificateRevoked",
            Event::DisputeRaised { .. } => "DisputeRaised",
            Event::DisputeResolved { .. } => "DisputeResolved",
        }
    }

    /// Returns the id of the stream this event is appended to.
    pub fn stream_id(&self) -> String {
        match self {
            Event::CentreRegistered { centre_id, .. } => centre_id.stream_id(),
            Event::SessionScheduled { session_id, .. }
            | Event::SessionCancelled { session_id, .. }
            | Event::SeatReserved { session_id, .. }
            | Event::SeatReleased { session_id, .. } => session_id.stream_id(),
            Event::BeneficiaryRegistered { beneficiary_id, .. }
            | Event::BeneficiaryCorrected { beneficiary_id, .. }
            | Event::BeneficiaryAppointmentOpened { beneficiary_id, .. }
            | Event::BeneficiaryAppointmentClosed { beneficiary_id, .. }
            | Event::BeneficiaryDoseRecorded { beneficiary_id, .. } => beneficiary_id.stream_id(),
            Event::MobileBeneficiaryAdded { mobile_hash, .. } => mobile_stream_id(mobile_hash),
            Event::AppointmentBooked { appointment_id, .. }
            | Event::AppointmentCancelled { appointment_id, .. }
            | Event::SecurityCodeIssued { appointment_id, .. }
            | Event::SecurityCodeReissued { appointment_id, .. }
            | Event::CodeVerified { appointment_id, .. }
            | Event::CodeRejected { appointment_id, .. }
            | Event::AppointmentLocked { appointment_id, .. }
            | Event::AppointmentUnlocked { appointment_id, .. }
            | Event::DoseAdministered { appointment_id, .. }
            | Event::DoseAdministrationRejected { appointment_id, .. }
            | Event::CertificateIssued { appointment_id, .. }
            | Event::CertificateRevoked { appointment_id, .. }
            | Event::DisputeRaised { appointment_id, .. }
            | Event::DisputeResolved { appointment_id, .. } => appointment_id.stream_id(),
        }
    }

    /// Returns the schema version this build writes for the event.
    pub fn schema_version(&self) -> u16 {
        current_schema_version(self.event_type())
    }

    /// Encodes the event as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128);
        ciborium::into_writer(self, &mut bytes).expect("writing CBOR to a Vec cannot fail");
        bytes
    }

    /// Decodes a stored payload, checking it against the stored type and version.
    ///
    /// A payload of an older schema version is upcast to the current shape first, one version
    /// at a time, so callers only ever see the current variants.
    pub fn decode(event_type: &str, schema_version: u16, payload: &[u8]) -> Result<Self, DecodeError> {
        let current = current_schema_version(event_type);
        if schema_version == 0 || schema_version > current {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        let malformed = |cause: String| DecodeError::Malformed {
            event_type: event_type.to_owned(),
            schema_version,
            cause,
        };

        let event: Event = if schema_version == current {
            ciborium::from_reader(payload).map_err(|err| malformed(err.to_string()))?
        } else {
            let mut value: ciborium::Value =
                ciborium::from_reader(payload).map_err(|err| malformed(err.to_string()))?;
            for from_version in schema_version..current {
                upcast(event_type, from_version, &mut value).map_err(&malformed)?;
            }
            value.deserialized().map_err(|err| malformed(err.to_string()))?
        };

        if event.event_type() != event_type {
            return Err(DecodeError::TypeMismatch {
                stored: event_type.to_owned(),
                decoded: event.event_type().to_owned(),
            });
        }
        Ok(event)
    }
}

/// Rewrites a payload of `event_type` from schema version `from_version` to the next version.
///
/// The payload is the tagged form that [`Event::encode`] writes: a map with `type` and `data`.
/// Returns a message naming what is missing when the payload does not have the old shape.
fn upcast(event_type: &str, from_version: u16, payload: &mut ciborium::Value) -> Result<(), String> {
    match (event_type, from_version) {
        ("CodeRejected", 1) => {
            let data = payload_data(payload)?;
            if data.iter().any(|(key, _)| key.as_text() == Some("max_attempts")) {
                return Err("a version-1 CodeRejected payload must not contain max_attempts".to_owned());
            }
            data.push((
                ciborium::Value::Text("max_attempts".to_owned()),
                ciborium::Value::Integer(CODE_REJECTED_V1_MAX_ATTEMPTS.into()),
            ));
            Ok(())
        }
        _ => Err(format!("no upcaster from schema version {from_version} of {event_type}")),
    }
}

/// Returns the entries of the `data` map inside a tagged event payload.
fn payload_data(payload: &mut ciborium::Value) -> Result<&mut Vec<(ciborium::Value, ciborium::Value)>, String> {
    let entries = payload.as_map_mut().ok_or("the payload is not a CBOR map")?;
    let data = entries
        .iter_mut()
        .find(|(key, _)| key.as_text() == Some("data"))
        .map(|(_, value)| value)
        .ok_or("the payload has no data entry")?;
    data.as_map_mut().ok_or_else(|| "the payload's data entry is not a CBOR map".to_owned())
}

/// Returns the stream id for a mobile number's beneficiaries.
pub fn mobile_stream_id(mobile_hash: &str) -> String {
    format!("mobile-{mobile_hash}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn sample() -> Event {
        Event::AppointmentBooked {
            appointment_id: AppointmentId::new(Uuid::new_v4()),
            beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
            session_id: SessionId::new(Uuid::new_v4()),
            centre_id: CentreId::new(Uuid::new_v4()),
            date: NaiveDate::from_ymd_opt(2021, 5, 10).unwrap(),
            vaccine: "COVAXIN".into(),
            dose_number: 1,
            walk_in: false,
        }
    }

    #[test]
    fn event_cbor_round_trip() {
        let event = sample();
        let decoded = Event::decode(event.event_type(), 1, &event.encode()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn decode_rejects_type_mismatch() {
        let err = Event::decode("CodeVerified", 1, &sample().encode()).unwrap_err();
        assert!(matches!(err, DecodeError::TypeMismatch { .. }), "{err}");
    }

    #[test]
    fn decode_rejects_future_version() {
        let err = Event::decode("AppointmentBooked", 9, &sample().encode()).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion { .. }), "{err}");
    }

    #[test]
    fn decode_rejects_garbage_without_panic() {
        for bytes in [&b""[..], b"\xff\xff", b"\xa1\x64type", &sample().encode()[..10]] {
            assert!(Event::decode("AppointmentBooked", 1, bytes).is_err());
        }
    }

    /// `CodeRejected` in its version-1 shape, before `max_attempts` existed.
    #[derive(Serialize)]
    #[serde(tag = "type", content = "data")]
    enum EventV1 {
        CodeRejected {
            appointment_id: AppointmentId,
            centre_id: CentreId,
            verifier_id: String,
            reason: CodeRejectionReason,
            attempt: u32,
        },
    }

    fn code_rejected_v1_payload(appointment_id: AppointmentId, centre_id: CentreId) -> Vec<u8> {
        let old = EventV1::CodeRejected {
            appointment_id,
            centre_id,
            verifier_id: "tok_verifier".into(),
            reason: CodeRejectionReason::WrongCode,
            attempt: 3,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&old, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn upcast_code_rejected_v1() {
        let appointment_id = AppointmentId::new(Uuid::new_v4());
        let centre_id = CentreId::new(Uuid::new_v4());
        let payload = code_rejected_v1_payload(appointment_id, centre_id);

        let event = Event::decode("CodeRejected", 1, &payload).unwrap();

        let expected = Event::CodeRejected {
            appointment_id,
            centre_id,
            verifier_id: "tok_verifier".into(),
            reason: CodeRejectionReason::WrongCode,
            attempt: 3,
            max_attempts: CODE_REJECTED_V1_MAX_ATTEMPTS,
        };
        assert_eq!(event, expected);
    }

    #[test]
    fn code_rejected_writes_v2() {
        let event = Event::CodeRejected {
            appointment_id: AppointmentId::new(Uuid::new_v4()),
            centre_id: CentreId::new(Uuid::new_v4()),
            verifier_id: "tok_verifier".into(),
            reason: CodeRejectionReason::WrongCentre,
            attempt: 1,
            max_attempts: 7,
        };
        assert_eq!(event.schema_version(), 2);
        assert_eq!(sample().schema_version(), INITIAL_SCHEMA_VERSION);

        let decoded = Event::decode("CodeRejected", 2, &event.encode()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn v2_without_new_field_rejected() {
        let payload = code_rejected_v1_payload(AppointmentId::new(Uuid::new_v4()), CentreId::new(Uuid::new_v4()));
        let err = Event::decode("CodeRejected", 2, &payload).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { schema_version: 2, .. }), "{err}");
    }

    #[test]
    fn v1_with_new_field_rejected() {
        let event = Event::CodeRejected {
            appointment_id: AppointmentId::new(Uuid::new_v4()),
            centre_id: CentreId::new(Uuid::new_v4()),
            verifier_id: "tok_verifier".into(),
            reason: CodeRejectionReason::WrongCode,
            attempt: 1,
            max_attempts: 5,
        };
        let err = Event::decode("CodeRejected", 1, &event.encode()).unwrap_err();
        assert!(err.to_string().contains("must not contain max_attempts"), "{err}");
    }

    #[test]
    fn upcast_rejects_garbage_without_panic() {
        for bytes in [&b""[..], b"\xff", b"\x01", b"\xa1\x64type\x01", b"\xa1\x64data\x01"] {
            assert!(Event::decode("CodeRejected", 1, bytes).is_err());
        }
    }

    #[test]
    fn code_rejected_v3_unsupported() {
        let payload = code_rejected_v1_payload(AppointmentId::new(Uuid::new_v4()), CentreId::new(Uuid::new_v4()));
        let err = Event::decode("CodeRejected", 3, &payload).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion { schema_version: 3, .. }), "{err}");
    }

    #[test]
    fn appointment_events_share_stream() {
        let event = sample();
        let Event::AppointmentBooked { appointment_id, .. } = &event else { unreachable!() };
        assert_eq!(event.stream_id(), appointment_id.stream_id());
    }
}
