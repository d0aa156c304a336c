//! Event store: the append-only log that every other crate reads.
//!
//! The [`EventStore`] trait is the contract that both backends keep (the embedded SQLite one in
//! [`sqlite`], and later a KurrentDB one). Events are opaque bytes here: this crate never decodes
//! a payload, so it does not depend on `domain`.
//!
//! Positions are global, start at 1 and grow by one per event with no gaps, in commit order.
//! A backend makes an event visible to readers only together with every event of lower position,
//! so a reader that continues after the last position it received never skips an event.
//! Revisions are per stream and start at 0.
//!
//! Every event is also a leaf of an RFC 9162 Merkle tree ([`merkle`]), kept by the backend in the
//! same transaction as the event, and the log keeps signed checkpoints of that tree
//! ([`checkpoint`]), so that auditors can check a copy of the log without trusting the server.

pub mod checkpoint;
pub mod group;
pub mod merkle;
pub mod sqlite;
pub mod subscription;

pub use sqlite::SqliteStore;
pub use subscription::subscribe_all;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Expectation about a stream's current revision, checked before appending to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision.
    Exact(u64),
}

/// Actor and request that caused an event, stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Token id of the caller (never the token itself), or `system`.
    pub actor_id: String,
    /// Role of the caller, such as `citizen`, `verifier` or `admin`.
    pub actor_role: String,
    /// Request id, for joining log lines to events.
    pub request_id: String,
    /// Idempotency key sent by the client, if any.
    pub idempotency_key: Option<String>,
}

/// An event to append; the store assigns its position, revision and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Event type name, such as `AppointmentBooked`.
    pub event_type: String,
    /// Version of the payload schema for this event type.
    pub schema_version: u16,
    /// CBOR-encoded payload.
    pub payload: Vec<u8>,
    /// Actor and request that caused the event.
    pub metadata: Metadata,
}

/// Events for one stream inside an atomic append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// Stream id, such as `appointment-<uuid>`.
    pub stream_id: String,
    /// Revision check made before writing; the whole append fails if any check fails.
    pub expected: ExpectedRevision,
    /// Events in the order they are written; may be empty to only check the revision.
    pub events: Vec<NewEvent>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position, from 1, gap-free, in commit order.
    pub position: u64,
    /// Stream the event belongs to.
    pub stream_id: String,
    /// Revision inside the stream, from 0.
    pub revision: u64,
    /// Event type name.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u16,
    /// CBOR payload bytes, as appended.
    pub payload: Vec<u8>,
    /// Actor and request.
    pub metadata: Metadata,
    /// Time the store committed the event, in milliseconds since the Unix epoch (UTC).
    pub recorded_at_ms: i64,
}

/// Result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Position of the first event written, or `None` when nothing was written.
    pub first_position: Option<u64>,
    /// Position of the last event written, or `None` when nothing was written.
    pub last_position: Option<u64>,
    /// New revision of each stream, in the order of the request.
    pub revisions: Vec<(String, Option<u64>)>,
}

/// Failures of the store. A revision conflict is the only one a command handler retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's revision was not the expected one; nothing was written.
    #[error(
        "wrong expected revision on stream {stream_id}: expected {expected:?}, actual {actual:?}"
    )]
    WrongExpectedRevision {
        stream_id: String,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },
    /// The request itself is invalid, such as an empty stream id.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The backend failed: I/O, a corrupt file, a closed writer.
    #[error("event store backend failed: {0}")]
    Backend(String),
    /// A Merkle root or proof was requested for a tree size or leaf the log does not have.
    #[error(transparent)]
    InvalidProofRequest(#[from] merkle::ProofRequestError),
    /// A checkpoint was rejected before storing: malformed, for another origin, or with a root
    /// that differs from the log's tree. Nothing was stored.
    #[error("checkpoint rejected: {0}")]
    InvalidCheckpoint(String),
    /// The backend does not implement this operation.
    #[error("{0} is not supported by this event store backend")]
    Unsupported(&'static str),
}

/// A signed checkpoint as the log stores it. Stored checkpoints are never changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Sequence number, from 1, in the order the checkpoints were stored.
    pub id: u64,
    /// Tree size the checkpoint commits to.
    pub tree_size: u64,
    /// Root hash of that tree, as in the note.
    pub root_hash: merkle::Hash,
    /// The whole signed note, exactly as signed.
    pub note: String,
    /// Time the store saved it, in milliseconds since the Unix epoch (UTC).
    pub created_at_ms: i64,
}

/// The append-only event log contract.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends to one or more streams atomically: either every expected revision matches and every
    /// event is written, or nothing is. Events get consecutive positions in request order.
    async fn append(&self, appends: Vec<StreamAppend>) -> Result<AppendOutcome, StoreError>;

    /// Reads a stream from `from_revision` onward, in revision order. A missing stream is empty.
    async fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events with position greater than `after`, in position order.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Returns the position of the last committed event, or 0 for an empty store.
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Returns a receiver that changes to the new head position after every commit. Readers use it
    /// to wait for new events instead of polling (catch-up with `read_all`, then wait, then read).
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Returns the number of leaves in the Merkle tree, which equals the head position.
    async fn tree_size(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported("the Merkle tree"))
    }

    /// Returns the Merkle root of the first `tree_size` events; the empty root for 0. Fails
    /// with [`StoreError::InvalidProofRequest`] when the log is smaller.
    async fn root_at(&self, _tree_size: u64) -> Result<merkle::Hash, StoreError> {
        Err(StoreError::Unsupported("the Merkle tree"))
    }

    /// Returns the inclusion proof of the leaf at `leaf_index` (the event at position
    /// `leaf_index + 1`) in the tree of `tree_size` leaves, deepest hash first.
    async fn inclusion_proof(
        &self,
        _leaf_index: u64,
        _tree_size: u64,
    ) -> Result<Vec<merkle::Hash>, StoreError> {
        Err(StoreError::Unsupported("the Merkle tree"))
    }

    /// Returns the consistency proof from the tree of `size1` leaves to the tree of `size2`
    /// leaves. `size1` must be at least 1; equal sizes give an empty proof.
    async fn consistency_proof(
        &self,
        _size1: u64,
        _size2: u64,
    ) -> Result<Vec<merkle::Hash>, StoreError> {
        Err(StoreError::Unsupported("the Merkle tree"))
    }

    /// Returns the log's origin, `vaxledger/<ledger id>`, created with the log and never changed.
    async fn log_origin(&self) -> Result<String, StoreError> {
        Err(StoreError::Unsupported("signed checkpoints"))
    }

    /// Stores a signed checkpoint note after checking that its body parses, names this log's
    /// origin, and has the root of this log's tree at its size. The signature is not checked
    /// here; the caller signed it.
    async fn append_checkpoint(&self, _note: String) -> Result<StoredCheckpoint, StoreError> {
        Err(StoreError::Unsupported("signed checkpoints"))
    }

    /// Returns the checkpoint stored last, or `None` when none was stored yet.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Err(StoreError::Unsupported("signed checkpoints"))
    }

    /// Reads up to `limit` stored checkpoints with id greater than `after_id`, in id order.
    async fn read_checkpoints(
        &self,
        _after_id: u64,
        _limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        Err(StoreError::Unsupported("signed checkpoints"))
    }
}

/// Returns the stream's current revision from its events, `None` when it has none.
pub fn last_revision(events: &[RecordedEvent]) -> Option<u64> {
    events.last().map(|event| event.revision)
}

/// Turns the stream's current revision into the expectation for the next append.
pub fn expected_after(revision: Option<u64>) -> ExpectedRevision {
    match revision {
        Some(revision) => ExpectedRevision::Exact(revision),
        None => ExpectedRevision::NoStream,
    }
}

/// Checks the parts of an append that do not depend on stored state: every stream id and every
/// event type must be non-empty.
///
/// Backends call this before touching storage. The error names the offending stream append by its
/// index in the request, and the event by its index in that stream append.
pub fn validate_appends(appends: &[StreamAppend]) -> Result<(), StoreError> {
    for (append_index, append) in appends.iter().enumerate() {
        if append.stream_id.is_empty() {
            return Err(StoreError::InvalidAppend(format!(
                "stream id is empty in stream append {append_index}"
            )));
        }

        for (event_index, event) in append.events.iter().enumerate() {
            if event.event_type.is_empty() {
                return Err(StoreError::InvalidAppend(format!(
                    "event type is empty in event {event_index} of stream {}",
                    append.stream_id
                )));
            }
        }
    }

    Ok(())
}
