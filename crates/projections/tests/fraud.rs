//! Fraud projection: each alert on its pattern and not on honest traffic, attempts and daily
//! counters with district peers, disputes, resume after reopen, and rebuild equal to the
//! incremental result.
//!
//! Most tests build recorded events by hand so that they control event times; the resume
//! test runs the projector against the real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use domain::dispute::{encode_finding, Finding};
use domain::events::RevocationReason;
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, DisputeId, SessionId};
use domain::rejection::{CodeRejectionReason, DoseRejectionReason};
use domain::Event;
use projections::fraud::queries::{
    AggregateFilter, AlertFilter, AlertRow, AttemptFilter, DisputeFilter, DisputeStatus, FraudQueryError, Outcome, PageRequest,
    TimeRange,
};
use projections::fraud::{AlertKind, FraudConfig, FraudProjections};
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, RecordedEvent, SqliteStore, StreamAppend};
use uuid::Uuid;

/// 2021-05-10 09:00 India time, in milliseconds since the Unix epoch.
const START_MS: i64 = 1_620_617_400_000;
const MINUTE_MS: i64 = 60_000;

/// A hand-built event log with a clock the test moves.
struct Log {
    events: Vec<RecordedEvent>,
    now_ms: i64,
}

/// A registered centre.
#[derive(Clone, Copy)]
struct Centre {
    id: CentreId,
}

/// A booked appointment.
#[derive(Clone, Copy)]
struct Booking {
    appointment_id: AppointmentId,
    beneficiary_id: BeneficiaryId,
    centre: CentreId,
}

impl Log {
    fn new() -> Self {
        Self { events: Vec::new(), now_ms: START_MS }
    }

    fn advance(&mut self, minutes: i64) {
        self.now_ms += minutes * MINUTE_MS;
    }

    fn push_as(&mut self, event: Event, actor_id: &str, actor_role: &str, request_id: &str) -> u64 {
        let position = self.events.len() as u64 + 1;
        self.events.push(RecordedEvent {
            position,
            stream_id: event.stream_id(),
            revision: 0,
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            metadata: Metadata {
                actor_id: actor_id.into(),
                actor_role: actor_role.into(),
                request_id: request_id.into(),
                idempotency_key: None,
            },
            recorded_at_ms: self.now_ms,
        });
        position
    }

    fn push(&mut self, event: Event) -> u64 {
        self.push_as(event, "system", "admin", "r")
    }

    fn centre(&mut self, district: &str) -> Centre {
        let id = CentreId::new(Uuid::new_v4());
        self.push(Event::CentreRegistered { centre_id: id, name: "PHC".into(), district: district.into(), state: "MH".into(), pincode: "411001".into() });
        Centre { id }
    }

    fn book(&mut self, centre: Centre, walk_in: bool) -> Booking {
        let appointment_id = AppointmentId::new(Uuid::new_v4());
        let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
        let event = Event::AppointmentBooked {
            appointment_id,
            beneficiary_id,
            session_id: SessionId::new(Uuid::new_v4()),
            centre_id: centre.id,
            date: NaiveDate::from_ymd_opt(2021, 5, 10).unwrap(),
            vaccine: "COVISHIELD".into(),
            dose_number: 1,
            walk_in,
        };
        if walk_in {
            self.push_as(event, "walkin-verifier", "verifier", "r");
        } else {
            self.push_as(event, "citizen-token", "citizen", "r");
        }
        Booking { appointment_id, beneficiary_id, centre: centre.id }
    }

    fn verified(&mut self, booking: Booking, verifier: &str) -> u64 {
        self.push(Event::CodeVerified { appointment_id: booking.appointment_id, centre_id: booking.centre, verifier_id: verifier.into() })
    }

    fn rejected_at(&mut self, booking: Booking, centre: CentreId, verifier: &str, reason: CodeRejectionReason, attempt: u32) -> u64 {
        self.push(Event::CodeRejected {
            appointment_id: booking.appointment_id,
            centre_id: centre,
            verifier_id: verifier.into(),
            reason,
            attempt,
            max_attempts: 5,
        })
    }

    fn wrong_code(&mut self, booking: Booking, verifier: &str, attempt: u32) -> u64 {
        self.rejected_at(booking, booking.centre, verifier, CodeRejectionReason::WrongCode, attempt)
    }

    fn dose(&mut self, booking: Booking, vaccinator: &str) -> u64 {
        self.push(Event::DoseAdministered {
            appointment_id: booking.appointment_id,
            beneficiary_id: booking.beneficiary_id,
            centre_id: booking.centre,
            vaccine: "COVISHIELD".into(),
            batch: "B1".into(),
            dose_number: 1,
            vaccinator_id: vaccinator.into(),
            administered_at: chrono::DateTime::from_timestamp_millis(self.now_ms).unwrap(),
        })
    }

    fn dose_rejected(&mut self, booking: Booking, centre: CentreId, vaccinator: &str, reason: DoseRejectionReason) -> u64 {
        self.push(Event::DoseAdministrationRejected {
            appointment_id: booking.appointment_id,
            centre_id: centre,
            vaccinator_id: vaccinator.into(),
            reason,
        })
    }

    fn certificate(&mut self, booking: Booking) -> (CertificateId, u64) {
        let certificate_id = CertificateId::new(Uuid::new_v4());
        let position = self.push(Event::CertificateIssued {
            certificate_id,
            appointment_id: booking.appointment_id,
            beneficiary_id: booking.beneficiary_id,
            key_id: "k1".into(),
            cose_sha256: "00".into(),
            code_verified_position: 1,
            dose_position: 2,
        });
        (certificate_id, position)
    }

    /// Records a full honest visit: code verified first time, dose, certificate.
    fn honest_visit(&mut self, centre: Centre, verifier: &str) -> Booking {
        let booking = self.book(centre, false);
        self.advance(2);
        self.verified(booking, verifier);
        self.dose(booking, verifier);
        self.certificate(booking);
        booking
    }
}

fn open(dir: &tempfile::TempDir) -> Arc<FraudProjections> {
    FraudProjections::open(&dir.path().join("fraud.db"), FraudConfig::default()).unwrap()
}

fn project(log: &Log) -> (tempfile::TempDir, Arc<FraudProjections>) {
    let dir = tempfile::tempdir().unwrap();
    let fraud = open(&dir);
    fraud.apply_batch(&log.events).unwrap();
    (dir, fraud)
}

fn all_alerts(fraud: &FraudProjections) -> Vec<AlertRow> {
    fraud.alerts(&AlertFilter::default(), PageRequest { after: 0, limit: 1000 }).unwrap().items
}

fn alerts_of(fraud: &FraudProjections, kind: AlertKind) -> Vec<AlertRow> {
    let filter = AlertFilter { kind: Some(kind), ..AlertFilter::default() };
    fraud.alerts(&filter, PageRequest { after: 0, limit: 1000 }).unwrap().items
}

#[test]
fn lockout_alert_with_evidence() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    let mut rejections = Vec::new();
    for attempt in 1..=5 {
        log.advance(1);
        rejections.push(log.wrong_code(booking, "v-brute", attempt));
    }
    let lock = log.push(Event::AppointmentLocked { appointment_id: booking.appointment_id, rejected_attempts: 5 });

    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::Lockout);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.alert_id, format!("lockout-{lock}"));
    let mut expected = rejections.clone();
    expected.push(lock);
    assert_eq!(alert.evidence, expected);
    assert_eq!(alert.verifier_id.as_deref(), Some("v-brute"));
    assert_eq!(alert.appointment_id.as_deref(), Some(booking.appointment_id.to_string().as_str()));
    assert_eq!(alert.beneficiary_id.as_deref(), Some(booking.beneficiary_id.to_string().as_str()));
    assert_eq!(alert.district.as_deref(), Some("Pune"));

    let locked = fraud.attempts(&AttemptFilter { appointment_id: Some(booking.appointment_id.to_string()), ..AttemptFilter::default() }, PageRequest::default()).unwrap();
    assert_eq!(locked.items.iter().filter(|row| row.locked).map(|row| row.position).collect::<Vec<_>>(), vec![rejections[4]]);
}

#[test]
fn lockout_evidence_starts_after_unlock() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    for attempt in 1..=5 {
        log.advance(20);
        log.wrong_code(booking, "v1", attempt);
    }
    log.push(Event::AppointmentLocked { appointment_id: booking.appointment_id, rejected_attempts: 5 });
    log.push(Event::AppointmentUnlocked { appointment_id: booking.appointment_id, supervisor_id: "s1".into(), reason: "ID checked".into() });
    let mut second = Vec::new();
    for attempt in 1..=5 {
        log.advance(20);
        second.push(log.wrong_code(booking, "v1", attempt));
    }
    let lock = log.push(Event::AppointmentLocked { appointment_id: booking.appointment_id, rejected_attempts: 5 });

    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::Lockout);
    assert_eq!(alerts.len(), 2);
    second.push(lock);
    assert_eq!(alerts[1].evidence, second, "evidence covers only the attempts after the unlock");
}

#[test]
fn verifier_rejections_alert_once_per_window() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let bookings: Vec<Booking> = (0..10).map(|_| log.book(centre, false)).collect();
    let mut positions = Vec::new();
    for booking in &bookings {
        log.advance(3);
        positions.push(log.rejected_at(*booking, booking.centre, "v-noisy", CodeRejectionReason::WrongDate, 1));
    }
    for booking in &bookings {
        log.advance(1);
        log.rejected_at(*booking, booking.centre, "v-noisy", CodeRejectionReason::WrongDate, 2);
    }

    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::VerifierRejections);
    assert_eq!(alerts.len(), 1, "one alert per window: {alerts:?}");
    assert_eq!(alerts[0].evidence, positions, "evidence is the ten rejections of the window");
    assert_eq!(alerts[0].alert_id, format!("verifier_rejections-{}", positions[9]));
}

#[test]
fn verifier_rejections_alert_again_next_window() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let bookings: Vec<Booking> = (0..20).map(|_| log.book(centre, false)).collect();
    for booking in &bookings[..10] {
        log.advance(1);
        log.rejected_at(*booking, booking.centre, "v1", CodeRejectionReason::WrongDate, 1);
    }
    log.advance(120);
    for booking in &bookings[10..] {
        log.advance(1);
        log.rejected_at(*booking, booking.centre, "v1", CodeRejectionReason::WrongDate, 1);
    }
    let (_dir, fraud) = project(&log);
    assert_eq!(alerts_of(&fraud, AlertKind::VerifierRejections).len(), 2);
}

#[test]
fn verifier_rejections_below_threshold_quiet() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    for _ in 0..9 {
        let booking = log.book(centre, false);
        log.advance(5);
        log.rejected_at(booking, booking.centre, "v1", CodeRejectionReason::WrongDate, 1);
    }
    let (_dir, fraud) = project(&log);
    assert!(alerts_of(&fraud, AlertKind::VerifierRejections).is_empty());
}

#[test]
fn verifier_rejections_spread_over_day_quiet() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    for _ in 0..30 {
        let booking = log.book(centre, false);
        log.advance(20);
        log.rejected_at(booking, booking.centre, "v1", CodeRejectionReason::WrongDate, 1);
    }
    let (_dir, fraud) = project(&log);
    assert!(all_alerts(&fraud).is_empty(), "{:?}", all_alerts(&fraud));
}

#[test]
fn enumeration_appointment_alert() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    let mut positions = Vec::new();
    for attempt in 1..=3 {
        log.advance(1);
        positions.push(log.wrong_code(booking, "v-guess", attempt));
    }
    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::EnumerationAppointment);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence, positions);
    assert!(alerts_of(&fraud, AlertKind::Lockout).is_empty());
}

#[test]
fn enumeration_appointment_slow_retries_quiet() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    for attempt in 1..=3 {
        log.advance(15);
        log.wrong_code(booking, "v1", attempt);
    }
    let (_dir, fraud) = project(&log);
    assert!(alerts_of(&fraud, AlertKind::EnumerationAppointment).is_empty());
}

#[test]
fn enumeration_appointment_two_verifiers_quiet() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    log.advance(1);
    log.wrong_code(booking, "v1", 1);
    log.advance(1);
    log.wrong_code(booking, "v1", 2);
    log.advance(1);
    log.wrong_code(booking, "v2", 3);
    let (_dir, fraud) = project(&log);
    assert!(alerts_of(&fraud, AlertKind::EnumerationAppointment).is_empty(), "counted per verifier and appointment");
}

#[test]
fn enumeration_spread_alert() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let mut positions = Vec::new();
    for _ in 0..5 {
        let booking = log.book(centre, false);
        log.advance(4);
        positions.push(log.wrong_code(booking, "v-spray", 1));
    }
    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::EnumerationSpread);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].evidence, positions);
    assert!(alerts_of(&fraud, AlertKind::EnumerationAppointment).is_empty());
}

#[test]
fn enumeration_spread_four_appointments_quiet() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    for _ in 0..4 {
        let booking = log.book(centre, false);
        log.advance(4);
        log.wrong_code(booking, "v1", 1);
    }
    let (_dir, fraud) = project(&log);
    assert!(all_alerts(&fraud).is_empty());
}

#[test]
fn dose_without_code_alert() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    let rejected = log.dose_rejected(booking, centre.id, "v-push", DoseRejectionReason::CodeNotVerified);
    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::DoseWithoutCode);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert_id, format!("dose_without_code-{rejected}"));
    assert_eq!(alerts[0].evidence, vec![2, rejected], "the booking and the pushed dose");
    assert_eq!(alerts[0].verifier_id.as_deref(), Some("v-push"));
}

#[test]
fn wrong_centre_alert() {
    let mut log = Log::new();
    let home = log.centre("Pune");
    let elsewhere = log.centre("Pune");
    let booking = log.book(home, false);
    let rejected = log.rejected_at(booking, elsewhere.id, "v-far", CodeRejectionReason::WrongCentre, 1);
    let (_dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::WrongCentre);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].position, rejected);
    assert_eq!(alerts[0].centre_id.as_deref(), Some(elsewhere.id.to_string().as_str()));
    assert!(alerts[0].summary.contains(&home.id.to_string()), "{}", alerts[0].summary);

    let filter = AttemptFilter { reason: Some("wrong_centre".into()), ..AttemptFilter::default() };
    let rows = fraud.attempts(&filter, PageRequest::default()).unwrap().items;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].booked_centre_id.as_deref(), Some(home.id.to_string().as_str()));
    assert_eq!(rows[0].centre_id, elsewhere.id.to_string());
}

#[test]
fn dispute_alert_and_resolution() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.book(centre, false);
    let verified = log.verified(booking, "v-pad");
    let dose = log.dose(booking, "v-pad");
    let (certificate_id, certificate) = log.certificate(booking);
    log.advance(60 * 24);
    let dispute_id = DisputeId::new(Uuid::new_v4());
    let raised = log.push(Event::DisputeRaised {
        dispute_id,
        appointment_id: booking.appointment_id,
        beneficiary_id: booking.beneficiary_id,
        kind: "dose_not_received".into(),
        description: "I never went to the centre".into(),
    });

    let (dir, fraud) = project(&log);
    let alerts = alerts_of(&fraud, AlertKind::Dispute);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence, vec![verified, dose, certificate, raised]);
    assert_eq!(alerts[0].verifier_id.as_deref(), Some("v-pad"));
    let open_disputes = fraud.disputes(&DisputeFilter { status: Some(DisputeStatus::Open), ..DisputeFilter::default() }, PageRequest::default()).unwrap();
    assert_eq!(open_disputes.items.len(), 1);
    assert_eq!(open_disputes.items[0].dose_position, Some(dose));
    drop(fraud);

    log.push_as(
        Event::DisputeResolved {
            dispute_id,
            appointment_id: booking.appointment_id,
            finding: encode_finding(Finding::Upheld, "no visit on CCTV"),
            investigator_id: "inv1".into(),
        },
        "inv1",
        "investigator",
        "req-resolve",
    );
    let revoked = log.push_as(
        Event::CertificateRevoked { certificate_id, appointment_id: booking.appointment_id, reason: RevocationReason::Fraud, note: "no visit".into() },
        "inv1",
        "investigator",
        "req-resolve",
    );
    let fraud = open(&dir);
    fraud.apply_batch(&log.events).unwrap();
    let row = fraud.dispute(&dispute_id.to_string()).unwrap().unwrap();
    assert_eq!(row.status, "upheld");
    assert_eq!(row.note.as_deref(), Some("no visit on CCTV"));
    assert_eq!(row.investigator_id.as_deref(), Some("inv1"));
    assert_eq!(row.revocation_reason.as_deref(), Some("fraud"));
    assert_eq!(row.revoked_position, Some(revoked));
    let open_disputes = fraud.disputes(&DisputeFilter { status: Some(DisputeStatus::Open), ..DisputeFilter::default() }, PageRequest::default()).unwrap();
    assert!(open_disputes.items.is_empty());
}

#[test]
fn honest_day_raises_nothing() {
    let mut log = Log::new();
    let centres: Vec<Centre> = (0..3).map(|_| log.centre("Pune")).collect();
    for round in 0..40 {
        let centre = centres[round % 3];
        let verifier = format!("v{}", round % 3);
        if round % 10 == 3 {
            // A mistyped code, then the right one: honest.
            let booking = log.book(centre, false);
            log.advance(1);
            log.wrong_code(booking, &verifier, 1);
            log.verified(booking, &verifier);
            log.dose(booking, &verifier);
        } else {
            log.honest_visit(centre, &verifier);
        }
    }
    let (_dir, fraud) = project(&log);
    assert!(all_alerts(&fraud).is_empty(), "{:?}", all_alerts(&fraud));
}

#[test]
fn attempts_filters_and_paging() {
    let mut log = Log::new();
    let pune = log.centre("Pune");
    let nashik = log.centre("Nashik");
    for _ in 0..5 {
        log.honest_visit(pune, "v-pune");
        log.honest_visit(nashik, "v-nashik");
    }
    let booking = log.book(nashik, false);
    log.advance(30);
    log.wrong_code(booking, "v-nashik", 1);
    let (_dir, fraud) = project(&log);

    let everything = fraud.attempts(&AttemptFilter::default(), PageRequest { after: 0, limit: 1000 }).unwrap();
    assert_eq!(everything.items.len(), 11);
    assert_eq!(everything.next_after, None);
    assert_eq!(everything.projection_position, log.events.len() as u64);

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = fraud.attempts(&AttemptFilter::default(), PageRequest { after, limit: 4 }).unwrap();
        seen.extend(page.items.iter().map(|row| row.position));
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, everything.items.iter().map(|row| row.position).collect::<Vec<_>>(), "pages join up without gaps");

    let nashik_rows = fraud.attempts(&AttemptFilter { district: Some("NASHIK".into()), ..AttemptFilter::default() }, PageRequest::default()).unwrap();
    assert_eq!(nashik_rows.items.len(), 6, "district compared without case");
    let rejected = AttemptFilter { outcome: Some(Outcome::Rejected), centre_id: Some(nashik.id.to_string()), ..AttemptFilter::default() };
    let rejected = fraud.attempts(&rejected, PageRequest::default()).unwrap().items;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason.as_deref(), Some("wrong_code"));
    assert_eq!(rejected[0].attempt, Some(1));
    assert_eq!(rejected[0].max_attempts, Some(5));
    let by_beneficiary = AttemptFilter { beneficiary_id: Some(booking.beneficiary_id.to_string()), ..AttemptFilter::default() };
    assert_eq!(fraud.attempts(&by_beneficiary, PageRequest::default()).unwrap().items.len(), 1);
    let by_verifier = AttemptFilter { verifier_id: Some("v-pune".into()), ..AttemptFilter::default() };
    assert_eq!(fraud.attempts(&by_verifier, PageRequest::default()).unwrap().items.len(), 5);
}

#[test]
fn attempts_time_range() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let mut times = Vec::new();
    for _ in 0..6 {
        log.advance(60);
        times.push(log.now_ms);
        log.honest_visit(centre, "v1");
    }
    let (_dir, fraud) = project(&log);
    let window = TimeRange { from_ms: Some(times[2]), to_ms: Some(times[4] + 2 * MINUTE_MS) };
    let rows = fraud.attempts(&AttemptFilter { time: window, ..AttemptFilter::default() }, PageRequest::default()).unwrap().items;
    assert_eq!(rows.len(), 3);
    let page = fraud.attempts(&AttemptFilter { time: window, ..AttemptFilter::default() }, PageRequest { after: 0, limit: 2 }).unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = fraud.attempts(&AttemptFilter { time: window, ..AttemptFilter::default() }, PageRequest { after: page.next_after.unwrap(), limit: 2 }).unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_after, None);
    let empty = TimeRange { from_ms: Some(log.now_ms + 60 * MINUTE_MS), to_ms: None };
    assert!(fraud.attempts(&AttemptFilter { time: empty, ..AttemptFilter::default() }, PageRequest::default()).unwrap().items.is_empty());
}

#[test]
fn unknown_filter_values_rejected() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    log.honest_visit(centre, "v1");
    let (_dir, fraud) = project(&log);
    let cases = [
        ("centre", AttemptFilter { centre_id: Some(CentreId::new(Uuid::new_v4()).to_string()), ..AttemptFilter::default() }),
        ("district", AttemptFilter { district: Some("Atlantis".into()), ..AttemptFilter::default() }),
        ("verifier", AttemptFilter { verifier_id: Some("nobody".into()), ..AttemptFilter::default() }),
        ("appointment", AttemptFilter { appointment_id: Some(AppointmentId::new(Uuid::new_v4()).to_string()), ..AttemptFilter::default() }),
        ("beneficiary", AttemptFilter { beneficiary_id: Some(BeneficiaryId::new(Uuid::new_v4()).to_string()), ..AttemptFilter::default() }),
    ];
    for (param, filter) in cases {
        match fraud.attempts(&filter, PageRequest::default()) {
            Err(FraudQueryError::Invalid { param: named, .. }) => assert_eq!(named, param),
            other => panic!("{param}: expected an invalid filter, got {other:?}"),
        }
    }
}

#[test]
fn centre_days_compare_with_district() {
    let mut log = Log::new();
    let calm: Vec<Centre> = (0..3).map(|_| log.centre("Pune")).collect();
    let padded = log.centre("Pune");
    let other_district = log.centre("Nashik");
    for centre in &calm {
        for _ in 0..9 {
            log.honest_visit(*centre, "v-calm");
        }
        let booking = log.book(*centre, false);
        log.advance(30);
        log.wrong_code(booking, "v-calm", 1);
    }
    for index in 0..10 {
        let booking = log.book(padded, index < 8);
        log.advance(30);
        log.wrong_code(booking, "v-padded", 1);
        log.advance(30);
        log.wrong_code(booking, "v-padded", 2);
        log.verified(booking, "v-padded");
        log.dose(booking, "v-padded");
    }
    log.honest_visit(other_district, "v-far");
    let (_dir, fraud) = project(&log);

    let filter = AggregateFilter { centre_id: Some(padded.id.to_string()), ..AggregateFilter::default() };
    let rows = fraud.centre_days(&filter, PageRequest::default()).unwrap().items;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.day, "2021-05-10");
    assert_eq!(row.counters.attempts, 30);
    assert_eq!(row.counters.rejected, 20);
    assert_eq!(row.counters.rejected_by_reason.wrong_code, 20);
    assert_eq!(row.counters.doses, 10);
    assert_eq!(row.counters.walk_in_doses, 8);
    assert_eq!(row.counters.walk_in_bookings, 8);
    assert_eq!(row.comparison.peers, 4, "the four Pune centres; Nashik is another district");
    let rate = &row.comparison.rejection_rate;
    assert!((rate.value.unwrap() - 20.0 / 30.0).abs() < 1e-9);
    assert!((rate.district_median.unwrap() - 0.1).abs() < 1e-9, "{rate:?}");
    assert!(rate.ratio_to_median.unwrap() > 6.0, "{rate:?}");
    assert!((row.comparison.walk_in_share.value.unwrap() - 0.8).abs() < 1e-9);

    let verifier = AggregateFilter { verifier_id: Some("v-padded".into()), ..AggregateFilter::default() };
    let rows = fraud.verifier_days(&verifier, PageRequest::default()).unwrap().items;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counters.rejected, 20);
    assert_eq!(rows[0].counters.walk_in_bookings, 0, "walk-ins were booked by another token");
    assert_eq!(rows[0].comparison.peers, 3, "v-calm, v-padded and the token that booked the walk-ins work in Pune");

    let later = AggregateFilter { from_day: NaiveDate::from_ymd_opt(2021, 5, 11), ..AggregateFilter::default() };
    assert!(fraud.centre_days(&later, PageRequest::default()).unwrap().items.is_empty());
}

#[test]
fn disputes_counted_against_vaccinator() {
    let mut log = Log::new();
    let centre = log.centre("Pune");
    let booking = log.honest_visit(centre, "v-pad");
    log.push(Event::DisputeRaised {
        dispute_id: DisputeId::new(Uuid::new_v4()),
        appointment_id: booking.appointment_id,
        beneficiary_id: booking.beneficiary_id,
        kind: "dose_not_received".into(),
        description: "not me".into(),
    });
    let (_dir, fraud) = project(&log);
    let filter = AggregateFilter { verifier_id: Some("v-pad".into()), ..AggregateFilter::default() };
    assert_eq!(fraud.verifier_days(&filter, PageRequest::default()).unwrap().items[0].counters.disputes, 1);
    let filter = AggregateFilter { centre_id: Some(centre.id.to_string()), ..AggregateFilter::default() };
    assert_eq!(fraud.centre_days(&filter, PageRequest::default()).unwrap().items[0].counters.disputes, 1);
}

/// Builds a log with every pattern, for the rebuild and batch tests.
fn mixed_log() -> Log {
    let mut log = Log::new();
    let pune = log.centre("Pune");
    let nashik = log.centre("Nashik");
    for index in 0..12 {
        log.honest_visit(if index % 2 == 0 { pune } else { nashik }, "v-honest");
    }
    let brute = log.book(pune, false);
    for attempt in 1..=5 {
        log.wrong_code(brute, "v-brute", attempt);
    }
    log.push(Event::AppointmentLocked { appointment_id: brute.appointment_id, rejected_attempts: 5 });
    for _ in 0..9 {
        let booking = log.book(nashik, true);
        log.advance(2);
        log.wrong_code(booking, "v-spray", 1);
    }
    let pushed = log.book(pune, false);
    log.dose_rejected(pushed, pune.id, "v-push", DoseRejectionReason::CodeNotVerified);
    log.rejected_at(pushed, nashik.id, "v-spray", CodeRejectionReason::WrongCentre, 1);
    let disputed = log.honest_visit(pune, "v-honest");
    log.push(Event::DisputeRaised {
        dispute_id: DisputeId::new(Uuid::new_v4()),
        appointment_id: disputed.appointment_id,
        beneficiary_id: disputed.beneficiary_id,
        kind: "dose_not_received".into(),
        description: "not me".into(),
    });
    log
}

/// Everything the queries return, for comparing two projections.
fn snapshot(fraud: &FraudProjections) -> String {
    let page = PageRequest { after: 0, limit: 1000 };
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        fraud.attempts(&AttemptFilter::default(), page).unwrap(),
        fraud.alerts(&AlertFilter::default(), page).unwrap(),
        fraud.centre_days(&AggregateFilter::default(), page).unwrap(),
        fraud.verifier_days(&AggregateFilter::default(), page).unwrap(),
        fraud.disputes(&DisputeFilter::default(), page).unwrap(),
    )
}

#[test]
fn rebuild_equals_incremental() {
    let log = mixed_log();
    let dir = tempfile::tempdir().unwrap();
    let fraud = open(&dir);
    for chunk in log.events.chunks(7) {
        fraud.apply_batch(chunk).unwrap();
    }
    let incremental = snapshot(&fraud);
    let kinds: std::collections::HashSet<String> = all_alerts(&fraud).into_iter().map(|alert| alert.kind).collect();
    assert_eq!(kinds.len(), AlertKind::ALL.len(), "the mixed log raises every kind: {kinds:?}");

    fraud.reset().unwrap();
    assert_eq!(fraud.checkpoint(), 0);
    assert!(all_alerts(&fraud).is_empty());
    fraud.apply_batch(&log.events).unwrap();
    assert_eq!(snapshot(&fraud), incremental);
}

#[test]
fn batch_read_twice_applied_once() {
    let log = mixed_log();
    let dir = tempfile::tempdir().unwrap();
    let fraud = open(&dir);
    fraud.apply_batch(&log.events).unwrap();
    let once = snapshot(&fraud);
    fraud.apply_batch(&log.events).unwrap();
    assert_eq!(snapshot(&fraud), once);
}

#[test]
fn config_change_rebuilds() {
    let log = mixed_log();
    let dir = tempfile::tempdir().unwrap();
    let fraud = open(&dir);
    fraud.apply_batch(&log.events).unwrap();
    drop(fraud);

    let reopened = open(&dir);
    assert_eq!(reopened.checkpoint(), log.events.len() as u64, "same thresholds keep the checkpoint");
    drop(reopened);

    let stricter = FraudConfig { spread_appointments: 50, ..FraudConfig::default() };
    let changed = FraudProjections::open(&dir.path().join("fraud.db"), stricter).unwrap();
    assert_eq!(changed.checkpoint(), 0, "new thresholds rebuild from position 0");
    changed.apply_batch(&log.events).unwrap();
    assert!(alerts_of(&changed, AlertKind::EnumerationSpread).is_empty());
}

#[test]
fn undecodable_event_stops_batch() {
    let mut log = mixed_log();
    let dir = tempfile::tempdir().unwrap();
    let fraud = open(&dir);
    let good = log.events.len() as u64;
    log.events.push(RecordedEvent { payload: vec![0xff, 0x00], ..log.events[0].clone() });
    log.events.last_mut().unwrap().position = good + 1;
    let err = fraud.apply_batch(&log.events).unwrap_err();
    assert!(err.to_string().contains(&format!("position {}", good + 1)), "{err}");
    assert_eq!(fraud.checkpoint(), 0, "nothing of the failed batch is kept");
}

fn append_of(event: &Event) -> StreamAppend {
    StreamAppend {
        stream_id: event.stream_id(),
        expected: ExpectedRevision::Any,
        events: vec![NewEvent {
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            metadata: Metadata::default(),
        }],
    }
}

async fn append_log(store: &SqliteStore, events: &[RecordedEvent]) {
    for recorded in events {
        let event = Event::decode(&recorded.event_type, recorded.schema_version, &recorded.payload).unwrap();
        store.append(vec![append_of(&event)]).await.unwrap();
    }
}

#[tokio::test]
async fn projector_resumes_after_reopen() {
    let log = mixed_log();
    let split = log.events.len() / 2;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db")).await.unwrap();
    append_log(&store, &log.events[..split]).await;

    let fraud = open(&dir);
    let task = tokio::spawn(Arc::clone(&fraud).run(store.clone() as Arc<dyn EventStore>));
    fraud.wait_for(split as u64, Duration::from_secs(10)).await.unwrap();
    task.abort();
    let _ = task.await;
    drop(fraud);

    append_log(&store, &log.events[split..]).await;
    let reopened = open(&dir);
    assert_eq!(reopened.checkpoint(), split as u64);
    let task = tokio::spawn(Arc::clone(&reopened).run(store.clone() as Arc<dyn EventStore>));
    reopened.wait_for(log.events.len() as u64, Duration::from_secs(10)).await.unwrap();
    task.abort();

    let resumed = fraud_rows(&reopened);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(&fresh_dir);
    fresh.apply_batch(&store.read_all(0, 10_000).await.unwrap()).unwrap();
    assert_eq!(resumed, fraud_rows(&fresh), "a resumed projector holds what one pass from 0 holds");
    assert_eq!(resumed.0, 29, "every attempt counted exactly once across the restart");
}

/// Attempt count and alert ids, which do not depend on store times.
fn fraud_rows(fraud: &FraudProjections) -> (usize, Vec<String>) {
    let page = PageRequest { after: 0, limit: 1000 };
    let attempts = fraud.attempts(&AttemptFilter::default(), page).unwrap().items.len();
    let alerts = fraud.alerts(&AlertFilter::default(), page).unwrap().items.into_iter().map(|alert| alert.alert_id).collect();
    (attempts, alerts)
}
