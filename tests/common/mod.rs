//! Test harness: the real server on a random loopback port with a fresh data folder.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// A running server and a client for it.
pub struct TestServer {
    /// Keeps the data folder alive for the test.
    pub dir: tempfile::TempDir,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// HTTP client.
    pub client: Client,
    /// Admin token from the data folder.
    pub admin: String,
    /// Handle to stop the server.
    pub running: api::server::Running,
}

impl TestServer {
    /// Starts the server on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = api::server::ServeOptions { data_dir: dir.path().join("data"), listen: "127.0.0.1:0".into(), store: None };
        let running = api::server::start(options).await.unwrap();
        let admin = std::fs::read_to_string(dir.path().join("data/admin-token")).unwrap().trim().to_owned();
        let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { base: format!("http://{}", running.addr), dir, client, admin, running }
    }

    /// Stops the server, lets `between` change the data folder, and starts a server on it again.
    pub async fn restart(self, between: impl FnOnce(&std::path::Path)) -> Self {
        let TestServer { dir, client, admin, running, .. } = self;
        running.shutdown.send(true).unwrap();
        running.handle.await.unwrap().unwrap();

        between(&dir.path().join("data"));
        let options = api::server::ServeOptions { data_dir: dir.path().join("data"), listen: "127.0.0.1:0".into(), store: None };
        let running = api::server::start(options).await.unwrap();
        Self { base: format!("http://{}", running.addr), dir, client, admin, running }
    }

    /// Path of a file in the data folder.
    pub fn data_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// Sends a request and returns status and JSON body (Null when the body is not JSON).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POST with a token, expecting 200; returns the body.
    pub async fn post_ok(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, value) = self.call(Method::POST, path, Some(token), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {value}");
        value
    }

    /// Registers a centre and returns its id.
    pub async fn centre(&self, name: &str, district: &str) -> String {
        let body = json!({"name": name, "district": district, "state": "Maharashtra", "pincode": "411001"});
        self.post_ok("/api/v1/centres", &self.admin, body).await["id"].as_str().unwrap().to_owned()
    }

    /// Schedules a session for today (India) and returns its id.
    pub async fn session_today(&self, centre_id: &str, capacity: u32) -> String {
        let body = json!({"centre_id": centre_id, "date": today(), "vaccine": "COVISHIELD", "capacity": capacity, "min_age": 18});
        self.post_ok("/api/v1/sessions", &self.admin, body).await["id"].as_str().unwrap().to_owned()
    }

    /// Creates a staff token through the API.
    pub async fn staff_token(&self, role: &str, centre_id: Option<&str>) -> String {
        let body = json!({"role": role, "centre_id": centre_id});
        self.post_ok("/api/v1/tokens", &self.admin, body).await["token"].as_str().unwrap().to_owned()
    }

    /// Logs a citizen in by OTP read from the outbox file.
    pub async fn citizen(&self, mobile: &str) -> String {
        let (status, body) = self.call(Method::POST, "/api/v1/auth/otp", None, Some(json!({"mobile": mobile}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let otp = self.wait_for_sms(mobile, "otp").await[..6].to_owned();
        let (status, body) = self.call(Method::POST, "/api/v1/auth/token", None, Some(json!({"mobile": mobile, "otp": otp}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Waits for the newest outbox message of a kind to a mobile number; returns its text.
    pub async fn wait_for_sms(&self, mobile: &str, kind: &str) -> String {
        for _ in 0..100 {
            let text = std::fs::read_to_string(self.data_file("outbox.jsonl")).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|message| message["mobile"] == mobile && message["kind"] == kind)
                .last();
            if let Some(message) = found {
                return message["text"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {kind} SMS to {mobile} within 5 s");
    }

    /// Registers a beneficiary born in 1980 and returns its id.
    pub async fn beneficiary(&self, citizen: &str, name: &str) -> String {
        let body = json!({"name": name, "year_of_birth": 1980, "gender": "female", "photo_id_type": "aadhaar", "photo_id_number": "123412341234"});
        self.post_ok("/api/v1/beneficiaries", citizen, body).await["id"].as_str().unwrap().to_owned()
    }

    /// Books dose 1 and returns (appointment id, security code).
    pub async fn book(&self, citizen: &str, beneficiary_id: &str, session_id: &str) -> (String, String) {
        let body = json!({"beneficiary_id": beneficiary_id, "session_id": session_id, "dose_number": 1});
        let booked = self.post_ok("/api/v1/appointments", citizen, body).await;
        (booked["appointment_id"].as_str().unwrap().to_owned(), booked["security_code"].as_str().unwrap().to_owned())
    }
}

/// Today's date in India, as the server computes it.
pub fn today() -> String {
    api::ledger::today_in_india(chrono::Utc::now()).to_string()
}

/// A code other than `code`.
pub fn other_code(code: &str) -> String {
    let value: u32 = code.parse().unwrap();
    format!("{:04}", (value + 1) % 10_000)
}
