//! Identifier newtypes. Each one is parsed once at the boundary, so a value of these types is
//! always well formed.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rejection::Rejection;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Wraps a freshly generated UUID.
            pub fn new(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// Parses the hyphenated UUID form; the rejection names the request field.
            pub fn parse(text: &str) -> Result<Self, Rejection> {
                Uuid::parse_str(text.trim()).map(Self).map_err(|_| Rejection::Invalid {
                    field: $field,
                    message: format!("{} must be a UUID such as 0c5b3f1e-7d2a-4c7e-9a51-2f1e9b7c4d10", $field),
                })
            }

            /// Returns the id of the stream that holds this entity's events.
            pub fn stream_id(&self) -> String {
                format!(concat!($prefix, "-{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Vaccination centre id.
    CentreId, "centre", "centre_id"
);
uuid_id!(
    /// Vaccination session id: one centre, one date, one vaccine.
    SessionId, "session", "session_id"
);
uuid_id!(
    /// Beneficiary id (the "reference id" printed on the certificate).
    BeneficiaryId, "beneficiary", "beneficiary_id"
);
uuid_id!(
    /// Appointment id.
    AppointmentId, "appointment", "appointment_id"
);
uuid_id!(
    /// Certificate id.
    CertificateId, "certificate", "certificate_id"
);
uuid_id!(
    /// Dispute id.
    DisputeId, "dispute", "dispute_id"
);

/// Indian mobile number: ten digits, starting with 6 to 9, without the +91 prefix.
///
/// The number itself never enters the event log; events store [`crate::code::ServerKey::mobile_hash`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MobileNumber(String);

impl MobileNumber {
    /// Parses `9876543210`, `+919876543210` or `09876543210`.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let trimmed = text.trim();
        let digits = trimmed
            .strip_prefix("+91")
            .or_else(|| trimmed.strip_prefix('0').filter(|rest| rest.len() == 10))
            .unwrap_or(trimmed);
        let valid = digits.len() == 10
            && digits.bytes().all(|b| b.is_ascii_digit())
            && matches!(digits.as_bytes()[0], b'6'..=b'9');
        if !valid {
            return Err(Rejection::Invalid {
                field: "mobile",
                message: "mobile must be a 10-digit Indian mobile number starting with 6, 7, 8 or 9".into(),
            });
        }
        Ok(Self(digits.to_owned()))
    }

    /// Returns the ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the number with all but the last four digits hidden, for logs and screens.
    pub fn masked(&self) -> String {
        format!("XXXXXX{}", &self.0[6..])
    }
}

impl fmt::Debug for MobileNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MobileNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_parse_accepts_prefixes() {
        for text in ["9876543210", "+919876543210", "09876543210", " 6000000000 "] {
            assert!(MobileNumber::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn mobile_parse_rejects_bad_numbers() {
        for text in ["", "12345", "5876543210", "98765432101", "98765x3210", "+449876543210"] {
            let err = MobileNumber::parse(text).unwrap_err();
            assert_eq!(err.field(), Some("mobile"), "{text}");
        }
    }

    #[test]
    fn mobile_masked_keeps_last_four() {
        let mobile = MobileNumber::parse("9876543210").unwrap();
        assert_eq!(mobile.masked(), "XXXXXX3210");
        assert!(!format!("{mobile:?}").contains("987654"));
    }

    #[test]
    fn appointment_id_parse_rejects_garbage() {
        let err = AppointmentId::parse("not-a-uuid").unwrap_err();
        assert_eq!(err.field(), Some("appointment_id"));
    }

    #[test]
    fn stream_id_has_prefix() {
        let id = SessionId::new(Uuid::nil());
        assert_eq!(id.stream_id(), "session-00000000-0000-0000-0000-000000000000");
    }
}
