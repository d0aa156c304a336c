//! Projections over the real SQLite store: checkpoint persistence, resume after reopen, rebuild.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use domain::ids::{CentreId, SessionId};
use domain::Event;
use projections::Projections;
use store::{EventStore, ExpectedRevision, Metadata, NewEvent, SqliteStore, StreamAppend};
use uuid::Uuid;

fn append_of(event: &Event) -> StreamAppend {
    StreamAppend {
        stream_id: event.stream_id(),
        expected: ExpectedRevision::Any,
        events: vec![NewEvent {
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            payload: event.encode(),
            metadata: Metadata::default(),
        }],
    }
}

async fn schedule(store: &Arc<SqliteStore>, capacity: u32) -> SessionId {
    let centre_id = CentreId::new(Uuid::new_v4());
    let session_id = SessionId::new(Uuid::new_v4());
    let events = [
        Event::CentreRegistered { centre_id, name: "PHC".into(), district: "Pune".into(), state: "MH".into(), pincode: "411001".into() },
        Event::SessionScheduled {
            session_id,
            centre_id,
            district: "Pune".into(),
            date: NaiveDate::from_ymd_opt(2021, 5, 10).unwrap(),
            vaccine: "COVAXIN".into(),
            capacity,
            min_age: 18,
        },
    ];
    store.append(events.iter().map(append_of).collect()).await.unwrap();
    session_id
}

async fn reserve(store: &Arc<SqliteStore>, session_id: SessionId) {
    let event = Event::SeatReserved { session_id, appointment_id: domain::ids::AppointmentId::new(Uuid::new_v4()) };
    store.append(vec![append_of(&event)]).await.unwrap();
}

#[tokio::test]
async fn projector_resumes_from_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db")).await.unwrap();
    let session_id = schedule(&store, 10).await;
    reserve(&store, session_id).await;

    let projections = Projections::open(&dir.path().join("projections.db")).unwrap();
    let task = tokio::spawn(Arc::clone(&projections).run(store.clone() as Arc<dyn EventStore>));
    projections.wait_for(3, Duration::from_secs(5)).await.unwrap();
    task.abort();
    let _ = task.await;
    drop(projections);

    reserve(&store, session_id).await;
    let reopened = Projections::open(&dir.path().join("projections.db")).unwrap();
    assert_eq!(reopened.checkpoint(), 3);
    let task = tokio::spawn(Arc::clone(&reopened).run(store.clone() as Arc<dyn EventStore>));
    reopened.wait_for(4, Duration::from_secs(5)).await.unwrap();
    let session = reopened.session(&session_id.to_string()).unwrap().unwrap();
    assert_eq!(session.booked, 2, "each reservation counted exactly once across the restart");
    assert_eq!(session.available, 8);
    task.abort();
}

#[tokio::test]
async fn reset_rebuilds_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db")).await.unwrap();
    let session_id = schedule(&store, 5).await;
    for _ in 0..3 {
        reserve(&store, session_id).await;
    }
    let projections = Projections::open(&dir.path().join("projections.db")).unwrap();
    let events = store.read_all(0, 100).await.unwrap();
    projections.apply_batch(&events).unwrap();
    let before = projections.session(&session_id.to_string()).unwrap();

    projections.reset().unwrap();
    assert_eq!(projections.checkpoint(), 0);
    assert!(projections.session(&session_id.to_string()).unwrap().is_none());
    projections.apply_batch(&events).unwrap();
    assert_eq!(projections.session(&session_id.to_string()).unwrap(), before);
}

#[tokio::test]
async fn batch_read_twice_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db")).await.unwrap();
    let session_id = schedule(&store, 5).await;
    reserve(&store, session_id).await;
    let projections = Projections::open(&dir.path().join("projections.db")).unwrap();
    let events = store.read_all(0, 100).await.unwrap();
    projections.apply_batch(&events).unwrap();
    projections.apply_batch(&events).unwrap();
    assert_eq!(projections.session(&session_id.to_string()).unwrap().unwrap().booked, 1);
}
