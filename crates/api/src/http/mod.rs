//! HTTP layer: poem-openapi endpoints under `/api/v1`, problem documents, and the routes
//! outside the API (`/healthz`, `/metrics`, `/openapi.json`, `/docs`).

pub mod audit;
pub mod documents;
pub mod endpoints;
pub mod fraud;
pub mod problem;
pub mod rendered;
pub mod state;
pub mod verify_page;

use std::sync::Arc;

use poem::middleware::Tracing;
use poem::{get, handler, web::Data, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

pub use state::AppState;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Builds the whole application: API, docs, health and metrics, with the error converter.
pub fn app(state: Arc<AppState>, server_url: &str) -> impl poem::Endpoint {
    let api = OpenApiService::new((endpoints::Api { state: Arc::clone(&state) }, audit::AuditApi { state: Arc::clone(&state) }, documents::DocumentsApi { state: Arc::clone(&state) }, fraud::FraudApi { state: Arc::clone(&state) }), "vaxledger", env!("CARGO_PKG_VERSION"))
        .server(format!("{server_url}/api/v1"));
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/api/v1", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/healthz", get(healthz))
        .at("/metrics", get(metrics))
        .at(verify_page::VERIFY_PATH, get(verify_page::show).post(verify_page::submit))
        .data(state)
        .around(limit_body)
        .with(Tracing)
        .catch_all_error(|err| async move { problem::to_problem_response(err) })
}

#[handler]
fn healthz(state: Data<&Arc<AppState>>) -> Response {
    let projected = state.ledger.projections.checkpoint();
    let body = serde_json::json!({ "status": "ok", "projection_position": projected });
    Response::builder().content_type("application/json").body(body.to_string())
}

#[handler]
fn metrics(state: Data<&Arc<AppState>>) -> impl IntoResponse {
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(state.ledger.projections.checkpoint()))
}

/// Rejects a body over [`MAX_BODY_BYTES`] with 413, whether or not it declares its length.
///
/// poem's `SizeLimit` also rejects requests with no `Content-Length` (411), which would turn
/// away every GET; this checks the header when present and otherwise reads at most the limit.
async fn limit_body<E: Endpoint>(next: E, mut request: Request) -> poem::Result<Response> {
    // The verify page takes file uploads and enforces its own, larger limit.
    if request.uri().path() == verify_page::VERIFY_PATH {
        return next.call(request).await.map(IntoResponse::into_response);
    }
    let too_large = || problem::Problem::new(
        poem::http::StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body is larger than the limit of {} KiB", MAX_BODY_BYTES / 1024),
        Some("body"),
    );
    let declared = request
        .header(poem::http::header::CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => return Err(too_large().into()),
        Some(_) => {}
        None => {
            let body = request.take_body().into_bytes_limit(MAX_BODY_BYTES).await.map_err(|_| too_large())?;
            request.set_body(body);
        }
    }
    next.call(request).await.map(IntoResponse::into_response)
}
