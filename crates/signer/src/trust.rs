//! Trust list: the public half of the key ring, which verifiers use offline.
//!
//! The same JSON is served at `GET /api/v1/trust-list` and read by `vaxledger cert verify
//! --trust-list FILE`. It lists every issuer key ever created, so certificates signed before a
//! rotation still verify.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, KeyStatus, PublicKey};

/// Name of the signature algorithm of every key in the list (COSE algorithm -8, Ed25519).
pub const ALGORITHM_NAME: &str = "EdDSA";

/// Every issuer key with its validity and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    /// Time the list was generated, so that a verifier can judge how stale its copy is.
    pub generated_at: DateTime<Utc>,
    /// Issuer keys, oldest first.
    pub keys: Vec<TrustedKey>,
}

/// One issuer key as published to verifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// Key id that certificates carry in their protected `kid` header.
    pub key_id: KeyId,
    /// Signature algorithm name, always `EdDSA`, so that other verifiers need not assume it.
    pub algorithm: String,
    /// Ed25519 public key, standard base64 of the 32 raw bytes.
    pub public_key: PublicKey,
    /// Earliest issued-at time of a certificate this key may sign.
    pub valid_from: DateTime<Utc>,
    /// Latest issued-at time of a certificate this key may sign; `None` while the key is active.
    pub valid_until: Option<DateTime<Utc>>,
    /// Lifecycle state; a revoked key invalidates every certificate it signed.
    pub status: KeyStatus,
}

impl TrustList {
    /// Finds the key with this id. An entry whose public key does not hash to its stated id is
    /// skipped, so an edited list cannot attach a foreign key to a known id.
    pub fn find(&self, key_id: KeyId) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .find(|key| key.key_id == key_id && key.public_key.key_id() == key_id)
    }

    /// Parses the JSON form, checking every public key.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Returns the pretty-printed JSON form.
    pub fn to_json(&self) -> String {
        // A struct of strings, dates and enums always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
