//! Full replay of the projections from position 0, against a raw sequential `SELECT` and CBOR
//! decode of the same rows. It measures the status projections alone and all projections (status
//! and fraud), both rebuilt into fresh files, then all projections through the live path.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use domain::events::{Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, SessionId};
use domain::Event;
use projections::fraud::{FraudConfig, FraudProjections};
use projections::{DecodedPage, Projections};
use rusqlite::{Connection, OpenFlags};
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

/// Events read from the store per page by the replay.
const PAGE: usize = 10_000;

/// Reads every row of `events` in position order with one raw rusqlite `SELECT` and decodes each
/// payload: the floor any replay pays. Returns the number of events decoded.
fn raw_read_decode(events_db: &Path) -> anyhow::Result<u64> {
    let connection = Connection::open_with_flags(events_db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let mut statement = connection.prepare(
        "SELECT position, stream_id, revision, event_type, schema_version, payload, metadata, recorded_at_ms
         FROM events ORDER BY position",
    )?;
    let mut rows = statement.query([])?;
    let mut decoded = 0u64;
    while let Some(row) = rows.next()? {
        let event_type = row.get_ref(3)?.as_str()?;
        let schema_version = u16::try_from(row.get_ref(4)?.as_i64()?)?;
        let payload = row.get_ref(5)?.as_blob()?;
        Event::decode(event_type, schema_version, payload)?;
        decoded += 1;
    }
    Ok(decoded)
}

/// Measures [`raw_read_decode`] in events per second.
fn baseline(events_db: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let decoded = raw_read_decode(events_db)?;
    Ok(per_second(decoded, started.elapsed()))
}

/// Replays the projections from position 0 three times, each run between two runs of the raw
/// read + decode baseline.
pub async fn replay(args: &BenchArgs) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let events_db = dir.path().join("events.db");
    let store = SqliteStore::open(&events_db).await?;
    let bar = progress_bar(args.replay_events, "filling");
    let total = fill_store(&store, args.replay_events, &bar).await?;
    bar.finish_and_clear();

    // Warm the page cache once so that the first measured pass does not pay for it alone.
    raw_read_decode(&events_db)?;

    let raw_before = baseline(&events_db)?;
    let started = Instant::now();
    rebuild_status(&store, &dir.path().join("status-only.db")).await?;
    let status = per_second(total, started.elapsed());
    let raw_between = baseline(&events_db)?;
    let started = Instant::now();
    rebuild_all(&store, &dir.path().join("projections.db"), &dir.path().join("fraud.db")).await?;
    let all = per_second(total, started.elapsed());
    let raw_after = baseline(&events_db)?;
    let started = Instant::now();
    replay_all_live(&store, &dir.path().join("live-projections.db"), &dir.path().join("live-fraud.db")).await?;
    let live = per_second(total, started.elapsed());
    let raw_last = baseline(&events_db)?;

    // Each figure is compared with the faster of the baselines right before and after it.
    let status_raw = raw_before.max(raw_between);
    let all_raw = raw_between.max(raw_after);
    let live_raw = raw_after.max(raw_last);
    println!(
        "replay: status {} events/s, all {} events/s, all through the live path {} events/s; \
         raw read + decode {} / {} / {} / {} events/s (before, between, after, last)",
        grouped(status),
        grouped(all),
        grouped(live),
        grouped(raw_before),
        grouped(raw_between),
        grouped(raw_after),
        grouped(raw_last)
    );
    let figure = |name: String, ours: f64, raw: f64| Figure {
        name,
        value: format!("{} events/s", grouped(ours)),
        baseline: format!("{} events/s raw SELECT + CBOR decode", grouped(raw)),
        ratio: Some(ours / raw),
        target: "≥ 1,000,000 events/s, ≥ 0.5×".into(),
    };
    Ok(vec![
        figure(format!("replay of the status projections into a fresh file ({total} events)"), status, status_raw),
        figure(format!("replay of all projections, status and fraud, into fresh files ({total} events)"), all, all_raw),
        figure(format!("replay of all projections through the live path, WAL, crash-safe per page ({total} events)"), live, live_raw),
    ])
}

/// Decoded pages in flight between the reader and each applier.
const PAGES_IN_FLIGHT: usize = 2;

/// Reads the log in pages and hands each page to a decoding thread, which decodes it once and
/// sends it to every applier in `senders`. Reading, decoding and applying run at the same time
/// on different pages, so the two cores share the work.
async fn read_pages(store: &Arc<SqliteStore>, senders: Vec<tokio::sync::mpsc::Sender<Arc<DecodedPage<'static>>>>) -> anyhow::Result<()> {
    let (raw_sender, mut raw_receiver) = tokio::sync::mpsc::channel::<Vec<store::RecordedEvent>>(PAGES_IN_FLIGHT);
    let decoder = std::thread::spawn(move || -> anyhow::Result<()> {
        while let Some(page) = raw_receiver.blocking_recv() {
            let decoded = Arc::new(DecodedPage::decode(page)?);
            for sender in &senders {
                // A closed channel means its applier failed; its error is reported when joined.
                if sender.blocking_send(Arc::clone(&decoded)).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    });

    let mut after = 0u64;
    let read = loop {
        let page = match store.read_all(after, PAGE).await {
            Ok(page) => page,
            Err(err) => break Err(err.into()),
        };
        let Some(last) = page.last() else { break Ok(()) };
        after = last.position;
        if raw_sender.send(page).await.is_err() {
            break Ok(());
        }
    };
    drop(raw_sender);
    join(decoder)?;
    read
}

/// Starts a thread that applies every page it receives with `apply`.
fn applier(
    apply: impl Fn(&DecodedPage<'static>) -> Result<u64, projections::ProjectionError> + Send + 'static,
) -> (tokio::sync::mpsc::Sender<Arc<DecodedPage<'static>>>, std::thread::JoinHandle<anyhow::Result<()>>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Arc<DecodedPage<'static>>>(PAGES_IN_FLIGHT);
    let handle = std::thread::spawn(move || -> anyhow::Result<()> {
        while let Some(page) = receiver.blocking_recv() {
            apply(&page)?;
        }
        Ok(())
    });
    (sender, handle)
}

/// Waits for an applier thread and returns its error, if any.
fn join(handle: std::thread::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    handle.join().map_err(|_| anyhow::anyhow!("a replay thread panicked"))?
}

/// Rebuilds the status projections into a fresh file: one reader, one applier.
async fn rebuild_status(store: &Arc<SqliteStore>, path: &Path) -> anyhow::Result<()> {
    let rebuild = Arc::new(Projections::rebuild(path)?);
    let applying = Arc::clone(&rebuild);
    let (sender, handle) = applier(move |page| applying.apply_decoded(page));
    let read = read_pages(store, vec![sender]).await;
    join(handle)?;
    read?;
    finish(rebuild, |rebuild| rebuild.finish())
}

/// Rebuilds the status and fraud projections into fresh files: one reader and one applier per
/// file, so the two files are written in parallel.
async fn rebuild_all(store: &Arc<SqliteStore>, status_path: &Path, fraud_path: &Path) -> anyhow::Result<()> {
    let status = Arc::new(Projections::rebuild(status_path)?);
    let fraud = Arc::new(FraudProjections::rebuild(fraud_path, FraudConfig::default())?);
    let (status_applying, fraud_applying) = (Arc::clone(&status), Arc::clone(&fraud));
    let (status_sender, status_handle) = applier(move |page| status_applying.apply_decoded(page));
    let (fraud_sender, fraud_handle) = applier(move |page| fraud_applying.apply_decoded(page));
    let read = read_pages(store, vec![status_sender, fraud_sender]).await;
    join(status_handle)?;
    join(fraud_handle)?;
    read?;
    // The two files finish (deferred indexes, swap) in parallel too.
    let fraud_finish = std::thread::spawn(move || finish(fraud, |fraud| fraud.finish()));
    finish(status, |status| status.finish())?;
    fraud_finish.join().map_err(|_| anyhow::anyhow!("a replay thread panicked"))?
}

/// Unwraps a rebuild whose applier has ended and finishes it.
fn finish<R>(rebuild: Arc<R>, finish: impl FnOnce(R) -> Result<u64, projections::ProjectionError>) -> anyhow::Result<()> {
    let rebuild = Arc::into_inner(rebuild).ok_or_else(|| anyhow::anyhow!("a rebuild was still shared when it finished"))?;
    finish(rebuild)?;
    Ok(())
}

/// Replays the status and fraud projections into new live files (WAL, one transaction per
/// page with its checkpoint): one reader and one applier per file.
async fn replay_all_live(store: &Arc<SqliteStore>, status_path: &Path, fraud_path: &Path) -> anyhow::Result<()> {
    let projections = Projections::open(status_path)?;
    let fraud = FraudProjections::open(fraud_path, FraudConfig::default())?;
    let (status_sender, status_handle) = applier(move |page| projections.apply_decoded(page));
    let (fraud_sender, fraud_handle) = applier(move |page| fraud.apply_decoded(page));
    let read = read_pages(store, vec![status_sender, fraud_sender]).await;
    join(status_handle)?;
    join(fraud_handle)?;
    read
}
