//! PDF downloads: the certificate (`GET /api/v1/certificates/{id}/pdf`) and the appointment
//! acknowledgement slip (`GET /api/v1/appointments/{id}/slip`).
//!
//! poem-openapi 5 maps each path segment that starts with `:` to one whole parameter, so it
//! cannot route the `{id}.pdf` form. The PDFs hang under the resource instead.
//!
//! Access follows the JSON endpoints. A certificate goes to the citizen whose mobile number owns
//! the beneficiary, or to investigators, auditors and admins; another citizen gets 404. A slip
//! goes only to the owning citizen, because it shows the security code: another citizen gets
//! 404 and staff get 403, walk-in verifiers included, whose beneficiaries receive the code by
//! SMS only.

// `Problem` is the API's error type and is returned by value, as in `endpoints.rs`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use documents::{render_certificate_pdf, render_slip_pdf, CertificateDocument, SlipDocument};
use domain::ids::{AppointmentId, CertificateId};
use poem::http::StatusCode;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use signer::verify::Verification;

use super::endpoints::{Api, BearerAuth};
use super::problem::Problem;
use super::state::AppState;
use crate::ledger::{Actor, ReadSet};
use crate::service_db::Role;
use crate::slip_codes::SlipCodes;

#[derive(Tags)]
enum DocumentTags {
    /// Certificate and acknowledgement-slip PDFs.
    Documents,
}

/// The PDF download operations.
pub struct DocumentsApi {
    /// Shared service state.
    pub state: Arc<AppState>,
}

/// A PDF file.
#[derive(ApiResponse)]
pub enum PdfResponse {
    /// The PDF, with a file name for saving.
    #[oai(status = 200, content_type = "application/pdf")]
    Pdf(
        Binary<Vec<u8>>,
        /// `attachment; filename="..."`.
        #[oai(header = "Content-Disposition")]
        String,
        /// `private, no-store`, because the documents contain personal data and a slip the code.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

impl PdfResponse {
    fn attachment(bytes: Vec<u8>, file_name: &str) -> Self {
        PdfResponse::Pdf(
            Binary(bytes),
            format!("attachment; filename=\"{file_name}\""),
            "private, no-store".to_owned(),
        )
    }
}

#[OpenApi]
impl DocumentsApi {
    /// Returns the certificate as an A4 PDF with the QR code (the citizen who owns it, or staff).
    #[oai(path = "/certificates/:id/pdf", method = "get", tag = "DocumentTags::Documents")]
    async fn certificate_pdf(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> poem::Result<PdfResponse> {
        let actor = self.actor(&auth, request, &[Role::Citizen, Role::Investigator, Role::Auditor, Role::Admin])?;
        let certificate_id = CertificateId::parse(&id.0).map_err(Problem::from)?;
        let not_found = || Problem::not_found("certificate_id", format!("certificate {certificate_id} not found"));

        let stored = self.state.vault.get(certificate_id).await.map_err(internal)?.ok_or_else(not_found)?;
        if actor.role == Role::Citizen && !self.citizen_owns(&actor, &stored.beneficiary_id.to_string())? {
            return Err(not_found().into());
        }

        let qr_text = signer::qr::encode_qr(&stored.cose);
        let verification = crate::certificates::verify_online(&self.state, &qr_text).await.map_err(internal)?;
        let (record, key_id, issuer, issued_at) = match verification {
            Verification::Valid { record, key_id, issuer, issued_at } => (record, key_id, issuer, issued_at),
            Verification::Invalid { reason } => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "certificate_invalid",
                    format!("certificate {certificate_id} no longer verifies ({reason}); no PDF is issued for it"),
                    Some("certificate_id"),
                )
                .into())
            }
        };

        let verify_url = verify_page_url(request);
        let pdf = tokio::task::spawn_blocking(move || {
            let document = CertificateDocument {
                record: &record,
                key_id,
                issuer: &issuer,
                issued_at,
                qr_text: &qr_text,
                verify_url: &verify_url,
            };
            render_certificate_pdf(&document)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;

        tracing::info!(certificate_id = %certificate_id, actor_id = %actor.token_id, role = actor.role.as_str(), "certificate PDF downloaded");
        Ok(PdfResponse::attachment(pdf, &format!("certificate-{certificate_id}.pdf")))
    }

    /// Returns the appointment acknowledgement slip with the security code (only the citizen
    /// who booked it).
    #[oai(path = "/appointments/:id/slip", method = "get", tag = "DocumentTags::Documents")]
    async fn slip_pdf(&self, auth: BearerAuth, request: &Request, id: Path<String>) -> poem::Result<PdfResponse> {
        let actor = self.actor(&auth, request, &[Role::Citizen])?;
        let appointment_id = AppointmentId::parse(&id.0).map_err(Problem::from)?;
        let not_found = || Problem::not_found("appointment_id", format!("appointment {appointment_id} not found"));

        crate::http::endpoints::projections_fresh(&self.state).await;
        let projections = &self.state.ledger.projections;
        let appointment = projections.appointment(&appointment_id.to_string()).map_err(internal)?.ok_or_else(not_found)?;
        if !self.citizen_owns(&actor, &appointment.beneficiary_id)? {
            return Err(not_found().into());
        }
        if appointment.status == "cancelled" {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "appointment_cancelled",
                format!("appointment {appointment_id} was cancelled; book again for a new slip"),
                Some("appointment_id"),
            )
            .into());
        }

        let code = self.current_code(appointment_id).await?;

        let beneficiary = projections.beneficiary(&appointment.beneficiary_id).map_err(internal)?.ok_or_else(not_found)?;
        let centre = projections.centre(&appointment.centre_id).map_err(internal)?.ok_or_else(not_found)?;
        let date = NaiveDate::parse_from_str(&appointment.date, "%Y-%m-%d").map_err(internal)?;
        let slip = SlipDocument {
            appointment_id: appointment_id.to_string(),
            beneficiary_name: beneficiary.name,
            beneficiary_id: beneficiary.beneficiary_id,
            year_of_birth: beneficiary.year_of_birth,
            photo_id: format!("{} {}", photo_id_label(&beneficiary.photo_id_type), beneficiary.photo_id_masked),
            centre_name: centre.name,
            centre_address: format!("{}, {} {}", centre.district, centre.state, centre.pincode),
            date,
            vaccine: appointment.vaccine,
            dose_number: appointment.dose_number,
            security_code: code.expose().to_owned(),
            status: appointment.status,
            generated_at: Utc::now(),
        };
        let pdf = tokio::task::spawn_blocking(move || render_slip_pdf(&slip))
            .await
            .map_err(internal)?
            .map_err(internal)?;

        tracing::info!(appointment_id = %appointment_id, actor_id = %actor.token_id, "acknowledgement slip downloaded");
        Ok(PdfResponse::attachment(pdf, &format!("slip-{appointment_id}.pdf")))
    }
}

impl DocumentsApi {
    /// Authenticates through the main API's token check, so both apply the same rules.
    fn actor(&self, auth: &BearerAuth, request: &Request, roles: &[Role]) -> Result<Actor, Problem> {
        Api { state: Arc::clone(&self.state) }.actor(auth, request, roles)
    }

    /// Returns whether the citizen's mobile number owns the beneficiary.
    fn citizen_owns(&self, actor: &Actor, beneficiary_id: &str) -> Result<bool, Problem> {
        let owner = self.state.ledger.projections.beneficiary(beneficiary_id).map_err(internal_problem)?;
        Ok(owner.is_some_and(|row| Some(row.mobile_hash) == actor.mobile_hash))
    }

    /// Returns the stored code of the appointment after checking it against the HMAC in the
    /// event log, so a slip never shows a code that a reissue replaced.
    async fn current_code(&self, appointment_id: AppointmentId) -> Result<domain::code::SecurityCode, Problem> {
        let data_dir = self.state.data_dir.clone();
        let stored = tokio::task::spawn_blocking(move || SlipCodes::open(&data_dir).and_then(|codes| codes.load(appointment_id)))
            .await
            .map_err(internal_problem)?
            .map_err(internal_problem)?;
        let Some(code) = stored else {
            return Err(Problem::not_found(
                "appointment_id",
                format!("no security code is kept for appointment {appointment_id}; use the code from the booking SMS"),
            ));
        };

        let ledger = &self.state.ledger;
        let appointment = ledger.load_appointment(appointment_id, &mut ReadSet::default()).await.map_err(internal_problem)?;
        let stored_hmac = appointment.code_hmac.as_deref().and_then(|text| hex::decode(text).ok()).unwrap_or_default();
        if !ledger.server_key.code_matches(&appointment_id, &code, &stored_hmac) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "code_replaced",
                format!("the security code of appointment {appointment_id} was replaced; use the code from the latest SMS"),
                Some("appointment_id"),
            ));
        }
        Ok(code)
    }
}

/// Returns the verify page's address as the client reached this server, for printing on the
/// certificate. The Host header is used only if it looks like a host name and port; otherwise
/// the path alone is printed.
fn verify_page_url(request: &Request) -> String {
    let host = request.header("host").unwrap_or_default();
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !plausible {
        return "/verify".to_owned();
    }
    let scheme = match request.header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/verify")
}

/// Returns the English name of a photo-ID type stored in the projection as its snake_case name.
fn photo_id_label(stored: &str) -> String {
    serde_json::from_value::<domain::events::PhotoIdType>(serde_json::Value::String(stored.to_owned()))
        .map(|kind| documents::labels::photo_id_name(kind).to_owned())
        .unwrap_or_else(|_| stored.to_owned())
}

fn internal_problem(err: impl std::fmt::Display) -> Problem {
    tracing::error!(cause = %err, "document request failed");
    Problem::internal()
}

fn internal(err: impl std::fmt::Display) -> poem::Error {
    internal_problem(err).into()
}
