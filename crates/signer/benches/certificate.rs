//! Certificate sign and verify, and QR text encode and decode.

use std::collections::HashSet;

use chrono::{NaiveDate, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{BeneficiaryId, CertificateId};
use signer::certificate::{sign_certificate, CertificateClaims};
use signer::keys::KeyRing;
use signer::record::VaccinationRecord;
use uuid::Uuid;

fn claims() -> CertificateClaims {
    let certificate_id = CertificateId::new(Uuid::new_v4());
    CertificateClaims {
        issuer: "vaxledger".into(),
        issued_at: Utc::now(),
        certificate_id,
        record: VaccinationRecord {
            beneficiary_name: "Asha Devi".into(),
            year_of_birth: 1961,
            gender: Gender::Female,
            photo_id_type: PhotoIdType::Aadhaar,
            photo_id_masked: "XXXXXXXX1234".into(),
            beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
            vaccine: "COVISHIELD".into(),
            manufacturer: "Serum Institute of India".into(),
            dose_number: 1,
            total_doses: 2,
            vaccination_date: NaiveDate::from_ymd_opt(2021, 9, 17).unwrap(),
            centre_name: "UPHC Kothrud".into(),
            district: "Pune".into(),
            state: "Maharashtra".into(),
            vaccinator_id: "0123456789abcdef".into(),
            batch: "4121Z005".into(),
            certificate_id,
            code_verified_position: 10,
            dose_position: 11,
        },
    }
}

fn certificate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create(dir.path()).unwrap();
    let key = keys.active_key().unwrap();
    let claims = claims();
    let cose = sign_certificate(&key, &claims).unwrap();
    let qr_text = signer::qr::encode_qr(&cose);
    let trust = keys.trust_list(Utc::now());
    let revoked = HashSet::new();

    c.bench_function("certificate sign", |b| b.iter(|| sign_certificate(&key, black_box(&claims)).unwrap()));
    c.bench_function("certificate verify (QR text)", |b| {
        b.iter(|| assert!(signer::verify::verify_qr(black_box(&qr_text), &trust, &revoked, Utc::now()).is_valid()))
    });
    c.bench_function("QR text encode", |b| b.iter(|| signer::qr::encode_qr(black_box(&cose))));
    c.bench_function("QR text decode", |b| b.iter(|| signer::qr::decode_qr(black_box(&qr_text)).unwrap()));
}

criterion_group!(benches, certificate);
criterion_main!(benches);
