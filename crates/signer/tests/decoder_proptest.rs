//! Property tests: no input makes the QR decoder or the verifier panic, and no random input
//! verifies as valid.
//!
//! Inputs are shaped to reach each layer: arbitrary text, text with the right prefix, valid
//! base45 of random bytes, valid zlib of random bytes, and mutations of a genuine certificate.

mod common;

use std::collections::HashSet;
use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use proptest::prelude::*;
use signer::qr::MAX_COSE_LEN;
use signer::{decode_qr, encode_qr, verify_cose, verify_qr, QR_PREFIX};

use common::{issue_time, sample_claims, TestIssuer};

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_qr_random_text_never_valid(text in ".{0,300}") {
        let issuer = TestIssuer::new(21);
        prop_assert!(!verify_qr(&text, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }

    #[test]
    fn verify_qr_prefixed_base45_alphabet_never_valid(body in "[0-9A-Z $%*+./:-]{0,400}") {
        let issuer = TestIssuer::new(21);
        let text = format!("{QR_PREFIX}{body}");
        prop_assert!(!verify_qr(&text, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }

    #[test]
    fn decode_qr_random_bytes_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = format!("{QR_PREFIX}{}", base45::encode(&bytes));
        if let Ok(decoded) = decode_qr(&text) {
            prop_assert!(decoded.len() <= MAX_COSE_LEN);
        }
    }

    #[test]
    fn verify_qr_random_zlib_payload_never_valid(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let issuer = TestIssuer::new(21);
        let text = encode_qr(&bytes);
        prop_assert_eq!(decode_qr(&text).unwrap(), bytes.clone());
        prop_assert!(!verify_qr(&text, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
        let raw_zlib = format!("{QR_PREFIX}{}", base45::encode(zlib(&bytes)));
        prop_assert!(!verify_qr(&raw_zlib, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }

    #[test]
    fn verify_cose_random_bytes_never_valid(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let issuer = TestIssuer::new(21);
        prop_assert!(!verify_cose(&bytes, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }

    #[test]
    fn verify_cose_mutated_certificate_never_valid(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let issuer = TestIssuer::new(21);
        let mut cose = issuer.sign(&sample_claims(issue_time()));
        for (index, mask) in edits {
            let position = index.index(cose.len());
            cose[position] ^= mask;
        }
        prop_assert!(!verify_cose(&cose, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }

    #[test]
    fn verify_cose_truncated_certificate_never_valid(cut in any::<prop::sample::Index>()) {
        let issuer = TestIssuer::new(21);
        let cose = issuer.sign(&sample_claims(issue_time()));
        let length = cut.index(cose.len());
        prop_assert!(!verify_cose(&cose[..length], &issuer.trust_list, &HashSet::new(), issue_time()).is_valid());
    }
}
