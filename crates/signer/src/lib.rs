//! Vaccination certificates: issuer keys, the issuing gate, the COSE_Sign1 format, QR text and
//! offline verification.
//!
//! - [`keys`]: Ed25519 issuer keys in a folder, rotation, revocation and the trust list.
//! - [`gate`]: [`issue_certificate`] signs only when the event log shows a verified security code
//!   followed by a recorded dose.
//! - [`certificate`]: the COSE_Sign1 and CWT claims layout, including the record claim key.
//! - [`qr`]: the `VXL1:` QR text (base45 of zlib-compressed COSE bytes).
//! - [`verify`]: [`verify_qr`] and [`verify_cose`] against a [`TrustList`].
//! - [`vault`]: SQLite storage of the signed bytes, since the event contains only their hash.

pub mod certificate;
pub mod gate;
pub mod keys;
pub mod qr;
pub mod record;
pub mod trust;
pub mod vault;
pub mod verify;

pub use certificate::{CertificateClaims, CertificateError, DEFAULT_ISSUER, RECORD_CLAIM_KEY};
pub use gate::{issue_certificate, IssuedCertificate, NotEligibleReason, SignerError};
pub use keys::{IssuerKey, KeyError, KeyId, KeyInfo, KeyRing, KeyStatus, PublicKey};
pub use qr::{decode_qr, encode_qr, QR_PREFIX};
pub use record::VaccinationRecord;
pub use trust::{TrustList, TrustedKey};
pub use vault::{CertificateVault, StoredCertificate, VaultError};
pub use verify::{verify_cose, verify_qr, InvalidReason, Malformed, Verification};
