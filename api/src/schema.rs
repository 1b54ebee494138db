//! The spec's schemas of what the API answers and of the bulk request's envelope.
//!
//! The request options themselves are not restated here: they are `pgshot-job`'s own types
//! ([`pgshot_job::ScreenshotOptions`] and what it holds), which parse and validate every request
//! and derive their schemas with the `openapi` feature. Bodies are still parsed as plain JSON and
//! validated by `pgshot-job` (see `body.rs`), so that errors name the field the same way
//! `screenshot_enqueue` does.

use std::collections::BTreeMap;

use pgshot_job::{ErrorCode, JobStatus, OutputType, ScreenshotOptions};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};
use serde::Deserialize;
use serde_json::Value;

/// A string with a `format` in the spec (`date-time`, `uri`): the same text on the wire, typed
/// for client generators.
macro_rules! formatted_string {
    ($(#[$meta:meta])* $name:ident, $format:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                concat!("string_", $format).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", $format)))
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(s)) => Ok($name(s)),
                    other => Err(ParseError::expected_type(other.unwrap_or_default())),
                }
            }
        }
    };
}

formatted_string!(
    /// An RFC 3339 time in UTC, for example 2026-01-15T10:30:00Z.
    Timestamp,
    "date-time"
);
formatted_string!(
    /// An absolute URL.
    Uri,
    "uri"
);

/// 202 answer to an async request.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct AsyncJobCreated {
    /// The job's id: 16 lower-case letters and digits.
    pub id: String,
    pub status: JobStatus,
    /// Where to poll the job (GET).
    pub status_url: Uri,
    /// When the job was enqueued.
    pub created_at: Timestamp,
}

impl poem_openapi::types::Example for AsyncJobCreated {
    fn example() -> Self {
        AsyncJobCreated {
            id: "k3v9q2m8x1c7b4na".into(),
            status: JobStatus::Queued,
            status_url: Uri("http://localhost:8080/v1/screenshots/jobs/k3v9q2m8x1c7b4na".into()),
            created_at: Timestamp("2026-01-15T10:30:00Z".into()),
        }
    }
}

/// One output of a multi-output job.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub output_type: OutputType,
    /// The Content-Type its download answers with, for example image/png or text/markdown; charset=utf-8.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Where to download it (GET, with the API key).
    pub result_url: Uri,
    /// Results in object storage: a presigned URL of the object, valid for a limited time
    /// (PGSHOT_STORAGE_URL_SECONDS), without the API key.
    #[oai(skip_serializing_if_is_none)]
    pub storage_url: Option<Uri>,
    /// Images and PDFs: width in device pixels.
    #[oai(skip_serializing_if_is_none)]
    pub width: Option<i64>,
    /// Images and PDFs: height in device pixels.
    #[oai(skip_serializing_if_is_none)]
    pub height: Option<i64>,
}

/// What a finished render measured.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    /// The first image's width in device pixels (the viewport's for outputs without pixels).
    pub width: Option<i64>,
    /// The first image's height in device pixels.
    pub height: Option<i64>,
    /// PNG, JPEG, WEBP, PDF, HTML, or MULTI for a job with `outputs`.
    pub format: Option<String>,
    /// Bytes of every output together.
    pub size: Option<i64>,
    /// Milliseconds from claiming the job to its last output.
    pub render_time_ms: Option<i64>,
    /// The page's title.
    pub title: Option<String>,
    /// The page's URL after redirects.
    pub final_url: Option<String>,
    /// The page's HTTP status.
    pub http_status: Option<i64>,
}

/// A job, as in the hosted API's job status response.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none, example)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The job's id: 16 lower-case letters and digits.
    pub id: String,
    pub status: JobStatus,
    /// The page requested.
    pub url: String,
    /// COMPLETED jobs: where to download the (first) result.
    pub result_url: Option<Uri>,
    /// COMPLETED jobs with results in object storage: a presigned URL of the (first) result's
    /// object, valid for a limited time (PGSHOT_STORAGE_URL_SECONDS), without the API key.
    pub storage_url: Option<Uri>,
    /// FAILED jobs: why; TIMEOUT, URL_UNREACHABLE, PAGE_CRASHED, PAGE_UNRESPONSIVE and the
    /// other transient codes were retried up to maxAttempts first.
    pub error_code: Option<ErrorCode>,
    /// FAILED jobs: what happened, in words.
    pub error_message: Option<String>,
    /// When the job was enqueued.
    pub created_at: Timestamp,
    /// When a worker last claimed it.
    pub started_at: Option<Timestamp>,
    /// When it became COMPLETED, FAILED or CANCELLED.
    pub completed_at: Option<Timestamp>,
    /// When its result is deleted (the deployment's retention).
    pub expires_at: Option<Timestamp>,
    /// COMPLETED jobs: what the render measured.
    pub metadata: Option<JobMetadata>,
    /// Jobs with `outputs`: each output by its id.
    pub outputs: Option<BTreeMap<String, OutputInfo>>,
    /// The job's webhook delivery, when it has a webhookUrl and has finished.
    pub webhook: Option<WebhookInfo>,
    /// Every attempt so far, oldest first: its worker, start, end and error (absent before the
    /// first).
    pub attempts: Option<Vec<JobAttempt>>,
    /// The last failed attempt's error, also while the job waits to be retried (QUEUED).
    pub last_error: Option<LastError>,
}

/// How one attempt ended (RUNNING while it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum, Deserialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// One attempt at rendering a job.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct JobAttempt {
    /// 1 for the first attempt.
    pub attempt: i32,
    /// How it ended, or RUNNING.
    pub status: AttemptStatus,
    /// The worker that made it (attempts that failed before 0.4.0 do not say).
    pub worker: Option<String>,
    /// When the worker claimed the job for this attempt.
    pub started_at: Option<Timestamp>,
    /// When the attempt completed, failed or was cancelled.
    pub ended_at: Option<Timestamp>,
    /// Failed attempts: why, as a code.
    pub error_code: Option<ErrorCode>,
    /// Failed attempts: what happened, in words.
    pub error_message: Option<String>,
}

/// The error of a job's last failed attempt.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The attempt that failed.
    pub attempt: i32,
    /// Why, as a code.
    pub error_code: ErrorCode,
    /// What happened, in words.
    pub error_message: String,
    /// When the attempt failed.
    pub at: Timestamp,
}

impl poem_openapi::types::Example for Job {
    fn example() -> Self {
        Job {
            id: "k3v9q2m8x1c7b4na".into(),
            status: JobStatus::Completed,
            url: "https://example.com/".into(),
            result_url: Some(Uri("http://localhost:8080/v1/screenshots/jobs/k3v9q2m8x1c7b4na/result".into())),
            storage_url: Some(Uri("http://localhost:8080/v1/screenshots/jobs/k3v9q2m8x1c7b4na/result".into())),
            error_code: None,
            error_message: None,
            created_at: Timestamp("2026-01-15T10:30:00Z".into()),
            started_at: Some(Timestamp("2026-01-15T10:30:00Z".into())),
            completed_at: Some(Timestamp("2026-01-15T10:30:02Z".into())),
            expires_at: Some(Timestamp("2026-01-22T10:30:02Z".into())),
            metadata: Some(JobMetadata {
                width: Some(1920),
                height: Some(1080),
                format: Some("PNG".into()),
                size: Some(245_760),
                render_time_ms: Some(1840),
                title: Some("Example Domain".into()),
                final_url: Some("https://example.com/".into()),
                http_status: Some(200),
            }),
            outputs: None,
            webhook: None,
            attempts: Some(vec![JobAttempt {
                attempt: 1,
                status: AttemptStatus::Completed,
                worker: Some("render-1-4242-a1b2".into()),
                started_at: Some(Timestamp("2026-01-15T10:30:00Z".into())),
                ended_at: Some(Timestamp("2026-01-15T10:30:02Z".into())),
                error_code: None,
                error_message: None,
            }]),
            last_error: None,
        }
    }
}

/// The state of a job's or bulk's webhook delivery.
#[derive(Debug, Clone, Copy, Enum, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum WebhookStatus {
    Pending,
    Delivering,
    Delivered,
    Failed,
}

/// A job's webhook delivery.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    pub status: WebhookStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// The receiver's HTTP status on the last attempt.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the receiver answered 2xx.
    pub delivered_at: Option<Timestamp>,
}

/// A result as JSON, for jobs whose responseType is BASE64.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Base64Result {
    /// The result's own URL.
    pub url: String,
    /// The subtype of its content type: png, jpeg, webp, pdf, html, markdown, plain, json.
    pub format: String,
    /// Its content type, for example image/png.
    pub content_type: String,
    /// Images: width in device pixels.
    #[oai(skip_serializing_if_is_none)]
    pub width: Option<i64>,
    /// Images: height in device pixels.
    #[oai(skip_serializing_if_is_none)]
    pub height: Option<i64>,
    /// Bytes before encoding.
    pub size: i64,
    /// Milliseconds the render took.
    #[oai(skip_serializing_if_is_none)]
    pub render_time_ms: Option<i64>,
    /// Always base64.
    pub encoding: String,
    /// The bytes, base64 (RFC 4648, with padding).
    pub data: String,
}

/// One URL of a bulk request, with options that override the request's `defaults`.
#[derive(Debug, Clone, Object)]
pub struct BulkItem {
    /// The page to capture: an http or https URL of at most 8192 characters.
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub url: String,
    pub options: Option<ScreenshotOptions>,
}

/// Up to 100 URLs rendered as one bulk job.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BulkRequest {
    /// 1 to 100 URLs; all are enqueued, or none.
    #[oai(validator(min_items = 1, max_items = 100))]
    pub urls: Vec<BulkItem>,
    pub defaults: Option<ScreenshotOptions>,
    /// Receives one BULK_COMPLETED delivery when every job has finished.
    #[oai(validator(max_length = 8192, pattern = r"^https?://[^\s/?#]+\S*$"))]
    pub webhook_url: Option<String>,
    /// Signs the bulk's webhook (HMAC-SHA256); 16 to 255 characters.
    #[oai(validator(min_length = 16, max_length = 255, pattern = r"\S"))]
    pub webhook_secret: Option<String>,
}

/// One job of a bulk job.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct BulkJobItem {
    /// The job's id.
    pub id: String,
    /// The page requested.
    pub url: String,
    pub status: JobStatus,
    /// COMPLETED jobs: where to download the result.
    pub result_url: Option<Uri>,
    /// PNG, JPEG, WEBP, PDF or MULTI.
    pub format: Option<String>,
    /// Device pixels.
    pub width: Option<i64>,
    /// Device pixels.
    pub height: Option<i64>,
    /// Bytes.
    pub file_size: Option<i64>,
    /// Milliseconds.
    pub render_time_ms: Option<i64>,
    pub error_code: Option<ErrorCode>,
    /// FAILED jobs: what happened.
    pub error_message: Option<String>,
    /// When the job was enqueued.
    pub created_at: Option<Timestamp>,
    /// When it finished.
    pub completed_at: Option<Timestamp>,
}

/// A bulk job: counts and status derived from its jobs.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct BulkJob {
    /// The bulk's id.
    pub id: String,
    pub status: JobStatus,
    /// Jobs in the bulk.
    pub total_jobs: i32,
    /// Jobs COMPLETED.
    pub completed_jobs: i32,
    /// Jobs FAILED.
    pub failed_jobs: i32,
    /// Finished jobs, in percent.
    pub progress: i32,
    /// When the bulk was created.
    pub created_at: Timestamp,
    /// When its last job finished.
    pub completed_at: Option<Timestamp>,
    /// Its jobs, in request order (not in lists of bulks).
    pub jobs: Option<Vec<BulkJobItem>>,
}

/// What a job's webhook says happened.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobEvent {
    JobCompleted,
    JobFailed,
}

/// A bulk's webhook event.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BulkEvent {
    BulkCompleted,
}

/// The job, with the hosted API's flat summary of its result.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct JobWebhookData {
    #[oai(flatten)]
    pub job: Job,
    /// The job's id (as `id`).
    pub job_id: String,
    /// PNG, JPEG, WEBP, PDF, HTML or MULTI.
    pub format: Option<String>,
    /// Device pixels.
    pub width: Option<i64>,
    /// Device pixels.
    pub height: Option<i64>,
    /// Bytes of every output.
    pub file_size: Option<i64>,
    /// Milliseconds.
    pub render_time_ms: Option<i64>,
}

/// The body POSTed to a job's webhookUrl when it is COMPLETED or FAILED. Signed as Standard
/// Webhooks: `webhook-id` (the same on every retry), `webhook-timestamp` and `webhook-signature`
/// (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the webhook secret).
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobWebhook {
    pub event: JobEvent,
    /// When the job finished.
    pub timestamp: Timestamp,
    /// The job's id.
    pub job_id: String,
    pub status: JobStatus,
    pub data: JobWebhookData,
}

/// The body POSTed to a bulk's webhookUrl once, when its last job has finished; signed as a
/// job's webhook is.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct BulkWebhook {
    pub event: BulkEvent,
    /// When the last job finished.
    pub timestamp: Timestamp,
    /// The bulk's id.
    pub bulk_id: String,
    pub status: JobStatus,
    pub data: BulkJob,
}

/// Screenshots completed in a period, and the bytes of their outputs.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct PeriodUsage {
    /// The first day of the calendar month (UTC of the database's time zone).
    pub period_start: String,
    /// The first day of the next month.
    pub period_end: String,
    /// Jobs completed in the period (whose results may since have expired).
    pub screenshots_count: i64,
    /// Bytes of their outputs.
    pub bandwidth_bytes: i64,
    /// The bytes, as `12 MB`.
    pub bandwidth_formatted: String,
}

/// Every screenshot the key completed.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// Jobs completed.
    pub screenshots_count: i64,
    /// Bytes of their outputs.
    pub bandwidth_bytes: i64,
    /// The bytes, as `12 MB`.
    pub bandwidth_formatted: String,
}

/// The key's jobs by status (jobs deleted by `pgshot.job_retention` are not counted).
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub struct JobCounts {
    /// Waiting for a worker (or for a retry).
    pub queued: i64,
    /// Being rendered.
    pub processing: i64,
    /// Finished with a result.
    pub completed: i64,
    /// Finished without one.
    pub failed: i64,
    /// Cancelled before they finished.
    pub cancelled: i64,
}

/// The key's limits and where it stands; the rate fields are absent for a key without a rate limit.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct UsageLimits {
    /// Jobs the key may create per minute (X-RateLimit-Limit).
    pub rate_per_minute: Option<i32>,
    /// Jobs it may create now (X-RateLimit-Remaining).
    pub remaining: Option<i32>,
    /// Seconds until it may create `ratePerMinute` jobs again (X-RateLimit-Reset).
    pub reset_seconds: Option<i32>,
    /// Jobs it may have queued or processing at once.
    pub max_in_flight: Option<i32>,
    /// Jobs it has queued or processing.
    pub in_flight: i64,
}

/// GET /v1/usage: the hosted API's period and totals fields, and pgshot's job counts and limits.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Always `self-hosted`.
    pub tier: String,
    /// This calendar month.
    pub current_period: PeriodUsage,
    /// Up to 12 earlier months with screenshots, newest first.
    pub history: Vec<PeriodUsage>,
    /// Every month together.
    pub totals: UsageTotals,
    /// The key's jobs now, by status.
    pub jobs: JobCounts,
    /// The key's limits.
    pub limits: UsageLimits,
}
