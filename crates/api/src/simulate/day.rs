//! The simulated day after set-up: citizens log in, register, search and book; the capacity
//! race; the centre day with honest visits, no-shows, impostors, brute force, wrong-centre codes,
//! cancellations and walk-ins; and the final checks of appointment and session states.

use super::*;

// ---------------------------------------------------------------------------------------------
// Citizens: login, registration, search, booking
// ---------------------------------------------------------------------------------------------

/// Logs a citizen in: requests an OTP, reads it from the outbox and exchanges it for a token.
pub(super) async fn log_in(sim: &Sim, mobile: &str) -> Result<String, String> {
    let masked = mask_mobile(mobile);
    let reply = sim.http.post("/auth/otp", None, &json!({ "mobile": mobile })).await?;
    if !reply.is_ok() {
        return Err(format!("requesting an OTP for {masked} failed: {}", reply.describe()));
    }
    let otp = sim
        .outbox
        .otp(mobile)
        .await
        .ok_or_else(|| format!("no OTP for {masked} arrived in {} within {} s", sim.outbox.path.display(), SMS_WAIT.as_secs()))?;
    let reply = sim.http.post("/auth/token", None, &json!({ "mobile": mobile, "otp": otp })).await?;
    match reply.text("token") {
        Some(token) if reply.is_ok() => {
            sim.count(|counts| counts.citizens += 1);
            Ok(token.to_owned())
        }
        _ => Err(format!("exchanging the OTP of {masked} failed: {}", reply.describe())),
    }
}

/// Shows the last four digits only, as the server does.
pub(super) fn mask_mobile(mobile: &str) -> String {
    format!("XXXXXX{}", &mobile[mobile.len().saturating_sub(4)..])
}

/// Registers a beneficiary. A verifier registering a walk-in passes the walk-in's `mobile`.
pub(super) async fn register(sim: &Sim, token: &str, person: &Person, mobile: Option<&str>) -> Result<String, String> {
    let reply = sim.http.post("/beneficiaries", Some(token), &person.body(mobile)).await?;
    match reply.text("id") {
        Some(id) if reply.is_ok() => Ok(id.to_owned()),
        _ => Err(format!("registering a beneficiary failed: {}", reply.describe())),
    }
}

/// Logs in, registers, searches and books for every citizen. The first citizen goes alone, so
/// that an outbox file the server does not write stops the run with a clear error.
pub(super) async fn run_citizens(sim: &Arc<Sim>, world: &Arc<World>, plan: &mut DayPlan, config: &SimulateConfig) -> anyhow::Result<Vec<Booking>> {
    let mut citizens: Vec<(usize, CitizenPlan)> = std::mem::take(&mut plan.citizens).into_iter().enumerate().collect();
    let bar = progress_bar(config.progress, "citizens", citizens.len());

    let (first_index, first) = citizens.remove(0);
    let token = log_in(sim, &first.mobile).await.map_err(|err| {
        anyhow::anyhow!("the first citizen could not log in: {err}; pass --outbox with the outbox.jsonl of the server's data folder")
    })?;
    sim.checks.pass("citizen_login");
    let mut bookings = book_for_citizen(Arc::clone(sim), Arc::clone(world), first_index, first, token).await;
    bar.inc(1);

    let rest = run_bounded(sim, config.concurrency, citizens, &bar, |(index, citizen)| {
        let sim = Arc::clone(sim);
        let world = Arc::clone(world);
        async move {
            match log_in(&sim, &citizen.mobile).await {
                Ok(token) => {
                    sim.checks.pass("citizen_login");
                    book_for_citizen(sim, world, index, citizen, token).await
                }
                Err(err) => {
                    sim.checks.fail("citizen_login", err);
                    Vec::new()
                }
            }
        }
    })
    .await;
    bookings.extend(rest.into_iter().flatten());
    bookings.sort_by_key(|booking| booking.order);
    info!(bookings = bookings.len(), "citizens logged in and booked");
    Ok(bookings)
}

pub(super) async fn book_for_citizen(sim: Arc<Sim>, world: Arc<World>, index: usize, citizen: CitizenPlan, token: String) -> Vec<Booking> {
    let token = Arc::new(token);
    let district_name = world.district_names[citizen.district];

    let mut available: HashMap<String, i64> = HashMap::new();
    for district in &citizen.searches {
        match sim.search(world.district_names[*district]).await {
            Ok(rows) => {
                sim.checks.pass("session_search");
                if *district == citizen.district {
                    available = seats_available(&rows);
                }
            }
            Err(err) => sim.checks.fail("session_search", err),
        }
    }

    let mut bookings = Vec::new();
    for (number, beneficiary) in citizen.beneficiaries.into_iter().enumerate() {
        let beneficiary_id = match register(&sim, &token, &beneficiary.person, None).await {
            Ok(id) => {
                sim.checks.pass("beneficiary_registered");
                sim.count(|counts| counts.beneficiaries += 1);
                id
            }
            Err(err) => {
                sim.checks.fail("beneficiary_registered", format!("citizen {}: {err}", mask_mobile(&citizen.mobile)));
                continue;
            }
        };

        let mut booked = None;
        for (centre, session) in &beneficiary.preferences {
            let session_id = &world.centres[*centre].sessions[*session].id;
            if available.get(session_id).is_some_and(|seats| *seats <= 0) {
                continue;
            }
            let body = json!({ "beneficiary_id": beneficiary_id, "session_id": session_id, "dose_number": 1 });
            let reply = match sim.http.post("/appointments", Some(&token), &body).await {
                Ok(reply) => reply,
                Err(err) => {
                    sim.checks.fail("booking_answered", err);
                    break;
                }
            };
            if reply.status == 409 && reply.problem() == "session_full" {
                sim.checks.pass("booking_answered");
                sim.count(|counts| counts.bookings_full += 1);
                match sim.search(district_name).await {
                    Ok(rows) => available = seats_available(&rows),
                    Err(err) => sim.checks.fail("session_search", err),
                }
                continue;
            }
            let Some(appointment_id) = reply.text("appointment_id").filter(|_| reply.is_ok()).map(str::to_owned) else {
                sim.checks.fail("booking_answered", format!("booking session {session_id}: {}", reply.describe()));
                break;
            };
            sim.checks.pass("booking_answered");
            sim.count(|counts| counts.bookings += 1);
            sim.seat(session_id, 1);
            let code = reply.text("security_code").unwrap_or_default().to_owned();
            if code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()) {
                sim.checks.pass("booking_returns_code");
            } else {
                sim.checks.fail("booking_returns_code", format!("appointment {appointment_id}: the booking response has no 4-digit security_code"));
            }
            booked = Some(Booking {
                order: (index, number),
                appointment_id,
                beneficiary_id: beneficiary_id.clone(),
                name: beneficiary.person.name.clone(),
                session_id: session_id.clone(),
                centre: *centre,
                code,
                citizen_token: Arc::clone(&token),
                fate: beneficiary.fate,
                wrong_codes: beneficiary.wrong_codes.clone(),
                brute_force_start: beneficiary.brute_force_start,
                other_centre_pick: beneficiary.other_centre_pick,
            });
            break;
        }
        match booked {
            Some(booking) => bookings.push(booking),
            None => sim.count(|counts| counts.unbooked += 1),
        }
    }
    bookings
}

/// Maps session ids to their free seats, from search results.
pub(super) fn seats_available(rows: &[Value]) -> HashMap<String, i64> {
    rows.iter()
        .filter_map(|row| Some((row["session_id"].as_str()?.to_owned(), row["available"].as_i64()?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Capacity race
// ---------------------------------------------------------------------------------------------

/// Books one 10-seat session from 50 distinct beneficiaries at once: exactly 10 bookings must
/// be accepted and the other 40 rejected with 409.
pub(super) async fn run_capacity_race(sim: &Arc<Sim>, world: &Arc<World>, plan: &DayPlan, concurrency: usize) {
    let centre = &world.centres[0];
    let session_id = match schedule_session(sim, &centre.id, "COVAXIN", RACE_CAPACITY, 18).await {
        Ok(id) => id,
        Err(err) => {
            sim.checks.fail("capacity_race", format!("scheduling the race session failed: {err:#}"));
            return;
        }
    };
    sim.count(|counts| counts.sessions += 1);

    let racers: Vec<(String, Vec<Person>)> = plan.race.iter().map(|citizen| (citizen.mobile.clone(), citizen.people.clone())).collect();
    let registered = run_bounded(sim, concurrency, racers, &ProgressBar::hidden(), |(mobile, people)| {
        let sim = Arc::clone(sim);
        async move {
            let token = match log_in(&sim, &mobile).await {
                Ok(token) => token,
                Err(err) => {
                    sim.checks.fail("citizen_login", err);
                    return Vec::new();
                }
            };
            sim.checks.pass("citizen_login");
            let token = Arc::new(token);
            let mut entrants = Vec::new();
            for person in &people {
                match register(&sim, &token, person, None).await {
                    Ok(id) => {
                        sim.checks.pass("beneficiary_registered");
                        sim.count(|counts| counts.beneficiaries += 1);
                        entrants.push((Arc::clone(&token), id));
                    }
                    Err(err) => sim.checks.fail("beneficiary_registered", err),
                }
            }
            entrants
        }
    })
    .await;
    let entrants: Vec<(Arc<String>, String)> = registered.into_iter().flatten().collect();
    if entrants.len() != RACE_BOOKINGS {
        sim.checks.fail("capacity_race", format!("only {} of {RACE_BOOKINGS} race beneficiaries were registered", entrants.len()));
        return;
    }

    let barrier = Arc::new(Barrier::new(entrants.len()));
    let mut tasks = JoinSet::new();
    for (token, beneficiary_id) in entrants {
        let sim = Arc::clone(sim);
        let barrier = Arc::clone(&barrier);
        let body = json!({ "beneficiary_id": beneficiary_id, "session_id": session_id, "dose_number": 1 });
        tasks.spawn(async move {
            barrier.wait().await;
            sim.http.post("/appointments", Some(&token), &body).await
        });
    }
    let (mut booked, mut full, mut unexpected) = (0u64, 0u64, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(reply)) if reply.is_ok() => booked += 1,
            Ok(Ok(reply)) if reply.status == 409 => full += 1,
            Ok(Ok(reply)) => unexpected.push(reply.describe()),
            Ok(Err(err)) => unexpected.push(err),
            Err(err) => unexpected.push(format!("race task failed: {err}")),
        }
    }
    sim.seat(&session_id, booked as i64);
    sim.count(|counts| {
        counts.bookings += booked;
        counts.race_booked += booked;
        counts.race_rejected += full;
    });
    let outcome = if booked == u64::from(RACE_CAPACITY) && full == (RACE_BOOKINGS as u64 - u64::from(RACE_CAPACITY)) && unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "session {session_id}: {booked} accepted, {full} rejected with 409, {} other answers{}",
            unexpected.len(),
            unexpected.first().map(|first| format!(" (first: {first})")).unwrap_or_default()
        ))
    };
    sim.checks.record("capacity_race", outcome);
    info!(session_id = %session_id, booked, rejected = full, "capacity race finished");
}

// ---------------------------------------------------------------------------------------------
// Centre day
// ---------------------------------------------------------------------------------------------

enum Visit {
    Booked(Booking),
    WalkIn(WalkInPlan),
}

/// Plays every booked appointment's visit and every walk-in, in an order drawn from the seed.
pub(super) async fn run_centre_day(sim: &Arc<Sim>, world: &Arc<World>, plan: &mut DayPlan, bookings: Vec<Booking>, config: &SimulateConfig) -> Vec<Outcome> {
    let booking_codes: Vec<(String, String)> = bookings.iter().map(|booking| (booking.appointment_id.clone(), booking.code.clone())).collect();
    let mut visits: Vec<Visit> = bookings.into_iter().map(Visit::Booked).collect();
    visits.extend(std::mem::take(&mut plan.walk_ins).into_iter().map(Visit::WalkIn));
    visits.shuffle(&mut plan.rng);

    let bar = progress_bar(config.progress, "centre day", visits.len());
    let outcomes = run_bounded(sim, config.concurrency, visits, &bar, |visit| {
        let sim = Arc::clone(sim);
        let world = Arc::clone(world);
        async move {
            match visit {
                Visit::Booked(booking) => Some(visit_booked(&sim, &world, booking).await),
                Visit::WalkIn(walk_in) => walk_in_visit(&sim, &world, walk_in).await,
            }
        }
    })
    .await;
    info!(visits = outcomes.len(), "centre day finished");

    check_booking_sms(sim, &booking_codes).await;
    outcomes.into_iter().flatten().collect()
}

pub(super) async fn visit_booked(sim: &Sim, world: &World, booking: Booking) -> Outcome {
    let expected = match booking.fate {
        Fate::Honest => honest_visit(sim, world, &booking).await,
        Fate::NoShow => Expected::Booked,
        Fate::Impostor => impostor_visit(sim, world, &booking).await,
        Fate::BruteForce => brute_force_visit(sim, world, &booking).await,
        Fate::WrongCentre => wrong_centre_visit(sim, world, &booking).await,
        Fate::Cancelled => cancelled_visit(sim, world, &booking).await,
    };
    Outcome { appointment_id: booking.appointment_id, expected }
}

/// Submits a code as the verifier with `token`.
pub(super) async fn submit_code(sim: &Sim, token: &str, appointment_id: &str, code: &str) -> Result<Reply, String> {
    let reply = sim.http.post(&format!("/appointments/{appointment_id}/verification"), Some(token), &json!({ "code": code })).await?;
    if reply.is_ok() {
        sim.count(|counts| counts.verifications_ok += 1);
    } else {
        sim.count_code_rejection(&reply);
    }
    Ok(reply)
}

/// Records a dose as the verifier with `token`.
pub(super) async fn push_dose(sim: &Sim, token: &str, appointment_id: &str, batch: &str) -> Result<Reply, String> {
    let reply = sim.http.post(&format!("/appointments/{appointment_id}/doses"), Some(token), &json!({ "batch": batch })).await?;
    if reply.is_ok() {
        sim.count(|counts| counts.doses += 1);
        if reply.text("certificate_id").is_some() {
            sim.count(|counts| counts.certificates += 1);
        }
    } else {
        sim.count_dose_rejection(&reply);
    }
    Ok(reply)
}

/// Checks a rejection's status, problem code and reason, and optionally its `locked` and
/// `attempts` members.
pub(super) fn expect_rejection(reply: &Result<Reply, String>, status: u16, problem: &str, reason: &str, locked: Option<bool>, attempts: Option<u64>) -> Result<(), String> {
    let reply = reply.as_ref().map_err(Clone::clone)?;
    let mut wrong = reply.status != status || reply.problem() != problem || reply.reason() != reason;
    if let Some(locked) = locked {
        wrong |= reply.body["locked"].as_bool() != Some(locked);
    }
    if let Some(attempts) = attempts {
        wrong |= reply.body["attempts"].as_u64() != Some(attempts);
    }
    if !wrong {
        return Ok(());
    }
    let mut expected = format!("HTTP {status} {problem} reason {reason}");
    if let Some(locked) = locked {
        expected.push_str(&format!(" locked {locked}"));
    }
    if let Some(attempts) = attempts {
        expected.push_str(&format!(" attempts {attempts}"));
    }
    let locked_now = reply.body["locked"].as_bool().map(|value| format!(" locked {value}")).unwrap_or_default();
    let attempts_now = reply.body["attempts"].as_u64().map(|value| format!(" attempts {value}")).unwrap_or_default();
    Err(format!("expected {expected}, got {}{locked_now}{attempts_now}", reply.describe()))
}

pub(super) fn with_appointment(appointment_id: &str, outcome: Result<(), String>) -> Result<(), String> {
    outcome.map_err(|err| format!("appointment {appointment_id}: {err}"))
}

/// Batch number as printed on a vial, from the centre and session.
pub(super) fn batch_number(centre: usize, session_id: &str) -> String {
    format!("B{:03}{}", centre % 1000, session_id.chars().filter(char::is_ascii_alphanumeric).take(5).collect::<String>().to_ascii_uppercase())
}

/// Submits the right code, records the dose, then downloads and verifies the certificate.
pub(super) async fn honest_visit(sim: &Sim, world: &World, booking: &Booking) -> Expected {
    let verifier = &world.centres[booking.centre].verifier;
    let id = &booking.appointment_id;
    let verified = submit_code(sim, verifier, id, &booking.code).await;
    match &verified {
        Ok(reply) if reply.is_ok() && reply.text("status") == Some("verified") => sim.checks.pass("honest_code_verified"),
        Ok(reply) => {
            sim.checks.fail("honest_code_verified", format!("appointment {id}: expected HTTP 200 verified, got {}", reply.describe()));
            return Expected::Booked;
        }
        Err(err) => {
            sim.checks.fail("honest_code_verified", format!("appointment {id}: {err}"));
            return Expected::Booked;
        }
    }
    let Some(certificate_id) = dose_with_certificate(sim, verifier, id, &batch_number(booking.centre, &booking.session_id)).await else {
        return Expected::Administered;
    };
    check_certificate(sim, &booking.citizen_token, &certificate_id, &booking.beneficiary_id, &booking.name).await;
    Expected::Administered
}

/// Records the dose and returns the certificate id, counting `honest_dose_certified`.
pub(super) async fn dose_with_certificate(sim: &Sim, verifier: &str, appointment_id: &str, batch: &str) -> Option<String> {
    match push_dose(sim, verifier, appointment_id, batch).await {
        Ok(reply) if reply.is_ok() => match reply.text("certificate_id") {
            Some(certificate_id) if reply.text("status") == Some("administered") => {
                sim.checks.pass("honest_dose_certified");
                Some(certificate_id.to_owned())
            }
            _ => {
                sim.checks.fail("honest_dose_certified", format!("appointment {appointment_id}: the dose was recorded but the response has no certificate_id or status administered"));
                None
            }
        },
        Ok(reply) => {
            sim.checks.fail("honest_dose_certified", format!("appointment {appointment_id}: expected HTTP 200 administered, got {}", reply.describe()));
            None
        }
        Err(err) => {
            sim.checks.fail("honest_dose_certified", format!("appointment {appointment_id}: {err}"));
            None
        }
    }
}

/// Downloads the certificate with `token` and verifies its QR text online.
pub(super) async fn check_certificate(sim: &Sim, token: &str, certificate_id: &str, beneficiary_id: &str, name: &str) {
    let outcome = async {
        let reply = sim.http.get(&format!("/certificates/{certificate_id}"), Some(token)).await?;
        let qr_text = match reply.text("qr_text") {
            Some(qr_text) if reply.is_ok() => qr_text.to_owned(),
            _ => return Err(format!("GET /certificates/{certificate_id}: {}", reply.describe())),
        };
        let reply = sim.http.post("/certificates/verify", None, &json!({ "qr_text": qr_text })).await?;
        if !reply.is_ok() || reply.body["valid"].as_bool() != Some(true) {
            return Err(format!(
                "certificate {certificate_id} is not valid: {} reason {}",
                reply.describe(),
                reply.text("reason").unwrap_or("none")
            ));
        }
        let record = &reply.body["record"];
        if record["beneficiary_name"].as_str() != Some(name) {
            return Err(format!("certificate {certificate_id} names {:?}, expected {name:?}", record["beneficiary_name"]));
        }
        if record["beneficiary_id"].as_str() != Some(beneficiary_id) {
            return Err(format!("certificate {certificate_id} refers to beneficiary {:?}, expected {beneficiary_id}", record["beneficiary_id"]));
        }
        if record["certificate_id"].as_str() != Some(certificate_id) {
            return Err(format!("certificate {certificate_id} carries certificate id {:?}", record["certificate_id"]));
        }
        Ok(())
    }
    .await;
    if outcome.is_ok() {
        sim.count(|counts| counts.certificates_valid += 1);
    }
    sim.checks.record("certificate_valid", outcome);
}

/// Pushes a dose without a verified code, then submits one to three wrong codes.
pub(super) async fn impostor_visit(sim: &Sim, world: &World, booking: &Booking) -> Expected {
    let verifier = &world.centres[booking.centre].verifier;
    let id = &booking.appointment_id;

    let dose = push_dose(sim, verifier, id, &batch_number(booking.centre, &booking.session_id)).await;
    sim.checks.record("unverified_dose_rejected", with_appointment(id, expect_rejection(&dose, 422, "dose_rejected", "code_not_verified", None, None)));

    for (attempt, planned) in booking.wrong_codes.iter().enumerate() {
        let code = wrong_code(*planned, &booking.code);
        let reply = submit_code(sim, verifier, id, &code).await;
        let outcome = expect_rejection(&reply, 422, "code_rejected", "wrong_code", Some(false), Some(attempt as u64 + 1));
        sim.checks.record("impostor_code_rejected", with_appointment(id, outcome));
    }
    Expected::Booked
}

/// Formats a planned code, moved to the next one when it happens to be the right code.
pub(super) fn wrong_code(planned: u16, right: &str) -> String {
    let code = format!("{:04}", planned % 10_000);
    if code == right {
        format!("{:04}", (planned + 1) % 10_000)
    } else {
        code
    }
}

/// Submits codes in sequence until the lock, then the right code, then pushes a dose.
pub(super) async fn brute_force_visit(sim: &Sim, world: &World, booking: &Booking) -> Expected {
    let verifier = &world.centres[booking.centre].verifier;
    let id = &booking.appointment_id;

    let mut next = booking.brute_force_start;
    for attempt in 1..=MAX_REJECTED_ATTEMPTS {
        let mut code = format!("{:04}", next % 10_000);
        if code == booking.code {
            next = next.wrapping_add(1);
            code = format!("{:04}", next % 10_000);
        }
        next = next.wrapping_add(1);
        let reply = submit_code(sim, verifier, id, &code).await;
        let locks = attempt == MAX_REJECTED_ATTEMPTS;
        let status = if locks { 423 } else { 422 };
        let outcome = expect_rejection(&reply, status, "code_rejected", "wrong_code", Some(locks), Some(u64::from(attempt)));
        if locks && outcome.is_ok() {
            sim.count(|counts| counts.locks += 1);
        }
        sim.checks.record("brute_force_locked", with_appointment(id, outcome));
    }

    let reply = submit_code(sim, verifier, id, &booking.code).await;
    sim.checks.record("locked_rejects_right_code", with_appointment(id, expect_rejection(&reply, 423, "code_rejected", "locked", Some(true), None)));

    let dose = push_dose(sim, verifier, id, &batch_number(booking.centre, &booking.session_id)).await;
    sim.checks.record("locked_dose_rejected", with_appointment(id, expect_rejection(&dose, 422, "dose_rejected", "locked", None, None)));
    Expected::Locked
}

/// Submits the right code as another centre's verifier, then pushes a dose from there.
pub(super) async fn wrong_centre_visit(sim: &Sim, world: &World, booking: &Booking) -> Expected {
    let other = (booking.centre + 1 + booking.other_centre_pick % (world.centres.len() - 1)) % world.centres.len();
    let verifier = &world.centres[other].verifier;
    let id = &booking.appointment_id;

    let reply = submit_code(sim, verifier, id, &booking.code).await;
    sim.checks.record("wrong_centre_code_rejected", with_appointment(id, expect_rejection(&reply, 403, "code_rejected", "wrong_centre", Some(false), Some(1))));

    let dose = push_dose(sim, verifier, id, &batch_number(other, &booking.session_id)).await;
    sim.checks.record("wrong_centre_dose_rejected", with_appointment(id, expect_rejection(&dose, 403, "dose_rejected", "wrong_centre", None, None)));
    Expected::Booked
}

/// Cancels as the citizen, then submits the right code at the booked centre.
pub(super) async fn cancelled_visit(sim: &Sim, world: &World, booking: &Booking) -> Expected {
    let id = &booking.appointment_id;
    let cancelled = sim.http.send(Method::DELETE, &format!("/appointments/{id}"), Some(&booking.citizen_token), &[], None).await;
    match &cancelled {
        Ok(reply) if reply.is_ok() && reply.text("status") == Some("cancelled") => {
            sim.checks.pass("cancellation_accepted");
            sim.count(|counts| counts.cancellations += 1);
            sim.seat(&booking.session_id, -1);
        }
        Ok(reply) => {
            sim.checks.fail("cancellation_accepted", format!("appointment {id}: expected HTTP 200 cancelled, got {}", reply.describe()));
            return Expected::Booked;
        }
        Err(err) => {
            sim.checks.fail("cancellation_accepted", format!("appointment {id}: {err}"));
            return Expected::Booked;
        }
    }

    let verifier = &world.centres[booking.centre].verifier;
    let reply = submit_code(sim, verifier, id, &booking.code).await;
    sim.checks.record("cancelled_code_rejected", with_appointment(id, expect_rejection(&reply, 422, "code_rejected", "appointment_cancelled", Some(false), None)));
    Expected::Cancelled
}

/// Registers and books a walk-in as the verifier, reads the code from the SMS, then verifies,
/// doses and checks the certificate.
pub(super) async fn walk_in_visit(sim: &Sim, world: &World, walk_in: WalkInPlan) -> Option<Outcome> {
    let centre = &world.centres[walk_in.centre];
    let beneficiary_id = match register(sim, &centre.verifier, &walk_in.person, Some(&walk_in.mobile)).await {
        Ok(id) => id,
        Err(err) => {
            sim.checks.fail("walk_in_registered", format!("centre {}: {err}", centre.id));
            return None;
        }
    };

    let year = Utc::now().with_timezone(&crate::ledger::india_offset()).year();
    let mut booked = None;
    for session in centre.sessions.iter().filter(|session| walk_in.person.age_in(year) >= i32::from(session.min_age)) {
        let body = json!({ "beneficiary_id": beneficiary_id, "session_id": session.id, "dose_number": 1 });
        match sim.http.post("/appointments", Some(&centre.verifier), &body).await {
            Ok(reply) if reply.is_ok() => {
                booked = Some((reply, session.id.clone()));
                break;
            }
            Ok(reply) if reply.status == 409 && reply.problem() == "session_full" => {
                sim.count(|counts| counts.bookings_full += 1);
                continue;
            }
            Ok(reply) => {
                sim.checks.fail("walk_in_registered", format!("booking walk-in {beneficiary_id} in session {}: {}", session.id, reply.describe()));
                return None;
            }
            Err(err) => {
                sim.checks.fail("walk_in_registered", err);
                return None;
            }
        }
    }
    let Some((reply, session_id)) = booked else {
        sim.count(|counts| counts.unbooked += 1);
        return None;
    };
    let Some(appointment_id) = reply.text("appointment_id").map(str::to_owned) else {
        sim.checks.fail("walk_in_registered", format!("booking walk-in {beneficiary_id}: the response has no appointment_id"));
        return None;
    };
    sim.checks.pass("walk_in_registered");
    sim.count(|counts| counts.walk_ins += 1);
    sim.seat(&session_id, 1);

    if reply.body.get("security_code").is_some_and(|code| !code.is_null()) {
        sim.checks.fail("walk_in_code_only_by_sms", format!("appointment {appointment_id}: the walk-in booking response shows the security code to the verifier"));
    }
    let Some(code) = sim.outbox.code(&appointment_id, SMS_WAIT).await else {
        sim.checks.fail("walk_in_code_only_by_sms", format!("appointment {appointment_id}: no booking SMS with a code within {} s", SMS_WAIT.as_secs()));
        return Some(Outcome { appointment_id, expected: Expected::Booked });
    };
    sim.checks.pass("walk_in_code_only_by_sms");

    let verified = submit_code(sim, &centre.verifier, &appointment_id, &code).await;
    match &verified {
        Ok(reply) if reply.is_ok() => sim.checks.pass("honest_code_verified"),
        Ok(reply) => {
            sim.checks.fail("honest_code_verified", format!("walk-in appointment {appointment_id}: expected HTTP 200 verified, got {}", reply.describe()));
            return Some(Outcome { appointment_id, expected: Expected::Booked });
        }
        Err(err) => {
            sim.checks.fail("honest_code_verified", format!("walk-in appointment {appointment_id}: {err}"));
            return Some(Outcome { appointment_id, expected: Expected::Booked });
        }
    }
    if let Some(certificate_id) = dose_with_certificate(sim, &centre.verifier, &appointment_id, &batch_number(walk_in.centre, &session_id)).await {
        check_certificate(sim, &sim.admin_token, &certificate_id, &beneficiary_id, &walk_in.person.name).await;
    }
    Some(Outcome { appointment_id, expected: Expected::Administered })
}

// ---------------------------------------------------------------------------------------------
// Final checks
// ---------------------------------------------------------------------------------------------

/// Checks that each citizen booking's SMS carries the code of its booking response.
pub(super) async fn check_booking_sms(sim: &Sim, booking_codes: &[(String, String)]) {
    let ids: Vec<String> = booking_codes.iter().map(|(id, _)| id.clone()).collect();
    sim.outbox.wait_all(&ids, "booking_confirmation", SMS_WAIT).await;
    for (appointment_id, code) in booking_codes {
        let outcome = match sim.outbox.stored_code(appointment_id) {
            Some(sent) if sent == *code => Ok(()),
            Some(_) => Err(format!("appointment {appointment_id}: the booking SMS carries another code than the booking response")),
            None => Err(format!("appointment {appointment_id}: no booking SMS with a code arrived")),
        };
        sim.checks.record("booking_sms_code", outcome);
    }
}

/// Reads every visited appointment back and checks its status, lock and certificate, then
/// checks the dose SMS: one for every dose, none without one.
pub(super) async fn check_final_states(sim: &Arc<Sim>, outcomes: &[Outcome], concurrency: usize) {
    let items: Vec<(String, Expected)> = outcomes.iter().map(|outcome| (outcome.appointment_id.clone(), outcome.expected)).collect();
    run_bounded(sim, concurrency, items, &ProgressBar::hidden(), |(appointment_id, expected)| {
        let sim = Arc::clone(sim);
        async move {
            let outcome = check_appointment(&sim, &appointment_id, expected).await;
            sim.checks.record("appointment_final_state", outcome);
        }
    })
    .await;

    let dosed: Vec<String> = outcomes.iter().filter(|outcome| outcome.expected == Expected::Administered).map(|outcome| outcome.appointment_id.clone()).collect();
    sim.outbox.wait_all(&dosed, "certificate_ready", SMS_WAIT).await;
    for outcome in outcomes {
        let kinds = sim.outbox.kinds(&outcome.appointment_id);
        let dose_sms = kinds.iter().any(|kind| kind == "dose_recorded");
        let certificate_sms = kinds.iter().any(|kind| kind == "certificate_ready");
        let result = match (outcome.expected == Expected::Administered, dose_sms, certificate_sms) {
            (true, true, true) | (false, false, false) => Ok(()),
            (true, _, _) => Err(format!("appointment {}: dose recorded, but SMS sent: {kinds:?}", outcome.appointment_id)),
            (false, _, _) => Err(format!("appointment {}: no dose recorded, yet a dose or certificate SMS was sent: {kinds:?}", outcome.appointment_id)),
        };
        sim.checks.record("dose_sms", result);
    }
}

pub(super) async fn check_appointment(sim: &Sim, appointment_id: &str, expected: Expected) -> Result<(), String> {
    let reply = sim.http.get(&format!("/appointments/{appointment_id}"), Some(&sim.admin_token)).await?;
    if !reply.is_ok() {
        return Err(format!("GET /appointments/{appointment_id}: {}", reply.describe()));
    }
    let status = reply.text("status").unwrap_or("");
    let locked = reply.body["locked"].as_bool().unwrap_or(false);
    let certificate = reply.text("certificate_id");
    let (want_status, want_locked, want_certificate) = match expected {
        Expected::Administered => ("administered", false, true),
        Expected::Booked => ("booked", false, false),
        Expected::Locked => ("booked", true, false),
        Expected::Cancelled => ("cancelled", false, false),
    };
    if status == want_status && locked == want_locked && certificate.is_some() == want_certificate {
        return Ok(());
    }
    Err(format!(
        "appointment {appointment_id}: expected status {want_status}, locked {want_locked}, certificate {}; got status {status}, locked {locked}, certificate {}",
        if want_certificate { "present" } else { "none" },
        certificate.unwrap_or("none")
    ))
}

/// Searches every district and checks each session's seats: never more booked than its
/// capacity, and for the simulator's sessions exactly the bookings it counted.
pub(super) async fn check_sessions(sim: &Sim, world: &World) {
    let seats = sim.seats.lock().expect("seats lock poisoned").clone();
    let ours: HashSet<&str> = world.centres.iter().map(|centre| centre.id.as_str()).collect();
    for district in &world.district_names {
        let rows = match sim.search(district).await {
            Ok(rows) => rows,
            Err(err) => {
                sim.checks.fail("session_not_overbooked", err);
                continue;
            }
        };
        for row in &rows {
            let session_id = row["session_id"].as_str().unwrap_or("?");
            let booked = row["booked"].as_i64().unwrap_or(-1);
            let capacity = row["capacity"].as_i64().unwrap_or(-1);
            let outcome = if booked >= 0 && capacity >= 0 && booked <= capacity {
                Ok(())
            } else {
                Err(format!("session {session_id}: {booked} booked of {capacity} seats"))
            };
            sim.checks.record("session_not_overbooked", outcome);

            if !row["centre_id"].as_str().is_some_and(|centre_id| ours.contains(centre_id)) {
                continue;
            }
            let expected = seats.get(session_id).copied().unwrap_or(0);
            let outcome = if booked == expected {
                Ok(())
            } else {
                Err(format!("session {session_id}: the server shows {booked} booked, the simulator counted {expected} bookings less cancellations"))
            };
            sim.checks.record("session_seat_count", outcome);
        }
    }
}
