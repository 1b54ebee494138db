//! One error body for every failure, and the one place where Postgres errors become HTTP statuses
//! (DESIGN §10).

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;
use tokio_postgres::error::SqlState;

/// `{"error": {"code", "message", "details"}, "requestId"}`
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[oai(rename = "requestId")]
    pub request_id: String,
}

#[derive(Debug, Clone, Object)]
pub struct ErrorDetail {
    /// A stable code such as INVALID_URL, BLOCKED_URL, NOT_FOUND, RESULT_EXPIRED.
    pub code: String,
    pub message: String,
    /// For invalid requests: `field`, and the `detail` and `hint` that help fix it.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<Value>,
}

/// Every error status an operation can answer, so that each one is in the spec.
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
    /// The job is not in a state that allows this (for example no result yet), or an
    /// idempotency key was reused for another request.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The result expired and its bytes were deleted.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The request body is larger than the limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// A bulk request over 100 URLs, or (sync capture) a render that failed: `code` is the job's errorCode.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many sync captures are waiting: retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unreachable or busy: retry after the given number of seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
}

pub type ApiResult<T> = Result<T, ApiError>;

fn body(request_id: &str, code: &str, message: impl Into<String>, details: Option<Value>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail { code: code.to_string(), message: message.into(), details },
        request_id: request_id.to_string(),
    })
}

impl ApiError {
    pub fn bad_request(rid: &str, code: &str, message: impl Into<String>, details: Option<Value>) -> ApiError {
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

    pub fn too_many_waiting(rid: &str) -> ApiError {
        let message = "too many sync captures are waiting; retry shortly or use /v1/screenshots/async";
        ApiError::TooManyRequests(body(rid, "TOO_MANY_REQUESTS", message, None), 1)
    }

    /// A sync capture whose job failed: the job's own error code and message.
    pub fn render_failed(rid: &str, job: &Value) -> ApiError {
        let code = job["errorCode"].as_str().unwrap_or("RENDER_FAILED");
        let message = job["errorMessage"].as_str().unwrap_or("the render failed");
        ApiError::Unprocessable(body(rid, code, message, Some(serde_json::json!({"jobId": job["id"]}))))
    }

    /// A sync capture that no worker finished in time; the job goes on and can be polled.
    pub fn not_finished(rid: &str, job_id: &str, status_url: &str) -> ApiError {
        let message = "no worker finished the job in time; it stays queued: poll details.statusUrl";
        let details = serde_json::json!({"jobId": job_id, "statusUrl": status_url});
        ApiError::Unavailable(body(rid, "NOT_FINISHED", message, Some(details)), 5)
    }

    pub fn invalid_cursor(rid: &str) -> ApiError {
        let message = "cursor is not an X-Next-Cursor of this endpoint";
        ApiError::bad_request(rid, "INVALID_CURSOR", message, Some(serde_json::json!({"field": "cursor"})))
    }

    pub fn conflict(rid: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::Conflict(body(rid, code, message, None))
    }

    pub fn internal(rid: &str) -> ApiError {
        ApiError::Internal(body(rid, "INTERNAL_ERROR", "internal error; quote the request id when reporting it", None))
    }

    /// A request the shared validation refused, with the field named.
    pub fn invalid(rid: &str, e: &pgshot_job::InvalidOption) -> ApiError {
        let details = serde_json::json!({"field": e.field, "detail": e.detail, "hint": e.hint});
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
            let v = serde_json::json!({"detail": d.detail(), "hint": d.hint()});
            (d.detail().is_some() || d.hint().is_some()).then_some(v)
        });
        match code.code() {
            "22023" => ApiError::bad_request(rid, "INVALID_REQUEST", message, details),
            // Other data exceptions come from values the client sent (a NUL byte in an id, say).
            c if c.starts_with("22") => ApiError::bad_request(rid, "INVALID_REQUEST", message, None),
            "P0002" => ApiError::not_found(rid, message),
            "55000" => ApiError::Conflict(body(rid, "INVALID_STATE", message, details)),
            "23505" => ApiError::Conflict(body(rid, "IDEMPOTENCY_CONFLICT", message, details)),
            "PS410" => ApiError::Gone(body(rid, "RESULT_EXPIRED", message, details)),
            c if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::QUERY_CANCELED
                || c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57") =>
            {
                tracing::warn!(request_id = rid, error = %e, "database busy or unavailable");
                ApiError::Unavailable(body(rid, "SERVICE_UNAVAILABLE", "the database is busy; retry shortly", None), 1)
            }
            _ => {
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
