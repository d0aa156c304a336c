//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use store::{
    EventStore, ExpectedRevision, Metadata, NewEvent, RecordedEvent, SqliteStore, StreamAppend,
};
use tempfile::TempDir;

/// Builds an event whose payload is `payload` and whose metadata names a test actor.
pub fn event(event_type: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
        metadata: Metadata {
            actor_id: "tester".to_owned(),
            actor_role: "admin".to_owned(),
            request_id: "request-1".to_owned(),
            idempotency_key: Some("key-1".to_owned()),
        },
    }
}

/// Builds a stream append of `count` events, numbered in their payloads.
pub fn stream_append(stream_id: &str, expected: ExpectedRevision, count: usize) -> StreamAppend {
    StreamAppend {
        stream_id: stream_id.to_owned(),
        expected,
        events: (0..count)
            .map(|index| event("Tested", index.to_string().as_bytes()))
            .collect(),
    }
}

/// Opens a new store in a fresh temp folder. The folder is removed when the `TempDir` drops.
pub async fn open_temp_store() -> (TempDir, PathBuf, Arc<SqliteStore>) {
    let folder = tempfile::tempdir().expect("create temp dir");
    let path = folder.path().join("events.db");
    let store = SqliteStore::open(&path).await.expect("open store");
    (folder, path, store)
}

/// Reads every event of the store.
pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX).await.expect("read all")
}

/// Returns the positions of `events`.
pub fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position).collect()
}
