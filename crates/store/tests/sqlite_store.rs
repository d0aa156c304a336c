//! Tests of the SQLite event store against real database files in temp folders.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;

use common::{event, open_temp_store, positions, read_everything, stream_append};
use store::{
    expected_after, last_revision, EventStore, ExpectedRevision, SqliteStore, StoreError,
    StreamAppend,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

#[tokio::test]
async fn append_then_read_stream() {
    let (_folder, _path, store) = open_temp_store().await;

    let outcome = store
        .append(vec![stream_append(
            "patient-1",
            ExpectedRevision::NoStream,
            3,
        )])
        .await
        .expect("append");
    assert_eq!(outcome.first_position, Some(1));
    assert_eq!(outcome.last_position, Some(3));
    assert_eq!(outcome.revisions, vec![("patient-1".to_owned(), Some(2))]);

    store
        .append(vec![stream_append(
            "patient-2",
            ExpectedRevision::NoStream,
            2,
        )])
        .await
        .expect("append to second stream");

    let events = store
        .read_stream("patient-1", 0)
        .await
        .expect("read stream");
    assert_eq!(events.len(), 3);
    let revisions: Vec<u64> = events.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, vec![0, 1, 2]);
    assert_eq!(positions(&events), vec![1, 2, 3]);

    let expected = stream_append("patient-1", ExpectedRevision::Any, 3);
    for (stored, sent) in events.iter().zip(&expected.events) {
        assert_eq!(stored.stream_id, "patient-1");
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.schema_version, sent.schema_version);
        assert_eq!(stored.payload, sent.payload);
        assert_eq!(stored.metadata, sent.metadata);
        assert!(stored.recorded_at_ms > 0);
    }

    let tail = store
        .read_stream("patient-1", 1)
        .await
        .expect("read from revision 1");
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].revision, 1);

    let beyond = store
        .read_stream("patient-1", u64::MAX)
        .await
        .expect("read past end");
    assert!(beyond.is_empty());

    let missing = store
        .read_stream("no-such-stream", 0)
        .await
        .expect("read missing");
    assert!(missing.is_empty());
}

#[tokio::test]
async fn read_all_pages_gap_free() {
    let (_folder, _path, store) = open_temp_store().await;
    for index in 0..10 {
        let stream_id = format!("stream-{}", index % 3);
        store
            .append(vec![stream_append(&stream_id, ExpectedRevision::Any, 1)])
            .await
            .expect("append");
    }

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 3).await.expect("read page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().expect("non-empty page").position;
        seen.extend(page);
    }
    assert_eq!(positions(&seen), (1..=10).collect::<Vec<u64>>());

    let middle = store.read_all(4, 2).await.expect("read middle");
    assert_eq!(positions(&middle), vec![5, 6]);
    assert!(store
        .read_all(10, 5)
        .await
        .expect("read past head")
        .is_empty());
    assert!(store.read_all(0, 0).await.expect("read zero").is_empty());
    assert!(store
        .read_all(u64::MAX, 5)
        .await
        .expect("read huge")
        .is_empty());

    assert_eq!(store.head_position().await.expect("head"), 10);
    assert_eq!(*store.watch_head().borrow(), 10);
}

#[tokio::test]
async fn multi_stream_append_positions_in_request_order() {
    let (_folder, _path, store) = open_temp_store().await;

    let outcome = store
        .append(vec![
            stream_append("a", ExpectedRevision::NoStream, 2),
            stream_append("b", ExpectedRevision::NoStream, 1),
            stream_append("a", ExpectedRevision::Exact(1), 1),
        ])
        .await
        .expect("append");

    assert_eq!(outcome.first_position, Some(1));
    assert_eq!(outcome.last_position, Some(4));
    assert_eq!(
        outcome.revisions,
        vec![
            ("a".to_owned(), Some(1)),
            ("b".to_owned(), Some(0)),
            ("a".to_owned(), Some(2)),
        ]
    );

    let events = read_everything(store.as_ref()).await;
    let order: Vec<(&str, u64)> = events
        .iter()
        .map(|event| (event.stream_id.as_str(), event.revision))
        .collect();
    assert_eq!(order, vec![("a", 0), ("a", 1), ("b", 0), ("a", 2)]);
}

#[tokio::test]
async fn no_stream_on_existing_stream_fails() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 1)])
        .await
        .expect("first append");

    let result = store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 1)])
        .await;

    match result {
        Err(StoreError::WrongExpectedRevision {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, "a");
            assert_eq!(expected, ExpectedRevision::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("expected WrongExpectedRevision, got {other:?}"),
    }
    assert_eq!(store.head_position().await.expect("head"), 1);
}

#[tokio::test]
async fn exact_wrong_revision_fails() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 3)])
        .await
        .expect("first append");

    let err = store
        .append(vec![stream_append("a", ExpectedRevision::Exact(1), 1)])
        .await
        .expect_err("stale revision must fail");
    match &err {
        StoreError::WrongExpectedRevision {
            stream_id, actual, ..
        } => {
            assert_eq!(stream_id, "a");
            assert_eq!(*actual, Some(2));
        }
        other => panic!("expected WrongExpectedRevision, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("stream a"), "message: {message}");
    assert!(message.contains("Some(2)"), "message: {message}");

    let missing = store
        .append(vec![stream_append("b", ExpectedRevision::Exact(0), 1)])
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::WrongExpectedRevision { actual: None, .. })
    ));

    let right = store
        .append(vec![stream_append("a", ExpectedRevision::Exact(2), 1)])
        .await
        .expect("right revision succeeds");
    assert_eq!(right.revisions, vec![("a".to_owned(), Some(3))]);
    assert_eq!(right.first_position, Some(4));
}

#[tokio::test]
async fn any_always_succeeds() {
    let (_folder, _path, store) = open_temp_store().await;

    let created = store
        .append(vec![stream_append("a", ExpectedRevision::Any, 1)])
        .await
        .expect("Any on a missing stream");
    assert_eq!(created.revisions, vec![("a".to_owned(), Some(0))]);

    let extended = store
        .append(vec![stream_append("a", ExpectedRevision::Any, 2)])
        .await
        .expect("Any on an existing stream");
    assert_eq!(extended.revisions, vec![("a".to_owned(), Some(2))]);
}

#[tokio::test]
async fn failed_check_writes_no_stream() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 1)])
        .await
        .expect("first append");

    let result = store
        .append(vec![
            stream_append("b", ExpectedRevision::NoStream, 2),
            stream_append("a", ExpectedRevision::Exact(5), 1),
            stream_append("c", ExpectedRevision::Any, 1),
        ])
        .await;

    assert!(matches!(
        result,
        Err(StoreError::WrongExpectedRevision { ref stream_id, .. }) if stream_id == "a"
    ));
    assert!(store.read_stream("b", 0).await.expect("read b").is_empty());
    assert!(store.read_stream("c", 0).await.expect("read c").is_empty());
    assert_eq!(store.read_stream("a", 0).await.expect("read a").len(), 1);
    assert_eq!(store.head_position().await.expect("head"), 1);

    let next = store
        .append(vec![stream_append("b", ExpectedRevision::NoStream, 1)])
        .await
        .expect("b is still new");
    assert_eq!(next.first_position, Some(2));
}

#[tokio::test]
async fn empty_append_checks_revisions_only() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 2)])
        .await
        .expect("first append");

    let nothing = store.append(Vec::new()).await.expect("empty list");
    assert_eq!(nothing.first_position, None);
    assert_eq!(nothing.last_position, None);
    assert!(nothing.revisions.is_empty());

    let stale = store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 0)])
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::WrongExpectedRevision {
            actual: Some(1),
            ..
        })
    ));

    let checked = store
        .append(vec![
            stream_append("a", ExpectedRevision::Exact(1), 0),
            stream_append("new", ExpectedRevision::NoStream, 0),
        ])
        .await
        .expect("checks hold");
    assert_eq!(checked.first_position, None);
    assert_eq!(checked.last_position, None);
    assert_eq!(
        checked.revisions,
        vec![("a".to_owned(), Some(1)), ("new".to_owned(), None)]
    );

    assert_eq!(store.head_position().await.expect("head"), 2);
    let still_new = store
        .append(vec![stream_append("new", ExpectedRevision::NoStream, 1)])
        .await
        .expect("check-only append created nothing");
    assert_eq!(still_new.first_position, Some(3));
}

#[tokio::test]
async fn invalid_append_rejected() {
    let (_folder, _path, store) = open_temp_store().await;

    let empty_stream = store
        .append(vec![stream_append("", ExpectedRevision::Any, 1)])
        .await;
    assert!(matches!(empty_stream, Err(StoreError::InvalidAppend(_))));

    let empty_type = store
        .append(vec![
            stream_append("a", ExpectedRevision::Any, 1),
            StreamAppend {
                stream_id: "b".to_owned(),
                expected: ExpectedRevision::Any,
                events: vec![event("", b"payload")],
            },
        ])
        .await;
    match empty_type {
        Err(StoreError::InvalidAppend(message)) => {
            assert!(message.contains("stream b"), "message: {message}");
        }
        other => panic!("expected InvalidAppend, got {other:?}"),
    }

    assert_eq!(store.head_position().await.expect("head"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_stream_contention_lands_once() {
    const TASKS: u32 = 200;
    let (_folder, _path, store) = open_temp_store().await;

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut expected = ExpectedRevision::NoStream;
            loop {
                let append = StreamAppend {
                    stream_id: "shared".to_owned(),
                    expected,
                    events: vec![event("Counted", &task.to_be_bytes())],
                };
                match store.append(vec![append]).await {
                    Ok(outcome) => return outcome,
                    Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                        expected = expected_after(actual);
                    }
                    Err(other) => panic!("task {task}: append failed: {other}"),
                }
            }
        });
    }
    let mut landed = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("task finished");
        assert_eq!(outcome.first_position, outcome.last_position);
        landed += 1;
    }
    assert_eq!(landed, TASKS);

    let events = store.read_stream("shared", 0).await.expect("read stream");
    let revisions: Vec<u64> = events.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (0..u64::from(TASKS)).collect::<Vec<u64>>());
    assert_eq!(last_revision(&events), Some(u64::from(TASKS) - 1));
    assert_eq!(
        positions(&events),
        (1..=u64::from(TASKS)).collect::<Vec<u64>>()
    );

    let writers: BTreeSet<Vec<u8>> = events.iter().map(|event| event.payload.clone()).collect();
    assert_eq!(
        writers.len(),
        TASKS as usize,
        "every task appended exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_groups_concurrent_appends() {
    const TASKS: usize = 64;
    let (_folder, _path, store) = open_temp_store().await;
    assert_eq!(store.commit_count(), 0);

    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let stream_id = format!("stream-{task}");
            store
                .append(vec![stream_append(
                    &stream_id,
                    ExpectedRevision::NoStream,
                    1,
                )])
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task finished").expect("append");
    }

    let commits = store.commit_count();
    assert!(commits >= 1);
    assert!(
        commits < TASKS as u64,
        "{commits} commits for {TASKS} appends: group commit did not group"
    );

    let events = read_everything(store.as_ref()).await;
    assert_eq!(positions(&events), (1..=TASKS as u64).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_checkpoint_fills_main_file() {
    const APPENDS: usize = 20;
    const EVENTS_PER_APPEND: usize = 5;
    const PAYLOAD_BYTES: usize = 2048;
    let (_folder, path, store) = open_temp_store().await;
    let size_at_open = fs::metadata(&path).expect("main file").len();

    for index in 0..APPENDS {
        let append = StreamAppend {
            stream_id: format!("stream-{index}"),
            expected: ExpectedRevision::NoStream,
            events: (0..EVENTS_PER_APPEND)
                .map(|_| event("Tested", &[7u8; PAYLOAD_BYTES]))
                .collect(),
        };
        store.append(vec![append]).await.expect("append");
    }

    // About 200 KiB of events stay far below SQLite's automatic checkpoint threshold, so only
    // the background checkpointer copies them into the main file while the store is open.
    let written = (APPENDS * EVENTS_PER_APPEND * PAYLOAD_BYTES) as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut size = size_at_open;
    while size < size_at_open + written && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        size = fs::metadata(&path).expect("main file").len();
    }
    assert!(
        size >= size_at_open + written,
        "main file grew from {size_at_open} to {size} bytes only"
    );
    assert_eq!(
        read_everything(store.as_ref()).await.len(),
        APPENDS * EVENTS_PER_APPEND
    );
}

#[tokio::test]
async fn reopen_keeps_events_and_positions() {
    let (_folder, path, store) = open_temp_store().await;
    store
        .append(vec![
            stream_append("a", ExpectedRevision::NoStream, 3),
            stream_append("b", ExpectedRevision::NoStream, 2),
        ])
        .await
        .expect("append");
    let before = read_everything(store.as_ref()).await;
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(read_everything(reopened.as_ref()).await, before);
    assert_eq!(reopened.head_position().await.expect("head"), 5);
    assert_eq!(*reopened.watch_head().borrow(), 5);

    let next = reopened
        .append(vec![stream_append("a", ExpectedRevision::Exact(2), 1)])
        .await
        .expect("append after reopen");
    assert_eq!(next.first_position, Some(6));
    assert_eq!(next.revisions, vec![("a".to_owned(), Some(3))]);
}

#[tokio::test]
async fn open_uses_wal_mode() {
    let (_folder, path, _store) = open_temp_store().await;

    let connection = rusqlite::Connection::open(&path).expect("open second connection");
    let journal_mode: String = connection
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("read journal_mode");
    assert_eq!(journal_mode, "wal");
}

#[tokio::test]
async fn read_only_copy_reads_and_rejects_appends() {
    let (_folder, path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 4)])
        .await
        .expect("append");
    let written = read_everything(store.as_ref()).await;
    drop(store);

    let copy_folder = tempfile::tempdir().expect("create copy dir");
    let copy = copy_folder.path().join("events.db");
    fs::copy(&path, &copy).expect("copy the closed file");
    let bytes_before = fs::read(&copy).expect("read copy");

    let audit = SqliteStore::open_read_only(&copy).expect("open copy read-only");
    assert_eq!(read_everything(audit.as_ref()).await, written);
    assert_eq!(audit.head_position().await.expect("head"), 4);
    assert_eq!(*audit.watch_head().borrow(), 4);
    assert_eq!(
        audit.read_stream("a", 2).await.expect("read stream").len(),
        2
    );

    let err = audit
        .append(vec![stream_append("a", ExpectedRevision::Any, 1)])
        .await
        .expect_err("append on a read-only store must fail");
    assert!(matches!(err, StoreError::Backend(_)));
    let message = err.to_string();
    assert!(message.contains("read-only"), "message: {message}");
    assert!(message.contains("events.db"), "message: {message}");
    drop(audit);

    assert_eq!(fs::read(&copy).expect("read copy again"), bytes_before);
}

#[tokio::test]
async fn read_only_copy_of_open_store_sees_wal() {
    let (_folder, path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 3)])
        .await
        .expect("append");

    // While the store is open, recent commits are only in the -wal file. Copy it with the
    // database but leave out the -shm index, as a backup of the data folder might.
    let copy_folder = tempfile::tempdir().expect("create copy dir");
    let copy = copy_folder.path().join("events.db");
    fs::copy(&path, &copy).expect("copy database");
    let wal = path.with_file_name("events.db-wal");
    fs::copy(&wal, copy.with_file_name("events.db-wal")).expect("copy WAL");

    let audit = SqliteStore::open_read_only(&copy).expect("open copy read-only");
    assert_eq!(audit.head_position().await.expect("head"), 3);
    assert_eq!(read_everything(audit.as_ref()).await.len(), 3);
}

#[tokio::test]
async fn read_only_open_missing_file_fails() {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("missing.db");

    let err = SqliteStore::open_read_only(&path)
        .err()
        .expect("missing file must fail");
    assert!(err.to_string().contains("missing.db"), "message: {err}");
    assert!(!path.exists(), "read-only open must not create the file");
}

#[tokio::test]
async fn open_rejects_non_database_file() {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("garbage.db");
    fs::write(&path, vec![0x5a; 8192]).expect("write garbage");

    let err = SqliteStore::open(&path)
        .await
        .err()
        .expect("garbage must fail");
    assert!(matches!(err, StoreError::Backend(_)));
    assert!(err.to_string().contains("garbage.db"), "message: {err}");

    let read_only = SqliteStore::open_read_only(&path)
        .err()
        .expect("garbage must fail read-only");
    assert!(
        read_only.to_string().contains("garbage.db"),
        "message: {read_only}"
    );
}

#[tokio::test]
async fn open_rejects_foreign_database() {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("foreign.db");
    let connection = rusqlite::Connection::open(&path).expect("create foreign db");
    connection
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .expect("create foreign table");
    drop(connection);

    let err = SqliteStore::open(&path)
        .await
        .err()
        .expect("foreign db must fail");
    let message = err.to_string();
    assert!(message.contains("not an event store"), "message: {message}");

    let read_only = SqliteStore::open_read_only(&path)
        .err()
        .expect("foreign db must fail read-only");
    assert!(
        read_only.to_string().contains("foreign.db"),
        "message: {read_only}"
    );
}

#[tokio::test]
async fn corrupt_metadata_fails_read() {
    let (_folder, path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 2)])
        .await
        .expect("append");

    let connection = rusqlite::Connection::open(&path).expect("open second connection");
    connection
        .execute(
            "UPDATE events SET metadata = 'not json' WHERE position = 2",
            [],
        )
        .expect("damage metadata");

    let err = store
        .read_all(0, 10)
        .await
        .expect_err("damaged row must fail");
    assert!(matches!(err, StoreError::Backend(_)));
    let message = err.to_string();
    assert!(message.contains("position 2"), "message: {message}");

    let first = store
        .read_all(0, 1)
        .await
        .expect("undamaged row still reads");
    assert_eq!(positions(&first), vec![1]);
}
