//! Test helpers shared by the signer's integration tests: an in-memory event store, a ledger
//! fixture that appends a realistic appointment history, and the path of the published vectors.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use domain::events::{Event, Gender, PhotoIdType, RevocationReason};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, SessionId};
use store::{
    AppendOutcome, EventStore, ExpectedRevision, Metadata, NewEvent, RecordedEvent, StoreError,
    StreamAppend,
};
use tokio::sync::watch;
use uuid::Uuid;

/// Event store kept in memory, with the same position, revision and expected-revision rules as
/// the trait documents.
pub struct MemoryStore {
    /// Every event in position order.
    events: Mutex<Vec<RecordedEvent>>,
    /// Head position notifier.
    head: watch::Sender<u64>,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            head: watch::channel(0).0,
        }
    }
}

/// Returns the current revision of a stream in `events`.
fn stream_revision(events: &[RecordedEvent], stream_id: &str) -> Option<u64> {
    events
        .iter()
        .rev()
        .find(|event| event.stream_id == stream_id)
        .map(|event| event.revision)
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, appends: Vec<StreamAppend>) -> Result<AppendOutcome, StoreError> {
        let mut events = self.events.lock().unwrap();

        for append in &appends {
            let actual = stream_revision(&events, &append.stream_id);
            let expectation_met = match append.expected {
                ExpectedRevision::Any => true,
                ExpectedRevision::NoStream => actual.is_none(),
                ExpectedRevision::Exact(revision) => actual == Some(revision),
            };
            if !expectation_met {
                return Err(StoreError::WrongExpectedRevision {
                    stream_id: append.stream_id.clone(),
                    expected: append.expected,
                    actual,
                });
            }
        }

        let mut first_position = None;
        let mut last_position = None;
        let mut revisions = Vec::new();
        let mut next_revisions: HashMap<String, Option<u64>> = HashMap::new();
        for append in appends {
            let revision = next_revisions
                .entry(append.stream_id.clone())
                .or_insert_with(|| stream_revision(&events, &append.stream_id));
            for event in append.events {
                let position = events.len() as u64 + 1;
                let next = revision.map_or(0, |r| r + 1);
                *revision = Some(next);
                events.push(RecordedEvent {
                    position,
                    stream_id: append.stream_id.clone(),
                    revision: next,
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at_ms: 0,
                });
                first_position.get_or_insert(position);
                last_position = Some(position);
            }
            revisions.push((append.stream_id.clone(), *revision));
        }

        let head = events.len() as u64;
        drop(events);
        self.head.send_replace(head);
        Ok(AppendOutcome {
            first_position,
            last_position,
            revisions,
        })
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.events.lock().unwrap();
        Ok(events
            .iter()
            .filter(|event| event.stream_id == stream_id && event.revision >= from_revision)
            .cloned()
            .collect())
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.events.lock().unwrap();
        Ok(events
            .iter()
            .filter(|event| event.position > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.events.lock().unwrap().len() as u64)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// Wraps a domain event for appending.
pub fn new_event(event: &Event) -> NewEvent {
    NewEvent {
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode(),
        metadata: Metadata {
            actor_id: "test".to_owned(),
            actor_role: "system".to_owned(),
            request_id: Uuid::new_v4().to_string(),
            idempotency_key: None,
        },
    }
}

/// Appends one event to its own stream, whatever the stream's revision; returns its position.
pub async fn append(store: &dyn EventStore, event: Event) -> u64 {
    let outcome = store
        .append(vec![StreamAppend {
            stream_id: event.stream_id(),
            expected: ExpectedRevision::Any,
            events: vec![new_event(&event)],
        }])
        .await
        .unwrap();
    outcome.last_position.unwrap()
}

/// Ids of one appointment's world: a centre, a session, a beneficiary and the appointment.
#[derive(Debug, Clone, Copy)]
pub struct Ledger {
    pub centre_id: CentreId,
    pub session_id: SessionId,
    pub beneficiary_id: BeneficiaryId,
    pub appointment_id: AppointmentId,
}

/// Session date of the fixture appointment.
pub fn session_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2021, 5, 10).unwrap()
}

/// Returns a fixed time on the session date: 18:00 UTC, which is 23:30 IST the same day.
pub fn issue_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 5, 10, 18, 0, 0).unwrap()
}

impl Ledger {
    /// Creates fresh ids.
    pub fn new() -> Self {
        Self {
            centre_id: CentreId::new(Uuid::new_v4()),
            session_id: SessionId::new(Uuid::new_v4()),
            beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
            appointment_id: AppointmentId::new(Uuid::new_v4()),
        }
    }

    /// Appends the centre and the beneficiary registration with one name correction.
    pub async fn register(&self, store: &dyn EventStore) {
        append(
            store,
            Event::CentreRegistered {
                centre_id: self.centre_id,
                name: "PHC Hebbal".to_owned(),
                district: "Bengaluru Urban".to_owned(),
                state: "Karnataka".to_owned(),
                pincode: "560024".to_owned(),
            },
        )
        .await;
        append(
            store,
            Event::BeneficiaryRegistered {
                beneficiary_id: self.beneficiary_id,
                mobile_hash: "ab12".to_owned(),
                name: "Asha Ramesh".to_owned(),
                year_of_birth: 1984,
                gender: Gender::Female,
                photo_id_type: PhotoIdType::Aadhaar,
                photo_id_masked: "XXXXXXXX1234".to_owned(),
                walk_in: false,
            },
        )
        .await;
        append(
            store,
            Event::BeneficiaryCorrected {
                beneficiary_id: self.beneficiary_id,
                name: "Asha R. Kumar".to_owned(),
                year_of_birth: 1985,
                gender: Gender::Female,
            },
        )
        .await;
    }

    /// Appends the booking; returns its position.
    pub async fn book(&self, store: &dyn EventStore) -> u64 {
        append(
            store,
            Event::AppointmentBooked {
                appointment_id: self.appointment_id,
                beneficiary_id: self.beneficiary_id,
                session_id: self.session_id,
                centre_id: self.centre_id,
                date: session_date(),
                vaccine: "COVISHIELD".to_owned(),
                dose_number: 1,
                walk_in: false,
            },
        )
        .await
    }

    /// Appends a code verification at `centre_id`; returns its position.
    pub async fn verify_code_at(&self, store: &dyn EventStore, centre_id: CentreId) -> u64 {
        append(
            store,
            Event::CodeVerified {
                appointment_id: self.appointment_id,
                centre_id,
                verifier_id: "verifier-7".to_owned(),
            },
        )
        .await
    }

    /// Appends a code verification at the booked centre; returns its position.
    pub async fn verify_code(&self, store: &dyn EventStore) -> u64 {
        self.verify_code_at(store, self.centre_id).await
    }

    /// Appends a dose at the booked centre; returns its position.
    pub async fn give_dose(&self, store: &dyn EventStore) -> u64 {
        append(
            store,
            Event::DoseAdministered {
                appointment_id: self.appointment_id,
                beneficiary_id: self.beneficiary_id,
                centre_id: self.centre_id,
                vaccine: "covishield".to_owned(),
                batch: "4121Z025".to_owned(),
                dose_number: 1,
                vaccinator_id: "vaccinator-3".to_owned(),
                administered_at: issue_time(),
            },
        )
        .await
    }

    /// Appends a revocation of `certificate_id`.
    pub async fn revoke(&self, store: &dyn EventStore, certificate_id: CertificateId) -> u64 {
        append(
            store,
            Event::CertificateRevoked {
                certificate_id,
                appointment_id: self.appointment_id,
                reason: RevocationReason::SupersededByCorrection,
                note: "name corrected".to_owned(),
            },
        )
        .await
    }

    /// Appends the whole flow: registrations, booking, code verification and dose. Returns the
    /// positions of the verification and the dose.
    pub async fn full_flow(&self, store: &dyn EventStore) -> (u64, u64) {
        self.register(store).await;
        self.book(store).await;
        let verified = self.verify_code(store).await;
        let dose = self.give_dose(store).await;
        (verified, dose)
    }
}

/// Returns the folder of the published test vectors (`../shared/vectors` beside the repository),
/// or `None` when it is missing outside CI. Panics in CI (`CI=true`) when it is missing, because
/// CI must run these tests.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    match check_vectors_dir(dir, in_ci) {
        Ok(found) => found,
        Err(message) => panic!("{message}"),
    }
}

/// Decides what a vector test does when `dir` is missing: an error in CI, a printed skip notice
/// and `None` elsewhere.
pub fn check_vectors_dir(dir: PathBuf, in_ci: bool) -> Result<Option<PathBuf>, String> {
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    if in_ci {
        return Err(format!(
            "test vectors folder {} is missing; CI must provide ../shared/vectors beside the clone",
            dir.display()
        ));
    }
    eprintln!(
        "SKIPPED: test vectors folder {} is missing; place the shared vectors beside the \
         repository to run this test",
        dir.display()
    );
    Ok(None)
}

/// Returns a record as the gate would build it for the fixture ledger.
pub fn sample_record(certificate_id: CertificateId) -> signer::VaccinationRecord {
    signer::VaccinationRecord {
        beneficiary_name: "Asha R. Kumar".to_owned(),
        year_of_birth: 1985,
        gender: Gender::Female,
        photo_id_type: PhotoIdType::Aadhaar,
        photo_id_masked: "XXXXXXXX1234".to_owned(),
        beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
        vaccine: "COVISHIELD".to_owned(),
        manufacturer: "Serum Institute of India".to_owned(),
        dose_number: 1,
        total_doses: 2,
        vaccination_date: session_date(),
        centre_name: "PHC Hebbal".to_owned(),
        district: "Bengaluru Urban".to_owned(),
        state: "Karnataka".to_owned(),
        vaccinator_id: "vaccinator-3".to_owned(),
        batch: "4121Z025".to_owned(),
        certificate_id,
        code_verified_position: 6,
        dose_position: 7,
    }
}

/// Returns claims for a new certificate issued at `issued_at`.
pub fn sample_claims(issued_at: DateTime<Utc>) -> signer::CertificateClaims {
    let certificate_id = CertificateId::new(Uuid::new_v4());
    signer::CertificateClaims {
        issuer: signer::DEFAULT_ISSUER.to_owned(),
        issued_at,
        certificate_id,
        record: sample_record(certificate_id),
    }
}

/// An Ed25519 key owned by the test, with a one-key trust list valid from 2021-01-01, so tests
/// can sign COSE structures that the library would never produce.
pub struct TestIssuer {
    pub signing_key: ed25519_dalek::SigningKey,
    pub key_id: signer::KeyId,
    pub trust_list: signer::TrustList,
}

impl TestIssuer {
    /// Creates a key from a fixed seed.
    pub fn new(seed: u8) -> Self {
        let signing_key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public_key = signer::PublicKey(signing_key.verifying_key());
        let key_id = public_key.key_id();
        let trust_list = signer::TrustList {
            generated_at: issue_time(),
            keys: vec![signer::TrustedKey {
                key_id,
                algorithm: "EdDSA".to_owned(),
                public_key,
                valid_from: Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap(),
                valid_until: None,
                status: signer::KeyStatus::Active,
            }],
        };
        Self {
            signing_key,
            key_id,
            trust_list,
        }
    }

    /// Returns the protected header the library writes: alg EdDSA and the 8-byte kid.
    pub fn protected_header(&self) -> coset::Header {
        coset::HeaderBuilder::new()
            .algorithm(coset::iana::Algorithm::EdDSA)
            .key_id(self.key_id.as_bytes().to_vec())
            .build()
    }

    /// Signs `claims` under `protected` and returns the untagged COSE_Sign1 structure.
    pub fn sign_with_header(
        &self,
        protected: coset::Header,
        claims: &signer::CertificateClaims,
    ) -> coset::CoseSign1 {
        use ed25519_dalek::Signer as _;
        let payload = signer::certificate::encode_claims(claims).unwrap();
        coset::CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .create_signature(b"", |tbs| self.signing_key.sign(tbs).to_bytes().to_vec())
            .build()
    }

    /// Signs `claims` as the library does and returns the tagged bytes.
    pub fn sign(&self, claims: &signer::CertificateClaims) -> Vec<u8> {
        use coset::TaggedCborSerializable as _;
        self.sign_with_header(self.protected_header(), claims)
            .to_tagged_vec()
            .unwrap()
    }
}

/// Serializes a COSE_Sign1 with tag 18, re-encoding the protected header from its fields.
pub fn reencode(mut sign1: coset::CoseSign1) -> Vec<u8> {
    use coset::TaggedCborSerializable as _;
    sign1.protected.original_data = None;
    sign1.to_tagged_vec().unwrap()
}

/// Serializes a COSE_Sign1 under an arbitrary CBOR tag.
pub fn encode_with_tag(sign1: coset::CoseSign1, tag: u64) -> Vec<u8> {
    use coset::AsCborValue as _;
    let value = ciborium::Value::Tag(tag, Box::new(sign1.to_cbor_value().unwrap()));
    let mut bytes = Vec::new();
    ciborium::into_writer(&value, &mut bytes).unwrap();
    bytes
}

/// Returns the reason of an invalid verification, panicking with the result when it is valid.
pub fn invalid_reason(verification: signer::Verification) -> signer::InvalidReason {
    match verification {
        signer::Verification::Invalid { reason } => reason,
        valid => panic!("expected an invalid certificate, got {valid:?}"),
    }
}
