//! The batched apply path (`apply_batch`, `apply_decoded`) and the rebuild into a fresh file,
//! checked against the per-event reference (`apply_batch_per_event`). A random log uses every
//! event type, including updates of rows booked in an earlier batch and of rows never booked.
//! Every table of both projection files must end with identical contents, whatever the batch sizes.

use chrono::NaiveDate;
use domain::dispute::{encode_finding, Finding};
use domain::events::{CancellationReason, Gender, PhotoIdType, RevocationReason};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, DisputeId, SessionId};
use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use domain::Event;
use projections::fraud::{FraudConfig, FraudProjections};
use projections::{DecodedPage, Projections};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::types::Value;
use rusqlite::Connection;
use store::{Metadata, RecordedEvent};
use uuid::Uuid;

/// 2021-05-10 23:00 India time, so the log crosses midnight and the daily counters get two days.
const START_MS: i64 = 1_620_667_800_000;

/// One booked appointment of the generated log.
#[derive(Clone, Copy)]
struct Booking {
    appointment_id: AppointmentId,
    beneficiary_id: BeneficiaryId,
    session_id: SessionId,
    centre_id: CentreId,
    certificate_id: Option<CertificateId>,
}

/// Generates a random log of `count` events with a seeded generator.
fn random_log(seed: u64, count: usize) -> Vec<RecordedEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let uuid = |rng: &mut StdRng| Uuid::from_u128(rng.gen());
    let verifiers = ["v-1", "v-2", "v-3", "v-4"];
    let districts = ["Pune", "Nashik", "Thane"];
    let date = NaiveDate::from_ymd_opt(2021, 5, 11).unwrap();
    let mut events = Vec::new();
    let mut now_ms = START_MS;
    let mut centres: Vec<CentreId> = Vec::new();
    let mut sessions: Vec<(SessionId, CentreId)> = Vec::new();
    let mut bookings: Vec<Booking> = Vec::new();
    let mut disputes: Vec<(DisputeId, AppointmentId)> = Vec::new();

    while events.len() < count {
        now_ms += rng.gen_range(0..20_000);
        let verifier = verifiers.choose(&mut rng).copied().unwrap_or("v-1");
        // A booking of the log, or now and then one that was never booked.
        let booking = if bookings.is_empty() || rng.gen_bool(0.03) {
            Booking {
                appointment_id: AppointmentId::new(uuid(&mut rng)),
                beneficiary_id: BeneficiaryId::new(uuid(&mut rng)),
                session_id: SessionId::new(uuid(&mut rng)),
                centre_id: CentreId::new(uuid(&mut rng)),
                certificate_id: None,
            }
        } else if rng.gen_bool(0.7) {
            // Mostly recent bookings, so that one batch often contains a whole flow.
            let from = bookings.len().saturating_sub(20);
            bookings[rng.gen_range(from..bookings.len())]
        } else {
            bookings[rng.gen_range(0..bookings.len())]
        };
        let other_centre = centres.choose(&mut rng).copied().unwrap_or(booking.centre_id);
        let mut actor = ("system".to_owned(), "admin".to_owned());
        let event = match rng.gen_range(0..30) {
            0 => {
                let centre_id = CentreId::new(uuid(&mut rng));
                centres.push(centre_id);
                let district = districts.choose(&mut rng).copied().unwrap_or("Pune");
                Event::CentreRegistered { centre_id, name: "PHC".into(), district: district.into(), state: "MH".into(), pincode: "411001".into() }
            }
            1 if !centres.is_empty() => {
                let session_id = SessionId::new(uuid(&mut rng));
                let centre_id = other_centre;
                sessions.push((session_id, centre_id));
                Event::SessionScheduled { session_id, centre_id, district: "Pune".into(), date, vaccine: "COVAXIN".into(), capacity: 100, min_age: 18 }
            }
            2 => match sessions.choose(&mut rng) {
                Some((session_id, _)) => Event::SessionCancelled { session_id: *session_id, reason: "rain".into() },
                None => continue,
            },
            3 | 4 => Event::SeatReserved { session_id: booking.session_id, appointment_id: booking.appointment_id },
            5 => Event::SeatReleased { session_id: booking.session_id, appointment_id: booking.appointment_id },
            6 => Event::BeneficiaryRegistered {
                beneficiary_id: booking.beneficiary_id,
                mobile_hash: format!("{:064x}", rng.gen::<u64>()),
                name: "Asha".into(),
                year_of_birth: rng.gen_range(1940..2003),
                gender: Gender::Female,
                photo_id_type: PhotoIdType::DrivingLicence,
                photo_id_masked: "XXXX1234".into(),
                walk_in: rng.gen_bool(0.2),
            },
            7 => Event::BeneficiaryCorrected { beneficiary_id: booking.beneficiary_id, name: "Asha K".into(), year_of_birth: 1970, gender: Gender::Other },
            8 => Event::BeneficiaryDoseRecorded {
                beneficiary_id: booking.beneficiary_id,
                appointment_id: booking.appointment_id,
                dose_number: rng.gen_range(1..3),
                vaccine: "COVAXIN".into(),
                date,
            },
            9..=11 => {
                let (session_id, centre_id) = sessions.choose(&mut rng).copied().unwrap_or((SessionId::new(uuid(&mut rng)), other_centre));
                let new = Booking {
                    appointment_id: AppointmentId::new(uuid(&mut rng)),
                    beneficiary_id: if rng.gen_bool(0.5) { booking.beneficiary_id } else { BeneficiaryId::new(uuid(&mut rng)) },
                    session_id,
                    centre_id,
                    certificate_id: None,
                };
                bookings.push(new);
                let walk_in = rng.gen_bool(0.3);
                if walk_in {
                    actor = (verifier.to_owned(), "verifier".to_owned());
                }
                Event::AppointmentBooked {
                    appointment_id: new.appointment_id,
                    beneficiary_id: new.beneficiary_id,
                    session_id,
                    centre_id,
                    date,
                    vaccine: "COVAXIN".into(),
                    dose_number: 1,
                    walk_in,
                }
            }
            12 => Event::AppointmentCancelled { appointment_id: booking.appointment_id, reason: CancellationReason::ByCitizen },
            13 | 14 => Event::CodeVerified { appointment_id: booking.appointment_id, centre_id: booking.centre_id, verifier_id: verifier.into() },
            15..=18 => {
                let reasons = [CodeRejectionReason::WrongCode, CodeRejectionReason::WrongCode, CodeRejectionReason::WrongCentre, CodeRejectionReason::WrongDate, CodeRejectionReason::Locked];
                let reason = reasons.choose(&mut rng).copied().unwrap_or(CodeRejectionReason::WrongCode);
                let centre_id = if reason == CodeRejectionReason::WrongCentre { other_centre } else { booking.centre_id };
                Event::CodeRejected { appointment_id: booking.appointment_id, centre_id, verifier_id: verifier.into(), reason, attempt: rng.gen_range(1..6), max_attempts: 5 }
            }
            19 => Event::AppointmentLocked { appointment_id: booking.appointment_id, rejected_attempts: 5 },
            20 => Event::AppointmentUnlocked { appointment_id: booking.appointment_id, supervisor_id: "s-1".into(), reason: "checked".into() },
            21 | 22 => Event::DoseAdministered {
                appointment_id: booking.appointment_id,
                beneficiary_id: booking.beneficiary_id,
                centre_id: booking.centre_id,
                vaccine: "COVAXIN".into(),
                batch: format!("B{}", rng.gen_range(0..9)),
                dose_number: 1,
                vaccinator_id: verifier.into(),
                administered_at: chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default(),
            },
            23 => {
                let reasons = [DoseRejectionReason::CodeNotVerified, DoseRejectionReason::WrongCentre, DoseRejectionReason::AlreadyAdministered];
                let reason = reasons.choose(&mut rng).copied().unwrap_or(DoseRejectionReason::CodeNotVerified);
                Event::DoseAdministrationRejected { appointment_id: booking.appointment_id, centre_id: other_centre, vaccinator_id: verifier.into(), reason }
            }
            24 => {
                let certificate_id = CertificateId::new(uuid(&mut rng));
                if let Some(stored) = bookings.iter_mut().find(|stored| stored.appointment_id == booking.appointment_id) {
                    stored.certificate_id = Some(certificate_id);
                }
                Event::CertificateIssued {
                    certificate_id,
                    appointment_id: booking.appointment_id,
                    beneficiary_id: booking.beneficiary_id,
                    key_id: "k".into(),
                    cose_sha256: "00".repeat(32),
                    code_verified_position: 0,
                    dose_position: 0,
                }
            }
            25 => {
                // The issued certificate, or now and then another one, which must not mark the row.
                let certificate_id = match booking.certificate_id {
                    Some(id) if rng.gen_bool(0.8) => id,
                    _ => CertificateId::new(uuid(&mut rng)),
                };
                actor.1 = "investigator".into();
                Event::CertificateRevoked { certificate_id, appointment_id: booking.appointment_id, reason: RevocationReason::Fraud, note: "n".into() }
            }
            26 => {
                let dispute_id = DisputeId::new(uuid(&mut rng));
                disputes.push((dispute_id, booking.appointment_id));
                Event::DisputeRaised {
                    dispute_id,
                    appointment_id: booking.appointment_id,
                    beneficiary_id: booking.beneficiary_id,
                    kind: "dose_not_received".into(),
                    description: "I never went".into(),
                }
            }
            27 => match disputes.choose(&mut rng) {
                Some((dispute_id, appointment_id)) => Event::DisputeResolved {
                    dispute_id: *dispute_id,
                    appointment_id: *appointment_id,
                    finding: encode_finding(Finding::Upheld, "no dose"),
                    investigator_id: "i-1".into(),
                },
                None => continue,
            },
            _ => Event::SecurityCodeIssued { appointment_id: booking.appointment_id, code_hmac: "ab".repeat(32), key_id: "k".into() },
        };
        events.push(RecordedEvent {
            position: events.len() as u64 + 1,
            stream_id: event.stream_id(),
            revision: 0,
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            // Revocations and resolutions share a request id so that revocations match disputes.
            metadata: Metadata { actor_id: actor.0, actor_role: actor.1, request_id: "r".into(), idempotency_key: None },
            recorded_at_ms: now_ms,
        });
    }
    events
}

/// Splits `events` into batches of random sizes from 1 to `max`.
fn random_batches(events: &[RecordedEvent], seed: u64, max: usize) -> Vec<&[RecordedEvent]> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batches = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(rng.gen_range(1..=max).min(rest.len()));
        batches.push(batch);
        rest = tail;
    }
    batches
}

/// Returns every row of every table of a SQLite file, tables by name, rows sorted.
fn table_contents(path: &std::path::Path) -> Vec<(String, Vec<Vec<Value>>)> {
    let connection = Connection::open(path).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let mut statement = connection.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let columns = statement.column_count();
            let mut rows: Vec<Vec<Value>> = statement
                .query_map([], |row| (0..columns).map(|at| row.get::<_, Value>(at)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.sort_by(|left, right| format!("{left:?}").cmp(&format!("{right:?}")));
            (table, rows)
        })
        .collect()
}

fn assert_same_tables(left: &std::path::Path, right: &std::path::Path) {
    let (left, right) = (table_contents(left), table_contents(right));
    assert_eq!(left.len(), right.len());
    for ((table, left_rows), (_, right_rows)) in left.iter().zip(&right) {
        assert_eq!(left_rows.len(), right_rows.len(), "row count of {table}");
        for (left_row, right_row) in left_rows.iter().zip(right_rows) {
            assert_eq!(left_row, right_row, "a row of {table}");
        }
    }
}

#[test]
fn batched_matches_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let events = random_log(7, 6_000);

    let reference = Projections::open(&dir.path().join("reference.db")).unwrap();
    let reference_fraud = FraudProjections::open(&dir.path().join("reference-fraud.db"), FraudConfig::default()).unwrap();
    for batch in random_batches(&events, 1, 50) {
        reference.apply_batch_per_event(batch).unwrap();
        reference_fraud.apply_batch_per_event(batch).unwrap();
    }

    let batched = Projections::open(&dir.path().join("batched.db")).unwrap();
    let batched_fraud = FraudProjections::open(&dir.path().join("batched-fraud.db"), FraudConfig::default()).unwrap();
    for batch in random_batches(&events, 2, 700) {
        batched.apply_batch(batch).unwrap();
        // A batch read twice changes nothing.
        batched.apply_batch(batch).unwrap();
        let page = DecodedPage::decode(batch.to_vec()).unwrap();
        batched_fraud.apply_decoded(&page).unwrap();
    }

    assert_eq!(batched.checkpoint(), events.len() as u64);
    assert_eq!(batched_fraud.checkpoint(), events.len() as u64);
    assert_same_tables(&dir.path().join("reference.db"), &dir.path().join("batched.db"));
    assert_same_tables(&dir.path().join("reference-fraud.db"), &dir.path().join("batched-fraud.db"));

    // The log must exercise the rows the batched path caches and the alert rules.
    let fraud = Connection::open(dir.path().join("batched-fraud.db")).unwrap();
    for table in ["alerts", "disputes", "centre_days", "verifier_days", "attempts"] {
        let rows: i64 = fraud.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).unwrap();
        assert!(rows > 0, "{table} is empty");
    }
    let status = Connection::open(dir.path().join("batched.db")).unwrap();
    let revoked: i64 = status.query_row("SELECT COUNT(*) FROM appointments WHERE certificate_revoked = 1", [], |row| row.get(0)).unwrap();
    assert!(revoked > 0, "no certificate revoked");
}

/// Returns the names and SQL of the tables and indexes of a file.
fn schema_of(path: &std::path::Path) -> Vec<(String, Option<String>)> {
    let connection = Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT name, sql FROM sqlite_master ORDER BY name").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[test]
fn rebuild_matches_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let events = random_log(11, 4_000);

    let reference = Projections::open(&dir.path().join("reference.db")).unwrap();
    let reference_fraud = FraudProjections::open(&dir.path().join("reference-fraud.db"), FraudConfig::default()).unwrap();
    reference.apply_batch_per_event(&events).unwrap();
    reference_fraud.apply_batch_per_event(&events).unwrap();

    // An older file with other rows is replaced whole.
    let status_path = dir.path().join("projections.db");
    let fraud_path = dir.path().join("fraud.db");
    let old = Projections::open(&status_path).unwrap();
    old.apply_batch(&random_log(12, 300)).unwrap();
    drop(old);

    let status = Projections::rebuild(&status_path).unwrap();
    let fraud = FraudProjections::rebuild(&fraud_path, FraudConfig::default()).unwrap();
    for batch in random_batches(&events, 3, 900) {
        let page = DecodedPage::decode(batch.to_vec()).unwrap();
        status.apply_decoded(&page).unwrap();
        fraud.apply_decoded(&page).unwrap();
    }
    assert_eq!(status.finish().unwrap(), events.len() as u64);
    assert_eq!(fraud.finish().unwrap(), events.len() as u64);

    assert_same_tables(&dir.path().join("reference.db"), &status_path);
    assert_same_tables(&dir.path().join("reference-fraud.db"), &fraud_path);
    assert_eq!(schema_of(&dir.path().join("reference.db")), schema_of(&status_path));
    assert_eq!(schema_of(&dir.path().join("reference-fraud.db")), schema_of(&fraud_path));
    assert!(!dir.path().join("projections.db.rebuild").exists());

    // The swapped-in files open as live projections at their checkpoint, in WAL mode.
    let reopened = Projections::open(&status_path).unwrap();
    assert_eq!(reopened.checkpoint(), events.len() as u64);
    let reopened_fraud = FraudProjections::open(&fraud_path, FraudConfig::default()).unwrap();
    assert_eq!(reopened_fraud.checkpoint(), events.len() as u64);
    let mode: String = Connection::open(&status_path).unwrap().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}
