//! Tables of the fraud projection, in their own SQLite file `fraud.db`.
//!
//! Every cursor column is the table's rowid (`INTEGER PRIMARY KEY`), so paging with
//! `cursor > after ORDER BY cursor` is a range scan. Each filterable column has an index that
//! ends with the cursor, so a filtered page is a range scan on that index. District columns
//! compare without case, and their indexes are declared the same way so that they are used.

/// Creates the tables and indexes; safe to run on every open.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS checkpoint (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS centres (
    centre_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    district TEXT NOT NULL COLLATE NOCASE
);
CREATE INDEX IF NOT EXISTS centres_by_district ON centres (district);
CREATE TABLE IF NOT EXISTS appointments (
    appointment_id TEXT PRIMARY KEY,
    beneficiary_id TEXT NOT NULL,
    centre_id TEXT NOT NULL,
    walk_in INTEGER NOT NULL,
    booked_position INTEGER NOT NULL,
    unlocked_position INTEGER NOT NULL DEFAULT 0,
    verified_position INTEGER,
    verifier_id TEXT,
    dose_position INTEGER,
    vaccinator_id TEXT,
    certificate_position INTEGER
);
CREATE INDEX IF NOT EXISTS appointments_by_beneficiary ON appointments (beneficiary_id);
CREATE TABLE IF NOT EXISTS attempts (
    position INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    attempt INTEGER,
    max_attempts INTEGER,
    locked INTEGER NOT NULL DEFAULT 0,
    centre_id TEXT NOT NULL,
    district TEXT NOT NULL COLLATE NOCASE,
    booked_centre_id TEXT,
    verifier_id TEXT NOT NULL,
    appointment_id TEXT NOT NULL,
    beneficiary_id TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (at_ms);
CREATE INDEX IF NOT EXISTS attempts_by_appointment ON attempts (appointment_id, position);
CREATE INDEX IF NOT EXISTS attempts_by_beneficiary ON attempts (beneficiary_id, position);
CREATE INDEX IF NOT EXISTS attempts_by_verifier ON attempts (verifier_id, position);
CREATE INDEX IF NOT EXISTS attempts_by_centre ON attempts (centre_id, position);
CREATE INDEX IF NOT EXISTS attempts_by_centre_reason ON attempts (centre_id, reason, position);
CREATE INDEX IF NOT EXISTS attempts_by_district ON attempts (district, position);
CREATE INDEX IF NOT EXISTS attempts_by_district_reason ON attempts (district, reason, position);
CREATE INDEX IF NOT EXISTS attempts_by_reason ON attempts (reason, position);
CREATE INDEX IF NOT EXISTS attempts_by_outcome ON attempts (outcome, position);
CREATE TABLE IF NOT EXISTS centre_days (
    row_id INTEGER PRIMARY KEY,
    centre_id TEXT NOT NULL,
    day TEXT NOT NULL,
    district TEXT NOT NULL COLLATE NOCASE,
    COUNTERS,
    UNIQUE (centre_id, day)
);
CREATE INDEX IF NOT EXISTS centre_days_by_day ON centre_days (day);
CREATE INDEX IF NOT EXISTS centre_days_by_centre ON centre_days (centre_id, row_id);
CREATE INDEX IF NOT EXISTS centre_days_by_district ON centre_days (district, row_id);
CREATE INDEX IF NOT EXISTS centre_days_by_district_day ON centre_days (district, day);
CREATE TABLE IF NOT EXISTS verifier_days (
    row_id INTEGER PRIMARY KEY,
    verifier_id TEXT NOT NULL,
    day TEXT NOT NULL,
    centre_id TEXT NOT NULL,
    district TEXT NOT NULL COLLATE NOCASE,
    COUNTERS,
    UNIQUE (verifier_id, day)
);
CREATE INDEX IF NOT EXISTS verifier_days_by_day ON verifier_days (day);
CREATE INDEX IF NOT EXISTS verifier_days_by_verifier ON verifier_days (verifier_id, row_id);
CREATE INDEX IF NOT EXISTS verifier_days_by_centre ON verifier_days (centre_id, row_id);
CREATE INDEX IF NOT EXISTS verifier_days_by_district ON verifier_days (district, row_id);
CREATE INDEX IF NOT EXISTS verifier_days_by_district_day ON verifier_days (district, day);
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    subject TEXT NOT NULL,
    centre_id TEXT,
    district TEXT COLLATE NOCASE,
    verifier_id TEXT,
    appointment_id TEXT,
    beneficiary_id TEXT,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (at_ms);
CREATE INDEX IF NOT EXISTS alerts_by_subject ON alerts (kind, subject, at_ms);
CREATE INDEX IF NOT EXISTS alerts_by_kind ON alerts (kind, seq);
CREATE INDEX IF NOT EXISTS alerts_by_centre ON alerts (centre_id, seq);
CREATE INDEX IF NOT EXISTS alerts_by_district ON alerts (district, seq);
CREATE INDEX IF NOT EXISTS alerts_by_verifier ON alerts (verifier_id, seq);
CREATE INDEX IF NOT EXISTS alerts_by_appointment ON alerts (appointment_id, seq);
CREATE INDEX IF NOT EXISTS alerts_by_beneficiary ON alerts (beneficiary_id, seq);
CREATE TABLE IF NOT EXISTS disputes (
    position INTEGER PRIMARY KEY,
    dispute_id TEXT NOT NULL UNIQUE,
    at_ms INTEGER NOT NULL,
    appointment_id TEXT NOT NULL,
    beneficiary_id TEXT NOT NULL,
    centre_id TEXT,
    district TEXT COLLATE NOCASE,
    verifier_id TEXT,
    vaccinator_id TEXT,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    investigator_id TEXT,
    resolved_position INTEGER,
    resolved_at_ms INTEGER,
    resolution_request_id TEXT,
    revocation_reason TEXT,
    revoked_position INTEGER,
    verified_position INTEGER,
    dose_position INTEGER,
    certificate_position INTEGER
);
CREATE INDEX IF NOT EXISTS disputes_by_time ON disputes (at_ms);
CREATE INDEX IF NOT EXISTS disputes_by_appointment ON disputes (appointment_id, position);
CREATE INDEX IF NOT EXISTS disputes_by_beneficiary ON disputes (beneficiary_id, position);
CREATE INDEX IF NOT EXISTS disputes_by_verifier ON disputes (verifier_id, position);
CREATE INDEX IF NOT EXISTS disputes_by_centre ON disputes (centre_id, position);
CREATE INDEX IF NOT EXISTS disputes_by_district ON disputes (district, position);
CREATE INDEX IF NOT EXISTS disputes_by_status ON disputes (status, position);
"#;

/// Indexes the apply path reads, three of them named with `INDEXED BY` by the alert rules and
/// the lock lookup. A rebuild into a fresh file keeps these and creates the others at the end.
pub(crate) const APPLY_INDEXES: &[&str] =
    &["attempts_by_time", "attempts_by_appointment", "attempts_by_verifier", "alerts_by_subject", "disputes_by_appointment"];

/// Deletes every derived row, for a rebuild from position 0.
pub(crate) const RESET: &str = "
    DELETE FROM centres; DELETE FROM appointments; DELETE FROM attempts;
    DELETE FROM centre_days; DELETE FROM verifier_days; DELETE FROM alerts; DELETE FROM disputes;
    DELETE FROM meta; DELETE FROM checkpoint;";
