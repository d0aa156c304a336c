//! Full replay of the status projections from position 0, against a raw sequential read and
//! CBOR decode of the same rows.

use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, SessionId};
use domain::Event;
use projections::Projections;
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};
use uuid::Uuid;

use super::{grouped, per_second, BenchArgs, Figure};

/// Events in one complete flow written by [`fill_store`].
const EVENTS_PER_FLOW: u64 = 10;
/// Flows per append call.
const FLOWS_PER_APPEND: u64 = 200;

fn new_event(event: &Event) -> NewEvent {
    NewEvent {
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode(),
        metadata: Metadata { actor_id: "bench".into(), actor_role: "verifier".into(), request_id: "bench".into(), idempotency_key: None },
    }
}

/// Returns the events of one complete flow: registration, booking, verification, dose, certificate.
fn flow_events(centre_id: CentreId, session_id: SessionId, index: u64) -> Vec<Event> {
    let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
    let appointment_id = AppointmentId::new(Uuid::new_v4());
    let date = NaiveDate::from_ymd_opt(2021, 9, 17).unwrap_or_default();
    let mobile_hash = format!("{:064x}", index);
    vec![
        Event::BeneficiaryRegistered {
            beneficiary_id,
            mobile_hash: mobile_hash.clone(),
            name: format!("Beneficiary {index}"),
            year_of_birth: 1960 + (index % 40) as u16,
            gender: Gender::Female,
            photo_id_type: PhotoIdType::Aadhaar,
            photo_id_masked: "XXXXXXXX1234".into(),
            walk_in: index % 20 == 0,
        },
        Event::MobileBeneficiaryAdded { mobile_hash, beneficiary_id },
        Event::AppointmentBooked {
            appointment_id,
            beneficiary_id,
            session_id,
            centre_id,
            date,
            vaccine: "COVISHIELD".into(),
            dose_number: 1,
            walk_in: index % 20 == 0,
        },
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
    ]
}

/// Appends about `events` events of complete flows (one centre and session per 500 flows).
pub(crate) async fn fill_store(store: &Arc<SqliteStore>, events: u64, progress: &indicatif::ProgressBar) -> anyhow::Result<u64> {
    let flows = events / EVENTS_PER_FLOW;
    let mut written = 0u64;
    let mut centre_id = CentreId::new(Uuid::new_v4());
    let mut session_id = SessionId::new(Uuid::new_v4());
    let mut flow = 0u64;
    while flow < flows {
        let mut appends = Vec::new();
        for _ in 0..FLOWS_PER_APPEND.min(flows - flow) {
            if flow % 500 == 0 {
                centre_id = CentreId::new(Uuid::new_v4());
                session_id = SessionId::new(Uuid::new_v4());
                let setup = [
                    Event::CentreRegistered { centre_id, name: format!("Centre {flow}"), district: "Pune".into(), state: "Maharashtra".into(), pincode: "411001".into() },
                    Event::SessionScheduled {
                        session_id,
                        centre_id,
                        district: "Pune".into(),
                        date: NaiveDate::from_ymd_opt(2021, 9, 17).unwrap_or_default(),
                        vaccine: "COVISHIELD".into(),
                        capacity: 5_000,
                        min_age: 18,
                    },
                ];
                for event in &setup {
                    appends.push(StreamAppend { stream_id: event.stream_id(), expected: ExpectedRevision::Any, events: vec![new_event(event)] });
                }
                written += 2;
            }
            for event in flow_events(centre_id, session_id, flow) {
                appends.push(StreamAppend { stream_id: event.stream_id(), expected: ExpectedRevision::Any, events: vec![new_event(&event)] });
            }
            written += EVENTS_PER_FLOW;
            flow += 1;
        }
        store.append(appends).await?;
        progress.set_position(written);
    }
    Ok(written)
}

pub(crate) fn progress_bar(length: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    bar
}

/// Replays the projections from position 0, then reads and decodes the same rows raw.
pub async fn replay(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let store = SqliteStore::open(&dir.path().join("events.db")).await?;
    let bar = progress_bar(args.replay_events, "filling");
    let total = fill_store(&store, args.replay_events, &bar).await?;
    bar.finish_and_clear();

    let raw_started = Instant::now();
    let mut after = 0u64;
    let mut decoded = 0u64;
    loop {
        let page = store.read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for recorded in &page {
            Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload)?;
            decoded += 1;
        }
    }
    let raw = per_second(decoded, raw_started.elapsed());

    let projections = Projections::open(&dir.path().join("projections.db"))?;
    let started = Instant::now();
    let mut after = 0u64;
    loop {
        let page = store.read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let projections = Arc::clone(&projections);
        tokio::task::spawn_blocking(move || projections.apply_batch(&page)).await??;
    }
    let ours = per_second(total, started.elapsed());
    println!("replay: {} events/s; raw read + decode: {} events/s", grouped(ours), grouped(raw));
    Ok(vec![Figure {
        name: format!("replay of status projections ({total} events)"),
        value: format!("{} events/s", grouped(ours)),
        baseline: format!("{} events/s raw read + CBOR decode", grouped(raw)),
        ratio: Some(ours / raw),
        target: "≥ 1,000,000 events/s, ≥ 0.5×".into(),
    }])
}


