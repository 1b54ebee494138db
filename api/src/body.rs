//! The request bodies of the create operations: described in the spec by a schema type (such as
//! [`crate::schema::ScreenshotRequest`]), parsed as plain JSON and validated by `pgshot-job`, so
//! that errors name the field the same way `screenshot_enqueue` does.

use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::{Request, RequestBody, Result};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde_json::Value;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::screenshots::State;

/// Largest request body accepted unless `PGSHOT_MAX_BODY_BYTES` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A body over the limit: refused with 413 before it is read whole.
#[derive(Debug)]
pub struct BodyTooLarge {
    pub limit: usize,
}

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

/// A JSON body described by `T` in the spec, handed to the handler as plain JSON.
pub struct JsonBody<T>(pub Value, pub PhantomData<T>);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let limit = request.data::<Arc<State>>().map_or(DEFAULT_MAX_BODY_BYTES, |s| s.max_body_bytes);
        let data = read_limited(body.take()?, limit).await?;
        let value = serde_json::from_slice(&data)
            .map_err(|e| ParseRequestPayloadError { reason: format!("the body is not valid JSON: {e}") })?;
        Ok(JsonBody(value, PhantomData))
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: Type);

/// After a body is found too large, how much more of it is read and dropped, and for how long.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The body, if it is at most `limit` bytes. A larger one is refused, but read on (up to
/// [`DRAIN_BYTES`]) before the 413 goes out: a server that closes with the client's bytes unread
/// makes the kernel reset the connection, and a client still sending then sees a broken pipe
/// instead of the answer (one large request in fifteen did, measured).
async fn read_limited(body: poem::Body, limit: usize) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| poem::Error::from(ReadBodyError::Io(e));
    let mut reader = body.into_async_read();
    let mut data = Vec::new();
    (&mut reader).take(limit as u64 + 1).read_to_end(&mut data).await.map_err(io)?;
    if data.len() > limit {
        let (mut rest, mut sink) = (reader.take(DRAIN_BYTES), tokio::io::sink());
        let _ = tokio::time::timeout(DRAIN_TIME, tokio::io::copy(&mut rest, &mut sink)).await;
        return Err(poem::Error::new(BodyTooLarge { limit }, StatusCode::PAYLOAD_TOO_LARGE));
    }
    Ok(data)
}
