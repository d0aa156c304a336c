//! The issuing gate against an event log: rejections without evidence, the full flow, re-issue
//! after revocation, the optimistic-concurrency contract, and the certificate vault.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use domain::events::Event;
use domain::ids::{AppointmentId, CentreId, CertificateId};
use domain::vaccine::VaccineCatalogue;
use sha2::{Digest, Sha256};
use signer::{
    issue_certificate, verify_qr, CertificateVault, IssuedCertificate, KeyRing, NotEligibleReason,
    SignerError, StoredCertificate, Verification,
};
use store::{EventStore, ExpectedRevision, StoreError, StreamAppend};
use uuid::Uuid;

use common::{append, issue_time, new_event, session_date, Ledger, MemoryStore};

struct Setup {
    store: Arc<dyn EventStore>,
    keys: KeyRing,
    catalogue: VaccineCatalogue,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_create_at(
        dir.path().join("keys"),
        issue_time() - chrono::Duration::days(1),
    )
    .unwrap();
    Setup {
        store: Arc::new(MemoryStore::new()),
        keys,
        catalogue: VaccineCatalogue::default(),
        ledger: Ledger::new(),
        _dir: dir,
    }
}

impl Setup {
    async fn issue(&self) -> Result<IssuedCertificate, SignerError> {
        issue_certificate(
            self.store.as_ref(),
            &self.keys,
            &self.catalogue,
            self.ledger.appointment_id,
            CertificateId::new(Uuid::new_v4()),
            issue_time(),
        )
        .await
    }

    async fn append_issued(&self, issued: &IssuedCertificate) -> Result<(), StoreError> {
        self.store
            .append(vec![StreamAppend {
                stream_id: issued.event.stream_id(),
                expected: ExpectedRevision::Exact(issued.appointment_revision),
                events: vec![new_event(&issued.event)],
            }])
            .await
            .map(|_| ())
    }
}

fn not_eligible_reason(result: Result<IssuedCertificate, SignerError>) -> NotEligibleReason {
    match result {
        Err(SignerError::NotEligible { reason, .. }) => reason,
        Err(other) => panic!("expected NotEligible, got error {other}"),
        Ok(issued) => panic!("expected NotEligible, got certificate {:?}", issued.record),
    }
}

#[tokio::test]
async fn gate_rejects_unknown_appointment() {
    let setup = setup();

    assert_eq!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::NotBooked
    );
}

#[tokio::test]
async fn gate_rejects_booking_only() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;

    assert_eq!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::CodeNotVerified
    );
}

#[tokio::test]
async fn gate_rejects_verified_code_without_dose() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;
    setup.ledger.verify_code(setup.store.as_ref()).await;

    assert_eq!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::NoDose
    );
}

#[tokio::test]
async fn gate_rejects_dose_without_verified_code() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;
    setup.ledger.give_dose(setup.store.as_ref()).await;

    assert_eq!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::CodeNotVerified
    );
}

#[tokio::test]
async fn gate_rejects_code_verified_after_dose() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;
    setup.ledger.give_dose(setup.store.as_ref()).await;
    setup.ledger.verify_code(setup.store.as_ref()).await;

    assert_eq!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::CodeNotVerified
    );
}

#[tokio::test]
async fn gate_rejects_code_verified_at_other_centre() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;
    setup
        .ledger
        .verify_code_at(setup.store.as_ref(), CentreId::new(Uuid::new_v4()))
        .await;
    setup.ledger.give_dose(setup.store.as_ref()).await;

    let reason = not_eligible_reason(setup.issue().await);

    assert!(
        matches!(reason, NotEligibleReason::EvidenceMismatch { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn gate_rejects_dose_of_other_vaccine() {
    let setup = setup();
    setup.ledger.register(setup.store.as_ref()).await;
    setup.ledger.book(setup.store.as_ref()).await;
    setup.ledger.verify_code(setup.store.as_ref()).await;
    append(
        setup.store.as_ref(),
        Event::DoseAdministered {
            appointment_id: setup.ledger.appointment_id,
            beneficiary_id: setup.ledger.beneficiary_id,
            centre_id: setup.ledger.centre_id,
            vaccine: "COVAXIN".to_owned(),
            batch: "BB21044".to_owned(),
            dose_number: 1,
            vaccinator_id: "vaccinator-3".to_owned(),
            administered_at: issue_time(),
        },
    )
    .await;

    let reason = not_eligible_reason(setup.issue().await);

    let NotEligibleReason::EvidenceMismatch { detail } = reason else {
        panic!("expected EvidenceMismatch, got {reason:?}");
    };
    assert!(detail.contains("COVAXIN"), "{detail}");
}

#[tokio::test]
async fn gate_issues_after_full_flow() {
    let setup = setup();
    let (verified_position, dose_position) = setup.ledger.full_flow(setup.store.as_ref()).await;

    let issued = setup.issue().await.unwrap();

    let Event::CertificateIssued {
        certificate_id,
        appointment_id,
        beneficiary_id,
        key_id,
        cose_sha256,
        code_verified_position,
        dose_position: event_dose_position,
    } = &issued.event
    else {
        panic!("expected CertificateIssued, got {:?}", issued.event);
    };
    assert_eq!(*code_verified_position, verified_position);
    assert_eq!(*event_dose_position, dose_position);
    assert_eq!(issued.record.code_verified_position, verified_position);
    assert_eq!(issued.record.dose_position, dose_position);
    assert_eq!(*appointment_id, setup.ledger.appointment_id);
    assert_eq!(*beneficiary_id, setup.ledger.beneficiary_id);
    assert_eq!(*certificate_id, issued.record.certificate_id);
    assert_eq!(*key_id, setup.keys.active_key().unwrap().key_id().to_hex());
    assert_eq!(*cose_sha256, hex::encode(Sha256::digest(&issued.cose)));
    assert_eq!(issued.appointment_revision, 2);
}

#[tokio::test]
async fn gate_record_uses_corrected_beneficiary_and_catalogue() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;

    let record = setup.issue().await.unwrap().record;

    assert_eq!(record.beneficiary_name, "Asha R. Kumar");
    assert_eq!(record.year_of_birth, 1985);
    assert_eq!(record.photo_id_masked, "XXXXXXXX1234");
    assert_eq!(record.vaccine, "COVISHIELD");
    assert_eq!(record.manufacturer, "Serum Institute of India");
    assert_eq!(record.total_doses, 2);
    assert_eq!(record.centre_name, "PHC Hebbal");
    assert_eq!(record.district, "Bengaluru Urban");
    assert_eq!(record.state, "Karnataka");
    assert_eq!(record.batch, "4121Z025");
    assert_eq!(record.vaccinator_id, "vaccinator-3");
}

#[tokio::test]
async fn gate_vaccination_date_is_session_date() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;

    let record = setup.issue().await.unwrap().record;
    let json = serde_json::to_value(&record).unwrap();

    assert_eq!(record.vaccination_date, session_date());
    assert_eq!(json["vaccination_date"], "2021-05-10");
}

#[tokio::test]
async fn gate_certificate_verifies() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let issued = setup.issue().await.unwrap();

    let verification = verify_qr(
        &issued.qr_text,
        &setup.keys.trust_list(issue_time()),
        &HashSet::new(),
        issue_time(),
    );

    let Verification::Valid { record, .. } = verification else {
        panic!("expected valid, got {verification:?}");
    };
    assert_eq!(record, issued.record);
}

#[tokio::test]
async fn gate_rejects_second_certificate() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let first = setup.issue().await.unwrap();
    setup.append_issued(&first).await.unwrap();

    let reason = not_eligible_reason(setup.issue().await);

    assert_eq!(
        reason,
        NotEligibleReason::AlreadyIssued {
            certificate_id: first.record.certificate_id
        }
    );
}

#[tokio::test]
async fn gate_reissues_after_revocation() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let first = setup.issue().await.unwrap();
    setup.append_issued(&first).await.unwrap();
    setup
        .ledger
        .revoke(setup.store.as_ref(), first.record.certificate_id)
        .await;

    let second = setup.issue().await.unwrap();

    assert_ne!(second.record.certificate_id, first.record.certificate_id);
    assert_eq!(second.appointment_revision, 4);
}

#[tokio::test]
async fn gate_append_conflicts_after_concurrent_change() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let issued = setup.issue().await.unwrap();
    let racing = setup.issue().await.unwrap();
    setup.append_issued(&racing).await.unwrap();

    let err = setup.append_issued(&issued).await.unwrap_err();

    assert!(
        matches!(err, StoreError::WrongExpectedRevision { .. }),
        "{err}"
    );
    assert!(matches!(
        not_eligible_reason(setup.issue().await),
        NotEligibleReason::AlreadyIssued { .. }
    ));
}

#[tokio::test]
async fn gate_rejects_undecodable_event() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let mut garbage = new_event(&Event::AppointmentCancelled {
        appointment_id: setup.ledger.appointment_id,
        reason: domain::events::CancellationReason::ByCitizen,
    });
    garbage.payload = vec![0xff, 0x00];
    setup
        .store
        .append(vec![StreamAppend {
            stream_id: setup.ledger.appointment_id.stream_id(),
            expected: ExpectedRevision::Any,
            events: vec![garbage],
        }])
        .await
        .unwrap();

    let err = setup.issue().await.unwrap_err();

    assert!(matches!(err, SignerError::Decode { .. }), "{err}");
}

#[tokio::test]
async fn gate_errors_without_beneficiary_registration() {
    let setup = setup();
    setup.ledger.book(setup.store.as_ref()).await;
    setup.ledger.verify_code(setup.store.as_ref()).await;
    setup.ledger.give_dose(setup.store.as_ref()).await;

    let err = setup.issue().await.unwrap_err();

    assert!(matches!(err, SignerError::InconsistentLog { .. }), "{err}");
}

#[tokio::test]
async fn gate_errors_on_unknown_vaccine() {
    let mut setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    setup
        .catalogue
        .vaccines
        .retain(|vaccine| vaccine.name != "COVISHIELD");

    let err = setup.issue().await.unwrap_err();

    assert!(matches!(err, SignerError::UnknownVaccine { .. }), "{err}");
}

#[tokio::test]
async fn gate_works_with_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::sqlite::SqliteStore::open(&dir.path().join("events.db"))
        .await
        .unwrap();
    let keys = KeyRing::open_or_create_at(dir.path().join("keys"), issue_time()).unwrap();
    let ledger = Ledger::new();
    let (verified_position, dose_position) = ledger.full_flow(store.as_ref()).await;
    let other = AppointmentId::new(Uuid::new_v4());
    let certificate_id = CertificateId::new(Uuid::new_v4());

    let issued = issue_certificate(
        store.as_ref(),
        &keys,
        &VaccineCatalogue::default(),
        ledger.appointment_id,
        certificate_id,
        issue_time(),
    )
    .await
    .unwrap();
    let rejected = issue_certificate(
        store.as_ref(),
        &keys,
        &VaccineCatalogue::default(),
        other,
        certificate_id,
        issue_time(),
    )
    .await;
    store
        .append(vec![StreamAppend {
            stream_id: issued.event.stream_id(),
            expected: ExpectedRevision::Exact(issued.appointment_revision),
            events: vec![new_event(&issued.event)],
        }])
        .await
        .unwrap();

    assert_eq!(issued.record.code_verified_position, verified_position);
    assert_eq!(issued.record.dose_position, dose_position);
    assert_eq!(not_eligible_reason(rejected), NotEligibleReason::NotBooked);
    assert_eq!(
        store
            .read_stream(&ledger.appointment_id.stream_id(), 0)
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn vault_put_get_round_trip() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let issued = setup.issue().await.unwrap();
    let vault = CertificateVault::open(setup._dir.path().join("certificates.db")).unwrap();
    let stored = StoredCertificate::from(&issued);

    vault.put(&stored).await.unwrap();
    vault.put(&stored).await.unwrap();

    assert_eq!(
        vault.get(issued.record.certificate_id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        vault
            .get_by_appointment(setup.ledger.appointment_id)
            .await
            .unwrap(),
        vec![stored]
    );
    assert_eq!(
        vault.get(CertificateId::new(Uuid::new_v4())).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn vault_rejects_different_bytes_for_same_id() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let issued = setup.issue().await.unwrap();
    let vault = CertificateVault::open(setup._dir.path().join("certificates.db")).unwrap();
    let stored = StoredCertificate::from(&issued);
    vault.put(&stored).await.unwrap();
    let mut altered = stored.clone();
    altered.cose.push(0);

    let err = vault.put(&altered).await.unwrap_err();

    assert!(matches!(err, signer::VaultError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn vault_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let issued = setup.issue().await.unwrap();
    let path = dir.path().join("certificates.db");
    CertificateVault::open(&path)
        .unwrap()
        .put(&StoredCertificate::from(&issued))
        .await
        .unwrap();

    let reopened = CertificateVault::open(&path).unwrap();

    assert_eq!(
        reopened
            .get(issued.record.certificate_id)
            .await
            .unwrap()
            .unwrap()
            .cose,
        issued.cose
    );
}

#[tokio::test]
async fn gate_ignores_events_of_other_appointments() {
    let setup = setup();
    setup.ledger.full_flow(setup.store.as_ref()).await;
    let other = Ledger::new();
    append(
        setup.store.as_ref(),
        Event::CodeVerified {
            appointment_id: other.appointment_id,
            centre_id: other.centre_id,
            verifier_id: "verifier-9".to_owned(),
        },
    )
    .await;

    assert!(setup.issue().await.is_ok());
    assert_eq!(
        not_eligible_reason(
            issue_certificate(
                setup.store.as_ref(),
                &setup.keys,
                &setup.catalogue,
                other.appointment_id,
                CertificateId::new(Uuid::new_v4()),
                issue_time()
            )
            .await
        ),
        NotEligibleReason::NotBooked
    );
}
