//! The `/api/v1` operations. Each handler authenticates, checks the role, parses the body into
//! domain types (so the problem names the field), and calls the ledger.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use domain::beneficiary::RegisterBeneficiary;
use domain::centre::RegisterCentre;
use domain::code::SecurityCode;
use domain::events::{Gender, PhotoIdType};
use domain::ids::{AppointmentId, BeneficiaryId, CentreId, CertificateId, MobileNumber, SessionId};
use domain::session::ScheduleSession;
use poem::http::StatusCode;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, SecurityScheme, Tags};
use rand::Rng;
use serde_json::Value;
use uuid::Uuid;

use super::problem::Problem;
use super::rendered::RenderedJson;
use super::state::{AppState, Metrics};
use crate::ledger::{Actor, LedgerError};
use crate::service_db::{OtpCheck, Role, CITIZEN_TOKEN_HOURS};

/// How long a handler waits for the projections to show its own write.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Tags)]
enum ApiTags {
    /// Citizen login by OTP.
    Auth,
    /// Centres and sessions (admin), session search (public).
    Sessions,
    /// Beneficiaries and appointments.
    Appointments,
    /// Security-code verification and doses at the centre.
    Centre,
    /// Certificates, verification and the trust list.
    Certificates,
    /// Staff tokens (admin).
    Tokens,
}

/// Bearer token: a staff token from `vaxledger tokens create`, or a citizen token from OTP login.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerAuth(pub Bearer);

/// The `/api/v1` operations.
pub struct Api {
    /// Shared service state.
    pub state: Arc<AppState>,
}

type ApiResult<T> = poem::Result<Json<T>>;

fn parse_json_enum<T: serde::de::DeserializeOwned>(field: &'static str, value: &str, allowed: &str) -> Result<T, Problem> {
    serde_json::from_value(Value::String(value.trim().to_ascii_lowercase()))
        .map_err(|_| Problem::invalid(field, format!("{field} must be one of: {allowed}")))
}

pub(crate) fn parse_date(field: &'static str, value: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| Problem::invalid(field, format!("{field} must be a date as YYYY-MM-DD, such as 2021-05-10")))
}

fn request_id(request: &Request) -> String {
    request
        .header("x-request-id")
        .filter(|value| value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

fn idempotency_key(request: &Request) -> Result<Option<String>, Problem> {
    match request.header("idempotency-key") {
        None => Ok(None),
        Some(key) if !key.is_empty() && key.len() <= 128 && key.chars().all(|c| c.is_ascii_graphic()) => Ok(Some(key.to_owned())),
        Some(_) => Err(Problem::invalid("Idempotency-Key", "Idempotency-Key must be 1 to 128 visible ASCII characters")),
    }
}

/// Authenticates the bearer token and checks its role; any `#[OpenApi]` struct may call it.
pub(crate) fn authenticate(state: &AppState, auth: &BearerAuth, request: &Request, roles: &[Role]) -> Result<Actor, Problem> {
    let info = state
        .ledger
        .service
        .authenticate(&auth.0.token, Utc::now())
        .map_err(|err| {
            tracing::error!(cause = %err, "token lookup failed");
            Problem::internal()
        })?
        .ok_or_else(|| {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is unknown, revoked or expired", Some("authorization"))
        })?;
    if !roles.contains(&info.role) {
        let allowed: Vec<&str> = roles.iter().map(Role::as_str).collect();
        return Err(Problem::forbidden(format!(
            "role {} may not do this; allowed roles: {}",
            info.role.as_str(),
            allowed.join(", ")
        )));
    }
    Ok(Actor {
        token_id: info.token_id,
        role: info.role,
        centre_id: info.centre_id,
        mobile_hash: info.mobile_hash,
        request_id: request_id(request),
        idempotency_key: idempotency_key(request)?,
    })
}


impl Api {
    /// Authenticates the bearer token and checks its role.
    pub(crate) fn actor(&self, auth: &BearerAuth, request: &Request, roles: &[Role]) -> Result<Actor, Problem> {
        authenticate(&self.state, auth, request, roles)
    }

    /// Waits until the status projections contain every event committed before this call, so
    /// that a read returns every write acknowledged before the read started. Booking, code
    /// verification and dose recording return as soon as their events are durable, without
    /// waiting for the projections. Reads of the projections wait here instead, and only while
    /// they lag.
    pub(crate) async fn fresh(&self) {
        projections_fresh(&self.state).await;
    }

    pub(crate) async fn settle(&self, position: u64) {
        if let Err(err) = self.state.ledger.projections.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await {
            tracing::warn!(cause = %err, position, "projection lagging behind a write");
        }
    }

    /// Returns the first response stored for the actor's idempotency key, if any.
    pub(crate) fn replay<T: serde::de::DeserializeOwned>(&self, actor: &Actor, route: &str) -> Result<Option<T>, Problem> {
        let Some(key) = &actor.idempotency_key else { return Ok(None) };
        let stored = self.state.ledger.service.idempotent_response(&actor.token_id, key).map_err(|err| {
            tracing::error!(cause = %err, "idempotency lookup failed");
            Problem::internal()
        })?;
        let Some((stored_route, status, body)) = stored else { return Ok(None) };
        if stored_route != route {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another request; send a new key",
                Some("Idempotency-Key"),
            ));
        }
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status >= 400 {
            let mut problem = Problem::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                value["type"].as_str().and_then(|t| t.rsplit(':').next()).unwrap_or("replayed"),
                value["detail"].as_str().unwrap_or("replayed rejection"),
                value["field"].as_str(),
            );
            problem.extra = value;
            return Err(problem);
        }
        Ok(serde_json::from_value(value).ok())
    }

    /// Runs a command once per idempotency key: a retry with the same key gets the first
    /// outcome back and appends nothing.
    // NOTE: two requests with the same key arriving at the same moment both run. Keys guard
    // against client retries after a lost response, not against parallel duplicates.
    pub(crate) async fn idempotent<T>(&self, actor: &Actor, route: &str, run: impl std::future::Future<Output = Result<T, Problem>>) -> ApiResult<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + poem_openapi::types::ToJSON,
    {
        if let Some(replayed) = self.replay::<T>(actor, route)? {
            return Ok(Json(replayed));
        }
        let outcome = run.await;
        self.remember(actor, route, &outcome).await;
        Ok(Json(outcome?))
    }

    /// Stores the first outcome of a request that carried an idempotency key.
    pub(crate) async fn remember<T: serde::Serialize>(&self, actor: &Actor, route: &str, outcome: &Result<T, Problem>) {
        let Some(key) = &actor.idempotency_key else { return };
        let (status, body) = match outcome {
            Ok(value) => (200, serde_json::to_string(value).unwrap_or_default()),
            Err(problem) => (problem.status.as_u16(), problem.body().to_string()),
        };
        if let Err(err) = self.state.ledger.service.save_idempotent_response(&actor.token_id, key, route, status, &body, Utc::now()).await {
            tracing::error!(cause = %err, "idempotency record failed");
        }
    }

    pub(crate) async fn queue_sms(&self, mobile_hash: &str, kind: &str, text: &str, appointment_id: Option<&str>) {
        let Some(mobile) = self.contact(mobile_hash, kind) else { return };
        if let Err(err) = self.state.ledger.service.queue_message(kind, &mobile, text, appointment_id, Utc::now()).await {
            tracing::error!(cause = %err, kind, "queueing SMS failed");
        }
    }

    /// Returns the mobile number behind a hash, or `None` after logging why an SMS of `kind`
    /// cannot be sent.
    fn contact(&self, mobile_hash: &str, kind: &str) -> Option<String> {
        match self.state.ledger.service.contact(mobile_hash) {
            Ok(Some(mobile)) => Some(mobile),
            Ok(None) => {
                tracing::warn!(kind, "no mobile number on file; SMS not queued");
                None
            }
            Err(err) => {
                tracing::error!(cause = %err, kind, "contact lookup failed; SMS not queued");
                None
            }
        }
    }
}

/// Request an OTP.
#[derive(Object)]
struct OtpRequest {
    /// Ten-digit Indian mobile number.
    mobile: String,
}

/// OTP sent.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct OtpSent {
    /// Mobile number, masked.
    mobile: String,
    /// Seconds until the OTP expires.
    expires_in_seconds: i64,
}

/// Exchange an OTP for a citizen token.
#[derive(Object)]
struct TokenRequest {
    /// Ten-digit Indian mobile number.
    mobile: String,
    /// Six-digit OTP from the SMS.
    otp: String,
}

/// A bearer token, shown once.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct TokenIssued {
    /// Bearer token.
    token: String,
    /// Token id, as recorded in events.
    token_id: String,
    /// Role granted.
    role: String,
    /// Expiry, RFC 3339; absent for staff tokens.
    expires_at: Option<String>,
}

/// Register a centre.
#[derive(Object)]
struct CentreRequest {
    name: String,
    district: String,
    state: String,
    /// Six-digit postal code.
    pincode: String,
}

/// Created entity.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct Created {
    /// New id.
    id: String,
    /// Log position of the last event written.
    position: u64,
}

/// Schedule a session.
#[derive(Object)]
struct SessionRequest {
    centre_id: String,
    /// Date as YYYY-MM-DD.
    date: String,
    /// Vaccine name, such as COVISHIELD.
    vaccine: String,
    /// Seats.
    capacity: u32,
    /// Minimum age in years.
    min_age: u8,
}

/// A session with its free seats.
#[derive(Object)]
struct SessionView {
    session_id: String,
    centre_id: String,
    centre_name: String,
    district: String,
    date: String,
    vaccine: String,
    capacity: u32,
    booked: u32,
    available: u32,
    min_age: u8,
    cancelled: bool,
}

impl From<projections::queries::SessionRow> for SessionView {
    fn from(row: projections::queries::SessionRow) -> Self {
        Self {
            session_id: row.session_id,
            centre_id: row.centre_id,
            centre_name: row.centre_name,
            district: row.district,
            date: row.date,
            vaccine: row.vaccine,
            capacity: row.capacity,
            booked: row.booked,
            available: row.available,
            min_age: row.min_age,
            cancelled: row.cancelled,
        }
    }
}

/// Register a beneficiary.
#[derive(Object)]
struct BeneficiaryRequest {
    name: String,
    year_of_birth: u16,
    /// female, male or other.
    gender: String,
    /// aadhaar, pan, passport, driving_licence, voter_id, disability_id or pension_passbook.
    photo_id_type: String,
    photo_id_number: String,
    /// Walk-in's mobile number; required for verifiers, ignored for citizens (their login number is used).
    mobile: Option<String>,
}

/// A beneficiary's status with their appointments.
#[derive(Object)]
struct BeneficiaryView {
    beneficiary_id: String,
    name: String,
    year_of_birth: u16,
    gender: String,
    photo_id_type: String,
    photo_id_masked: String,
    walk_in: bool,
    doses_received: u8,
    appointments: Vec<AppointmentView>,
}

/// An appointment's status.
#[derive(Object)]
struct AppointmentView {
    appointment_id: String,
    beneficiary_id: String,
    session_id: String,
    centre_id: String,
    date: String,
    vaccine: String,
    dose_number: u8,
    walk_in: bool,
    /// booked, verified, administered or cancelled.
    status: String,
    locked: bool,
    rejected_attempts: u32,
    certificate_id: Option<String>,
    certificate_revoked: bool,
}

impl From<projections::queries::AppointmentRow> for AppointmentView {
    fn from(row: projections::queries::AppointmentRow) -> Self {
        Self {
            appointment_id: row.appointment_id,
            beneficiary_id: row.beneficiary_id,
            session_id: row.session_id,
            centre_id: row.centre_id,
            date: row.date,
            vaccine: row.vaccine,
            dose_number: row.dose_number,
            walk_in: row.walk_in,
            status: row.status,
            locked: row.locked,
            rejected_attempts: row.rejected_attempts,
            certificate_id: row.certificate_id,
            certificate_revoked: row.certificate_revoked,
        }
    }
}

/// Book an appointment.
#[derive(Object)]
struct BookingRequest {
    beneficiary_id: String,
    session_id: String,
    /// Dose number, 1 or 2.
    dose_number: u8,
}

/// Booking confirmation. The security code appears here once, and in the SMS.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct BookingView {
    appointment_id: String,
    session_id: String,
    dose_number: u8,
    /// Four-digit security code, to tell the verifier at the centre. Absent for walk-ins (sent
    /// by SMS to the beneficiary) and on an idempotent replay (sent by SMS already).
    security_code: Option<String>,
    position: u64,
}

/// Submit a security code.
#[derive(Object)]
struct CodeRequest {
    /// Four digits as the beneficiary gives them.
    code: String,
}

/// Outcome of a command on an appointment.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct AppointmentOutcome {
    appointment_id: String,
    /// New status.
    status: String,
    position: u64,
    /// Certificate issued after a dose.
    certificate_id: Option<String>,
}

/// Record a dose.
#[derive(Object)]
struct DoseRequest {
    /// Batch number from the vial.
    batch: String,
    /// Vaccine given; must match the session's when present.
    vaccine: Option<String>,
}

/// Unlock or cancel with a reason.
#[derive(Object)]
struct ReasonRequest {
    reason: String,
}

/// A certificate.
#[derive(Object)]
struct CertificateView {
    certificate_id: String,
    appointment_id: String,
    key_id: String,
    issued_at: String,
    /// `VXL1:` + base45 of the zlib-compressed COSE_Sign1.
    qr_text: String,
    /// Vaccination record stated by the certificate.
    record: Value,
}

/// Verify a certificate's QR text.
#[derive(Object)]
struct VerifyRequest {
    qr_text: String,
}

/// Outcome of verification.
#[derive(Object)]
struct VerifyResult {
    /// Whether the certificate is valid.
    valid: bool,
    /// Reason code when invalid: malformed, unknown_key, bad_signature, revoked_certificate,
    /// revoked_key, not_yet_valid.
    reason: Option<String>,
    /// Reason in words.
    detail: Option<String>,
    /// The record, when valid.
    record: Option<Value>,
    key_id: Option<String>,
}

/// Create a staff token.
#[derive(Object)]
struct StaffTokenRequest {
    /// verifier, supervisor, investigator, auditor or admin.
    role: String,
    /// Centre for verifier and supervisor tokens.
    centre_id: Option<String>,
}

/// A staff token without its secret.
#[derive(Object)]
struct StaffTokenView {
    token_id: String,
    role: String,
    centre_id: Option<String>,
    created_at: String,
    revoked: bool,
}

/// Correct a beneficiary's name, year of birth or gender.
#[derive(Object)]
struct CorrectionRequest {
    name: String,
    year_of_birth: u16,
    /// female, male or other.
    gender: String,
}

/// Outcome of a correction.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct CorrectionOutcome {
    beneficiary_id: String,
    /// Certificates revoked as superseded by the correction.
    superseded_certificates: Vec<String>,
    /// Certificates signed from the corrected record.
    new_certificates: Vec<String>,
    position: u64,
}

/// Revoke a certificate.
#[derive(Object)]
struct RevocationRequest {
    /// fraud or error.
    reason: String,
    /// Why, for the record (1 to 1000 characters).
    note: String,
}

/// A certificate just revoked.
#[derive(Object, serde::Serialize, serde::Deserialize)]
struct RevocationOutcome {
    certificate_id: String,
    reason: String,
    position: u64,
}

/// One revoked certificate in the revocation list.
#[derive(Object)]
struct RevokedCertificate {
    certificate_id: String,
    /// superseded_by_correction, fraud or error.
    reason: String,
    /// Time of the revocation, RFC 3339.
    revoked_at: String,
    /// Ledger position of the revocation, usable as the `after` cursor.
    position: u64,
}

/// Revocation list for offline verifiers.
#[derive(Object)]
struct RevocationList {
    /// Time this list was produced, RFC 3339; offline verifiers should refresh it regularly.
    issued_at: String,
    /// Revoked certificates after the cursor, oldest first.
    revoked: Vec<RevokedCertificate>,
    /// Cursor for the next page, absent on the last page.
    next_after: Option<u64>,
}

#[OpenApi]
impl Api {
    /// Sends a six-digit OTP to the mobile number by SMS.
    #[oai(path = "/auth/otp", method = "post", tag = "ApiTags::Auth")]
    async fn request_otp(&self, body: Json<OtpRequest>) -> ApiResult<OtpSent> {
        let mobile = MobileNumber::parse(&body.mobile).map_err(Problem::from)?;
        let otp = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
        let key = &self.state.ledger.server_key;
        let mobile_hash = key.mobile_hash(&mobile);
        let otp_hmac = otp_digest(key, &mobile_hash, &otp);
        let service = &self.state.ledger.service;
        let stored = service.store_otp(&mobile_hash, &otp_hmac, Utc::now()).map_err(internal)?;
        if !stored {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "otp_rate_limited",
                format!("at most {} OTPs per hour may be sent to one number; try again later", crate::service_db::OTP_MAX_SENDS_PER_HOUR),
                Some("mobile"),
            )
            .into());
        }
        service.save_contact(&mobile_hash, mobile.as_str()).map_err(internal)?;
        let text = format!("{otp} is your vaxledger login OTP. It expires in 3 minutes. Do not share it.");
        service.queue_message("otp", mobile.as_str(), &text, None, Utc::now()).await.map_err(internal)?;
        tracing::info!(mobile = %mobile.masked(), "OTP queued");
        Ok(Json(OtpSent { mobile: mobile.masked(), expires_in_seconds: crate::service_db::OTP_LIFETIME_SECONDS }))
    }

    /// Exchanges a correct OTP for a citizen token valid for 12 hours.
    #[oai(path = "/auth/token", method = "post", tag = "ApiTags::Auth")]
    async fn exchange_otp(&self, body: Json<TokenRequest>) -> ApiResult<TokenIssued> {
        let mobile = MobileNumber::parse(&body.mobile).map_err(Problem::from)?;
        let otp = body.otp.trim();
        if otp.len() != 6 || !otp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Problem::invalid("otp", "otp must be the 6 digits from the SMS").into());
        }
        let key = &self.state.ledger.server_key;
        let mobile_hash = key.mobile_hash(&mobile);
        let now = Utc::now();
        let service = &self.state.ledger.service;
        match service.check_otp(&mobile_hash, &otp_digest(key, &mobile_hash, otp), now).map_err(internal)? {
            OtpCheck::Valid => {}
            OtpCheck::Wrong { remaining } => {
                let mut problem = Problem::new(StatusCode::UNAUTHORIZED, "otp_wrong", format!("the OTP is wrong; {remaining} attempts left"), Some("otp"));
                problem.extra = serde_json::json!({ "remaining_attempts": remaining });
                return Err(problem.into());
            }
            OtpCheck::ExpiredOrMissing => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "otp_expired",
                    "no valid OTP for this number: it expired, was used, or had too many wrong attempts; request a new one",
                    Some("otp"),
                )
                .into())
            }
        }
        let expires = now + chrono::Duration::hours(CITIZEN_TOKEN_HOURS);
        let (token, info) = service.create_token(Role::Citizen, None, Some(mobile_hash), now, Some(expires)).map_err(internal)?;
        tracing::info!(token_id = %info.token_id, mobile = %mobile.masked(), "citizen logged in");
        Ok(Json(TokenIssued { token, token_id: info.token_id, role: "citizen".into(), expires_at: Some(expires.to_rfc3339()) }))
    }

    /// Registers a vaccination centre (admin).
    #[oai(path = "/centres", method = "post", tag = "ApiTags::Sessions")]
    async fn create_centre(&self, auth: BearerAuth, request: &Request, body: Json<CentreRequest>) -> ApiResult<Created> {
        let actor = self.actor(&auth, request, &[Role::Admin])?;
        let body = body.0;
        self.idempotent(&actor, "centre", async {
            let centre_id = CentreId::new(Uuid::new_v4());
            let command = RegisterCentre { centre_id, name: body.name, district: body.district, state: body.state, pincode: body.pincode };
            let position = self.state.ledger.register_centre(&actor, command).await.map_err(Problem::from)?;
            self.settle(position).await;
            tracing::info!(centre_id = %centre_id, request_id = %actor.request_id, "centre registered");
            Ok(Created { id: centre_id.to_string(), position })
        })
        .await
    }

    /// Schedules a session at a centre (admin).
    #[oai(path = "/sessions", method = "post", tag = "ApiTags::Sessions")]
    async fn create_session(&self, auth: BearerAuth, request: &Request, body: Json<SessionRequest>) -> ApiResult<Created> {
        let actor = self.actor(&auth, request, &[Role::Admin])?;
        self.idempotent(&actor, "session", async {
            let session_id = SessionId::new(Uuid::new_v4());
            let command = ScheduleSession {
                session_id,
                centre_id: CentreId::parse(&body.centre_id).map_err(Problem::from)?,
                date: parse_date("date", &body.date)?,
                vaccine: body.vaccine.clone(),
                capacity: body.capacity,
                min_age: body.min_age,
            };
            let position = self.state.ledger.schedule_session(&actor, command, Utc::now()).await.map_err(Problem::from)?;
            self.settle(position).await;
            Ok(Created { id: session_id.to_string(), position })
        })
        .await
    }

    /// Searches the sessions of a district on a date (public).
    #[oai(path = "/sessions", method = "get", tag = "ApiTags::Sessions")]
    async fn search_sessions(&self, district: Query<Option<String>>, date: Query<Option<String>>) -> poem::Result<RenderedJson<Vec<SessionView>>> {
        let district = district.0.filter(|d| !d.trim().is_empty()).ok_or_else(|| Problem::invalid("district", "district is required, such as ?district=Pune"))?;
        if district.len() > 80 {
            return Err(Problem::invalid("district", "district must be at most 80 characters").into());
        }
        let date = date.0.ok_or_else(|| Problem::invalid("date", "date is required as YYYY-MM-DD"))?;
        let date = parse_date("date", &date)?;
        self.fresh().await;

        // The position is read before the query, so a cached body is at least as new as that position.
        let (district, date) = (district.trim(), date.to_string());
        let projections = &self.state.ledger.projections;
        let position = projections.checkpoint();
        if let Some(body) = self.state.search_cache.get(district, &date, position) {
            return Ok(RenderedJson::from_bytes(body));
        }
        let rows = projections.search_sessions(district, &date, 500).map_err(internal)?;
        let views: Vec<SessionView> = rows.into_iter().map(SessionView::from).collect();
        let rendered = RenderedJson::render(&views);
        self.state.search_cache.put(district, &date, position, Arc::clone(rendered.bytes()));
        Ok(rendered)
    }

    /// Registers a beneficiary: a citizen under their own mobile number, or a verifier for a walk-in.
    #[oai(path = "/beneficiaries", method = "post", tag = "ApiTags::Appointments")]
    async fn create_beneficiary(&self, auth: BearerAuth, request: &Request, body: Json<BeneficiaryRequest>) -> ApiResult<Created> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Verifier])?;
        let body = body.0;
        self.idempotent(&actor, "beneficiary", async {
            let mobile = if actor.role == Role::Verifier {
                let text = body.mobile.as_deref().ok_or_else(|| Problem::invalid("mobile", "mobile is required for a walk-in"))?;
                MobileNumber::parse(text).map_err(Problem::from)?
            } else {
                let hash = actor.mobile_hash.clone().unwrap_or_default();
                let number = self.state.ledger.service.contact(&hash).map_err(internal_problem)?.ok_or_else(Problem::internal)?;
                MobileNumber::parse(&number).map_err(Problem::from)?
            };
            let beneficiary_id = BeneficiaryId::new(Uuid::new_v4());
            let command = RegisterBeneficiary {
                beneficiary_id,
                mobile,
                name: body.name,
                year_of_birth: body.year_of_birth,
                gender: parse_json_enum::<Gender>("gender", &body.gender, "female, male, other")?,
                photo_id_type: parse_json_enum::<PhotoIdType>(
                    "photo_id_type",
                    &body.photo_id_type,
                    "aadhaar, pan, passport, driving_licence, voter_id, disability_id, pension_passbook",
                )?,
                photo_id_number: body.photo_id_number,
                walk_in: actor.role == Role::Verifier,
            };
            let position = self.state.ledger.register_beneficiary(&actor, command, Utc::now()).await.map_err(Problem::from)?;
            self.settle(position).await;
            Ok(Created { id: beneficiary_id.to_string(), position })
        })
        .await
    }

    /// Lists the beneficiaries under the citizen's mobile number.
    #[oai(path = "/beneficiaries", method = "get", tag = "ApiTags::Appointments")]
    async fn list_beneficiaries(&self, auth: BearerAuth, request: &Request) -> ApiResult<Vec<BeneficiaryView>> {
        let actor = self.actor(&auth, request, &[Role::Citizen])?;
        self.fresh().await;
        let rows = self.state.ledger.projections.beneficiaries_by_mobile(actor.mobile_hash.as_deref().unwrap_or_default()).map_err(internal)?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.beneficiary_view(row)?);
        }
        Ok(Json(views))
    }

    /// Returns a beneficiary's status and appointments.
    #[oai(path = "/beneficiaries/:id", method = "get", tag = "ApiTags::Appointments")]
    async fn get_beneficiary(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> ApiResult<BeneficiaryView> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Verifier, Role::Supervisor, Role::Investigator, Role::Auditor, Role::Admin])?;
        let beneficiary_id = BeneficiaryId::parse(&id.0).map_err(Problem::from)?;
        self.fresh().await;
        let row = self
            .state
            .ledger
            .projections
            .beneficiary(&beneficiary_id.to_string())
            .map_err(internal)?
            .ok_or_else(|| Problem::not_found("beneficiary_id", format!("beneficiary {beneficiary_id} not found")))?;
        if actor.role == Role::Citizen && actor.mobile_hash.as_deref() != Some(row.mobile_hash.as_str()) {
            return Err(Problem::not_found("beneficiary_id", format!("beneficiary {beneficiary_id} not found")).into());
        }
        Ok(Json(self.beneficiary_view(row)?))
    }

    /// Books an appointment. The response contains the security code once, and the code is also sent by SMS.
    #[oai(path = "/appointments", method = "post", tag = "ApiTags::Appointments")]
    async fn book(&self, auth: BearerAuth, request: &Request, body: Json<BookingRequest>) -> ApiResult<BookingView> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Verifier])?;
        if let Some(replayed) = self.replay::<BookingView>(&actor, "book")? {
            return Ok(Json(replayed));
        }
        let beneficiary_id = BeneficiaryId::parse(&body.beneficiary_id).map_err(Problem::from)?;
        let session_id = SessionId::parse(&body.session_id).map_err(Problem::from)?;
        let outcome = self.state.ledger.book(&actor, beneficiary_id, session_id, body.dose_number, Utc::now()).await.map_err(Problem::from);
        let outcome = match outcome {
            Ok(booked) => {
                Metrics::bump(&self.state.metrics.bookings);
                self.keep_booking_code(&beneficiary_id, &booked).await;
                let appointment_id = booked.appointment_id.to_string();
                tracing::info!(appointment_id, request_id = %actor.request_id, walk_in = actor.role == Role::Verifier, "appointment booked");
                Ok(BookingView {
                    appointment_id,
                    session_id: session_id.to_string(),
                    dose_number: body.dose_number,
                    security_code: (actor.role == Role::Citizen).then(|| booked.code.expose().to_owned()),
                    position: booked.position,
                })
            }
            Err(problem) => Err(problem),
        };
        let stored = outcome.as_ref().map(|view| BookingView { security_code: None, ..view.clone_view() }).map_err(Clone::clone);
        self.remember(&actor, "book", &stored).await;
        Ok(Json(outcome?))
    }

    /// Returns an appointment's status.
    #[oai(path = "/appointments/:id", method = "get", tag = "ApiTags::Appointments")]
    async fn get_appointment(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> ApiResult<AppointmentView> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Verifier, Role::Supervisor, Role::Investigator, Role::Auditor, Role::Admin])?;
        self.fresh().await;
        let row = self.appointment_row(&id.0)?;
        self.check_citizen_owns(&actor, &row.beneficiary_id)?;
        Ok(Json(row.into()))
    }

    /// Cancels an appointment (the citizen who booked it).
    #[oai(path = "/appointments/:id", method = "delete", tag = "ApiTags::Appointments")]
    async fn cancel(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> ApiResult<AppointmentOutcome> {
        let actor = self.actor(&auth, request, &[Role::Citizen])?;
        let appointment_id = AppointmentId::parse(&id.0).map_err(Problem::from)?;
        self.idempotent(&actor, &format!("cancel:{appointment_id}"), async {
            let position = self.state.ledger.cancel(&actor, appointment_id).await.map_err(not_found_for_citizen)?;
            self.settle(position).await;
            Ok(AppointmentOutcome { appointment_id: appointment_id.to_string(), status: "cancelled".into(), position, certificate_id: None })
        })
        .await
    }

    /// Submits the security code the beneficiary gives the verifier. Rejections are recorded,
    /// and five lock the appointment.
    #[oai(path = "/appointments/:id/verification", method = "post", tag = "ApiTags::Centre")]
    async fn verify_code(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<CodeRequest>) -> ApiResult<AppointmentOutcome> {
        let actor = self.actor(&auth, request, &[Role::Verifier])?;
        let route = format!("verify:{}", id.0);
        if let Some(replayed) = self.replay::<AppointmentOutcome>(&actor, &route)? {
            return Ok(Json(replayed));
        }
        let appointment_id = AppointmentId::parse(&id.0).map_err(Problem::from)?;
        let code = SecurityCode::parse(body.code.trim()).map_err(Problem::from)?;
        let result = self.state.ledger.verify_code(&actor, appointment_id, code, Utc::now()).await;
        let outcome = match result {
            Ok(position) => {
                Metrics::bump(&self.state.metrics.codes_verified);
                tracing::info!(appointment_id = %appointment_id, verifier_id = %actor.token_id, "security code verified");
                Ok(AppointmentOutcome { appointment_id: appointment_id.to_string(), status: "verified".into(), position, certificate_id: None })
            }
            Err(err) => {
                if matches!(err, LedgerError::Rejected(domain::Rejection::CodeRejected { .. })) {
                    Metrics::bump(&self.state.metrics.codes_rejected);
                    tracing::warn!(appointment_id = %appointment_id, verifier_id = %actor.token_id, cause = %err, "security code rejected");
                }
                Err(Problem::from(err))
            }
        };
        self.remember(&actor, &route, &outcome).await;
        Ok(Json(outcome?))
    }

    /// Records a dose after a verified code, then issues the signed certificate.
    #[oai(path = "/appointments/:id/doses", method = "post", tag = "ApiTags::Centre")]
    async fn record_dose(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<DoseRequest>) -> ApiResult<AppointmentOutcome> {
        let actor = self.actor(&auth, request, &[Role::Verifier])?;
        let route = format!("dose:{}", id.0);
        if let Some(replayed) = self.replay::<AppointmentOutcome>(&actor, &route)? {
            return Ok(Json(replayed));
        }
        let appointment_id = AppointmentId::parse(&id.0).map_err(Problem::from)?;
        let body = body.0;
        let result = self.state.ledger.administer(&actor, appointment_id, body.batch, body.vaccine, Utc::now()).await;
        let outcome = match result {
            Ok(administered) => {
                let position = administered.position;
                Metrics::bump(&self.state.metrics.doses);
                tracing::info!(appointment_id = %appointment_id, vaccinator_id = %actor.token_id, "dose recorded");
                let certificate = crate::certificates::issue(&self.state, &actor, appointment_id).await;
                let (certificate_id, position) = match certificate {
                    Ok((certificate_id, certificate_position)) => {
                        Metrics::bump(&self.state.metrics.certificates);
                        (Some(certificate_id.to_string()), certificate_position)
                    }
                    Err(err) => {
                        tracing::error!(cause = %err, appointment_id = %appointment_id, "certificate not issued after dose");
                        (None, position)
                    }
                };
                self.send_dose_sms(appointment_id, &administered, certificate_id.as_deref()).await;
                Ok(AppointmentOutcome { appointment_id: appointment_id.to_string(), status: "administered".into(), position, certificate_id })
            }
            Err(err) => {
                if matches!(err, LedgerError::Rejected(domain::Rejection::DoseRejected { .. })) {
                    Metrics::bump(&self.state.metrics.doses_rejected);
                    tracing::warn!(appointment_id = %appointment_id, vaccinator_id = %actor.token_id, cause = %err, "dose rejected");
                }
                Err(Problem::from(err))
            }
        };
        self.remember(&actor, &route, &outcome).await;
        Ok(Json(outcome?))
    }

    /// Unlocks a locked appointment (supervisor at the booked centre), with a reason.
    #[oai(path = "/appointments/:id/unlock", method = "post", tag = "ApiTags::Centre")]
    async fn unlock(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<ReasonRequest>) -> ApiResult<AppointmentOutcome> {
        let actor = self.actor(&auth, request, &[Role::Supervisor])?;
        let appointment_id = AppointmentId::parse(&id.0).map_err(Problem::from)?;
        self.idempotent(&actor, &format!("unlock:{appointment_id}"), async {
            let position = self.state.ledger.unlock(&actor, appointment_id, &body.reason).await.map_err(Problem::from)?;
            self.settle(position).await;
            tracing::info!(appointment_id = %appointment_id, supervisor_id = %actor.token_id, "appointment unlocked");
            Ok(AppointmentOutcome { appointment_id: appointment_id.to_string(), status: "unlocked".into(), position, certificate_id: None })
        })
        .await
    }

    /// Corrects a beneficiary's name, year of birth or gender (the citizen who owns it). Each
    /// certificate in force is revoked as superseded and signed again with the corrected data.
    #[oai(path = "/beneficiaries/:id/corrections", method = "post", tag = "ApiTags::Appointments")]
    async fn correct_beneficiary(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<CorrectionRequest>) -> ApiResult<CorrectionOutcome> {
        let actor = self.actor(&auth, request, &[Role::Citizen])?;
        let beneficiary_id = BeneficiaryId::parse(&id.0).map_err(Problem::from)?;
        let route = format!("correct:{beneficiary_id}");
        self.idempotent(&actor, &route, async {
            let command = domain::beneficiary::CorrectBeneficiary {
                beneficiary_id,
                name: body.name.clone(),
                year_of_birth: body.year_of_birth,
                gender: parse_json_enum::<Gender>("gender", &body.gender, "female, male, other")?,
            };
            let corrected = crate::corrections::correct(&self.state, &actor, command).await.map_err(|err| match err {
                LedgerError::Forbidden(_) => Problem::not_found("beneficiary_id", format!("beneficiary {beneficiary_id} not found")),
                other => Problem::from(other),
            })?;
            self.settle(corrected.position).await;
            Ok(CorrectionOutcome {
                beneficiary_id: beneficiary_id.to_string(),
                superseded_certificates: corrected.superseded.iter().map(ToString::to_string).collect(),
                new_certificates: corrected.issued.iter().map(ToString::to_string).collect(),
                position: corrected.position,
            })
        })
        .await
    }

    /// Revokes a certificate with a reason (investigator).
    #[oai(path = "/certificates/:id/revocation", method = "post", tag = "ApiTags::Certificates")]
    async fn revoke_certificate(&self, auth: BearerAuth, request: &Request, id: Path<String>, body: Json<RevocationRequest>) -> ApiResult<RevocationOutcome> {
        let actor = self.actor(&auth, request, &[Role::Investigator])?;
        let certificate_id = CertificateId::parse(&id.0).map_err(Problem::from)?;
        let reason = match body.reason.trim() {
            "fraud" => domain::events::RevocationReason::Fraud,
            "error" => domain::events::RevocationReason::Error,
            _ => return Err(Problem::invalid("reason", "reason must be fraud or error; corrections supersede certificates by themselves").into()),
        };
        let route = format!("revoke:{certificate_id}");
        self.idempotent(&actor, &route, async {
            let position = crate::corrections::revoke(&self.state, &actor, certificate_id, reason, &body.note).await.map_err(Problem::from)?;
            self.settle(position).await;
            Ok(RevocationOutcome { certificate_id: certificate_id.to_string(), reason: body.reason.trim().to_owned(), position })
        })
        .await
    }

    /// Returns revoked certificates, for offline verifiers (public), paged by position.
    #[oai(path = "/revocations", method = "get", tag = "ApiTags::Certificates")]
    async fn revocations(&self, after: Query<Option<u64>>, limit: Query<Option<u32>>) -> ApiResult<RevocationList> {
        let limit = limit.0.unwrap_or(1000);
        if limit == 0 || limit > 10_000 {
            return Err(Problem::invalid("limit", "limit must be between 1 and 10000").into());
        }
        self.fresh().await;
        let rows = self.state.ledger.projections.revocations(after.0.unwrap_or(0), limit as usize).map_err(internal)?;
        let next_after = (rows.len() == limit as usize).then(|| rows.last().map(|row| row.position)).flatten();
        let revoked = rows
            .into_iter()
            .map(|row| RevokedCertificate {
                certificate_id: row.certificate_id,
                reason: row.reason,
                revoked_at: chrono::DateTime::<Utc>::from_timestamp_millis(row.revoked_at_ms).unwrap_or_default().to_rfc3339(),
                position: row.position,
            })
            .collect();
        Ok(Json(RevocationList { issued_at: Utc::now().to_rfc3339(), revoked, next_after }))
    }

    /// Returns a certificate with its QR text (the citizen who owns it, or staff).
    #[oai(path = "/certificates/:id", method = "get", tag = "ApiTags::Certificates")]
    async fn get_certificate(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> ApiResult<CertificateView> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Investigator, Role::Auditor, Role::Admin])?;
        let certificate_id = CertificateId::parse(&id.0).map_err(Problem::from)?;
        let not_found = || Problem::not_found("certificate_id", format!("certificate {certificate_id} not found"));
        self.fresh().await;
        let stored = self.state.vault.get(certificate_id).await.map_err(internal)?.ok_or_else(not_found)?;
        if actor.role == Role::Citizen {
            let owner = self.state.ledger.projections.beneficiary(&stored.beneficiary_id.to_string()).map_err(internal)?;
            if owner.map(|row| row.mobile_hash) != actor.mobile_hash {
                return Err(not_found().into());
            }
        }
        let qr_text = signer::qr::encode_qr(&stored.cose);
        let trust = self.state.keys.trust_list(Utc::now());
        let verification = signer::verify::verify_qr(&qr_text, &trust, &HashSet::new(), Utc::now());
        let record = match verification {
            signer::verify::Verification::Valid { record, .. } => serde_json::to_value(record).unwrap_or(Value::Null),
            signer::verify::Verification::Invalid { .. } => Value::Null,
        };
        Ok(Json(CertificateView {
            certificate_id: certificate_id.to_string(),
            appointment_id: stored.appointment_id.to_string(),
            key_id: stored.key_id.to_hex(),
            issued_at: stored.issued_at.to_rfc3339(),
            qr_text,
            record,
        }))
    }

    /// Verifies a certificate's QR text against the trust list and revocations (public).
    #[oai(path = "/certificates/verify", method = "post", tag = "ApiTags::Certificates")]
    async fn verify_certificate(&self, body: Json<VerifyRequest>) -> ApiResult<VerifyResult> {
        if body.qr_text.len() > 16 * 1024 {
            return Err(Problem::invalid("qr_text", "qr_text must be at most 16 KiB").into());
        }
        let result = crate::certificates::verify_online(&self.state, &body.qr_text).await.map_err(internal)?;
        Ok(Json(match result {
            signer::verify::Verification::Valid { record, key_id, .. } => VerifyResult {
                valid: true,
                reason: None,
                detail: None,
                record: serde_json::to_value(record).ok(),
                key_id: Some(key_id.to_hex()),
            },
            signer::verify::Verification::Invalid { reason } => VerifyResult {
                valid: false,
                reason: Some(reason.code().to_owned()),
                detail: Some(reason.to_string()),
                record: None,
                key_id: None,
            },
        }))
    }

    /// Returns every issuer key with its id, validity and status (public).
    #[oai(path = "/trust-list", method = "get", tag = "ApiTags::Certificates")]
    async fn trust_list(&self) -> poem::Result<poem_openapi::payload::PlainText<String>> {
        Ok(poem_openapi::payload::PlainText(self.state.keys.trust_list(Utc::now()).to_json()))
    }

    /// Returns the trust list as a C2SP signed note: its text is the trust-list JSON on one line,
    /// signed with the ledger's audit key (`keys/audit.pub`), for offline verifiers (public).
    #[oai(path = "/trust-list/signed", method = "get", tag = "ApiTags::Certificates")]
    async fn signed_trust_list(&self) -> poem::Result<poem_openapi::payload::PlainText<String>> {
        let trust = self.state.keys.trust_list(Utc::now());
        let json = serde_json::to_string(&trust).map_err(internal)?;
        let note = self.state.audit.sign_text(&format!("{json}\n")).map_err(internal)?;
        Ok(poem_openapi::payload::PlainText(note))
    }

    /// Creates a staff token (admin). The token is shown once.
    #[oai(path = "/tokens", method = "post", tag = "ApiTags::Tokens")]
    async fn create_token(&self, auth: BearerAuth, request: &Request, body: Json<StaffTokenRequest>) -> ApiResult<TokenIssued> {
        let actor = self.actor(&auth, request, &[Role::Admin])?;
        let role = Role::parse(body.role.trim()).filter(|role| *role != Role::Citizen).ok_or_else(|| {
            Problem::invalid("role", "role must be one of: verifier, supervisor, investigator, auditor, admin")
        })?;
        let centre_id = crate::tokens::check_centre_scope(role, body.centre_id.as_deref(), &self.state.ledger.projections)?;
        let (token, info) = self.state.ledger.service.create_token(role, centre_id, None, Utc::now(), None).map_err(internal)?;
        tracing::info!(token_id = %info.token_id, role = role.as_str(), created_by = %actor.token_id, "staff token created");
        Ok(Json(TokenIssued { token, token_id: info.token_id, role: role.as_str().into(), expires_at: None }))
    }

    /// Lists staff tokens without their secrets (admin).
    #[oai(path = "/tokens", method = "get", tag = "ApiTags::Tokens")]
    async fn list_tokens(&self, auth: BearerAuth, request: &Request) -> ApiResult<Vec<StaffTokenView>> {
        self.actor(&auth, request, &[Role::Admin])?;
        let tokens = self.state.ledger.service.list_tokens().map_err(internal)?;
        Ok(Json(
            tokens
                .into_iter()
                .map(|info| StaffTokenView {
                    token_id: info.token_id,
                    role: info.role.as_str().into(),
                    centre_id: info.centre_id,
                    created_at: info.created_at.to_rfc3339(),
                    revoked: info.revoked,
                })
                .collect(),
        ))
    }

    /// Revokes a staff token (admin).
    #[oai(path = "/tokens/:id", method = "delete", tag = "ApiTags::Tokens")]
    async fn revoke_token(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> ApiResult<StaffTokenView> {
        let actor = self.actor(&auth, request, &[Role::Admin])?;
        let service = &self.state.ledger.service;
        if !service.revoke_token(&id.0).map_err(internal)? {
            return Err(Problem::not_found("token_id", format!("token {} not found", id.0)).into());
        }
        tracing::info!(token_id = %id.0, revoked_by = %actor.token_id, "staff token revoked");
        let info = service.list_tokens().map_err(internal)?.into_iter().find(|info| info.token_id == id.0);
        let info = info.ok_or_else(|| Problem::not_found("token_id", format!("token {} not found", id.0)))?;
        Ok(Json(StaffTokenView {
            token_id: info.token_id,
            role: info.role.as_str().into(),
            centre_id: info.centre_id,
            created_at: info.created_at.to_rfc3339(),
            revoked: info.revoked,
        }))
    }
}

impl BookingView {
    fn clone_view(&self) -> BookingView {
        BookingView {
            appointment_id: self.appointment_id.clone(),
            session_id: self.session_id.clone(),
            dose_number: self.dose_number,
            security_code: self.security_code.clone(),
            position: self.position,
        }
    }
}

impl Api {
    fn beneficiary_view(&self, row: projections::queries::BeneficiaryRow) -> Result<BeneficiaryView, Problem> {
        let appointments = self.state.ledger.projections.appointments_of(&row.beneficiary_id).map_err(internal_problem)?;
        Ok(BeneficiaryView {
            beneficiary_id: row.beneficiary_id,
            name: row.name,
            year_of_birth: row.year_of_birth,
            gender: row.gender,
            photo_id_type: row.photo_id_type,
            photo_id_masked: row.photo_id_masked,
            walk_in: row.walk_in,
            doses_received: row.doses_received,
            appointments: appointments.into_iter().map(AppointmentView::from).collect(),
        })
    }

    fn appointment_row(&self, id: &str) -> Result<projections::queries::AppointmentRow, Problem> {
        let appointment_id = AppointmentId::parse(id).map_err(Problem::from)?;
        self.state
            .ledger
            .projections
            .appointment(&appointment_id.to_string())
            .map_err(internal_problem)?
            .ok_or_else(|| Problem::not_found("appointment_id", format!("appointment {appointment_id} not found")))
    }

    fn check_citizen_owns(&self, actor: &Actor, beneficiary_id: &str) -> Result<(), Problem> {
        if actor.role != Role::Citizen {
            return Ok(());
        }
        let owner = self.state.ledger.projections.beneficiary(beneficiary_id).map_err(internal_problem)?;
        if owner.map(|row| row.mobile_hash) == actor.mobile_hash {
            Ok(())
        } else {
            Err(Problem::not_found("appointment_id", "appointment not found"))
        }
    }

    /// Stores the encrypted code for the slip and queues the booking SMS, in one write of
    /// `service.db`. A failure is logged and not returned, because the booking is valid and the
    /// citizen has the code from the booking response.
    async fn keep_booking_code(&self, beneficiary_id: &BeneficiaryId, booked: &crate::commands::Booked) {
        let appointment_id = booked.appointment_id;
        let sealed = match self.state.slip_sealer.seal(appointment_id, &booked.code) {
            Ok(sealed) => Some(sealed),
            Err(err) => {
                tracing::error!(appointment_id = %appointment_id, cause = %err, "slip code not sealed; the slip cannot be downloaded again");
                None
            }
        };
        let message = self.booking_sms(beneficiary_id, booked);
        if sealed.is_none() && message.is_none() {
            return;
        }

        let written = self
            .state
            .ledger
            .service
            .write(move |connection| {
                if let Some(sealed) = &sealed {
                    sealed.upsert(connection)?;
                }
                if let Some(message) = &message {
                    message.insert(connection)?;
                }
                Ok(())
            })
            .await;
        if let Err(err) = written {
            tracing::error!(appointment_id = %appointment_id, cause = %err, "slip code and booking SMS not stored");
        }
    }

    /// Builds the booking SMS, or `None` when no mobile number is on file.
    fn booking_sms(&self, beneficiary_id: &BeneficiaryId, booked: &crate::commands::Booked) -> Option<crate::service_db::OutboxRow> {
        let Some(row) = &booked.recipient else {
            tracing::warn!(beneficiary_id = %beneficiary_id, "beneficiary has no registration; booking SMS not queued");
            return None;
        };
        let mobile = self.contact(&row.mobile_hash, "booking_confirmation")?;
        let text = format!(
            "Appointment {} booked for {}. Your security code is {}. Tell it to the verifier at the centre only after your ID is checked. Do not share it otherwise.",
            booked.appointment_id,
            row.name,
            booked.code.expose()
        );
        let appointment_id = booked.appointment_id.to_string();
        Some(crate::service_db::OutboxRow::new("booking_confirmation", &mobile, &text, Some(&appointment_id), Utc::now()))
    }

    async fn send_dose_sms(&self, appointment_id: AppointmentId, administered: &crate::commands::Administered, certificate_id: Option<&str>) {
        let Some(beneficiary) = &administered.recipient else {
            tracing::warn!(appointment_id = %appointment_id, "beneficiary has no registration; dose SMS not queued");
            return;
        };
        let Some(mobile) = self.contact(&beneficiary.mobile_hash, "dose_recorded") else { return };
        let appointment = appointment_id.to_string();
        let now = Utc::now();
        let text = format!(
            "Dose {} of {} recorded for {} on {}. If you were not vaccinated, raise a dispute quoting appointment {}.",
            administered.dose_number, administered.vaccine, beneficiary.name, administered.date, appointment_id
        );
        let mut messages = vec![crate::service_db::OutboxRow::new("dose_recorded", &mobile, &text, Some(&appointment), now)];
        if let Some(certificate_id) = certificate_id {
            let text = format!("Your vaccination certificate {certificate_id} is ready. Download it after logging in.");
            messages.push(crate::service_db::OutboxRow::new("certificate_ready", &mobile, &text, Some(&appointment), now));
        }

        // Both messages go in one write, so that they share one commit.
        let written = self
            .state
            .ledger
            .service
            .write(move |connection| messages.iter().try_for_each(|message| message.insert(connection)))
            .await;
        if let Err(err) = written {
            tracing::error!(cause = %err, appointment_id = %appointment_id, "queueing dose SMS failed");
        }
    }
}

/// Waits until the status projections contain every event committed before this call (see
/// [`Api::fresh`]). After the read-your-writes timeout it logs a warning and returns, and the
/// read then uses the projections as they are.
pub(crate) async fn projections_fresh(state: &AppState) {
    let head = *state.ledger.store.watch_head().borrow();
    if state.ledger.projections.checkpoint() >= head {
        return;
    }
    if let Err(err) = state.ledger.projections.wait_for(head, READ_YOUR_WRITES_TIMEOUT).await {
        tracing::warn!(cause = %err, position = head, "projection lagging behind the log; reading it as it is");
    }
}

/// Keyed digest of an OTP, bound to the mobile number.
fn otp_digest(key: &domain::code::ServerKey, mobile_hash: &str, otp: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(key.key_id().as_bytes());
    hasher.update(mobile_hash.as_bytes());
    hasher.update(otp.as_bytes());
    hex::encode(hasher.finalize())
}

pub(crate) fn internal_problem(err: impl std::fmt::Display) -> Problem {
    tracing::error!(cause = %err, "request failed");
    Problem::internal()
}

pub(crate) fn internal(err: impl std::fmt::Display) -> poem::Error {
    internal_problem(err).into()
}

/// Hides another citizen's appointment behind a 404 rather than a 403.
fn not_found_for_citizen(err: LedgerError) -> Problem {
    match err {
        LedgerError::Forbidden(_) => Problem::not_found("appointment_id", "appointment not found"),
        other => Problem::from(other),
    }
}
