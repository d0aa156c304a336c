//! Planted fraud patterns and the investigator's view of them.
//!
//! After the main day, the simulator sets up five centres of its own in one district. Two control
//! centres get honest visits and no-shows only. At the other three, a verifier brute-forces
//! codes, a centre pushes doses for no-shows (and a citizen disputes one of its doses), and a
//! verifier submits codes for another centre's appointments. With an investigator token, the
//! simulator then checks that each pattern raised its alert and that the control centres and
//! their verifiers raised none.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing::info;

use super::{check_certificate, log_in, push_dose, register, schedule_session, submit_code, Person, Sim, MAX_REJECTED_ATTEMPTS};

/// How long to wait for the fraud projection to reach the last planted event.
const PROJECTION_WAIT: Duration = Duration::from_secs(120);
/// Appointments whose codes the brute-forcing verifier tries until they lock.
const LOCKED_APPOINTMENTS: usize = 2;
/// Appointments that get one wrong code each from the same verifier (enumeration spread).
const SPREAD_APPOINTMENTS: usize = 6;
/// No-shows at the padding centre, each with a dose pushed without a code.
const PADDED_NO_SHOWS: usize = 3;
/// Appointments of a control centre whose codes the other centre's verifier submits.
const WRONG_CENTRE_APPOINTMENTS: usize = 2;

/// A centre set up for the planted phase.
struct PlantedCentre {
    /// Centre id.
    id: String,
    /// Verifier token of the centre.
    verifier: String,
    /// Today's session at the centre.
    session_id: String,
}

/// A booking made in the planted phase.
struct PlantedBooking {
    appointment_id: String,
    code: String,
    citizen: String,
    beneficiary_id: String,
    name: String,
}

/// Returns the token id: the middle part of `vxl.<id>.<secret>`.
fn token_id(token: &str) -> &str {
    token.split('.').nth(1).unwrap_or_default()
}

/// Returns a code other than `code`, offset by `step`.
fn other_code(code: &str, step: u16) -> String {
    let value: u16 = code.parse().unwrap_or(0);
    format!("{:04}", (value + step) % 10_000)
}

async fn planted_centre(sim: &Sim, name: &str, district: &str) -> Result<PlantedCentre, String> {
    let body = json!({ "name": name, "district": district, "state": "Maharashtra", "pincode": "440001" });
    let reply = sim.http.post("/centres", Some(&sim.admin_token), &body).await?;
    let id = reply.text("id").filter(|_| reply.is_ok()).ok_or_else(|| format!("registering {name} failed: {}", reply.describe()))?.to_owned();
    let session_id = schedule_session(sim, &id, "COVAXIN", 60, 18).await.map_err(|err| err.to_string())?;
    let reply = sim.http.post("/tokens", Some(&sim.admin_token), &json!({ "role": "verifier", "centre_id": id })).await?;
    let verifier = reply.text("token").filter(|_| reply.is_ok()).ok_or_else(|| format!("verifier token for {name}: {}", reply.describe()))?.to_owned();
    Ok(PlantedCentre { id, verifier, session_id })
}

/// Logs in one citizen per four bookings and books `count` appointments at `centre`.
async fn book_many(sim: &Sim, centre: &PlantedCentre, count: usize, mobiles: &mut impl Iterator<Item = String>, label: &str) -> Result<Vec<PlantedBooking>, String> {
    let mut bookings = Vec::new();
    let mut citizen = String::new();
    for index in 0..count {
        if index % 4 == 0 {
            let mobile = mobiles.next().ok_or("ran out of planted mobile numbers")?;
            citizen = log_in(sim, &mobile).await?;
        }
        let name = format!("{label} Beneficiary {index}");
        let person = Person { name: name.clone(), year_of_birth: 1985, gender: "female", photo_id_type: "voter_id", photo_id_number: format!("PLT{index:07}") };
        let beneficiary_id = register(sim, &citizen, &person, None).await?;
        let body = json!({ "beneficiary_id": beneficiary_id, "session_id": centre.session_id, "dose_number": 1 });
        let reply = sim.http.post("/appointments", Some(&citizen), &body).await?;
        let appointment_id = reply.text("appointment_id").filter(|_| reply.is_ok()).ok_or_else(|| format!("booking at {label}: {}", reply.describe()))?.to_owned();
        let code = reply.text("security_code").unwrap_or_default().to_owned();
        sim.count(|counts| counts.bookings += 1);
        bookings.push(PlantedBooking { appointment_id, code, citizen: citizen.clone(), beneficiary_id, name });
    }
    Ok(bookings)
}

/// Verifies the right code and records the dose; returns the certificate id.
async fn honest(sim: &Sim, centre: &PlantedCentre, booking: &PlantedBooking) -> Result<String, String> {
    let verified = submit_code(sim, &centre.verifier, &booking.appointment_id, &booking.code).await?;
    if !verified.is_ok() {
        return Err(format!("appointment {}: honest code rejected: {}", booking.appointment_id, verified.describe()));
    }
    let dosed = push_dose(sim, &centre.verifier, &booking.appointment_id, "PLANTED1").await?;
    let certificate_id = dosed
        .text("certificate_id")
        .filter(|_| dosed.is_ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("appointment {}: dose not recorded: {}", booking.appointment_id, dosed.describe()))?;
    check_certificate(sim, &booking.citizen, &certificate_id, &booking.beneficiary_id, &booking.name).await;
    Ok(certificate_id)
}

/// Queries `/fraud/alerts` with `query` and returns the alerts.
async fn alerts(sim: &Sim, investigator: &str, query: &[(&str, &str)]) -> Result<(Vec<Value>, u64), String> {
    let reply = sim.http.send(reqwest::Method::GET, "/fraud/alerts", Some(investigator), query, None).await?;
    if !reply.is_ok() {
        return Err(format!("GET /fraud/alerts {query:?}: {}", reply.describe()));
    }
    let items = reply.body["items"].as_array().cloned().unwrap_or_default();
    let position = reply.body["projection_position"].as_u64().unwrap_or(0);
    Ok((items, position))
}

/// Waits until the fraud projection has applied `position`.
async fn wait_for_projection(sim: &Sim, investigator: &str, position: u64) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let (_, projected) = alerts(sim, investigator, &[("limit", "1")]).await?;
        if projected >= position {
            return Ok(());
        }
        if started.elapsed() > PROJECTION_WAIT {
            return Err(format!("the fraud projection reached position {projected}, not {position}, within {} s", PROJECTION_WAIT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records one check per expected alert: at least one alert matches `query`.
async fn expect_alert(sim: &Sim, investigator: &str, name: &'static str, query: &[(&str, &str)]) {
    match alerts(sim, investigator, query).await {
        Ok((items, _)) if !items.is_empty() => sim.checks.pass(name),
        Ok(_) => sim.checks.fail(name, format!("no alert for {query:?}")),
        Err(err) => sim.checks.fail(name, err),
    }
}

/// Records one check: no alert matches `query`.
async fn expect_no_alert(sim: &Sim, investigator: &str, query: &[(&str, &str)]) {
    match alerts(sim, investigator, query).await {
        Ok((items, _)) if items.is_empty() => sim.checks.pass("honest_no_alerts"),
        Ok((items, _)) => {
            let kinds: Vec<&str> = items.iter().filter_map(|item| item["kind"].as_str()).collect();
            sim.checks.fail("honest_no_alerts", format!("{query:?} raised {kinds:?}"));
        }
        Err(err) => sim.checks.fail("honest_no_alerts", err),
    }
}

/// Runs the planted phase. Set-up failures are recorded as a failed check instead of an error.
pub(super) async fn run_planted(sim: &Sim, district: &str, seed: u64) {
    if let Err(err) = plant_and_check(sim, district, seed).await {
        sim.checks.fail("planted_patterns_set_up", err);
    }
}

async fn plant_and_check(sim: &Sim, district: &str, seed: u64) -> Result<(), String> {
    let tag = format!("S{seed}");
    let mut mobiles = (0..1000u32).map(move |index| format!("6{:04}{:05}", seed % 10_000, 90_000 + index));

    let control_a = planted_centre(sim, &format!("Control PHC A {tag}"), district).await?;
    let control_b = planted_centre(sim, &format!("Control PHC B {tag}"), district).await?;
    let brute = planted_centre(sim, &format!("Brute-force PHC {tag}"), district).await?;
    let padding = planted_centre(sim, &format!("Padding PHC {tag}"), district).await?;
    let impostor = planted_centre(sim, &format!("Impostor PHC {tag}"), district).await?;
    let reply = sim.http.post("/tokens", Some(&sim.admin_token), &json!({ "role": "investigator" })).await?;
    let investigator = reply.text("token").filter(|_| reply.is_ok()).ok_or_else(|| format!("investigator token: {}", reply.describe()))?.to_owned();
    sim.checks.pass("planted_patterns_set_up");

    // Control centres: honest visits and no-shows only. Control A's first appointments also
    // get codes submitted from the impostor centre, which must count against that centre.
    let control_a_bookings = book_many(sim, &control_a, 6, &mut mobiles, "Control A").await?;
    let control_b_bookings = book_many(sim, &control_b, 6, &mut mobiles, "Control B").await?;
    let mut last_position = 0u64;
    for booking in control_a_bookings.iter().take(WRONG_CENTRE_APPOINTMENTS) {
        let reply = submit_code(sim, &impostor.verifier, &booking.appointment_id, &booking.code).await?;
        if reply.status == 403 && reply.reason() == "wrong_centre" {
            sim.checks.pass("planted_wrong_centre_rejected");
        } else {
            sim.checks.fail("planted_wrong_centre_rejected", format!("appointment {}: {}", booking.appointment_id, reply.describe()));
        }
    }
    for (centre, bookings) in [(&control_a, &control_a_bookings), (&control_b, &control_b_bookings)] {
        for booking in bookings.iter().take(4) {
            honest(sim, centre, booking).await?;
        }
    }

    // Brute force: five wrong codes on each of two appointments lock them. One wrong code on
    // each of six more spreads the guessing over many appointments.
    let brute_bookings = book_many(sim, &brute, LOCKED_APPOINTMENTS + SPREAD_APPOINTMENTS, &mut mobiles, "Brute").await?;
    for booking in brute_bookings.iter().take(LOCKED_APPOINTMENTS) {
        for step in 1..=MAX_REJECTED_ATTEMPTS {
            submit_code(sim, &brute.verifier, &booking.appointment_id, &other_code(&booking.code, step as u16)).await?;
        }
    }
    for booking in brute_bookings.iter().skip(LOCKED_APPOINTMENTS) {
        let reply = submit_code(sim, &brute.verifier, &booking.appointment_id, &other_code(&booking.code, 7)).await?;
        last_position = last_position.max(reply.body["position"].as_u64().unwrap_or(0));
    }

    // Padding: doses are pushed for no-shows without a code. Of two honest visits, the citizen
    // of one disputes the dose, and the investigator upholds it and revokes the certificate.
    let padding_bookings = book_many(sim, &padding, PADDED_NO_SHOWS + 2, &mut mobiles, "Padding").await?;
    for booking in padding_bookings.iter().take(PADDED_NO_SHOWS) {
        let reply = push_dose(sim, &padding.verifier, &booking.appointment_id, "PADDED01").await?;
        if reply.status == 422 && reply.reason() == "code_not_verified" {
            sim.checks.pass("planted_padding_rejected");
        } else {
            sim.checks.fail("planted_padding_rejected", format!("appointment {}: {}", booking.appointment_id, reply.describe()));
        }
    }
    let disputed = &padding_bookings[PADDED_NO_SHOWS];
    let certificate_id = honest(sim, &padding, disputed).await?;
    honest(sim, &padding, &padding_bookings[PADDED_NO_SHOWS + 1]).await?;
    let body = json!({ "appointment_id": disputed.appointment_id, "kind": "dose_not_received", "description": "I got a dose SMS but I was not vaccinated." });
    let reply = sim.http.post("/disputes", Some(&disputed.citizen), &body).await?;
    let dispute_id = reply.text("dispute_id").or_else(|| reply.text("id")).filter(|_| reply.is_ok()).map(str::to_owned);
    match &dispute_id {
        Some(_) => sim.checks.pass("planted_dispute_raised"),
        None => sim.checks.fail("planted_dispute_raised", format!("appointment {}: {}", disputed.appointment_id, reply.describe())),
    }
    last_position = last_position.max(reply.body["position"].as_u64().unwrap_or(0));

    let token_of = |token: &str| token_id(token).to_owned();
    let brute_verifier = token_of(&brute.verifier);
    let control_verifiers = [token_of(&control_a.verifier), token_of(&control_b.verifier)];
    wait_for_projection(sim, &investigator, last_position).await?;
    info!(district, "planted patterns recorded; querying the fraud views");

    for booking in brute_bookings.iter().take(LOCKED_APPOINTMENTS) {
        expect_alert(sim, &investigator, "planted_lockout_alert", &[("kind", "lockout"), ("appointment", &booking.appointment_id)]).await;
        expect_alert(sim, &investigator, "planted_enumeration_alert", &[("kind", "enumeration_appointment"), ("appointment", &booking.appointment_id)]).await;
    }
    expect_alert(sim, &investigator, "planted_enumeration_alert", &[("kind", "enumeration_spread"), ("verifier", &brute_verifier)]).await;
    expect_alert(sim, &investigator, "planted_verifier_alert", &[("kind", "verifier_rejections"), ("verifier", &brute_verifier)]).await;
    for booking in padding_bookings.iter().take(PADDED_NO_SHOWS) {
        expect_alert(sim, &investigator, "planted_padding_alert", &[("kind", "dose_without_code"), ("appointment", &booking.appointment_id)]).await;
    }
    for booking in control_a_bookings.iter().take(WRONG_CENTRE_APPOINTMENTS) {
        expect_alert(sim, &investigator, "planted_wrong_centre_alert", &[("kind", "wrong_centre"), ("appointment", &booking.appointment_id), ("centre", &impostor.id)]).await;
    }
    expect_alert(sim, &investigator, "planted_dispute_alert", &[("kind", "dispute"), ("appointment", &disputed.appointment_id)]).await;

    for centre in [&control_a, &control_b] {
        expect_no_alert(sim, &investigator, &[("centre", &centre.id)]).await;
    }
    for verifier in &control_verifiers {
        expect_no_alert(sim, &investigator, &[("verifier", verifier)]).await;
    }

    if let Some(dispute_id) = dispute_id {
        resolve_and_check_revocation(sim, &investigator, &dispute_id, disputed, &certificate_id).await;
    }
    Ok(())
}

/// Upholds the dispute with a revocation and checks that the certificate then verifies as revoked.
async fn resolve_and_check_revocation(sim: &Sim, investigator: &str, dispute_id: &str, disputed: &PlantedBooking, certificate_id: &str) {
    let outcome = async {
        let body = json!({ "finding": "upheld", "note": "centre could not show the beneficiary's presence", "revoke": "fraud" });
        let reply = sim.http.post(&format!("/disputes/{dispute_id}/resolution"), Some(investigator), &body).await?;
        if !reply.is_ok() {
            return Err(format!("resolving dispute {dispute_id}: {}", reply.describe()));
        }
        let reply = sim.http.get(&format!("/certificates/{certificate_id}"), Some(&disputed.citizen)).await?;
        let qr_text = reply.text("qr_text").filter(|_| reply.is_ok()).ok_or_else(|| format!("certificate {certificate_id}: {}", reply.describe()))?.to_owned();
        let started = Instant::now();
        loop {
            let reply = sim.http.post("/certificates/verify", None, &json!({ "qr_text": qr_text })).await?;
            if reply.body["reason"].as_str() == Some("revoked_certificate") {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "certificate {certificate_id} of {} ({}) still verifies as {} after the upheld dispute",
                    disputed.beneficiary_id,
                    disputed.name,
                    reply.body["reason"].as_str().unwrap_or("valid")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    sim.checks.record("planted_revocation", outcome);
}
