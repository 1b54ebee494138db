//! The result endpoints answer raw bytes with the output's own Content-Type, or JSON with base64
//! data when the job asked for responseType BASE64.

use poem::{IntoResponse, Response};
use poem_openapi::payload::{Binary, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::ToJSON;
use poem_openapi::ApiResponse;

use crate::schema::{Base64Result, Job};

pub enum ResultResponse {
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
    Base64(Base64Result),
    /// Sync captures with responseType URL: the finished job, with its resultUrl.
    Job(Box<Job>),
    /// PGSHOT_STORAGE_SERVE=redirect: 307 to a presigned URL of the object.
    Redirect(String),
}

/// How the spec describes a result. The bytes are answered with the output's own Content-Type
/// (image/png, application/pdf, text/markdown; charset=utf-8, ...); the spec names one binary
/// media type, so that client generators hand the caller bytes whatever the output. A job whose
/// responseType is BASE64 (or URL, for a sync capture) is answered with JSON instead: that is the
/// job's choice, not the caller's, so it is described in words and by the `Base64Result` schema,
/// not as a second media type (generators given two pick the JSON one and parse every image as
/// JSON).
const BINARY: &str = "application/octet-stream";

fn result_meta(description: &'static str) -> MetaResponses {
    MetaResponses {
        responses: vec![MetaResponse {
            description,
            status: Some(200),
            status_range: None,
            content: vec![MetaMediaType { content_type: BINARY, schema: <Binary<Vec<u8>> as Payload>::schema_ref() }],
            headers: vec![],
        }],
    }
}

impl ApiResponse for ResultResponse {
    fn meta() -> MetaResponses {
        result_meta(
            "The result's bytes, answered with the output's own Content-Type: image/png, image/jpeg, \
             image/webp, application/pdf, text/html, text/markdown, text/plain or application/json. \
             When the job's responseType is BASE64 the answer is application/json instead, a \
             Base64Result (components/schemas/Base64Result) with the bytes in `data`. A deployment \
             with results in object storage and PGSHOT_STORAGE_SERVE=redirect answers 307 to a \
             presigned URL of the object instead of the bytes (HTTP clients follow it).",
        )
    }

    fn register(_: &mut Registry) {}
}

/// A sync capture's answer: a job's result, or (responseType URL) the finished job.
pub struct CaptureResponse(pub ResultResponse);

impl ApiResponse for CaptureResponse {
    fn meta() -> MetaResponses {
        result_meta(
            "The capture's bytes, answered with the output's own Content-Type (image/png unless the \
             request says otherwise). With responseType BASE64 the answer is application/json, a \
             Base64Result; with responseType URL it is the finished Job, as application/json.",
        )
    }

    fn register(_: &mut Registry) {}
}

impl IntoResponse for CaptureResponse {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// A result is a page's own content (its HTML, text, or markup in a JSON field) served from the
/// API's origin: a browser that opens it must neither guess another type (`nosniff`) nor run
/// it as a page of that origin (`sandbox`, no subresources but inline styles and data: images).
pub const RESULT_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:";

impl IntoResponse for ResultResponse {
    fn into_response(self) -> Response {
        let mut response = match self {
            ResultResponse::Bytes { content_type, bytes } => Response::builder().content_type(content_type).body(bytes),
            ResultResponse::Base64(result) => poem::web::Json(result.to_json()).into_response(),
            ResultResponse::Job(job) => poem::web::Json(job.to_json()).into_response(),
            ResultResponse::Redirect(url) => Response::builder()
                .status(poem::http::StatusCode::TEMPORARY_REDIRECT)
                .header(poem::http::header::LOCATION, url)
                .finish(),
        };
        let headers = response.headers_mut();
        headers.insert("X-Content-Type-Options", poem::http::HeaderValue::from_static("nosniff"));
        headers.insert("Content-Security-Policy", poem::http::HeaderValue::from_static(RESULT_CSP));
        response
    }
}
