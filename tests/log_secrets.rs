//! Runs the real binary with debug logging through a full flow and checks that no token,
//! OTP message or security-code message reaches its log.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};

#[tokio::test]
async fn log_holds_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaxledger"))
        .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server did not start");

    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap().trim().to_owned();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let centre: Value = post("/centres", Some(&admin), json!({"name": "PHC", "district": "Pune", "state": "MH", "pincode": "411001"}))
        .await.unwrap().json().await.unwrap();
    let centre_id = centre["id"].as_str().unwrap().to_owned();
    let session: Value = post("/sessions", Some(&admin), json!({"centre_id": centre_id, "date": common::today(), "vaccine": "COVAXIN", "capacity": 5, "min_age": 18}))
        .await.unwrap().json().await.unwrap();
    let verifier: Value = post("/tokens", Some(&admin), json!({"role": "verifier", "centre_id": centre_id})).await.unwrap().json().await.unwrap();
    let verifier = verifier["token"].as_str().unwrap().to_owned();

    post("/auth/otp", None, json!({"mobile": "9811111111"})).await.unwrap();
    let mut otp = String::new();
    for _ in 0..50 {
        let outbox = std::fs::read_to_string(data.join("outbox.jsonl")).unwrap_or_default();
        if let Some(line) = outbox.lines().find(|line| line.contains("\"otp\"")) {
            let message: Value = serde_json::from_str(line).unwrap();
            otp = message["text"].as_str().unwrap()[..6].to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(otp.len(), 6, "OTP SMS not written");
    let citizen: Value = post("/auth/token", None, json!({"mobile": "9811111111", "otp": otp})).await.unwrap().json().await.unwrap();
    let citizen = citizen["token"].as_str().unwrap().to_owned();
    let beneficiary: Value = post("/beneficiaries", Some(&citizen), json!({"name": "Secret Keeper", "year_of_birth": 1970, "gender": "male", "photo_id_type": "pan", "photo_id_number": "ABCDE1234F"}))
        .await.unwrap().json().await.unwrap();
    let booking: Value = post("/appointments", Some(&citizen), json!({"beneficiary_id": beneficiary["id"], "session_id": session["id"], "dose_number": 1}))
        .await.unwrap().json().await.unwrap();
    let appointment_id = booking["appointment_id"].as_str().unwrap().to_owned();
    let code = booking["security_code"].as_str().unwrap().to_owned();
    post(&format!("/appointments/{appointment_id}/verification"), Some(&verifier), json!({"code": common::other_code(&code)})).await.unwrap();
    post(&format!("/appointments/{appointment_id}/verification"), Some(&verifier), json!({"code": code})).await.unwrap();
    let dose: Value = post(&format!("/appointments/{appointment_id}/doses"), Some(&verifier), json!({"batch": "B7"})).await.unwrap().json().await.unwrap();
    assert!(dose["certificate_id"].is_string(), "{dose}");

    child.kill().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    child.wait().unwrap();

    assert!(log.contains("certificate issued"), "the log was captured");
    for (name, secret) in [("admin token", admin.as_str()), ("verifier token", &verifier), ("citizen token", &citizen)] {
        let secret_part = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(secret_part), "{name} leaked into the log");
    }
    for phrase in ["security code is", "login OTP", &format!("\"otp\":\"{otp}\""), &format!("code={code}")] {
        assert!(!log.contains(phrase), "log contains {phrase:?}");
    }
    assert!(!log.contains("9811111111"), "unmasked mobile number in the log");

    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data folder holds the outbox with OTPs and codes");
    assert_eq!(mode(&data.join("outbox.jsonl")), 0o600);
    assert_eq!(mode(&data.join("admin-token")), 0o600);
}
