//! The 4-digit security code and the server key that hashes it.
//!
//! The plain code exists only in the booking response, the SMS outbox and the acknowledgement
//! slip. The event log stores HMAC-SHA-256(server key, appointment id || code), so a copy of the
//! log does not reveal codes: without the key, the 10,000 candidates cannot be tested.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::{CryptoRng, Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::{AppointmentId, MobileNumber};
use crate::rejection::Rejection;

type HmacSha256 = Hmac<Sha256>;

/// A security code: exactly four decimal digits, leading zeros kept.
///
/// `Display` is absent and `Debug` prints `****`, so the code cannot reach a log by accident.
/// Call [`SecurityCode::expose`] where the plain form is meant to leave the process.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityCode([u8; 4]);

impl SecurityCode {
    /// Parses exactly four ASCII digits.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let bytes = text.as_bytes();
        if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Rejection::invalid("code", "code must be exactly 4 digits, such as 0427"));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Draws a code uniformly from 0000 to 9999.
    ///
    /// `gen_range` samples without modulo bias; the caller passes a cryptographic RNG (`OsRng`).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let value: u16 = rng.gen_range(0..10_000);
        let text = format!("{value:04}");
        Self::parse(&text).expect("four formatted digits always parse")
    }

    /// Returns the four digits; only for the booking response, the outbox and the slip.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a parsed security code contains only ASCII digits")
    }

    /// Returns the code's digits as numbers, for enumeration analysis.
    pub fn numeric(&self) -> u16 {
        self.expose().parse().expect("a parsed security code contains only ASCII digits")
    }
}

impl fmt::Debug for SecurityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecurityCode(****)")
    }
}

/// Server secret that keys the code and mobile-number hashes.
///
/// Its id is stored beside each hash so that the key can be rotated while old hashes stay
/// checkable.
#[derive(Clone)]
pub struct ServerKey {
    /// Short id: first 8 bytes of SHA-256 of the secret, in hex. Safe to store and log.
    key_id: String,
    /// 32 secret bytes.
    secret: [u8; 32],
}

impl ServerKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        let digest = Sha256::digest(secret);
        Self { key_id: hex::encode(&digest[..8]), secret }
    }

    /// Returns the key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Computes HMAC-SHA-256 over the appointment id and the code.
    pub fn code_hmac(&self, appointment_id: &AppointmentId, code: &SecurityCode) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"vaxledger security code v1\0");
        mac.update(appointment_id.0.as_bytes());
        mac.update(&code.0);
        mac.finalize().into_bytes().into()
    }

    /// Checks a submitted code against a stored HMAC in constant time.
    pub fn code_matches(
        &self,
        appointment_id: &AppointmentId,
        code: &SecurityCode,
        stored_hmac: &[u8],
    ) -> bool {
        let computed = self.code_hmac(appointment_id, code);
        computed.ct_eq(stored_hmac).into()
    }

    /// Returns the hex HMAC of a mobile number, the only form of it that events store.
    pub fn mobile_hash(&self, mobile: &MobileNumber) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"vaxledger mobile v1\0");
        mac.update(mobile.as_str().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use uuid::Uuid;

    fn key() -> ServerKey {
        ServerKey::from_bytes([7u8; 32])
    }

    #[test]
    fn code_parse_keeps_leading_zeros() {
        let code = SecurityCode::parse("0042").unwrap();
        assert_eq!(code.expose(), "0042");
        assert_eq!(code.numeric(), 42);
    }

    #[test]
    fn code_parse_rejects_non_four_digits() {
        for text in ["", "123", "12345", "12a4", " 123", "١٢٣٤", "-123"] {
            let err = SecurityCode::parse(text).unwrap_err();
            assert_eq!(err.field(), Some("code"), "{text:?}");
        }
    }

    #[test]
    fn code_debug_hides_digits() {
        let code = SecurityCode::parse("1234").unwrap();
        assert_eq!(format!("{code:?}"), "SecurityCode(****)");
    }

    #[test]
    fn code_generate_covers_range_uniformly() {
        // 200,000 draws into 10 buckets by first digit: each bucket expects 20,000. A bucket
        // outside 19,000..21,000 is over 7 standard deviations away, so the test fails only for
        // a biased generator.
        let mut buckets = [0u32; 10];
        let mut rng = OsRng;
        for _ in 0..200_000 {
            let code = SecurityCode::generate(&mut rng);
            buckets[(code.numeric() / 1000) as usize] += 1;
        }
        for (digit, count) in buckets.iter().enumerate() {
            assert!((19_000..21_000).contains(count), "first digit {digit}: {count}");
        }
    }

    #[test]
    fn code_hmac_matches_only_same_code() {
        let appointment = AppointmentId::new(Uuid::new_v4());
        let code = SecurityCode::parse("0427").unwrap();
        let stored = key().code_hmac(&appointment, &code);
        assert!(key().code_matches(&appointment, &code, &stored));
        let other = SecurityCode::parse("0428").unwrap();
        assert!(!key().code_matches(&appointment, &other, &stored));
    }

    #[test]
    fn code_hmac_binds_appointment() {
        let code = SecurityCode::parse("0427").unwrap();
        let first = key().code_hmac(&AppointmentId::new(Uuid::new_v4()), &code);
        let second = key().code_hmac(&AppointmentId::new(Uuid::new_v4()), &code);
        assert_ne!(first, second);
    }

    #[test]
    fn code_hmac_depends_on_key() {
        let appointment = AppointmentId::new(Uuid::new_v4());
        let code = SecurityCode::parse("0427").unwrap();
        let other_key = ServerKey::from_bytes([8u8; 32]);
        assert_ne!(key().code_hmac(&appointment, &code), other_key.code_hmac(&appointment, &code));
        assert_ne!(key().key_id(), other_key.key_id());
    }

    #[test]
    fn code_matches_rejects_truncated_hmac() {
        let appointment = AppointmentId::new(Uuid::new_v4());
        let code = SecurityCode::parse("0427").unwrap();
        let stored = key().code_hmac(&appointment, &code);
        assert!(!key().code_matches(&appointment, &code, &stored[..16]));
    }

    #[test]
    fn server_key_debug_hides_secret() {
        let text = format!("{:?}", key());
        assert!(!text.contains("7, 7"));
    }
}
