//! CBOR encode and decode of each event type.

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use domain::events::{CancellationReason, Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, SessionId};
use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use domain::Event;
use uuid::Uuid;

fn samples() -> Vec<Event> {
    let appointment_id = AppointmentId::new(Uuid::new_v4());
    let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
    let session_id = SessionId::new(Uuid::new_v4());
    let centre_id = CentreId::new(Uuid::new_v4());
    let date = NaiveDate::from_ymd_opt(2021, 9, 17).unwrap();
    vec![
        Event::CentreRegistered { centre_id, name: "UPHC Kothrud".into(), district: "Pune".into(), state: "Maharashtra".into(), pincode: "411038".into() },
        Event::SessionScheduled { session_id, centre_id, district: "Pune".into(), date, vaccine: "COVISHIELD".into(), capacity: 300, min_age: 18 },
        Event::SeatReserved { session_id, appointment_id },
        Event::BeneficiaryRegistered {
            beneficiary_id,
            mobile_hash: "ab".repeat(32),
            name: "Asha Devi".into(),
            year_of_birth: 1961,
            gender: Gender::Female,
            photo_id_type: PhotoIdType::Aadhaar,
            photo_id_masked: "XXXXXXXX1234".into(),
            walk_in: false,
        },
        Event::AppointmentBooked { appointment_id, beneficiary_id, session_id, centre_id, date, vaccine: "COVISHIELD".into(), dose_number: 1, walk_in: false },
        Event::SecurityCodeIssued { appointment_id, code_hmac: "cd".repeat(32), key_id: "0011223344556677".into() },
        Event::CodeVerified { appointment_id, centre_id, verifier_id: "0123456789abcdef".into() },
        Event::CodeRejected { appointment_id, centre_id, verifier_id: "0123456789abcdef".into(), reason: CodeRejectionReason::WrongCode, attempt: 1, max_attempts: 5 },
        Event::DoseAdministered {
            appointment_id,
            beneficiary_id,
            centre_id,
            vaccine: "COVISHIELD".into(),
            batch: "4121Z005".into(),
            dose_number: 1,
            vaccinator_id: "0123456789abcdef".into(),
            administered_at: Utc.with_ymd_and_hms(2021, 9, 17, 5, 30, 0).unwrap(),
        },
        Event::DoseAdministrationRejected { appointment_id, centre_id, vaccinator_id: "0123456789abcdef".into(), reason: DoseRejectionReason::CodeNotVerified },
        Event::CertificateIssued {
            certificate_id: CertificateId::new(Uuid::new_v4()),
            appointment_id,
            beneficiary_id,
            key_id: "0011223344556677".into(),
            cose_sha256: "ef".repeat(32),
            code_verified_position: 10,
            dose_position: 11,
        },
        Event::AppointmentCancelled { appointment_id, reason: CancellationReason::ByCitizen },
    ]
}

fn codec(c: &mut Criterion) {
    for event in samples() {
        let name = event.event_type();
        let bytes = event.encode();
        c.bench_function(&format!("encode {name}"), |b| b.iter(|| black_box(&event).encode()));
        c.bench_function(&format!("decode {name}"), |b| {
            b.iter(|| Event::decode(name, event.schema_version(), black_box(&bytes)).unwrap())
        });
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
