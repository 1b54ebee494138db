//! The result endpoints answer raw bytes with the output's own Content-Type, or JSON with base64
//! data when the job asked for responseType BASE64.

use poem::{IntoResponse, Response};
use poem_openapi::payload::{Binary, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
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
}

/// Content types an output can have: each listed so that clients know to expect bytes.
const BINARY_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "application/pdf",
    "text/html; charset=utf-8",
    "text/markdown; charset=utf-8",
    "text/plain; charset=utf-8",
];

impl ApiResponse for ResultResponse {
    fn meta() -> MetaResponses {
        let mut content: Vec<MetaMediaType> = BINARY_TYPES
            .iter()
            .map(|ct| MetaMediaType { content_type: ct, schema: <Binary<Vec<u8>> as Payload>::schema_ref() })
            .collect();
        let json = MetaSchema { one_of: vec![Base64Result::schema_ref(), Job::schema_ref()], ..MetaSchema::ANY };
        content.push(MetaMediaType { content_type: "application/json", schema: MetaSchemaRef::Inline(Box::new(json)) });
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The result: bytes with the output's content type; JSON with base64 `data` \
                              when the job's responseType is BASE64; for sync captures with responseType URL, \
                              the finished job",
                status: Some(200),
                status_range: None,
                content,
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        Base64Result::register(registry);
        Job::register(registry);
    }
}

impl IntoResponse for ResultResponse {
    fn into_response(self) -> Response {
        match self {
            ResultResponse::Bytes { content_type, bytes } => Response::builder().content_type(content_type).body(bytes),
            ResultResponse::Base64(result) => poem::web::Json(result.to_json()).into_response(),
            ResultResponse::Job(job) => poem::web::Json(job.to_json()).into_response(),
        }
    }
}
