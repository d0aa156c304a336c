//! Crash safety of the real `vaxledger serve` binary: concurrent centre registrations over HTTP
//! while the server is killed with SIGKILL, several times, on one data folder. After a final
//! restart, every registration acknowledged with 200 must be in the log exactly once, every
//! stream must be whole, and `vaxledger audit verify` must pass on the folder.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// Kill-and-restart rounds.
const ROUNDS: usize = 4;

/// Concurrent clients sending registrations in each round.
const CLIENTS: usize = 8;

/// How long the clients send before the server is killed, per round.
const KILL_AFTER: [Duration; ROUNDS] = [
    Duration::from_millis(400),
    Duration::from_millis(700),
    Duration::from_millis(250),
    Duration::from_millis(900),
];

/// Maximum wait for the server to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `vaxledger serve` process, killed when dropped so a failing test leaves none.
struct Server {
    /// The child process.
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    base: String,
    /// Last lines the server logged, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary on `data_dir` with an ephemeral loopback port and waits until it
    /// listens. Checkpoints are signed every second, so kills also land around signings.
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaxledger"))
            .args(["serve", "--listen", "127.0.0.1:0", "--checkpoint-interval", "1s", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vaxledger serve");

        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address) = mpsc::channel();
        let lines = Arc::clone(&log);
        // Drains the log for the whole life of the process, so the pipe never fills up.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("vaxledger listening") {
                    if let Some(port) = listening_port(&line) {
                        let _ = address_sender.send(port);
                    }
                }
                let mut lines = lines.lock().unwrap();
                lines.push(line);
                if lines.len() > 200 {
                    lines.remove(0);
                }
            }
        });

        let port = match address.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start within {START_TIMEOUT:?}; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Server { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    /// Kills the process with SIGKILL and waits for it.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the port from the `vaxledger listening addr=127.0.0.1:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    let start = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Sends registrations until one fails (the server died) or `stop` passes; returns the ids of
/// those acknowledged with 200.
async fn register_until_failure(client: Client, base: String, admin: String, client_number: usize, round: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for request in 0.. {
        let body = json!({
            "name": format!("Crash Centre r{round} c{client_number} n{request}"),
            "district": "Pune",
            "state": "Maharashtra",
            "pincode": "411001",
        });
        let response = client.post(format!("{base}/api/v1/centres")).bearer_auth(&admin).json(&body).send().await;
        let Ok(response) = response else { break };
        if response.status() != StatusCode::OK {
            break;
        }
        let Ok(value) = response.json::<Value>().await else { break };
        match value["id"].as_str() {
            Some(id) => acknowledged.push(id.to_owned()),
            None => break,
        }
    }
    acknowledged
}

/// Runs one round: start, send from every client, kill mid-way; returns acknowledged ids.
async fn crash_round(data_dir: &Path, round: usize) -> Vec<String> {
    let server = Server::start(data_dir);
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).expect("admin token").trim().to_owned();
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let senders: Vec<_> = (0..CLIENTS)
        .map(|number| tokio::spawn(register_until_failure(client.clone(), server.base.clone(), admin.clone(), number, round)))
        .collect();
    tokio::time::sleep(KILL_AFTER[round]).await;
    let log_tail = server.log.lock().unwrap().len();
    server.kill();

    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(sender.await.expect("client task"));
    }
    assert!(!acknowledged.is_empty(), "round {round}: no registration was acknowledged before the kill ({log_tail} log lines)");
    acknowledged
}

/// Runs a `vaxledger audit` subcommand and returns its exit status and standard output.
fn run_audit(args: &[&str], data_dir: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vaxledger"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vaxledger audit");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_acknowledged_appends() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");

    let mut acknowledged = Vec::new();
    for round in 0..ROUNDS {
        acknowledged.extend(crash_round(&data_dir, round).await);
    }

    // A last start recovers the log and signs a checkpoint over it; then the server dies again
    // with no request in flight.
    let server = Server::start(&data_dir);
    let admin = std::fs::read_to_string(data_dir.join("admin-token")).unwrap().trim().to_owned();
    let client = Client::new();
    let probe = client
        .post(format!("{}/api/v1/sessions", server.base))
        .bearer_auth(&admin)
        .json(&json!({"centre_id": acknowledged[0], "date": "2099-01-01", "vaccine": "COVAXIN", "capacity": 10, "min_age": 18}))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK, "the first acknowledged centre is readable after restarts");
    server.kill();

    let (verified, report, stderr) = run_audit(&["verify"], &data_dir);
    assert!(verified, "audit verify failed after {ROUNDS} kills:\n{report}\n{stderr}");
    assert!(report.contains("VERIFIED"), "{report}");

    let export = dir.path().join("events.jsonl");
    let (exported, _, stderr) = run_audit(&["export", "--format", "jsonl", "--out", export.to_str().unwrap()], &data_dir);
    assert!(exported, "audit export failed: {stderr}");
    let mut registered: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&export).unwrap().lines() {
        let event: Value = serde_json::from_str(line).expect("every exported line is whole JSON");
        assert!(event["payload"].is_object(), "an event that does not decode: {event}");
        if event["event_type"] == "CentreRegistered" {
            *registered.entry(event["payload"]["centre_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }

    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "the server acknowledged one id twice");
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !registered.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged registrations were lost: {lost:?}", lost.len(), acknowledged.len());
    let doubled: Vec<(&String, &usize)> = registered.iter().filter(|(_, count)| **count != 1).collect();
    assert!(doubled.is_empty(), "centres registered more than once: {doubled:?}");
    eprintln!(
        "{ROUNDS} kills: {} registrations acknowledged, {} committed, all acknowledged ones present, in {:?}",
        acknowledged.len(),
        registered.len(),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60), "the crash test took {:?}", started.elapsed());
}
