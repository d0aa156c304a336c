//! Deleted projection files are rebuilt from the log when the server starts, with the same rows.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Reads the attempts of one appointment, waiting until the fraud projector shows `expected`.
async fn attempts(server: &TestServer, investigator: &str, appointment_id: &str, expected: usize) -> Value {
    let path = format!("/api/v1/fraud/attempts?appointment={appointment_id}");
    for _ in 0..100 {
        let (status, page) = server.call(Method::GET, &path, Some(investigator), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if page["items"].as_array().map(Vec::len) == Some(expected) {
            return page["items"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fraud attempts of {appointment_id} did not reach {expected} within 5 s");
}

#[tokio::test]
async fn rebuild_restores_deleted_projections() {
    let server = TestServer::start().await;
    let centre_id = server.centre("PHC Aundh", "Pune").await;
    let session_id = server.session_today(&centre_id, 10).await;
    let verifier = server.staff_token("verifier", Some(&centre_id)).await;
    let investigator = server.staff_token("investigator", None).await;
    let citizen = server.citizen("9876543210").await;
    let beneficiary_id = server.beneficiary(&citizen, "Asha Devi").await;
    let (appointment_id, code) = server.book(&citizen, &beneficiary_id, &session_id).await;

    let verification = format!("/api/v1/appointments/{appointment_id}/verification");
    let (status, _) = server.call(Method::POST, &verification, Some(&verifier), Some(json!({"code": common::other_code(&code)}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    server.post_ok(&verification, &verifier, json!({"code": code})).await;
    server.post_ok(&format!("/api/v1/appointments/{appointment_id}/doses"), &verifier, json!({"batch": "4121Z005"})).await;

    let appointment_path = format!("/api/v1/appointments/{appointment_id}");
    let beneficiary_path = format!("/api/v1/beneficiaries/{beneficiary_id}");
    let search_path = format!("/api/v1/sessions?district=Pune&date={}", common::today());
    let (_, appointment_before) = server.call(Method::GET, &appointment_path, Some(&citizen), None).await;
    let (_, beneficiary_before) = server.call(Method::GET, &beneficiary_path, Some(&citizen), None).await;
    let (_, sessions_before) = server.call(Method::GET, &search_path, None, None).await;
    let attempts_before = attempts(&server, &investigator, &appointment_id, 2).await;
    assert_eq!(appointment_before["status"], "administered", "{appointment_before}");

    let server = server
        .restart(|data| {
            for name in ["projections.db", "fraud.db"] {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(data.join(format!("{name}{suffix}")));
                }
            }
        })
        .await;

    assert!(server.data_file("projections.db").exists());
    assert!(server.data_file("fraud.db").exists());
    assert!(!server.data_file("projections.db.rebuild").exists());
    let (_, appointment_after) = server.call(Method::GET, &appointment_path, Some(&citizen), None).await;
    let (_, beneficiary_after) = server.call(Method::GET, &beneficiary_path, Some(&citizen), None).await;
    let (_, sessions_after) = server.call(Method::GET, &search_path, None, None).await;
    let attempts_after = attempts(&server, &investigator, &appointment_id, 2).await;
    assert_eq!(appointment_after, appointment_before);
    assert_eq!(beneficiary_after, beneficiary_before);
    assert_eq!(sessions_after, sessions_before);
    assert_eq!(attempts_after, attempts_before);
}
