//! Checks that appends acknowledged to the caller survive the process being killed with SIGKILL.
//!
//! The test re-runs its own binary as a child process that appends events one by one and prints
//! each acknowledged position. The parent kills the child mid-stream, then reopens the file and
//! looks for every acknowledged event.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::stream_append;
use store::{EventStore, ExpectedRevision, SqliteStore};

/// Environment variable naming the database file for the child process.
const CHILD_DB_VARIABLE: &str = "STORE_CRASH_TEST_DB";

/// Number of acknowledged appends the parent waits for before killing the child.
const ACKNOWLEDGED_BEFORE_KILL: usize = 50;

/// Upper bound on the child's appends, so that a child the parent failed to kill still stops.
const CHILD_MAX_APPENDS: usize = 100_000;

/// Child side: does nothing unless started by `kill_keeps_acknowledged_appends`.
#[test]
#[ignore = "run only as the child process of kill_keeps_acknowledged_appends"]
fn crash_child_appends_until_killed() {
    let Some(path) = std::env::var_os(CHILD_DB_VARIABLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("start runtime");

    runtime.block_on(async {
        let store = SqliteStore::open(&PathBuf::from(path))
            .await
            .expect("child opens store");
        let mut stdout = std::io::stdout();
        for _ in 0..CHILD_MAX_APPENDS {
            let outcome = store
                .append(vec![stream_append("crash", ExpectedRevision::Any, 1)])
                .await
                .expect("child append");
            let position = outcome.last_position.expect("one event written");
            writeln!(stdout, "acknowledged {position}").expect("write to parent");
            stdout.flush().expect("flush to parent");
        }
    });
}

#[test]
fn kill_keeps_acknowledged_appends() {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("events.db");

    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "crash_child_appends_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DB_VARIABLE, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start child");

    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(position) = line.strip_prefix("acknowledged ") {
            acknowledged.push(position.parse::<u64>().expect("position is a number"));
        }
        if acknowledged.len() == ACKNOWLEDGED_BEFORE_KILL {
            break;
        }
    }
    // Child::kill sends SIGKILL on Unix, so the store gets no chance to shut down cleanly.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    assert_eq!(
        acknowledged.len(),
        ACKNOWLEDGED_BEFORE_KILL,
        "child stopped before acknowledging enough appends"
    );

    let runtime = tokio::runtime::Runtime::new().expect("start runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).await.expect("reopen after kill");
        let head = store.head_position().await.expect("head");
        let last_acknowledged = *acknowledged.last().expect("some acknowledged");
        assert!(
            head >= last_acknowledged,
            "head {head} is below acknowledged position {last_acknowledged}"
        );

        let events = store.read_all(0, usize::MAX).await.expect("read all");
        let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
        assert_eq!(positions, (1..=head).collect::<Vec<u64>>());
        for position in &acknowledged {
            assert!(
                positions.contains(position),
                "acknowledged position {position} lost"
            );
        }

        // The Merkle leaves commit with their events, so the kill cannot leave them apart.
        let tree_size = store.tree_size().await.expect("tree size");
        assert_eq!(tree_size, head);
        let expected_root = store::merkle::root_from_events(&events).expect("gap-free events");
        assert_eq!(store.root_at(head).await.expect("root"), expected_root);
    });
}
