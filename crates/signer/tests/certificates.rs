//! Certificates end to end with real keys on disk: signing, QR text, verification, rotation,
//! revocation, and EdDSA negatives modelled on the cose-wg sign1 failure cases.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use chrono::{Duration, TimeZone, Utc};
use coset::{iana, CoseSign1, RegisteredLabelWithPrivate, TaggedCborSerializable};
use domain::ids::CertificateId;
use signer::certificate::sign_certificate;
use signer::{
    encode_qr, verify_cose, verify_qr, InvalidReason, KeyError, KeyRing, KeyStatus, Malformed,
    TrustList, Verification,
};

use common::{encode_with_tag, invalid_reason, issue_time, reencode, sample_claims, TestIssuer};

fn no_revocations() -> HashSet<CertificateId> {
    HashSet::new()
}

#[test]
fn certificate_round_trip_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create_at(dir.path(), issue_time() - Duration::days(1)).unwrap();
    let key = keys.active_key().unwrap();
    let claims = sample_claims(issue_time());

    let cose = sign_certificate(&key, &claims).unwrap();
    let qr_text = encode_qr(&cose);
    let verification = verify_qr(
        &qr_text,
        &keys.trust_list(issue_time()),
        &no_revocations(),
        issue_time(),
    );

    let Verification::Valid {
        record,
        key_id,
        issuer,
        issued_at,
    } = verification
    else {
        panic!("expected valid, got {verification:?}");
    };
    assert_eq!(record, claims.record);
    assert_eq!(key_id, key.key_id());
    assert_eq!(issuer, "vaxledger");
    assert_eq!(issued_at, issue_time());
}

#[test]
fn certificate_protected_header_has_alg_and_kid() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let key = keys.active_key().unwrap();

    let cose = sign_certificate(&key, &sample_claims(Utc::now())).unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&cose).unwrap();

    assert_eq!(cose[0], 0xd2, "tag 18 must be the first byte");
    assert_eq!(
        sign1.protected.header.alg,
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA))
    );
    assert_eq!(
        sign1.protected.header.key_id,
        key.key_id().as_bytes().to_vec()
    );
    assert!(sign1.unprotected.is_empty());
}

#[test]
fn qr_one_character_change_is_invalid() {
    let issuer = TestIssuer::new(1);
    let qr_text = encode_qr(&issuer.sign(&sample_claims(issue_time())));
    let alphabet: Vec<char> = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
        .chars()
        .collect();

    for (index, original) in qr_text.char_indices() {
        let replacement = alphabet.iter().copied().find(|c| *c != original).unwrap();
        let mut changed = qr_text.clone();
        changed.replace_range(index..index + original.len_utf8(), &replacement.to_string());

        let verification = verify_qr(
            &changed,
            &issuer.trust_list,
            &no_revocations(),
            issue_time(),
        );
        assert!(
            !verification.is_valid(),
            "changing character {index} still verified"
        );
    }
}

#[test]
fn rotation_keeps_old_certificate_valid() {
    let dir = tempfile::tempdir().unwrap();
    let created = issue_time() - Duration::days(30);
    let keys = KeyRing::open_or_create_at(dir.path(), created).unwrap();
    let old_key = keys.active_key().unwrap();
    let old_cose =
        sign_certificate(&old_key, &sample_claims(issue_time() - Duration::days(1))).unwrap();

    let new_info = keys.rotate(issue_time()).unwrap();
    let new_key = keys.active_key().unwrap();
    let new_cose = sign_certificate(&new_key, &sample_claims(issue_time())).unwrap();
    let trust_list = keys.trust_list(issue_time());

    assert_eq!(new_key.key_id(), new_info.key_id);
    assert_ne!(new_key.key_id(), old_key.key_id());
    assert_eq!(trust_list.keys.len(), 2);
    assert_eq!(
        trust_list.find(old_key.key_id()).unwrap().status,
        KeyStatus::Retired
    );
    assert_eq!(
        trust_list.find(old_key.key_id()).unwrap().valid_until,
        Some(issue_time())
    );
    assert!(verify_cose(&old_cose, &trust_list, &no_revocations(), issue_time()).is_valid());
    assert!(verify_cose(&new_cose, &trust_list, &no_revocations(), issue_time()).is_valid());
}

#[test]
fn rotation_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let first = keys.active_key().unwrap().key_id();
    let second = keys.rotate(Utc::now()).unwrap().key_id;
    drop(keys);

    let reopened = KeyRing::open_or_create(dir.path()).unwrap();
    let infos = reopened.keys();

    assert_eq!(reopened.active_key().unwrap().key_id(), second);
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].key_id, first);
    assert_eq!(infos[0].status, KeyStatus::Retired);
}

#[test]
fn retired_key_signing_after_rotation_is_key_expired() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create_at(dir.path(), issue_time() - Duration::days(30)).unwrap();
    let old_key = keys.active_key().unwrap();
    keys.rotate(issue_time() - Duration::days(1)).unwrap();

    let late_cose = sign_certificate(&old_key, &sample_claims(issue_time())).unwrap();
    let reason = invalid_reason(verify_cose(
        &late_cose,
        &keys.trust_list(issue_time()),
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(reason, InvalidReason::KeyExpired { .. }),
        "{reason:?}"
    );
}

#[test]
fn revoked_key_invalidates_its_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create_at(dir.path(), issue_time() - Duration::days(30)).unwrap();
    let old_key = keys.active_key().unwrap();
    let cose =
        sign_certificate(&old_key, &sample_claims(issue_time() - Duration::days(2))).unwrap();
    keys.rotate(issue_time() - Duration::days(1)).unwrap();

    let revoked = keys.revoke(old_key.key_id(), issue_time()).unwrap();
    let reason = invalid_reason(verify_cose(
        &cose,
        &keys.trust_list(issue_time()),
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(
        reason,
        InvalidReason::RevokedKey {
            key_id: old_key.key_id()
        }
    );
    assert_eq!(reason.code(), "revoked_key");
}

#[test]
fn revoking_active_key_creates_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let compromised = keys.active_key().unwrap().key_id();

    keys.revoke(compromised, Utc::now()).unwrap();
    let replacement = keys.active_key().unwrap().key_id();

    assert_ne!(replacement, compromised);
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(keys.keys()[0].status, KeyStatus::Revoked);
}

#[test]
fn revoke_unknown_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let other = TestIssuer::new(9).key_id;

    let err = keys.revoke(other, Utc::now()).unwrap_err();

    assert!(matches!(err, KeyError::UnknownKey { .. }), "{err}");
}

#[test]
fn revoked_certificate_is_invalid() {
    let issuer = TestIssuer::new(2);
    let claims = sample_claims(issue_time());
    let cose = issuer.sign(&claims);
    let revoked = HashSet::from([claims.certificate_id]);

    let reason = invalid_reason(verify_cose(
        &cose,
        &issuer.trust_list,
        &revoked,
        issue_time(),
    ));

    assert_eq!(
        reason,
        InvalidReason::RevokedCertificate {
            certificate_id: claims.certificate_id
        }
    );
}

#[test]
fn unknown_key_is_invalid() {
    let signing = TestIssuer::new(3);
    let other = TestIssuer::new(4);
    let cose = signing.sign(&sample_claims(issue_time()));

    let reason = invalid_reason(verify_cose(
        &cose,
        &other.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(
        reason,
        InvalidReason::UnknownKey {
            key_id: signing.key_id
        }
    );
}

#[test]
fn trust_list_entry_with_foreign_key_is_unknown() {
    let signing = TestIssuer::new(3);
    let mut forged = TestIssuer::new(4).trust_list;
    forged.keys[0].key_id = signing.key_id;
    let cose = signing.sign(&sample_claims(issue_time()));

    let reason = invalid_reason(verify_cose(&cose, &forged, &no_revocations(), issue_time()));

    assert_eq!(
        reason,
        InvalidReason::UnknownKey {
            key_id: signing.key_id
        }
    );
}

#[test]
fn future_issued_at_is_not_yet_valid() {
    let issuer = TestIssuer::new(5);
    let cose = issuer.sign(&sample_claims(issue_time() + Duration::hours(1)));

    let reason = invalid_reason(verify_cose(
        &cose,
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(reason, InvalidReason::NotYetValid { .. }),
        "{reason:?}"
    );
}

#[test]
fn small_clock_skew_is_accepted() {
    let issuer = TestIssuer::new(5);
    let cose = issuer.sign(&sample_claims(issue_time() + Duration::minutes(2)));

    assert!(verify_cose(&cose, &issuer.trust_list, &no_revocations(), issue_time()).is_valid());
}

#[test]
fn issued_before_valid_from_rejected() {
    let issuer = TestIssuer::new(6);
    let cose = issuer.sign(&sample_claims(
        Utc.with_ymd_and_hms(2020, 12, 31, 0, 0, 0).unwrap(),
    ));

    let reason = invalid_reason(verify_cose(
        &cose,
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(reason, InvalidReason::NotYetValid { .. }),
        "{reason:?}"
    );
}

#[test]
fn key_files_have_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    keys.rotate(Utc::now()).unwrap();

    for info in keys.keys() {
        let mode = fs::metadata(dir.path().join(&info.file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", info.file);
    }
    assert_eq!(keys.keys().len(), 2);
}

#[test]
fn key_folder_created_with_mode_0700() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data/keys");

    KeyRing::open_or_create(&dir).unwrap();

    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn metadata_lists_keys_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let key_file = dir.path().join(&keys.keys()[0].file);
    let pem = fs::read_to_string(&key_file).unwrap();
    let metadata = fs::read_to_string(dir.path().join(signer::keys::METADATA_FILE)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&metadata).unwrap();

    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(json["keys"][0]["key_id"], keys.keys()[0].key_id.to_hex());
    assert_eq!(json["keys"][0]["status"], "active");
    assert!(!metadata.contains("PRIVATE"));
}

#[test]
fn corrupt_key_file_error_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let key_file = dir.path().join(&keys.keys()[0].file);
    drop(keys);
    fs::write(
        &key_file,
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    let err = KeyRing::open_or_create(dir.path()).unwrap_err();

    assert!(matches!(err, KeyError::CorruptKeyFile { .. }), "{err}");
    assert!(
        err.to_string().contains(&key_file.display().to_string()),
        "{err}"
    );
}

#[test]
fn swapped_key_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    keys.rotate(Utc::now()).unwrap();
    let infos = keys.keys();
    drop(keys);
    let second = fs::read(dir.path().join(&infos[1].file)).unwrap();
    fs::write(dir.path().join(&infos[0].file), second).unwrap();

    let err = KeyRing::open_or_create(dir.path()).unwrap_err();

    assert!(matches!(err, KeyError::CorruptKeyFile { .. }), "{err}");
    assert!(err.to_string().contains(&infos[0].file), "{err}");
}

#[test]
fn missing_key_file_error_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let key_file = dir.path().join(&keys.keys()[0].file);
    drop(keys);
    fs::remove_file(&key_file).unwrap();

    let err = KeyRing::open_or_create(dir.path()).unwrap_err();

    assert!(
        err.to_string().contains(&key_file.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_metadata_error_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join(signer::keys::METADATA_FILE);
    fs::write(&metadata, "{ not json").unwrap();

    let err = KeyRing::open_or_create(dir.path()).unwrap_err();

    assert!(matches!(err, KeyError::CorruptMetadata { .. }), "{err}");
    assert!(
        err.to_string().contains(&metadata.display().to_string()),
        "{err}"
    );
}

#[test]
fn trust_list_json_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    keys.rotate(Utc::now()).unwrap();
    let trust_list = keys.trust_list(Utc::now());

    let parsed = TrustList::from_json(&trust_list.to_json()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&trust_list.to_json()).unwrap();

    assert_eq!(parsed, trust_list);
    assert_eq!(json["keys"][0]["algorithm"], "EdDSA");
    assert_eq!(json["keys"][0]["status"], "retired");
    assert_eq!(json["keys"][1]["status"], "active");
    assert!(json["generated_at"].is_string());
}

#[test]
fn read_trust_list_matches_key_ring() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let now = Utc::now();

    assert_eq!(
        signer::keys::read_trust_list(dir.path(), now).unwrap(),
        keys.trust_list(now)
    );
}

#[test]
fn trust_list_rejects_invalid_public_key() {
    let issuer = TestIssuer::new(7);
    let json = issuer
        .trust_list
        .to_json()
        .replace(&issuer.trust_list.keys[0].public_key.to_base64(), "AAAA");

    let err = TrustList::from_json(&json).unwrap_err();

    assert!(err.to_string().contains("32 bytes"), "{err}");
}

// EdDSA negatives of the kinds in the cose-wg sign1 failure cases, built without the vector files.

#[test]
fn wrong_cbor_tag_is_malformed() {
    let issuer = TestIssuer::new(8);
    let sign1 = issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));

    let reason = invalid_reason(verify_cose(
        &encode_with_tag(sign1, 998),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    let InvalidReason::Malformed {
        detail: Malformed::NotCoseSign1 { detail },
    } = reason
    else {
        panic!("expected not COSE_Sign1, got {reason:?}");
    };
    assert!(detail.contains("998"), "{detail}");
}

#[test]
fn untagged_sign1_is_malformed() {
    use coset::CborSerializable as _;
    let issuer = TestIssuer::new(8);
    let untagged = issuer
        .sign_with_header(issuer.protected_header(), &sample_claims(issue_time()))
        .to_vec()
        .unwrap();

    let reason = invalid_reason(verify_cose(
        &untagged,
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(
            reason,
            InvalidReason::Malformed {
                detail: Malformed::NotCoseSign1 { .. }
            }
        ),
        "{reason:?}"
    );
}

#[test]
fn trailing_bytes_are_malformed() {
    let issuer = TestIssuer::new(8);
    let mut cose = issuer.sign(&sample_claims(issue_time()));
    cose.push(0);

    let reason = invalid_reason(verify_cose(
        &cose,
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(
            reason,
            InvalidReason::Malformed {
                detail: Malformed::NotCoseSign1 { .. }
            }
        ),
        "{reason:?}"
    );
}

#[test]
fn flipped_signature_byte_is_bad_signature() {
    let issuer = TestIssuer::new(8);
    let mut sign1 =
        issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));
    sign1.signature[10] ^= 0x01;

    let reason = invalid_reason(verify_cose(
        &reencode(sign1),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(reason, InvalidReason::BadSignature);
}

#[test]
fn changed_payload_is_bad_signature() {
    let issuer = TestIssuer::new(8);
    let mut sign1 =
        issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));
    let other = issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));
    sign1.payload = other.payload;

    let reason = invalid_reason(verify_cose(
        &reencode(sign1),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(reason, InvalidReason::BadSignature);
}

#[test]
fn unknown_algorithm_is_malformed() {
    let issuer = TestIssuer::new(8);
    let labels = [
        RegisteredLabelWithPrivate::PrivateUse(-999_999),
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256),
        RegisteredLabelWithPrivate::Text("unknown".to_owned()),
    ];
    for label in labels {
        let mut sign1 =
            issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));
        sign1.protected.header.alg = Some(label.clone());

        let reason = invalid_reason(verify_cose(
            &reencode(sign1),
            &issuer.trust_list,
            &no_revocations(),
            issue_time(),
        ));

        assert!(
            matches!(
                reason,
                InvalidReason::Malformed {
                    detail: Malformed::UnsupportedAlgorithm { .. }
                }
            ),
            "{label:?}: {reason:?}"
        );
    }
}

#[test]
fn added_protected_attribute_is_bad_signature() {
    let issuer = TestIssuer::new(8);
    let mut sign1 =
        issuer.sign_with_header(issuer.protected_header(), &sample_claims(issue_time()));
    sign1.protected.header.content_type = Some(coset::ContentType::Assigned(
        iana::CoapContentFormat::TextPlainUtf8,
    ));

    let reason = invalid_reason(verify_cose(
        &reencode(sign1),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(reason, InvalidReason::BadSignature);
}

#[test]
fn removed_protected_attribute_is_bad_signature() {
    let issuer = TestIssuer::new(8);
    let mut header = issuer.protected_header();
    header.content_type = Some(coset::ContentType::Assigned(
        iana::CoapContentFormat::TextPlainUtf8,
    ));
    let mut sign1 = issuer.sign_with_header(header, &sample_claims(issue_time()));
    assert!(verify_cose(
        &reencode(sign1.clone()),
        &issuer.trust_list,
        &no_revocations(),
        issue_time()
    )
    .is_valid());
    sign1.protected.header.content_type = None;

    let reason = invalid_reason(verify_cose(
        &reencode(sign1),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert_eq!(reason, InvalidReason::BadSignature);
}

#[test]
fn kid_only_in_unprotected_header_is_malformed() {
    let issuer = TestIssuer::new(8);
    let protected = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .build();
    let mut sign1 = issuer.sign_with_header(protected, &sample_claims(issue_time()));
    sign1.unprotected.key_id = issuer.key_id.as_bytes().to_vec();

    let reason = invalid_reason(verify_cose(
        &reencode(sign1),
        &issuer.trust_list,
        &no_revocations(),
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

#[test]
fn signed_garbage_payload_is_bad_claims() {
    use ed25519_dalek::Signer as _;
    let issuer = TestIssuer::new(8);
    let sign1 = coset::CoseSign1Builder::new()
        .protected(issuer.protected_header())
        .payload(b"not a claims set".to_vec())
        .create_signature(b"", |tbs| issuer.signing_key.sign(tbs).to_bytes().to_vec())
        .build();

    let reason = invalid_reason(verify_cose(
        &sign1.to_tagged_vec().unwrap(),
        &issuer.trust_list,
        &no_revocations(),
        issue_time(),
    ));

    assert!(
        matches!(
            reason,
            InvalidReason::Malformed {
                detail: Malformed::BadClaims { .. }
            }
        ),
        "{reason:?}"
    );
}

#[test]
fn verification_serializes_reason_code() {
    let reason = InvalidReason::BadSignature;
    let json = serde_json::to_value(Verification::Invalid { reason }).unwrap();

    assert_eq!(json["status"], "invalid");
    assert_eq!(json["reason"]["reason"], "bad_signature");
}
