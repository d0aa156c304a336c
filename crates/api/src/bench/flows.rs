//! HTTP benchmarks on loopback against the real application, in one process:
//! complete dose flows, session search against a trivial endpoint, and certificate
//! verification through the API against raw ed25519-dalek verification.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use hdrhistogram::Histogram;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, EndpointExt, Route};
use reqwest::Client;
use serde_json::{json, Value};

use super::{grouped, per_second, BenchArgs, Figure};
use crate::server::{DataDir, ServeOptions};
use crate::service_db::Role;

#[handler]
fn trivial_endpoint() -> &'static str {
    "{\"status\":\"ok\"}"
}

/// A server built from the real application plus `/bench/trivial`.
struct BenchServer {
    base: String,
    client: Client,
    admin: String,
    state: Arc<crate::http::AppState>,
    data: DataDir,
    _dir: tempfile::TempDir,
}

async fn start(args: &BenchArgs) -> anyhow::Result<BenchServer> {
    let dir = tempfile::tempdir_in(&args.work_dir)?;
    let options = ServeOptions { data_dir: dir.path().join("data"), listen: "127.0.0.1:0".into(), store: None };
    let state = crate::server::open_state(&options).await?;
    let data = DataDir::new(&options.data_dir);
    tokio::spawn(Arc::clone(&state.ledger.projections).run(Arc::clone(&state.ledger.store)));
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::notify::run_dispatcher(Arc::clone(&state.ledger.service), data.outbox(), stop_rx));
    std::mem::forget(_stop);

    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|addr| addr.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("listener has no address"))?;
    let base = format!("http://{addr}");
    // The trivial endpoint gets the same request-logging middleware as the API, so that the
    // ratio measures the session search itself rather than the cost of a log line.
    let trivial = trivial_endpoint.with(poem::middleware::Tracing);
    let app = Route::new().at("/bench/trivial", trivial).nest("/", crate::http::app(Arc::clone(&state), &base)).map_to_response();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));

    let admin = std::fs::read_to_string(data.admin_token())?.trim().to_owned();
    let client = Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(args.clients * 2).build()?;
    Ok(BenchServer { base, client, admin, state, data, _dir: dir })
}

impl BenchServer {
    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        let response = self.client.post(format!("{}/api/v1{path}", self.base)).bearer_auth(token).json(&body).send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("POST {path} failed with {status}: {value}");
        }
        Ok(value)
    }
}

/// Per-client work of the flow benchmark: a session, a verifier and beneficiaries.
struct ClientSetup {
    session_id: String,
    verifier: String,
    citizens: Vec<(String, String)>,
}

async fn setup_clients(server: &BenchServer, clients: usize, flows_per_client: usize) -> anyhow::Result<Vec<ClientSetup>> {
    let today = crate::ledger::today_in_india(Utc::now()).to_string();
    let key = crate::server::load_server_key(&server.data)?;
    let service = &server.state.ledger.service;
    let mut setups = Vec::new();
    let bar = super::replay::progress_bar((clients * flows_per_client) as u64, "registering");
    for client in 0..clients {
        let centre = server
            .post("/centres", &server.admin, json!({"name": format!("Bench Centre {client}"), "district": "Pune", "state": "Maharashtra", "pincode": "411001"}))
            .await?;
        let centre_id = centre["id"].as_str().unwrap_or_default().to_owned();
        let session = server
            .post("/sessions", &server.admin, json!({"centre_id": centre_id, "date": today, "vaccine": "COVISHIELD", "capacity": domain::session::MAX_CAPACITY, "min_age": 18}))
            .await?;
        let verifier = server.post("/tokens", &server.admin, json!({"role": "verifier", "centre_id": centre_id})).await?;
        setups.push(ClientSetup {
            session_id: session["id"].as_str().unwrap_or_default().to_owned(),
            verifier: verifier["token"].as_str().unwrap_or_default().to_owned(),
            citizens: Vec::new(),
        });
    }
    let mut registrations = Vec::new();
    for (client, setup) in setups.iter().enumerate() {
        for group in 0..flows_per_client.div_ceil(4) {
            let mobile = domain::ids::MobileNumber::parse(&format!("9{:09}", client * 100_000 + group))?;
            let mobile_hash = key.mobile_hash(&mobile);
            service.save_contact(&mobile_hash, mobile.as_str())?;
            let (token, _) = service.create_token(Role::Citizen, None, Some(mobile_hash), Utc::now(), Some(Utc::now() + chrono::Duration::hours(2)))?;
            for member in 0..4.min(flows_per_client - group * 4) {
                registrations.push((client, token.clone(), format!("Bench {client}-{group}-{member}")));
            }
        }
        let _ = setup;
    }
    let registered = futures_like_join(server, registrations, &bar).await?;
    for (client, token, beneficiary_id) in registered {
        setups[client].citizens.push((token, beneficiary_id));
    }
    bar.finish_and_clear();
    Ok(setups)
}

/// Registers beneficiaries with bounded concurrency; returns (client, token, beneficiary id).
async fn futures_like_join(
    server: &BenchServer,
    registrations: Vec<(usize, String, String)>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<(usize, String, String)>> {
    let mut results = Vec::new();
    for chunk in registrations.chunks(64) {
        let mut tasks = Vec::new();
        for (client, token, name) in chunk.iter().cloned() {
            let client_http = server.client.clone();
            let url = format!("{}/api/v1/beneficiaries", server.base);
            tasks.push(tokio::spawn(async move {
                let body = json!({"name": name, "year_of_birth": 1970, "gender": "female", "photo_id_type": "aadhaar", "photo_id_number": "123412341234"});
                let response: Value = client_http.post(url).bearer_auth(&token).json(&body).send().await?.json().await?;
                let id = response["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("registration failed: {response}"))?;
                Ok::<_, anyhow::Error>((client, token, id))
            }));
        }
        for task in tasks {
            results.push(task.await??);
            bar.inc(1);
        }
    }
    Ok(results)
}

async fn run_flows(server: &BenchServer, setups: Vec<ClientSetup>) -> anyhow::Result<(u64, Duration, Histogram<u64>, Option<String>)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for setup in setups {
        let client = server.client.clone();
        let base = format!("{}/api/v1", server.base);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3)?;
            let mut last_certificate = None;
            for (citizen, beneficiary_id) in setup.citizens {
                let flow_started = Instant::now();
                let booking: Value = client
                    .post(format!("{base}/appointments"))
                    .bearer_auth(&citizen)
                    .json(&json!({"beneficiary_id": beneficiary_id, "session_id": setup.session_id, "dose_number": 1}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let appointment_id = booking["appointment_id"].as_str().ok_or_else(|| anyhow::anyhow!("booking failed: {booking}"))?.to_owned();
                let code = booking["security_code"].as_str().unwrap_or_default().to_owned();
                let verified = client
                    .post(format!("{base}/appointments/{appointment_id}/verification"))
                    .bearer_auth(&setup.verifier)
                    .json(&json!({"code": code}))
                    .send()
                    .await?;
                anyhow::ensure!(verified.status().is_success(), "verification failed: {}", verified.status());
                let dose: Value = client
                    .post(format!("{base}/appointments/{appointment_id}/doses"))
                    .bearer_auth(&setup.verifier)
                    .json(&json!({"batch": "4121Z005"}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let certificate_id = dose["certificate_id"].as_str().ok_or_else(|| anyhow::anyhow!("no certificate: {dose}"))?.to_owned();
                histogram.record(flow_started.elapsed().as_micros() as u64)?;
                last_certificate = Some((citizen, certificate_id));
            }
            Ok::<_, anyhow::Error>((histogram, last_certificate))
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut sample = None;
    for task in tasks {
        let (part, last) = task.await??;
        histogram.add(part)?;
        if sample.is_none() {
            sample = last;
        }
    }
    let elapsed = started.elapsed();
    let qr_text = match sample {
        Some((citizen, certificate_id)) => {
            let certificate: Value = server
                .client
                .get(format!("{}/api/v1/certificates/{certificate_id}", server.base))
                .bearer_auth(&citizen)
                .send()
                .await?
                .json()
                .await?;
            certificate["qr_text"].as_str().map(str::to_owned)
        }
        None => None,
    };
    Ok((histogram.len(), elapsed, histogram, qr_text))
}

/// Sends requests from `clients` loops for `seconds`; returns requests per second.
async fn hammer(server: &BenchServer, clients: usize, seconds: u64, make: impl Fn(&Client) -> reqwest::RequestBuilder + Send + Sync + 'static) -> anyhow::Result<f64> {
    let make = Arc::new(make);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = server.client.clone();
        let make = Arc::clone(&make);
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            while Instant::now() < deadline {
                let response = make(&client).send().await?;
                anyhow::ensure!(response.status().is_success(), "request failed: {}", response.status());
                response.bytes().await?;
                count += 1;
            }
            Ok::<_, anyhow::Error>(count)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(per_second(total, started.elapsed()))
}

/// Raw ed25519-dalek verifications per second on every core, over a certificate-sized message.
/// It calls `verify_strict`, the check the API makes on every certificate.
fn raw_verify_rate(seconds: u64) -> f64 {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let message = vec![0x5au8; 400];
    let signature = key.sign(&message);
    let verifying = key.verifying_key();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let message = message.clone();
            std::thread::spawn(move || {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    if verifying.verify_strict(&message, &signature).is_ok() {
                        count += 1;
                    }
                }
                count
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|handle| handle.join().unwrap_or(0)).sum();
    per_second(total, started.elapsed())
}

/// Runs the selected HTTP benchmarks.
pub async fn http(args: &BenchArgs, selected: &[&str]) -> anyhow::Result<Vec<Figure>> {
    let server = start(args).await?;
    let mut figures = Vec::new();
    // Search and verification need only a few sessions and one certificate, so without the flow
    // figure each client runs two flows.
    let flows_per_client = if selected.contains(&"flows") { 100 } else { 2 };
    let setups = setup_clients(&server, args.clients, flows_per_client).await?;
    let (flows, elapsed, histogram, qr_text) = run_flows(&server, setups).await?;
    if selected.contains(&"flows") {
        let rate = per_second(flows, elapsed);
        let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        println!("flows: {} flows/s, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms", grouped(rate), millis(0.5), millis(0.99), millis(0.999));
        figures.push(Figure {
            name: format!("dose flows over HTTP (book, verify, dose + certificate), {} clients, {flows} flows", args.clients),
            value: format!("{} flows/s; p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms", grouped(rate), millis(0.5), millis(0.99), millis(0.999)),
            baseline: "-".into(),
            ratio: None,
            target: "≥ 2,000 flows/s, p99 < 50 ms".into(),
        });
    }
    if selected.contains(&"search") {
        let today = crate::ledger::today_in_india(Utc::now()).to_string();
        let search_url = format!("{}/api/v1/sessions?district=Pune&date={today}", server.base);
        let search = hammer(&server, args.clients, args.seconds, move |client| client.get(&search_url)).await?;
        let trivial_url = format!("{}/bench/trivial", server.base);
        let trivial = hammer(&server, args.clients, args.seconds, move |client| client.get(&trivial_url)).await?;
        println!("search: {} req/s, trivial endpoint: {} req/s", grouped(search), grouped(trivial));
        figures.push(Figure {
            name: format!("session search ({} sessions in the district)", args.clients),
            value: format!("{} requests/s", grouped(search)),
            baseline: format!("{} requests/s trivial poem endpoint", grouped(trivial)),
            ratio: Some(search / trivial),
            target: "≥ 0.5×".into(),
        });
    }
    if selected.contains(&"verify") {
        let qr_text = qr_text.ok_or_else(|| anyhow::anyhow!("no certificate was issued to verify"))?;
        let verify_url = format!("{}/api/v1/certificates/verify", server.base);
        let body = json!({ "qr_text": qr_text });
        let api = hammer(&server, args.clients, args.seconds, move |client| client.post(&verify_url).json(&body)).await?;
        let raw = raw_verify_rate(args.seconds);
        println!("verify: {} per second through the API, raw ed25519-dalek: {} per second", grouped(api), grouped(raw));
        figures.push(Figure {
            name: "certificate verification through the API".into(),
            value: format!("{} verifications/s", grouped(api)),
            baseline: format!("{} verifications/s raw ed25519-dalek verify_strict, all cores", grouped(raw)),
            ratio: Some(api / raw),
            target: "≥ 0.7×".into(),
        });
    }
    Ok(figures)
}
