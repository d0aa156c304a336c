//! A JSON response body serialized once and served many times.
//!
//! poem-openapi's `Json<T>` turns the value into a `serde_json::Value` tree and then into text on
//! every response. For a response body that many requests share, such as a session search between two
//! projector batches, [`RenderedJson`] keeps the finished bytes instead, while the OpenAPI
//! document still describes the body with `T`'s schema.

use std::marker::PhantomData;
use std::sync::Arc;

use poem::http::header::CONTENT_TYPE;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::ApiResponse;

/// Content type of the body, the same as poem-openapi's `Json<T>` sends.
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// JSON bytes of a `T`, serialized ahead of the response.
pub struct RenderedJson<T> {
    /// The serialized body, shared between the responses that send it.
    bytes: Arc<Vec<u8>>,
    /// The type the bytes encode, for the OpenAPI schema.
    schema: PhantomData<fn() -> T>,
}

impl<T: ToJSON> RenderedJson<T> {
    /// Serializes `value` exactly as `Json<T>` would.
    pub fn render(value: &T) -> Self {
        let text = value.to_json().map(|json| json.to_string()).unwrap_or_else(|| "null".to_owned());
        RenderedJson { bytes: Arc::new(text.into_bytes()), schema: PhantomData }
    }
}

impl<T> RenderedJson<T> {
    /// Returns the serialized bytes.
    pub fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    /// Wraps bytes that an earlier [`RenderedJson::render`] produced.
    pub fn from_bytes(bytes: Arc<Vec<u8>>) -> Self {
        RenderedJson { bytes, schema: PhantomData }
    }
}

impl<T: Type> Payload for RenderedJson<T> {
    const CONTENT_TYPE: &'static str = JSON_CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for RenderedJson<T> {
    fn into_response(self) -> Response {
        Response::builder().header(CONTENT_TYPE, JSON_CONTENT_TYPE).body(self.bytes.as_ref().clone())
    }
}

impl<T: Type + Send> ApiResponse for RenderedJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
