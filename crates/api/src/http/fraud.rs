//! Investigator endpoints: attempts, per-centre and per-verifier daily counters, alerts and
//! disputes from the fraud projection, as JSON or CSV pages; and the dispute commands.
//!
//! The query endpoints accept investigators and auditors; every other role gets 403. Every
//! filter value is checked, and an unknown parameter, value or cursor is a 400 problem that
//! names the parameter, so a typo never returns a silently unfiltered page.

// `Problem` is the API's error type and is returned by value, as in `endpoints.rs`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use domain::dispute::{DisputeKind, Finding};
use domain::events::RevocationReason;
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, DisputeId};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent, Tags};
use projections::fraud::queries::{
    self as fraud_queries, AggregateFilter, AggregateRow, AlertFilter, AlertRow, AttemptFilter, AttemptRow, DisputeFilter, DisputeRow,
    DisputeStatus, FraudQueryError, Outcome, Page, PageRequest, PeerMetric, TimeRange, ATTEMPT_REASONS, DISPUTE_KINDS,
};
use projections::fraud::{AlertKind, Counters};

use super::endpoints::{authenticate, internal_problem, Api, BearerAuth};
use super::problem::Problem;
use super::state::AppState;
use crate::ledger::{Actor, LedgerError};
use crate::service_db::Role;

/// How long a dispute command waits for the projections to show its own write.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// Roles that may read the fraud views.
const READERS: &[Role] = &[Role::Investigator, Role::Auditor];

#[derive(Tags)]
enum FraudTags {
    /// Fraud views for investigators: attempts, daily counters with district peers, alerts.
    Fraud,
    /// Citizen disputes and their resolution.
    Disputes,
}

/// Investigator endpoints and dispute commands.
pub struct FraudApi {
    /// Shared service state.
    pub state: Arc<AppState>,
}

/// A page as JSON, or as CSV with a header row.
#[derive(ResponseContent)]
enum PageBody<T: ToJSON + ParseFromJSON> {
    /// JSON page with `items`, `next_after` and `projection_position`.
    Json(Json<T>),
    /// CSV: a header row, then one row per item.
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

/// A page of rows. The headers repeat the JSON paging members, for CSV readers.
#[derive(ApiResponse)]
enum PageResponse<T: ToJSON + ParseFromJSON> {
    /// A page of rows.
    #[oai(status = 200)]
    Ok(
        PageBody<T>,
        /// Cursor for the next page (`after`); absent on the last page.
        #[oai(header = "x-next-after")]
        Option<String>,
        /// Position of the last event the fraud projection had applied.
        #[oai(header = "x-projection-position")]
        String,
    ),
}

/// A code verification attempt or a rejected dose.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AttemptView {
    /// Log position of the event; the page cursor.
    position: u64,
    /// Store time, RFC 3339 in UTC.
    at: String,
    /// verified, rejected or dose_rejected.
    outcome: String,
    /// Rejection reason; absent for a verified code.
    reason: Option<String>,
    /// Counted rejected attempts of the appointment so far (code rejections).
    attempt: Option<u32>,
    /// Rejected attempts that lock the appointment, when this one was rejected.
    max_attempts: Option<u32>,
    /// Whether this rejection locked the appointment.
    locked: bool,
    /// Centre where the attempt happened.
    centre_id: String,
    /// District of that centre.
    district: String,
    /// Centre the appointment was booked at.
    booked_centre_id: Option<String>,
    /// Verifier or vaccinator token id.
    verifier_id: String,
    appointment_id: String,
    beneficiary_id: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        Self {
            position: row.position,
            at: row.at,
            outcome: row.outcome,
            reason: row.reason,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            locked: row.locked,
            centre_id: row.centre_id,
            district: row.district,
            booked_centre_id: row.booked_centre_id,
            verifier_id: row.verifier_id,
            appointment_id: row.appointment_id,
            beneficiary_id: row.beneficiary_id,
        }
    }
}

/// A page of attempts.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AttemptPage {
    items: Vec<AttemptView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<u64>,
    /// Position of the last event the fraud projection had applied.
    projection_position: u64,
}

/// Code rejections by reason.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct CodeRejectionsView {
    wrong_code: u64,
    wrong_centre: u64,
    wrong_date: u64,
    appointment_cancelled: u64,
    already_used: u64,
    locked: u64,
}

/// Dose rejections by reason.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct DoseRejectionsView {
    code_not_verified: u64,
    locked: u64,
    wrong_centre: u64,
    already_administered: u64,
    appointment_cancelled: u64,
    wrong_vaccine: u64,
}

/// One metric beside the same metric over the district's peers that day.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct PeerMetricView {
    /// This centre's or verifier's value; absent when undefined (a rate of nothing).
    value: Option<f64>,
    /// Median over the district's centres or verifiers that day, this one included.
    district_median: Option<f64>,
    /// Mean over the same peers.
    district_mean: Option<f64>,
    /// value / district_median; absent when the median is 0.
    ratio_to_median: Option<f64>,
    /// value / district_mean; absent when the mean is 0.
    ratio_to_mean: Option<f64>,
}

impl From<PeerMetric> for PeerMetricView {
    fn from(metric: PeerMetric) -> Self {
        Self {
            value: metric.value,
            district_median: metric.district_median,
            district_mean: metric.district_mean,
            ratio_to_median: metric.ratio_to_median,
            ratio_to_mean: metric.ratio_to_mean,
        }
    }
}

/// Comparison of a centre or verifier with its district's peers on the same day.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct ComparisonView {
    /// Centres or verifiers of the district active that day, this one included.
    peers: u64,
    /// Share of submitted codes rejected.
    rejection_rate: PeerMetricView,
    /// Appointments locked.
    lockouts: PeerMetricView,
    /// Dose attempts rejected.
    doses_rejected: PeerMetricView,
    /// Share of recorded doses given to walk-ins.
    walk_in_share: PeerMetricView,
}

/// A centre's or a verifier's counters for one day (India Standard Time).
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AggregateView {
    /// Row id; the page cursor.
    cursor: u64,
    /// Centre id on /fraud/centres, verifier token id on /fraud/verifiers.
    subject_id: String,
    /// Centre (for a verifier, the centre it worked at).
    centre_id: String,
    district: String,
    /// Day, YYYY-MM-DD in India Standard Time.
    day: String,
    /// Codes submitted.
    attempts: u64,
    /// Codes accepted.
    verified: u64,
    /// Codes rejected.
    rejected: u64,
    rejected_by_reason: CodeRejectionsView,
    /// Appointments locked.
    lockouts: u64,
    /// Doses recorded.
    doses: u64,
    /// Doses recorded for walk-ins.
    walk_in_doses: u64,
    /// Dose attempts rejected.
    doses_rejected: u64,
    doses_rejected_by_reason: DoseRejectionsView,
    /// Appointments booked (for a verifier: walk-ins it booked).
    bookings: u64,
    /// Walk-in appointments booked.
    walk_in_bookings: u64,
    /// Disputes raised against these doses.
    disputes: u64,
    /// rejected / attempts; absent with no attempt.
    rejection_rate: Option<f64>,
    /// walk_in_doses / doses; absent with no dose.
    walk_in_share: Option<f64>,
    /// Comparison with the district's peers that day.
    comparison: ComparisonView,
}

impl From<AggregateRow> for AggregateView {
    fn from(row: AggregateRow) -> Self {
        let counters = row.counters;
        let code = counters.rejected_by_reason.clone();
        let dose = counters.doses_rejected_by_reason.clone();
        let comparison = row.comparison;
        Self {
            cursor: row.cursor,
            subject_id: row.subject_id,
            centre_id: row.centre_id,
            district: row.district,
            day: row.day,
            attempts: counters.attempts,
            verified: counters.verified,
            rejected: counters.rejected,
            rejected_by_reason: CodeRejectionsView {
                wrong_code: code.wrong_code,
                wrong_centre: code.wrong_centre,
                wrong_date: code.wrong_date,
                appointment_cancelled: code.appointment_cancelled,
                already_used: code.already_used,
                locked: code.locked,
            },
            lockouts: counters.lockouts,
            doses: counters.doses,
            walk_in_doses: counters.walk_in_doses,
            doses_rejected: counters.doses_rejected,
            doses_rejected_by_reason: DoseRejectionsView {
                code_not_verified: dose.code_not_verified,
                locked: dose.locked,
                wrong_centre: dose.wrong_centre,
                already_administered: dose.already_administered,
                appointment_cancelled: dose.appointment_cancelled,
                wrong_vaccine: dose.wrong_vaccine,
            },
            bookings: counters.bookings,
            walk_in_bookings: counters.walk_in_bookings,
            disputes: counters.disputes,
            rejection_rate: counters.rejection_rate(),
            walk_in_share: counters.walk_in_share(),
            comparison: ComparisonView {
                peers: comparison.peers,
                rejection_rate: comparison.rejection_rate.into(),
                lockouts: comparison.lockouts.into(),
                doses_rejected: comparison.doses_rejected.into(),
                walk_in_share: comparison.walk_in_share.into(),
            },
        }
    }
}

/// A page of daily counters.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AggregatePage {
    items: Vec<AggregateView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<u64>,
    /// Position of the last event the fraud projection had applied.
    projection_position: u64,
}

/// An alert with its evidence.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AlertView {
    /// Alert sequence number; the page cursor.
    cursor: u64,
    /// Stable id, `<kind>-<position>`.
    alert_id: String,
    /// lockout, verifier_rejections, enumeration_appointment, enumeration_spread,
    /// dose_without_code, wrong_centre or dispute.
    kind: String,
    /// Position of the event that raised the alert.
    position: u64,
    /// Store time of that event, RFC 3339 in UTC.
    at: String,
    centre_id: Option<String>,
    district: Option<String>,
    verifier_id: Option<String>,
    appointment_id: Option<String>,
    beneficiary_id: Option<String>,
    /// One-line description.
    summary: String,
    /// Positions of the events that raised the alert; read them at /audit/events.
    evidence: Vec<u64>,
}

impl From<AlertRow> for AlertView {
    fn from(row: AlertRow) -> Self {
        Self {
            cursor: row.cursor,
            alert_id: row.alert_id,
            kind: row.kind,
            position: row.position,
            at: row.at,
            centre_id: row.centre_id,
            district: row.district,
            verifier_id: row.verifier_id,
            appointment_id: row.appointment_id,
            beneficiary_id: row.beneficiary_id,
            summary: row.summary,
            evidence: row.evidence,
        }
    }
}

/// A page of alerts.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AlertPage {
    items: Vec<AlertView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<u64>,
    /// Position of the last event the fraud projection had applied.
    projection_position: u64,
}

/// A dispute and its resolution.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct DisputeView {
    /// Position of DisputeRaised; the page cursor.
    position: u64,
    dispute_id: String,
    /// Time raised, RFC 3339 in UTC.
    raised_at: String,
    appointment_id: String,
    beneficiary_id: String,
    /// Booked centre.
    centre_id: Option<String>,
    district: Option<String>,
    /// Verifier who verified the code.
    verifier_id: Option<String>,
    /// Vaccinator who recorded the dose.
    vaccinator_id: Option<String>,
    /// dose_not_received or certificate_missing.
    kind: String,
    /// The citizen's account.
    description: String,
    /// open, upheld or rejected.
    status: String,
    /// Investigator's note.
    note: Option<String>,
    investigator_id: Option<String>,
    resolved_position: Option<u64>,
    resolved_at: Option<String>,
    /// fraud or error, when the resolution revoked the certificate.
    revocation_reason: Option<String>,
    revoked_position: Option<u64>,
    /// Evidence: positions of CodeVerified, DoseAdministered and CertificateIssued.
    verified_position: Option<u64>,
    dose_position: Option<u64>,
    certificate_position: Option<u64>,
}

impl From<DisputeRow> for DisputeView {
    fn from(row: DisputeRow) -> Self {
        Self {
            position: row.position,
            dispute_id: row.dispute_id,
            raised_at: row.raised_at,
            appointment_id: row.appointment_id,
            beneficiary_id: row.beneficiary_id,
            centre_id: row.centre_id,
            district: row.district,
            verifier_id: row.verifier_id,
            vaccinator_id: row.vaccinator_id,
            kind: row.kind,
            description: row.description,
            status: row.status,
            note: row.note,
            investigator_id: row.investigator_id,
            resolved_position: row.resolved_position,
            resolved_at: row.resolved_at,
            revocation_reason: row.revocation_reason,
            revoked_position: row.revoked_position,
            verified_position: row.verified_position,
            dose_position: row.dose_position,
            certificate_position: row.certificate_position,
        }
    }
}

/// A page of disputes.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct DisputePage {
    items: Vec<DisputeView>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<u64>,
    /// Position of the last event the fraud projection had applied.
    projection_position: u64,
}

/// Raise a dispute on your appointment.
#[derive(Object)]
struct DisputeRequest {
    /// Appointment disputed; it must be of a beneficiary registered under your mobile number.
    appointment_id: String,
    /// dose_not_received ("I got a dose message but was not vaccinated") or certificate_missing.
    kind: String,
    /// Account of what happened, up to 1000 characters.
    description: String,
}

/// A dispute just raised.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct DisputeCreated {
    dispute_id: String,
    appointment_id: String,
    /// Always open.
    status: String,
    /// Position of DisputeRaised.
    position: u64,
}

/// Resolve a dispute.
#[derive(Object)]
struct ResolutionRequest {
    /// upheld (the citizen is right) or rejected.
    finding: String,
    /// Findings of the investigation, up to 1000 characters.
    note: String,
    /// Revoke the appointment's certificate for this reason: fraud or error. Only with upheld.
    revoke: Option<String>,
}

/// A dispute just resolved.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct DisputeResolution {
    dispute_id: String,
    appointment_id: String,
    /// upheld or rejected.
    finding: String,
    /// Certificates revoked by this resolution.
    revoked_certificates: Vec<String>,
    /// Position of the last event appended.
    position: u64,
}

#[OpenApi]
impl FraudApi {
    /// Lists code verification attempts and rejected doses (investigator, auditor).
    ///
    /// Filters: centre, verifier, district, beneficiary, appointment, outcome (verified,
    /// rejected, dose_rejected), reason, from and to (RFC 3339 time, or a YYYY-MM-DD day in
    /// India). Pages follow `after` (the last position seen), `limit` rows (default 100, at most
    /// 1000); `format=csv` returns CSV with a header row.
    #[oai(path = "/fraud/attempts", method = "get", tag = "FraudTags::Fraud")]
    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        auth: BearerAuth,
        request: &Request,
        centre: Query<Option<String>>,
        verifier: Query<Option<String>>,
        district: Query<Option<String>>,
        beneficiary: Query<Option<String>>,
        appointment: Query<Option<String>>,
        outcome: Query<Option<String>>,
        reason: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<String>>,
        format: Query<Option<String>>,
    ) -> poem::Result<PageResponse<AttemptPage>> {
        self.reader(&auth, request)?;
        check_parameters(request, &["centre", "verifier", "district", "beneficiary", "appointment", "outcome", "reason", "from", "to"])?;
        let format = parse_format(format.0)?;
        let page = parse_page(after.0, limit.0)?;
        let filter = AttemptFilter {
            centre_id: parse_uuid("centre", centre.0, |text| CentreId::parse(text).map(|id| id.to_string()))?,
            verifier_id: parse_verifier(verifier.0)?,
            district: parse_district(district.0)?,
            beneficiary_id: parse_uuid("beneficiary", beneficiary.0, |text| BeneficiaryId::parse(text).map(|id| id.to_string()))?,
            appointment_id: parse_uuid("appointment", appointment.0, |text| AppointmentId::parse(text).map(|id| id.to_string()))?,
            outcome: parse_choice("outcome", outcome.0, &["verified", "rejected", "dose_rejected"], Outcome::parse)?,
            reason: parse_choice("reason", reason.0, &ATTEMPT_REASONS, |text| Some(text.to_owned()))?,
            time: parse_time_range(from.0, to.0)?,
        };
        let result = self.state.fraud.attempts(&filter, page).map_err(query_problem)?;
        Ok(respond(result, format, AttemptView::from, |items, next_after, projection_position| AttemptPage { items, next_after, projection_position }, attempts_csv))
    }

    /// Lists per-centre daily counters, each compared with its district's centres that day
    /// (investigator, auditor).
    ///
    /// Filters: centre, district, from and to (days in India; a time counts as its day).
    #[oai(path = "/fraud/centres", method = "get", tag = "FraudTags::Fraud")]
    #[allow(clippy::too_many_arguments)]
    async fn centres(
        &self,
        auth: BearerAuth,
        request: &Request,
        centre: Query<Option<String>>,
        district: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<String>>,
        format: Query<Option<String>>,
    ) -> poem::Result<PageResponse<AggregatePage>> {
        self.reader(&auth, request)?;
        check_parameters(request, &["centre", "district", "from", "to"])?;
        let format = parse_format(format.0)?;
        let page = parse_page(after.0, limit.0)?;
        let (from_day, to_day) = parse_day_range(from.0, to.0)?;
        let filter = AggregateFilter {
            centre_id: parse_uuid("centre", centre.0, |text| CentreId::parse(text).map(|id| id.to_string()))?,
            verifier_id: None,
            district: parse_district(district.0)?,
            from_day,
            to_day,
        };
        let result = self.state.fraud.centre_days(&filter, page).map_err(query_problem)?;
        Ok(respond(result, format, AggregateView::from, aggregate_page, aggregates_csv))
    }

    /// Lists per-verifier daily counters, each compared with its district's verifiers that day
    /// (investigator, auditor).
    ///
    /// Filters: verifier, centre, district, from and to (days in India).
    #[oai(path = "/fraud/verifiers", method = "get", tag = "FraudTags::Fraud")]
    #[allow(clippy::too_many_arguments)]
    async fn verifiers(
        &self,
        auth: BearerAuth,
        request: &Request,
        verifier: Query<Option<String>>,
        centre: Query<Option<String>>,
        district: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<String>>,
        format: Query<Option<String>>,
    ) -> poem::Result<PageResponse<AggregatePage>> {
        self.reader(&auth, request)?;
        check_parameters(request, &["verifier", "centre", "district", "from", "to"])?;
        let format = parse_format(format.0)?;
        let page = parse_page(after.0, limit.0)?;
        let (from_day, to_day) = parse_day_range(from.0, to.0)?;
        let filter = AggregateFilter {
            centre_id: parse_uuid("centre", centre.0, |text| CentreId::parse(text).map(|id| id.to_string()))?,
            verifier_id: parse_verifier(verifier.0)?,
            district: parse_district(district.0)?,
            from_day,
            to_day,
        };
        let result = self.state.fraud.verifier_days(&filter, page).map_err(query_problem)?;
        Ok(respond(result, format, AggregateView::from, aggregate_page, aggregates_csv))
    }

    /// Lists alerts with their evidence (investigator, auditor).
    ///
    /// Filters: kind (lockout, verifier_rejections, enumeration_appointment,
    /// enumeration_spread, dose_without_code, wrong_centre, dispute), centre, verifier,
    /// district, beneficiary, appointment, from and to.
    #[oai(path = "/fraud/alerts", method = "get", tag = "FraudTags::Fraud")]
    #[allow(clippy::too_many_arguments)]
    async fn alerts(
        &self,
        auth: BearerAuth,
        request: &Request,
        kind: Query<Option<String>>,
        centre: Query<Option<String>>,
        verifier: Query<Option<String>>,
        district: Query<Option<String>>,
        beneficiary: Query<Option<String>>,
        appointment: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<String>>,
        format: Query<Option<String>>,
    ) -> poem::Result<PageResponse<AlertPage>> {
        self.reader(&auth, request)?;
        check_parameters(request, &["kind", "centre", "verifier", "district", "beneficiary", "appointment", "from", "to"])?;
        let format = parse_format(format.0)?;
        let page = parse_page(after.0, limit.0)?;
        let kinds: Vec<&str> = AlertKind::ALL.iter().map(AlertKind::as_str).collect();
        let filter = AlertFilter {
            kind: parse_choice("kind", kind.0, &kinds, AlertKind::parse)?,
            centre_id: parse_uuid("centre", centre.0, |text| CentreId::parse(text).map(|id| id.to_string()))?,
            verifier_id: parse_verifier(verifier.0)?,
            district: parse_district(district.0)?,
            beneficiary_id: parse_uuid("beneficiary", beneficiary.0, |text| BeneficiaryId::parse(text).map(|id| id.to_string()))?,
            appointment_id: parse_uuid("appointment", appointment.0, |text| AppointmentId::parse(text).map(|id| id.to_string()))?,
            time: parse_time_range(from.0, to.0)?,
        };
        let result = self.state.fraud.alerts(&filter, page).map_err(query_problem)?;
        Ok(respond(result, format, AlertView::from, |items, next_after, projection_position| AlertPage { items, next_after, projection_position }, alerts_csv))
    }

    /// Lists disputes, the investigators' queue (investigator, auditor).
    ///
    /// Filters: status (open, upheld, rejected), kind, centre, verifier, district, beneficiary,
    /// appointment, from and to (time raised).
    #[oai(path = "/fraud/disputes", method = "get", tag = "FraudTags::Disputes")]
    #[allow(clippy::too_many_arguments)]
    async fn disputes(
        &self,
        auth: BearerAuth,
        request: &Request,
        status: Query<Option<String>>,
        kind: Query<Option<String>>,
        centre: Query<Option<String>>,
        verifier: Query<Option<String>>,
        district: Query<Option<String>>,
        beneficiary: Query<Option<String>>,
        appointment: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        after: Query<Option<String>>,
        limit: Query<Option<String>>,
        format: Query<Option<String>>,
    ) -> poem::Result<PageResponse<DisputePage>> {
        self.reader(&auth, request)?;
        check_parameters(request, &["status", "kind", "centre", "verifier", "district", "beneficiary", "appointment", "from", "to"])?;
        let format = parse_format(format.0)?;
        let page = parse_page(after.0, limit.0)?;
        let filter = DisputeFilter {
            status: parse_choice("status", status.0, &["open", "upheld", "rejected"], DisputeStatus::parse)?,
            kind: parse_choice("kind", kind.0, &DISPUTE_KINDS, |text| Some(text.to_owned()))?,
            centre_id: parse_uuid("centre", centre.0, |text| CentreId::parse(text).map(|id| id.to_string()))?,
            verifier_id: parse_verifier(verifier.0)?,
            district: parse_district(district.0)?,
            beneficiary_id: parse_uuid("beneficiary", beneficiary.0, |text| BeneficiaryId::parse(text).map(|id| id.to_string()))?,
            appointment_id: parse_uuid("appointment", appointment.0, |text| AppointmentId::parse(text).map(|id| id.to_string()))?,
            time: parse_time_range(from.0, to.0)?,
        };
        let result = self.state.fraud.disputes(&filter, page).map_err(query_problem)?;
        Ok(respond(result, format, DisputeView::from, |items, next_after, projection_position| DisputePage { items, next_after, projection_position }, disputes_csv))
    }

    /// Raises a dispute on one of your appointments (citizen): `dose_not_received` when a dose
    /// is recorded but you were not vaccinated, `certificate_missing` when you were vaccinated
    /// but have no certificate.
    #[oai(path = "/disputes", method = "post", tag = "FraudTags::Disputes")]
    async fn raise_dispute(&self, auth: BearerAuth, request: &Request, body: Json<DisputeRequest>) -> poem::Result<Json<DisputeCreated>> {
        let actor = authenticate(&self.state, &auth, request, &[Role::Citizen])?;
        let api = self.api();
        let body = body.0;
        let route = format!("dispute:{}", body.appointment_id.trim());
        api.idempotent(&actor, &route, async {
            let appointment_id = AppointmentId::parse(&body.appointment_id).map_err(Problem::from)?;
            let kind = DisputeKind::parse(&body.kind).map_err(Problem::from)?;
            let raised = self.state.ledger.raise_dispute(&actor, appointment_id, kind, body.description.clone()).await.map_err(hide_foreign)?;
            self.settle(raised.position).await;
            let text = format!(
                "Dispute {} received for appointment {appointment_id}. An investigator will review it; you will get an SMS with the outcome.",
                raised.dispute_id
            );
            self.notify_beneficiary(&raised.beneficiary_id, "dispute_received", &text, appointment_id).await;
            Ok(DisputeCreated {
                dispute_id: raised.dispute_id.to_string(),
                appointment_id: appointment_id.to_string(),
                status: "open".into(),
                position: raised.position,
            })
        })
        .await
    }

    /// Resolves a dispute with a finding and a note (investigator), and revokes the
    /// appointment's certificate in the same request when `revoke` is fraud or error.
    #[oai(path = "/disputes/:id/resolution", method = "post", tag = "FraudTags::Disputes")]
    async fn resolve_dispute(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<ResolutionRequest>) -> poem::Result<Json<DisputeResolution>> {
        let actor = authenticate(&self.state, &auth, request, &[Role::Investigator])?;
        let api = self.api();
        let body = body.0;
        let route = format!("resolve:{}", id.0.trim());
        api.idempotent(&actor, &route, async {
            let dispute_id = DisputeId::parse(&id.0).map_err(Problem::from)?;
            let finding = Finding::parse(&body.finding).map_err(Problem::from)?;
            let revoke = match body.revoke.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
                None => None,
                Some("fraud") => Some(RevocationReason::Fraud),
                Some("error") => Some(RevocationReason::Error),
                Some(_) => return Err(Problem::invalid("revoke", "revoke must be fraud or error, or absent to keep the certificate")),
            };
            let not_found = || Problem::not_found("dispute_id", format!("dispute {dispute_id} not found"));
            let row = self.state.fraud.dispute(&dispute_id.to_string()).map_err(internal_problem)?.ok_or_else(not_found)?;
            let appointment_id = AppointmentId::parse(&row.appointment_id).map_err(internal_problem)?;

            let resolved = self
                .state
                .ledger
                .resolve_dispute(&actor, appointment_id, dispute_id, finding, body.note.clone(), revoke)
                .await
                .map_err(Problem::from)?;
            self.settle(resolved.position).await;
            let text = format!("Your dispute {dispute_id} about appointment {appointment_id} was reviewed: {}.", finding.as_str());
            self.notify_beneficiary(&resolved.beneficiary_id, "dispute_resolved", &text, appointment_id).await;
            Ok(DisputeResolution {
                dispute_id: dispute_id.to_string(),
                appointment_id: appointment_id.to_string(),
                finding: finding.as_str().into(),
                revoked_certificates: resolved.revoked.iter().map(ToString::to_string).collect(),
                position: resolved.position,
            })
        })
        .await
    }
}

impl FraudApi {
    /// Authenticates an investigator or auditor.
    fn reader(&self, auth: &BearerAuth, request: &Request) -> Result<Actor, Problem> {
        authenticate(&self.state, auth, request, READERS)
    }

    /// Returns the main API over the same state, for its idempotency helpers.
    fn api(&self) -> Api {
        Api { state: Arc::clone(&self.state) }
    }

    /// Waits until both projections show a write, so the caller reads it back at once.
    async fn settle(&self, position: u64) {
        if let Err(err) = self.state.ledger.projections.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await {
            tracing::warn!(cause = %err, position, "status projection lagging behind a write");
        }
        if let Err(err) = self.state.fraud.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await {
            tracing::warn!(cause = %err, position, "fraud projection lagging behind a write");
        }
    }

    /// Queues an SMS to the mobile number of a beneficiary.
    async fn notify_beneficiary(&self, beneficiary_id: &BeneficiaryId, kind: &str, text: &str, appointment_id: AppointmentId) {
        match self.state.ledger.projections.beneficiary(&beneficiary_id.to_string()) {
            Ok(Some(row)) => self.api().queue_sms(&row.mobile_hash, kind, text, Some(&appointment_id.to_string())).await,
            Ok(None) => tracing::warn!(beneficiary_id = %beneficiary_id, kind, "beneficiary not yet projected; SMS not queued"),
            Err(err) => tracing::error!(cause = %err, beneficiary_id = %beneficiary_id, kind, "beneficiary lookup failed; SMS not queued"),
        }
    }
}

/// Output format of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// Builds the response for a page in the requested format.
fn respond<Row, View, P: ToJSON + ParseFromJSON>(
    page: Page<Row>,
    format: Format,
    view: impl Fn(Row) -> View,
    wrap: impl Fn(Vec<View>, Option<u64>, u64) -> P,
    csv: impl Fn(&[Row]) -> String,
) -> PageResponse<P> {
    let next_after = page.next_after.map(|cursor| cursor.to_string());
    let position = page.projection_position.to_string();
    match format {
        Format::Csv => PageResponse::Ok(PageBody::Csv(PlainText(csv(&page.items))), next_after, position),
        Format::Json => {
            let items = page.items.into_iter().map(view).collect();
            PageResponse::Ok(PageBody::Json(Json(wrap(items, page.next_after, page.projection_position))), next_after, position)
        }
    }
}

fn aggregate_page(items: Vec<AggregateView>, next_after: Option<u64>, projection_position: u64) -> AggregatePage {
    AggregatePage { items, next_after, projection_position }
}

/// Writes a header row and one row per record as CSV (RFC 4180 quoting).
fn write_csv(header: &[&str], records: impl Iterator<Item = Vec<String>>) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let write = || -> csv::Result<()> {
        writer.write_record(header)?;
        for record in records {
            writer.write_record(&record)?;
        }
        writer.flush()?;
        Ok(())
    };
    if let Err(err) = write() {
        tracing::error!(cause = %err, "CSV writing failed");
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn optional<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn attempts_csv(rows: &[AttemptRow]) -> String {
    let header = [
        "position", "at", "outcome", "reason", "attempt", "max_attempts", "locked", "centre_id", "district", "booked_centre_id",
        "verifier_id", "appointment_id", "beneficiary_id",
    ];
    write_csv(
        &header,
        rows.iter().map(|row| {
            vec![
                row.position.to_string(),
                row.at.clone(),
                row.outcome.clone(),
                optional(&row.reason),
                optional(&row.attempt),
                optional(&row.max_attempts),
                row.locked.to_string(),
                row.centre_id.clone(),
                row.district.clone(),
                optional(&row.booked_centre_id),
                row.verifier_id.clone(),
                row.appointment_id.clone(),
                optional(&row.beneficiary_id),
            ]
        }),
    )
}

fn aggregates_csv(rows: &[AggregateRow]) -> String {
    let mut header: Vec<String> = ["cursor", "subject_id", "centre_id", "district", "day"].map(String::from).to_vec();
    header.extend(COUNTER_HEADER.iter().map(|name| name.to_string()));
    header.push("peers".into());
    for metric in ["rejection_rate", "lockouts", "doses_rejected", "walk_in_share"] {
        for part in ["value", "district_median", "district_mean", "ratio_to_median", "ratio_to_mean"] {
            header.push(format!("{metric}_{part}"));
        }
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_csv(
        &header,
        rows.iter().map(|row| {
            let mut record = vec![row.cursor.to_string(), row.subject_id.clone(), row.centre_id.clone(), row.district.clone(), row.day.clone()];
            record.extend(counter_values(&row.counters).into_iter().map(|value| value.to_string()));
            record.push(row.comparison.peers.to_string());
            let comparison = &row.comparison;
            for metric in [&comparison.rejection_rate, &comparison.lockouts, &comparison.doses_rejected, &comparison.walk_in_share] {
                for part in [metric.value, metric.district_median, metric.district_mean, metric.ratio_to_median, metric.ratio_to_mean] {
                    record.push(optional(&part));
                }
            }
            record
        }),
    )
}

/// CSV columns of the counters, in the order [`counter_values`] returns them.
const COUNTER_HEADER: [&str; 22] = projections::fraud::COUNTER_COLUMNS;

fn counter_values(counters: &Counters) -> [u64; 22] {
    let code = &counters.rejected_by_reason;
    let dose = &counters.doses_rejected_by_reason;
    [
        counters.attempts,
        counters.verified,
        counters.rejected,
        code.wrong_code,
        code.wrong_centre,
        code.wrong_date,
        code.appointment_cancelled,
        code.already_used,
        code.locked,
        counters.lockouts,
        counters.doses,
        counters.walk_in_doses,
        counters.doses_rejected,
        dose.code_not_verified,
        dose.locked,
        dose.wrong_centre,
        dose.already_administered,
        dose.appointment_cancelled,
        dose.wrong_vaccine,
        counters.bookings,
        counters.walk_in_bookings,
        counters.disputes,
    ]
}

fn alerts_csv(rows: &[AlertRow]) -> String {
    let header = [
        "cursor", "alert_id", "kind", "position", "at", "centre_id", "district", "verifier_id", "appointment_id", "beneficiary_id",
        "summary", "evidence",
    ];
    write_csv(
        &header,
        rows.iter().map(|row| {
            vec![
                row.cursor.to_string(),
                row.alert_id.clone(),
                row.kind.clone(),
                row.position.to_string(),
                row.at.clone(),
                optional(&row.centre_id),
                optional(&row.district),
                optional(&row.verifier_id),
                optional(&row.appointment_id),
                optional(&row.beneficiary_id),
                row.summary.clone(),
                row.evidence.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            ]
        }),
    )
}

fn disputes_csv(rows: &[DisputeRow]) -> String {
    let header = [
        "position", "dispute_id", "raised_at", "appointment_id", "beneficiary_id", "centre_id", "district", "verifier_id", "vaccinator_id",
        "kind", "description", "status", "note", "investigator_id", "resolved_position", "resolved_at", "revocation_reason",
        "revoked_position", "verified_position", "dose_position", "certificate_position",
    ];
    write_csv(
        &header,
        rows.iter().map(|row| {
            vec![
                row.position.to_string(),
                row.dispute_id.clone(),
                row.raised_at.clone(),
                row.appointment_id.clone(),
                row.beneficiary_id.clone(),
                optional(&row.centre_id),
                optional(&row.district),
                optional(&row.verifier_id),
                optional(&row.vaccinator_id),
                row.kind.clone(),
                row.description.clone(),
                row.status.clone(),
                optional(&row.note),
                optional(&row.investigator_id),
                optional(&row.resolved_position),
                optional(&row.resolved_at),
                optional(&row.revocation_reason),
                optional(&row.revoked_position),
                optional(&row.verified_position),
                optional(&row.dose_position),
                optional(&row.certificate_position),
            ]
        }),
    )
}

/// Rejects a query parameter that is neither a filter of this endpoint nor a paging one.
fn check_parameters(request: &Request, filters: &[&str]) -> Result<(), Problem> {
    let query = request.uri().query().unwrap_or_default();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let known = filters.contains(&name) || matches!(name, "after" | "limit" | "format");
        if !known {
            let shown: String = name.chars().take(40).collect();
            return Err(Problem::invalid(
                "query",
                format!("unknown query parameter {shown:?}; this endpoint accepts {}, after, limit and format", filters.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Returns the trimmed value, or `None` for an absent or empty parameter.
fn present(value: Option<String>) -> Option<String> {
    value.map(|text| text.trim().to_owned()).filter(|text| !text.is_empty())
}

fn parse_format(value: Option<String>) -> Result<Format, Problem> {
    match present(value).map(|text| text.to_ascii_lowercase()).as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(_) => Err(Problem::invalid("format", "format must be json or csv")),
    }
}

fn parse_page(after: Option<String>, limit: Option<String>) -> Result<PageRequest, Problem> {
    let after = match present(after) {
        None => 0,
        Some(text) => text.parse::<u64>().ok().filter(|cursor| *cursor <= i64::MAX as u64).ok_or_else(|| {
            Problem::invalid("after", "after must be a cursor: the whole number next_after of a previous page, or 0 to start")
        })?,
    };
    let limit = match present(limit) {
        None => fraud_queries::DEFAULT_PAGE_SIZE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=fraud_queries::MAX_PAGE_SIZE).contains(limit))
            .ok_or_else(|| Problem::invalid("limit", format!("limit must be a whole number from 1 to {}", fraud_queries::MAX_PAGE_SIZE)))?,
    };
    Ok(PageRequest { after, limit })
}

fn parse_uuid(
    param: &'static str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<String, domain::Rejection>,
) -> Result<Option<String>, Problem> {
    present(value)
        .map(|text| parse(&text).map_err(|_| Problem::invalid(param, format!("{param} must be a UUID such as 0c5b3f1e-7d2a-4c7e-9a51-2f1e9b7c4d10"))))
        .transpose()
}

fn parse_verifier(value: Option<String>) -> Result<Option<String>, Problem> {
    let Some(text) = present(value) else { return Ok(None) };
    let valid = text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Problem::invalid("verifier", "verifier must be a token id (letters, digits, - or _; at most 64), as shown by GET /tokens"));
    }
    Ok(Some(text))
}

fn parse_district(value: Option<String>) -> Result<Option<String>, Problem> {
    let Some(text) = present(value) else { return Ok(None) };
    if text.chars().count() > 80 || text.chars().any(char::is_control) {
        return Err(Problem::invalid("district", "district must be at most 80 characters with no control characters"));
    }
    Ok(Some(text))
}

fn parse_choice<T>(param: &'static str, value: Option<String>, allowed: &[&str], parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, Problem> {
    let Some(text) = present(value) else { return Ok(None) };
    let lowered = text.to_ascii_lowercase();
    if !allowed.contains(&lowered.as_str()) {
        let shown: String = text.chars().take(40).collect();
        return Err(Problem::invalid(param, format!("{param} {shown:?} is unknown; use one of: {}", allowed.join(", "))));
    }
    parse(&lowered).map(Some).ok_or_else(|| Problem::invalid(param, format!("{param} must be one of: {}", allowed.join(", "))))
}

/// Parses `from` or `to`: an RFC 3339 time, or a `YYYY-MM-DD` day in India, which stands for
/// the start of that day for `from` and its end for `to`.
fn parse_time(param: &'static str, value: Option<String>, end_of_day: bool) -> Result<Option<DateTime<Utc>>, Problem> {
    let Some(text) = present(value) else { return Ok(None) };
    if let Ok(time) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(time.with_timezone(&Utc)));
    }
    let day = NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
        Problem::invalid(param, format!("{param} must be an RFC 3339 time such as 2021-05-10T09:30:00+05:30, or a day such as 2021-05-10"))
    })?;
    let time = if end_of_day { NaiveTime::from_hms_milli_opt(23, 59, 59, 999) } else { NaiveTime::from_hms_opt(0, 0, 0) };
    let local = day.and_time(time.unwrap_or_default());
    let instant = crate::ledger::india_offset().from_local_datetime(&local).single().map(|time| time.with_timezone(&Utc));
    instant.map(Some).ok_or_else(|| Problem::invalid(param, format!("{param} is not a valid day")))
}

fn parse_time_range(from: Option<String>, to: Option<String>) -> Result<TimeRange, Problem> {
    let from = parse_time("from", from, false)?;
    let to = parse_time("to", to, true)?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(Problem::invalid("to", format!("to ({}) is earlier than from ({}); swap them", to.to_rfc3339(), from.to_rfc3339())));
        }
    }
    Ok(TimeRange { from_ms: from.map(|time| time.timestamp_millis()), to_ms: to.map(|time| time.timestamp_millis()) })
}

/// Parses `from` and `to` into days in India, for the daily counters.
fn parse_day_range(from: Option<String>, to: Option<String>) -> Result<(Option<NaiveDate>, Option<NaiveDate>), Problem> {
    let range = parse_time_range(from, to)?;
    let day = |ms: Option<i64>| ms.and_then(DateTime::from_timestamp_millis).map(crate::ledger::today_in_india);
    Ok((day(range.from_ms), day(range.to_ms)))
}

/// Turns a query failure into a 400 naming the parameter, or a logged 500.
fn query_problem(err: FraudQueryError) -> Problem {
    match err {
        FraudQueryError::Invalid { param, message } => Problem::invalid(param, message),
        FraudQueryError::Projection(err) => internal_problem(err),
    }
}

/// Hides another citizen's appointment behind a 404 rather than a 403.
fn hide_foreign(err: LedgerError) -> Problem {
    match err {
        LedgerError::Forbidden(_) => Problem::not_found("appointment_id", "appointment not found"),
        other => Problem::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_defaults_and_limits() {
        assert_eq!(parse_page(None, None).unwrap(), PageRequest { after: 0, limit: 100 });
        assert_eq!(parse_page(Some("42".into()), Some("1000".into())).unwrap(), PageRequest { after: 42, limit: 1000 });
        assert_eq!(parse_page(Some("x1".into()), None).unwrap_err().field.as_deref(), Some("after"));
        assert_eq!(parse_page(Some("-1".into()), None).unwrap_err().field.as_deref(), Some("after"));
        assert_eq!(parse_page(None, Some("1001".into())).unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(parse_page(None, Some("0".into())).unwrap_err().field.as_deref(), Some("limit"));
    }

    #[test]
    fn time_range_day_bounds() {
        let range = parse_time_range(Some("2021-05-10".into()), Some("2021-05-10".into())).unwrap();
        assert_eq!(range.from_ms, Some(1_620_585_000_000), "midnight in India is 18:30 UTC the day before");
        assert_eq!(range.to_ms, Some(1_620_585_000_000 + 86_400_000 - 1));
    }

    #[test]
    fn time_range_inverted_rejected() {
        let err = parse_time_range(Some("2021-05-11".into()), Some("2021-05-10T00:00:00Z".into())).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("to"));
        let err = parse_time_range(Some("yesterday".into()), None).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("from"));
    }

    #[test]
    fn choice_unknown_names_param() {
        let err = parse_choice("outcome", Some("maybe".into()), &["verified"], Outcome::parse).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("outcome"));
        assert_eq!(parse_choice("outcome", Some(" Verified ".into()), &["verified"], Outcome::parse).unwrap(), Some(Outcome::Verified));
    }

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let text = write_csv(&["a", "b"], [vec!["x,y".to_string(), "line\nbreak".to_string()]].into_iter());
        assert_eq!(text, "a,b\n\"x,y\",\"line\nbreak\"\n");
    }
}
