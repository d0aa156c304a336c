//! The service database (`service.db` in the data folder): staff and citizen tokens, OTPs,
//! citizens' mobile numbers for SMS, and the notification outbox.
//!
//! None of this is in the event log because it contains secrets or contact data: tokens and OTPs
//! are stored as SHA-256 or HMAC digests, and the outbox contains message texts with codes until
//! the dispatcher hands them to the SMS sink.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::group::GroupWriter;
use subtle::ConstantTimeEq;

/// Staff and citizen roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Citizen,
    Verifier,
    Supervisor,
    Investigator,
    Auditor,
    Admin,
}

impl Role {
    /// Returns the snake_case name stored in tokens and events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Verifier => "verifier",
            Role::Supervisor => "supervisor",
            Role::Investigator => "investigator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored role name.
    pub fn parse(text: &str) -> Option<Self> {
        [Role::Citizen, Role::Verifier, Role::Supervisor, Role::Investigator, Role::Auditor, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// A token as stored, without its secret.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenInfo {
    /// Public id, recorded in events as the actor.
    pub token_id: String,
    /// Role granted.
    pub role: Role,
    /// Centre the token is scoped to (verifier, supervisor).
    pub centre_id: Option<String>,
    /// HMAC of the citizen's mobile number (citizen tokens only).
    #[serde(skip)]
    pub mobile_hash: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry; staff tokens have none.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the token was revoked.
    pub revoked: bool,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxMessage {
    /// Outbox row id: the dispatcher marks rows delivered by id.
    pub id: i64,
    /// Message kind: `otp`, `booking_confirmation`, `dose_recorded`, `certificate_ready`.
    pub kind: String,
    /// Recipient mobile number, ten digits.
    pub mobile: String,
    /// SMS text.
    pub text: String,
    /// Appointment the message is about, if any.
    pub appointment_id: Option<String>,
    /// Time it was queued.
    pub queued_at: DateTime<Utc>,
}

/// Failures of the service database.
#[derive(Debug, thiserror::Error)]
#[error("service database {path} failed: {cause}")]
pub struct ServiceDbError {
    /// File that failed.
    pub path: PathBuf,
    /// SQLite's message.
    pub cause: String,
}

/// Outcome of checking an OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpCheck {
    /// Correct and fresh; the OTP is now used up.
    Valid,
    /// Wrong digits; `remaining` attempts are left.
    Wrong { remaining: u32 },
    /// No OTP was requested, it expired, or its attempts are used up.
    ExpiredOrMissing,
}

/// OTP lifetime, as CoWIN's 3-minute OTPs.
pub const OTP_LIFETIME_SECONDS: i64 = 180;
/// Wrong OTP entries allowed before the OTP is void.
pub const OTP_MAX_ATTEMPTS: u32 = 3;
/// OTPs that may be sent to one number in one hour.
pub const OTP_MAX_SENDS_PER_HOUR: u32 = 5;
/// Citizen token lifetime.
pub const CITIZEN_TOKEN_HOURS: i64 = 12;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role TEXT NOT NULL,
    centre_id TEXT,
    mobile_hash TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS otps (
    mobile_hash TEXT PRIMARY KEY,
    otp_hmac TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    window_start INTEGER NOT NULL,
    sends_in_window INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    mobile_hash TEXT PRIMARY KEY,
    mobile TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    mobile TEXT NOT NULL,
    text TEXT NOT NULL,
    appointment_id TEXT,
    queued_at TEXT NOT NULL,
    delivered_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, id);
CREATE TABLE IF NOT EXISTS idempotency (
    actor_id TEXT NOT NULL,
    key TEXT NOT NULL,
    route TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (actor_id, key)
);
"#;

/// Handle on `service.db`.
///
/// Writes go through a [`GroupWriter`]: one thread owns the read-write connection and commits
/// the writes queued at the same moment in one transaction, so concurrent requests share an fsync
/// and no async worker waits for one. Reads use a separate connection, which WAL mode lets read
/// while the writer commits.
pub struct ServiceDb {
    /// Path, for error messages.
    path: PathBuf,
    /// Connection for reads; every read here is a short point query.
    reader: Mutex<Connection>,
    /// The only connection that writes, on its own thread.
    writer: GroupWriter,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ServiceDb {
    /// Opens or creates the database.
    pub fn open(path: &Path) -> Result<Self, ServiceDbError> {
        let to_error = |err: rusqlite::Error| ServiceDbError { path: path.to_owned(), cause: err.to_string() };
        let connection = Connection::open(path).map_err(to_error)?;
        connection
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")
            .map_err(to_error)?;
        connection.execute_batch(SCHEMA).map_err(to_error)?;
        crate::slip_codes::ensure_table(&connection).map_err(to_error)?;
        let reader = Connection::open(path).map_err(to_error)?;
        reader.execute_batch("PRAGMA busy_timeout=5000;").map_err(to_error)?;
        let writer = GroupWriter::start(connection, path, "service")
            .map_err(|err| ServiceDbError { path: path.to_owned(), cause: err.to_string() })?;
        Ok(Self { path: path.to_owned(), reader: Mutex::new(reader), writer })
    }

    /// Runs a read on the reader connection.
    fn run<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ServiceDbError> {
        let connection = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&connection).map_err(|err| self.error(err))
    }

    /// Runs a write in the writer's next group and blocks this thread until it is committed.
    /// For command-line tools and rare staff actions; request paths that run often use
    /// [`ServiceDb::write`].
    fn write_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ServiceDbError> {
        self.writer.write_blocking(work).map_err(|err| self.error(err))
    }

    /// Runs a write in the writer's next group and waits until it is committed.
    pub async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ServiceDbError> {
        self.writer.write(work).await.map_err(|err| self.error(err))
    }

    fn error(&self, cause: impl std::fmt::Display) -> ServiceDbError {
        ServiceDbError { path: self.path.clone(), cause: cause.to_string() }
    }

    /// Creates a token and returns its plain form `vxl.<token id>.<secret>`, shown once.
    pub fn create_token(
        &self,
        role: Role,
        centre_id: Option<String>,
        mobile_hash: Option<String>,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(String, TokenInfo), ServiceDbError> {
        let mut id_bytes = [0u8; 8];
        let mut secret_bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id_bytes);
        rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
        let token_id = hex::encode(id_bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
        let plain = format!("vxl.{token_id}.{secret}");
        let row = (token_id.clone(), sha256_hex(secret.as_bytes()), centre_id.clone(), mobile_hash.clone());
        self.write_blocking(move |connection| {
            let (token_id, secret_sha256, centre_id, mobile_hash) = row;
            connection.execute(
                "INSERT INTO tokens (token_id, secret_sha256, role, centre_id, mobile_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    token_id,
                    secret_sha256,
                    role.as_str(),
                    centre_id,
                    mobile_hash,
                    now.to_rfc3339(),
                    expires_at.map(|time| time.to_rfc3339())
                ],
            )
        })?;
        let info = TokenInfo { token_id, role, centre_id, mobile_hash, created_at: now, expires_at, revoked: false };
        Ok((plain, info))
    }

    /// Returns the token's record when the plain token is genuine, not revoked and not expired.
    pub fn authenticate(&self, plain: &str, now: DateTime<Utc>) -> Result<Option<TokenInfo>, ServiceDbError> {
        let mut parts = plain.trim().splitn(3, '.');
        let (Some("vxl"), Some(token_id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(None);
        };
        let Some((stored_hash, info)) = self.token_with_hash(token_id)? else {
            return Ok(None);
        };
        let presented = sha256_hex(secret.as_bytes());
        let genuine: bool = presented.as_bytes().ct_eq(stored_hash.as_bytes()).into();
        let expired = info.expires_at.is_some_and(|expiry| expiry <= now);
        Ok((genuine && !info.revoked && !expired).then_some(info))
    }

    fn token_with_hash(&self, token_id: &str) -> Result<Option<(String, TokenInfo)>, ServiceDbError> {
        self.run(|connection| {
            connection
                .query_row(
                    "SELECT secret_sha256, token_id, role, centre_id, mobile_hash, created_at, expires_at, revoked
                     FROM tokens WHERE token_id = ?1",
                    params![token_id],
                    |row| Ok((row.get::<_, String>(0)?, token_from_row(row, 1)?)),
                )
                .optional()
        })
    }

    /// Lists staff tokens (citizen tokens are omitted), oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, ServiceDbError> {
        self.run(|connection| {
            let mut statement = connection.prepare(
                "SELECT token_id, role, centre_id, mobile_hash, created_at, expires_at, revoked
                 FROM tokens WHERE role != 'citizen' ORDER BY created_at, token_id",
            )?;
            let rows = statement.query_map([], |row| token_from_row(row, 0))?;
            rows.collect()
        })
    }

    /// Revokes a token; returns false when no such token exists.
    pub fn revoke_token(&self, token_id: &str) -> Result<bool, ServiceDbError> {
        let token_id = token_id.to_owned();
        self.write_blocking(move |connection| {
            connection.execute("UPDATE tokens SET revoked = 1 WHERE token_id = ?1", params![token_id]).map(|rows| rows == 1)
        })
    }

    /// Stores a new OTP digest for a mobile hash, enforcing the hourly send limit.
    ///
    /// Returns false when the number has had [`OTP_MAX_SENDS_PER_HOUR`] OTPs this hour.
    pub fn store_otp(&self, mobile_hash: &str, otp_hmac: &str, now: DateTime<Utc>) -> Result<bool, ServiceDbError> {
        let now_s = now.timestamp();
        let (mobile_hash, otp_hmac) = (mobile_hash.to_owned(), otp_hmac.to_owned());
        self.write_blocking(move |connection| {
            let existing: Option<(i64, u32)> = connection
                .query_row(
                    "SELECT window_start, sends_in_window FROM otps WHERE mobile_hash = ?1",
                    params![mobile_hash],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let (window_start, sends) = match existing {
                Some((start, sends)) if now_s - start < 3600 => (start, sends),
                _ => (now_s, 0),
            };
            if sends >= OTP_MAX_SENDS_PER_HOUR {
                return Ok(false);
            }
            connection.execute(
                "INSERT INTO otps (mobile_hash, otp_hmac, expires_at, attempts, window_start, sends_in_window)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5)
                 ON CONFLICT (mobile_hash) DO UPDATE SET otp_hmac = excluded.otp_hmac, expires_at = excluded.expires_at,
                     attempts = 0, window_start = excluded.window_start, sends_in_window = excluded.sends_in_window",
                params![mobile_hash, otp_hmac, now_s + OTP_LIFETIME_SECONDS, window_start, sends + 1],
            )?;
            Ok(true)
        })
    }

    /// Checks an OTP digest; a valid OTP is used up, and so is one with no attempts left.
    pub fn check_otp(&self, mobile_hash: &str, otp_hmac: &str, now: DateTime<Utc>) -> Result<OtpCheck, ServiceDbError> {
        let (mobile_hash, otp_hmac) = (mobile_hash.to_owned(), otp_hmac.to_owned());
        self.write_blocking(move |connection| {
            let row: Option<(String, i64, u32)> = connection
                .query_row(
                    "SELECT otp_hmac, expires_at, attempts FROM otps WHERE mobile_hash = ?1",
                    params![mobile_hash],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((stored, expires_at, attempts)) = row else {
                return Ok(OtpCheck::ExpiredOrMissing);
            };
            if expires_at <= now.timestamp() || attempts >= OTP_MAX_ATTEMPTS || stored.is_empty() {
                return Ok(OtpCheck::ExpiredOrMissing);
            }
            let matches: bool = stored.as_bytes().ct_eq(otp_hmac.as_bytes()).into();
            if matches {
                connection.execute("UPDATE otps SET otp_hmac = '' WHERE mobile_hash = ?1", params![mobile_hash])?;
                return Ok(OtpCheck::Valid);
            }
            connection.execute("UPDATE otps SET attempts = attempts + 1 WHERE mobile_hash = ?1", params![mobile_hash])?;
            Ok(OtpCheck::Wrong { remaining: OTP_MAX_ATTEMPTS - attempts - 1 })
        })
    }

    /// Remembers the mobile number behind a hash, so that SMS can reach it.
    pub fn save_contact(&self, mobile_hash: &str, mobile: &str) -> Result<(), ServiceDbError> {
        let (mobile_hash, mobile) = (mobile_hash.to_owned(), mobile.to_owned());
        self.write_blocking(move |connection| {
            connection.execute(
                "INSERT INTO contacts (mobile_hash, mobile) VALUES (?1, ?2) ON CONFLICT (mobile_hash) DO NOTHING",
                params![mobile_hash, mobile],
            )?;
            Ok(())
        })
    }

    /// Returns the mobile number behind a hash.
    pub fn contact(&self, mobile_hash: &str) -> Result<Option<String>, ServiceDbError> {
        self.run(|connection| {
            connection
                .query_row("SELECT mobile FROM contacts WHERE mobile_hash = ?1", params![mobile_hash], |row| row.get(0))
                .optional()
        })
    }

    /// Queues an SMS in the outbox.
    pub async fn queue_message(
        &self,
        kind: &str,
        mobile: &str,
        text: &str,
        appointment_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceDbError> {
        let message = OutboxRow::new(kind, mobile, text, appointment_id, now);
        self.write(move |connection| message.insert(connection)).await
    }

    /// Returns up to `limit` undelivered messages, oldest first.
    pub fn pending_messages(&self, limit: usize) -> Result<Vec<OutboxMessage>, ServiceDbError> {
        self.run(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, kind, mobile, text, appointment_id, queued_at FROM outbox
                 WHERE delivered_at IS NULL ORDER BY id LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit as i64], |row| {
                let queued: String = row.get(5)?;
                Ok(OutboxMessage {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    mobile: row.get(2)?,
                    text: row.get(3)?,
                    appointment_id: row.get(4)?,
                    queued_at: DateTime::parse_from_rfc3339(&queued).map(|time| time.to_utc()).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    /// Marks messages delivered.
    pub async fn mark_delivered(&self, ids: &[i64], now: DateTime<Utc>) -> Result<(), ServiceDbError> {
        let ids = ids.to_vec();
        self.write(move |connection| {
            let mut statement = connection.prepare_cached("UPDATE outbox SET delivered_at = ?2 WHERE id = ?1")?;
            for id in ids {
                statement.execute(params![id, now.to_rfc3339()])?;
            }
            Ok(())
        })
        .await
    }

    /// Counts a failed delivery attempt.
    pub async fn mark_failed(&self, ids: &[i64]) -> Result<(), ServiceDbError> {
        let ids = ids.to_vec();
        self.write(move |connection| {
            for id in ids {
                connection.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?1", params![id])?;
            }
            Ok(())
        })
        .await
    }

    /// Returns the stored response for an idempotency key of this actor, if any.
    pub fn idempotent_response(&self, actor_id: &str, key: &str) -> Result<Option<(String, u16, String)>, ServiceDbError> {
        self.run(|connection| {
            connection
                .query_row(
                    "SELECT route, status, body FROM idempotency WHERE actor_id = ?1 AND key = ?2",
                    params![actor_id, key],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
        })
    }

    /// Stores the first response for an idempotency key; a second store of the same key is ignored.
    pub async fn save_idempotent_response(
        &self,
        actor_id: &str,
        key: &str,
        route: &str,
        status: u16,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceDbError> {
        let (actor_id, key, route, body) = (actor_id.to_owned(), key.to_owned(), route.to_owned(), body.to_owned());
        self.write(move |connection| {
            connection.execute(
                "INSERT OR IGNORE INTO idempotency (actor_id, key, route, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![actor_id, key, route, status, body, now.to_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }
}

/// An outbox message ready to insert, owned so that it can move to the writer thread.
pub struct OutboxRow {
    /// Message kind, such as `booking_confirmation`.
    kind: String,
    /// Mobile number the SMS goes to.
    mobile: String,
    /// Message text.
    text: String,
    /// Appointment the message is about, if any.
    appointment_id: Option<String>,
    /// When the message was queued.
    queued_at: DateTime<Utc>,
}

impl OutboxRow {
    /// Builds a message row.
    pub fn new(kind: &str, mobile: &str, text: &str, appointment_id: Option<&str>, queued_at: DateTime<Utc>) -> Self {
        OutboxRow {
            kind: kind.to_owned(),
            mobile: mobile.to_owned(),
            text: text.to_owned(),
            appointment_id: appointment_id.map(str::to_owned),
            queued_at,
        }
    }

    /// Inserts the row; runs inside a write job of [`ServiceDb::write`].
    pub fn insert(&self, connection: &Connection) -> rusqlite::Result<()> {
        connection
            .prepare_cached("INSERT INTO outbox (kind, mobile, text, appointment_id, queued_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![self.kind, self.mobile, self.text, self.appointment_id, self.queued_at.to_rfc3339()])?;
        Ok(())
    }
}

fn token_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<TokenInfo> {
    let role: String = row.get(first + 1)?;
    let created: String = row.get(first + 4)?;
    let expires: Option<String> = row.get(first + 5)?;
    let parse_time = |text: &str| DateTime::parse_from_rfc3339(text).map(|time| time.to_utc()).ok();
    Ok(TokenInfo {
        token_id: row.get(first)?,
        role: Role::parse(&role).unwrap_or(Role::Citizen),
        centre_id: row.get(first + 2)?,
        mobile_hash: row.get(first + 3)?,
        created_at: parse_time(&created).unwrap_or_default(),
        expires_at: expires.as_deref().and_then(parse_time),
        revoked: row.get(first + 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, ServiceDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ServiceDb::open(&dir.path().join("service.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn token_authenticates_until_revoked() {
        let (_dir, db) = db();
        let now = Utc::now();
        let (plain, info) = db.create_token(Role::Verifier, Some("c1".into()), None, now, None).unwrap();
        let found = db.authenticate(&plain, now).unwrap().unwrap();
        assert_eq!(found.token_id, info.token_id);
        assert_eq!(found.role, Role::Verifier);
        assert!(db.revoke_token(&info.token_id).unwrap());
        assert!(db.authenticate(&plain, now).unwrap().is_none());
    }

    #[test]
    fn token_wrong_secret_rejected() {
        let (_dir, db) = db();
        let now = Utc::now();
        let (plain, _) = db.create_token(Role::Admin, None, None, now, None).unwrap();
        let mut tampered = plain.clone();
        tampered.pop();
        tampered.push(if plain.ends_with('A') { 'B' } else { 'A' });
        assert!(db.authenticate(&tampered, now).unwrap().is_none());
        assert!(db.authenticate("garbage", now).unwrap().is_none());
        assert!(db.authenticate("", now).unwrap().is_none());
    }

    #[test]
    fn token_expires() {
        let (_dir, db) = db();
        let now = Utc::now();
        let expiry = now + chrono::Duration::hours(1);
        let (plain, _) = db.create_token(Role::Citizen, None, Some("h".into()), now, Some(expiry)).unwrap();
        assert!(db.authenticate(&plain, now).unwrap().is_some());
        assert!(db.authenticate(&plain, expiry).unwrap().is_none());
    }

    #[test]
    fn token_secret_not_stored_plain() {
        let (dir, db) = db();
        let (plain, _) = db.create_token(Role::Admin, None, None, Utc::now(), None).unwrap();
        drop(db);
        let secret = plain.rsplit('.').next().unwrap();
        let connection = Connection::open(dir.path().join("service.db")).unwrap();
        let stored: String = connection.query_row("SELECT secret_sha256 FROM tokens", [], |row| row.get(0)).unwrap();
        assert!(!stored.contains(secret));
    }

    #[test]
    fn otp_three_wrong_attempts_void() {
        let (_dir, db) = db();
        let now = Utc::now();
        assert!(db.store_otp("m", "right", now).unwrap());
        assert_eq!(db.check_otp("m", "wrong", now).unwrap(), OtpCheck::Wrong { remaining: 2 });
        assert_eq!(db.check_otp("m", "wrong", now).unwrap(), OtpCheck::Wrong { remaining: 1 });
        assert_eq!(db.check_otp("m", "wrong", now).unwrap(), OtpCheck::Wrong { remaining: 0 });
        assert_eq!(db.check_otp("m", "right", now).unwrap(), OtpCheck::ExpiredOrMissing);
    }

    #[test]
    fn otp_single_use_and_expiry() {
        let (_dir, db) = db();
        let now = Utc::now();
        db.store_otp("m", "right", now).unwrap();
        assert_eq!(db.check_otp("m", "right", now).unwrap(), OtpCheck::Valid);
        assert_eq!(db.check_otp("m", "right", now).unwrap(), OtpCheck::ExpiredOrMissing);
        db.store_otp("m", "next", now).unwrap();
        let later = now + chrono::Duration::seconds(OTP_LIFETIME_SECONDS);
        assert_eq!(db.check_otp("m", "next", later).unwrap(), OtpCheck::ExpiredOrMissing);
    }

    #[test]
    fn otp_send_limit_per_hour() {
        let (_dir, db) = db();
        let now = Utc::now();
        for _ in 0..OTP_MAX_SENDS_PER_HOUR {
            assert!(db.store_otp("m", "x", now).unwrap());
        }
        assert!(!db.store_otp("m", "x", now).unwrap());
        assert!(db.store_otp("m", "x", now + chrono::Duration::hours(1)).unwrap());
    }
}
