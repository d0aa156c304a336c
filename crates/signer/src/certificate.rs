//! Certificate format: a tagged COSE_Sign1 (RFC 9052) signed with EdDSA (Ed25519), whose payload
//! is a CWT claims set (RFC 8392).
//!
//! Protected header: `alg` (1) = EdDSA (-8) and `kid` (4) = the 8-byte
//! [`KeyId`](crate::keys::KeyId). The unprotected header is empty. Claims:
//!
//! | key | claim | value |
//! |---|---|---|
//! | 1 | `iss` | issuer name, [`DEFAULT_ISSUER`] for certificates of this ledger |
//! | 6 | `iat` | issued-at, whole seconds since the Unix epoch |
//! | 7 | `cti` | the 16 bytes of the certificate id UUID |
//! | -65537 | private use | the [`VaccinationRecord`] as a CBOR map with text keys |
//!
//! The record claim key lies in the private-use range of the IANA CWT Claims registry (keys below
//! -65536). Key -260 looks like the obvious choice but is registered there as `hcert`, whose value
//! must follow the EU Digital COVID Certificate schema, which this record does not.

use chrono::{DateTime, TimeZone, Utc};
use coset::cwt::{ClaimsSet, ClaimsSetBuilder, Timestamp};
use coset::{
    iana, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
};
use domain::ids::CertificateId;
use ed25519_dalek::{Signature, VerifyingKey};
use uuid::Uuid;

use crate::keys::IssuerKey;
use crate::record::VaccinationRecord;

/// Issuer name (`iss` claim) of certificates signed by this ledger.
pub const DEFAULT_ISSUER: &str = "vaxledger";

/// CWT claim key of the private claim that contains the [`VaccinationRecord`]. It is the first key
/// of the private-use range (below -65536).
pub const RECORD_CLAIM_KEY: i64 = -65537;

/// The claims of one certificate, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateClaims {
    /// Issuer name (`iss`).
    pub issuer: String,
    /// Issued-at time (`iat`), whole seconds.
    pub issued_at: DateTime<Utc>,
    /// Certificate id (`cti`).
    pub certificate_id: CertificateId,
    /// Vaccination record (private claim [`RECORD_CLAIM_KEY`]).
    pub record: VaccinationRecord,
}

/// A certificate could not be built. Only a bug makes these happen, never outside input.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// CBOR or COSE encoding failed.
    #[error("encoding the certificate failed: {0}")]
    Encode(String),
}

/// The claims set could not be decoded from a payload whose signature was valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClaimsError(pub String);

/// Builds and signs a tagged COSE_Sign1 certificate with the issuer key. Sub-second precision of
/// `claims.issued_at` is dropped, because `iat` is in whole seconds.
pub fn sign_certificate(
    key: &IssuerKey,
    claims: &CertificateClaims,
) -> Result<Vec<u8>, CertificateError> {
    let payload = encode_claims(claims)?;

    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .key_id(key.key_id().as_bytes().to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", |tbs| key.sign(tbs).to_bytes().to_vec())
        .build();

    sign1
        .to_tagged_vec()
        .map_err(|err| CertificateError::Encode(format!("COSE_Sign1: {err}")))
}

/// Encodes the claims as a CWT claims set (a CBOR map with integer keys).
pub fn encode_claims(claims: &CertificateClaims) -> Result<Vec<u8>, CertificateError> {
    let record = ciborium::Value::serialized(&claims.record)
        .map_err(|err| CertificateError::Encode(format!("vaccination record: {err}")))?;

    let claims_set = ClaimsSetBuilder::new()
        .issuer(claims.issuer.clone())
        .issued_at(Timestamp::WholeSeconds(claims.issued_at.timestamp()))
        .cwt_id(claims.certificate_id.0.as_bytes().to_vec())
        .private_claim(RECORD_CLAIM_KEY, record)
        .build();

    claims_set
        .to_vec()
        .map_err(|err| CertificateError::Encode(format!("CWT claims: {err}")))
}

/// Decodes and checks a CWT claims set: `iss`, `iat` (whole seconds), `cti` (16 bytes) and the
/// record claim must be present, and the record's certificate id must equal `cti`.
pub fn decode_claims(payload: &[u8]) -> Result<CertificateClaims, ClaimsError> {
    let claims_set = ClaimsSet::from_slice(payload)
        .map_err(|err| ClaimsError(format!("payload is not a CWT claims set: {err}")))?;

    let issuer = claims_set
        .issuer
        .ok_or_else(|| ClaimsError("missing iss claim (1)".to_owned()))?;

    let issued_at = match claims_set.issued_at {
        Some(Timestamp::WholeSeconds(seconds)) => Utc
            .timestamp_opt(seconds, 0)
            .single()
            .ok_or_else(|| ClaimsError(format!("iat claim {seconds} is out of range")))?,
        Some(Timestamp::FractionalSeconds(_)) => {
            return Err(ClaimsError(
                "iat claim (6) must be whole seconds".to_owned(),
            ))
        }
        None => return Err(ClaimsError("missing iat claim (6)".to_owned())),
    };

    let cti = claims_set
        .cwt_id
        .ok_or_else(|| ClaimsError("missing cti claim (7)".to_owned()))?;
    let certificate_id = Uuid::from_slice(&cti)
        .map(CertificateId::new)
        .map_err(|_| ClaimsError(format!("cti claim (7) must be 16 bytes, got {}", cti.len())))?;

    let record_label = coset::cwt::ClaimName::PrivateUse(RECORD_CLAIM_KEY);
    let record_value = claims_set
        .rest
        .into_iter()
        .find(|(name, _)| *name == record_label)
        .map(|(_, value)| value)
        .ok_or_else(|| {
            ClaimsError(format!(
                "missing vaccination record claim ({RECORD_CLAIM_KEY})"
            ))
        })?;
    let record: VaccinationRecord = record_value.deserialized().map_err(|err| {
        ClaimsError(format!(
            "vaccination record claim ({RECORD_CLAIM_KEY}) is invalid: {err}"
        ))
    })?;

    if record.certificate_id != certificate_id {
        return Err(ClaimsError(format!(
            "record certificate id {} differs from cti {certificate_id}",
            record.certificate_id
        )));
    }

    Ok(CertificateClaims {
        issuer,
        issued_at,
        certificate_id,
        record,
    })
}

/// Checks the Ed25519 signature of a COSE_Sign1 (empty external AAD) against a public key.
///
/// Uses strict verification, which also rejects non-canonical signatures and weak keys.
pub fn verify_sign1_signature(
    sign1: &CoseSign1,
    key: &VerifyingKey,
) -> Result<(), ed25519_dalek::SignatureError> {
    sign1.verify_signature(b"", |signature, tbs| {
        let signature = Signature::from_slice(signature)?;
        key.verify_strict(tbs, &signature)
    })
}
