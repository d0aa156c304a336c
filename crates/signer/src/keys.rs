//! Issuer keys: Ed25519 signing keys kept in a folder, with a JSON metadata file that lists every
//! key ever created, so that certificates signed before a rotation still verify.
//!
//! Layout of the folder (the server passes `<data-dir>/keys`):
//! - `issuer-<key-id>.pem`: one PKCS#8 PEM private key per issuer key, created with mode 0600.
//! - `issuer-keys.json`: public metadata of every key (id, public key, validity, status). It
//!   contains no secret. Updates write a temporary file and rename it over the old one.
//!
//! The `issuer-` prefix keeps these files apart from other keys that the server may keep in the
//! same folder.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::trust::{TrustList, TrustedKey};

/// File name of the metadata file inside the key folder.
pub const METADATA_FILE: &str = "issuer-keys.json";

/// Version of the metadata file layout, stored in the file so that a later layout can be read.
const METADATA_FORMAT: u32 = 1;

/// Length in bytes of a [`KeyId`].
pub const KEY_ID_LEN: usize = 8;

/// Issuer key id: the first 8 bytes of SHA-256 of the raw 32-byte Ed25519 public key.
///
/// It is raw bytes in the COSE `kid` header and 16 lower-case hex characters in JSON and logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Derives the key id of a public key.
    pub fn of(public_key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(public_key.as_bytes());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self(id)
    }

    /// Wraps the raw bytes of a COSE `kid` header; `None` unless there are exactly 8 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_ID_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// Returns the raw 8 bytes, as written in the COSE `kid` header.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }

    /// Returns the 16 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

/// A key id string was not 16 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key id {0:?}: expected 16 hex characters")]
pub struct InvalidKeyId(pub String);

impl FromStr for KeyId {
    type Err = InvalidKeyId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(text.trim()).map_err(|_| InvalidKeyId(text.to_owned()))?;
        Self::from_slice(&bytes).ok_or_else(|| InvalidKeyId(text.to_owned()))
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key, written as standard base64 of its 32 raw bytes in JSON.
///
/// Deserializing checks that the bytes are a valid curve point, so a loaded trust list never
/// contains an unusable key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// Returns the key id of this public key.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// Returns the standard base64 of the 32 raw bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = BASE64.decode(text.trim()).map_err(|err| {
            serde::de::Error::custom(format!("public key is not valid base64: {err}"))
        })?;
        let raw = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            serde::de::Error::custom(format!("public key must be 32 bytes, got {}", bytes.len()))
        })?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| serde::de::Error::custom("public key is not a valid Ed25519 point"))?;
        Ok(Self(key))
    }
}

/// Lifecycle state of an issuer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs new certificates. Exactly one key is active at a time.
    Active,
    /// Replaced by a newer key; certificates it signed up to its `valid_until` stay valid.
    Retired,
    /// Withdrawn: every certificate it signed is invalid, whenever it was signed.
    Revoked,
}

/// Public metadata of one issuer key, as stored in `issuer-keys.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id, derived from the public key; names the key in certificates and the trust list.
    pub key_id: KeyId,
    /// Public key, so that the trust list can be built without reading any private key.
    pub public_key: PublicKey,
    /// Time the key was generated.
    pub created_at: DateTime<Utc>,
    /// Earliest issued-at time of a certificate that this key may sign.
    pub valid_from: DateTime<Utc>,
    /// Latest issued-at time of a certificate that this key may sign; set when the key retires.
    pub valid_until: Option<DateTime<Utc>>,
    /// Lifecycle state.
    pub status: KeyStatus,
    /// Time of revocation, kept for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Name of the private key file inside the key folder.
    pub file: String,
}

impl KeyInfo {
    /// Returns the trust-list entry for this key.
    pub fn trusted_key(&self) -> TrustedKey {
        TrustedKey {
            key_id: self.key_id,
            algorithm: crate::trust::ALGORITHM_NAME.to_owned(),
            public_key: self.public_key,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            status: self.status,
        }
    }
}

/// Contents of `issuer-keys.json`.
#[derive(Debug, Serialize, Deserialize)]
struct MetadataFile {
    /// Layout version; only [`METADATA_FORMAT`] is understood.
    format: u32,
    /// Every key ever created, oldest first.
    keys: Vec<KeyInfo>,
}

/// Failures of the key folder. Each message names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or folder could not be read or written.
    #[error("{action} {path} failed: {source}")]
    Io {
        /// Operation that failed, such as `reading`.
        action: &'static str,
        /// File or folder involved.
        path: PathBuf,
        /// Operating system error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file is not a PKCS#8 Ed25519 key, or does not match its metadata.
    #[error(
        "key file {path} is invalid: {detail}; restore it from a backup or remove its entry from \
         {METADATA_FILE}"
    )]
    CorruptKeyFile {
        /// Key file involved.
        path: PathBuf,
        /// Defect found in the file.
        detail: String,
    },
    /// The metadata file is not valid JSON of the expected layout, or breaks an invariant.
    #[error("key metadata file {path} is invalid: {detail}")]
    CorruptMetadata {
        /// Metadata file involved.
        path: PathBuf,
        /// Defect found in the file.
        detail: String,
    },
    /// No key with this id exists in the folder.
    #[error("no issuer key with id {key_id}")]
    UnknownKey {
        /// Key id requested.
        key_id: KeyId,
    },
    /// A key could not be serialized; this indicates a bug, not bad input.
    #[error("encoding key material failed: {0}")]
    Encode(String),
}

/// A loaded issuer key: its metadata and private key. Debug output never shows the private key.
#[derive(Clone)]
pub struct IssuerKey {
    /// Public metadata.
    info: KeyInfo,
    /// Private key used to sign certificates.
    signing_key: SigningKey,
}

impl IssuerKey {
    /// Returns the key id.
    pub fn key_id(&self) -> KeyId {
        self.info.key_id
    }

    /// Returns the public metadata.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// Returns the public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// Signs `message` with the private key.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signing_key.sign(message)
    }
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKey")
            .field("info", &self.info)
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

/// The issuer keys of a folder. Safe to share between tasks: rotation and revocation take `&self`.
pub struct KeyRing {
    /// Folder that contains the key files and the metadata file.
    dir: PathBuf,
    /// Loaded keys, oldest first; replaced as a whole after each successful metadata write.
    keys: RwLock<Vec<IssuerKey>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let infos: Vec<KeyInfo> = self
            .read_keys()
            .iter()
            .map(|key| key.info.clone())
            .collect();
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("keys", &infos)
            .finish()
    }
}

impl KeyRing {
    /// Opens the key folder, creating the folder (mode 0700), a first active key and the metadata
    /// file when they do not exist.
    ///
    /// Every key listed in the metadata is loaded and checked against its public key, so a
    /// damaged key file is reported here, naming the file, and not at the first signature.
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::open_or_create_at(dir, Utc::now())
    }

    /// Same as [`KeyRing::open_or_create`], with the time used for a first key passed in.
    pub fn open_or_create_at(dir: impl AsRef<Path>, now: DateTime<Utc>) -> Result<Self, KeyError> {
        let dir = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| KeyError::Io {
                action: "creating key folder",
                path: dir.clone(),
                source,
            })?;

        let metadata_path = dir.join(METADATA_FILE);
        let mut keys = match read_metadata(&metadata_path)? {
            Some(metadata) => load_keys(&dir, &metadata_path, metadata)?,
            None => Vec::new(),
        };

        let active_count = keys
            .iter()
            .filter(|key| key.info.status == KeyStatus::Active)
            .count();
        if active_count > 1 {
            return Err(KeyError::CorruptMetadata {
                path: metadata_path,
                detail: format!("{active_count} keys are marked active; exactly one may be"),
            });
        }
        if active_count == 0 {
            // NOTE: two processes opening an empty folder at the same moment each create a key, and
            // the later metadata write wins; the server and the `keys` commands run one at a time.
            let key = generate_key(&dir, now)?;
            keys.push(key);
            write_metadata(&dir, &keys)?;
        }

        Ok(Self {
            dir,
            keys: RwLock::new(keys),
        })
    }

    /// Returns the folder that contains the keys.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the key that signs new certificates.
    pub fn active_key(&self) -> Result<IssuerKey, KeyError> {
        self.read_keys()
            .iter()
            .find(|key| key.info.status == KeyStatus::Active)
            .cloned()
            .ok_or_else(|| KeyError::CorruptMetadata {
                path: self.dir.join(METADATA_FILE),
                detail: "no active key".to_owned(),
            })
    }

    /// Returns the metadata of every key, oldest first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.read_keys()
            .iter()
            .map(|key| key.info.clone())
            .collect()
    }

    /// Generates a new active key and retires the current one.
    ///
    /// The retired key gets `valid_until = now`, so certificates it signed before the rotation
    /// stay valid. Returns the new key's metadata.
    pub fn rotate(&self, now: DateTime<Utc>) -> Result<KeyInfo, KeyError> {
        let mut keys = self.write_keys();

        let new_key = generate_key(&self.dir, now)?;
        let mut updated = keys.clone();
        let now = now.trunc_subsecs(0);
        let mut retired = None;
        for key in updated
            .iter_mut()
            .filter(|key| key.info.status == KeyStatus::Active)
        {
            key.info.status = KeyStatus::Retired;
            key.info.valid_until = Some(now);
            retired = Some(key.info.key_id);
        }
        let new_info = new_key.info.clone();
        updated.push(new_key);

        write_metadata(&self.dir, &updated)?;
        *keys = updated;

        tracing::info!(
            retired_key_id = retired.map(|id| id.to_hex()),
            new_key_id = %new_info.key_id,
            dir = %self.dir.display(),
            "rotated certificate issuer key",
        );
        Ok(new_info)
    }

    /// Revokes a key: every certificate it signed verifies as invalid from now on.
    ///
    /// Revoking the active key also generates a new active key, so issuing does not stop.
    /// Revoking a key that is already revoked changes nothing. Returns the revoked key's metadata.
    pub fn revoke(&self, key_id: KeyId, now: DateTime<Utc>) -> Result<KeyInfo, KeyError> {
        let mut keys = self.write_keys();

        let Some(index) = keys.iter().position(|key| key.info.key_id == key_id) else {
            return Err(KeyError::UnknownKey { key_id });
        };
        if keys[index].info.status == KeyStatus::Revoked {
            return Ok(keys[index].info.clone());
        }

        let mut updated = keys.clone();
        let was_active = updated[index].info.status == KeyStatus::Active;
        let now_seconds = now.trunc_subsecs(0);
        updated[index].info.status = KeyStatus::Revoked;
        updated[index].info.revoked_at = Some(now_seconds);
        if updated[index].info.valid_until.is_none() {
            updated[index].info.valid_until = Some(now_seconds);
        }
        let revoked_info = updated[index].info.clone();

        let replacement = if was_active {
            let key = generate_key(&self.dir, now)?;
            let id = key.info.key_id;
            updated.push(key);
            Some(id)
        } else {
            None
        };

        write_metadata(&self.dir, &updated)?;
        *keys = updated;

        tracing::warn!(
            key_id = %key_id,
            replacement_key_id = replacement.map(|id| id.to_hex()),
            dir = %self.dir.display(),
            "revoked certificate issuer key",
        );
        Ok(revoked_info)
    }

    /// Returns the trust list: every key with its validity and status, generated at `now`.
    pub fn trust_list(&self, now: DateTime<Utc>) -> TrustList {
        TrustList {
            generated_at: now.trunc_subsecs(0),
            keys: self
                .read_keys()
                .iter()
                .map(|key| key.info.trusted_key())
                .collect(),
        }
    }

    /// Locks the key list for reading. A panic while the lock was held cannot leave a half
    /// updated list (updates replace the whole list), so a poisoned lock is still usable.
    fn read_keys(&self) -> RwLockReadGuard<'_, Vec<IssuerKey>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the key list for writing; see [`KeyRing::read_keys`] about poisoning.
    fn write_keys(&self) -> RwLockWriteGuard<'_, Vec<IssuerKey>> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads the trust list from a key folder's metadata file without reading any private key.
///
/// Offline tools use it on a copy of a data folder; it never writes. Returns an error when the
/// folder has no metadata file.
pub fn read_trust_list(dir: impl AsRef<Path>, now: DateTime<Utc>) -> Result<TrustList, KeyError> {
    let metadata_path = dir.as_ref().join(METADATA_FILE);
    let Some(metadata) = read_metadata(&metadata_path)? else {
        return Err(KeyError::Io {
            action: "reading",
            path: metadata_path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no issuer key metadata file",
            ),
        });
    };
    Ok(TrustList {
        generated_at: now.trunc_subsecs(0),
        keys: metadata.keys.iter().map(KeyInfo::trusted_key).collect(),
    })
}

/// Reads and parses the metadata file; `None` when it does not exist.
fn read_metadata(path: &Path) -> Result<Option<MetadataFile>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                action: "reading",
                path: path.to_path_buf(),
                source,
            })
        }
    };

    let metadata: MetadataFile =
        serde_json::from_str(&text).map_err(|err| KeyError::CorruptMetadata {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    if metadata.format != METADATA_FORMAT {
        return Err(KeyError::CorruptMetadata {
            path: path.to_path_buf(),
            detail: format!(
                "unsupported format {}, this build reads format {METADATA_FORMAT}",
                metadata.format
            ),
        });
    }
    for info in &metadata.keys {
        if info.public_key.key_id() != info.key_id {
            return Err(KeyError::CorruptMetadata {
                path: path.to_path_buf(),
                detail: format!("key id {} does not match its public key", info.key_id),
            });
        }
    }
    Ok(Some(metadata))
}

/// Loads the private key of every metadata entry and checks it against the entry.
fn load_keys(
    dir: &Path,
    metadata_path: &Path,
    metadata: MetadataFile,
) -> Result<Vec<IssuerKey>, KeyError> {
    let mut keys = Vec::with_capacity(metadata.keys.len());
    for info in metadata.keys {
        if info.file.contains('/') || info.file.contains("..") || info.file.is_empty() {
            return Err(KeyError::CorruptMetadata {
                path: metadata_path.to_path_buf(),
                detail: format!("key file name {:?} must be a plain file name", info.file),
            });
        }
        let path = dir.join(&info.file);
        let signing_key = read_key_file(&path)?;

        let actual = KeyId::of(&signing_key.verifying_key());
        if actual != info.key_id {
            return Err(KeyError::CorruptKeyFile {
                path,
                detail: format!(
                    "it contains key {actual}, but the metadata lists key {}",
                    info.key_id
                ),
            });
        }
        keys.push(IssuerKey { info, signing_key });
    }
    Ok(keys)
}

/// Reads one PKCS#8 PEM private key file, warning when other users may read it.
fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let file_metadata = fs::metadata(path).map_err(|source| KeyError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = file_metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "issuer key file is readable by other users; set its mode to 0600",
        );
    }

    let pem = fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|err| KeyError::CorruptKeyFile {
        path: path.to_path_buf(),
        detail: format!("not a PKCS#8 PEM Ed25519 private key ({err})"),
    })
}

/// Generates a key and writes its private key file with mode 0600. The caller adds the key to
/// the metadata file, which is written after the key file so that a listed key always has a file.
fn generate_key(dir: &Path, now: DateTime<Utc>) -> Result<IssuerKey, KeyError> {
    let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = PublicKey(signing_key.verifying_key());
    let key_id = public_key.key_id();
    let file = format!("issuer-{key_id}.pem");
    let path = dir.join(&file);

    let pem = signing_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| KeyError::Encode(err.to_string()))?;
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| KeyError::Io {
            action: "creating key file",
            path: path.clone(),
            source,
        })?;
    handle
        .write_all(pem.as_bytes())
        .and_then(|()| handle.sync_all())
        .map_err(|source| KeyError::Io {
            action: "writing key file",
            path: path.clone(),
            source,
        })?;

    tracing::info!(key_id = %key_id, path = %path.display(), "created certificate issuer key");

    let now = now.trunc_subsecs(0);
    let info = KeyInfo {
        key_id,
        public_key,
        created_at: now,
        valid_from: now,
        valid_until: None,
        status: KeyStatus::Active,
        revoked_at: None,
        file,
    };
    Ok(IssuerKey { info, signing_key })
}

/// Replaces the metadata file atomically: writes a temporary file, syncs it, renames it over the
/// old one and syncs the folder.
fn write_metadata(dir: &Path, keys: &[IssuerKey]) -> Result<(), KeyError> {
    let metadata = MetadataFile {
        format: METADATA_FORMAT,
        keys: keys.iter().map(|key| key.info.clone()).collect(),
    };
    let json =
        serde_json::to_vec_pretty(&metadata).map_err(|err| KeyError::Encode(err.to_string()))?;

    let final_path = dir.join(METADATA_FILE);
    let temp_path = dir.join(format!("{METADATA_FILE}.tmp"));
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io {
            action,
            path,
            source,
        }
    };

    let mut handle = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temp_path)
        .map_err(io_error("creating", &temp_path))?;
    handle
        .write_all(&json)
        .map_err(io_error("writing", &temp_path))?;
    handle.sync_all().map_err(io_error("syncing", &temp_path))?;
    drop(handle);

    fs::rename(&temp_path, &final_path)
        .map_err(io_error("renaming metadata file to", &final_path))?;
    File::open(dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error("syncing key folder", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_hex_round_trip() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let id = KeyId::of(&key);
        assert_eq!(id.to_hex().len(), 16);
        assert_eq!(id.to_hex().parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let digest = Sha256::digest(key.as_bytes());
        assert_eq!(KeyId::of(&key).as_bytes(), &digest[..8]);
    }

    #[test]
    fn key_id_parse_rejects_bad_text() {
        for text in ["", "abc", "0011223344556677ff", "zz11223344556677"] {
            assert!(text.parse::<KeyId>().is_err(), "{text}");
        }
    }

    #[test]
    fn public_key_rejects_wrong_length() {
        let err = serde_json::from_str::<PublicKey>("\"AAAA\"").unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn issuer_key_debug_hides_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open_or_create(dir.path()).unwrap();
        let key = ring.active_key().unwrap();
        let secret_hex = hex::encode(key.signing_key.to_bytes());
        let debug = format!("{key:?} {ring:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(&secret_hex));
    }
}
