//! Times the apply side of a full replay without the event store: the status and fraud
//! projectors apply pages of complete dose flows (the shape `vaxledger bench --only replay`
//! writes), each on its own thread, from decoded pages shared by both. It prints the events
//! per second of the status projections alone and of both together, beside a CBOR decode of
//! the same pages, so a change to the apply path can be measured in a minute.
//!
//! Run: `cargo run --release -p projections --example replay_apply [EVENTS] [PAGE] [rebuild]`
//! (defaults 1,000,000 and 10,000; `rebuild` skips the live path). The files go to a temporary folder that is deleted.

use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, SessionId};
use domain::Event;
use projections::fraud::{FraudConfig, FraudProjections};
use projections::{DecodedPage, Projections};
use store::{Metadata, RecordedEvent};
use uuid::Uuid;

/// Builds the events of complete flows, one centre and session per 500 flows.
fn flows(events: u64) -> Vec<RecordedEvent> {
    let date = NaiveDate::from_ymd_opt(2021, 9, 17).unwrap_or_default();
    let mut out: Vec<RecordedEvent> = Vec::with_capacity(events as usize);
    let push = |out: &mut Vec<RecordedEvent>, event: Event| {
        let position = out.len() as u64 + 1;
        out.push(RecordedEvent {
            position,
            stream_id: event.stream_id(),
            revision: 0,
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            metadata: Metadata { actor_id: "bench".into(), actor_role: "verifier".into(), request_id: "bench".into(), idempotency_key: None },
            recorded_at_ms: 1_631_850_000_000 + position as i64,
        });
    };
    let (mut centre_id, mut session_id) = (CentreId::new(Uuid::new_v4()), SessionId::new(Uuid::new_v4()));
    let mut flow = 0u64;
    while (out.len() as u64) < events {
        if flow.is_multiple_of(500) {
            centre_id = CentreId::new(Uuid::new_v4());
            session_id = SessionId::new(Uuid::new_v4());
            push(&mut out, Event::CentreRegistered { centre_id, name: "C".into(), district: "Pune".into(), state: "MH".into(), pincode: "411001".into() });
            push(&mut out, Event::SessionScheduled { session_id, centre_id, district: "Pune".into(), date, vaccine: "COVISHIELD".into(), capacity: 5_000, min_age: 18 });
        }
        let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
        let appointment_id = AppointmentId::new(Uuid::new_v4());
        let mobile_hash = format!("{flow:064x}");
        for event in [
            Event::BeneficiaryRegistered {
                beneficiary_id,
                mobile_hash: mobile_hash.clone(),
                name: format!("Beneficiary {flow}"),
                year_of_birth: 1960 + (flow % 40) as u16,
                gender: Gender::Female,
                photo_id_type: PhotoIdType::Aadhaar,
                photo_id_masked: "XXXXXXXX1234".into(),
                walk_in: flow.is_multiple_of(20),
            },
            Event::MobileBeneficiaryAdded { mobile_hash, beneficiary_id },
            Event::AppointmentBooked { appointment_id, beneficiary_id, session_id, centre_id, date, vaccine: "COVISHIELD".into(), dose_number: 1, walk_in: flow.is_multiple_of(20) },
            Event::SecurityCodeIssued { appointment_id, code_hmac: "ab".repeat(32), key_id: "0011223344556677".into() },
            Event::SeatReserved { session_id, appointment_id },
            Event::BeneficiaryAppointmentOpened { beneficiary_id, appointment_id, dose_number: 1 },
            Event::CodeVerified { appointment_id, centre_id, verifier_id: "verifier".into() },
            Event::DoseAdministered {
                appointment_id,
                beneficiary_id,
                centre_id,
                vaccine: "COVISHIELD".into(),
                batch: "4121Z005".into(),
                dose_number: 1,
                vaccinator_id: "verifier".into(),
                administered_at: Utc::now(),
            },
            Event::BeneficiaryDoseRecorded { beneficiary_id, appointment_id, dose_number: 1, vaccine: "COVISHIELD".into(), date },
            Event::CertificateIssued {
                certificate_id: CertificateId::new(Uuid::new_v4()),
                appointment_id,
                beneficiary_id,
                key_id: "0011223344556677".into(),
                cose_sha256: "cd".repeat(32),
                code_verified_position: 0,
                dose_position: 0,
            },
        ] {
            push(&mut out, event);
        }
        flow += 1;
    }
    out
}

/// Applies every page with `apply` on a thread of its own; returns the thread.
fn spawn(pages: Arc<Vec<DecodedPage<'static>>>, apply: impl Fn(&DecodedPage<'static>) + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || pages.iter().for_each(&apply))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let page: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(10_000);
    let recorded = flows(events);
    let total = recorded.len() as f64;

    let started = Instant::now();
    let pages: Vec<DecodedPage<'static>> = recorded.chunks(page).map(|chunk| DecodedPage::decode(chunk.to_vec()).expect("decode")).collect();
    let decode = started.elapsed().as_secs_f64();
    let pages = Arc::new(pages);
    println!("decode: {:.0} events/s", total / decode);

    let dir = tempfile::tempdir().expect("temporary folder");
    let rebuild_only = args.next().as_deref() == Some("rebuild");
    if !rebuild_only {
        live(&pages, total, dir.path());
    }
    rebuild(&pages, total, dir.path());
}

/// Applies all pages through the live path: status alone, then status and fraud together.
fn live(pages: &Arc<Vec<DecodedPage<'static>>>, total: f64, dir: &std::path::Path) {
    let status = Projections::open(&dir.join("status-only.db")).expect("open");
    let started = Instant::now();
    spawn(Arc::clone(pages), move |page| {
        status.apply_decoded(page).expect("apply");
    })
    .join()
    .expect("status thread");
    println!("status: {:.0} events/s", total / started.elapsed().as_secs_f64());

    let status = Projections::open(&dir.join("live-projections.db")).expect("open");
    let fraud = FraudProjections::open(&dir.join("live-fraud.db"), FraudConfig::default()).expect("open");
    let started = Instant::now();
    let status_thread = spawn(Arc::clone(pages), move |page| {
        status.apply_decoded(page).expect("apply");
    });
    let fraud_thread = spawn(Arc::clone(pages), move |page| {
        fraud.apply_decoded(page).expect("apply");
    });
    status_thread.join().expect("status thread");
    let status_done = started.elapsed().as_secs_f64();
    fraud_thread.join().expect("fraud thread");
    println!("all: {:.0} events/s (status thread done after {:.2} s, fraud after {:.2} s)", total / started.elapsed().as_secs_f64(), status_done, started.elapsed().as_secs_f64());
}

/// Rebuilds status and fraud projections into fresh files, each on its own thread.
fn rebuild(pages: &Arc<Vec<DecodedPage<'static>>>, total: f64, dir: &std::path::Path) {
    let started = Instant::now();
    let status = Projections::rebuild(&dir.join("projections.db")).expect("rebuild");
    let status_thread = std::thread::spawn({
        let pages = Arc::clone(pages);
        move || {
            pages.iter().for_each(|page| {
                status.apply_decoded(page).expect("apply");
            });
            status.finish().expect("finish")
        }
    });
    let fraud = FraudProjections::rebuild(&dir.join("fraud.db"), FraudConfig::default()).expect("rebuild");
    let fraud_thread = std::thread::spawn({
        let pages = Arc::clone(pages);
        move || {
            pages.iter().for_each(|page| {
                fraud.apply_decoded(page).expect("apply");
            });
            fraud.finish().expect("finish")
        }
    });
    status_thread.join().expect("status thread");
    let status_done = started.elapsed().as_secs_f64();
    fraud_thread.join().expect("fraud thread");
    println!("rebuild all: {:.0} events/s (status thread done after {:.2} s, fraud after {:.2} s)", total / started.elapsed().as_secs_f64(), status_done, started.elapsed().as_secs_f64());
}
