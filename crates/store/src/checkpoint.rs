//! Signed checkpoints of the Merkle log: C2SP tlog-checkpoint bodies inside C2SP signed notes.
//!
//! A checkpoint body is three lines, each ending with a newline: the log's origin (vaxledger
//! uses `vaxledger/<ledger id>`), the tree size in decimal, and the root hash in standard
//! base64. Optional extension lines may follow; vaxledger writes none and keeps any it reads.
//! The body is the text of a signed note (see [`note`]) signed with the audit key, whose key
//! name is the origin:
//!
//! ```text
//! vaxledger/<32 hex digits of the ledger id>
//! <tree size>
//! <base64 root hash>
//!
//! — vaxledger/<32 hex digits of the ledger id> <base64(key hash || signature)>
//! ```
//!
//! Nothing here does I/O.

pub mod note;

pub use note::{
    is_valid_key_name, key_hash, parse_note, KeyError, NoteError, NoteSignature, NoteSigner,
    SignedNote, VerifierKey,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::merkle::Hash;

/// Prefix of every vaxledger origin line; the ledger id follows it.
pub const ORIGIN_PREFIX: &str = "vaxledger/";

/// A checkpoint body: the log's origin, a tree size and the root of that tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Origin line that names the log, such as `vaxledger/<ledger id>`.
    pub origin: String,
    /// Number of leaves (events) in the tree.
    pub tree_size: u64,
    /// Root hash of the first `tree_size` leaves.
    pub root_hash: Hash,
    /// Extension lines after the root, without their newlines; empty for vaxledger's own.
    pub extensions: Vec<String>,
}

/// A checkpoint that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed-note framing is wrong.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The note text is not a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// The note has no signature by the verifier key given.
    #[error("the checkpoint has no signature by key {name}+{key_hash:08x}")]
    UnknownKey {
        /// Name of the verifier key.
        name: String,
        /// Hash of the verifier key.
        key_hash: u32,
    },
    /// The signature by the verifier key does not verify.
    #[error("the checkpoint's signature by key {name}+{key_hash:08x} does not verify")]
    BadSignature {
        /// Name of the verifier key.
        name: String,
        /// Hash of the verifier key.
        key_hash: u32,
    },
}

impl From<NoteError> for CheckpointError {
    fn from(err: NoteError) -> CheckpointError {
        match err {
            NoteError::Malformed(reason) => CheckpointError::MalformedNote(reason),
            NoteError::UnknownKey { name, key_hash } => {
                CheckpointError::UnknownKey { name, key_hash }
            }
            NoteError::BadSignature { name, key_hash } => {
                CheckpointError::BadSignature { name, key_hash }
            }
        }
    }
}

impl Checkpoint {
    /// Creates a checkpoint with no extension lines.
    pub fn new(origin: &str, tree_size: u64, root_hash: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
            extensions: Vec::new(),
        }
    }

    /// Returns the body text that gets signed: origin, size, base64 root and any extension
    /// lines, each followed by a newline.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body (a signed note's text).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |reason: String| CheckpointError::MalformedCheckpoint(reason);

        let Some(text) = text.strip_suffix('\n') else {
            return Err(malformed("the body does not end with a newline".to_owned()));
        };
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(malformed(
                "expected at least three lines: origin, tree size and root hash".to_owned(),
            ));
        };

        if origin.is_empty() {
            return Err(malformed("the origin line is empty".to_owned()));
        }
        let tree_size = parse_tree_size(size).ok_or_else(|| {
            malformed(format!(
                "the tree size line {size:?} is not a decimal number without leading zeros"
            ))
        })?;
        let root_hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| malformed("the root hash line is not base64 of 32 bytes".to_owned()))?;

        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("an extension line is empty".to_owned()));
        }

        Ok(Checkpoint {
            origin: origin.to_owned(),
            tree_size,
            root_hash,
            extensions,
        })
    }

    /// Signs the body and returns the signed checkpoint note.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(signer.sign_note(&self.body())?)
    }
}

/// Parses a signed checkpoint without checking any signature: the note framing and the body.
pub fn parse_checkpoint(note_text: &str) -> Result<(Checkpoint, SignedNote), CheckpointError> {
    let note = parse_note(note_text)?;
    let checkpoint = Checkpoint::parse_body(&note.text)?;
    Ok((checkpoint, note))
}

/// Verifies a signed checkpoint's signature by `verifier_key` and returns its body.
///
/// Signatures by other keys are ignored. The caller still compares the origin with the log it
/// expects, and the root with its own recomputation or a proof.
pub fn verify_checkpoint(
    note_text: &str,
    verifier_key: &VerifierKey,
) -> Result<Checkpoint, CheckpointError> {
    let note = verifier_key.verify_note(note_text)?;
    Checkpoint::parse_body(&note.text)
}

/// Parses a decimal tree size with no sign and no leading zero (except "0" itself).
fn parse_tree_size(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip() {
        let checkpoint = Checkpoint::new("vaxledger/abc", 7, [9; 32]);
        let parsed = Checkpoint::parse_body(&checkpoint.body()).expect("parse");
        assert_eq!(parsed, checkpoint);
    }

    #[test]
    fn body_rejects_bad_sizes() {
        let root = BASE64.encode([0u8; 32]);
        for size in ["", "-1", "+1", "01", "1 ", "18446744073709551616", "x"] {
            let body = format!("o\n{size}\n{root}\n");
            assert!(
                matches!(
                    Checkpoint::parse_body(&body),
                    Err(CheckpointError::MalformedCheckpoint(_))
                ),
                "size {size:?} was accepted"
            );
        }
    }

    #[test]
    fn body_rejects_short_root() {
        let body = format!("o\n1\n{}\n", BASE64.encode([0u8; 31]));
        assert!(matches!(
            Checkpoint::parse_body(&body),
            Err(CheckpointError::MalformedCheckpoint(_))
        ));
    }

    #[test]
    fn body_keeps_extensions() {
        let body = format!("o\n0\n{}\next one\n", BASE64.encode([1u8; 32]));
        let parsed = Checkpoint::parse_body(&body).expect("parse");
        assert_eq!(parsed.extensions, vec!["ext one".to_owned()]);
        assert_eq!(parsed.body(), body);
    }
}
