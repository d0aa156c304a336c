//! Canonical leaf encoding of a stored event.
//!
//! The leaf bytes are one CBOR array (RFC 8949) with definite lengths and every integer in its
//! shortest form, which is the deterministic encoding of RFC 8949 section 4.2.1. The fields are
//! in this fixed order:
//!
//! ```text
//! [ 1,                    ; leaf format version (LEAF_FORMAT_VERSION)
//!   position,             ; unsigned integer, from 1
//!   stream_id,            ; text string
//!   revision,             ; unsigned integer, from 0
//!   event_type,           ; text string
//!   schema_version,       ; unsigned integer
//!   payload,              ; byte string, the stored payload bytes unchanged
//!   [ actor_id,           ; text string
//!     actor_role,         ; text string
//!     request_id,         ; text string
//!     idempotency_key ],  ; text string, or null when the request had none
//!   recorded_at_ms ]      ; integer, milliseconds since the Unix epoch (UTC)
//! ```
//!
//! Every field of [`RecordedEvent`] is in the leaf, so changing any stored byte of an event
//! changes its leaf hash.

use ciborium::value::Value;

use super::{leaf_hash, Hash};
use crate::{Metadata, RecordedEvent};

/// Version of the leaf encoding, the first element of every leaf array.
pub const LEAF_FORMAT_VERSION: u64 = 1;

/// Borrowed fields of one event, so that the writer can encode a leaf without building a
/// [`RecordedEvent`] first.
pub(crate) struct LeafFields<'a> {
    /// Global position, from 1.
    pub(crate) position: u64,
    /// Stream the event belongs to.
    pub(crate) stream_id: &'a str,
    /// Revision inside the stream.
    pub(crate) revision: u64,
    /// Event type name.
    pub(crate) event_type: &'a str,
    /// Payload schema version.
    pub(crate) schema_version: u16,
    /// Payload bytes as stored.
    pub(crate) payload: &'a [u8],
    /// Actor and request.
    pub(crate) metadata: &'a Metadata,
    /// Commit time in milliseconds since the Unix epoch.
    pub(crate) recorded_at_ms: i64,
}

/// Encodes a stored event as its leaf bytes (the CBOR array described in this module's docs).
pub fn leaf_bytes(event: &RecordedEvent) -> Vec<u8> {
    encode_leaf(&LeafFields {
        position: event.position,
        stream_id: &event.stream_id,
        revision: event.revision,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: &event.payload,
        metadata: &event.metadata,
        recorded_at_ms: event.recorded_at_ms,
    })
}

/// Returns the leaf hash of a stored event: SHA-256(0x00 || leaf_bytes(event)).
pub fn event_leaf_hash(event: &RecordedEvent) -> Hash {
    leaf_hash(&leaf_bytes(event))
}

/// Encodes the leaf bytes from borrowed fields.
pub(crate) fn encode_leaf(fields: &LeafFields<'_>) -> Vec<u8> {
    let metadata = fields.metadata;
    let idempotency_key = match &metadata.idempotency_key {
        Some(key) => Value::Text(key.clone()),
        None => Value::Null,
    };

    let leaf = Value::Array(vec![
        Value::Integer(LEAF_FORMAT_VERSION.into()),
        Value::Integer(fields.position.into()),
        Value::Text(fields.stream_id.to_owned()),
        Value::Integer(fields.revision.into()),
        Value::Text(fields.event_type.to_owned()),
        Value::Integer(fields.schema_version.into()),
        Value::Bytes(fields.payload.to_vec()),
        Value::Array(vec![
            Value::Text(metadata.actor_id.clone()),
            Value::Text(metadata.actor_role.clone()),
            Value::Text(metadata.request_id.clone()),
            idempotency_key,
        ]),
        Value::Integer(fields.recorded_at_ms.into()),
    ]);

    let mut bytes = Vec::with_capacity(64 + fields.payload.len());
    // ciborium fails only when the writer fails or a Serialize impl reports an error. Writing
    // to a Vec never returns an error, and Value's Serialize impl never reports one.
    ciborium::into_writer(&leaf, &mut bytes).expect("encoding a CBOR value into a Vec cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event() -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream_id: "s".to_owned(),
            revision: 0,
            event_type: "T".to_owned(),
            schema_version: 1,
            payload: vec![0xAA],
            metadata: Metadata {
                actor_id: "a".to_owned(),
                actor_role: "r".to_owned(),
                request_id: "q".to_owned(),
                idempotency_key: None,
            },
            recorded_at_ms: 1000,
        }
    }

    #[test]
    fn leaf_bytes_exact_encoding() {
        let expected = [
            0x89, // array of 9
            0x01, // format version 1
            0x01, // position 1
            0x61, b's', // stream id
            0x00, // revision 0
            0x61, b'T', // event type
            0x01, // schema version 1
            0x41, 0xAA, // payload, byte string of 1
            0x84, 0x61, b'a', 0x61, b'r', 0x61, b'q', 0xF6, // metadata, null key
            0x19, 0x03, 0xE8, // recorded_at_ms 1000 as a 2-byte integer
        ];
        assert_eq!(leaf_bytes(&sample_event()), expected);
    }

    /// A named change to one field of an event.
    type FieldChange = (&'static str, Box<dyn Fn(&mut RecordedEvent)>);

    #[test]
    fn every_field_changes_the_leaf() {
        let base = leaf_bytes(&sample_event());
        let changes: Vec<FieldChange> = vec![
            ("position", Box::new(|e| e.position = 2)),
            ("stream_id", Box::new(|e| e.stream_id = "t".to_owned())),
            ("revision", Box::new(|e| e.revision = 1)),
            ("event_type", Box::new(|e| e.event_type = "U".to_owned())),
            ("schema_version", Box::new(|e| e.schema_version = 2)),
            ("payload", Box::new(|e| e.payload = vec![0xAB])),
            (
                "actor_id",
                Box::new(|e| e.metadata.actor_id = "b".to_owned()),
            ),
            (
                "actor_role",
                Box::new(|e| e.metadata.actor_role = "s".to_owned()),
            ),
            (
                "request_id",
                Box::new(|e| e.metadata.request_id = "x".to_owned()),
            ),
            (
                "idempotency_key",
                Box::new(|e| e.metadata.idempotency_key = Some(String::new())),
            ),
            ("recorded_at_ms", Box::new(|e| e.recorded_at_ms = 1001)),
        ];
        for (field, change) in changes {
            let mut event = sample_event();
            change(&mut event);
            assert_ne!(
                leaf_bytes(&event),
                base,
                "changing {field} kept the leaf bytes"
            );
        }
    }

    #[test]
    fn negative_time_encodes() {
        let mut event = sample_event();
        event.recorded_at_ms = -1;
        let bytes = leaf_bytes(&event);
        assert_eq!(
            bytes.last(),
            Some(&0x20),
            "-1 is CBOR major type 1, value 0"
        );
    }
}
