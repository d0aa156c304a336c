//! Interoperability: a certificate made by the signer parses and verifies with an independent
//! COSE/CWT reader in Python (`cbor2` + `cryptography`, see tests/interop/requirements.txt).
//! When Python or those packages are missing the test fails under `CI=true` and skips elsewhere.

use std::process::Command;

use chrono::{NaiveDate, Utc};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{BeneficiaryId, CertificateId};
use signer::certificate::{sign_certificate, CertificateClaims};
use signer::keys::KeyRing;
use signer::record::VaccinationRecord;

fn python_ready() -> bool {
    let ready = Command::new("python3")
        .args(["-c", "import cbor2, cryptography"])
        .status()
        .is_ok_and(|status| status.success());
    if !ready {
        let message = "python3 with cbor2 and cryptography is missing: pip install -r tests/interop/requirements.txt";
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{message}");
        }
        eprintln!("skipping: {message}");
    }
    ready
}

fn claims() -> CertificateClaims {
    let certificate_id = CertificateId::new(uuid::Uuid::new_v4());
    CertificateClaims {
        issuer: "vaxledger".into(),
        issued_at: Utc::now(),
        certificate_id,
        record: VaccinationRecord {
            beneficiary_name: "अमित कुमार".into(),
            year_of_birth: 1975,
            gender: Gender::Male,
            photo_id_type: PhotoIdType::Passport,
            photo_id_masked: "XXXX5678".into(),
            beneficiary_id: BeneficiaryId::new(uuid::Uuid::new_v4()),
            vaccine: "COVAXIN".into(),
            manufacturer: "Bharat Biotech".into(),
            dose_number: 2,
            total_doses: 2,
            vaccination_date: NaiveDate::from_ymd_opt(2021, 9, 17).unwrap(),
            centre_name: "District Hospital".into(),
            district: "Nashik".into(),
            state: "Maharashtra".into(),
            vaccinator_id: "0123456789abcdef".into(),
            batch: "BB21-117".into(),
            certificate_id,
            code_verified_position: 41,
            dose_position: 42,
        },
    }
}

fn run_reader(dir: &std::path::Path, cose: &[u8], public_key: &[u8]) -> std::process::Output {
    std::fs::write(dir.join("certificate.cose"), cose).unwrap();
    std::fs::write(dir.join("issuer.pub"), public_key).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify_cose.py");
    Command::new("python3").arg(script).arg(dir.join("certificate.cose")).arg(dir.join("issuer.pub")).output().unwrap()
}

#[test]
fn python_reader_verifies_certificate() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path().join("keys")).unwrap();
    let key = keys.active_key().unwrap();
    let claims = claims();
    let cose = sign_certificate(&key, &claims).unwrap();
    let public_key = key.verifying_key().to_bytes();

    let output = run_reader(dir.path(), &cose, &public_key);
    assert!(output.status.success(), "python reader failed: {}", String::from_utf8_lossy(&output.stderr));
    let decoded: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(decoded["iss"], "vaxledger");
    assert_eq!(decoded["iat"], claims.issued_at.timestamp());
    assert_eq!(decoded["cti_hex"], hex::encode(claims.certificate_id.0.as_bytes()));
    assert_eq!(decoded["kid_hex"], key.key_id().to_hex());
    assert_eq!(decoded["record"]["beneficiary_name"], "अमित कुमार");
    assert_eq!(decoded["record"]["vaccination_date"], "2021-09-17");
    assert_eq!(decoded["record"]["dose_number"], 2);
}

#[test]
fn python_reader_rejects_tampered_certificate() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path().join("keys")).unwrap();
    let key = keys.active_key().unwrap();
    let mut cose = sign_certificate(&key, &claims()).unwrap();
    let last = cose.len() - 1;
    cose[last] ^= 0x01;
    let output = run_reader(dir.path(), &cose, &key.verifying_key().to_bytes());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad signature"));
}
