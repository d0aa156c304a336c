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

fn qr_verifies(text: &str) -> bool {
    let issuer = TestIssuer::new(21);
    verify_qr(text, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid()
}

fn cose_verifies(cose: &[u8]) -> bool {
    let issuer = TestIssuer::new(21);
    verify_cose(cose, &issuer.trust_list, &HashSet::new(), issue_time()).is_valid()
}

fn genuine_certificate() -> Vec<u8> {
    TestIssuer::new(21).sign(&sample_claims(issue_time()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_qr_random_text_never_valid(text in ".{0,300}") {
        prop_assert!(!qr_verifies(&text));
    }

    #[test]
    fn verify_qr_prefixed_base45_alphabet_never_valid(body in "[0-9A-Z $%*+./:-]{0,400}") {
        let text = format!("{QR_PREFIX}{body}");

        prop_assert!(!qr_verifies(&text));
    }

    #[test]
    fn decode_qr_random_bytes_fails_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = format!("{QR_PREFIX}{}", base45::encode(&bytes));

        if let Ok(decoded) = decode_qr(&text) {
            prop_assert!(decoded.len() <= MAX_COSE_LEN);
        }
    }

    #[test]
    fn verify_qr_random_zlib_never_valid(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let text = encode_qr(&bytes);
        let fast_zlib_text = format!("{QR_PREFIX}{}", base45::encode(zlib(&bytes)));

        prop_assert_eq!(decode_qr(&text).unwrap(), bytes.clone());
        prop_assert!(!qr_verifies(&text));
        prop_assert!(!qr_verifies(&fast_zlib_text));
    }

    #[test]
    fn verify_cose_random_bytes_never_valid(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(!cose_verifies(&bytes));
    }

    #[test]
    fn verify_cose_flipped_bits_never_valid(
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let mut cose = genuine_certificate();
        let position = index.index(cose.len());
        cose[position] ^= mask;

        prop_assert!(!cose_verifies(&cose));
    }

    #[test]
    fn verify_cose_truncated_never_valid(cut in any::<prop::sample::Index>()) {
        let cose = genuine_certificate();
        let length = cut.index(cose.len());

        prop_assert!(!cose_verifies(&cose[..length]));
    }
}
