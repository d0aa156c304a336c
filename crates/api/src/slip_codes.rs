//! Security codes kept encrypted so that a citizen can download the acknowledgement slip again.
//!
//! The event log stores only an HMAC of the code. The slip needs the plain code, so at booking
//! the code is also written to the `slip_codes` table of `service.db`, encrypted with
//! XChaCha20-Poly1305 under a key derived (HKDF-SHA-256) from the server secret in
//! `keys/server-secret.key`. A copy of the databases alone therefore does not reveal any code.
//!
//! XChaCha20-Poly1305 was chosen over ChaCha20-Poly1305 for its 192-bit nonce: nonces are drawn
//! at random, and at national scale (billions of bookings under one key) a 96-bit random nonce
//! approaches its collision bound, while a 192-bit one does not. The appointment id is the
//! associated data, so a ciphertext moved to another appointment's row fails to decrypt.
//!
//! Storing the code rather than deriving it from the secret and the appointment id keeps the
//! domain's uniform random draw unchanged, and a reissued code can overwrite its row.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::Utc;
use domain::code::SecurityCode;
use domain::ids::AppointmentId;
use hkdf::Hkdf;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::server::DataDir;

/// HKDF `info` that separates this key from every other use of the server secret.
const KEY_INFO: &[u8] = b"vaxledger slip code encryption v1";

/// Prefix of the associated data, followed by the 16 bytes of the appointment id.
const AAD_PREFIX: &[u8] = b"vaxledger slip code v1\0";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS slip_codes (
    appointment_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    stored_at TEXT NOT NULL
);";

/// Failures of the slip code store.
#[derive(Debug, thiserror::Error)]
pub enum SlipCodeError {
    /// The server secret could not be read.
    #[error("server secret {path} is unreadable or not 32 bytes: {detail}")]
    Secret {
        /// Secret file.
        path: PathBuf,
        /// Reason.
        detail: String,
    },
    /// SQLite failed.
    #[error("slip code table in {path} failed: {cause}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// SQLite's message.
        cause: String,
    },
    /// A stored code did not decrypt: the server secret changed, or the row was altered.
    #[error("stored slip code for appointment {appointment_id} does not decrypt under server key {key_id}")]
    Undecryptable {
        /// Appointment of the row.
        appointment_id: String,
        /// Id of the current server secret.
        key_id: String,
    },
}

/// The `slip_codes` table with the key that encrypts it.
pub struct SlipCodes {
    /// `service.db`, for messages.
    path: PathBuf,
    /// Connection to `service.db`, separate from `ServiceDb`'s; WAL mode lets both write.
    connection: Connection,
    /// Encrypts and decrypts the codes.
    sealer: SlipSealer,
}

/// The key that encrypts slip codes, derived once from the server secret, so that the booking
/// path seals a code without reading the secret file again.
pub struct SlipSealer {
    /// Cipher keyed by the derived key.
    cipher: XChaCha20Poly1305,
    /// First 8 bytes of SHA-256 of the server secret, in hex, stored beside each row so that a
    /// row encrypted under an earlier secret is recognised.
    key_id: String,
}

/// An encrypted code ready to store, owned so that it can move to the service database's writer.
pub struct SealedCode {
    /// Appointment the code belongs to.
    appointment_id: String,
    /// Id of the server secret it was encrypted under.
    key_id: String,
    /// Random 192-bit nonce.
    nonce: Vec<u8>,
    /// Code plus the Poly1305 tag.
    ciphertext: Vec<u8>,
}

impl SealedCode {
    /// Stores the code in `slip_codes`, replacing an earlier one of the same appointment (as
    /// after a reissue). The table must exist: [`SlipCodes::open`] or [`ensure_table`] creates it.
    pub fn upsert(&self, connection: &Connection) -> rusqlite::Result<()> {
        connection
            .prepare_cached(
                "INSERT INTO slip_codes (appointment_id, key_id, nonce, ciphertext, stored_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (appointment_id) DO UPDATE SET
                     key_id = excluded.key_id, nonce = excluded.nonce,
                     ciphertext = excluded.ciphertext, stored_at = excluded.stored_at",
            )?
            .execute(params![self.appointment_id, self.key_id, self.nonce, self.ciphertext, Utc::now().to_rfc3339()])?;
        Ok(())
    }
}

/// Creates the `slip_codes` table if it is missing.
pub fn ensure_table(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)
}

impl SlipSealer {
    /// Derives the key from the data folder's `keys/server-secret.key`.
    pub fn open(data_dir: &Path) -> Result<Self, SlipCodeError> {
        let data = DataDir::new(data_dir);
        let secret_path = data.server_secret();
        let secret = std::fs::read(&secret_path).map_err(|err| SlipCodeError::Secret {
            path: secret_path.clone(),
            detail: err.to_string(),
        })?;
        if secret.len() != 32 {
            return Err(SlipCodeError::Secret {
                path: secret_path,
                detail: format!("found {} bytes", secret.len()),
            });
        }

        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &secret)
            .expand(KEY_INFO, &mut key)
            .map_err(|err| SlipCodeError::Secret { path: secret_path.clone(), detail: err.to_string() })?;
        let cipher = XChaCha20Poly1305::new(&key.into());
        let key_id = hex::encode(&Sha256::digest(&secret)[..8]);
        Ok(SlipSealer { cipher, key_id })
    }

    /// Encrypts the code of an appointment under a fresh random nonce.
    pub fn seal(&self, appointment_id: AppointmentId, code: &SecurityCode) -> Result<SealedCode, SlipCodeError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(appointment_id);
        let payload = Payload { msg: code.expose().as_bytes(), aad: &aad };
        let ciphertext = self.cipher.encrypt(&nonce, payload).map_err(|_| SlipCodeError::Undecryptable {
            appointment_id: appointment_id.to_string(),
            key_id: self.key_id.clone(),
        })?;
        Ok(SealedCode { appointment_id: appointment_id.to_string(), key_id: self.key_id.clone(), nonce: nonce.to_vec(), ciphertext })
    }
}

impl SlipCodes {
    /// Opens the table in the data folder's `service.db`, creating it if needed, and derives the
    /// key from `keys/server-secret.key`.
    pub fn open(data_dir: &Path) -> Result<Self, SlipCodeError> {
        let sealer = SlipSealer::open(data_dir)?;
        let path = DataDir::new(data_dir).service();
        let to_error = |err: rusqlite::Error| SlipCodeError::Sqlite { path: path.clone(), cause: err.to_string() };
        let connection = Connection::open(&path).map_err(to_error)?;
        connection
            .execute_batch("PRAGMA busy_timeout=5000;")
            .and_then(|()| connection.execute_batch(SCHEMA))
            .map_err(to_error)?;
        Ok(Self { path, connection, sealer })
    }

    /// Stores the code of an appointment, replacing an earlier one (as after a reissue).
    // TODO: call this when a supervisor reissues a code; until then the slip download returns 409.
    pub fn save(&self, appointment_id: AppointmentId, code: &SecurityCode) -> Result<(), SlipCodeError> {
        let sealed = self.sealer.seal(appointment_id, code)?;
        sealed.upsert(&self.connection).map_err(|err| self.sqlite_error(err))
    }

    /// Returns the stored code of an appointment, or `None` when none was stored.
    pub fn load(&self, appointment_id: AppointmentId) -> Result<Option<SecurityCode>, SlipCodeError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .connection
            .query_row(
                "SELECT nonce, ciphertext FROM slip_codes WHERE appointment_id = ?1",
                params![appointment_id.to_string()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|err| self.sqlite_error(err))?;
        let Some((nonce, ciphertext)) = row else { return Ok(None) };

        let undecryptable = || SlipCodeError::Undecryptable {
            appointment_id: appointment_id.to_string(),
            key_id: self.sealer.key_id.clone(),
        };
        if nonce.len() != 24 {
            return Err(undecryptable());
        }
        let aad = associated_data(appointment_id);
        let plain = self
            .sealer
            .cipher
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad })
            .map_err(|_| undecryptable())?;
        let text = String::from_utf8(plain).map_err(|_| undecryptable())?;
        SecurityCode::parse(&text).map(Some).map_err(|_| undecryptable())
    }

    fn sqlite_error(&self, err: rusqlite::Error) -> SlipCodeError {
        SlipCodeError::Sqlite { path: self.path.clone(), cause: err.to_string() }
    }
}

/// Returns the associated data that binds a ciphertext to its appointment.
fn associated_data(appointment_id: AppointmentId) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(appointment_id.0.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/server-secret.key"), [9u8; 32]).unwrap();
        dir
    }

    #[test]
    fn slip_code_round_trip() {
        let dir = data_dir();
        let codes = SlipCodes::open(dir.path()).unwrap();
        let appointment = AppointmentId::new(Uuid::new_v4());
        codes.save(appointment, &SecurityCode::parse("0427").unwrap()).unwrap();
        assert_eq!(codes.load(appointment).unwrap().unwrap().expose(), "0427");
    }

    #[test]
    fn slip_code_missing_is_none() {
        let dir = data_dir();
        let codes = SlipCodes::open(dir.path()).unwrap();
        assert!(codes.load(AppointmentId::new(Uuid::new_v4())).unwrap().is_none());
    }

    #[test]
    fn slip_code_save_replaces() {
        let dir = data_dir();
        let codes = SlipCodes::open(dir.path()).unwrap();
        let appointment = AppointmentId::new(Uuid::new_v4());
        codes.save(appointment, &SecurityCode::parse("1111").unwrap()).unwrap();
        codes.save(appointment, &SecurityCode::parse("2222").unwrap()).unwrap();
        assert_eq!(codes.load(appointment).unwrap().unwrap().expose(), "2222");
    }

    #[test]
    fn slip_code_not_stored_in_plain() {
        let dir = data_dir();
        let codes = SlipCodes::open(dir.path()).unwrap();
        let appointment = AppointmentId::new(Uuid::new_v4());
        codes.save(appointment, &SecurityCode::parse("8642").unwrap()).unwrap();
        let stored: Vec<u8> = codes
            .connection
            .query_row("SELECT ciphertext FROM slip_codes", [], |row| row.get(0))
            .unwrap();
        assert!(!stored.windows(4).any(|window| window == b"8642"));
        assert_eq!(stored.len(), 4 + 16, "ciphertext is the code plus the Poly1305 tag");
    }

    #[test]
    fn slip_code_moved_row_fails() {
        let dir = data_dir();
        let codes = SlipCodes::open(dir.path()).unwrap();
        let first = AppointmentId::new(Uuid::new_v4());
        let second = AppointmentId::new(Uuid::new_v4());
        codes.save(first, &SecurityCode::parse("1234").unwrap()).unwrap();
        codes
            .connection
            .execute("UPDATE slip_codes SET appointment_id = ?1", params![second.to_string()])
            .unwrap();
        assert!(matches!(codes.load(second), Err(SlipCodeError::Undecryptable { .. })));
    }

    #[test]
    fn slip_code_other_secret_fails() {
        let dir = data_dir();
        let appointment = AppointmentId::new(Uuid::new_v4());
        SlipCodes::open(dir.path()).unwrap().save(appointment, &SecurityCode::parse("1234").unwrap()).unwrap();
        std::fs::write(dir.path().join("keys/server-secret.key"), [10u8; 32]).unwrap();
        let reopened = SlipCodes::open(dir.path()).unwrap();
        assert!(matches!(reopened.load(appointment), Err(SlipCodeError::Undecryptable { .. })));
    }
}
