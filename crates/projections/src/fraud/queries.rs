//! Filtered, cursor-paged queries on the fraud projection.
//!
//! Every page is ordered by its cursor: the event position for attempts and disputes, the alert
//! sequence for alerts, the row id for daily counters. `after` continues past the last row
//! returned, so rows appended later never shift a page. A filtered page reads one index that
//! starts with the filtered column and ends with the cursor. A time range becomes a cursor range
//! first, because store times never decrease with position; when the projector saw a time go
//! backwards, the time range is applied as a plain filter instead.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, NaiveDate, SecondsFormat};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::alerts::AlertKind;
use super::counters::{self, Counters};
use super::FraudProjections;
use crate::ProjectionError;

/// Rows per page when the caller gives no limit.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// Reasons an attempt row can carry: code rejection reasons and dose rejection reasons.
pub const ATTEMPT_REASONS: [&str; 9] = [
    "wrong_code",
    "wrong_centre",
    "wrong_date",
    "appointment_cancelled",
    "already_used",
    "locked",
    "code_not_verified",
    "already_administered",
    "wrong_vaccine",
];

/// Dispute kinds accepted by the dispute filter.
pub const DISPUTE_KINDS: [&str; 2] = ["dose_not_received", "certificate_missing"];

/// A query named a value the projection does not know, or failed.
#[derive(Debug, thiserror::Error)]
pub enum FraudQueryError {
    /// A filter value is unknown; `param` names the query parameter.
    #[error("{message}")]
    Invalid {
        /// Query parameter at fault.
        param: &'static str,
        /// Description of the fault, naming the value.
        message: String,
    },
    /// The projection database failed.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// Start and length of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Cursor of the last row already seen; 0 starts at the beginning.
    pub after: u64,
    /// Rows wanted, 1 to [`MAX_PAGE_SIZE`].
    pub limit: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { after: 0, limit: DEFAULT_PAGE_SIZE }
    }
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// Rows in cursor order.
    pub items: Vec<T>,
    /// Cursor to pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<u64>,
    /// Position of the last event the projection had applied when the page was read.
    pub projection_position: u64,
}

/// Inclusive time bounds, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Earliest time included.
    pub from_ms: Option<i64>,
    /// Latest time included.
    pub to_ms: Option<i64>,
}

/// Outcome of an attempt row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The code was accepted.
    Verified,
    /// The code was rejected.
    Rejected,
    /// A dose was pushed and rejected.
    DoseRejected,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Verified, Outcome::Rejected, Outcome::DoseRejected];

    /// Returns the snake_case name stored in `attempts.outcome`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Verified => super::apply::OUTCOME_VERIFIED,
            Outcome::Rejected => super::apply::OUTCOME_REJECTED,
            Outcome::DoseRejected => super::apply::OUTCOME_DOSE_REJECTED,
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == text)
    }
}

/// Status of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeStatus {
    /// Not resolved yet.
    Open,
    /// Resolved in the citizen's favour.
    Upheld,
    /// Resolved against the citizen's claim.
    Rejected,
}

impl DisputeStatus {
    /// Every status.
    pub const ALL: [DisputeStatus; 3] = [DisputeStatus::Open, DisputeStatus::Upheld, DisputeStatus::Rejected];

    /// Returns the snake_case name stored in `disputes.status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Upheld => "upheld",
            DisputeStatus::Rejected => "rejected",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// Filters of the attempts query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    /// Centre where the attempt happened.
    pub centre_id: Option<String>,
    /// Verifier or vaccinator token id.
    pub verifier_id: Option<String>,
    /// District of the centre where the attempt happened, compared without case.
    pub district: Option<String>,
    pub beneficiary_id: Option<String>,
    pub appointment_id: Option<String>,
    pub outcome: Option<Outcome>,
    /// One of [`ATTEMPT_REASONS`].
    pub reason: Option<String>,
    /// Store time of the attempt.
    pub time: TimeRange,
}

/// A code verification attempt or a rejected dose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRow {
    /// Log position of the event; also the page cursor.
    pub position: u64,
    /// Store time, RFC 3339 in UTC.
    pub at: String,
    /// `verified`, `rejected` or `dose_rejected`.
    pub outcome: String,
    /// Rejection reason; `None` for a verified code.
    pub reason: Option<String>,
    /// Counted rejected attempts of the appointment so far, for code rejections.
    pub attempt: Option<u32>,
    /// Rejected attempts that lock the appointment, as in force when the code was rejected.
    pub max_attempts: Option<u32>,
    /// Whether this rejection locked the appointment.
    pub locked: bool,
    /// Centre where the attempt happened.
    pub centre_id: String,
    /// District of that centre.
    pub district: String,
    /// Centre the appointment was booked at; differs from `centre_id` for `wrong_centre`.
    pub booked_centre_id: Option<String>,
    /// Verifier or vaccinator token id.
    pub verifier_id: String,
    pub appointment_id: String,
    pub beneficiary_id: Option<String>,
}

/// Filters of the daily counters queries.
#[derive(Debug, Clone, Default)]
pub struct AggregateFilter {
    pub centre_id: Option<String>,
    /// Verifier token id; only for the per-verifier query.
    pub verifier_id: Option<String>,
    /// District, compared without case.
    pub district: Option<String>,
    /// First day included (India Standard Time).
    pub from_day: Option<NaiveDate>,
    /// Last day included.
    pub to_day: Option<NaiveDate>,
}

/// A subject's value of one metric beside the same metric over its district's peers on that day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerMetric {
    /// The subject's value; `None` when undefined (a rate with nothing to divide by).
    pub value: Option<f64>,
    /// Median over the district's subjects that day (the subject included).
    pub district_median: Option<f64>,
    /// Mean over the same subjects.
    pub district_mean: Option<f64>,
    /// `value / district_median`; `None` when either is missing or the median is 0.
    pub ratio_to_median: Option<f64>,
    /// `value / district_mean`; `None` when either is missing or the mean is 0.
    pub ratio_to_mean: Option<f64>,
}

/// Comparison of a subject with the other centres or verifiers of its district on the same day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerComparison {
    /// Centres or verifiers of the district with activity that day, the subject included.
    pub peers: u64,
    /// Share of submitted codes rejected.
    pub rejection_rate: PeerMetric,
    /// Appointments locked.
    pub lockouts: PeerMetric,
    /// Dose attempts rejected.
    pub doses_rejected: PeerMetric,
    /// Share of recorded doses given to walk-ins.
    pub walk_in_share: PeerMetric,
}

/// One centre's or verifier's counters for one day, with the district comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateRow {
    /// Row id; the page cursor.
    pub cursor: u64,
    /// Centre id or verifier token id.
    pub subject_id: String,
    /// Centre (for a verifier, the centre it worked at).
    pub centre_id: String,
    pub district: String,
    /// Day in India Standard Time, `YYYY-MM-DD`.
    pub day: String,
    pub counters: Counters,
    pub comparison: PeerComparison,
}

/// Filters of the alerts query.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub kind: Option<AlertKind>,
    pub centre_id: Option<String>,
    pub verifier_id: Option<String>,
    pub district: Option<String>,
    pub beneficiary_id: Option<String>,
    pub appointment_id: Option<String>,
    /// Store time of the event that raised the alert.
    pub time: TimeRange,
}

/// An alert with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// Alert sequence number, in the order alerts were raised; the page cursor.
    pub cursor: u64,
    /// Stable id, `<kind>-<position>`; the same after a rebuild.
    pub alert_id: String,
    pub kind: String,
    /// Position of the event that raised the alert.
    pub position: u64,
    /// Store time of that event, RFC 3339 in UTC.
    pub at: String,
    pub centre_id: Option<String>,
    pub district: Option<String>,
    pub verifier_id: Option<String>,
    pub appointment_id: Option<String>,
    pub beneficiary_id: Option<String>,
    /// One-line description.
    pub summary: String,
    /// Positions of the events that raised the alert, ascending (at most 200).
    pub evidence: Vec<u64>,
}

/// Filters of the disputes query.
#[derive(Debug, Clone, Default)]
pub struct DisputeFilter {
    pub status: Option<DisputeStatus>,
    /// One of [`DISPUTE_KINDS`].
    pub kind: Option<String>,
    /// Booked centre of the disputed appointment.
    pub centre_id: Option<String>,
    /// Verifier or vaccinator who recorded the disputed dose.
    pub verifier_id: Option<String>,
    pub district: Option<String>,
    pub beneficiary_id: Option<String>,
    pub appointment_id: Option<String>,
    /// Time the dispute was raised.
    pub time: TimeRange,
}

/// A dispute and its resolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisputeRow {
    /// Position of `DisputeRaised`; the page cursor.
    pub position: u64,
    pub dispute_id: String,
    /// Time raised, RFC 3339 in UTC.
    pub raised_at: String,
    pub appointment_id: String,
    pub beneficiary_id: String,
    /// Booked centre.
    pub centre_id: Option<String>,
    pub district: Option<String>,
    /// Verifier who verified the code.
    pub verifier_id: Option<String>,
    /// Vaccinator who recorded the dose.
    pub vaccinator_id: Option<String>,
    pub kind: String,
    pub description: String,
    /// `open`, `upheld` or `rejected`.
    pub status: String,
    /// Investigator's note.
    pub note: Option<String>,
    pub investigator_id: Option<String>,
    pub resolved_position: Option<u64>,
    /// Time resolved, RFC 3339 in UTC.
    pub resolved_at: Option<String>,
    /// `fraud` or `error` when the resolution revoked the certificate.
    pub revocation_reason: Option<String>,
    pub revoked_position: Option<u64>,
    /// Positions of the appointment's `CodeVerified`, `DoseAdministered` and `CertificateIssued`
    /// when the dispute was raised.
    pub verified_position: Option<u64>,
    pub dose_position: Option<u64>,
    pub certificate_position: Option<u64>,
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC.
pub fn format_ms(at_ms: i64) -> String {
    DateTime::from_timestamp_millis(at_ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One equality filter: parameter name (for errors), column, value.
type Equality = (&'static str, Value);

/// A page query on one table.
struct PagePlan<'a> {
    table: &'static str,
    /// Selected columns; the first must be the cursor.
    columns: &'a str,
    /// Rowid column the page is ordered by.
    cursor: &'static str,
    /// Column and index of the time range, with its inclusive bounds.
    range: Option<(&'static str, &'static str, Option<Value>, Option<Value>)>,
    /// Filtered columns and their values.
    equals: Vec<Equality>,
    /// Indexes in order of preference, each with the columns it starts with.
    indexes: &'static [(&'static str, &'static [&'static str])],
}

/// Returns the rows of one page and the cursor that follows it.
fn run_page<T>(
    connection: &Connection,
    plan: &PagePlan<'_>,
    page: PageRequest,
    monotonic: bool,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<(Vec<T>, Option<u64>)> {
    let mut lower = page.after as i64;
    let mut upper: Option<i64> = None;
    if let (Some((time_column, time_index, from, to)), true) = (&plan.range, monotonic) {
        if let Some(from) = from {
            let sql = format!(
                "SELECT {cursor} FROM {table} INDEXED BY {time_index} WHERE {time_column} >= ?1 ORDER BY {time_column}, {cursor} LIMIT 1",
                cursor = plan.cursor,
                table = plan.table
            );
            match connection.prepare_cached(&sql)?.query_row([from], |row| row.get::<_, i64>(0)).optional()? {
                Some(first) => lower = lower.max(first - 1),
                None => return Ok((Vec::new(), None)),
            }
        }
        if let Some(to) = to {
            let sql = format!(
                "SELECT {cursor} FROM {table} INDEXED BY {time_index} WHERE {time_column} <= ?1
                 ORDER BY {time_column} DESC, {cursor} DESC LIMIT 1",
                cursor = plan.cursor,
                table = plan.table
            );
            match connection.prepare_cached(&sql)?.query_row([to], |row| row.get::<_, i64>(0)).optional()? {
                Some(last) => upper = Some(last),
                None => return Ok((Vec::new(), None)),
            }
        }
    }

    let filtered: Vec<&str> = plan.equals.iter().map(|(column, _)| *column).collect();
    let index = plan
        .indexes
        .iter()
        .find(|(_, columns)| columns.iter().all(|column| filtered.contains(column)))
        .map_or_else(|| "NOT INDEXED".to_owned(), |(name, _)| format!("INDEXED BY {name}"));

    let mut sql = format!("SELECT {} FROM {} {index} WHERE {} > ?", plan.columns, plan.table, plan.cursor);
    let mut values: Vec<Value> = vec![Value::Integer(lower)];
    if let Some(upper) = upper {
        sql.push_str(&format!(" AND {} <= ?", plan.cursor));
        values.push(Value::Integer(upper));
    }
    for (column, value) in &plan.equals {
        sql.push_str(&format!(" AND {column} = ?"));
        values.push(value.clone());
    }
    if let Some((time_column, _, from, to)) = &plan.range {
        if let Some(from) = from {
            sql.push_str(&format!(" AND {time_column} >= ?"));
            values.push(from.clone());
        }
        if let Some(to) = to {
            sql.push_str(&format!(" AND {time_column} <= ?"));
            values.push(to.clone());
        }
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT ?", plan.cursor));
    values.push(Value::Integer(page.limit as i64 + 1));

    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut items = Vec::with_capacity(page.limit.min(MAX_PAGE_SIZE));
    let mut last_cursor = 0u64;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if items.len() == page.limit {
            more = true;
            break;
        }
        last_cursor = row.get::<_, i64>(0)? as u64;
        items.push(map(row)?);
    }
    Ok((items, more.then_some(last_cursor)))
}

fn text(value: &Option<String>) -> Option<Value> {
    value.as_ref().map(|text| Value::Text(text.clone()))
}

/// Adds an equality filter when `value` is set.
fn push(equals: &mut Vec<Equality>, column: &'static str, value: Option<Value>) {
    if let Some(value) = value {
        equals.push((column, value));
    }
}

fn unsigned(value: Option<i64>) -> Option<u64> {
    value.map(|value| value.max(0) as u64)
}

const ATTEMPT_COLUMNS: &str = "position, at_ms, outcome, reason, attempt, max_attempts, locked, centre_id, district, booked_centre_id,
     verifier_id, appointment_id, beneficiary_id";

const ATTEMPT_INDEXES: &[(&str, &[&str])] = &[
    ("attempts_by_appointment", &["appointment_id"]),
    ("attempts_by_beneficiary", &["beneficiary_id"]),
    ("attempts_by_verifier", &["verifier_id"]),
    ("attempts_by_centre_reason", &["centre_id", "reason"]),
    ("attempts_by_centre", &["centre_id"]),
    ("attempts_by_district_reason", &["district", "reason"]),
    ("attempts_by_district", &["district"]),
    ("attempts_by_reason", &["reason"]),
    ("attempts_by_outcome", &["outcome"]),
];

fn attempt_row(row: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        position: row.get::<_, i64>(0)? as u64,
        at: format_ms(row.get(1)?),
        outcome: row.get(2)?,
        reason: row.get(3)?,
        attempt: row.get(4)?,
        max_attempts: row.get(5)?,
        locked: row.get(6)?,
        centre_id: row.get(7)?,
        district: row.get(8)?,
        booked_centre_id: row.get(9)?,
        verifier_id: row.get(10)?,
        appointment_id: row.get(11)?,
        beneficiary_id: row.get(12)?,
    })
}

const ALERT_COLUMNS: &str =
    "seq, alert_id, kind, position, at_ms, centre_id, district, verifier_id, appointment_id, beneficiary_id, summary, evidence";

const ALERT_INDEXES: &[(&str, &[&str])] = &[
    ("alerts_by_appointment", &["appointment_id"]),
    ("alerts_by_beneficiary", &["beneficiary_id"]),
    ("alerts_by_verifier", &["verifier_id"]),
    ("alerts_by_centre", &["centre_id"]),
    ("alerts_by_district", &["district"]),
    ("alerts_by_kind", &["kind"]),
];

fn alert_row(row: &Row<'_>) -> rusqlite::Result<AlertRow> {
    let evidence: String = row.get(11)?;
    Ok(AlertRow {
        cursor: row.get::<_, i64>(0)? as u64,
        alert_id: row.get(1)?,
        kind: row.get(2)?,
        position: row.get::<_, i64>(3)? as u64,
        at: format_ms(row.get(4)?),
        centre_id: row.get(5)?,
        district: row.get(6)?,
        verifier_id: row.get(7)?,
        appointment_id: row.get(8)?,
        beneficiary_id: row.get(9)?,
        summary: row.get(10)?,
        evidence: serde_json::from_str(&evidence).unwrap_or_default(),
    })
}

const DISPUTE_COLUMNS: &str = "position, dispute_id, at_ms, appointment_id, beneficiary_id, centre_id, district, verifier_id,
     vaccinator_id, kind, description, status, note, investigator_id, resolved_position, resolved_at_ms, revocation_reason,
     revoked_position, verified_position, dose_position, certificate_position";

const DISPUTE_INDEXES: &[(&str, &[&str])] = &[
    ("disputes_by_appointment", &["appointment_id"]),
    ("disputes_by_beneficiary", &["beneficiary_id"]),
    ("disputes_by_verifier", &["verifier_id"]),
    ("disputes_by_centre", &["centre_id"]),
    ("disputes_by_district", &["district"]),
    ("disputes_by_status", &["status"]),
];

fn dispute_row(row: &Row<'_>) -> rusqlite::Result<DisputeRow> {
    Ok(DisputeRow {
        position: row.get::<_, i64>(0)? as u64,
        dispute_id: row.get(1)?,
        raised_at: format_ms(row.get(2)?),
        appointment_id: row.get(3)?,
        beneficiary_id: row.get(4)?,
        centre_id: row.get(5)?,
        district: row.get(6)?,
        verifier_id: row.get(7)?,
        vaccinator_id: row.get(8)?,
        kind: row.get(9)?,
        description: row.get(10)?,
        status: row.get(11)?,
        note: row.get(12)?,
        investigator_id: row.get(13)?,
        resolved_position: unsigned(row.get(14)?),
        resolved_at: row.get::<_, Option<i64>>(15)?.map(format_ms),
        revocation_reason: row.get(16)?,
        revoked_position: unsigned(row.get(17)?),
        verified_position: unsigned(row.get(18)?),
        dose_position: unsigned(row.get(19)?),
        certificate_position: unsigned(row.get(20)?),
    })
}

/// Daily counters table that a query reads.
#[derive(Clone, Copy)]
enum Scope {
    Centre,
    Verifier,
}

impl Scope {
    fn table(self) -> &'static str {
        match self {
            Scope::Centre => "centre_days",
            Scope::Verifier => "verifier_days",
        }
    }

    fn subject_column(self) -> &'static str {
        match self {
            Scope::Centre => "centre_id",
            Scope::Verifier => "verifier_id",
        }
    }

    fn indexes(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Scope::Centre => &[("centre_days_by_centre", &["centre_id"]), ("centre_days_by_district", &["district"])],
            Scope::Verifier => &[
                ("verifier_days_by_verifier", &["verifier_id"]),
                ("verifier_days_by_centre", &["centre_id"]),
                ("verifier_days_by_district", &["district"]),
            ],
        }
    }
}

impl FraudProjections {
    /// Returns a page of code verification attempts and rejected doses.
    pub fn attempts(&self, filter: &AttemptFilter, page: PageRequest) -> Result<Page<AttemptRow>, FraudQueryError> {
        let projection_position = self.checkpoint();
        self.check_known(filter.centre_id.as_deref(), filter.verifier_id.as_deref(), filter.district.as_deref())?;
        self.check_known_booking(filter.appointment_id.as_deref(), filter.beneficiary_id.as_deref())?;
        let mut equals = Vec::new();
        push(&mut equals, "appointment_id", text(&filter.appointment_id));
        push(&mut equals, "beneficiary_id", text(&filter.beneficiary_id));
        push(&mut equals, "verifier_id", text(&filter.verifier_id));
        push(&mut equals, "centre_id", text(&filter.centre_id));
        push(&mut equals, "district", text(&filter.district));
        push(&mut equals, "reason", text(&filter.reason));
        push(&mut equals, "outcome", filter.outcome.map(|outcome| Value::Text(outcome.as_str().into())));
        let plan = PagePlan {
            table: "attempts",
            columns: ATTEMPT_COLUMNS,
            cursor: "position",
            range: time_range("at_ms", "attempts_by_time", filter.time),
            equals,
            indexes: ATTEMPT_INDEXES,
        };
        let (items, next_after) = self.with_reader(|connection| run_page(connection, &plan, page, self.monotonic(), attempt_row))?;
        Ok(Page { items, next_after, projection_position })
    }

    /// Returns a page of per-centre daily counters, each compared with its district's centres.
    pub fn centre_days(&self, filter: &AggregateFilter, page: PageRequest) -> Result<Page<AggregateRow>, FraudQueryError> {
        self.aggregate_days(Scope::Centre, filter, page)
    }

    /// Returns a page of per-verifier daily counters, each compared with its district's verifiers.
    pub fn verifier_days(&self, filter: &AggregateFilter, page: PageRequest) -> Result<Page<AggregateRow>, FraudQueryError> {
        self.aggregate_days(Scope::Verifier, filter, page)
    }

    /// Returns a page of alerts.
    pub fn alerts(&self, filter: &AlertFilter, page: PageRequest) -> Result<Page<AlertRow>, FraudQueryError> {
        let projection_position = self.checkpoint();
        self.check_known(filter.centre_id.as_deref(), filter.verifier_id.as_deref(), filter.district.as_deref())?;
        self.check_known_booking(filter.appointment_id.as_deref(), filter.beneficiary_id.as_deref())?;
        let mut equals = Vec::new();
        push(&mut equals, "appointment_id", text(&filter.appointment_id));
        push(&mut equals, "beneficiary_id", text(&filter.beneficiary_id));
        push(&mut equals, "verifier_id", text(&filter.verifier_id));
        push(&mut equals, "centre_id", text(&filter.centre_id));
        push(&mut equals, "district", text(&filter.district));
        push(&mut equals, "kind", filter.kind.map(|kind| Value::Text(kind.as_str().into())));
        let plan = PagePlan {
            table: "alerts",
            columns: ALERT_COLUMNS,
            cursor: "seq",
            range: time_range("at_ms", "alerts_by_time", filter.time),
            equals,
            indexes: ALERT_INDEXES,
        };
        let (items, next_after) = self.with_reader(|connection| run_page(connection, &plan, page, self.monotonic(), alert_row))?;
        Ok(Page { items, next_after, projection_position })
    }

    /// Returns a page of disputes.
    pub fn disputes(&self, filter: &DisputeFilter, page: PageRequest) -> Result<Page<DisputeRow>, FraudQueryError> {
        let projection_position = self.checkpoint();
        self.check_known(filter.centre_id.as_deref(), filter.verifier_id.as_deref(), filter.district.as_deref())?;
        self.check_known_booking(filter.appointment_id.as_deref(), filter.beneficiary_id.as_deref())?;
        let mut equals = Vec::new();
        push(&mut equals, "appointment_id", text(&filter.appointment_id));
        push(&mut equals, "beneficiary_id", text(&filter.beneficiary_id));
        push(&mut equals, "verifier_id", text(&filter.verifier_id));
        push(&mut equals, "centre_id", text(&filter.centre_id));
        push(&mut equals, "district", text(&filter.district));
        push(&mut equals, "status", filter.status.map(|status| Value::Text(status.as_str().into())));
        push(&mut equals, "kind", text(&filter.kind));
        let plan = PagePlan {
            table: "disputes",
            columns: DISPUTE_COLUMNS,
            cursor: "position",
            range: time_range("at_ms", "disputes_by_time", filter.time),
            equals,
            indexes: DISPUTE_INDEXES,
        };
        let (items, next_after) = self.with_reader(|connection| run_page(connection, &plan, page, self.monotonic(), dispute_row))?;
        Ok(Page { items, next_after, projection_position })
    }

    /// Returns a dispute by id.
    pub fn dispute(&self, dispute_id: &str) -> Result<Option<DisputeRow>, ProjectionError> {
        let sql = format!("SELECT {DISPUTE_COLUMNS} FROM disputes WHERE dispute_id = ?1");
        self.with_reader(|connection| connection.prepare_cached(&sql)?.query_row(params![dispute_id], dispute_row).optional())
    }

    /// Returns the alert with this id.
    pub fn alert(&self, alert_id: &str) -> Result<Option<AlertRow>, ProjectionError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = ?1");
        self.with_reader(|connection| connection.prepare_cached(&sql)?.query_row(params![alert_id], alert_row).optional())
    }

    fn aggregate_days(&self, scope: Scope, filter: &AggregateFilter, page: PageRequest) -> Result<Page<AggregateRow>, FraudQueryError> {
        let projection_position = self.checkpoint();
        self.check_known(filter.centre_id.as_deref(), filter.verifier_id.as_deref(), filter.district.as_deref())?;
        let mut equals = Vec::new();
        if let Scope::Verifier = scope {
            push(&mut equals, "verifier_id", text(&filter.verifier_id));
        }
        push(&mut equals, "centre_id", text(&filter.centre_id));
        push(&mut equals, "district", text(&filter.district));
        let day = |date: Option<NaiveDate>| date.map(|date| Value::Text(date.to_string()));
        let table = scope.table();
        let columns = format!("row_id, {}, centre_id, district, day, {}", scope.subject_column(), counters::select_list(""));
        let plan = PagePlan {
            table,
            columns: &columns,
            cursor: "row_id",
            range: match (filter.from_day, filter.to_day) {
                (None, None) => None,
                (from, to) => Some(("day", if let Scope::Centre = scope { "centre_days_by_day" } else { "verifier_days_by_day" }, day(from), day(to))),
            },
            equals,
            indexes: scope.indexes(),
        };

        self.with_reader(|connection| {
            let (rows, next_after) = run_page(connection, &plan, page, self.monotonic(), |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    Counters::from_row(row, 5)?,
                ))
            })?;

            let mut peers: HashMap<(String, String), Vec<Counters>> = HashMap::new();
            let mut items = Vec::with_capacity(rows.len());
            for (cursor, subject_id, centre_id, district, day, counters) in rows {
                let key = (district.to_lowercase(), day.clone());
                if !peers.contains_key(&key) {
                    let group = district_peers(connection, scope, &district, &day)?;
                    peers.insert(key.clone(), group);
                }
                let comparison = compare(&counters, &peers[&key]);
                items.push(AggregateRow { cursor, subject_id, centre_id, district, day, counters, comparison });
            }
            Ok((items, next_after))
        })
        .map(|(items, next_after)| Page { items, next_after, projection_position })
        .map_err(FraudQueryError::from)
    }

    fn monotonic(&self) -> bool {
        self.time_monotonic.load(Ordering::Acquire)
    }

    /// Rejects a centre, verifier or district that the projection has never seen.
    fn check_known(&self, centre_id: Option<&str>, verifier_id: Option<&str>, district: Option<&str>) -> Result<(), FraudQueryError> {
        let checks: [(&'static str, Option<&str>, &str, &str); 3] = [
            ("centre", centre_id, "SELECT 1 FROM centres WHERE centre_id = ?1", "is not a registered centre"),
            (
                "verifier",
                verifier_id,
                "SELECT 1 FROM verifier_days INDEXED BY verifier_days_by_verifier WHERE verifier_id = ?1 LIMIT 1",
                "has no recorded activity as a verifier",
            ),
            ("district", district, "SELECT 1 FROM centres WHERE district = ?1 LIMIT 1", "has no registered centre"),
        ];
        self.check_exists(&checks)
    }

    /// Rejects an appointment or beneficiary that has no booking.
    fn check_known_booking(&self, appointment_id: Option<&str>, beneficiary_id: Option<&str>) -> Result<(), FraudQueryError> {
        let checks: [(&'static str, Option<&str>, &str, &str); 2] = [
            ("appointment", appointment_id, "SELECT 1 FROM appointments WHERE appointment_id = ?1", "is not a booked appointment"),
            (
                "beneficiary",
                beneficiary_id,
                "SELECT 1 FROM appointments INDEXED BY appointments_by_beneficiary WHERE beneficiary_id = ?1 LIMIT 1",
                "has no booked appointment",
            ),
        ];
        self.check_exists(&checks)
    }

    fn check_exists(&self, checks: &[(&'static str, Option<&str>, &str, &str)]) -> Result<(), FraudQueryError> {
        for (param, value, sql, missing) in checks {
            let Some(value) = value else { continue };
            let found = self.with_reader(|connection| connection.prepare_cached(sql)?.query_row([value], |_| Ok(())).optional())?;
            if found.is_none() {
                return Err(FraudQueryError::Invalid { param, message: format!("{param} {value:?} {missing}") });
            }
        }
        Ok(())
    }
}

fn time_range(
    column: &'static str,
    index: &'static str,
    time: TimeRange,
) -> Option<(&'static str, &'static str, Option<Value>, Option<Value>)> {
    if time.from_ms.is_none() && time.to_ms.is_none() {
        return None;
    }
    Some((column, index, time.from_ms.map(Value::Integer), time.to_ms.map(Value::Integer)))
}

/// Returns the counters of every centre or verifier of a district on a day.
fn district_peers(connection: &Connection, scope: Scope, district: &str, day: &str) -> rusqlite::Result<Vec<Counters>> {
    let table = scope.table();
    let sql = format!("SELECT {} FROM {table} INDEXED BY {table}_by_district_day WHERE district = ?1 AND day = ?2", counters::select_list(""));
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![district, day], |row| Counters::from_row(row, 0))?;
    rows.collect()
}

/// Compares a subject's counters with its peers' on four metrics.
fn compare(subject: &Counters, peers: &[Counters]) -> PeerComparison {
    let metric = |value: fn(&Counters) -> Option<f64>| -> PeerMetric {
        let mut values: Vec<f64> = peers.iter().filter_map(value).collect();
        values.sort_by(f64::total_cmp);
        let median = median(&values);
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        let own = value(subject);
        let ratio = |base: Option<f64>| match (own, base) {
            (Some(own), Some(base)) if base > 0.0 => Some(own / base),
            _ => None,
        };
        PeerMetric { value: own, district_median: median, district_mean: mean, ratio_to_median: ratio(median), ratio_to_mean: ratio(mean) }
    };
    PeerComparison {
        peers: peers.len() as u64,
        rejection_rate: metric(Counters::rejection_rate),
        lockouts: metric(|counters| Some(counters.lockouts as f64)),
        doses_rejected: metric(|counters| Some(counters.doses_rejected as f64)),
        walk_in_share: metric(Counters::walk_in_share),
    }
}

/// Median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }

    #[test]
    fn compare_ratio_to_median() {
        let with = |attempts, rejected| Counters { attempts, rejected, ..Counters::default() };
        let peers = vec![with(10, 1), with(10, 1), with(10, 5)];
        let comparison = compare(&peers[2], &peers);
        assert_eq!(comparison.peers, 3);
        assert_eq!(comparison.rejection_rate.district_median, Some(0.1));
        let ratio = comparison.rejection_rate.ratio_to_median.unwrap();
        assert!((ratio - 5.0).abs() < 1e-9, "{ratio}");
        assert_eq!(comparison.lockouts.ratio_to_median, None, "median 0 gives no ratio");
    }
}
