//! End-to-end flow over HTTP against the real server: booking, the security-code gate, the dose
//! gate, certificates, and the problem documents for bad input.

mod common;

use common::{other_code, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A server with one centre, a 20-seat session today, a verifier and a citizen with one beneficiary.
struct Setup {
    server: TestServer,
    centre_id: String,
    session_id: String,
    verifier: String,
    citizen: String,
    beneficiary_id: String,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let centre_id = server.centre("UPHC Kothrud", "Pune").await;
    let session_id = server.session_today(&centre_id, 20).await;
    let verifier = server.staff_token("verifier", Some(&centre_id)).await;
    let citizen = server.citizen("9876543210").await;
    let beneficiary_id = server.beneficiary(&citizen, "Asha Devi").await;
    Setup { server, centre_id, session_id, verifier, citizen, beneficiary_id }
}

#[tokio::test]
async fn flow_issues_valid_certificate() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    assert_eq!(code.len(), 4);
    let sms = s.server.wait_for_sms("9876543210", "booking_confirmation").await;
    assert!(sms.contains(&code), "booking SMS carries the code");

    let verification = format!("/api/v1/appointments/{appointment_id}/verification");
    s.server.post_ok(&verification, &s.verifier, json!({"code": code})).await;
    let dosed = s.server.post_ok(&format!("/api/v1/appointments/{appointment_id}/doses"), &s.verifier, json!({"batch": "4121Z005"})).await;
    assert_eq!(dosed["status"], "administered");
    let certificate_id = dosed["certificate_id"].as_str().expect("certificate issued after the dose").to_owned();

    let (status, certificate) = s.server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(&s.citizen), None).await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    let qr_text = certificate["qr_text"].as_str().unwrap().to_owned();
    assert!(qr_text.starts_with("VXL1:"));

    let (status, verdict) = s.server.call(Method::POST, "/api/v1/certificates/verify", None, Some(json!({"qr_text": qr_text}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["record"]["beneficiary_name"], "Asha Devi");

    let mut tampered = qr_text.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (_, verdict) = s.server.call(Method::POST, "/api/v1/certificates/verify", None, Some(json!({"qr_text": tampered}))).await;
    assert_eq!(verdict["valid"], false, "{verdict}");

    let (_, appointment) = s.server.call(Method::GET, &format!("/api/v1/appointments/{appointment_id}"), Some(&s.citizen), None).await;
    assert_eq!(appointment["status"], "administered");
    assert_eq!(appointment["certificate_id"], certificate_id.as_str());
    s.server.wait_for_sms("9876543210", "certificate_ready").await;
}

#[tokio::test]
async fn dose_without_code_rejected() {
    let s = setup().await;
    let (appointment_id, _) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let (status, problem) = s
        .server
        .call(Method::POST, &format!("/api/v1/appointments/{appointment_id}/doses"), Some(&s.verifier), Some(json!({"batch": "B1"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["reason"], "code_not_verified");
    let (_, appointment) = s.server.call(Method::GET, &format!("/api/v1/appointments/{appointment_id}"), Some(&s.citizen), None).await;
    assert_eq!(appointment["status"], "booked");
    assert!(appointment["certificate_id"].is_null());
}

#[tokio::test]
async fn five_wrong_codes_lock() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let path = format!("/api/v1/appointments/{appointment_id}/verification");
    for attempt in 1..=5u64 {
        let (status, problem) = s.server.call(Method::POST, &path, Some(&s.verifier), Some(json!({"code": other_code(&code)}))).await;
        assert_eq!(problem["attempts"], attempt, "{problem}");
        assert_eq!(problem["field"], "code");
        let expected = if attempt == 5 { StatusCode::LOCKED } else { StatusCode::UNPROCESSABLE_ENTITY };
        assert_eq!(status, expected, "attempt {attempt}: {problem}");
    }
    let (status, problem) = s.server.call(Method::POST, &path, Some(&s.verifier), Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::LOCKED, "{problem}");
    assert_eq!(problem["reason"], "locked");

    let supervisor = s.server.staff_token("supervisor", Some(&s.centre_id)).await;
    s.server.post_ok(&format!("/api/v1/appointments/{appointment_id}/unlock"), &supervisor, json!({"reason": "ID re-checked"})).await;
    s.server.post_ok(&path, &s.verifier, json!({"code": code})).await;
}

#[tokio::test]
async fn code_at_other_centre_forbidden() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let other_centre = s.server.centre("PHC Hadapsar", "Pune").await;
    let other_verifier = s.server.staff_token("verifier", Some(&other_centre)).await;
    let path = format!("/api/v1/appointments/{appointment_id}/verification");
    let (status, problem) = s.server.call(Method::POST, &path, Some(&other_verifier), Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["reason"], "wrong_centre");
    s.server.post_ok(&path, &s.verifier, json!({"code": code})).await;
}

#[tokio::test]
async fn repeated_dose_conflict() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    s.server.post_ok(&format!("/api/v1/appointments/{appointment_id}/verification"), &s.verifier, json!({"code": code})).await;
    let path = format!("/api/v1/appointments/{appointment_id}/doses");
    s.server.post_ok(&path, &s.verifier, json!({"batch": "B1"})).await;
    let (status, problem) = s.server.call(Method::POST, &path, Some(&s.verifier), Some(json!({"batch": "B1"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["reason"], "already_administered");
}

#[tokio::test]
async fn cancelled_appointment_code_rejected() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let (status, body) = s.server.call(Method::DELETE, &format!("/api/v1/appointments/{appointment_id}"), Some(&s.citizen), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, problem) = s
        .server
        .call(Method::POST, &format!("/api/v1/appointments/{appointment_id}/verification"), Some(&s.verifier), Some(json!({"code": code})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["reason"], "appointment_cancelled");
    let (_, sessions) = s.server.call(Method::GET, &format!("/api/v1/sessions?district=pune&date={}", common::today()), None, None).await;
    assert_eq!(sessions[0]["booked"], 0, "{sessions}");
}

#[tokio::test]
async fn idempotent_booking_appends_once() {
    let s = setup().await;
    let body = json!({"beneficiary_id": s.beneficiary_id, "session_id": s.session_id, "dose_number": 1});
    let send = || {
        s.server
            .client
            .post(format!("{}/api/v1/appointments", s.server.base))
            .bearer_auth(&s.citizen)
            .header("Idempotency-Key", "booking-1")
            .json(&body)
            .send()
    };
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let second: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["appointment_id"], second["appointment_id"], "{first} {second}");
    let (_, sessions) = s.server.call(Method::GET, &format!("/api/v1/sessions?district=Pune&date={}", common::today()), None, None).await;
    assert_eq!(sessions[0]["booked"], 1, "{sessions}");
}

#[tokio::test]
async fn concurrent_bookings_fill_exactly() {
    let server = TestServer::start().await;
    let centre_id = server.centre("District Hospital", "Nashik").await;
    let session_id = server.session_today(&centre_id, 20).await;

    // 200 beneficiaries: 50 mobile numbers with 4 each.
    let mut bookers = Vec::new();
    for index in 0..50 {
        let mobile = format!("9{:09}", 100_000 + index);
        let citizen = server.citizen(&mobile).await;
        for person in 0..4 {
            let beneficiary_id = server.beneficiary(&citizen, &format!("Person {index}-{person}")).await;
            bookers.push((citizen.clone(), beneficiary_id));
        }
    }

    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for (citizen, beneficiary_id) in bookers {
        let server = std::sync::Arc::clone(&server);
        let session_id = session_id.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"beneficiary_id": beneficiary_id, "session_id": session_id, "dose_number": 1});
            server.call(Method::POST, "/api/v1/appointments", Some(&citizen), Some(body)).await
        }));
    }
    let mut booked = 0;
    let mut full = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::OK => booked += 1,
            StatusCode::CONFLICT if body["type"] == "urn:vaxledger:problem:session_full" => full += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(booked, 20);
    assert_eq!(full, 180);
    let (_, sessions) = server.call(Method::GET, &format!("/api/v1/sessions?district=Nashik&date={}", common::today()), None, None).await;
    assert_eq!(sessions[0]["booked"], 20, "{sessions}");
    assert_eq!(sessions[0]["available"], 0);
}

#[tokio::test]
async fn fifth_beneficiary_on_mobile_rejected() {
    let s = setup().await;
    for index in 0..3 {
        s.server.beneficiary(&s.citizen, &format!("Member {index}")).await;
    }
    let body = json!({"name": "Fifth", "year_of_birth": 1990, "gender": "male", "photo_id_type": "pan", "photo_id_number": "ABCDE1234F"});
    let (status, problem) = s.server.call(Method::POST, "/api/v1/beneficiaries", Some(&s.citizen), Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["field"], "mobile");
}

#[tokio::test]
async fn bad_input_gets_problem_documents() {
    let s = setup().await;
    let (appointment_id, _) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let verification = format!("{}/api/v1/appointments/{appointment_id}/verification", s.server.base);

    let malformed = s.server.client.post(&verification).bearer_auth(&s.verifier).header("content-type", "application/json").body("{\"code\": ").send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = malformed.json().await.unwrap();
    assert!(problem["detail"].is_string(), "{problem}");

    let cases = [
        (Some(s.verifier.as_str()), json!({"code": "12a4"}), StatusCode::BAD_REQUEST, "code"),
        (Some(s.verifier.as_str()), json!({"code": "12345"}), StatusCode::BAD_REQUEST, "code"),
        (None, json!({"code": "1234"}), StatusCode::UNAUTHORIZED, "authorization"),
        (Some("vxl.0000000000000000.forged"), json!({"code": "1234"}), StatusCode::UNAUTHORIZED, "authorization"),
        (Some(s.citizen.as_str()), json!({"code": "1234"}), StatusCode::FORBIDDEN, "authorization"),
    ];
    for (token, body, expected, field) in cases {
        let mut request = s.server.client.post(&verification).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{problem}");
    }

    let (status, problem) = s
        .server
        .call(Method::POST, "/api/v1/appointments/00000000-0000-4000-8000-000000000000/verification", Some(&s.verifier), Some(json!({"code": "1234"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["field"], "appointment_id");

    let (status, problem) = s.server.call(Method::POST, "/api/v1/appointments/not-a-uuid/verification", Some(&s.verifier), Some(json!({"code": "1234"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "appointment_id");

    let huge = json!({"name": "x".repeat(100_000), "district": "d", "state": "s", "pincode": "411001"});
    let (status, problem) = s.server.call(Method::POST, "/api/v1/centres", Some(&s.server.admin), Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");

    let (status, problem) = s.server.call(Method::GET, "/api/v1/sessions?district=Pune&date=10-05-2021", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "date");

    let (status, problem) = s.server.call(Method::POST, "/api/v1/auth/otp", None, Some(json!({"mobile": "12345"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "mobile");

    // None of the rejected requests above changed the appointment.
    let (_, appointment) = s.server.call(Method::GET, &format!("/api/v1/appointments/{appointment_id}"), Some(&s.citizen), None).await;
    assert_eq!(appointment["status"], "booked");
    assert_eq!(appointment["rejected_attempts"], 0);
}

#[tokio::test]
async fn citizen_cannot_read_other_beneficiary() {
    let s = setup().await;
    let other = s.server.citizen("9000000001").await;
    let (status, _) = s.server.call(Method::GET, &format!("/api/v1/beneficiaries/{}", s.beneficiary_id), Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body = json!({"beneficiary_id": s.beneficiary_id, "session_id": s.session_id, "dose_number": 1});
    let (status, problem) = s.server.call(Method::POST, "/api/v1/appointments", Some(&other), Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
}

#[tokio::test]
async fn docs_and_health_served() {
    let server = TestServer::start().await;
    let (status, spec) = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/appointments/{id}/verification"].is_object(), "{}", spec["paths"]);
    let (status, health) = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let docs = server.client.get(format!("{}/docs", server.base)).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vaxledger_bookings_total"));
}

#[tokio::test]
async fn idempotent_rejection_counted_once() {
    let s = setup().await;
    let (appointment_id, code) = s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let url = format!("{}/api/v1/appointments/{appointment_id}/verification", s.server.base);
    let mut problems = Vec::new();
    for _ in 0..3 {
        let response = s
            .server
            .client
            .post(&url)
            .bearer_auth(&s.verifier)
            .header("Idempotency-Key", "verify-once")
            .json(&json!({"code": other_code(&code)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        problems.push(response.json::<serde_json::Value>().await.unwrap());
    }
    for problem in &problems {
        assert_eq!(problem["attempts"], 1, "{problem}");
    }
    let (_, appointment) = s.server.call(Method::GET, &format!("/api/v1/appointments/{appointment_id}"), Some(&s.citizen), None).await;
    assert_eq!(appointment["rejected_attempts"], 1);

    let centre = json!({"name": "PHC Wagholi", "district": "Pune", "state": "Maharashtra", "pincode": "412207"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = s
            .server
            .client
            .post(format!("{}/api/v1/centres", s.server.base))
            .bearer_auth(&s.server.admin)
            .header("Idempotency-Key", "centre-once")
            .json(&centre)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        ids.push(response.json::<serde_json::Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn search_after_booking_counts_seat() {
    let s = setup().await;
    let url = format!("/api/v1/sessions?district=Pune&date={}", common::today());
    let (_, before) = s.server.call(Method::GET, &url, None, None).await;
    assert_eq!(before[0]["booked"], 0, "{before}");

    // The booking returns before the projections apply it, and the cached body above was read
    // at an older position, so this search must wait for the projections and query again.
    s.server.book(&s.citizen, &s.beneficiary_id, &s.session_id).await;
    let (_, after) = s.server.call(Method::GET, &url, None, None).await;
    assert_eq!(after[0]["booked"], 1, "{after}");
}
