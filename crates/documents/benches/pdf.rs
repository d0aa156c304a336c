//! Certificate and acknowledgement-slip PDF generation, and reading the QR text back.

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use documents::{render_certificate_pdf, render_slip_pdf, read_qr_text, CertificateDocument, SlipDocument};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{BeneficiaryId, CertificateId};
use signer::{KeyId, VaccinationRecord};
use uuid::Uuid;

fn record() -> VaccinationRecord {
    VaccinationRecord {
        beneficiary_name: "Asha Devi".into(),
        year_of_birth: 1961,
        gender: Gender::Female,
        photo_id_type: PhotoIdType::Aadhaar,
        photo_id_masked: "XXXXXXXX1234".into(),
        beneficiary_id: BeneficiaryId::new(Uuid::from_u128(1)),
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
        certificate_id: CertificateId::new(Uuid::from_u128(2)),
        code_verified_position: 10,
        dose_position: 11,
    }
}

fn slip() -> SlipDocument {
    SlipDocument {
        appointment_id: Uuid::from_u128(3).to_string(),
        beneficiary_name: "Asha Devi".into(),
        beneficiary_id: Uuid::from_u128(1).to_string(),
        year_of_birth: 1961,
        photo_id: "Aadhaar XXXXXXXX1234".into(),
        centre_name: "UPHC Kothrud".into(),
        centre_address: "Pune, Maharashtra 411038".into(),
        date: NaiveDate::from_ymd_opt(2021, 9, 17).unwrap(),
        vaccine: "COVISHIELD".into(),
        dose_number: 1,
        security_code: "0427".into(),
        status: "booked".into(),
        generated_at: Utc.with_ymd_and_hms(2021, 9, 10, 9, 0, 0).unwrap(),
    }
}

fn pdf(c: &mut Criterion) {
    let record = record();

    // A QR text as long as a signed certificate's (about 700 characters).
    let qr_text = format!("VXL1:{}", "6BF-OX.N*TS0BI$ZD.P9UPBWK9%1 ".repeat(24));
    let document = CertificateDocument {
        record: &record,
        key_id: KeyId::from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        issuer: "vaxledger",
        issued_at: Utc.with_ymd_and_hms(2021, 9, 17, 11, 0, 0).unwrap(),
        qr_text: &qr_text,
        verify_url: "http://127.0.0.1:8080/verify",
    };
    let slip = slip();

    let mut group = c.benchmark_group("pdf");
    group.sample_size(20);
    group.bench_function("render certificate", |b| b.iter(|| render_certificate_pdf(black_box(&document)).unwrap()));
    group.bench_function("render slip", |b| b.iter(|| render_slip_pdf(black_box(&slip)).unwrap()));
    let certificate_pdf = render_certificate_pdf(&document).unwrap();
    group.bench_function("read QR text from certificate PDF", |b| b.iter(|| read_qr_text(black_box(&certificate_pdf)).unwrap()));
    group.finish();
}

criterion_group!(benches, pdf);
criterion_main!(benches);
