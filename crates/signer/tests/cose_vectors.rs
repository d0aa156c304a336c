//! Published COSE test vectors from cose-wg/Examples, read at test time from `../shared/vectors`.
//!
//! `eddsa-sig-01.json` is a COSE_Sign1 signed with the RFC 8032 TEST 1 key. It checks that coset
//! builds the same Sig_structure and that the signer's signature check accepts it. The
//! `sign-fail-*.json` cases are ES256, so their failure kinds are replayed on an EdDSA
//! certificate of this crate, and each must be rejected with the matching reason.
//!
//! When the vectors folder is missing these tests fail in CI (`CI=true`) and skip elsewhere.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use coset::{iana, CoseSign1, RegisteredLabelWithPrivate, TaggedCborSerializable};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde_json::Value;
use signer::certificate::verify_sign1_signature;
use signer::{verify_cose, InvalidReason, Malformed};

use common::{
    check_vectors_dir, encode_with_tag, invalid_reason, issue_time, reencode, sample_claims,
    vectors_dir, TestIssuer,
};

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

fn hex_field(json: &Value, pointer: &str) -> Vec<u8> {
    let text = json
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("missing {pointer}"));
    hex::decode(text).unwrap_or_else(|err| panic!("{pointer} is not hex: {err}"))
}

#[test]
fn missing_vectors_fail_in_ci_only() {
    let missing = std::env::temp_dir().join("vaxledger-no-such-vectors-folder");

    assert!(check_vectors_dir(missing.clone(), true).is_err());
    assert_eq!(check_vectors_dir(missing, false), Ok(None));
}

#[test]
fn eddsa_sig_01_verifies() {
    let Some(dir) = vectors_dir() else { return };
    let json = read_json(&dir.join("cose/eddsa-examples/eddsa-sig-01.json"));
    let cose = hex_field(&json, "/output/cbor");
    let public: [u8; 32] = hex_field(&json, "/input/sign0/key/x_hex")
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&public).unwrap();

    let sign1 = CoseSign1::from_tagged_slice(&cose).unwrap();

    assert_eq!(
        sign1.protected.header.alg,
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA))
    );
    assert_eq!(sign1.payload.as_deref(), Some(&b"This is the content."[..]));
    assert_eq!(
        sign1.tbs_data(b""),
        hex_field(&json, "/intermediates/ToBeSign_hex")
    );
    assert!(verify_sign1_signature(&sign1, &key).is_ok());
}

#[test]
fn eddsa_sig_01_key_is_rfc8032_test_1() {
    let Some(dir) = vectors_dir() else { return };
    let json = read_json(&dir.join("cose/eddsa-examples/eddsa-sig-01.json"));
    let secret: [u8; 32] = hex_field(&json, "/input/sign0/key/d_hex")
        .try_into()
        .unwrap();
    let signing_key = SigningKey::from_bytes(&secret);

    let signature = signing_key.sign(&hex_field(&json, "/intermediates/ToBeSign_hex"));
    let sign1 = CoseSign1::from_tagged_slice(&hex_field(&json, "/output/cbor")).unwrap();

    assert_eq!(
        hex::encode(signing_key.verifying_key().as_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    assert_eq!(
        signature.to_bytes().to_vec(),
        sign1.signature,
        "Ed25519 is deterministic"
    );
}

#[test]
fn eddsa_sig_01_changed_payload_fails() {
    let Some(dir) = vectors_dir() else { return };
    let json = read_json(&dir.join("cose/eddsa-examples/eddsa-sig-01.json"));
    let public: [u8; 32] = hex_field(&json, "/input/sign0/key/x_hex")
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&public).unwrap();
    let mut sign1 = CoseSign1::from_tagged_slice(&hex_field(&json, "/output/cbor")).unwrap();

    sign1.payload = Some(b"This is the content/".to_vec());

    assert!(verify_sign1_signature(&sign1, &key).is_err());
}

#[test]
fn eddsa_sig_01_unprotected_kid_rejected() {
    // The example puts kid "11" in the unprotected header. Certificates need an 8-byte protected
    // kid, so the example is well signed but is not a certificate of this ledger.
    let Some(dir) = vectors_dir() else { return };
    let json = read_json(&dir.join("cose/eddsa-examples/eddsa-sig-01.json"));
    let issuer = TestIssuer::new(1);

    let reason = invalid_reason(verify_cose(
        &hex_field(&json, "/output/cbor"),
        &issuer.trust_list,
        &HashSet::new(),
        issue_time(),
    ));

    assert!(
        matches!(
            reason,
            InvalidReason::Malformed {
                detail: Malformed::BadKeyId { .. }
            }
        ),
        "{reason:?}"
    );
}

/// Re-encodes a signed COSE_Sign1 with a protected header of `{1: alg, 4: kid}` built by hand,
/// keeping the old signature. coset cannot represent an unregistered algorithm such as -999, so
/// the CBOR is written directly.
fn with_raw_protected_alg(issuer: &TestIssuer, sign1: CoseSign1, alg: ciborium::Value) -> Vec<u8> {
    use ciborium::Value as Cbor;
    let protected = Cbor::Map(vec![
        (Cbor::from(1), alg),
        (
            Cbor::from(4),
            Cbor::Bytes(issuer.key_id.as_bytes().to_vec()),
        ),
    ]);
    let mut protected_bytes = Vec::new();
    ciborium::into_writer(&protected, &mut protected_bytes).unwrap();

    let array = Cbor::Array(vec![
        Cbor::Bytes(protected_bytes),
        Cbor::Map(Vec::new()),
        Cbor::Bytes(sign1.payload.unwrap()),
        Cbor::Bytes(sign1.signature),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&Cbor::Tag(CoseSign1::TAG, Box::new(array)), &mut bytes).unwrap();
    bytes
}

/// Applies one cose-wg failure kind to a fresh EdDSA certificate and returns the bytes and the
/// expected rejection check.
fn apply_failure(
    issuer: &TestIssuer,
    kind: &str,
    argument: &Value,
) -> (Vec<u8>, fn(&InvalidReason) -> bool) {
    let claims = sample_claims(issue_time());
    match kind {
        "ChangeCBORTag" => {
            let tag = argument.as_u64().expect("ChangeCBORTag takes a tag number");
            let sign1 = issuer.sign_with_header(issuer.protected_header(), &claims);
            (encode_with_tag(sign1, tag), |reason| {
                matches!(
                    reason,
                    InvalidReason::Malformed {
                        detail: Malformed::NotCoseSign1 { .. }
                    }
                )
            })
        }
        "ChangeTag" => {
            let mut sign1 = issuer.sign_with_header(issuer.protected_header(), &claims);
            let last = sign1.signature.len() - 1;
            sign1.signature[last] ^= 0x01;
            (reencode(sign1), |reason| {
                *reason == InvalidReason::BadSignature
            })
        }
        "ChangeAttr" => {
            let alg = argument.get("alg").expect("ChangeAttr changes alg");
            let sign1 = issuer.sign_with_header(issuer.protected_header(), &claims);
            let alg_value = match alg {
                Value::Number(number) => {
                    ciborium::Value::from(number.as_i64().expect("integer alg"))
                }
                Value::String(text) => ciborium::Value::Text(text.clone()),
                other => panic!("unexpected alg {other}"),
            };
            (with_raw_protected_alg(issuer, sign1, alg_value), |reason| {
                matches!(
                    reason,
                    InvalidReason::Malformed {
                        detail: Malformed::UnsupportedAlgorithm { .. }
                            | Malformed::NotCoseSign1 { .. }
                    }
                )
            })
        }
        "AddProtected" => {
            assert!(argument.get("ctyp").is_some(), "AddProtected adds ctyp");
            let mut sign1 = issuer.sign_with_header(issuer.protected_header(), &claims);
            sign1.protected.header.content_type = Some(coset::ContentType::Assigned(
                iana::CoapContentFormat::TextPlainUtf8,
            ));
            (reencode(sign1), |reason| {
                *reason == InvalidReason::BadSignature
            })
        }
        "RemoveProtected" => {
            assert!(
                argument.get("ctyp").is_some(),
                "RemoveProtected removes ctyp"
            );
            let mut header = issuer.protected_header();
            header.content_type = Some(coset::ContentType::Assigned(
                iana::CoapContentFormat::TextPlainUtf8,
            ));
            let mut sign1 = issuer.sign_with_header(header, &claims);
            sign1.protected.header.content_type = None;
            (reencode(sign1), |reason| {
                *reason == InvalidReason::BadSignature
            })
        }
        other => panic!("failure kind {other} has no EdDSA equivalent here yet; add one"),
    }
}

#[test]
fn sign1_failure_kinds_rejected_for_eddsa() {
    let Some(dir) = vectors_dir() else { return };
    let issuer = TestIssuer::new(11);
    let mut paths: Vec<_> = fs::read_dir(dir.join("cose/sign1-tests"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("sign-fail-"))
        })
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 5,
        "expected the sign-fail cases, found {paths:?}"
    );

    for path in paths {
        let json = read_json(&path);
        let failures = json["input"]["failures"]
            .as_object()
            .unwrap_or_else(|| panic!("{} has no failures", path.display()));
        for (kind, argument) in failures {
            let (cose, expected) = apply_failure(&issuer, kind, argument);

            let reason = invalid_reason(verify_cose(
                &cose,
                &issuer.trust_list,
                &HashSet::new(),
                issue_time(),
            ));

            assert!(
                expected(&reason),
                "{} ({kind}): got {reason:?}",
                path.display()
            );
        }
    }
}
