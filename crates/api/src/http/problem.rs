//! RFC 9457 problem documents: every error the API returns is one, naming the failing field.

use poem::http::StatusCode;
use poem::Response;
use serde_json::{json, Value};

use crate::ledger::LedgerError;
use domain::Rejection;

/// An error response as an RFC 9457 problem document.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code; the `type` member is `urn:vaxledger:problem:<code>`.
    pub code: String,
    /// Short summary of the problem type.
    pub title: String,
    /// Explanation of this occurrence, naming the value and the fix.
    pub detail: String,
    /// Request field, parameter or header that failed.
    pub field: Option<String>,
    /// Extension members, such as `attempts` for a rejected code.
    pub extra: Value,
}

impl Problem {
    /// Creates a problem with no extension members.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.into(),
            field: field.map(str::to_owned),
            extra: Value::Null,
        }
    }

    /// 400 for an invalid field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", detail, Some(field))
    }

    /// 403 for an actor that may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail, Some("authorization"))
    }

    /// 404 for an unknown id.
    pub fn not_found(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail, Some(field))
    }

    /// 500 that hides the cause; the caller has logged it.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the server failed; the error was logged, retry later", None)
    }

    /// Returns the JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("urn:vaxledger:problem:{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        if let (Value::Object(extra), Value::Object(target)) = (&self.extra, &mut body) {
            for (key, value) in extra {
                target.insert(key.clone(), value.clone());
            }
        }
        body
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for Problem {}

impl poem::error::ResponseError for Problem {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        Response::builder()
            .status(self.status)
            .content_type("application/problem+json")
            .body(self.body().to_string())
    }
}

impl From<Rejection> for Problem {
    fn from(rejection: Rejection) -> Self {
        let field = rejection.field();
        match &rejection {
            Rejection::Invalid { .. } => Problem::new(StatusCode::BAD_REQUEST, "invalid_field", rejection.to_string(), field),
            Rejection::NotFound { .. } => Problem::new(StatusCode::NOT_FOUND, "not_found", rejection.to_string(), field),
            Rejection::AlreadyExists { .. } => Problem::new(StatusCode::CONFLICT, "already_exists", rejection.to_string(), field),
            Rejection::Conflict { code, .. } => Problem::new(StatusCode::CONFLICT, code, rejection.to_string(), field),
            Rejection::CodeRejected { reason, attempts, locked } => {
                let status = match reason {
                    domain::rejection::CodeRejectionReason::WrongCentre => StatusCode::FORBIDDEN,
                    domain::rejection::CodeRejectionReason::Locked => StatusCode::LOCKED,
                    _ if *locked => StatusCode::LOCKED,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut problem = Problem::new(status, "code_rejected", rejection.to_string(), field);
                problem.extra = json!({
                    "reason": reason.as_str(),
                    "attempts": attempts,
                    "locked": locked,
                    "max_attempts": domain::appointment::MAX_REJECTED_ATTEMPTS,
                });
                problem
            }
            Rejection::DoseRejected { reason } => {
                let status = match reason {
                    domain::rejection::DoseRejectionReason::WrongCentre => StatusCode::FORBIDDEN,
                    domain::rejection::DoseRejectionReason::AlreadyAdministered => StatusCode::CONFLICT,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut problem = Problem::new(status, "dose_rejected", rejection.to_string(), field);
                problem.extra = json!({ "reason": reason.as_str() });
                problem
            }
        }
    }
}

impl From<LedgerError> for Problem {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::Rejected(rejection) => rejection.into(),
            LedgerError::Forbidden(detail) => Problem::forbidden(detail),
            LedgerError::Store(_) | LedgerError::Internal(_) => {
                tracing::error!(cause = %err, "command failed");
                Problem::internal()
            }
        }
    }
}

/// Converts any error that is not already a problem (a malformed body, a missing token, an
/// unknown route, an oversized body) into a problem document.
pub fn to_problem_response(err: poem::Error) -> Response {
    if err.is::<Problem>() {
        return err.into_response();
    }
    let status = err.status();
    let message = err.to_string();
    let (code, field, detail) = match status {
        StatusCode::UNAUTHORIZED => (
            "unauthorized",
            Some("authorization"),
            "missing or invalid bearer token; send Authorization: Bearer <token>".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", Some("body"), "request body is larger than the limit of 64 KiB".to_owned()),
        StatusCode::NOT_FOUND => ("not_found", None, "no such endpoint; see /openapi.json".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", None, message.clone()),
        _ if status.is_client_error() => ("invalid_request", field_from_message(&message), message.clone()),
        _ => {
            tracing::error!(cause = %message, status = status.as_u16(), "request failed");
            ("internal_error", None, "the server failed; the error was logged, retry later".to_owned())
        }
    };
    let field = field.map(str::to_owned).or_else(|| field_from_message(&message).map(str::to_owned));
    let problem = Problem {
        status,
        code: code.to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        detail,
        field,
        extra: Value::Null,
    };
    poem::error::ResponseError::as_response(&problem)
}

/// Finds the field a poem-openapi parse error names, such as ``missing field `name` ``.
fn field_from_message(message: &str) -> Option<&str> {
    if let Some(start) = message.find('`') {
        let rest = &message[start + 1..];
        if let Some(end) = rest.find('`') {
            return Some(&rest[..end]);
        }
    }
    for marker in ["parameter `", "parameter \"", "field \""] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            if let Some(end) = rest.find(['`', '"']) {
                return Some(&rest[..end]);
            }
        }
    }
    if message.contains("payload") || message.contains("JSON") || message.contains("json") {
        return Some("body");
    }
    None
}
