//! Schema upcasting across crates. A `CodeRejected` payload in its version-1 shape, encoded by
//! hand as CBOR bytes, is stored in a real SQLite event store. It must read back as the
//! version-2 event through `Event::decode`, both directly and in the projector.

use chrono::NaiveDate;
use domain::events::{current_schema_version, CODE_REJECTED_SCHEMA_VERSION, CODE_REJECTED_V1_MAX_ATTEMPTS};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, SessionId};
use domain::rejection::CodeRejectionReason;
use domain::Event;
use projections::Projections;
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};
use uuid::Uuid;

/// Minimal CBOR writer for the old payload, so the test does not depend on how today's types
/// serialize.
struct Cbor(Vec<u8>);

impl Cbor {
    /// Writes a major type with its argument in the shortest form (RFC 8949 section 3).
    fn head(&mut self, major: u8, argument: u64) -> &mut Self {
        let major = major << 5;
        match argument {
            0..=23 => self.0.push(major | argument as u8),
            24..=0xff => self.0.extend([major | 24, argument as u8]),
            _ => {
                self.0.push(major | 26);
                self.0.extend((argument as u32).to_be_bytes());
            }
        }
        self
    }

    fn map(&mut self, entries: u64) -> &mut Self {
        self.head(5, entries)
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.head(3, text.len() as u64);
        self.0.extend(text.as_bytes());
        self
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.head(2, bytes.len() as u64);
        self.0.extend(bytes);
        self
    }

    fn unsigned(&mut self, value: u64) -> &mut Self {
        self.head(0, value)
    }
}

/// Encodes `CodeRejected` as version-1 builds wrote it: the tagged map without `max_attempts`.
/// Identifiers are UUIDs, which serialize as 16-byte strings in CBOR.
fn code_rejected_v1(appointment_id: AppointmentId, centre_id: CentreId, attempt: u64) -> Vec<u8> {
    let mut cbor = Cbor(Vec::new());
    cbor.map(2).text("type").text("CodeRejected").text("data").map(5);
    cbor.text("appointment_id").bytes(appointment_id.0.as_bytes());
    cbor.text("centre_id").bytes(centre_id.0.as_bytes());
    cbor.text("verifier_id").text("tok_verifier_1");
    cbor.text("reason").text("wrong_code");
    cbor.text("attempt").unsigned(attempt);
    cbor.0
}

fn stored(event_type: &str, schema_version: u16, payload: Vec<u8>) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version,
        payload,
        metadata: Metadata { actor_id: "tok_verifier_1".into(), actor_role: "verifier".into(), request_id: "r1".into(), idempotency_key: None },
    }
}

/// Stores a booking (current version) and a version-1 rejection of it; returns the store.
async fn store_with_v1_rejection(dir: &std::path::Path, appointment_id: AppointmentId, centre_id: CentreId) -> std::sync::Arc<SqliteStore> {
    let store = SqliteStore::open(&dir.join("events.db")).await.unwrap();
    let booked = Event::AppointmentBooked {
        appointment_id,
        beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
        session_id: SessionId::new(Uuid::new_v4()),
        centre_id,
        date: NaiveDate::from_ymd_opt(2021, 5, 10).unwrap(),
        vaccine: "COVAXIN".into(),
        dose_number: 1,
        walk_in: false,
    };
    let events = vec![
        stored(booked.event_type(), booked.schema_version(), booked.encode()),
        stored("CodeRejected", 1, code_rejected_v1(appointment_id, centre_id, 3)),
    ];
    store
        .append(vec![StreamAppend { stream_id: appointment_id.stream_id(), expected: ExpectedRevision::NoStream, events }])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn v1_payload_decodes_as_v2() {
    let dir = tempfile::tempdir().unwrap();
    let appointment_id = AppointmentId::new(Uuid::new_v4());
    let centre_id = CentreId::new(Uuid::new_v4());
    let store = store_with_v1_rejection(dir.path(), appointment_id, centre_id).await;

    let events = store.read_stream(&appointment_id.stream_id(), 0).await.unwrap();
    let rejection = &events[1];
    assert_eq!(rejection.schema_version, 1, "the stored version stays 1");
    let decoded = Event::decode(&rejection.event_type, rejection.schema_version, &rejection.payload).unwrap();

    let expected = Event::CodeRejected {
        appointment_id,
        centre_id,
        verifier_id: "tok_verifier_1".into(),
        reason: CodeRejectionReason::WrongCode,
        attempt: 3,
        max_attempts: CODE_REJECTED_V1_MAX_ATTEMPTS,
    };
    assert_eq!(decoded, expected);
    assert_eq!(decoded.schema_version(), CODE_REJECTED_SCHEMA_VERSION);
}

#[tokio::test]
async fn projector_reads_v1_payload() {
    let dir = tempfile::tempdir().unwrap();
    let appointment_id = AppointmentId::new(Uuid::new_v4());
    let store = store_with_v1_rejection(dir.path(), appointment_id, CentreId::new(Uuid::new_v4())).await;

    let projections = Projections::open(&dir.path().join("projections.db")).unwrap();
    let events = store.read_all(0, 10).await.unwrap();
    let checkpoint = projections.apply_batch(&events).unwrap();

    assert_eq!(checkpoint, 2);
    let row = projections.appointment(&appointment_id.to_string()).unwrap().expect("appointment row");
    assert_eq!(row.rejected_attempts, 3);
}

#[test]
fn versions_per_type() {
    assert_eq!(current_schema_version("CodeRejected"), 2);
    assert_eq!(current_schema_version("AppointmentBooked"), 1);
    assert_eq!(current_schema_version("NoSuchEvent"), 1);
}

#[test]
fn v1_shape_with_wrong_field_rejected() {
    let mut payload = code_rejected_v1(AppointmentId::new(Uuid::new_v4()), CentreId::new(Uuid::new_v4()), 1);
    // Turn the `attempt` key into `attemps`: the upcast map then lacks a required field.
    let at = payload.windows(7).position(|window| window == b"attempt").unwrap();
    payload[at + 6] = b's';

    let err = Event::decode("CodeRejected", 1, &payload).unwrap_err();

    assert!(err.to_string().contains("CodeRejected v1"), "{err}");
}
