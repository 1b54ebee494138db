//! The REST operations of DESIGN §5 (the allscreenshots async-jobs contract).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use std::time::{Duration, Instant};

use pgshot_job::{new_job_id, JobRequest, JobStatus, NetworkPolicy, ResponseType, ScreenshotOptions};
use pgshot_storage::ObjectStore;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags};
use serde_json::Value;

use crate::admission::Admission;
use crate::body::JsonBody;
use crate::completion::Completions;
use crate::dashboard::{FailedLogins, StreamChecks};
use crate::db::{Cursor, Db, ResultRow};
use crate::error::{operation_errors, ApiError, ApiResult, ErrorDetails};
use crate::result::{CaptureResponse, ResultResponse};
use crate::schema::{AsyncJobCreated, Base64Result, BulkJob, BulkRequest, Job, Timestamp, Uri, Usage};

#[derive(Tags)]
enum ApiTags {
    /// Create screenshot jobs.
    Screenshots,
    /// Follow jobs and download their results.
    Jobs,
    /// Many URLs as one job.
    Bulk,
    /// What an API key has used, and its limits.
    Usage,
}

/// An API key in `X-API-Key`.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-API-Key", key_in = "header")]
pub struct ApiKeyAuth(ApiKey);

/// The same API key as `Authorization: Bearer <key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerAuth(Bearer);

#[derive(SecurityScheme)]
pub enum Auth {
    ApiKey(ApiKeyAuth),
    Bearer(BearerAuth),
}

impl Auth {
    /// Whether the answer may be a redirect to another host (the bucket): HTTP clients drop
    /// `Authorization` on a redirect to another host, but send a custom header such as
    /// `X-API-Key` again (curl, and others), which would hand the key to the bucket's host.
    fn redirectable(&self) -> bool {
        matches!(self, Auth::Bearer(_))
    }

    fn key(&self) -> &str {
        match self {
            Auth::ApiKey(k) => &k.0.key,
            Auth::Bearer(b) => &b.0.token,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Accepted: poll `statusUrl` or wait for the webhook.
    #[oai(status = 202)]
    Accepted(Json<AsyncJobCreated>),
}

#[derive(ApiResponse)]
enum BulkCreated {
    /// Accepted: follow it at GET /v1/screenshots/bulk/{bulkId}.
    #[oai(status = 202)]
    Accepted(Json<BulkJob>),
}

#[derive(ApiResponse)]
enum BulkFound {
    /// The bulk job, with its jobs in request order.
    #[oai(status = 200)]
    Bulk(Json<BulkJob>),
}

#[derive(ApiResponse)]
enum BulkListed {
    /// Newest first, without their jobs; `X-Next-Cursor` is present when there are more.
    #[oai(status = 200)]
    Bulks(Json<Vec<BulkJob>>, #[oai(header = "X-Next-Cursor")] Option<String>),
}

operation_errors!(
    /// Errors of createAsyncJob.
    CreateErrors {
        /// Malformed JSON, an unknown field or an invalid option: `validationErrors` names the field.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// The idempotency key was used before with another request (IDEMPOTENCY_CONFLICT).
        Conflict = 409,
        /// The body is larger than the deployment's limit (1 MiB unless PGSHOT_MAX_BODY_BYTES says otherwise).
        PayloadTooLarge = 413,
        /// The key's jobs per minute or jobs in flight are used up (RATE_LIMITED): retry after Retry-After seconds.
        TooManyRequests = 429 + retry_after,
    }
);

operation_errors!(
    /// Errors of captureScreenshot.
    CaptureErrors {
        /// Malformed JSON, an unknown field or an invalid option: `validationErrors` names the field.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// The idempotency key was used before with another request (IDEMPOTENCY_CONFLICT), or the
        /// job was cancelled while the capture waited (CANCELLED).
        Conflict = 409,
        /// The body is larger than the deployment's limit.
        PayloadTooLarge = 413,
        /// The render failed: `errorCode` is the job's (TIMEOUT, SELECTOR_NOT_FOUND, ...), `details.jobId` the job.
        Unprocessable = 422,
        /// The key's jobs per minute or jobs in flight are used up (RATE_LIMITED), or too many sync
        /// captures are waiting (TOO_MANY_REQUESTS): retry after Retry-After seconds.
        TooManyRequests = 429 + retry_after,
    }
);

operation_errors!(
    /// Errors of getUsage.
    UsageErrors {
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
    }
);

operation_errors!(
    /// Errors of the list operations.
    ListErrors {
        /// A parameter out of range, or a cursor this endpoint did not give (INVALID_CURSOR).
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
    }
);

operation_errors!(
    /// Errors of the operations on one job or bulk.
    LookupErrors {
        /// An id that cannot be one (for example with a NUL byte).
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// No such job or bulk for this API key.
        NotFound = 404,
    }
);

operation_errors!(
    /// Errors of cancelJob.
    CancelErrors {
        /// An id that cannot be one.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// No such job for this API key.
        NotFound = 404,
        /// The job has already finished (INVALID_STATE).
        Conflict = 409,
    }
);

operation_errors!(
    /// Errors of the result downloads.
    ResultErrors {
        /// An id that cannot be one.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// No such job, or no such output of it, for this API key.
        NotFound = 404,
        /// The job is not COMPLETED (yet): INVALID_STATE.
        Conflict = 409,
        /// The result expired and its bytes were deleted (RESULT_EXPIRED).
        Gone = 410,
    }
);

operation_errors!(
    /// Errors of createBulkJob.
    BulkErrors {
        /// Malformed JSON, an unknown field or an invalid option: `validationErrors` names the field.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// The body is larger than the deployment's limit.
        PayloadTooLarge = 413,
        /// More than 100 URLs (BULK_TOO_LARGE).
        Unprocessable = 422,
        /// The key's jobs per minute or jobs in flight are used up (RATE_LIMITED): retry after Retry-After seconds.
        TooManyRequests = 429 + retry_after,
    }
);

#[derive(ApiResponse)]
enum UsageFound {
    /// The key's usage.
    #[oai(status = 200)]
    Usage(Json<Usage>),
}

#[derive(ApiResponse)]
enum Found {
    /// The job.
    #[oai(status = 200)]
    Job(Json<Job>),
}

#[derive(ApiResponse)]
enum Listed {
    /// A JSON array, as the official SDKs expect; `X-Next-Cursor` is present when there are more.
    #[oai(status = 200)]
    Jobs(Json<Vec<Job>>, #[oai(header = "X-Next-Cursor")] Option<String>),
}

pub struct State {
    pub db: Db,
    pub completions: Arc<Completions>,
    /// Sync captures waiting at once, per key and in all; more are refused with 429 instead of
    /// piling up (one key cannot take every slot).
    pub sync_slots: Admission,
    /// Dashboard event streams open, per viewer and in all.
    pub event_streams: Admission,
    /// What the event streams of one viewer last saw, shared between them.
    pub stream_checks: StreamChecks,
    /// Failed dashboard logins by client address, for throttling.
    pub failed_logins: FailedLogins,
    /// Besides the page's timeout and delay, how long a sync capture waits for a worker.
    pub sync_allowance: Duration,
    /// The longest any sync capture waits, whatever its page's timeout and delay (a proxy in
    /// front of the API may cut connections sooner).
    pub sync_limit: Duration,
    /// Base of `statusUrl` (and, through the extension, of `resultUrl`).
    pub public_url: String,
    pub policy: NetworkPolicy,
    /// Largest request body accepted (PGSHOT_MAX_BODY_BYTES).
    pub max_body_bytes: usize,
    pub jobs_created: AtomicU64,
    /// PGSHOT_STORAGE=s3://...: the bucket results are in (None: in Postgres).
    pub storage: Option<ObjectStore>,
    pub storage_serve: StorageServe,
    /// How long a presigned storageUrl stays valid.
    pub storage_url_ttl: Duration,
}

/// How results in object storage are served (PGSHOT_STORAGE_SERVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageServe {
    /// The API downloads the object and answers with its bytes (the bucket may be private to it).
    Proxy,
    /// 307 to a presigned URL of the object (clients must reach the bucket).
    Redirect,
}

impl State {
    /// A result's bytes: from its row, or downloaded from object storage.
    pub async fn result_bytes(&self, rid: &str, r: &mut ResultRow) -> ApiResult<Vec<u8>> {
        match (r.bytes.take(), &r.storage_key, &self.storage) {
            (Some(bytes), _, _) => Ok(bytes),
            (None, Some(key), Some(store)) => store.get(key).await.map_err(|e| ApiError::storage_unavailable(rid, &e)),
            (None, Some(_), None) => Err(ApiError::storage_unavailable(rid, "PGSHOT_STORAGE is not set")),
            (None, None, _) => Err(ApiError::storage_unavailable(rid, "the output has neither bytes nor an object")),
        }
    }

    /// The extension's JSON as a typed answer, its `storageKey`s turned into presigned
    /// `storageUrl`s (results in object storage), or removed.
    pub(crate) fn typed<T: serde::de::DeserializeOwned>(&self, rid: &str, mut value: Value) -> ApiResult<T> {
        self.storage_urls(&mut value);
        hide_workers(&mut value);
        to_typed(rid, value)
    }

    /// The API key's owner (its id); 401 for a missing, unknown or revoked key.
    pub async fn owner_of(&self, rid: &str, auth: &Auth) -> ApiResult<String> {
        self.db.owner(rid, auth.key()).await?.ok_or_else(|| ApiError::unauthorized(rid))
    }

    /// Turns every `storageKey` in the extension's JSON into a presigned `storageUrl` (or removes
    /// it without object storage): the keys themselves are never shown.
    pub fn storage_urls(&self, value: &mut Value) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(key)) = fields.remove("storageKey") {
                    if let Some(store) = &self.storage {
                        fields.insert("storageUrl".into(), store.presigned_get(&key, self.storage_url_ttl).into());
                    }
                }
                fields.values_mut().for_each(|v| self.storage_urls(v));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.storage_urls(v)),
            _ => {}
        }
    }
}

/// Removes the worker of every attempt (and of `lastError`) from a job's JSON, or a list's: which
/// worker host and process ran a job is the operator's business, not an API key's.
pub fn hide_workers(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for key in ["attempts", "lastError"] {
                match fields.get_mut(key) {
                    Some(Value::Array(attempts)) => {
                        attempts.iter_mut().filter_map(Value::as_object_mut).for_each(|a| {
                            a.remove("worker");
                        });
                    }
                    Some(Value::Object(last)) => {
                        last.remove("worker");
                    }
                    _ => {}
                }
            }
            fields.values_mut().for_each(hide_workers);
        }
        Value::Array(items) => items.iter_mut().for_each(hide_workers),
        _ => {}
    }
}

pub struct ScreenshotsApi(pub Arc<State>);

const MAX_PAGE: i64 = 100;
/// URLs in one bulk request (DESIGN §5).
const MAX_BULK_URLS: i32 = 100;

#[OpenApi]
impl ScreenshotsApi {
    /// Create an async screenshot job
    ///
    /// Validates the request, enqueues it and answers at once; the job is rendered by a worker.
    /// The same `Idempotency-Key` with the same body returns the same job.
    #[oai(
        path = "/v1/screenshots/async",
        method = "post",
        operation_id = "createAsyncJob",
        tag = "ApiTags::Screenshots"
    )]
    async fn create_async(
        &self,
        auth: Auth,
        /// The same as the body's idempotencyKey: a second request with the same key (and the same
        /// body) returns the first job instead of a new one.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<ScreenshotOptions>,
    ) -> Result<Created, CreateErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let (url, mut body) = split_url(&rid, body.0)?;
        let fields = body.as_object_mut().expect("split_url checked it is an object");
        if let Some(key) = idempotency_key.0 {
            match fields.get("idempotencyKey") {
                Some(Value::String(k)) if *k != key => {
                    return Err(ApiError::bad_request(
                        &rid,
                        "INVALID_REQUEST",
                        "the Idempotency-Key header and idempotencyKey differ",
                        Some(ErrorDetails::field("idempotencyKey")),
                    )
                    .into());
                }
                _ => {
                    fields.insert("idempotencyKey".into(), Value::String(key));
                }
            }
        }
        JobRequest::parse(&url, &body, self.0.policy).map_err(|e| ApiError::invalid(&rid, &e))?;
        let job = self.0.db.enqueue(&rid, &owner, &url, &body, false).await?;
        self.0.jobs_created.fetch_add(1, Ordering::Relaxed);
        let id = job["id"].as_str().unwrap_or_default().to_string();
        Ok(Created::Accepted(Json(AsyncJobCreated {
            status_url: Uri(format!("{}/v1/screenshots/jobs/{id}", self.0.public_url)),
            status: status_of(&job),
            created_at: Timestamp(job["createdAt"].as_str().unwrap_or_default().to_string()),
            id,
        })))
    }

    /// Capture a screenshot and wait for it
    ///
    /// Enqueued like an async job and answered when a worker has rendered it: the bytes by
    /// default, base64 JSON for responseType BASE64, the finished job for URL. A failed render
    /// answers 422 with the job's errorCode; too many waiting captures 429; a job no worker
    /// finished in time 503 (it stays queued: poll `details.statusUrl`).
    #[oai(path = "/v1/screenshots", method = "post", operation_id = "captureScreenshot", tag = "ApiTags::Screenshots")]
    async fn capture(&self, auth: Auth, body: JsonBody<ScreenshotOptions>) -> Result<CaptureResponse, CaptureErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let _slot = self.0.sync_slots.try_admit(&owner).map_err(|r| ApiError::too_many_waiting(&rid, r))?;
        let (url, body) = split_url(&rid, body.0)?;
        let request = JobRequest::parse(&url, &body, self.0.policy).map_err(|e| ApiError::invalid(&rid, &e))?;
        let page = Duration::from_millis(request.options.timeout.unwrap_or(30_000) as u64);
        let delay = Duration::from_millis(request.options.delay.unwrap_or(0) as u64);
        let deadline = Instant::now() + (page + delay + self.0.sync_allowance).min(self.0.sync_limit);
        let created = self.0.db.enqueue(&rid, &owner, &url, &body, true).await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        let waiter = self.0.completions.wait_for(&id);
        loop {
            let job = self.0.db.job(&rid, Some(&owner), &id).await?;
            match job["status"].as_str() {
                Some("COMPLETED") if request.options.response_type == Some(ResponseType::Url) => {
                    return Ok(CaptureResponse(ResultResponse::Job(Box::new(self.0.typed(&rid, job)?))));
                }
                Some("COMPLETED") => {
                    return Ok(CaptureResponse(self.result_of(&rid, &owner, &id, None, auth.redirectable()).await?))
                }
                Some("FAILED") => return Err(ApiError::render_failed(&rid, &job).into()),
                Some("CANCELLED") => return Err(ApiError::conflict(&rid, "CANCELLED", "the job was cancelled").into()),
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let status_url = format!("{}/v1/screenshots/jobs/{id}", self.0.public_url);
                return Err(ApiError::not_finished(&rid, &id, &status_url).into());
            }
            // Woken by the job's notification; the timer covers a notification that was lost.
            tokio::select! {
                _ = waiter.notify.notified() => {}
                _ = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
            }
        }
    }

    /// List your jobs
    ///
    /// Newest first. Pass the `X-Next-Cursor` header of a page as `cursor` for the next one.
    #[oai(path = "/v1/screenshots/jobs", method = "get", operation_id = "listJobs", tag = "ApiTags::Jobs")]
    async fn list_jobs(
        &self,
        auth: Auth,
        /// Only jobs in this status.
        status: Query<Option<JobStatus>>,
        /// The `X-Next-Cursor` of the previous page.
        #[oai(validator(pattern = r"^([0-9]{1,16}-[0-9a-z]{16})?$"))]
        cursor: Query<Option<String>>,
        /// Jobs per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
    ) -> Result<Listed, ListErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let limit = limit.0.unwrap_or(20).clamp(1, MAX_PAGE);
        let status = status.0.map(JobStatus::as_str);
        // An empty cursor is the first page, as an absent one.
        let cursor = cursor_of(&rid, cursor.0.as_deref())?;
        let mut rows = self.0.db.list(&rid, &owner, status, cursor.as_ref(), limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more.then(|| rows.last().map(|(_, c)| c.to_string())).flatten();
        let jobs: Vec<Job> = rows.into_iter().map(|(v, _)| self.0.typed(&rid, v)).collect::<Result<_, _>>()?;
        Ok(Listed::Jobs(Json(jobs), next_cursor))
    }

    /// Get a job's status
    ///
    /// The job as it is now: poll it until its status is COMPLETED, FAILED or CANCELLED.
    #[oai(path = "/v1/screenshots/jobs/:jobId", method = "get", operation_id = "getJob", tag = "ApiTags::Jobs")]
    async fn get_job(
        &self,
        auth: Auth,
        /// The job's id.
        #[oai(name = "jobId")]
        job_id: Path<String>,
    ) -> Result<Found, LookupErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let job = self.0.db.job(&rid, Some(&owner), &job_id.0).await?;
        Ok(Found::Job(Json(self.0.typed(&rid, job)?)))
    }

    /// Cancel a job
    ///
    /// A queued job is cancelled at once; a processing one stops at its worker's next heartbeat.
    #[oai(
        path = "/v1/screenshots/jobs/:jobId/cancel",
        method = "post",
        operation_id = "cancelJob",
        tag = "ApiTags::Jobs"
    )]
    async fn cancel_job(
        &self,
        auth: Auth,
        /// The job's id.
        #[oai(name = "jobId")]
        job_id: Path<String>,
    ) -> Result<Found, CancelErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let job = self.0.db.cancel(&rid, Some(&owner), &job_id.0).await?;
        Ok(Found::Job(Json(self.0.typed(&rid, job)?)))
    }

    /// Download a job's result
    ///
    /// The first output's bytes, or JSON with base64 `data` when the job's responseType is
    /// BASE64. 409 while the job is not completed, 410 once the result expired.
    #[oai(
        path = "/v1/screenshots/jobs/:jobId/result",
        method = "get",
        operation_id = "getJobResult",
        tag = "ApiTags::Jobs"
    )]
    async fn get_result(
        &self,
        auth: Auth,
        /// The job's id.
        #[oai(name = "jobId")]
        job_id: Path<String>,
    ) -> Result<ResultResponse, ResultErrors> {
        Ok(self.result(&auth, &job_id.0, None).await?)
    }

    /// Create a bulk job
    ///
    /// Up to 100 URLs, each with options that override `defaults`; all or nothing.
    #[oai(path = "/v1/screenshots/bulk", method = "post", operation_id = "createBulkJob", tag = "ApiTags::Bulk")]
    async fn create_bulk(&self, auth: Auth, body: JsonBody<BulkRequest>) -> Result<BulkCreated, BulkErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let JsonBody(body, _) = body;
        let (requests, webhook_url, webhook_secret) = flatten_bulk(&rid, body)?;
        // Validated here too, for the API's error codes; the extension validates again.
        pgshot_job::parse_bulk(&requests, "urls", MAX_BULK_URLS as usize, self.0.policy)
            .map_err(|e| ApiError::invalid(&rid, &e))?;
        pgshot_job::check_bulk_webhook(webhook_url.as_deref(), webhook_secret.as_deref(), self.0.policy)
            .map_err(|e| ApiError::invalid(&rid, &e))?;
        let bulk = self
            .0
            .db
            .enqueue_bulk(&rid, &owner, &requests, MAX_BULK_URLS, webhook_url.as_deref(), webhook_secret.as_deref())
            .await?;
        let created = bulk["totalJobs"].as_u64().unwrap_or(0);
        self.0.jobs_created.fetch_add(created, Ordering::Relaxed);
        Ok(BulkCreated::Accepted(Json(self.0.typed(&rid, bulk)?)))
    }

    /// List your bulk jobs
    ///
    /// Newest first, without their jobs. Pass the `X-Next-Cursor` header of a page as `cursor`
    /// for the next one.
    #[oai(path = "/v1/screenshots/bulk", method = "get", operation_id = "listBulkJobs", tag = "ApiTags::Bulk")]
    async fn list_bulk(
        &self,
        auth: Auth,
        /// The `X-Next-Cursor` of the previous page.
        #[oai(validator(pattern = r"^([0-9]{1,16}-[0-9a-z]{16})?$"))]
        cursor: Query<Option<String>>,
        /// Bulk jobs per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
    ) -> Result<BulkListed, ListErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let limit = limit.0.unwrap_or(20).clamp(1, MAX_PAGE);
        let cursor = cursor_of(&rid, cursor.0.as_deref())?;
        let mut rows = self.0.db.bulks(&rid, &owner, cursor.as_ref(), limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more.then(|| rows.last().map(|(_, c)| c.to_string())).flatten();
        let bulks = rows.into_iter().map(|(v, _)| self.0.typed(&rid, v)).collect::<Result<_, _>>()?;
        Ok(BulkListed::Bulks(Json(bulks), next_cursor))
    }

    /// Get a bulk job with its jobs
    ///
    /// Its counts, its status (derived from its jobs) and each job's summary, in request order.
    #[oai(path = "/v1/screenshots/bulk/:bulkId", method = "get", operation_id = "getBulkJob", tag = "ApiTags::Bulk")]
    async fn get_bulk(
        &self,
        auth: Auth,
        /// The bulk's id.
        #[oai(name = "bulkId")]
        bulk_id: Path<String>,
    ) -> Result<BulkFound, LookupErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let bulk = self.0.db.bulk(&rid, &owner, &bulk_id.0).await?;
        Ok(BulkFound::Bulk(Json(self.0.typed(&rid, bulk)?)))
    }

    /// Cancel a bulk job's unfinished jobs
    ///
    /// Queued jobs are cancelled at once, processing ones at their worker's next heartbeat;
    /// finished jobs keep their results.
    #[oai(
        path = "/v1/screenshots/bulk/:bulkId/cancel",
        method = "post",
        operation_id = "cancelBulkJob",
        tag = "ApiTags::Bulk"
    )]
    async fn cancel_bulk(
        &self,
        auth: Auth,
        /// The bulk's id.
        #[oai(name = "bulkId")]
        bulk_id: Path<String>,
    ) -> Result<BulkFound, LookupErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let bulk = self.0.db.cancel_bulk(&rid, &owner, &bulk_id.0).await?;
        Ok(BulkFound::Bulk(Json(self.0.typed(&rid, bulk)?)))
    }

    /// Download one output of a multi-output job
    ///
    /// The output's bytes, with its own Content-Type. 409 while the job is not completed, 410
    /// once the result expired.
    #[oai(
        path = "/v1/screenshots/jobs/:jobId/result/:outputId",
        method = "get",
        operation_id = "getJobOutput",
        tag = "ApiTags::Jobs"
    )]
    async fn get_output(
        &self,
        auth: Auth,
        /// The job's id.
        #[oai(name = "jobId")]
        job_id: Path<String>,
        /// The output's id: its `id` in the request, or its type's name.
        #[oai(name = "outputId")]
        output_id: Path<String>,
    ) -> Result<ResultResponse, ResultErrors> {
        Ok(self.result(&auth, &job_id.0, Some(&output_id.0)).await?)
    }

    /// Your usage and limits
    ///
    /// Screenshots completed this month, in earlier months and in total with their bytes; jobs by
    /// status; the key's limits on jobs per minute and jobs in flight and where it stands.
    #[oai(path = "/v1/usage", method = "get", operation_id = "getUsage", tag = "ApiTags::Usage")]
    async fn usage(&self, auth: Auth) -> Result<UsageFound, UsageErrors> {
        let rid = new_job_id();
        let owner = self.owner(&rid, &auth).await?;
        let usage = self.0.db.usage(&rid, &owner).await?;
        Ok(UsageFound::Usage(Json(self.0.typed(&rid, usage)?)))
    }
}

impl ScreenshotsApi {
    async fn owner(&self, rid: &str, auth: &Auth) -> ApiResult<String> {
        self.0.owner_of(rid, auth).await
    }

    async fn result(&self, auth: &Auth, job_id: &str, output: Option<&str>) -> ApiResult<ResultResponse> {
        let rid = new_job_id();
        let owner = self.owner(&rid, auth).await?;
        self.result_of(&rid, &owner, job_id, output, auth.redirectable()).await
    }

    /// A job's result; with PGSHOT_STORAGE_SERVE=redirect and `redirectable`, a redirect to the
    /// object in the bucket.
    async fn result_of(
        &self,
        rid: &str,
        owner: &str,
        job_id: &str,
        output: Option<&str>,
        redirectable: bool,
    ) -> ApiResult<ResultResponse> {
        let rid = rid.to_string();
        let mut r = self.0.db.result(&rid, Some(owner), job_id, output).await?;
        let base64 = r.response_type.as_deref() == Some("BASE64");
        if let (None, Some(key), Some(store)) = (&r.bytes, &r.storage_key, &self.0.storage) {
            if self.0.storage_serve == StorageServe::Redirect && !base64 && redirectable {
                let url = store.presigned_download(key, self.0.storage_url_ttl, &r.content_type);
                return Ok(ResultResponse::Redirect(url));
            }
        }
        let bytes = self.0.result_bytes(&rid, &mut r).await?;
        if !base64 {
            return Ok(ResultResponse::Bytes { content_type: r.content_type, bytes });
        }
        let meta = r.metadata.unwrap_or(Value::Null);
        let out = r.output_metadata.unwrap_or(Value::Null);
        let format = r.content_type.split(['/', ';']).nth(1).unwrap_or("bin").to_string();
        Ok(ResultResponse::Base64(Base64Result {
            url: r.url,
            format,
            width: out["width"].as_i64().or(meta["width"].as_i64()),
            height: out["height"].as_i64().or(meta["height"].as_i64()),
            size: bytes.len() as i64,
            render_time_ms: meta["renderTimeMs"].as_i64(),
            encoding: "base64".into(),
            data: base64::engine::general_purpose::STANDARD.encode(&bytes),
            content_type: r.content_type,
        }))
    }
}

/// The request's `url`, and the rest of it (the options).
fn split_url(rid: &str, mut body: Value) -> ApiResult<(String, Value)> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request(rid, "INVALID_REQUEST", "the body must be a JSON object", None));
    };
    match fields.remove("url") {
        Some(Value::String(url)) => Ok((url, body)),
        Some(_) => {
            Err(ApiError::bad_request(rid, "INVALID_URL", "url must be a string", Some(ErrorDetails::field("url"))))
        }
        None => Err(ApiError::bad_request(rid, "INVALID_URL", "url is required", Some(ErrorDetails::field("url")))),
    }
}

fn status_of(job: &Value) -> JobStatus {
    serde_json::from_value(job["status"].clone()).unwrap_or(JobStatus::Queued)
}

/// A list's `cursor` parameter; an empty one is the first page, as an absent one.
fn cursor_of(rid: &str, raw: Option<&str>) -> ApiResult<Option<Cursor>> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(raw) => Cursor::parse(raw).map(Some).ok_or_else(|| ApiError::invalid_cursor(rid)),
    }
}

/// The extension's JSON as the typed response; a mismatch is our bug, not the client's.
fn to_typed<T: serde::de::DeserializeOwned>(rid: &str, mut value: Value) -> ApiResult<T> {
    foreign_error_codes(&mut value);
    serde_json::from_value(value).map_err(|e| {
        tracing::error!(request_id = rid, error = %e, "the extension's JSON does not match the API schema");
        ApiError::internal(rid)
    })
}

/// `screenshot_fail` takes any code of the right shape: a worker of the user's own may fail a
/// job with a code pgshot does not know. The spec's `errorCode` is pgshot's enum, so such a job
/// (or a bulk's such job) is answered with INTERNAL_ERROR and its own code leads the message,
/// instead of a job nobody can read.
fn foreign_error_codes(value: &mut Value) {
    let fix = |job: &mut Value| {
        let Some(code) = job["errorCode"].as_str().map(str::to_string) else { return };
        if pgshot_job::ErrorCode::parse(&code).is_none() {
            let message = job["errorMessage"].as_str().unwrap_or_default().to_string();
            job["errorCode"] = Value::String(pgshot_job::ErrorCode::InternalError.as_str().into());
            job["errorMessage"] = Value::String(format!("{code}: {message}"));
        }
    };
    if value.get("errorCode").is_some() {
        fix(value);
    }
    if let Some(jobs) = value.get_mut("jobs").and_then(Value::as_array_mut) {
        jobs.iter_mut().for_each(fix);
    }
}

/// The allscreenshots bulk shape (`urls: [{url, options}]`, `defaults`) as the flat
/// `[{url, ...options}]` items that the extension validates, and the bulk's own webhook.
fn flatten_bulk(rid: &str, body: Value) -> ApiResult<(Value, Option<String>, Option<String>)> {
    let invalid = |field: &str, message: String| {
        ApiError::bad_request(rid, "INVALID_OPTION", message, Some(ErrorDetails::field(field)))
    };
    let Value::Object(mut body) = body else {
        return Err(ApiError::bad_request(rid, "INVALID_REQUEST", "the body must be a JSON object", None));
    };
    let text = |v: Option<Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, format!("{name} must be a string"))),
    };
    let webhook_url = text(body.remove("webhookUrl"), "webhookUrl")?;
    let webhook_secret = text(body.remove("webhookSecret"), "webhookSecret")?;
    let defaults = match body.remove("defaults") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(invalid("defaults", "defaults must be a JSON object".into())),
    };
    let urls = body.remove("urls").unwrap_or(Value::Null);
    if let Some(unknown) = body.keys().next() {
        return Err(invalid(unknown, format!("{unknown} is not a known field")));
    }
    let Value::Array(items) = urls else {
        // The extension names what is wrong with it (missing, not an array).
        return Ok((urls, webhook_url, webhook_secret));
    };
    let mut flat = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            return Err(invalid(&format!("urls[{i}]"), format!("urls[{i}] must be an object with a url")));
        };
        let mut merged = defaults.clone();
        match item.remove("options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(options)) => merged.extend(options),
            Some(_) => {
                return Err(invalid(&format!("urls[{i}].options"), format!("urls[{i}].options must be a JSON object")));
            }
        }
        if let Some(url) = item.remove("url") {
            merged.insert("url".into(), url);
        }
        if let Some(unknown) = item.keys().next() {
            let field = format!("urls[{i}].{unknown}");
            return Err(invalid(&field, format!("{field} is not a known field")));
        }
        flat.push(Value::Object(merged));
    }
    Ok((Value::Array(flat), webhook_url, webhook_secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_failed_with_a_code_pgshot_does_not_know_is_still_readable() {
        let job = json!({"id": "j", "status": "FAILED", "url": "https://example.com", "createdAt": "2026-01-01T00:00:00Z",
                         "errorCode": "MY_OWN_CODE", "errorMessage": "it broke"});
        let typed = to_typed::<Job>("rid", job).unwrap();
        assert_eq!(typed.error_code, Some(pgshot_job::ErrorCode::InternalError));
        assert_eq!(typed.error_message.as_deref(), Some("MY_OWN_CODE: it broke"));
        let known = json!({"id": "j", "status": "FAILED", "url": "u", "createdAt": "t", "errorCode": "TIMEOUT"});
        assert_eq!(to_typed::<Job>("rid", known).unwrap().error_code, Some(pgshot_job::ErrorCode::Timeout));
        let bulk = json!({"id": "b", "status": "FAILED", "totalJobs": 1, "completedJobs": 0, "failedJobs": 1,
                          "progress": 100, "createdAt": "t", "jobs": [{"id": "j", "url": "u", "status": "FAILED",
                          "errorCode": "NOPE"}]});
        let typed: BulkJob = to_typed("rid", bulk).unwrap();
        assert_eq!(typed.jobs.unwrap()[0].error_code, Some(pgshot_job::ErrorCode::InternalError));
    }
}
