//! Offline certificate verification against a trust list.
//!
//! Checks run in this order, and the first failure is the reason returned: QR decoding, COSE
//! structure and tag, algorithm, key id, trust-list lookup, signature, claims, key revocation,
//! certificate revocation, then issued-at against the current time and the key's validity.
//! The signature is checked before any revocation, so "revoked" always means a genuine
//! certificate or key that was later withdrawn.
//!
//! No input makes these functions panic; a property test feeds them random text and bytes.

use std::collections::HashSet;
use std::fmt;
use std::io::Cursor;

use chrono::{DateTime, Duration, Utc};
use coset::cbor::value::Value;
use coset::{iana, AsCborValue, CoseSign1, RegisteredLabelWithPrivate, TaggedCborSerializable};
use domain::ids::CertificateId;
use serde::{Deserialize, Serialize};

use crate::certificate::{decode_claims, verify_sign1_signature};
use crate::keys::{KeyId, KeyStatus};
use crate::qr::decode_qr;
use crate::record::VaccinationRecord;
use crate::trust::TrustList;

/// Clock difference tolerated between issuer and verifier when checking issued-at.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Result of verifying a certificate.
// The valid variant is large, but a verification is built once and moved at most a few times, so
// boxing the record would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// The certificate is genuine, in force, and signed by a trusted key.
    Valid {
        /// The vaccination record it states.
        record: VaccinationRecord,
        /// Key that signed it.
        key_id: KeyId,
        /// Issuer name from the `iss` claim.
        issuer: String,
        /// Issued-at time from the `iat` claim.
        issued_at: DateTime<Utc>,
    },
    /// The certificate must not be accepted.
    Invalid {
        /// Reason for the rejection.
        reason: InvalidReason,
    },
}

impl Verification {
    /// Returns whether the certificate is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid { .. })
    }
}

/// Reason a certificate is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum InvalidReason {
    /// The text or bytes are not a well-formed certificate.
    #[error("malformed: {detail}")]
    Malformed {
        /// Layer that failed, with details.
        detail: Malformed,
    },
    /// The `kid` is not in the trust list.
    #[error("unknown key {key_id}")]
    UnknownKey {
        /// Key id from the certificate.
        key_id: KeyId,
    },
    /// The signature does not match the protected header and payload under the listed key.
    #[error("bad signature")]
    BadSignature,
    /// The certificate was revoked.
    #[error("revoked certificate {certificate_id}")]
    RevokedCertificate {
        /// Id of the revoked certificate.
        certificate_id: CertificateId,
    },
    /// The signing key was revoked, which withdraws every certificate it signed.
    #[error("revoked key {key_id}")]
    RevokedKey {
        /// Id of the revoked key.
        key_id: KeyId,
    },
    /// Issued-at lies in the future (beyond [`MAX_CLOCK_SKEW`]) or before the key's valid-from.
    #[error("not yet valid: {detail}")]
    NotYetValid {
        /// Time check that failed, with the times compared.
        detail: String,
    },
    /// Issued-at lies after the key's valid-until: the key signed it after it was retired.
    #[error("key expired: {detail}")]
    KeyExpired {
        /// The times compared.
        detail: String,
    },
}

impl InvalidReason {
    /// Returns the short machine-readable name, such as `bad_signature`.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidReason::Malformed { .. } => "malformed",
            InvalidReason::UnknownKey { .. } => "unknown_key",
            InvalidReason::BadSignature => "bad_signature",
            InvalidReason::RevokedCertificate { .. } => "revoked_certificate",
            InvalidReason::RevokedKey { .. } => "revoked_key",
            InvalidReason::NotYetValid { .. } => "not_yet_valid",
            InvalidReason::KeyExpired { .. } => "key_expired",
        }
    }
}

/// Layer of a malformed certificate that failed to decode or check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Malformed {
    /// The QR text does not start with `VXL1:`.
    WrongPrefix {
        /// First characters of the text, to show what was scanned.
        found: String,
    },
    /// The QR text is longer than any QR code can hold.
    TooLong {
        /// Length of the text in bytes.
        length: usize,
        /// Maximum accepted length.
        max: usize,
    },
    /// The text after the prefix is not valid base45.
    BadBase45 {
        /// Decoder error.
        detail: String,
    },
    /// The base45 bytes are not valid zlib data.
    BadZlib {
        /// Decoder error.
        detail: String,
    },
    /// The decompressed data exceeds the size limit.
    TooLarge {
        /// Maximum size in bytes.
        max: usize,
    },
    /// The bytes are not a CBOR item with tag 18 and a COSE_Sign1 structure.
    NotCoseSign1 {
        /// Structural error.
        detail: String,
    },
    /// The protected header names an algorithm other than EdDSA (-8), or none.
    UnsupportedAlgorithm {
        /// Algorithm found, in COSE diagnostic form.
        found: String,
    },
    /// The protected header has no 8-byte `kid`.
    BadKeyId {
        /// Key id error.
        detail: String,
    },
    /// The signed payload is not a valid claims set.
    BadClaims {
        /// Claims error.
        detail: String,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::WrongPrefix { found } => {
                write!(
                    f,
                    "QR text must start with {}, found {found:?}",
                    crate::qr::QR_PREFIX
                )
            }
            Malformed::TooLong { length, max } => {
                write!(f, "QR text is {length} bytes, more than the maximum {max}")
            }
            Malformed::BadBase45 { detail } => write!(f, "invalid base45: {detail}"),
            Malformed::BadZlib { detail } => write!(f, "invalid zlib data: {detail}"),
            Malformed::TooLarge { max } => {
                write!(f, "decompressed certificate exceeds {max} bytes")
            }
            Malformed::NotCoseSign1 { detail } => write!(f, "not a COSE_Sign1: {detail}"),
            Malformed::UnsupportedAlgorithm { found } => {
                write!(f, "unsupported algorithm {found}, expected EdDSA (-8)")
            }
            Malformed::BadKeyId { detail } => write!(f, "invalid key id: {detail}"),
            Malformed::BadClaims { detail } => write!(f, "invalid claims: {detail}"),
        }
    }
}

impl From<Malformed> for InvalidReason {
    fn from(detail: Malformed) -> Self {
        InvalidReason::Malformed { detail }
    }
}

/// Verifies a certificate given as QR text.
///
/// `revoked_certificates` contains the ids of revoked certificates. Pass an empty set when no
/// revocation list is available, as in offline tools.
pub fn verify_qr(
    text: &str,
    trust_list: &TrustList,
    revoked_certificates: &HashSet<CertificateId>,
    now: DateTime<Utc>,
) -> Verification {
    match decode_qr(text) {
        Ok(cose) => verify_cose(&cose, trust_list, revoked_certificates, now),
        Err(detail) => invalid(detail.into()),
    }
}

/// Verifies a certificate given as tagged COSE_Sign1 bytes; see [`verify_qr`].
pub fn verify_cose(
    cose: &[u8],
    trust_list: &TrustList,
    revoked_certificates: &HashSet<CertificateId>,
    now: DateTime<Utc>,
) -> Verification {
    match check_certificate(cose, trust_list, revoked_certificates, now) {
        Ok(valid) => valid,
        Err(reason) => invalid(reason),
    }
}

/// Runs every check; returns the first failure as the error.
fn check_certificate(
    cose: &[u8],
    trust_list: &TrustList,
    revoked_certificates: &HashSet<CertificateId>,
    now: DateTime<Utc>,
) -> Result<Verification, InvalidReason> {
    let sign1 = parse_tagged_sign1(cose)?;

    let algorithm = &sign1.protected.header.alg;
    if *algorithm != Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) {
        let found = match algorithm {
            Some(label) => format!("{label:?}"),
            None => "none".to_owned(),
        };
        return Err(Malformed::UnsupportedAlgorithm { found }.into());
    }

    let kid = &sign1.protected.header.key_id;
    let key_id = KeyId::from_slice(kid).ok_or_else(|| Malformed::BadKeyId {
        detail: format!("protected kid must be 8 bytes, got {}", kid.len()),
    })?;

    let trusted = trust_list
        .find(key_id)
        .ok_or(InvalidReason::UnknownKey { key_id })?;

    verify_sign1_signature(&sign1, &trusted.public_key.0)
        .map_err(|_| InvalidReason::BadSignature)?;

    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| Malformed::BadClaims {
            detail: "payload is detached".to_owned(),
        })?;
    let claims = decode_claims(payload).map_err(|err| Malformed::BadClaims { detail: err.0 })?;

    if trusted.status == KeyStatus::Revoked {
        return Err(InvalidReason::RevokedKey { key_id });
    }

    if revoked_certificates.contains(&claims.certificate_id) {
        return Err(InvalidReason::RevokedCertificate {
            certificate_id: claims.certificate_id,
        });
    }

    let issued_at = claims.issued_at;
    let latest_accepted = now.checked_add_signed(MAX_CLOCK_SKEW).unwrap_or(now);
    if issued_at > latest_accepted {
        return Err(InvalidReason::NotYetValid {
            detail: format!("issued at {issued_at}, later than the current time {now}"),
        });
    }
    if issued_at < trusted.valid_from {
        return Err(InvalidReason::NotYetValid {
            detail: format!(
                "issued at {issued_at}, before key {key_id} became valid at {}",
                trusted.valid_from
            ),
        });
    }
    if let Some(valid_until) = trusted.valid_until {
        if issued_at > valid_until {
            return Err(InvalidReason::KeyExpired {
                detail: format!(
                    "issued at {issued_at}, after key {key_id} stopped signing at {valid_until}"
                ),
            });
        }
    }

    Ok(Verification::Valid {
        record: claims.record,
        key_id,
        issuer: claims.issuer,
        issued_at,
    })
}

/// Parses a CBOR item that must be tag 18 around a COSE_Sign1 array, with no trailing bytes.
fn parse_tagged_sign1(cose: &[u8]) -> Result<CoseSign1, Malformed> {
    let not_sign1 = |detail: String| Malformed::NotCoseSign1 { detail };

    let mut reader = Cursor::new(cose);
    let value: Value = ciborium::from_reader(&mut reader)
        .map_err(|err| not_sign1(format!("invalid CBOR: {err}")))?;
    let consumed = usize::try_from(reader.position()).unwrap_or(usize::MAX);
    if consumed < cose.len() {
        return Err(not_sign1(format!(
            "{} trailing bytes after the CBOR item",
            cose.len() - consumed
        )));
    }

    match value {
        Value::Tag(tag, inner) if tag == CoseSign1::TAG => {
            CoseSign1::from_cbor_value(*inner).map_err(|err| not_sign1(err.to_string()))
        }
        Value::Tag(tag, _) => Err(not_sign1(format!(
            "CBOR tag {tag}, expected {} (COSE_Sign1)",
            CoseSign1::TAG
        ))),
        _ => Err(not_sign1(format!(
            "untagged CBOR item, expected tag {} (COSE_Sign1)",
            CoseSign1::TAG
        ))),
    }
}

/// Wraps a reason, logging it at debug level (verification failures are routine, not errors).
fn invalid(reason: InvalidReason) -> Verification {
    tracing::debug!(reason = reason.code(), detail = %reason, "certificate verification failed");
    Verification::Invalid { reason }
}
