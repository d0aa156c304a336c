//! Times filtered attempt pages of the fraud projection over one million attempts.
//!
//! It fills a fresh `fraud.db` through the projector's own apply path (`apply_batch`) with a
//! synthetic ten-day log of 1,000 centres in 50 districts and 4 verifiers per centre. Each
//! appointment is booked, and its code is right first time (about 92 %), right after a wrong
//! code (6 %), tried at the wrong centre (1 %), or skipped by a pushed dose (1 %). Then it runs
//! each query shape 200 times with random filter values and cursors, and prints the median and
//! p99 latency beside an unfiltered `SELECT ... LIMIT 100` on the same table.
//!
//! Run: `cargo run --release -p projections --example fraud_page_bench [ATTEMPTS]`
//! (default 1,000,000). The database goes to a temporary folder that is deleted afterwards.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, SessionId};
use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use domain::Event;
use projections::fraud::queries::{AttemptFilter, Outcome, PageRequest, TimeRange};
use projections::fraud::{FraudConfig, FraudProjections};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::{Metadata, RecordedEvent};
use uuid::Uuid;

/// Events applied per transaction while filling.
const FILL_BATCH: usize = 10_000;
/// Queries timed per shape.
const RUNS: usize = 200;
/// 2021-05-10 09:00 India time.
const START_MS: i64 = 1_620_617_400_000;
const DAYS: i64 = 10;
const DISTRICTS: usize = 50;
const CENTRES_PER_DISTRICT: usize = 20;
const VERIFIERS_PER_CENTRE: usize = 4;

/// Builds recorded events with consecutive positions.
struct Writer {
    next_position: u64,
    batch: Vec<RecordedEvent>,
}

impl Writer {
    fn push(&mut self, event: Event, at_ms: i64) {
        self.batch.push(RecordedEvent {
            position: self.next_position,
            stream_id: event.stream_id(),
            revision: 0,
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            metadata: Metadata { actor_id: "system".into(), actor_role: "admin".into(), request_id: "bench".into(), idempotency_key: None },
            recorded_at_ms: at_ms,
        });
        self.next_position += 1;
    }

    fn flush_if_full(&mut self, fraud: &FraudProjections) {
        if self.batch.len() >= FILL_BATCH {
            self.flush(fraud);
        }
    }

    fn flush(&mut self, fraud: &FraudProjections) {
        fraud.apply_batch(&self.batch).expect("applying a synthetic batch");
        self.batch.clear();
    }
}

/// Values the queries pick from.
struct Samples {
    centres: Vec<(CentreId, usize)>,
    verifiers: Vec<String>,
    appointments: Vec<AppointmentId>,
    beneficiaries: Vec<BeneficiaryId>,
}

fn id(rng: &mut StdRng) -> Uuid {
    Uuid::from_u128(rng.gen::<u128>() & !(0xF000u128 << 64) | (0x4000u128 << 64))
}

fn fill(fraud: &FraudProjections, attempts_wanted: u64, rng: &mut StdRng) -> Samples {
    let mut writer = Writer { next_position: 1, batch: Vec::with_capacity(FILL_BATCH + 8) };
    let mut centres = Vec::new();
    for district in 0..DISTRICTS {
        for index in 0..CENTRES_PER_DISTRICT {
            let centre_id = CentreId::new(id(rng));
            let event = Event::CentreRegistered {
                centre_id,
                name: format!("PHC {district}-{index}"),
                district: format!("District {district:02}"),
                state: "MH".into(),
                pincode: "411001".into(),
            };
            writer.push(event, START_MS);
            centres.push((centre_id, district));
        }
    }
    let verifiers: Vec<String> = (0..centres.len() * VERIFIERS_PER_CENTRE).map(|index| format!("{:016x}", index as u64 * 7_919 + 11)).collect();

    let mut samples = Samples { centres: centres.clone(), verifiers: verifiers.clone(), appointments: Vec::new(), beneficiaries: Vec::new() };
    let span_ms = DAYS * 86_400_000;
    let mut attempts = 0u64;
    let date = NaiveDate::from_ymd_opt(2021, 5, 10).expect("valid date");
    let progress_every = attempts_wanted / 10;
    let mut next_progress = progress_every;
    while attempts < attempts_wanted {
        let at_ms = START_MS + (attempts as i64 * span_ms) / attempts_wanted as i64;
        let centre_index = rng.gen_range(0..centres.len());
        let (centre_id, _) = centres[centre_index];
        let verifier = &verifiers[centre_index * VERIFIERS_PER_CENTRE + rng.gen_range(0..VERIFIERS_PER_CENTRE)];
        let appointment_id = AppointmentId::new(id(rng));
        let beneficiary_id = BeneficiaryId::new(id(rng));
        let walk_in = rng.gen_bool(0.1);
        writer.push(
            Event::AppointmentBooked {
                appointment_id,
                beneficiary_id,
                session_id: SessionId::new(id(rng)),
                centre_id,
                date,
                vaccine: "COVISHIELD".into(),
                dose_number: 1,
                walk_in,
            },
            at_ms,
        );
        if rng.gen_ratio(1, 500) {
            samples.appointments.push(appointment_id);
            samples.beneficiaries.push(beneficiary_id);
        }

        let roll = rng.gen_range(0..100);
        if roll < 1 {
            let (other, _) = centres[(centre_index + 1) % centres.len()];
            let other_verifier = verifiers[((centre_index + 1) % centres.len()) * VERIFIERS_PER_CENTRE].clone();
            let event = Event::CodeRejected {
                appointment_id,
                centre_id: other,
                verifier_id: other_verifier,
                reason: CodeRejectionReason::WrongCentre,
                attempt: 1,
                max_attempts: 5,
            };
            writer.push(event, at_ms);
            attempts += 1;
        } else if roll < 2 {
            let event = Event::DoseAdministrationRejected {
                appointment_id,
                centre_id,
                vaccinator_id: verifier.clone(),
                reason: DoseRejectionReason::CodeNotVerified,
            };
            writer.push(event, at_ms);
            attempts += 1;
        } else {
            if roll < 8 {
                let event = Event::CodeRejected {
                    appointment_id,
                    centre_id,
                    verifier_id: verifier.clone(),
                    reason: CodeRejectionReason::WrongCode,
                    attempt: 1,
                    max_attempts: 5,
                };
                writer.push(event, at_ms);
                attempts += 1;
            }
            writer.push(Event::CodeVerified { appointment_id, centre_id, verifier_id: verifier.clone() }, at_ms);
            writer.push(
                Event::DoseAdministered {
                    appointment_id,
                    beneficiary_id,
                    centre_id,
                    vaccine: "COVISHIELD".into(),
                    batch: "B1".into(),
                    dose_number: 1,
                    vaccinator_id: verifier.clone(),
                    administered_at: chrono::DateTime::from_timestamp_millis(at_ms).expect("valid time"),
                },
                at_ms,
            );
            attempts += 1;
        }
        writer.flush_if_full(fraud);
        if attempts >= next_progress {
            eprintln!("  {attempts} attempts applied");
            next_progress += progress_every.max(1);
        }
    }
    writer.flush(fraud);
    samples
}

/// Runs `query` [`RUNS`] times and returns the median and p99 latency, and the mean row count.
fn time(mut query: impl FnMut(&mut StdRng) -> usize, rng: &mut StdRng) -> (Duration, Duration, f64) {
    for _ in 0..5 {
        query(rng);
    }
    let mut latencies = Vec::with_capacity(RUNS);
    let mut rows = 0usize;
    for _ in 0..RUNS {
        let started = Instant::now();
        rows += query(rng);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[(RUNS * 99).div_ceil(100) - 1];
    (latencies[RUNS / 2], p99, rows as f64 / RUNS as f64)
}

fn main() {
    let attempts_wanted: u64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("creating a temporary folder");
    let path = dir.path().join("fraud.db");
    let fraud = FraudProjections::open(&path, FraudConfig::default()).expect("opening fraud.db");
    let mut rng = StdRng::seed_from_u64(2021);

    eprintln!("filling {attempts_wanted} attempts through apply_batch ...");
    let started = Instant::now();
    let samples = fill(&fraud, attempts_wanted, &mut rng);
    let fill_time = started.elapsed();
    let size_mb = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0) as f64 / 1e6;
    let events = fraud.checkpoint();
    println!("filled {attempts_wanted} attempts ({events} events) in {:.1} s; fraud.db {size_mb:.0} MB", fill_time.as_secs_f64());

    let raw = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("opening a raw reader");
    let total: i64 = raw.query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0)).expect("counting attempts");
    println!("attempts rows: {total}");
    let max_position = events as i64;

    let page = |after: u64| PageRequest { after, limit: 100 };
    let day_ms = 86_400_000i64;
    let random_day = |rng: &mut StdRng| {
        let from = START_MS + rng.gen_range(0..DAYS - 1) * day_ms;
        TimeRange { from_ms: Some(from), to_ms: Some(from + day_ms) }
    };
    let district_of = |rng: &mut StdRng| format!("District {:02}", rng.gen_range(0..DISTRICTS));
    let centre_of = |rng: &mut StdRng, samples: &Samples| samples.centres[rng.gen_range(0..samples.centres.len())].0.to_string();

    let mut results: Vec<(&str, (Duration, Duration, f64))> = Vec::new();
    let baseline = time(
        |_| {
            let mut statement = raw.prepare_cached("SELECT * FROM attempts LIMIT 100").expect("preparing");
            let rows = statement.query_map([], |row| row.get::<_, i64>(0)).expect("querying");
            rows.count()
        },
        &mut rng,
    );
    results.push(("baseline: SELECT * FROM attempts LIMIT 100", baseline));
    let mut run = |name: &'static str, filter: &dyn Fn(&mut StdRng) -> (AttemptFilter, u64), rng: &mut StdRng| {
        let timing = time(
            |rng| {
                let (filter, after) = filter(rng);
                fraud.attempts(&filter, page(after)).expect("querying attempts").items.len()
            },
            rng,
        );
        results.push((name, timing));
    };

    run("unfiltered page, random cursor", &|rng| (AttemptFilter::default(), rng.gen_range(0..max_position as u64)), &mut rng);
    run("centre", &|rng| (AttemptFilter { centre_id: Some(centre_of(rng, &samples)), ..AttemptFilter::default() }, 0), &mut rng);
    run(
        "verifier",
        &|rng| (AttemptFilter { verifier_id: Some(samples.verifiers[rng.gen_range(0..samples.verifiers.len())].clone()), ..AttemptFilter::default() }, 0),
        &mut rng,
    );
    run("district, random cursor", &|rng| (AttemptFilter { district: Some(district_of(rng)), ..AttemptFilter::default() }, rng.gen_range(0..max_position as u64)), &mut rng);
    run(
        "district + reason=wrong_code",
        &|rng| (AttemptFilter { district: Some(district_of(rng)), reason: Some("wrong_code".into()), ..AttemptFilter::default() }, 0),
        &mut rng,
    );
    run(
        "centre + reason=wrong_code",
        &|rng| (AttemptFilter { centre_id: Some(centre_of(rng, &samples)), reason: Some("wrong_code".into()), ..AttemptFilter::default() }, 0),
        &mut rng,
    );
    run(
        "outcome=rejected + one-day range",
        &|rng| (AttemptFilter { outcome: Some(Outcome::Rejected), time: random_day(rng), ..AttemptFilter::default() }, 0),
        &mut rng,
    );
    run("district + one-day range", &|rng| (AttemptFilter { district: Some(district_of(rng)), time: random_day(rng), ..AttemptFilter::default() }, 0), &mut rng);
    run("reason=wrong_centre", &|_| (AttemptFilter { reason: Some("wrong_centre".into()), ..AttemptFilter::default() }, 0), &mut rng);
    run(
        "reason=code_not_verified + district + one-day range",
        &|rng| {
            let filter = AttemptFilter { reason: Some("code_not_verified".into()), district: Some(district_of(rng)), time: random_day(rng), ..AttemptFilter::default() };
            (filter, 0)
        },
        &mut rng,
    );
    run(
        "appointment",
        &|rng| (AttemptFilter { appointment_id: Some(samples.appointments[rng.gen_range(0..samples.appointments.len())].to_string()), ..AttemptFilter::default() }, 0),
        &mut rng,
    );
    run(
        "beneficiary",
        &|rng| (AttemptFilter { beneficiary_id: Some(samples.beneficiaries[rng.gen_range(0..samples.beneficiaries.len())].to_string()), ..AttemptFilter::default() }, 0),
        &mut rng,
    );

    let base_median = results[0].1 .0.as_secs_f64();
    println!("\n| query (page of up to 100 rows) | median ms | p99 ms | rows per page | median / baseline |");
    println!("|---|---:|---:|---:|---:|");
    for (name, (median, p99, rows)) in &results {
        println!(
            "| {name} | {:.3} | {:.3} | {rows:.0} | {:.1} |",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            median.as_secs_f64() / base_median
        );
    }
    let worst = results.iter().map(|(_, (_, p99, _))| *p99).max().unwrap_or_default();
    println!("\nworst p99: {:.3} ms", worst.as_secs_f64() * 1e3);
}
