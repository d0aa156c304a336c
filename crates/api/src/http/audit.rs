//! The audit API under `/api/v1/audit`: signed checkpoints, the raw event feed with leaf
//! hashes, and Merkle inclusion and consistency proofs, so that an auditor can check the log
//! without trusting the server.
//!
//! Hashes are standard base64 (RFC 4648 section 4, with padding), as in the checkpoints. Leaf
//! indexes in proofs are `position - 1`. A consistency proof from size 0 is rejected, because
//! every tree extends the empty tree and such a proof would prove nothing.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{Object, OpenApi, Tags};
use store::merkle::{event_leaf_hash, Hash, ProofRequestError};
use store::{RecordedEvent, StoreError};

use super::endpoints::{authenticate, BearerAuth};
use super::problem::Problem;
use super::state::AppState;
use crate::service_db::Role;

/// Events returned per page when `limit` is not given.
const DEFAULT_PAGE_EVENTS: u32 = 100;

/// Largest `limit` accepted by the event feed.
const MAX_PAGE_EVENTS: u32 = 1000;

#[derive(Tags)]
enum AuditTags {
    /// Signed checkpoints, the event feed and Merkle proofs for auditors.
    Audit,
}

/// The `/api/v1/audit` operations.
pub struct AuditApi {
    /// Shared service state.
    pub state: Arc<AppState>,
}

/// Actor and request of one event.
#[derive(Object)]
struct AuditMetadata {
    /// Token id of the caller (never the token), or `system`.
    actor_id: String,
    /// Role of the caller.
    actor_role: String,
    /// Request id that caused the event.
    request_id: String,
    /// Idempotency key the client sent, if any.
    idempotency_key: Option<String>,
}

/// One stored event, with every field that its Merkle leaf covers.
#[derive(Object)]
struct AuditEvent {
    /// Global position, from 1; the leaf index is `position - 1`.
    position: u64,
    /// Stream the event belongs to.
    stream_id: String,
    /// Revision inside the stream, from 0.
    revision: u64,
    /// Event type name.
    event_type: String,
    /// Payload schema version.
    schema_version: u16,
    /// CBOR payload bytes in standard base64.
    payload: String,
    /// Actor and request.
    metadata: AuditMetadata,
    /// Commit time in milliseconds since the Unix epoch (UTC).
    recorded_at_ms: i64,
    /// RFC 9162 leaf hash of the event's canonical CBOR encoding, in standard base64.
    leaf_hash: String,
}

/// One page of the event feed.
#[derive(Object)]
struct AuditEventPage {
    /// Events in position order.
    events: Vec<AuditEvent>,
    /// Value of `after` for the next page: the last position in this page, or the request's
    /// `after` when the page is empty.
    next_after: u64,
    /// Tree size when the page was read; events up to it are covered by the tree.
    tree_size: u64,
}

/// Inclusion proof of one event.
#[derive(Object)]
struct InclusionProofView {
    /// Position of the event.
    position: u64,
    /// Leaf index, `position - 1`.
    leaf_index: u64,
    /// Tree size the proof is for.
    tree_size: u64,
    /// Leaf hash of the event, in standard base64.
    leaf_hash: String,
    /// Root of the tree of `tree_size` leaves, in standard base64. Compare it with a signed
    /// checkpoint of that size rather than trusting it.
    root_hash: String,
    /// Sibling hashes from the leaf up, in standard base64 (RFC 9162 section 2.1.3).
    proof: Vec<String>,
}

/// Consistency proof between two tree sizes.
#[derive(Object)]
struct ConsistencyProofView {
    /// Earlier tree size, at least 1.
    from: u64,
    /// Later tree size.
    to: u64,
    /// Root of the earlier tree, in standard base64.
    from_root: String,
    /// Root of the later tree, in standard base64.
    to_root: String,
    /// Proof hashes in standard base64 (RFC 9162 section 2.1.4); empty when the sizes are equal.
    proof: Vec<String>,
}

#[OpenApi(tag = "AuditTags::Audit")]
impl AuditApi {
    /// Returns the latest signed checkpoint as a C2SP signed note (public).
    #[oai(path = "/audit/checkpoint", method = "get")]
    async fn latest_checkpoint(&self) -> poem::Result<PlainText<String>> {
        let latest = self.state.audit.latest_checkpoint().await.map_err(store_problem)?;
        let checkpoint = latest.ok_or_else(|| {
            Problem::not_found(
                "checkpoint",
                "no checkpoint has been signed yet; POST /api/v1/audit/checkpoint as auditor or admin to sign one",
            )
        })?;
        Ok(PlainText(checkpoint.note))
    }

    /// Signs a checkpoint of the log as it is now and returns it (auditor or admin).
    #[oai(path = "/audit/checkpoint", method = "post")]
    async fn sign_checkpoint(&self, auth: BearerAuth, request: &Request) -> poem::Result<PlainText<String>> {
        let actor = authenticate(&self.state, &auth, request, &[Role::Auditor, Role::Admin])?;

        let checkpoint = self.state.audit.sign_checkpoint().await.map_err(store_problem)?;

        tracing::info!(
            checkpoint_id = checkpoint.id,
            tree_size = checkpoint.tree_size,
            token_id = %actor.token_id,
            request_id = %actor.request_id,
            "checkpoint signed on request"
        );
        Ok(PlainText(checkpoint.note))
    }

    /// Returns stored events after a position, with their leaf hashes (auditor).
    #[oai(path = "/audit/events", method = "get")]
    async fn events(
        &self,
        auth: BearerAuth,
        request: &Request,
        /// Return events with a position above this one; 0 (the default) starts at the first.
        after: Query<Option<u64>>,
        /// Number of events per page, 1 to 1000; default 100.
        limit: Query<Option<u32>>,
    ) -> poem::Result<Json<AuditEventPage>> {
        authenticate(&self.state, &auth, request, &[Role::Auditor])?;
        let after = after.0.unwrap_or(0);
        let limit = limit.0.unwrap_or(DEFAULT_PAGE_EVENTS);
        if !(1..=MAX_PAGE_EVENTS).contains(&limit) {
            return Err(Problem::invalid("limit", format!("limit must be 1 to {MAX_PAGE_EVENTS}, got {limit}")).into());
        }

        let store = &self.state.ledger.store;
        let tree_size = store.tree_size().await.map_err(store_problem)?;
        let events = store.read_all(after, limit as usize).await.map_err(store_problem)?;

        let next_after = events.last().map_or(after, |event| event.position);
        Ok(Json(AuditEventPage {
            events: events.into_iter().map(audit_event).collect(),
            next_after,
            tree_size,
        }))
    }

    /// Returns the inclusion proof of the event at a position in a tree size (auditor).
    #[oai(path = "/audit/proofs/inclusion", method = "get")]
    async fn inclusion_proof(
        &self,
        auth: BearerAuth,
        request: &Request,
        /// Position of the event, from 1.
        position: Query<Option<u64>>,
        /// Tree size of the proof, such as a signed checkpoint's; default the current size.
        tree_size: Query<Option<u64>>,
    ) -> poem::Result<Json<InclusionProofView>> {
        authenticate(&self.state, &auth, request, &[Role::Auditor])?;
        let store = &self.state.ledger.store;

        let position = match position.0 {
            Some(position) if position >= 1 => position,
            Some(_) => return Err(Problem::invalid("position", "position must be 1 or more; positions start at 1").into()),
            None => return Err(Problem::invalid("position", "position is required, such as position=1").into()),
        };
        let tree_size = match tree_size.0 {
            Some(tree_size) => tree_size,
            None => store.tree_size().await.map_err(store_problem)?,
        };
        if position > tree_size {
            return Err(Problem::invalid(
                "position",
                format!("position {position} is not inside a tree of size {tree_size}; ask for a tree_size of at least {position}"),
            )
            .into());
        }

        let leaf_index = position - 1;
        let proof = store
            .inclusion_proof(leaf_index, tree_size)
            .await
            .map_err(|err| proof_problem(err, "tree_size", "position"))?;
        let root = store.root_at(tree_size).await.map_err(|err| proof_problem(err, "tree_size", "position"))?;
        let event = store.read_all(leaf_index, 1).await.map_err(store_problem)?;
        let event = event.first().ok_or_else(|| {
            tracing::error!(position, "event inside the tree is missing from the log");
            Problem::internal()
        })?;

        Ok(Json(InclusionProofView {
            position,
            leaf_index,
            tree_size,
            leaf_hash: BASE64.encode(event_leaf_hash(event)),
            root_hash: BASE64.encode(root),
            proof: encode_hashes(&proof),
        }))
    }

    /// Returns the consistency proof between two tree sizes (auditor).
    #[oai(path = "/audit/proofs/consistency", method = "get")]
    async fn consistency_proof(
        &self,
        auth: BearerAuth,
        request: &Request,
        /// Earlier tree size, at least 1.
        from: Query<Option<u64>>,
        /// Later tree size, at least `from`.
        to: Query<Option<u64>>,
    ) -> poem::Result<Json<ConsistencyProofView>> {
        authenticate(&self.state, &auth, request, &[Role::Auditor])?;
        let store = &self.state.ledger.store;

        let from = match from.0 {
            Some(0) => {
                return Err(Problem::invalid(
                    "from",
                    "from must be 1 or more: a consistency proof from the empty tree proves nothing",
                )
                .into())
            }
            Some(from) => from,
            None => return Err(Problem::invalid("from", "from is required, such as from=1").into()),
        };
        let Some(to) = to.0 else {
            return Err(Problem::invalid("to", "to is required, such as to=2").into());
        };
        if from > to {
            return Err(Problem::invalid("from", format!("from {from} is greater than to {to}")).into());
        }

        let proof = store.consistency_proof(from, to).await.map_err(|err| proof_problem(err, "to", "from"))?;
        let from_root = store.root_at(from).await.map_err(|err| proof_problem(err, "from", "from"))?;
        let to_root = store.root_at(to).await.map_err(|err| proof_problem(err, "to", "from"))?;

        Ok(Json(ConsistencyProofView {
            from,
            to,
            from_root: BASE64.encode(from_root),
            to_root: BASE64.encode(to_root),
            proof: encode_hashes(&proof),
        }))
    }
}

/// Converts a stored event to its feed entry.
fn audit_event(event: RecordedEvent) -> AuditEvent {
    let leaf_hash = BASE64.encode(event_leaf_hash(&event));
    AuditEvent {
        position: event.position,
        stream_id: event.stream_id,
        revision: event.revision,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: BASE64.encode(&event.payload),
        metadata: AuditMetadata {
            actor_id: event.metadata.actor_id,
            actor_role: event.metadata.actor_role,
            request_id: event.metadata.request_id,
            idempotency_key: event.metadata.idempotency_key,
        },
        recorded_at_ms: event.recorded_at_ms,
        leaf_hash,
    }
}

/// Encodes proof hashes in standard base64.
fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|hash| BASE64.encode(hash)).collect()
}

/// Maps a proof request error to a problem: a size beyond the log is 404 on `size_field`, any
/// other range error is 400 on `other_field`, and a store failure is 500.
fn proof_problem(err: StoreError, size_field: &str, other_field: &str) -> Problem {
    match err {
        StoreError::InvalidProofRequest(ProofRequestError::TreeSizeBeyondLog { tree_size, log_size }) => Problem::not_found(
            size_field,
            format!("tree size {tree_size} is beyond the log, which has {log_size} events; ask for {log_size} or less"),
        ),
        StoreError::InvalidProofRequest(range @ ProofRequestError::LeafIndexOutOfRange { .. })
        | StoreError::InvalidProofRequest(range @ ProofRequestError::SizesOutOfOrder { .. })
        | StoreError::InvalidProofRequest(range @ ProofRequestError::ConsistencyFromEmptyTree) => {
            Problem::invalid(other_field, range.to_string())
        }
        other => store_problem(other),
    }
}

/// Logs a store failure and hides it behind a 500 problem.
fn store_problem(err: StoreError) -> Problem {
    tracing::error!(cause = %err, "audit request failed in the event store");
    Problem::internal()
}
