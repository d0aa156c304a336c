//! Application service: loads aggregates from their streams, gets a decision from the domain,
//! and appends the resulting events with optimistic concurrency, retrying on conflict.
//!
//! HTTP handlers call this; it does not use HTTP. Every append carries the actor's token id,
//! role and the request id, never a token or code.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use domain::appointment::Appointment;
use domain::beneficiary::Beneficiary;
use domain::centre::Centre;
use domain::code::ServerKey;
use domain::mobile::Mobile;
use domain::session::Session;
use domain::vaccine::VaccineCatalogue;
use domain::{Decision, Event, Rejection};
use projections::Projections;
use store::{AppendOutcome, EventStore, ExpectedRevision, Metadata, NewEvent, StoreError, StreamAppend};
use tracing::{error, warn};

use crate::service_db::{Role, ServiceDb};

/// Attempts of one command before a persistent revision conflict is reported.
const MAX_CONFLICT_RETRIES: usize = 50;

/// India Standard Time, UTC+05:30: session dates are calendar dates in this zone.
pub fn india_offset() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("+05:30 is a valid offset")
}

/// Returns today's date in India.
pub fn today_in_india(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&india_offset()).date_naive()
}

/// Caller of a command, as recorded in event metadata.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Token id (never the token).
    pub token_id: String,
    /// Role of the token.
    pub role: Role,
    /// Centre the token is scoped to.
    pub centre_id: Option<String>,
    /// Citizen's mobile hash.
    pub mobile_hash: Option<String>,
    /// Request id for log correlation.
    pub request_id: String,
    /// Client's idempotency key, if sent.
    pub idempotency_key: Option<String>,
}

impl Actor {
    /// Returns the actor for events the server records on its own behalf.
    pub fn system(request_id: &str) -> Self {
        Self {
            token_id: "system".into(),
            role: Role::Admin,
            centre_id: None,
            mobile_hash: None,
            request_id: request_id.into(),
            idempotency_key: None,
        }
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            actor_id: self.token_id.clone(),
            actor_role: self.role.as_str().into(),
            request_id: self.request_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// Failures of a command.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A domain rule rejected the command (user error).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The actor may not act on this entity (another citizen's beneficiary, another centre).
    #[error("{0}")]
    Forbidden(String),
    /// The store failed or conflicts did not settle (technical error).
    #[error("event store failed: {0}")]
    Store(#[from] StoreError),
    /// Another technical failure, already logged.
    #[error("{0}")]
    Internal(String),
}

/// Aggregates that fold events of one stream.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// Folds one event into the state.
    fn apply_event(&mut self, event: &Event);
}

macro_rules! aggregate {
    ($($type:ty),*) => {
        $(impl Aggregate for $type {
            fn apply_event(&mut self, event: &Event) {
                self.apply(event)
            }
        })*
    };
}
aggregate!(Appointment, Beneficiary, Centre, Mobile, Session);

/// Streams read for one decision, with the revision each was read at.
#[derive(Default)]
pub struct ReadSet {
    /// Revision of each stream read, `None` for a stream with no events.
    revisions: HashMap<String, Option<u64>>,
}

/// The ledger's application service.
pub struct Ledger {
    /// Event log.
    pub store: Arc<dyn EventStore>,
    /// Status read models.
    pub projections: Arc<Projections>,
    /// Key for security-code and mobile hashes.
    pub server_key: ServerKey,
    /// Vaccines and their intervals.
    pub catalogue: VaccineCatalogue,
    /// Tokens, OTPs, contacts and the outbox.
    pub service: Arc<ServiceDb>,
    /// Recently loaded aggregates, so that a load reads only the events appended since.
    pub aggregates: AggregateCache,
}

/// Maximum number of aggregates kept; the cache is emptied when it is full, which bounds its
/// memory whatever the length of the history.
const MAX_CACHED_AGGREGATES: usize = 100_000;

/// Aggregates by stream id, each with the revision of the last event folded into it.
///
/// A load starts from the cached state and reads only the events after its revision, so a
/// session stream with hundreds of bookings is not read from its start for every booking. The
/// log stays the only source: a cached state is always brought up to the stream's end before use.
#[derive(Default)]
pub struct AggregateCache {
    /// Stream id to (revision, state); the state's type is the aggregate type of the stream.
    entries: Mutex<HashMap<String, (u64, Arc<dyn Any + Send + Sync>)>>,
}

impl AggregateCache {
    /// Returns a copy of the cached state of a stream and its revision, if any.
    fn get<A: Aggregate>(&self, stream_id: &str) -> Option<(u64, A)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (revision, state) = entries.get(stream_id)?;
        let state = state.downcast_ref::<A>()?;
        Some((*revision, state.clone()))
    }

    /// Keeps the state of a stream folded up to `revision`.
    fn put<A: Aggregate>(&self, stream_id: &str, revision: u64, state: A) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_AGGREGATES {
            entries.clear();
        }
        entries.insert(stream_id.to_owned(), (revision, Arc::new(state)));
    }
}

impl Ledger {
    /// Loads an aggregate and records its revision in the read set.
    pub async fn load<A: Aggregate>(&self, stream_id: &str, reads: &mut ReadSet) -> Result<A, LedgerError> {
        let (mut revision, mut aggregate) = match self.aggregates.get::<A>(stream_id) {
            Some((revision, state)) => (Some(revision), state),
            None => (None, A::default()),
        };

        let from_revision = revision.map_or(0, |revision| revision + 1);
        let recorded = self.store.read_stream(stream_id, from_revision).await?;
        for event in &recorded {
            let decoded = Event::decode(&event.event_type, event.schema_version, &event.payload).map_err(|err| {
                error!(cause = %err, stream_id, position = event.position, "stored event could not be decoded");
                LedgerError::Internal(format!("stored event at position {} could not be decoded", event.position))
            })?;
            aggregate.apply_event(&decoded);
        }

        if let Some(last) = store::last_revision(&recorded) {
            revision = Some(last);
            self.aggregates.put(stream_id, last, aggregate.clone());
        }
        reads.revisions.insert(stream_id.to_owned(), revision);
        Ok(aggregate)
    }

    /// Appends events grouped by stream, each stream checked against the revision it was read at.
    pub async fn append(&self, events: &[Event], reads: &ReadSet, actor: &Actor) -> Result<AppendOutcome, StoreError> {
        let metadata = actor.metadata();
        let mut appends: Vec<StreamAppend> = Vec::new();
        for event in events {
            let stream_id = event.stream_id();
            let new_event = NewEvent {
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.encode(),
                metadata: metadata.clone(),
            };
            match appends.iter_mut().find(|append| append.stream_id == stream_id) {
                Some(append) => append.events.push(new_event),
                None => {
                    let expected = match reads.revisions.get(&stream_id) {
                        Some(revision) => store::expected_after(*revision),
                        None => ExpectedRevision::Any,
                    };
                    appends.push(StreamAppend { stream_id, expected, events: vec![new_event] });
                }
            }
        }
        self.store.append(appends).await
    }

    /// Appends a decision's events. Returns `Ok(None)` on a revision conflict, so the caller
    /// reloads and decides again; [`MAX_CONFLICT_RETRIES`] bounds those rounds.
    pub async fn try_commit(
        &self,
        decision: &Decision,
        reads: &ReadSet,
        actor: &Actor,
        attempt: usize,
    ) -> Result<Option<AppendOutcome>, LedgerError> {
        match self.append(decision.events(), reads, actor).await {
            Ok(outcome) => Ok(Some(outcome)),
            Err(StoreError::WrongExpectedRevision { stream_id, .. }) => {
                if attempt + 1 >= MAX_CONFLICT_RETRIES {
                    error!(stream_id, request_id = %actor.request_id, "revision conflicts did not settle");
                    return Err(LedgerError::Internal("too many concurrent changes; retry the request".into()));
                }
                if attempt > 0 && attempt % 10 == 0 {
                    warn!(stream_id, attempt, request_id = %actor.request_id, "revision conflicts persist; retrying");
                }
                tokio::task::yield_now().await;
                Ok(None)
            }
            Err(err) => {
                error!(cause = %err, request_id = %actor.request_id, "append failed");
                Err(err.into())
            }
        }
    }
}
