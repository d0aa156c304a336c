//! Certificate vault: the signed COSE bytes of every certificate, in a SQLite file beside the
//! event store (the server passes `<data-dir>/certificates.db`).
//!
//! The `CertificateIssued` event contains only the SHA-256 of the COSE bytes, so the bytes must be
//! kept here to serve the certificate again. The intended order is: put the certificate here,
//! then append the event. If the append fails on a revision conflict, the row stays behind with
//! no event. Nobody received that certificate, so a reader must treat a row as issued only when
//! the log contains its `CertificateIssued` event.
//!
//! The API is async: reads run on `tokio::task::spawn_blocking`, and writes go to a group-commit
//! writer thread (`store::group`), so neither stalls the runtime's worker threads. It needs a
//! Tokio runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeZone, Utc};
use domain::ids::{AppointmentId, BeneficiaryId, CertificateId};
use rusqlite::{params, Connection, OptionalExtension, Row};
use store::group::{GroupWriteError, GroupWriter};

use crate::gate::IssuedCertificate;
use crate::keys::KeyId;

/// One stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    /// Certificate id, the primary key.
    pub certificate_id: CertificateId,
    /// Appointment it certifies, for lookup from the appointment.
    pub appointment_id: AppointmentId,
    /// Beneficiary, for listing a citizen's certificates.
    pub beneficiary_id: BeneficiaryId,
    /// Key that signed it, for re-verification after a key revocation.
    pub key_id: KeyId,
    /// Tagged COSE_Sign1 bytes.
    pub cose: Vec<u8>,
    /// Issued-at time, whole seconds.
    pub issued_at: DateTime<Utc>,
}

impl From<&IssuedCertificate> for StoredCertificate {
    fn from(issued: &IssuedCertificate) -> Self {
        Self {
            certificate_id: issued.record.certificate_id,
            appointment_id: issued.appointment_id,
            beneficiary_id: issued.record.beneficiary_id,
            key_id: issued.key_id,
            cose: issued.cose.clone(),
            issued_at: issued.issued_at,
        }
    }
}

/// Failures of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// SQLite failed on the vault file.
    #[error("certificate vault {path} failed: {source}")]
    Sqlite {
        /// Vault file.
        path: PathBuf,
        /// SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A certificate with this id is already stored with other bytes.
    #[error("certificate {certificate_id} is already stored with different content")]
    Conflict {
        /// Certificate id.
        certificate_id: CertificateId,
    },
    /// A stored row could not be parsed.
    #[error(
        "certificate vault {path} contains an invalid row for certificate {certificate_id}: \
         {detail}"
    )]
    CorruptRow {
        /// Vault file.
        path: PathBuf,
        /// Certificate id column as stored.
        certificate_id: String,
        /// Column that failed to parse, with the error.
        detail: String,
    },
    /// The blocking task panicked or was cancelled.
    #[error("certificate vault task failed: {0}")]
    Task(String),
}

/// SQLite store of signed certificates.
#[derive(Clone)]
pub struct CertificateVault {
    /// Vault file, for error messages.
    path: PathBuf,
    /// Connection for reads; WAL mode lets it read while the writer commits.
    connection: Arc<Mutex<Connection>>,
    /// The only connection that writes, on its own thread with group commit, so that
    /// certificates issued at the same moment share one fsync.
    writer: Arc<GroupWriter>,
}

impl std::fmt::Debug for CertificateVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateVault")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS certificates (
    certificate_id TEXT PRIMARY KEY NOT NULL,
    appointment_id TEXT NOT NULL,
    beneficiary_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    cose BLOB NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_appointment ON certificates (appointment_id, issued_at);
";

impl CertificateVault {
    /// Opens or creates the vault file (WAL journal, full sync). This call blocks briefly; call
    /// it at startup.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let path = path.as_ref().to_path_buf();
        let sqlite_error = |source| VaultError::Sqlite {
            path: path.clone(),
            source,
        };

        let connection = Connection::open(&path).map_err(sqlite_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        connection.execute_batch(SCHEMA).map_err(sqlite_error)?;
        let reader = Connection::open(&path).map_err(sqlite_error)?;
        let writer = GroupWriter::start(connection, &path, "vault").map_err(|err| VaultError::Task(err.to_string()))?;

        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(reader)),
            writer: Arc::new(writer),
        })
    }

    /// Stores a certificate. Storing the same certificate again is a no-op; storing other bytes
    /// under an existing id fails with [`VaultError::Conflict`].
    pub async fn put(&self, certificate: &StoredCertificate) -> Result<(), VaultError> {
        let certificate = certificate.clone();
        let path = self.path.clone();
        let written = self.writer.write(move |connection| {
            let path = path.as_path();
            let inserted = connection
                .execute(
                    "INSERT OR IGNORE INTO certificates
                     (certificate_id, appointment_id, beneficiary_id, key_id, cose, issued_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        certificate.certificate_id.to_string(),
                        certificate.appointment_id.to_string(),
                        certificate.beneficiary_id.to_string(),
                        certificate.key_id.to_hex(),
                        certificate.cose,
                        certificate.issued_at.timestamp(),
                    ],
                )
                .map_err(|source| VaultError::Sqlite {
                    path: path.to_path_buf(),
                    source,
                })?;
            if inserted == 1 {
                return Ok(());
            }

            let existing = select_one(connection, path, certificate.certificate_id)?;
            if existing.as_ref() == Some(&certificate) {
                Ok(())
            } else {
                Err(VaultError::Conflict {
                    certificate_id: certificate.certificate_id,
                })
            }
        });
        match written.await {
            Ok(()) => Ok(()),
            Err(GroupWriteError::Work(err)) => Err(err),
            Err(GroupWriteError::Commit(message) | GroupWriteError::Stopped(message)) => Err(VaultError::Task(message)),
        }
    }

    /// Returns the certificate with this id, if stored.
    pub async fn get(
        &self,
        certificate_id: CertificateId,
    ) -> Result<Option<StoredCertificate>, VaultError> {
        self.run(move |connection, path| select_one(connection, path, certificate_id))
            .await
    }

    /// Returns every certificate stored for an appointment, oldest first. There can be more than
    /// one after a revocation and re-issue.
    pub async fn get_by_appointment(
        &self,
        appointment_id: AppointmentId,
    ) -> Result<Vec<StoredCertificate>, VaultError> {
        self.run(move |connection, path| {
            let sqlite_error = |source| VaultError::Sqlite {
                path: path.to_path_buf(),
                source,
            };
            let mut statement = connection
                .prepare(
                    "SELECT certificate_id, appointment_id, beneficiary_id, key_id, cose, issued_at
                     FROM certificates WHERE appointment_id = ?1
                     ORDER BY issued_at, certificate_id",
                )
                .map_err(sqlite_error)?;
            let rows = statement
                .query_map(params![appointment_id.to_string()], raw_row)
                .map_err(sqlite_error)?;

            let mut certificates = Vec::new();
            for row in rows {
                let raw = row.map_err(sqlite_error)?;
                certificates.push(parse_row(path, raw)?);
            }
            Ok(certificates)
        })
        .await
    }

    /// Runs `work` on the connection in a blocking task.
    async fn run<T, F>(&self, work: F) -> Result<T, VaultError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Path) -> Result<T, VaultError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let guard = lock(&connection);
            work(&guard, &path)
        })
        .await
        .map_err(|err| VaultError::Task(err.to_string()))?
    }
}

/// Locks the connection. A panic inside a SQLite call leaves no partial Rust-side state, and
/// SQLite rolls back an unfinished statement, so a poisoned lock is still usable.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Column values of one row, before parsing.
struct RawRow {
    /// `certificate_id` column.
    certificate_id: String,
    /// `appointment_id` column.
    appointment_id: String,
    /// `beneficiary_id` column.
    beneficiary_id: String,
    /// `key_id` column.
    key_id: String,
    /// `cose` column.
    cose: Vec<u8>,
    /// `issued_at` column, Unix seconds.
    issued_at: i64,
}

/// Reads the columns of one row.
fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        certificate_id: row.get(0)?,
        appointment_id: row.get(1)?,
        beneficiary_id: row.get(2)?,
        key_id: row.get(3)?,
        cose: row.get(4)?,
        issued_at: row.get(5)?,
    })
}

/// Parses the columns of one row.
fn parse_row(path: &Path, raw: RawRow) -> Result<StoredCertificate, VaultError> {
    let corrupt = |detail: String| VaultError::CorruptRow {
        path: path.to_path_buf(),
        certificate_id: raw.certificate_id.clone(),
        detail,
    };

    let certificate_id =
        CertificateId::parse(&raw.certificate_id).map_err(|err| corrupt(err.to_string()))?;
    let appointment_id =
        AppointmentId::parse(&raw.appointment_id).map_err(|err| corrupt(err.to_string()))?;
    let beneficiary_id =
        BeneficiaryId::parse(&raw.beneficiary_id).map_err(|err| corrupt(err.to_string()))?;
    let key_id: KeyId = raw
        .key_id
        .parse()
        .map_err(|err: crate::keys::InvalidKeyId| corrupt(err.to_string()))?;
    let issued_at = Utc
        .timestamp_opt(raw.issued_at, 0)
        .single()
        .ok_or_else(|| corrupt(format!("issued_at {} is out of range", raw.issued_at)))?;

    Ok(StoredCertificate {
        certificate_id,
        appointment_id,
        beneficiary_id,
        key_id,
        cose: raw.cose,
        issued_at,
    })
}

/// Selects one certificate by id.
fn select_one(
    connection: &Connection,
    path: &Path,
    certificate_id: CertificateId,
) -> Result<Option<StoredCertificate>, VaultError> {
    let raw = connection
        .query_row(
            "SELECT certificate_id, appointment_id, beneficiary_id, key_id, cose, issued_at
             FROM certificates WHERE certificate_id = ?1",
            params![certificate_id.to_string()],
            raw_row,
        )
        .optional()
        .map_err(|source| VaultError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    raw.map(|raw| parse_row(path, raw)).transpose()
}
