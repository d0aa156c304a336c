//! Rules of the appointment aggregate: booking, the security-code gate and the dose gate.

use chrono::{NaiveDate, TimeZone, Utc};
use domain::appointment::{AdministerDose, Appointment, BookAppointment, Status, VerifyCode, MAX_REJECTED_ATTEMPTS};
use domain::beneficiary::{Beneficiary, RegisterBeneficiary};
use domain::centre::{Centre, RegisterCentre};
use domain::code::{SecurityCode, ServerKey};
use domain::events::{CancellationReason, Event, Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, MobileNumber, SessionId};
use domain::mobile::Mobile;
use domain::rejection::{CodeRejectionReason, DoseRejectionReason, Rejection};
use domain::session::{ScheduleSession, Session};
use domain::vaccine::VaccineCatalogue;
use domain::Decision;
use uuid::Uuid;

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2021, 5, day).unwrap()
}

fn key() -> ServerKey {
    ServerKey::from_bytes([9; 32])
}

/// A centre, a session on `session_date` and a registered beneficiary, ready to book.
struct World {
    centre_id: CentreId,
    session: Session,
    beneficiary: Beneficiary,
    catalogue: VaccineCatalogue,
}

impl World {
    fn new(session_date: NaiveDate, capacity: u32, vaccine: &str, year_of_birth: u16) -> Self {
        let catalogue = VaccineCatalogue::default();
        let centre_id = CentreId::new(Uuid::new_v4());
        let mut centre = Centre::default();
        let registered = centre
            .handle_register(RegisterCentre {
                centre_id,
                name: "UPHC Kothrud".into(),
                district: "Pune".into(),
                state: "Maharashtra".into(),
                pincode: "411038".into(),
            })
            .unwrap();
        registered.iter().for_each(|event| centre.apply(event));

        let mut session = Session::default();
        let scheduled = session
            .handle_schedule(
                ScheduleSession {
                    session_id: SessionId::new(Uuid::new_v4()),
                    centre_id,
                    date: session_date,
                    vaccine: vaccine.into(),
                    capacity,
                    min_age: 18,
                },
                &centre,
                &catalogue,
                date(1),
            )
            .unwrap();
        scheduled.iter().for_each(|event| session.apply(event));

        let mut beneficiary = Beneficiary::default();
        let registered = beneficiary
            .handle_register(
                RegisterBeneficiary {
                    beneficiary_id: BeneficiaryId::new(Uuid::new_v4()),
                    mobile: MobileNumber::parse("9123456789").unwrap(),
                    name: "Ravi Kumar".into(),
                    year_of_birth,
                    gender: Gender::Male,
                    photo_id_type: PhotoIdType::VoterId,
                    photo_id_number: "ABC1234567".into(),
                    walk_in: false,
                },
                &Mobile::default(),
                &key(),
                2021,
            )
            .unwrap();
        registered.iter().for_each(|event| beneficiary.apply(event));
        Self { centre_id, session, beneficiary, catalogue }
    }

    fn book_command(&self, code: &SecurityCode, dose_number: u8, today: NaiveDate) -> BookAppointment {
        let appointment_id = AppointmentId::new(Uuid::new_v4());
        BookAppointment {
            appointment_id,
            beneficiary_id: self.beneficiary.info.as_ref().unwrap().beneficiary_id,
            session_id: self.session.info.as_ref().unwrap().session_id,
            dose_number,
            code_hmac: key().code_hmac(&appointment_id, code),
            key_id: key().key_id().into(),
            walk_in: false,
            today,
        }
    }

    /// Books and applies the events to every aggregate; returns the appointment.
    fn book(&mut self, code: &SecurityCode) -> Appointment {
        let command = self.book_command(code, 1, date(1));
        let events = Appointment::default()
            .handle_book(&command, &self.session, &self.beneficiary, &self.catalogue)
            .unwrap();
        self.apply_all(&events);
        Appointment::from_events(&events)
    }

    fn apply_all(&mut self, events: &[Event]) {
        for event in events {
            self.session.apply(event);
            self.beneficiary.apply(event);
        }
    }

    fn verify(&self, code: &str, today: NaiveDate) -> VerifyCode {
        VerifyCode {
            code: SecurityCode::parse(code).unwrap(),
            centre_id: self.centre_id,
            verifier_id: "tok-verifier".into(),
            today,
        }
    }

    fn dose(&self) -> AdministerDose {
        AdministerDose {
            centre_id: self.centre_id,
            vaccinator_id: "tok-verifier".into(),
            batch: "4121Z005".into(),
            vaccine: None,
            at: Utc.with_ymd_and_hms(2021, 5, 10, 5, 30, 0).unwrap(),
        }
    }
}

fn apply(appointment: &mut Appointment, decision: &Decision) {
    decision.events().iter().for_each(|event| appointment.apply(event));
}

fn code(text: &str) -> SecurityCode {
    SecurityCode::parse(text).unwrap()
}

#[test]
fn book_emits_four_events_without_plain_code() {
    let world = World::new(date(10), 10, "COVAXIN", 1980);
    let command = world.book_command(&code("0427"), 1, date(1));
    let events = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap();
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(types, ["AppointmentBooked", "SecurityCodeIssued", "SeatReserved", "BeneficiaryAppointmentOpened"]);
    let Event::SecurityCodeIssued { code_hmac, .. } = &events[1] else { panic!() };
    assert_eq!(code_hmac.len(), 64);
    assert!(!code_hmac.contains("0427"));
}

#[test]
fn book_full_session_rejected() {
    let mut world = World::new(date(10), 1, "COVAXIN", 1980);
    world.book(&code("1111"));
    let mut other = World::new(date(10), 1, "COVAXIN", 1990);
    other.session = world.session.clone();
    let command = other.book_command(&code("2222"), 1, date(1));
    let err = Appointment::default().handle_book(&command, &other.session, &other.beneficiary, &other.catalogue).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "session_full", .. }), "{err:?}");
}

#[test]
fn book_underage_rejected() {
    let world = World::new(date(10), 10, "COVAXIN", 2005);
    let command = world.book_command(&code("1111"), 1, date(1));
    let err = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "not_eligible_by_age", .. }), "{err:?}");
}

#[test]
fn book_second_open_appointment_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    world.book(&code("1111"));
    let command = world.book_command(&code("2222"), 1, date(1));
    let err = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "appointment_already_open", .. }), "{err:?}");
}

#[test]
fn book_after_cancel_allowed() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("1111"));
    let cancelled = appointment.handle_cancel(CancellationReason::ByCitizen).unwrap();
    world.apply_all(&cancelled);
    assert_eq!(world.session.available(), 10);
    let command = world.book_command(&code("2222"), 1, date(1));
    assert!(Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).is_ok());
}

#[test]
fn book_past_session_rejected() {
    let world = World::new(date(10), 10, "COVAXIN", 1980);
    let command = world.book_command(&code("1111"), 1, date(11));
    let err = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "session_past", .. }), "{err:?}");
}

#[test]
fn book_dose_two_without_dose_one_rejected() {
    let world = World::new(date(10), 10, "COVAXIN", 1980);
    let command = world.book_command(&code("1111"), 2, date(1));
    let err = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "previous_dose_missing", .. }), "{err:?}");
}

#[test]
fn book_dose_number_out_of_range_rejected() {
    let world = World::new(date(10), 10, "COVAXIN", 1980);
    for dose_number in [0, 3] {
        let command = world.book_command(&code("1111"), dose_number, date(1));
        let err = Appointment::default().handle_book(&command, &world.session, &world.beneficiary, &world.catalogue).unwrap_err();
        assert_eq!(err.field(), Some("dose_number"));
    }
}

/// Gives dose 1 of `vaccine` on 10 May, then tries dose 2 in a session on `second_date`.
fn book_second_dose(vaccine: &str, second_vaccine: &str, second_date: NaiveDate) -> Result<Vec<Event>, Rejection> {
    let mut world = World::new(date(10), 10, vaccine, 1980);
    let mut appointment = world.book(&code("1111"));
    let verified = appointment.handle_verify(&world.verify("1111", date(10)), &key()).unwrap();
    apply(&mut appointment, &verified);
    let dosed = appointment.handle_administer(&world.dose()).unwrap();
    world.apply_all(dosed.events());

    let later = World::new(second_date, 10, second_vaccine, 1980);
    let mut world_two = later;
    world_two.beneficiary = world.beneficiary.clone();
    let command = world_two.book_command(&code("2222"), 2, date(1));
    Appointment::default().handle_book(&command, &world_two.session, &world_two.beneficiary, &world_two.catalogue)
}

#[test]
fn book_dose_two_before_interval_rejected() {
    // Covaxin: 28 days, so 7 June is the first allowed date after 10 May.
    let err = book_second_dose("COVAXIN", "COVAXIN", NaiveDate::from_ymd_opt(2021, 6, 6).unwrap()).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "dose_interval_not_reached", .. }), "{err:?}");
}

#[test]
fn book_dose_two_on_interval_allowed() {
    assert!(book_second_dose("COVAXIN", "COVAXIN", NaiveDate::from_ymd_opt(2021, 6, 7).unwrap()).is_ok());
}

#[test]
fn book_dose_two_other_vaccine_rejected() {
    let err = book_second_dose("COVAXIN", "COVISHIELD", NaiveDate::from_ymd_opt(2021, 9, 1).unwrap()).unwrap_err();
    assert!(matches!(err, Rejection::Conflict { code: "vaccine_mismatch", .. }), "{err:?}");
}

#[test]
fn verify_right_code_accepted() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("0042"));
    let decision = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(&decision, Decision::Accepted(events) if events[0].event_type() == "CodeVerified"));
}

#[test]
fn verify_wrong_code_rejected_and_recorded() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("0042"));
    let decision = appointment.handle_verify(&world.verify("0043", date(10)), &key()).unwrap();
    let Decision::Rejected { events, rejection } = decision else { panic!("accepted a wrong code") };
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], Event::CodeRejected { reason: CodeRejectionReason::WrongCode, attempt: 1, .. }));
    assert!(matches!(rejection, Rejection::CodeRejected { locked: false, .. }));
}

#[test]
fn verify_wrong_centre_rejected_even_with_right_code() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("0042"));
    let mut command = world.verify("0042", date(10));
    command.centre_id = CentreId::new(Uuid::new_v4());
    let decision = appointment.handle_verify(&command, &key()).unwrap();
    assert!(matches!(decision.events()[0], Event::CodeRejected { reason: CodeRejectionReason::WrongCentre, .. }));
}

#[test]
fn verify_wrong_date_rejected_even_with_right_code() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("0042"));
    for day in [9, 11] {
        let decision = appointment.handle_verify(&world.verify("0042", date(day)), &key()).unwrap();
        assert!(matches!(decision.events()[0], Event::CodeRejected { reason: CodeRejectionReason::WrongDate, .. }));
    }
}

#[test]
fn verify_five_rejections_lock() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    for attempt in 1..MAX_REJECTED_ATTEMPTS {
        let decision = appointment.handle_verify(&world.verify("9999", date(10)), &key()).unwrap();
        assert_eq!(decision.events().len(), 1, "attempt {attempt}");
        apply(&mut appointment, &decision);
        assert!(!appointment.locked);
    }
    let fifth = appointment.handle_verify(&world.verify("9999", date(10)), &key()).unwrap();
    let types: Vec<&str> = fifth.events().iter().map(Event::event_type).collect();
    assert_eq!(types, ["CodeRejected", "AppointmentLocked"]);
    apply(&mut appointment, &fifth);
    assert!(appointment.locked);

    let after_lock = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(after_lock.events()[0], Event::CodeRejected { reason: CodeRejectionReason::Locked, .. }));
    assert_eq!(after_lock.events().len(), 1);
}

#[test]
fn unlock_resets_attempts() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    assert!(appointment.handle_unlock("tok-supervisor", "checked ID").is_err());
    for _ in 0..MAX_REJECTED_ATTEMPTS {
        let decision = appointment.handle_verify(&world.verify("9999", date(10)), &key()).unwrap();
        apply(&mut appointment, &decision);
    }
    let unlocked = appointment.handle_unlock("tok-supervisor", "beneficiary identity confirmed").unwrap();
    unlocked.iter().for_each(|event| appointment.apply(event));
    assert!(!appointment.locked);
    assert_eq!(appointment.rejected_attempts, 0);
    let decision = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(decision, Decision::Accepted(_)));
}

#[test]
fn verify_twice_is_already_used() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let first = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    apply(&mut appointment, &first);
    let second = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(second.events()[0], Event::CodeRejected { reason: CodeRejectionReason::AlreadyUsed, attempt: 0, .. }));
}

#[test]
fn verify_cancelled_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    appointment.handle_cancel(CancellationReason::ByCitizen).unwrap().iter().for_each(|event| appointment.apply(event));
    let decision = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(decision.events()[0], Event::CodeRejected { reason: CodeRejectionReason::AppointmentCancelled, .. }));
}

#[test]
fn dose_without_verified_code_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let appointment = world.book(&code("0042"));
    let decision = appointment.handle_administer(&world.dose()).unwrap();
    let Decision::Rejected { events, .. } = decision else { panic!("dose recorded without a verified code") };
    assert!(matches!(events[0], Event::DoseAdministrationRejected { reason: DoseRejectionReason::CodeNotVerified, .. }));
}

#[test]
fn dose_after_verification_recorded_once() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let verified = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    apply(&mut appointment, &verified);
    let dosed = appointment.handle_administer(&world.dose()).unwrap();
    let types: Vec<&str> = dosed.events().iter().map(Event::event_type).collect();
    assert_eq!(types, ["DoseAdministered", "BeneficiaryDoseRecorded"]);
    apply(&mut appointment, &dosed);
    assert_eq!(appointment.status, Status::Administered);

    let again = appointment.handle_administer(&world.dose()).unwrap();
    assert!(matches!(again.events()[0], Event::DoseAdministrationRejected { reason: DoseRejectionReason::AlreadyAdministered, .. }));
}

#[test]
fn dose_wrong_centre_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let verified = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    apply(&mut appointment, &verified);
    let mut command = world.dose();
    command.centre_id = CentreId::new(Uuid::new_v4());
    let decision = appointment.handle_administer(&command).unwrap();
    assert!(matches!(decision.events()[0], Event::DoseAdministrationRejected { reason: DoseRejectionReason::WrongCentre, .. }));
}

#[test]
fn dose_wrong_vaccine_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let verified = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    apply(&mut appointment, &verified);
    let mut command = world.dose();
    command.vaccine = Some("COVISHIELD".into());
    let decision = appointment.handle_administer(&command).unwrap();
    assert!(matches!(decision.events()[0], Event::DoseAdministrationRejected { reason: DoseRejectionReason::WrongVaccine, .. }));
}

#[test]
fn dose_on_locked_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    for _ in 0..MAX_REJECTED_ATTEMPTS {
        let decision = appointment.handle_verify(&world.verify("1234", date(10)), &key()).unwrap();
        apply(&mut appointment, &decision);
    }
    let decision = appointment.handle_administer(&world.dose()).unwrap();
    assert!(matches!(decision.events()[0], Event::DoseAdministrationRejected { reason: DoseRejectionReason::Locked, .. }));
}

#[test]
fn cancel_after_dose_rejected() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let verified = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    apply(&mut appointment, &verified);
    let dosed = appointment.handle_administer(&world.dose()).unwrap();
    apply(&mut appointment, &dosed);
    assert!(appointment.handle_cancel(CancellationReason::ByCitizen).is_err());
}

#[test]
fn reissue_only_before_verification() {
    let mut world = World::new(date(10), 10, "COVAXIN", 1980);
    let mut appointment = world.book(&code("0042"));
    let booking_id = appointment.booking.as_ref().unwrap().appointment_id;
    let new_hmac = key().code_hmac(&booking_id, &code("7777"));
    let reissued = appointment.handle_reissue(new_hmac, key().key_id(), "SMS not received").unwrap();
    reissued.iter().for_each(|event| appointment.apply(event));
    let old = appointment.handle_verify(&world.verify("0042", date(10)), &key()).unwrap();
    assert!(matches!(old, Decision::Rejected { .. }));
    let new = appointment.handle_verify(&world.verify("7777", date(10)), &key()).unwrap();
    apply(&mut appointment, &new);
    assert_eq!(appointment.status, Status::Verified);
    assert!(appointment.handle_reissue(new_hmac, key().key_id(), "again").is_err());
}

#[test]
fn commands_on_unbooked_appointment_not_found() {
    let appointment = Appointment::default();
    let world = World::new(date(10), 10, "COVAXIN", 1980);
    assert!(matches!(appointment.handle_verify(&world.verify("0000", date(10)), &key()), Err(Rejection::NotFound { .. })));
    assert!(matches!(appointment.handle_administer(&world.dose()), Err(Rejection::NotFound { .. })));
}
