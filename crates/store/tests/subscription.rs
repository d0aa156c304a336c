//! Tests of `subscribe_all` against the SQLite event store.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{open_temp_store, stream_append};
use store::{subscribe_all, EventStore, ExpectedRevision, RecordedEvent, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Maximum wait for one event before a test fails instead of hanging.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

async fn receive(
    receiver: &mut mpsc::Receiver<Result<RecordedEvent, StoreError>>,
) -> RecordedEvent {
    timeout(EVENT_TIMEOUT, receiver.recv())
        .await
        .expect("event arrives in time")
        .expect("subscription still open")
        .expect("event read without error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_all_catches_up_then_follows_writers() {
    const STORED: u64 = 600;
    const WRITERS: usize = 8;
    const EVENTS_PER_WRITER: u64 = 25;
    let (_folder, _path, store) = open_temp_store().await;

    // More than two pages of stored events, so catch-up crosses page boundaries.
    for batch in 0..6 {
        let stream_id = format!("stored-{batch}");
        store
            .append(vec![stream_append(
                &stream_id,
                ExpectedRevision::NoStream,
                100,
            )])
            .await
            .expect("store events");
    }

    let mut receiver = subscribe_all(store.clone(), 0);

    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            let stream_id = format!("live-{writer}");
            for _ in 0..EVENTS_PER_WRITER {
                store
                    .append(vec![stream_append(&stream_id, ExpectedRevision::Any, 1)])
                    .await
                    .expect("live append");
            }
        });
    }

    let total = STORED + WRITERS as u64 * EVENTS_PER_WRITER;
    let mut next_revision: HashMap<String, u64> = HashMap::new();
    for expected_position in 1..=total {
        let event = receive(&mut receiver).await;
        assert_eq!(
            event.position, expected_position,
            "positions arrive in order without gaps"
        );

        let revision = next_revision.entry(event.stream_id.clone()).or_insert(0);
        assert_eq!(
            event.revision, *revision,
            "stream {} in revision order",
            event.stream_id
        );
        *revision += 1;
    }

    while let Some(joined) = writers.join_next().await {
        joined.expect("writer finished");
    }
    let extra = timeout(Duration::from_millis(200), receiver.recv()).await;
    assert!(extra.is_err(), "no event beyond the head: {extra:?}");
}

#[tokio::test]
async fn subscribe_all_starts_after_position() {
    let (_folder, _path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 50)])
        .await
        .expect("store events");

    let mut receiver = subscribe_all(store.clone(), 30);
    let first = receive(&mut receiver).await;
    assert_eq!(first.position, 31);
    assert_eq!(first.revision, 30);

    for expected_position in 32..=50 {
        assert_eq!(receive(&mut receiver).await.position, expected_position);
    }

    store
        .append(vec![stream_append("b", ExpectedRevision::NoStream, 1)])
        .await
        .expect("live append");
    let live = receive(&mut receiver).await;
    assert_eq!(live.position, 51);
    assert_eq!(live.stream_id, "b");
}

#[tokio::test]
async fn subscribe_all_stops_when_receiver_dropped() {
    let (_folder, _path, store) = open_temp_store().await;
    let receiver = subscribe_all(store.clone(), 0);
    assert_eq!(
        Arc::strong_count(&store),
        2,
        "the subscription task holds the store"
    );

    drop(receiver);

    let released = timeout(Duration::from_secs(5), async {
        while Arc::strong_count(&store) > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "subscription task still holds the store");
}

#[tokio::test]
async fn subscribe_all_ends_after_read_error() {
    let (_folder, path, store) = open_temp_store().await;
    store
        .append(vec![stream_append("a", ExpectedRevision::NoStream, 3)])
        .await
        .expect("store events");
    let connection = rusqlite::Connection::open(&path).expect("open second connection");
    connection
        .execute(
            "UPDATE events SET metadata = 'not json' WHERE position = 2",
            [],
        )
        .expect("damage metadata");

    let mut receiver = subscribe_all(store.clone(), 0);
    let failure = timeout(EVENT_TIMEOUT, receiver.recv())
        .await
        .expect("item arrives in time")
        .expect("error is sent before the end");
    assert!(matches!(failure, Err(StoreError::Backend(_))));

    let end = timeout(EVENT_TIMEOUT, receiver.recv())
        .await
        .expect("end arrives in time");
    assert!(end.is_none(), "subscription ends after the error");

    let head = store.head_position().await.expect("head");
    assert_eq!(head, 3);
}
