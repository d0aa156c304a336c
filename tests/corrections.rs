//! Corrections supersede certificates; investigators revoke them; the revocation list shows both.

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Books, verifies and doses one beneficiary; returns (citizen, beneficiary id, certificate id).
async fn vaccinated(server: &TestServer) -> (String, String, String) {
    let centre_id = server.centre("UPHC Aundh", "Pune").await;
    let session_id = server.session_today(&centre_id, 10).await;
    let verifier = server.staff_token("verifier", Some(&centre_id)).await;
    let citizen = server.citizen("9822222222").await;
    let beneficiary_id = server.beneficiary(&citizen, "Sunita Kale").await;
    let (appointment_id, code) = server.book(&citizen, &beneficiary_id, &session_id).await;
    server.post_ok(&format!("/api/v1/appointments/{appointment_id}/verification"), &verifier, json!({"code": code})).await;
    let dose = server.post_ok(&format!("/api/v1/appointments/{appointment_id}/doses"), &verifier, json!({"batch": "B1"})).await;
    (citizen, beneficiary_id, dose["certificate_id"].as_str().unwrap().to_owned())
}

async fn verify(server: &TestServer, citizen: &str, certificate_id: &str) -> Value {
    let (status, certificate) = server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(citizen), None).await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    let (_, verdict) = server.call(Method::POST, "/api/v1/certificates/verify", None, Some(json!({"qr_text": certificate["qr_text"]}))).await;
    verdict
}

#[tokio::test]
async fn correction_supersedes_certificate() {
    let server = TestServer::start().await;
    let (citizen, beneficiary_id, old_certificate) = vaccinated(&server).await;

    let path = format!("/api/v1/beneficiaries/{beneficiary_id}/corrections");
    let corrected = server.post_ok(&path, &citizen, json!({"name": "Sunita Kale Patil", "year_of_birth": 1980, "gender": "female"})).await;
    assert_eq!(corrected["superseded_certificates"][0], old_certificate.as_str(), "{corrected}");
    let new_certificate = corrected["new_certificates"][0].as_str().expect("a new certificate").to_owned();

    let old = verify(&server, &citizen, &old_certificate).await;
    assert_eq!(old["valid"], false, "{old}");
    assert_eq!(old["reason"], "revoked_certificate");
    let new = verify(&server, &citizen, &new_certificate).await;
    assert_eq!(new["valid"], true, "{new}");
    assert_eq!(new["record"]["beneficiary_name"], "Sunita Kale Patil");

    let (_, list) = server.call(Method::GET, "/api/v1/revocations", None, None).await;
    let revoked = list["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{list}");
    assert_eq!(revoked[0]["certificate_id"], old_certificate.as_str());
    assert_eq!(revoked[0]["reason"], "superseded_by_correction");
    assert!(list["issued_at"].is_string());
}

#[tokio::test]
async fn correction_limit_enforced() {
    let server = TestServer::start().await;
    let (citizen, beneficiary_id, _) = vaccinated(&server).await;
    let path = format!("/api/v1/beneficiaries/{beneficiary_id}/corrections");
    for name in ["Sunita K", "Sunita Kale"] {
        server.post_ok(&path, &citizen, json!({"name": name, "year_of_birth": 1980, "gender": "female"})).await;
    }
    let (status, problem) = server.call(Method::POST, &path, Some(&citizen), Some(json!({"name": "S. Kale", "year_of_birth": 1980, "gender": "female"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:vaxledger:problem:correction_limit_reached");

    let other = server.citizen("9833333333").await;
    let (status, _) = server.call(Method::POST, &path, Some(&other), Some(json!({"name": "Mallory", "year_of_birth": 1980, "gender": "female"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another citizen cannot correct this beneficiary");
}

#[tokio::test]
async fn investigator_revokes_certificate() {
    let server = TestServer::start().await;
    let (citizen, _, certificate_id) = vaccinated(&server).await;
    let investigator = server.staff_token("investigator", None).await;
    let path = format!("/api/v1/certificates/{certificate_id}/revocation");

    let (status, problem) = server.call(Method::POST, &path, Some(&citizen), Some(json!({"reason": "fraud", "note": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, problem) = server.call(Method::POST, &path, Some(&investigator), Some(json!({"reason": "whim", "note": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "reason");
    let (status, problem) = server.call(Method::POST, &path, Some(&investigator), Some(json!({"reason": "fraud", "note": "  "}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "note");
    let unknown = "/api/v1/certificates/00000000-0000-4000-8000-000000000000/revocation";
    let (status, _) = server.call(Method::POST, unknown, Some(&investigator), Some(json!({"reason": "fraud", "note": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    server.post_ok(&path, &investigator, json!({"reason": "fraud", "note": "dose padded by the centre"})).await;
    let verdict = verify(&server, &citizen, &certificate_id).await;
    assert_eq!(verdict["reason"], "revoked_certificate", "{verdict}");
    let (status, problem) = server.call(Method::POST, &path, Some(&investigator), Some(json!({"reason": "fraud", "note": "again"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // Offline: the CLI detects the revocation only when given the revocation list.
    let (_, certificate) = server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(&citizen), None).await;
    let trust_list = server.client.get(format!("{}/api/v1/trust-list", server.base)).send().await.unwrap().text().await.unwrap();
    let revocations = server.client.get(format!("{}/api/v1/revocations", server.base)).send().await.unwrap().text().await.unwrap();
    let trust_path = server.dir.path().join("trust-list.json");
    let revocations_path = server.dir.path().join("revocations.json");
    std::fs::write(&trust_path, trust_list).unwrap();
    std::fs::write(&revocations_path, revocations).unwrap();
    let offline = |revocations: Option<std::path::PathBuf>| {
        let command = replay_tools::CertCommand::Verify(replay_tools::VerifyArgs {
            input: certificate["qr_text"].as_str().unwrap().to_owned(),
            trust_list: trust_path.clone(),
            trust_key: None,
            revocations,
            json: false,
        });
        replay_tools::run_cert_to(command, &mut Vec::new(), chrono::Utc::now()).unwrap()
    };
    assert_eq!(offline(None), replay_tools::CertOutcome::Valid);
    assert_eq!(offline(Some(revocations_path)), replay_tools::CertOutcome::Invalid);
}

#[tokio::test]
async fn signed_trust_list_checked_offline() {
    let server = TestServer::start().await;
    let (citizen, _, certificate_id) = vaccinated(&server).await;
    let (_, certificate) = server.call(Method::GET, &format!("/api/v1/certificates/{certificate_id}"), Some(&citizen), None).await;
    let note = server.client.get(format!("{}/api/v1/trust-list/signed", server.base)).send().await.unwrap().text().await.unwrap();
    let audit_key = std::fs::read_to_string(server.data_file("keys/audit.pub")).unwrap().trim().to_owned();
    let note_path = server.dir.path().join("trust-list.note");
    std::fs::write(&note_path, &note).unwrap();
    let tampered_path = server.dir.path().join("tampered.note");
    std::fs::write(&tampered_path, note.replacen("EdDSA", "EdDSB", 1)).unwrap();

    let run = |path: &std::path::Path, trust_key: Option<String>| {
        let command = replay_tools::CertCommand::Verify(replay_tools::VerifyArgs {
            input: certificate["qr_text"].as_str().unwrap().to_owned(),
            trust_list: path.to_path_buf(),
            trust_key,
            revocations: None,
            json: false,
        });
        replay_tools::run_cert_to(command, &mut Vec::new(), chrono::Utc::now())
    };
    assert_eq!(run(&note_path, Some(audit_key.clone())).unwrap(), replay_tools::CertOutcome::Valid);
    let unsigned_use = run(&note_path, None).unwrap_err().to_string();
    assert!(unsigned_use.contains("--trust-key"), "{unsigned_use}");
    let tampered = run(&tampered_path, Some(audit_key)).unwrap_err().to_string();
    assert!(tampered.contains("signature"), "{tampered}");
}
