//! The public verify page: `GET /verify` shows the forms, `POST /verify` checks a certificate
//! given as pasted QR text, a photo or screenshot of the QR code (decoded on the server), or the
//! certificate PDF (whose embedded QR text is read). The page responds VALID with the details or
//! INVALID with the reason, in English and Hindi.
//!
//! The page has its own body limit of [`MAX_REQUEST_BYTES`]; the application-wide 64 KiB limit
//! does not apply to this path. Every failure is a page with a reason, never a panic or a bare
//! error status.

mod page;
pub mod reasons;

use std::sync::Arc;

use documents::{read_qr_text, ReadError, MAX_INPUT_BYTES};
use poem::http::{header, StatusCode};
use poem::web::{Data, Form, Multipart};
use poem::{handler, Body, FromRequest, Request, RequestBody, Response};
use serde::Deserialize;

use self::page::{outcome_code, render, Outcome};
use super::state::AppState;

/// Path of the page.
pub const VERIFY_PATH: &str = "/verify";

/// Largest request body: one file of [`MAX_INPUT_BYTES`] plus room for the form's field
/// headers and boundaries.
pub const MAX_REQUEST_BYTES: usize = MAX_INPUT_BYTES + 64 * 1024;

/// Most form fields read from one request; the page's forms send one or two.
const MAX_FORM_FIELDS: usize = 8;

/// Longest pasted text echoed back into the form, in characters.
const MAX_ECHO_CHARS: usize = 16 * 1024;

/// Content-Security-Policy of the page: inline CSS only, no script, no outside resource, and the
/// forms may post only to this server.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Form fields of a urlencoded submission.
#[derive(Debug, Deserialize)]
struct TextForm {
    /// Pasted QR text.
    qr_text: Option<String>,
}

/// Input submitted by the visitor.
enum Submission {
    /// Pasted QR text.
    Text(String),
    /// Bytes of an uploaded file.
    File(Vec<u8>),
}

/// Shows the empty page.
#[handler]
pub async fn show() -> Response {
    page_response(StatusCode::OK, &Outcome::Blank, "")
}

/// Checks a submitted certificate and shows the result.
#[handler]
pub async fn submit(request: &Request, body: Body, state: Data<&Arc<AppState>>) -> Response {
    let submission = match read_submission(request, body).await {
        Ok(submission) => submission,
        Err((status, error)) => return page_response(status, &Outcome::Unreadable(&error), ""),
    };

    let (qr_text, echoed) = match submission {
        Submission::Text(text) => {
            let trimmed = text.trim().to_owned();
            if trimmed.is_empty() {
                return page_response(StatusCode::BAD_REQUEST, &Outcome::Unreadable(&ReadError::Empty), "");
            }
            let echoed: String = trimmed.chars().take(MAX_ECHO_CHARS).collect();
            (trimmed, echoed)
        }
        Submission::File(bytes) => {
            // NOTE: uploads have no per-client rate limit, and a large photo with no QR code
            // costs several detection attempts (seconds of CPU in a debug build).
            let decoded = tokio::task::spawn_blocking(move || read_qr_text(&bytes)).await;
            match decoded {
                Ok(Ok(text)) => (text, String::new()),
                Ok(Err(error)) => return page_response(StatusCode::BAD_REQUEST, &Outcome::Unreadable(&error), ""),
                Err(join_error) => {
                    tracing::error!(cause = %join_error, "reading an uploaded file failed");
                    return page_response(StatusCode::INTERNAL_SERVER_ERROR, &Outcome::Failed, "");
                }
            }
        }
    };

    match crate::certificates::verify_online(&state, &qr_text).await {
        Ok(verification) => page_response(StatusCode::OK, &Outcome::Checked(&verification), &echoed),
        Err(cause) => {
            tracing::error!(cause = %cause, "certificate verification on the verify page failed");
            page_response(StatusCode::INTERNAL_SERVER_ERROR, &Outcome::Failed, &echoed)
        }
    }
}

/// Reads the body under [`MAX_REQUEST_BYTES`] and returns the pasted text or the uploaded file.
/// Pasted text wins when a request has both.
async fn read_submission(request: &Request, body: Body) -> Result<Submission, (StatusCode, ReadError)> {
    let too_large = |size: usize| (StatusCode::PAYLOAD_TOO_LARGE, ReadError::TooLarge { size, max: MAX_INPUT_BYTES });

    let declared = request
        .header(header::CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok())
        .map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if let Some(length) = declared.filter(|length| *length > MAX_REQUEST_BYTES) {
        return Err(too_large(length));
    }
    let bytes = body.into_bytes_limit(MAX_REQUEST_BYTES).await.map_err(|_| too_large(MAX_REQUEST_BYTES + 1))?;

    let content_type = request.content_type().unwrap_or_default().to_ascii_lowercase();
    let mut replayed = RequestBody::new(Body::from(bytes));
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let Ok(Form(form)) = Form::<TextForm>::from_request(request, &mut replayed).await else {
            return Err((StatusCode::BAD_REQUEST, ReadError::Empty));
        };
        return Ok(Submission::Text(form.qr_text.unwrap_or_default()));
    }
    if !content_type.starts_with("multipart/form-data") {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, ReadError::UnsupportedType));
    }

    let Ok(mut multipart) = Multipart::from_request(request, &mut replayed).await else {
        return Err((StatusCode::BAD_REQUEST, ReadError::Empty));
    };
    let mut text = None;
    let mut file = None;
    for _ in 0..MAX_FORM_FIELDS {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                tracing::info!(cause = %err, "malformed multipart form on the verify page");
                return Err((StatusCode::BAD_REQUEST, ReadError::Empty));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let Ok(content) = field.bytes().await else {
            return Err((StatusCode::BAD_REQUEST, ReadError::Empty));
        };
        match name.as_str() {
            "qr_text" => text = Some(String::from_utf8_lossy(&content).into_owned()),
            "file" if !content.is_empty() => file = Some(content),
            _ => {}
        }
    }

    match (text, file) {
        (Some(text), _) if !text.trim().is_empty() => Ok(Submission::Text(text)),
        (_, Some(file)) => Ok(Submission::File(file)),
        _ => Err((StatusCode::BAD_REQUEST, ReadError::Empty)),
    }
}

/// Builds the HTML response with the page's security headers.
fn page_response(status: StatusCode, outcome: &Outcome<'_>, echoed: &str) -> Response {
    if !matches!(outcome, Outcome::Blank) {
        tracing::info!(outcome = outcome_code(outcome), status = status.as_u16(), "verify page check");
    }
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .header("Cache-Control", "no-store")
        .body(render(outcome, echoed))
}
