//! The issuing gate: a certificate is signed only when the event log itself shows a booked
//! appointment, a verified security code and a dose recorded after it.
//!
//! The gate never takes the caller's word for any of this. It reads the appointment, beneficiary
//! and centre streams, decodes every event, and rejects the request with a typed reason when the
//! evidence is missing. It appends nothing. The caller appends the returned `CertificateIssued`
//! event with `ExpectedRevision::Exact(appointment_revision)`, so a concurrent change to the
//! appointment stream makes that append fail, and the caller retries the whole call.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use domain::events::{DecodeError, Event, Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId};
use domain::vaccine::VaccineCatalogue;
use sha2::{Digest, Sha256};
use store::{EventStore, RecordedEvent, StoreError};

use crate::certificate::{sign_certificate, CertificateClaims, CertificateError, DEFAULT_ISSUER};
use crate::keys::{KeyError, KeyId, KeyRing};
use crate::qr::encode_qr;
use crate::record::VaccinationRecord;

/// A signed certificate and the event that records it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedCertificate {
    /// Tagged COSE_Sign1 bytes; store them in the [`crate::vault::CertificateVault`], because the
    /// event contains only their hash.
    pub cose: Vec<u8>,
    /// QR text of the same bytes.
    pub qr_text: String,
    /// The record the certificate states.
    pub record: VaccinationRecord,
    /// `CertificateIssued` event for the appointment stream.
    pub event: Event,
    /// Appointment the certificate is for.
    pub appointment_id: AppointmentId,
    /// Revision of the appointment stream that the gate read; append `event` expecting exactly it.
    pub appointment_revision: u64,
    /// Key that signed the certificate.
    pub key_id: KeyId,
    /// Issued-at time written in the certificate, in whole seconds.
    pub issued_at: DateTime<Utc>,
}

/// Reason the event log does not allow a certificate for the appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotEligibleReason {
    /// The appointment stream has no `AppointmentBooked`.
    NotBooked,
    /// No `CodeVerified` precedes the dose, or none is recorded at all.
    CodeNotVerified,
    /// The code was verified but no `DoseAdministered` is recorded.
    NoDose,
    /// A certificate that is not revoked already exists for the appointment.
    AlreadyIssued {
        /// Id of that certificate.
        certificate_id: CertificateId,
    },
    /// The verification or dose names another beneficiary, centre, vaccine or dose number than
    /// the booking.
    EvidenceMismatch {
        /// Fields that differ, with both values.
        detail: String,
    },
}

impl NotEligibleReason {
    /// Returns the short machine-readable name, such as `code_not_verified`.
    pub fn code(&self) -> &'static str {
        match self {
            NotEligibleReason::NotBooked => "not_booked",
            NotEligibleReason::CodeNotVerified => "code_not_verified",
            NotEligibleReason::NoDose => "no_dose",
            NotEligibleReason::AlreadyIssued { .. } => "already_issued",
            NotEligibleReason::EvidenceMismatch { .. } => "evidence_mismatch",
        }
    }
}

impl fmt::Display for NotEligibleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotEligibleReason::NotBooked => {
                f.write_str("no booking is recorded for the appointment")
            }
            NotEligibleReason::CodeNotVerified => {
                f.write_str("no verified security code is recorded before the dose")
            }
            NotEligibleReason::NoDose => f.write_str("no dose is recorded for the appointment"),
            NotEligibleReason::AlreadyIssued { certificate_id } => {
                write!(
                    f,
                    "certificate {certificate_id} was already issued and is not revoked"
                )
            }
            NotEligibleReason::EvidenceMismatch { detail } => {
                write!(f, "the recorded evidence disagrees: {detail}")
            }
        }
    }
}

/// Failures of [`issue_certificate`].
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The event log does not allow a certificate; the caller reports the reason to the user.
    #[error("appointment {appointment_id} is not eligible for a certificate: {reason}")]
    NotEligible {
        /// Appointment requested.
        appointment_id: AppointmentId,
        /// Evidence missing from the log.
        reason: NotEligibleReason,
    },
    /// Reading a stream failed.
    #[error("reading stream {stream_id} failed: {source}")]
    Store {
        /// Stream being read.
        stream_id: String,
        /// Store error.
        #[source]
        source: StoreError,
    },
    /// A stored event could not be decoded.
    #[error("event at position {position} of stream {stream_id} could not be decoded: {source}")]
    Decode {
        /// Stream being read.
        stream_id: String,
        /// Global position of the event.
        position: u64,
        /// Decoder error.
        #[source]
        source: DecodeError,
    },
    /// The log breaks an invariant that the domain enforces, such as a missing registration.
    #[error("event log is inconsistent in stream {stream_id}: {detail}")]
    InconsistentLog {
        /// Stream involved.
        stream_id: String,
        /// Description of the broken invariant.
        detail: String,
    },
    /// The dose names a vaccine that the catalogue does not list.
    #[error("vaccine {vaccine:?} of the recorded dose is not in the catalogue")]
    UnknownVaccine {
        /// Vaccine name from the dose event.
        vaccine: String,
    },
    /// The issuer key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The certificate could not be encoded.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// Issues a certificate for an appointment after checking the event log.
///
/// The appointment stream must contain an `AppointmentBooked`, a `CodeVerified`, then a
/// `DoseAdministered` at a later position, all naming the booked beneficiary and centre, and the
/// dose must match the booked vaccine and dose number. It must
/// not contain a `CertificateIssued` that no `CertificateRevoked` has withdrawn.
///
/// The record takes the beneficiary's registration with corrections applied, the centre's
/// registration, and the catalogue's manufacturer and dose count.
pub async fn issue_certificate(
    store: &dyn EventStore,
    keys: &KeyRing,
    catalogue: &VaccineCatalogue,
    appointment_id: AppointmentId,
    certificate_id: CertificateId,
    now: DateTime<Utc>,
) -> Result<IssuedCertificate, SignerError> {
    let appointment = match read_appointment(store, appointment_id).await? {
        Ok(evidence) => evidence,
        Err(reason) => {
            tracing::info!(
                appointment_id = %appointment_id,
                reason = reason.code(),
                detail = %reason,
                "certificate rejected: appointment not eligible",
            );
            return Err(SignerError::NotEligible {
                appointment_id,
                reason,
            });
        }
    };

    let beneficiary = read_beneficiary(store, appointment.booked.beneficiary_id).await?;
    let centre = read_centre(store, appointment.booked.centre_id).await?;

    let vaccine =
        catalogue
            .find(&appointment.dose.vaccine)
            .map_err(|_| SignerError::UnknownVaccine {
                vaccine: appointment.dose.vaccine.clone(),
            })?;

    let record = VaccinationRecord {
        beneficiary_name: beneficiary.name,
        year_of_birth: beneficiary.year_of_birth,
        gender: beneficiary.gender,
        photo_id_type: beneficiary.photo_id_type,
        photo_id_masked: beneficiary.photo_id_masked,
        beneficiary_id: appointment.booked.beneficiary_id,
        vaccine: vaccine.name.clone(),
        manufacturer: vaccine.manufacturer.clone(),
        dose_number: appointment.dose.dose_number,
        total_doses: vaccine.total_doses,
        vaccination_date: appointment.booked.date,
        centre_name: centre.name,
        district: centre.district,
        state: centre.state,
        vaccinator_id: appointment.dose.vaccinator_id,
        batch: appointment.dose.batch,
        certificate_id,
        code_verified_position: appointment.code_verified_position,
        dose_position: appointment.dose_position,
    };

    let key = keys.active_key()?;
    let issued_at = now.trunc_subsecs(0);
    let claims = CertificateClaims {
        issuer: DEFAULT_ISSUER.to_owned(),
        issued_at,
        certificate_id,
        record: record.clone(),
    };
    let cose = sign_certificate(&key, &claims)?;
    let qr_text = encode_qr(&cose);

    let event = Event::CertificateIssued {
        certificate_id,
        appointment_id,
        beneficiary_id: record.beneficiary_id,
        key_id: key.key_id().to_hex(),
        cose_sha256: hex::encode(Sha256::digest(&cose)),
        code_verified_position: record.code_verified_position,
        dose_position: record.dose_position,
    };

    tracing::info!(
        appointment_id = %appointment_id,
        certificate_id = %certificate_id,
        key_id = %key.key_id(),
        code_verified_position = record.code_verified_position,
        dose_position = record.dose_position,
        "signed certificate",
    );

    Ok(IssuedCertificate {
        cose,
        qr_text,
        record,
        event,
        appointment_id,
        appointment_revision: appointment.revision,
        key_id: key.key_id(),
        issued_at,
    })
}

/// Fields of the `AppointmentBooked` event that the certificate needs.
struct Booking {
    /// Booked beneficiary.
    beneficiary_id: BeneficiaryId,
    /// Booked centre.
    centre_id: CentreId,
    /// Session date, printed as the vaccination date.
    date: NaiveDate,
    /// Vaccine of the session.
    vaccine: String,
    /// Dose number booked.
    dose_number: u8,
}

/// Fields of the `DoseAdministered` event that the certificate needs.
struct Dose {
    /// Vaccine given.
    vaccine: String,
    /// Batch number.
    batch: String,
    /// Dose number.
    dose_number: u8,
    /// Vaccinator token id.
    vaccinator_id: String,
}

/// Evidence read from the appointment stream.
struct AppointmentEvidence {
    /// The booking.
    booked: Booking,
    /// The dose.
    dose: Dose,
    /// Position of the last `CodeVerified` before the dose.
    code_verified_position: u64,
    /// Position of the dose.
    dose_position: u64,
    /// Revision of the last event in the stream.
    revision: u64,
}

/// Reads the appointment stream and checks the evidence. The outer error is a read or decode
/// failure, and the inner one is the reason the appointment is not eligible.
async fn read_appointment(
    store: &dyn EventStore,
    appointment_id: AppointmentId,
) -> Result<Result<AppointmentEvidence, NotEligibleReason>, SignerError> {
    let stream_id = appointment_id.stream_id();
    let recorded = read_stream(store, &stream_id).await?;

    let mut booked: Option<Booking> = None;
    let mut last_verified: Option<(u64, CentreId)> = None;
    let mut dose: Option<(Dose, u64, BeneficiaryId, CentreId)> = None;
    let mut verified_before_dose: Option<(u64, CentreId)> = None;
    let mut issued: Vec<CertificateId> = Vec::new();
    let mut revoked: HashSet<CertificateId> = HashSet::new();

    for (record, event) in decode_all(&stream_id, &recorded)? {
        if event.stream_id() != stream_id {
            return Err(inconsistent(
                &stream_id,
                format!(
                    "{} at position {} belongs to stream {}",
                    event.event_type(),
                    record.position,
                    event.stream_id()
                ),
            ));
        }

        match event {
            Event::AppointmentBooked {
                beneficiary_id,
                centre_id,
                date,
                vaccine,
                dose_number,
                ..
            } => {
                if booked.is_some() {
                    return Err(inconsistent(
                        &stream_id,
                        format!("second AppointmentBooked at position {}", record.position),
                    ));
                }
                booked = Some(Booking {
                    beneficiary_id,
                    centre_id,
                    date,
                    vaccine,
                    dose_number,
                });
            }
            Event::CodeVerified { centre_id, .. } if booked.is_some() && dose.is_none() => {
                last_verified = Some((record.position, centre_id));
            }
            Event::DoseAdministered {
                beneficiary_id,
                centre_id,
                vaccine,
                batch,
                dose_number,
                vaccinator_id,
                ..
            } => {
                if dose.is_some() {
                    return Err(inconsistent(
                        &stream_id,
                        format!("second DoseAdministered at position {}", record.position),
                    ));
                }
                verified_before_dose = last_verified;
                let fields = Dose {
                    vaccine,
                    batch,
                    dose_number,
                    vaccinator_id,
                };
                dose = Some((fields, record.position, beneficiary_id, centre_id));
            }
            Event::CertificateIssued { certificate_id, .. } => issued.push(certificate_id),
            Event::CertificateRevoked { certificate_id, .. } => {
                revoked.insert(certificate_id);
            }
            _ => {}
        }
    }

    let Some(booked) = booked else {
        return Ok(Err(NotEligibleReason::NotBooked));
    };
    let Some((dose, dose_position, dose_beneficiary, dose_centre)) = dose else {
        let reason = match last_verified {
            Some(_) => NotEligibleReason::NoDose,
            None => NotEligibleReason::CodeNotVerified,
        };
        return Ok(Err(reason));
    };
    let Some((code_verified_position, verified_centre)) = verified_before_dose else {
        return Ok(Err(NotEligibleReason::CodeNotVerified));
    };

    let mut mismatches = Vec::new();
    if verified_centre != booked.centre_id {
        mismatches.push(format!(
            "code verified at centre {verified_centre}, booked at {}",
            booked.centre_id
        ));
    }
    if dose_centre != booked.centre_id {
        mismatches.push(format!(
            "dose given at centre {dose_centre}, booked at {}",
            booked.centre_id
        ));
    }
    if dose_beneficiary != booked.beneficiary_id {
        mismatches.push(format!(
            "dose names beneficiary {dose_beneficiary}, booked for {}",
            booked.beneficiary_id
        ));
    }
    if !dose
        .vaccine
        .trim()
        .eq_ignore_ascii_case(booked.vaccine.trim())
    {
        mismatches.push(format!(
            "dose of {}, booked for {}",
            dose.vaccine, booked.vaccine
        ));
    }
    if dose.dose_number != booked.dose_number {
        mismatches.push(format!(
            "dose number {}, booked dose number {}",
            dose.dose_number, booked.dose_number
        ));
    }
    if !mismatches.is_empty() {
        return Ok(Err(NotEligibleReason::EvidenceMismatch {
            detail: mismatches.join("; "),
        }));
    }

    if let Some(certificate_id) = issued.into_iter().find(|id| !revoked.contains(id)) {
        return Ok(Err(NotEligibleReason::AlreadyIssued { certificate_id }));
    }

    let revision = recorded
        .last()
        .map(|record| record.revision)
        .unwrap_or_default();
    Ok(Ok(AppointmentEvidence {
        booked,
        dose,
        code_verified_position,
        dose_position,
        revision,
    }))
}

/// Beneficiary fields printed on the certificate, with corrections applied.
struct BeneficiaryDetails {
    /// Current name.
    name: String,
    /// Current year of birth.
    year_of_birth: u16,
    /// Current gender.
    gender: Gender,
    /// Photo-ID type from the registration.
    photo_id_type: PhotoIdType,
    /// Masked photo-ID number from the registration.
    photo_id_masked: String,
}

/// Reads the beneficiary stream: the registration, then every correction in order.
async fn read_beneficiary(
    store: &dyn EventStore,
    beneficiary_id: BeneficiaryId,
) -> Result<BeneficiaryDetails, SignerError> {
    let stream_id = beneficiary_id.stream_id();
    let recorded = read_stream(store, &stream_id).await?;

    let mut details: Option<BeneficiaryDetails> = None;
    for (_, event) in decode_all(&stream_id, &recorded)? {
        match event {
            Event::BeneficiaryRegistered {
                beneficiary_id: id,
                name,
                year_of_birth,
                gender,
                photo_id_type,
                photo_id_masked,
                ..
            } if id == beneficiary_id => {
                details = Some(BeneficiaryDetails {
                    name,
                    year_of_birth,
                    gender,
                    photo_id_type,
                    photo_id_masked,
                });
            }
            Event::BeneficiaryCorrected {
                beneficiary_id: id,
                name,
                year_of_birth,
                gender,
            } if id == beneficiary_id => {
                if let Some(current) = details.as_mut() {
                    current.name = name;
                    current.year_of_birth = year_of_birth;
                    current.gender = gender;
                }
            }
            _ => {}
        }
    }

    details.ok_or_else(|| {
        inconsistent(
            &stream_id,
            "the booked beneficiary has no BeneficiaryRegistered event".to_owned(),
        )
    })
}

/// Centre fields printed on the certificate.
struct CentreDetails {
    /// Centre name.
    name: String,
    /// District.
    district: String,
    /// State.
    state: String,
}

/// Reads the centre stream's registration.
async fn read_centre(
    store: &dyn EventStore,
    centre_id: CentreId,
) -> Result<CentreDetails, SignerError> {
    let stream_id = centre_id.stream_id();
    let recorded = read_stream(store, &stream_id).await?;

    for (_, event) in decode_all(&stream_id, &recorded)? {
        if let Event::CentreRegistered {
            centre_id: id,
            name,
            district,
            state,
            ..
        } = event
        {
            if id == centre_id {
                return Ok(CentreDetails {
                    name,
                    district,
                    state,
                });
            }
        }
    }
    Err(inconsistent(
        &stream_id,
        "the booked centre has no CentreRegistered event".to_owned(),
    ))
}

/// Reads a whole stream.
async fn read_stream(
    store: &dyn EventStore,
    stream_id: &str,
) -> Result<Vec<RecordedEvent>, SignerError> {
    store
        .read_stream(stream_id, 0)
        .await
        .map_err(|source| SignerError::Store {
            stream_id: stream_id.to_owned(),
            source,
        })
}

/// Decodes every recorded event, failing on the first that does not decode.
fn decode_all<'a>(
    stream_id: &str,
    recorded: &'a [RecordedEvent],
) -> Result<Vec<(&'a RecordedEvent, Event)>, SignerError> {
    recorded
        .iter()
        .map(|record| {
            Event::decode(&record.event_type, record.schema_version, &record.payload)
                .map(|event| (record, event))
                .map_err(|source| SignerError::Decode {
                    stream_id: stream_id.to_owned(),
                    position: record.position,
                    source,
                })
        })
        .collect()
}

/// Builds a [`SignerError::InconsistentLog`].
fn inconsistent(stream_id: &str, detail: String) -> SignerError {
    SignerError::InconsistentLog {
        stream_id: stream_id.to_owned(),
        detail,
    }
}
