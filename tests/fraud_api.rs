//! Investigator views over HTTP against the real server. Each fraud pattern is planted through
//! the public API and found with one query. Disputes are raised and resolved, and revoke the
//! certificate. Bad queries get 400 problems naming the parameter, and CSV output parses.

mod common;

use std::time::Duration;

use common::{other_code, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Two Pune centres with sessions today, their verifiers, an investigator and an auditor.
struct Setup {
    server: TestServer,
    centre_a: String,
    centre_b: String,
    session_a: String,
    verifier_a: String,
    verifier_b: String,
    investigator: String,
    auditor: String,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let centre_a = server.centre("UPHC Kothrud", "Pune").await;
    let centre_b = server.centre("PHC Baner", "Pune").await;
    let session_a = server.session_today(&centre_a, 50).await;
    server.session_today(&centre_b, 50).await;
    let verifier_a = server.staff_token("verifier", Some(&centre_a)).await;
    let verifier_b = server.staff_token("verifier", Some(&centre_b)).await;
    let investigator = server.staff_token("investigator", None).await;
    let auditor = server.staff_token("auditor", None).await;
    Setup { server, centre_a, centre_b, session_a, verifier_a, verifier_b, investigator, auditor }
}

/// Returns the token id, the middle part of `vxl.<id>.<secret>`, as events record it.
fn token_id(token: &str) -> String {
    token.split('.').nth(1).unwrap().to_owned()
}

impl Setup {
    /// Books `count` appointments at centre A for new beneficiaries of one citizen per four.
    async fn appointments(&self, first_mobile: u64, count: usize) -> Vec<(String, String, String)> {
        let mut booked = Vec::new();
        let mut citizen = String::new();
        for index in 0..count {
            if index % 4 == 0 {
                citizen = self.server.citizen(&(first_mobile + index as u64 / 4).to_string()).await;
            }
            let beneficiary = self.server.beneficiary(&citizen, &format!("Person {index}")).await;
            let (appointment, code) = self.server.book(&citizen, &beneficiary, &self.session_a).await;
            booked.push((appointment, code, citizen.clone()));
        }
        booked
    }

    async fn submit_code(&self, verifier: &str, appointment: &str, code: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/appointments/{appointment}/verification");
        self.server.call(Method::POST, &path, Some(verifier), Some(json!({"code": code}))).await
    }

    /// GET as the investigator, expecting 200.
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.server.call(Method::GET, path, Some(&self.investigator), None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Polls a fraud query until it returns `expected` items, for the projector to catch up.
    async fn find(&self, path: &str, expected: usize) -> Vec<Value> {
        let mut body = Value::Null;
        for _ in 0..100 {
            body = self.get(path).await;
            if body["items"].as_array().map(Vec::len) == Some(expected) {
                return body["items"].as_array().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("GET {path}: expected {expected} items within 5 s, last page {body}");
    }

    /// Waits until the fraud projection has applied `position`.
    async fn settled(&self, position: u64) {
        for _ in 0..100 {
            let page = self.get("/api/v1/fraud/alerts?limit=1").await;
            if page["projection_position"].as_u64().unwrap() >= position {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fraud projection did not reach position {position}");
    }

    /// GET as the investigator, returning status, headers and raw text.
    async fn get_text(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let response = self.server.client.get(format!("{}{path}", self.server.base)).bearer_auth(&self.investigator).send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }
}

#[tokio::test]
async fn lockout_found_by_alert() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_001, 1).await;
    let (appointment, code, _) = &booked[0];
    for _ in 0..5 {
        let (status, _) = s.submit_code(&s.verifier_a, appointment, &other_code(code)).await;
        assert!(status.is_client_error());
    }

    let alerts = s.find(&format!("/api/v1/fraud/alerts?kind=lockout&appointment={appointment}"), 1).await;
    let alert = &alerts[0];
    assert_eq!(alert["verifier_id"], token_id(&s.verifier_a));
    assert_eq!(alert["evidence"].as_array().unwrap().len(), 6, "five rejections and the lock: {alert}");
    assert!(alert["alert_id"].as_str().unwrap().starts_with("lockout-"));

    let enumeration = s.find(&format!("/api/v1/fraud/alerts?kind=enumeration_appointment&appointment={appointment}"), 1).await;
    assert_eq!(enumeration[0]["verifier_id"], token_id(&s.verifier_a));
}

#[tokio::test]
async fn rejection_burst_and_spread_found() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_011, 5).await;
    for (appointment, code, _) in &booked {
        for _ in 0..2 {
            let (status, body) = s.submit_code(&s.verifier_a, appointment, &other_code(code)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
    }
    let verifier = token_id(&s.verifier_a);

    let burst = s.find(&format!("/api/v1/fraud/alerts?kind=verifier_rejections&verifier={verifier}"), 1).await;
    assert_eq!(burst[0]["evidence"].as_array().unwrap().len(), 10);
    let spread = s.find(&format!("/api/v1/fraud/alerts?kind=enumeration_spread&verifier={verifier}"), 1).await;
    assert_eq!(spread[0]["evidence"].as_array().unwrap().len(), 9, "raised at the first wrong code on the fifth appointment");
    let lockouts = s.get("/api/v1/fraud/alerts?kind=lockout").await;
    assert!(lockouts["items"].as_array().unwrap().is_empty(), "two wrong codes each lock nothing");

    let verifiers = s.find(&format!("/api/v1/fraud/verifiers?verifier={verifier}"), 1).await;
    assert_eq!(verifiers[0]["rejected"], 10);
    assert_eq!(verifiers[0]["rejected_by_reason"]["wrong_code"], 10);
    assert_eq!(verifiers[0]["district"], "Pune");
}

#[tokio::test]
async fn dose_without_code_found() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_021, 1).await;
    let appointment = &booked[0].0;
    let path = format!("/api/v1/appointments/{appointment}/doses");
    let (status, body) = s.server.call(Method::POST, &path, Some(&s.verifier_a), Some(json!({"batch": "B1"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let alerts = s.find(&format!("/api/v1/fraud/alerts?kind=dose_without_code&appointment={appointment}"), 1).await;
    assert_eq!(alerts[0]["centre_id"], s.centre_a.as_str());
    let attempts = s.find(&format!("/api/v1/fraud/attempts?outcome=dose_rejected&reason=code_not_verified&appointment={appointment}"), 1).await;
    assert_eq!(attempts[0]["verifier_id"], token_id(&s.verifier_a));
}

#[tokio::test]
async fn wrong_centre_found() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_031, 1).await;
    let (appointment, code, _) = &booked[0];
    let (status, body) = s.submit_code(&s.verifier_b, appointment, code).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let alerts = s.find(&format!("/api/v1/fraud/alerts?kind=wrong_centre&centre={}", s.centre_b), 1).await;
    assert_eq!(alerts[0]["appointment_id"], appointment.as_str());
    let verifier = token_id(&s.verifier_b);
    let attempts = s.find(&format!("/api/v1/fraud/attempts?reason=wrong_centre&verifier={verifier}"), 1).await;
    assert_eq!(attempts[0]["booked_centre_id"], s.centre_a.as_str());
    assert_eq!(attempts[0]["centre_id"], s.centre_b.as_str());
}

#[tokio::test]
async fn dispute_resolved_revokes_certificate() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_041, 1).await;
    let (appointment, code, citizen) = &booked[0];
    s.server.post_ok(&format!("/api/v1/appointments/{appointment}/verification"), &s.verifier_a, json!({"code": code})).await;
    let dosed = s.server.post_ok(&format!("/api/v1/appointments/{appointment}/doses"), &s.verifier_a, json!({"batch": "4121Z005"})).await;
    let certificate_id = dosed["certificate_id"].as_str().unwrap().to_owned();

    let stranger = s.server.citizen("9800000049").await;
    let body = json!({"appointment_id": appointment, "kind": "dose_not_received", "description": "I never went"});
    let (status, problem) = s.server.call(Method::POST, "/api/v1/disputes", Some(&stranger), Some(body.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another citizen's appointment is hidden: {problem}");

    let raised = s.server.post_ok("/api/v1/disputes", citizen, body).await;
    let dispute_id = raised["dispute_id"].as_str().unwrap().to_owned();
    assert_eq!(raised["status"], "open");
    let alerts = s.find(&format!("/api/v1/fraud/alerts?kind=dispute&appointment={appointment}"), 1).await;
    assert_eq!(alerts[0]["verifier_id"], token_id(&s.verifier_a));
    let queue = s.find("/api/v1/fraud/disputes?status=open", 1).await;
    assert_eq!(queue[0]["dispute_id"], dispute_id.as_str());
    assert_eq!(queue[0]["certificate_position"], dosed["position"], "the dose response carries the certificate's position");
    let verified_at = queue[0]["verified_position"].as_u64().unwrap();
    let dose_at = queue[0]["dose_position"].as_u64().unwrap();
    assert!(verified_at < dose_at, "{}", queue[0]);
    assert!(dose_at < dosed["position"].as_u64().unwrap(), "{}", queue[0]);

    let resolution = format!("/api/v1/disputes/{dispute_id}/resolution");
    let decision = json!({"finding": "upheld", "note": "no visit in the centre register", "revoke": "fraud"});
    let (status, _) = s.server.call(Method::POST, &resolution, Some(&s.verifier_a), Some(decision.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let resolved = s.server.post_ok(&resolution, &s.investigator, decision.clone()).await;
    assert_eq!(resolved["revoked_certificates"], json!([certificate_id]));
    let (status, problem) = s.server.call(Method::POST, &resolution, Some(&s.investigator), Some(decision)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    let upheld = s.find("/api/v1/fraud/disputes?status=upheld", 1).await;
    assert_eq!(upheld[0]["revocation_reason"], "fraud");
    assert_eq!(upheld[0]["note"], "no visit in the centre register");

    let (_, certificate) = s.server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(&s.investigator), None).await;
    let qr_text = certificate["qr_text"].as_str().unwrap();
    let (_, verdict) = s.server.call(Method::POST, "/api/v1/certificates/verify", None, Some(json!({"qr_text": qr_text}))).await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["reason"], "revoked_certificate");
}

#[tokio::test]
async fn dispute_bad_input_rejected() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_051, 1).await;
    let (appointment, _, citizen) = &booked[0];
    let cases = [
        (json!({"appointment_id": appointment, "kind": "refund", "description": "x"}), StatusCode::BAD_REQUEST, "kind"),
        (json!({"appointment_id": appointment, "kind": "certificate_missing", "description": "x".repeat(1001)}), StatusCode::BAD_REQUEST, "description"),
        (json!({"appointment_id": "nope", "kind": "certificate_missing", "description": "x"}), StatusCode::BAD_REQUEST, "appointment_id"),
        (json!({"appointment_id": appointment, "kind": "dose_not_received", "description": "x"}), StatusCode::CONFLICT, "kind"),
    ];
    for (body, expected, field) in cases {
        let (status, problem) = s.server.call(Method::POST, "/api/v1/disputes", Some(citizen), Some(body)).await;
        assert_eq!(status, expected, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, _) = s.server.call(Method::POST, "/api/v1/disputes", Some(&s.investigator), Some(json!({"appointment_id": appointment, "kind": "certificate_missing", "description": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only citizens raise disputes");
    let unknown = format!("/api/v1/disputes/{}/resolution", uuid_like());
    let (status, problem) = s.server.call(Method::POST, &unknown, Some(&s.investigator), Some(json!({"finding": "upheld", "note": "n"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
}

fn uuid_like() -> &'static str {
    "0c5b3f1e-7d2a-4c7e-9a51-2f1e9b7c4d10"
}

#[tokio::test]
async fn queries_need_investigator_or_auditor() {
    let s = setup().await;
    for path in ["/api/v1/fraud/attempts", "/api/v1/fraud/centres", "/api/v1/fraud/verifiers", "/api/v1/fraud/alerts", "/api/v1/fraud/disputes"] {
        let (status, problem) = s.server.call(Method::GET, path, Some(&s.verifier_a), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {problem}");
        assert_eq!(problem["field"], "authorization");
        let (status, _) = s.server.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = s.server.call(Method::GET, path, Some(&s.auditor), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test]
async fn queries_reject_bad_parameters() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_061, 1).await;
    let (appointment, code, _) = &booked[0];
    let verified = s.server.post_ok(&format!("/api/v1/appointments/{appointment}/verification"), &s.verifier_a, json!({"code": code})).await;
    s.settled(verified["position"].as_u64().unwrap()).await;

    let cases = [
        ("/api/v1/fraud/attempts?outcome=maybe", "outcome"),
        ("/api/v1/fraud/attempts?reason=typo", "reason"),
        ("/api/v1/fraud/attempts?centre=not-a-uuid", "centre"),
        (&format!("/api/v1/fraud/attempts?centre={}", uuid_like()), "centre"),
        ("/api/v1/fraud/attempts?district=Atlantis", "district"),
        ("/api/v1/fraud/attempts?verifier=nobody", "verifier"),
        (&format!("/api/v1/fraud/attempts?appointment={}", uuid_like()), "appointment"),
        ("/api/v1/fraud/attempts?after=abc", "after"),
        ("/api/v1/fraud/attempts?limit=1001", "limit"),
        ("/api/v1/fraud/attempts?limit=0", "limit"),
        ("/api/v1/fraud/attempts?from=2021-05-11&to=2021-05-10", "to"),
        ("/api/v1/fraud/attempts?from=yesterday", "from"),
        ("/api/v1/fraud/attempts?format=xml", "format"),
        ("/api/v1/fraud/attempts?centr=x", "query"),
        ("/api/v1/fraud/alerts?kind=foo", "kind"),
        ("/api/v1/fraud/disputes?status=closed", "status"),
        ("/api/v1/fraud/centres?verifier=x", "query"),
        ("/api/v1/fraud/verifiers?from=2021-13-01", "from"),
    ];
    for (path, field) in cases {
        let (status, problem) = s.server.call(Method::GET, path, Some(&s.investigator), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["field"], field, "{path}: {problem}");
        assert_eq!(problem["type"], "urn:vaxledger:problem:invalid_field", "{path}: {problem}");
    }
    let known = format!("/api/v1/fraud/attempts?centre={}&district=pune&outcome=verified&appointment={appointment}", s.centre_a);
    assert_eq!(s.get(&known).await["items"].as_array().unwrap().len(), 1, "district compared without case");
}

#[tokio::test]
async fn honest_traffic_pages_and_csv() {
    let s = setup().await;
    let booked = s.appointments(9_800_000_071, 5).await;
    let mut last = 0;
    for (appointment, code, _) in &booked {
        s.server.post_ok(&format!("/api/v1/appointments/{appointment}/verification"), &s.verifier_a, json!({"code": code})).await;
        let dosed = s.server.post_ok(&format!("/api/v1/appointments/{appointment}/doses"), &s.verifier_a, json!({"batch": "B7"})).await;
        last = dosed["position"].as_u64().unwrap();
    }
    s.settled(last).await;
    assert!(s.get("/api/v1/fraud/alerts").await["items"].as_array().unwrap().is_empty(), "honest traffic raises no alert");

    let mut positions = Vec::new();
    let mut path = "/api/v1/fraud/attempts?limit=2".to_owned();
    loop {
        let page = s.get(&path).await;
        positions.extend(page["items"].as_array().unwrap().iter().map(|row| row["position"].as_u64().unwrap()));
        match page["next_after"].as_u64() {
            Some(next) => path = format!("/api/v1/fraud/attempts?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(positions.len(), 5);
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");

    let (status, headers, text) = s.get_text("/api/v1/fraud/attempts?format=csv&limit=3").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"), "{headers:?}");
    assert_eq!(headers["x-next-after"].to_str().unwrap(), positions[2].to_string());
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "position");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    let outcome = header.iter().position(|name| name == "outcome").unwrap();
    assert!(records.iter().all(|record| &record[outcome] == "verified"));

    let centres = s.find(&format!("/api/v1/fraud/centres?district=Pune&centre={}", s.centre_a), 1).await;
    assert_eq!(centres[0]["doses"], 5);
    assert_eq!(centres[0]["verified"], 5);
    assert_eq!(centres[0]["comparison"]["peers"], 1, "centre B had no activity today");
    let (status, _, text) = s.get_text("/api/v1/fraud/centres?format=csv").await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let doses = header.iter().position(|name| name == "doses").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][doses], "5");
    assert!(header.iter().any(|name| name == "rejection_rate_ratio_to_median"));

    let (status, _, text) = s.get_text("/api/v1/fraud/alerts?format=csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.lines().count(), 1, "only the header row: {text}");
}
