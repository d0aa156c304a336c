//! End-to-end test of `vaxledger simulate`: a real server in-process on a loopback port with a
//! fresh data folder, driven by the simulator's library entry with a small day.

use std::path::Path;
use std::time::Duration;

use api::server::{start, ServeOptions};
use api::simulate::{simulate, SimulateConfig};

/// Maximum time of a simulated small day before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn small_day(url: String, data_dir: &Path) -> SimulateConfig {
    SimulateConfig {
        url,
        admin_token_file: data_dir.join("admin-token"),
        outbox: data_dir.join("outbox.jsonl"),
        seed: 7,
        citizens: 60,
        centres: 4,
        districts: 2,
        concurrency: 8,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_small_day_passes_every_check() {
    let data = tempfile::tempdir().expect("creating a temporary data folder");
    let server = start(ServeOptions { data_dir: data.path().to_owned(), listen: "127.0.0.1:0".into(), store: None })
        .await
        .expect("starting the server");

    let config = small_day(format!("http://{}", server.addr), data.path());
    let report = tokio::time::timeout(RUN_LIMIT, simulate(config)).await.expect("simulated day timed out").expect("simulation ran");
    println!("{}", report.render());

    let _ = server.shutdown.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), server.handle).await;

    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|check| check.failed > 0)
        .map(|check| format!("{}: {} failed, first: {:?}", check.name, check.failed, check.failures.first()))
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert!(report.passed() > 0);

    let counts = &report.counts;
    assert_eq!(counts.centres, 4);
    assert!(counts.citizens > 60 + 13, "60 citizens, 13 capacity-race citizens and the planted-pattern citizens log in");
    assert!(counts.bookings > 0);
    assert!(counts.searches > counts.bookings, "searches {} should outnumber bookings {}", counts.searches, counts.bookings);
    assert!(counts.certificates > 0);
    assert_eq!(counts.certificates, counts.certificates_valid);
    assert!(counts.verifications_rejected_total() > 0);
    assert!(counts.verifications_rejected.get("wrong_code").copied().unwrap_or(0) > 0);
    assert!(counts.verifications_rejected.get("wrong_centre").copied().unwrap_or(0) > 0);
    assert!(counts.verifications_rejected.get("locked").copied().unwrap_or(0) > 0);
    assert!(counts.verifications_rejected.get("appointment_cancelled").copied().unwrap_or(0) > 0);
    assert!(counts.locks > 0);
    assert!(counts.doses_rejected_total() > 0);
    assert!(counts.cancellations > 0);
    assert!(counts.walk_ins > 0);
    assert_eq!(counts.race_booked, 10);
    assert_eq!(counts.race_rejected, 40);
    for name in ["capacity_race", "brute_force_locked", "certificate_valid", "walk_in_code_only_by_sms", "appointment_final_state"] {
        let check = report.check(name).expect("check is listed");
        assert!(check.passed > 0, "check {name} never ran");
    }
}

#[tokio::test]
async fn simulate_non_loopback_url_rejected() {
    let data = tempfile::tempdir().expect("creating a temporary folder");

    // Names under .invalid never resolve (RFC 6761), so even a broken guard could reach no host.
    // The admin token file does not exist, so an error about it would show that the guard let
    // the URL through.
    for url in [
        "http://vaxledger.invalid:8080",
        "http://127.0.0.1.vaxledger.invalid:8080",
        "http://127.0.0.1@vaxledger.invalid:8080",
        "http://localhost.vaxledger.invalid",
    ] {
        let error = simulate(small_day(url.into(), &data.path().join("missing")))
            .await
            .expect_err("a non-loopback URL must be rejected");
        let message = format!("{error:#}");
        assert!(message.contains("not a loopback address") || message.contains("user information"), "{url}: unexpected error {message}");
        assert!(!message.contains("admin token"), "{url}: the guard ran after reading files: {message}");
    }
}
