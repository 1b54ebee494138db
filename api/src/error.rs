//! One error body for every failure, and the one place where Postgres errors become HTTP statuses
//! (DESIGN §10).

use std::collections::BTreeMap;

use pgshot_db::Failure;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

use crate::admission::Refused;

/// `{"error": {"code", "message", "details"}, "requestId", "message", "errorCode",
/// "validationErrors"}`: the nested error of the allscreenshots contract, and the same code and
/// message at the top level, where the official TypeScript SDK reads them.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// Quote it when reporting a problem: the API's log has it.
    pub request_id: String,
    /// The same as `error.message`.
    pub message: String,
    /// The same as `error.code`.
    pub error_code: String,
    /// Invalid requests: the message for the field at fault, by the field's path (for example
    /// `viewport.width` or `urls[2].url`).
    #[oai(skip_serializing_if_is_none)]
    pub validation_errors: Option<BTreeMap<String, String>>,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        body(
            "q8n2x5v1m3c9b7ka",
            "INVALID_OPTION",
            "viewport.width must be between 100 and 2560",
            Some(ErrorDetails {
                field: Some("viewport.width".into()),
                detail: Some("got 5000".into()),
                ..Default::default()
            }),
        )
        .0
    }
}

/// The error, as the allscreenshots contract nests it.
#[derive(Debug, Clone, Object)]
pub struct ErrorDetail {
    /// A stable code: INVALID_REQUEST, INVALID_JSON, INVALID_URL, BLOCKED_URL, INVALID_OPTION,
    /// INVALID_CURSOR, UNAUTHORIZED, NOT_FOUND, INVALID_STATE, IDEMPOTENCY_CONFLICT, CANCELLED,
    /// RESULT_EXPIRED, PAYLOAD_TOO_LARGE, BULK_TOO_LARGE, TOO_MANY_REQUESTS, NOT_FINISHED,
    /// SERVICE_UNAVAILABLE, INTERNAL_ERROR; or, for a sync capture that failed, the job's errorCode.
    pub code: String,
    /// What went wrong, naming the field at fault.
    pub message: String,
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<ErrorDetails>,
}

/// What helps fix or follow up the error.
#[derive(Debug, Clone, Default, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ErrorDetails {
    /// Invalid requests: the path of the field at fault.
    pub field: Option<String>,
    /// What was found instead.
    pub detail: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
    /// Sync captures: the job's id.
    pub job_id: Option<String>,
    /// Sync captures that did not finish in time: where to poll the job.
    pub status_url: Option<String>,
}

impl ErrorDetails {
    pub fn field(name: &str) -> ErrorDetails {
        ErrorDetails { field: Some(name.to_string()), ..Default::default() }
    }
}

/// Every error status the API can answer. Each operation answers a subset, declared by its own
/// error type (`operation_errors!`), so that the spec lists only what can happen there.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed JSON, an unknown field or an invalid option.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// A missing, unknown or revoked API key.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such job for this API key.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The job is not in a state that allows this, or an idempotency key was reused.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The result expired and its bytes were deleted.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The request body is larger than the limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// A bulk request over 100 URLs, or (sync capture) a render that failed.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// An API key's limit (RATE_LIMITED), or too many sync captures waiting: retry after the given
    /// number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unreachable or busy: retry after the given number of seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
}

/// An operation's own error type: the statuses it can answer, each described for it. Any other
/// [`ApiError`] reaching it would be a bug, answered as 500 and logged.
macro_rules! operation_errors {
    ($(#[$meta:meta])* $name:ident {
        $($(#[doc = $doc:literal])* $variant:ident = $status:literal $(+ $retry:ident)?),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, poem_openapi::ApiResponse)]
        pub enum $name {
            $(
                $(#[doc = $doc])*
                #[oai(status = $status)]
                $variant(
                    poem_openapi::payload::Json<$crate::error::ErrorBody>
                    $(, #[oai(header = "Retry-After")] operation_errors!(@seconds $retry))?
                ),
            )*
            /// An error of ours; quote the requestId when reporting it.
            #[oai(status = 500)]
            Internal(poem_openapi::payload::Json<$crate::error::ErrorBody>),
            /// The database is unreachable or busy: retry after the number of seconds in Retry-After.
            #[oai(status = 503)]
            Unavailable(poem_openapi::payload::Json<$crate::error::ErrorBody>, #[oai(header = "Retry-After")] u32),
        }

        impl From<$crate::error::ApiError> for $name {
            fn from(e: $crate::error::ApiError) -> $name {
                use $crate::error::ApiError;
                match e {
                    $(ApiError::$variant(body $(, $retry)?) => $name::$variant(body $(, $retry)?),)*
                    ApiError::Internal(body) => $name::Internal(body),
                    ApiError::Unavailable(body, seconds) => $name::Unavailable(body, seconds),
                    #[allow(unreachable_patterns)]
                    other => {
                        tracing::error!(operation = stringify!($name), error = ?other, "an error this operation does not declare");
                        $name::Internal(poem_openapi::payload::Json($crate::error::ApiError::internal_body()))
                    }
                }
            }
        }
    };
    (@seconds $retry:ident) => { u32 };
}

pub(crate) use operation_errors;

pub type ApiResult<T> = Result<T, ApiError>;

fn body(request_id: &str, code: &str, message: impl Into<String>, details: Option<ErrorDetails>) -> Json<ErrorBody> {
    let message = message.into();
    let validation_errors =
        details.as_ref().and_then(|d| d.field.clone()).map(|field| BTreeMap::from([(field, message.clone())]));
    Json(ErrorBody {
        message: message.clone(),
        error_code: code.to_string(),
        validation_errors,
        error: ErrorDetail { code: code.to_string(), message, details },
        request_id: request_id.to_string(),
    })
}

/// 403 in the one error shape, for routes outside the spec (the dashboard's operator views): the
/// spec's operations never answer it, so it is not a variant of `ApiError`.
pub fn forbidden(rid: &str, message: &str) -> poem::Response {
    use poem::IntoResponse;
    body(rid, "FORBIDDEN", message, None).with_status(poem::http::StatusCode::FORBIDDEN).into_response()
}

impl ApiError {
    pub fn bad_request(rid: &str, code: &str, message: impl Into<String>, details: Option<ErrorDetails>) -> ApiError {
        ApiError::BadRequest(body(rid, code, message, details))
    }

    pub fn unauthorized(rid: &str) -> ApiError {
        ApiError::Unauthorized(body(
            rid,
            "UNAUTHORIZED",
            "a valid API key is required in X-API-Key or Authorization: Bearer",
            None,
        ))
    }

    pub fn not_found(rid: &str, message: impl Into<String>) -> ApiError {
        ApiError::NotFound(body(rid, "NOT_FOUND", message, None))
    }

    /// A result in object storage that cannot be fetched now: 503, retry shortly.
    pub fn storage_unavailable(rid: &str, cause: &str) -> ApiError {
        tracing::warn!(request_id = rid, error = cause, "object storage unavailable");
        ApiError::Unavailable(
            body(rid, "SERVICE_UNAVAILABLE", "the result's object storage is unavailable; retry shortly", None),
            2,
        )
    }

    pub fn too_many_waiting(rid: &str, refused: Refused) -> ApiError {
        let message = match refused {
            Refused::Holder(n) => format!(
                "this API key has {n} sync captures waiting, its most at once; retry when one is answered or use /v1/screenshots/async"
            ),
            Refused::Total(_) => "too many sync captures are waiting; retry shortly or use /v1/screenshots/async".into(),
        };
        ApiError::TooManyRequests(body(rid, "TOO_MANY_REQUESTS", &message, None), 1)
    }

    /// Too many failed dashboard logins from one address.
    pub fn too_many_logins(rid: &str, retry_after: u64) -> ApiError {
        let message = format!("too many failed logins from this address; retry in {retry_after} s");
        ApiError::TooManyRequests(body(rid, "TOO_MANY_REQUESTS", &message, None), retry_after as u32)
    }

    /// More dashboard event streams than a viewer, or the API, may hold open.
    pub fn too_many_streams(rid: &str, refused: Refused) -> ApiError {
        let message = match refused {
            Refused::Holder(n) => format!("this viewer has {n} event streams open, its most at once; close one"),
            Refused::Total(n) => format!("the API has {n} event streams open, its most at once; retry shortly"),
        };
        ApiError::TooManyRequests(body(rid, "TOO_MANY_REQUESTS", &message, None), 5)
    }

    /// A sync capture whose job failed: the job's own error code and message.
    pub fn render_failed(rid: &str, job: &Value) -> ApiError {
        let code = job["errorCode"].as_str().unwrap_or("RENDER_FAILED");
        let message = job["errorMessage"].as_str().unwrap_or("the render failed");
        let details = ErrorDetails { job_id: job["id"].as_str().map(str::to_string), ..Default::default() };
        ApiError::Unprocessable(body(rid, code, message, Some(details)))
    }

    /// A sync capture that no worker finished in time; the job goes on and can be polled.
    pub fn not_finished(rid: &str, job_id: &str, status_url: &str) -> ApiError {
        let message = "no worker finished the job in time; it stays queued: poll details.statusUrl";
        let details = ErrorDetails {
            job_id: Some(job_id.to_string()),
            status_url: Some(status_url.to_string()),
            ..Default::default()
        };
        ApiError::Unavailable(body(rid, "NOT_FINISHED", message, Some(details)), 5)
    }

    pub fn invalid_cursor(rid: &str) -> ApiError {
        let message = "cursor is not an X-Next-Cursor of this endpoint";
        ApiError::bad_request(rid, "INVALID_CURSOR", message, Some(ErrorDetails::field("cursor")))
    }

    pub fn conflict(rid: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Conflict(body(rid, code, message, None))
    }

    pub fn internal(rid: &str) -> ApiError {
        ApiError::Internal(body(rid, "INTERNAL_ERROR", "internal error; quote the request id when reporting it", None))
    }

    /// An internal error's body, with a fresh request id.
    pub fn internal_body() -> ErrorBody {
        body(
            &pgshot_job::new_job_id(),
            "INTERNAL_ERROR",
            "internal error; quote the request id when reporting it",
            None,
        )
        .0
    }

    /// A request the shared validation refused, with the field named.
    pub fn invalid(rid: &str, e: &pgshot_job::InvalidOption) -> ApiError {
        let details = ErrorDetails {
            field: Some(e.field.clone()),
            detail: e.detail.clone(),
            hint: e.hint.clone(),
            ..Default::default()
        };
        if e.code == "BULK_TOO_LARGE" {
            return ApiError::Unprocessable(body(rid, e.code, e.message.clone(), Some(details)));
        }
        ApiError::bad_request(rid, e.code, e.message.clone(), Some(details))
    }

    /// Maps a database error; `what` names the thing looked up, for 404 messages.
    pub fn from_db(rid: &str, e: &tokio_postgres::Error) -> ApiError {
        let Some(code) = e.code() else {
            tracing::warn!(request_id = rid, error = %e, "database unavailable");
            return ApiError::Unavailable(
                body(rid, "SERVICE_UNAVAILABLE", "the database is unavailable; retry shortly", None),
                2,
            );
        };
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
        let details = e.as_db_error().and_then(|d| {
            let v = ErrorDetails {
                detail: d.detail().map(str::to_string),
                hint: d.hint().map(str::to_string),
                ..Default::default()
            };
            (d.detail().is_some() || d.hint().is_some()).then_some(v)
        });
        match pgshot_db::classify(e) {
            // 22023 is the extension's "invalid parameter value", with the field in its DETAIL.
            Failure::Invalid if code.code() == "22023" => {
                ApiError::bad_request(rid, "INVALID_REQUEST", message, details)
            }
            // Other data exceptions come from values the client sent (a NUL byte in an id, say).
            Failure::Invalid => ApiError::bad_request(rid, "INVALID_REQUEST", message, None),
            Failure::NotFound => ApiError::not_found(rid, message),
            Failure::WrongState => ApiError::Conflict(body(rid, "INVALID_STATE", message, details)),
            Failure::Duplicate => ApiError::Conflict(body(rid, "IDEMPOTENCY_CONFLICT", message, details)),
            Failure::Gone => ApiError::Gone(body(rid, "RESULT_EXPIRED", message, details)),
            Failure::Limited => {
                let seconds = pgshot_db::retry_after(e).unwrap_or(1).max(1);
                ApiError::TooManyRequests(body(rid, "RATE_LIMITED", message, details), seconds)
            }
            Failure::Transient => {
                tracing::warn!(request_id = rid, error = %e, "database busy or unavailable");
                ApiError::Unavailable(body(rid, "SERVICE_UNAVAILABLE", "the database is busy; retry shortly", None), 1)
            }
            Failure::Denied | Failure::Other => {
                tracing::error!(request_id = rid, error = %e, "database error");
                ApiError::internal(rid)
            }
        }
    }

    pub fn from_pool(rid: &str, e: &deadpool_postgres::PoolError) -> ApiError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => ApiError::from_db(rid, e),
            other => {
                tracing::warn!(request_id = rid, error = %other, "no database connection");
                ApiError::Unavailable(
                    body(rid, "SERVICE_UNAVAILABLE", "no database connection is available; retry shortly", None),
                    2,
                )
            }
        }
    }
}

impl ApiError {
    /// 405 for a method an endpoint does not have: outside the spec, so not an ApiError variant.
    pub fn method_not_allowed() -> poem::Response {
        let body =
            body(&pgshot_job::new_job_id(), "METHOD_NOT_ALLOWED", "this endpoint does not take that method", None);
        poem::Response::builder()
            .status(poem::http::StatusCode::METHOD_NOT_ALLOWED)
            .content_type("application/json")
            .body(poem_openapi::types::ToJSON::to_json_string(&body.0))
    }

    /// Errors raised before a handler runs: a missing key, a bad path or query parameter, a body
    /// that is not JSON. They carry no request id of ours, so they get a fresh one.
    pub fn from_poem(err: poem::Error) -> ApiError {
        let rid = pgshot_job::new_job_id();
        if err.is::<poem_openapi::error::AuthorizationError>() {
            return ApiError::unauthorized(&rid);
        }
        if err.status() == poem::http::StatusCode::PAYLOAD_TOO_LARGE {
            let message = match err.downcast_ref::<crate::body::BodyTooLarge>() {
                Some(too_large) => too_large.to_string(),
                None => "the request body is too large".to_string(),
            };
            return ApiError::PayloadTooLarge(body(&rid, "PAYLOAD_TOO_LARGE", message, None));
        }
        if err.status() == poem::http::StatusCode::NOT_FOUND
            || err.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
        {
            return ApiError::not_found(&rid, "no such endpoint");
        }
        if err.downcast_ref::<poem_openapi::error::ParseParamError>().is_some_and(|e| e.name == "cursor") {
            return ApiError::invalid_cursor(&rid);
        }
        let code = if err.is::<poem_openapi::error::ParseRequestPayloadError>()
            || err.is::<poem_openapi::error::ContentTypeError>()
        {
            "INVALID_JSON"
        } else {
            "INVALID_REQUEST"
        };
        ApiError::bad_request(&rid, code, err.to_string(), None)
    }
}
