//! The vaccination record that a certificate carries in its private CWT claim.

use chrono::NaiveDate;
use domain::events::{Gender, PhotoIdType};
use domain::ids::{BeneficiaryId, CertificateId};
use serde::{Deserialize, Serialize};

/// Vaccination record of one dose, as the certificate states it. Encoded as a CBOR map with text
/// keys (the field names below) under the private claim
/// [`crate::certificate::RECORD_CLAIM_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaccinationRecord {
    /// Beneficiary name as registered, with any later correction applied.
    pub beneficiary_name: String,
    /// Year of birth, printed instead of the full date as on the photo ID registration.
    pub year_of_birth: u16,
    /// Gender as recorded on the photo ID.
    pub gender: Gender,
    /// Type of the photo ID shown at registration.
    pub photo_id_type: PhotoIdType,
    /// Photo-ID number with all but the last four characters replaced by `X`.
    pub photo_id_masked: String,
    /// Beneficiary reference id, which links the certificate to the ledger's beneficiary stream.
    pub beneficiary_id: BeneficiaryId,
    /// Vaccine name from the catalogue, such as `COVISHIELD`.
    pub vaccine: String,
    /// Manufacturer from the catalogue.
    pub manufacturer: String,
    /// Dose number in the primary schedule, from 1.
    pub dose_number: u8,
    /// Doses in the vaccine's primary schedule.
    pub total_doses: u8,
    /// Calendar date of the session, serialized as `YYYY-MM-DD`. It is the booked session date,
    /// not a UTC timestamp converted to a date, so no time zone can shift it.
    pub vaccination_date: NaiveDate,
    /// Name of the vaccination centre.
    pub centre_name: String,
    /// District of the centre.
    pub district: String,
    /// State of the centre.
    pub state: String,
    /// Token id of the vaccinator who recorded the dose.
    pub vaccinator_id: String,
    /// Vaccine batch number.
    pub batch: String,
    /// Certificate id; equal to the CWT `cti` claim.
    pub certificate_id: CertificateId,
    /// Global ledger position of the `CodeVerified` event that the signer checked.
    pub code_verified_position: u64,
    /// Global ledger position of the `DoseAdministered` event that the signer checked.
    pub dose_position: u64,
}
