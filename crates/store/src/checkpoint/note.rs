//! C2SP signed notes with Ed25519 keys, compatible with Go's `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is a text that ends with a newline, a blank line, then one line per signature:
//! `— <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>`, where the dash is
//! U+2014. The key hash is the first 4 bytes, big-endian, of SHA-256(name || "\n" || 0x01 ||
//! public key), and 0x01 is the Ed25519 algorithm byte. A verifier key is written
//! `<name>+<key hash as 8 hex digits>+<base64(0x01 || public key)>`, and a signer key
//! `PRIVATE+KEY+<name>+<key hash>+<base64(0x01 || 32-byte seed)>`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Algorithm byte of an Ed25519 key in signed-note key encodings.
const ALGORITHM_ED25519: u8 = 0x01;

/// Prefix of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Maximum number of signature lines read from one note, as in Go's implementation, so that a
/// note with many signatures cannot make parsing slow.
const MAX_SIGNATURES: usize = 100;

/// Length of the key hash that starts every signature.
const KEY_HASH_SIZE: usize = 4;

/// A verifier or signer key string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key string does not have the expected parts.
    #[error("malformed {kind} key: {reason}")]
    Malformed {
        /// `verifier` or `signer`.
        kind: &'static str,
        /// Reason, without any key material.
        reason: String,
    },
    /// The key's algorithm byte is not Ed25519 (0x01).
    #[error("{kind} key uses algorithm {algorithm:#04x}, but only Ed25519 (0x01) is supported")]
    UnknownAlgorithm {
        /// `verifier` or `signer`.
        kind: &'static str,
        /// Algorithm byte found.
        algorithm: u8,
    },
    /// The key hash in the string does not match the name and key.
    #[error("{kind} key hash {stated:08x} does not match the name and key, which hash to {computed:08x}")]
    HashMismatch {
        /// `verifier` or `signer`.
        kind: &'static str,
        /// Hash written in the key string.
        stated: u32,
        /// Hash computed from the name and public key.
        computed: u32,
    },
}

/// A signed note that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not follow the signed-note format.
    #[error("malformed signed note: {0}")]
    Malformed(String),
    /// The note has no signature by the given key.
    #[error("the note has no signature by key {name}+{key_hash:08x}")]
    UnknownKey {
        /// Name of the key looked for.
        name: String,
        /// Hash of the key looked for.
        key_hash: u32,
    },
    /// The note has a signature by the given key, but it does not verify.
    #[error("the signature by key {name}+{key_hash:08x} does not verify")]
    BadSignature {
        /// Name of the key.
        name: String,
        /// Hash of the key.
        key_hash: u32,
    },
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name on the line.
    pub name: String,
    /// Key hash, the first 4 bytes of the decoded signature.
    pub key_hash: u32,
    /// Signature bytes after the key hash (64 bytes for Ed25519).
    pub signature: Vec<u8>,
}

/// A note split into its text and signature lines; no signature is checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// Signed text, ending with a newline.
    pub text: String,
    /// Signature lines in note order.
    pub signatures: Vec<NoteSignature>,
}

/// Computes a key hash: the first 4 bytes, big-endian, of SHA-256(name || "\n" || 0x01 || key).
pub fn key_hash(name: &str, public_key: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALGORITHM_ED25519]);
    hasher.update(public_key.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Returns whether `name` may be a key name: non-empty, with no whitespace and no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// Splits a note into text and signature lines, checking the format but no signature.
pub fn parse_note(note: &str) -> Result<SignedNote, NoteError> {
    let malformed = |reason: &str| NoteError::Malformed(reason.to_owned());

    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(malformed(
            "it contains a control character other than newline",
        ));
    }

    let Some(split) = note.rfind("\n\n") else {
        return Err(malformed("there is no blank line before the signatures"));
    };
    let text = &note[..split + 1];
    let signature_block = &note[split + 2..];
    if signature_block.is_empty() {
        return Err(malformed("there is no signature line after the blank line"));
    }
    let Some(signature_lines) = signature_block.strip_suffix('\n') else {
        return Err(malformed(
            "the last signature line does not end with a newline",
        ));
    };

    let mut signatures = Vec::new();
    for line in signature_lines.split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(malformed("it has more than 100 signature lines"));
        }
        signatures.push(parse_signature_line(line)?);
    }

    Ok(SignedNote {
        text: text.to_owned(),
        signatures,
    })
}

/// Parses one signature line, without its newline.
fn parse_signature_line(line: &str) -> Result<NoteSignature, NoteError> {
    let malformed = |reason: &str| NoteError::Malformed(reason.to_owned());

    let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
        return Err(malformed(
            "a signature line does not start with an em dash and a space",
        ));
    };
    let (name, encoded) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_valid_key_name(name) {
        return Err(malformed("a signature line has an invalid key name"));
    }
    if encoded.is_empty() {
        return Err(malformed("a signature line has no signature"));
    }
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| malformed("a signature is not valid base64"))?;
    if decoded.len() <= KEY_HASH_SIZE {
        return Err(malformed("a signature is shorter than 5 bytes"));
    }

    let (hash, signature) = decoded.split_at(KEY_HASH_SIZE);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_hash: u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]),
        signature: signature.to_vec(),
    })
}

/// A public key that verifies signed notes.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name, written on signature lines.
    name: String,
    /// Key hash of the name and public key.
    key_hash: u32,
    /// Ed25519 public key.
    public_key: VerifyingKey,
}

impl VerifierKey {
    /// Parses a verifier key string `<name>+<hash>+<base64(0x01 || key)>`. Surrounding
    /// whitespace, such as a file's final newline, is ignored.
    pub fn parse(text: &str) -> Result<VerifierKey, KeyError> {
        let malformed = |reason: &str| KeyError::Malformed {
            kind: "verifier",
            reason: reason.to_owned(),
        };

        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected <name>+<key hash>+<base64 key>"));
        };
        let stated = parse_key_hash(hash)
            .ok_or_else(|| malformed("the key hash is not 8 hexadecimal digits"))?;
        if !is_valid_key_name(name) {
            return Err(malformed("the name is empty or contains whitespace or '+'"));
        }

        let key = BASE64
            .decode(encoded)
            .map_err(|_| malformed("the key is not valid base64"))?;
        let public_key = decode_public_key(&key, "verifier")?;

        let computed = key_hash(name, &public_key);
        if computed != stated {
            return Err(KeyError::HashMismatch {
                kind: "verifier",
                stated,
                computed,
            });
        }

        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: computed,
            public_key,
        })
    }

    /// Builds the verifier key for a name and Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: VerifyingKey) -> Result<VerifierKey, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::Malformed {
                kind: "verifier",
                reason: "the name is empty or contains whitespace or '+'".to_owned(),
            });
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: key_hash(name, &public_key),
            public_key,
        })
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key hash.
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// Returns the Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// Parses a note and checks its signature by this key. Signatures by other keys are
    /// ignored, and so are repeats of this key's signature, as Go's `note.Open` does.
    pub fn verify_note(&self, note: &str) -> Result<SignedNote, NoteError> {
        let parsed = parse_note(note)?;

        let Some(line) = parsed
            .signatures
            .iter()
            .find(|line| line.name == self.name && line.key_hash == self.key_hash)
        else {
            return Err(NoteError::UnknownKey {
                name: self.name.clone(),
                key_hash: self.key_hash,
            });
        };

        let bad_signature = || NoteError::BadSignature {
            name: self.name.clone(),
            key_hash: self.key_hash,
        };
        // NOTE: verify_strict also rejects small-order keys and non-canonical points, which Go's
        // ed25519.Verify accepts; signatures made by honest keys verify in both.
        let signature = Signature::from_slice(&line.signature).map_err(|_| bad_signature())?;
        self.public_key
            .verify_strict(parsed.text.as_bytes(), &signature)
            .map_err(|_| bad_signature())?;

        Ok(parsed)
    }
}

impl fmt::Display for VerifierKey {
    /// Writes the verifier key string `<name>+<hash>+<base64(0x01 || key)>`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALGORITHM_ED25519);
        key.extend_from_slice(self.public_key.as_bytes());
        write!(
            formatter,
            "{}+{:08x}+{}",
            self.name,
            self.key_hash,
            BASE64.encode(key)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "VerifierKey({self})")
    }
}

/// A private key that signs notes.
#[derive(Clone)]
pub struct NoteSigner {
    /// Key name, written on signature lines.
    name: String,
    /// Key hash of the name and public key.
    key_hash: u32,
    /// Ed25519 private key.
    signing_key: SigningKey,
}

impl NoteSigner {
    /// Creates a signer with a new random Ed25519 key from the operating system's generator.
    pub fn generate(name: &str) -> Result<NoteSigner, KeyError> {
        let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
        NoteSigner::from_signing_key(name, signing_key)
    }

    /// Wraps an Ed25519 private key under a key name.
    pub fn from_signing_key(name: &str, signing_key: SigningKey) -> Result<NoteSigner, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::Malformed {
                kind: "signer",
                reason: "the name is empty or contains whitespace or '+'".to_owned(),
            });
        }
        Ok(NoteSigner {
            name: name.to_owned(),
            key_hash: key_hash(name, &signing_key.verifying_key()),
            signing_key,
        })
    }

    /// Parses a signer key string `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>`.
    /// Surrounding whitespace is ignored. Errors never contain key material.
    pub fn parse(text: &str) -> Result<NoteSigner, KeyError> {
        let malformed = |reason: &str| KeyError::Malformed {
            kind: "signer",
            reason: reason.to_owned(),
        };

        let Some(rest) = text.trim().strip_prefix("PRIVATE+KEY+") else {
            return Err(malformed(
                "expected PRIVATE+KEY+<name>+<key hash>+<base64 key>",
            ));
        };
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "expected PRIVATE+KEY+<name>+<key hash>+<base64 key>",
            ));
        };
        let stated = parse_key_hash(hash)
            .ok_or_else(|| malformed("the key hash is not 8 hexadecimal digits"))?;
        if !is_valid_key_name(name) {
            return Err(malformed("the name is empty or contains whitespace or '+'"));
        }

        let key = BASE64
            .decode(encoded)
            .map_err(|_| malformed("the key is not valid base64"))?;
        let Some((&algorithm, seed)) = key.split_first() else {
            return Err(malformed("the key is empty"));
        };
        if algorithm != ALGORITHM_ED25519 {
            return Err(KeyError::UnknownAlgorithm {
                kind: "signer",
                algorithm,
            });
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| malformed("an Ed25519 seed must be 32 bytes"))?;

        let signer = NoteSigner::from_signing_key(name, SigningKey::from_bytes(&seed))?;
        if signer.key_hash != stated {
            return Err(KeyError::HashMismatch {
                kind: "signer",
                stated,
                computed: signer.key_hash,
            });
        }
        Ok(signer)
    }

    /// Returns the signer key string. It contains the private key: write it only to a file of
    /// mode 0600 and never log it.
    pub fn to_signer_key_string(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALGORITHM_ED25519);
        key.extend_from_slice(self.signing_key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_hash,
            BASE64.encode(key)
        )
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key hash.
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// Returns the matching verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_hash: self.key_hash,
            public_key: self.signing_key.verifying_key(),
        }
    }

    /// Signs `text` and returns the signed note: the text, a blank line and one signature line.
    /// The text must end with a newline and contain no control character other than newline.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the text does not end with a newline".to_owned(),
            ));
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed(
                "the text contains a control character other than newline".to_owned(),
            ));
        }

        let signature = self.signing_key.sign(text.as_bytes());
        let mut signed = Vec::with_capacity(KEY_HASH_SIZE + 64);
        signed.extend_from_slice(&self.key_hash.to_be_bytes());
        signed.extend_from_slice(&signature.to_bytes());

        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(signed)
        ))
    }
}

impl fmt::Debug for NoteSigner {
    /// Shows the public side only, so that the private key never reaches a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "NoteSigner({})", self.verifier_key())
    }
}

/// Parses exactly 8 hexadecimal digits.
fn parse_key_hash(text: &str) -> Option<u32> {
    if text.len() != 8 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// Decodes `0x01 || 32-byte Ed25519 public key`.
fn decode_public_key(key: &[u8], kind: &'static str) -> Result<VerifyingKey, KeyError> {
    let malformed = |reason: &str| KeyError::Malformed {
        kind,
        reason: reason.to_owned(),
    };

    let Some((&algorithm, public_key)) = key.split_first() else {
        return Err(malformed("the key is empty"));
    };
    if algorithm != ALGORITHM_ED25519 {
        return Err(KeyError::UnknownAlgorithm { kind, algorithm });
    }
    let public_key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| malformed("an Ed25519 public key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&public_key)
        .map_err(|_| malformed("the bytes are not an Ed25519 public key"))
}
