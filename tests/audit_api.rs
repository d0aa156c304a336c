//! The audit API against the real server: the public checkpoint verifies with `keys/audit.pub`,
//! the event feed and proofs need the auditor role, a booked appointment's event is proven
//! against a signed checkpoint root, and two checkpoints are proven consistent.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use store::checkpoint::{verify_checkpoint, Checkpoint, VerifierKey};
use store::merkle::{event_leaf_hash, verify_consistency, verify_inclusion};
use store::{Metadata, RecordedEvent};

/// Reads the verifier key the server wrote to the data folder.
fn audit_public_key(server: &TestServer) -> VerifierKey {
    let text = std::fs::read_to_string(server.data_file("keys/audit.pub")).expect("keys/audit.pub");
    VerifierKey::parse(&text).expect("audit.pub holds a verifier key")
}

/// Sends a request and returns the status and the raw body.
async fn call_text(server: &TestServer, method: Method, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut request = server.client.request(method, format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("read body"))
}

/// Signs a checkpoint now and returns its verified body.
async fn sign_checkpoint(server: &TestServer, token: &str) -> Checkpoint {
    let (status, _, note) = call_text(server, Method::POST, "/api/v1/audit/checkpoint", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{note}");
    verify_checkpoint(&note, &audit_public_key(server)).expect("signed checkpoint verifies")
}

fn base64_field(value: &Value, field: &str) -> Vec<u8> {
    let text = value[field].as_str().unwrap_or_else(|| panic!("{field} missing in {value}"));
    BASE64.decode(text).expect("base64")
}

fn base64_list(value: &Value, field: &str) -> Vec<Vec<u8>> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
        .iter()
        .map(|hash| BASE64.decode(hash.as_str().expect("hash string")).expect("base64"))
        .collect()
}

/// Rebuilds the stored event from a feed entry, to recompute its leaf hash.
fn recorded_event(entry: &Value) -> RecordedEvent {
    let metadata = &entry["metadata"];
    RecordedEvent {
        position: entry["position"].as_u64().expect("position"),
        stream_id: entry["stream_id"].as_str().expect("stream_id").to_owned(),
        revision: entry["revision"].as_u64().expect("revision"),
        event_type: entry["event_type"].as_str().expect("event_type").to_owned(),
        schema_version: entry["schema_version"].as_u64().expect("schema_version") as u16,
        payload: base64_field(entry, "payload"),
        metadata: Metadata {
            actor_id: metadata["actor_id"].as_str().expect("actor_id").to_owned(),
            actor_role: metadata["actor_role"].as_str().expect("actor_role").to_owned(),
            request_id: metadata["request_id"].as_str().expect("request_id").to_owned(),
            idempotency_key: metadata["idempotency_key"].as_str().map(str::to_owned),
        },
        recorded_at_ms: entry["recorded_at_ms"].as_i64().expect("recorded_at_ms"),
    }
}

/// Reads the whole feed in pages of `limit`.
async fn read_feed(server: &TestServer, auditor: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/audit/events?after={after}&limit={limit}");
        let (status, page) = server.call(Method::GET, &path, Some(auditor), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let batch = page["events"].as_array().expect("events").clone();
        assert!(batch.len() <= limit as usize);
        if batch.is_empty() {
            assert_eq!(page["next_after"], after);
            return events;
        }
        after = page["next_after"].as_u64().expect("next_after");
        assert_eq!(Some(after), batch.last().and_then(|event| event["position"].as_u64()));
        events.extend(batch);
    }
}

/// Registers a centre and session and books one appointment; returns the appointment id.
async fn book_appointment(server: &TestServer, mobile: &str) -> String {
    let centre = server.centre("PHC Audit", "Pune").await;
    let session = server.session_today(&centre, 10).await;
    let citizen = server.citizen(mobile).await;
    let beneficiary = server.beneficiary(&citizen, "Asha Audit").await;
    let (appointment, _code) = server.book(&citizen, &beneficiary, &session).await;
    appointment
}

#[tokio::test]
async fn checkpoint_public_and_verifiable() {
    let server = TestServer::start().await;

    let (status, content_type, note) = call_text(&server, Method::GET, "/api/v1/audit/checkpoint", None).await;
    assert_eq!(status, StatusCode::OK, "{note}");
    assert!(content_type.starts_with("text/plain"), "content type {content_type}");

    let key = audit_public_key(&server);
    let checkpoint = verify_checkpoint(&note, &key).expect("checkpoint verifies with keys/audit.pub");
    assert_eq!(checkpoint.origin, key.name());
    assert!(checkpoint.origin.starts_with("vaxledger/"), "origin {}", checkpoint.origin);

    let tampered = note.replacen(&format!("\n{}\n", checkpoint.tree_size), &format!("\n{}\n", checkpoint.tree_size + 1), 1);
    assert!(verify_checkpoint(&tampered, &key).is_err(), "a changed tree size verified");
}

#[tokio::test]
async fn audit_endpoints_need_auditor() {
    let server = TestServer::start().await;
    let centre = server.centre("PHC Roles", "Pune").await;
    let verifier = server.staff_token("verifier", Some(&centre)).await;
    let auditor = server.staff_token("auditor", None).await;

    let (status, body) = server.call(Method::GET, "/api/v1/audit/events", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = server.call(Method::GET, "/api/v1/audit/events", Some(&verifier), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = server.call(Method::GET, "/api/v1/audit/proofs/inclusion?position=1", Some(&verifier), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = server.call(Method::GET, "/api/v1/audit/proofs/consistency?from=1&to=1", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = server.call(Method::GET, "/api/v1/audit/events", Some(&auditor), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = call_text(&server, Method::POST, "/api/v1/audit/checkpoint", Some(&verifier)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = call_text(&server, Method::POST, "/api/v1/audit/checkpoint", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let admin_checkpoint = sign_checkpoint(&server, &server.admin).await;
    let auditor_checkpoint = sign_checkpoint(&server, &auditor).await;
    assert!(auditor_checkpoint.tree_size >= admin_checkpoint.tree_size);
}

#[tokio::test]
async fn event_feed_pages_and_hashes() {
    let server = TestServer::start().await;
    let auditor = server.staff_token("auditor", None).await;
    book_appointment(&server, "9876500001").await;

    for limit in ["0", "1001", "abc", "-1"] {
        let (status, body) = server
            .call(Method::GET, &format!("/api/v1/audit/events?limit={limit}"), Some(&auditor), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit {limit}: {body}");
        assert_eq!(body["field"], "limit", "limit {limit}: {body}");
    }

    let small_pages = read_feed(&server, &auditor, 2).await;
    let one_page = read_feed(&server, &auditor, 1000).await;
    assert_eq!(small_pages, one_page);
    assert!(one_page.len() >= 4, "expected the booking's events, got {}", one_page.len());

    for (index, entry) in one_page.iter().enumerate() {
        assert_eq!(entry["position"], index as u64 + 1);
        let event = recorded_event(entry);
        assert_eq!(base64_field(entry, "leaf_hash"), event_leaf_hash(&event).to_vec(), "leaf hash of {entry}");
    }
}

#[tokio::test]
async fn booked_event_proven_in_checkpoint() {
    let server = TestServer::start().await;
    let auditor = server.staff_token("auditor", None).await;
    let appointment = book_appointment(&server, "9876500002").await;
    let checkpoint = sign_checkpoint(&server, &auditor).await;

    let feed = read_feed(&server, &auditor, 1000).await;
    let stream = format!("appointment-{appointment}");
    let booked = feed
        .iter()
        .find(|entry| entry["event_type"] == "AppointmentBooked" && entry["stream_id"] == stream.as_str())
        .expect("AppointmentBooked in the feed");
    let position = booked["position"].as_u64().expect("position");
    assert!(position <= checkpoint.tree_size);

    let path = format!("/api/v1/audit/proofs/inclusion?position={position}&tree_size={}", checkpoint.tree_size);
    let (status, proof) = server.call(Method::GET, &path, Some(&auditor), None).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["leaf_index"], position - 1);
    assert_eq!(base64_field(&proof, "root_hash"), checkpoint.root_hash.to_vec());

    // The leaf is recomputed from the feed's fields and the root comes from the signature, so
    // the server's own hashes are not trusted.
    let leaf = event_leaf_hash(&recorded_event(booked));
    let hashes = base64_list(&proof, "proof");
    let verified = verify_inclusion(&leaf, position - 1, checkpoint.tree_size, &hashes, &checkpoint.root_hash);
    assert_eq!(verified, Ok(()));

    let other = event_leaf_hash(&recorded_event(&feed[0]));
    if position != 1 {
        assert!(verify_inclusion(&other, position - 1, checkpoint.tree_size, &hashes, &checkpoint.root_hash).is_err());
    }
}

#[tokio::test]
async fn checkpoints_proven_consistent() {
    let server = TestServer::start().await;
    let auditor = server.staff_token("auditor", None).await;
    server.centre("PHC First", "Pune").await;
    let first = sign_checkpoint(&server, &auditor).await;
    assert!(first.tree_size >= 1);

    book_appointment(&server, "9876500003").await;
    let second = sign_checkpoint(&server, &auditor).await;
    assert!(second.tree_size > first.tree_size);

    let path = format!("/api/v1/audit/proofs/consistency?from={}&to={}", first.tree_size, second.tree_size);
    let (status, proof) = server.call(Method::GET, &path, Some(&auditor), None).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let hashes = base64_list(&proof, "proof");
    let verified = verify_consistency(first.tree_size, second.tree_size, &hashes, &first.root_hash, &second.root_hash);
    assert_eq!(verified, Ok(()));

    let mut wrong_root = first.root_hash;
    wrong_root[0] ^= 1;
    assert!(verify_consistency(first.tree_size, second.tree_size, &hashes, &wrong_root, &second.root_hash).is_err());
}

#[tokio::test]
async fn proof_parameters_checked() {
    let server = TestServer::start().await;
    let auditor = server.staff_token("auditor", None).await;
    server.centre("PHC Params", "Pune").await;
    let size = sign_checkpoint(&server, &auditor).await.tree_size;
    let beyond = size + 100;

    let cases = [
        (format!("/api/v1/audit/proofs/inclusion?position={beyond}"), StatusCode::BAD_REQUEST, "position"),
        (format!("/api/v1/audit/proofs/inclusion?position=1&tree_size={beyond}"), StatusCode::NOT_FOUND, "tree_size"),
        ("/api/v1/audit/proofs/inclusion?position=0".to_owned(), StatusCode::BAD_REQUEST, "position"),
        ("/api/v1/audit/proofs/inclusion".to_owned(), StatusCode::BAD_REQUEST, "position"),
        ("/api/v1/audit/proofs/inclusion?position=x".to_owned(), StatusCode::BAD_REQUEST, "position"),
        (format!("/api/v1/audit/proofs/consistency?from=0&to={size}"), StatusCode::BAD_REQUEST, "from"),
        (format!("/api/v1/audit/proofs/consistency?from=1&to={beyond}"), StatusCode::NOT_FOUND, "to"),
        (format!("/api/v1/audit/proofs/consistency?from={}&to=1", size + 1), StatusCode::BAD_REQUEST, "from"),
        ("/api/v1/audit/proofs/consistency?from=1".to_owned(), StatusCode::BAD_REQUEST, "to"),
    ];
    for (path, expected_status, field) in cases {
        let (status, body) = server.call(Method::GET, &path, Some(&auditor), None).await;
        assert_eq!(status, expected_status, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
}
