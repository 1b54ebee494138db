//! The vendor's /v1/schedules: recurring captures, owned by the API key that made them. Each
//! operation is one call of the extension's `pgshot.schedule_*`, which owns the rules; the
//! request is validated here first with the same `pgshot-job` definition, for the API's errors.

use std::sync::Arc;

use pgshot_job::{new_job_id, JobStatus, ScheduleRequest, ScreenshotOptions};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use serde::Deserialize;
use serde_json::Value;

use crate::body::JsonBody;
use crate::error::{operation_errors, ApiError, ApiResult};
use crate::schema::{Timestamp, Uri};
use crate::screenshots::{Auth, State};

#[derive(Tags)]
enum ApiTags {
    /// Recurring captures, delivered when the page changed.
    Schedules,
}

/// A schedule's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleStatus {
    /// Runs at every time of its pattern.
    Active,
    /// Runs only when triggered; `pausedReason` says why (a request, failed runs, a revoked key).
    Paused,
    /// Past its endsAt (or a pattern that never matches again): runs no more.
    Completed,
}

/// A schedule, as the vendor's ScheduleResponse.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// 16 lower-case letters and digits.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The page captured at every run.
    pub url: String,
    /// The cron pattern or alias, as given.
    pub schedule: String,
    /// The pattern in words, for example "At 09:00."
    pub schedule_description: String,
    /// The IANA time zone the pattern is read in.
    pub timezone: String,
    /// ACTIVE, PAUSED or COMPLETED.
    pub status: ScheduleStatus,
    /// PAUSED schedules: why.
    pub paused_reason: Option<String>,
    /// The capture options of every run (the vendor's `options`, under its own name: the
    /// vendor's SDKs read `options` as an object of objects, which capture options are not).
    pub capture_options: ScreenshotOptions,
    /// Webhook destinations, without their secrets.
    pub destinations: Vec<pgshot_job::DestinationRequest>,
    /// Where every capture (SCHEDULE_CAPTURED) and, with alertOnFailure, every failed run
    /// (SCHEDULE_FAILED) is posted, signed with the webhook secret.
    pub webhook_url: Option<String>,
    /// Deliver a capture only when it changed by more than diffThreshold.
    pub only_on_change: bool,
    /// The fraction of changed pixels, 0 to 1, that counts as a change.
    pub diff_threshold: f64,
    /// Deliver SCHEDULE_FAILED when a run fails.
    pub alert_on_failure: bool,
    /// PAUSED after this many failed runs in a row.
    pub auto_pause_after_failures: Option<i64>,
    /// Days each run and its capture are kept.
    pub retention_days: i64,
    /// No run before this time.
    pub starts_at: Option<Timestamp>,
    /// No run after this time.
    pub ends_at: Option<Timestamp>,
    /// The due time of the next run (absent unless ACTIVE).
    pub next_execution_at: Option<Timestamp>,
    /// When the last run started.
    pub last_executed_at: Option<Timestamp>,
    /// Runs started, by the pattern or triggered.
    pub execution_count: i64,
    /// Runs that completed.
    pub success_count: i64,
    /// Runs that failed.
    pub failure_count: i64,
    /// Failed runs since the last successful one.
    pub consecutive_failures: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed by a request (update, pause, resume).
    pub updated_at: Timestamp,
}

/// GET /v1/schedules.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct ScheduleList {
    /// Newest first.
    pub schedules: Vec<Schedule>,
    /// How many there are.
    pub total: i64,
}

/// One run of a schedule, as the vendor's ScheduleExecutionResponse.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleExecution {
    /// The run's id.
    pub id: String,
    /// The run's job (GET /v1/screenshots/jobs/{jobId}).
    pub run_id: Option<String>,
    /// The same as runId.
    pub job_id: Option<String>,
    /// The page captured.
    pub url: Option<String>,
    /// When the run started.
    pub executed_at: Timestamp,
    /// The time of the pattern it ran for (the trigger's, for a triggered run).
    pub due_at: Option<Timestamp>,
    /// Started by a trigger rather than by the pattern.
    pub triggered: Option<bool>,
    /// The job's status until it ends.
    pub status: JobStatus,
    /// Whether the capture differs from the previous completed run's by more than
    /// diffThreshold (absent for a first capture or one that could not be compared).
    pub changed: Option<bool>,
    /// The fraction of pixels that changed, 0 to 1.
    pub diff_score: Option<f64>,
    /// The capture (GET, with the API key).
    pub result_url: Option<Uri>,
    /// The difference image: changed pixels in red over the capture, faded.
    pub diff_url: Option<Uri>,
    /// Results in object storage: a presigned URL of the capture.
    pub storage_url: Option<Uri>,
    /// Bytes of the capture's outputs.
    pub file_size: Option<i64>,
    /// How long the render took.
    pub render_time_ms: Option<i64>,
    /// FAILED runs: the job's errorCode.
    pub error_code: Option<String>,
    /// FAILED runs: what happened.
    pub error_message: Option<String>,
    /// When the run and its capture are deleted (retentionDays).
    pub expires_at: Option<Timestamp>,
    /// When the run ended.
    pub completed_at: Option<Timestamp>,
}

/// GET /v1/schedules/{id}/history.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ScheduleHistory {
    /// The schedule's id.
    pub schedule_id: String,
    /// Newest first.
    pub executions: Vec<ScheduleExecution>,
    /// All the runs kept, beyond this page.
    pub total_executions: i64,
}

#[derive(ApiResponse)]
enum Created {
    /// The schedule; its first run is at nextExecutionAt.
    #[oai(status = 201)]
    Schedule(Json<Schedule>),
}

#[derive(ApiResponse)]
enum Found {
    /// The schedule.
    #[oai(status = 200)]
    Schedule(Json<Schedule>),
}

#[derive(ApiResponse)]
enum Listed {
    /// The key's schedules.
    #[oai(status = 200)]
    Schedules(Json<ScheduleList>),
}

#[derive(ApiResponse)]
enum HistoryFound {
    /// Its runs, newest first.
    #[oai(status = 200)]
    History(Json<ScheduleHistory>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted with its history (its runs' jobs stay until the job retention).
    #[oai(status = 204)]
    Deleted,
}

operation_errors!(
    /// Errors of createSchedule and updateSchedule.
    WriteErrors {
        /// Malformed JSON, an unknown field or an invalid value: `validationErrors` names the field.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// No such schedule for this API key.
        NotFound = 404,
        /// The body is larger than the deployment's limit.
        PayloadTooLarge = 413,
    }
);

operation_errors!(
    /// Errors of the operations on one schedule.
    LookupErrors {
        /// An id that cannot be one, or a parameter out of range.
        BadRequest = 400,
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
        /// No such schedule for this API key.
        NotFound = 404,
        /// Not possible in the schedule's status (pausing a COMPLETED one).
        Conflict = 409,
    }
);

operation_errors!(
    /// Errors of listSchedules.
    ListErrors {
        /// A missing, unknown or revoked API key.
        Unauthorized = 401,
    }
);

pub struct SchedulesApi(pub Arc<State>);

#[OpenApi]
impl SchedulesApi {
    /// Create a schedule
    ///
    /// `name`, `url` and `schedule` are required. Runs are ordinary jobs of this key, made by the
    /// workers at each due time (once, however many workers run); with `onlyOnChange` a run is
    /// delivered only when its capture differs from the previous one by more than diffThreshold.
    #[oai(path = "/v1/schedules", method = "post", operation_id = "createSchedule", tag = "ApiTags::Schedules")]
    async fn create(&self, auth: Auth, body: JsonBody<ScheduleRequest>) -> Result<Created, WriteErrors> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, &auth).await?;
        ScheduleRequest::from_json(&body.0)
            .and_then(|r| r.canonical(self.0.policy))
            .map_err(|e| ApiError::invalid(&rid, &e))?;
        let schedule =
            self.0.db.schedule_call(&rid, "pgshot.schedule_create($1, $2)", &owner, None, Some(&body.0)).await?;
        Ok(Created::Schedule(Json(self.typed(&rid, schedule)?)))
    }

    /// List your schedules
    ///
    /// Every schedule of this API key, newest first.
    #[oai(path = "/v1/schedules", method = "get", operation_id = "listSchedules", tag = "ApiTags::Schedules")]
    async fn list(&self, auth: Auth) -> Result<Listed, ListErrors> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, &auth).await?;
        let list = self.0.db.schedule_call(&rid, "pgshot.schedule_list($1)", &owner, None, None).await?;
        Ok(Listed::Schedules(Json(self.typed(&rid, list)?)))
    }

    /// Get a schedule
    ///
    /// Its status, next run and counters.
    #[oai(path = "/v1/schedules/:id", method = "get", operation_id = "getSchedule", tag = "ApiTags::Schedules")]
    async fn get(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
    ) -> Result<Found, LookupErrors> {
        self.one(&auth, "pgshot.schedule_get($1, $2)", &id.0)
            .await
            .map(|s| Found::Schedule(Json(s)))
            .map_err(Into::into)
    }

    /// Update a schedule
    ///
    /// The fields given replace the schedule's; `null` clears one (or gives back its default).
    /// A new pattern, time zone or window moves the next run.
    #[oai(path = "/v1/schedules/:id", method = "put", operation_id = "updateSchedule", tag = "ApiTags::Schedules")]
    async fn update(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
        body: JsonBody<ScheduleRequest>,
    ) -> Result<Found, WriteErrors> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, &auth).await?;
        let stored = self.0.db.schedule_spec(&rid, &owner, &id.0).await?;
        ScheduleRequest::merged(&stored, &body.0)
            .and_then(|r| r.canonical(self.0.policy))
            .map_err(|e| ApiError::invalid(&rid, &e))?;
        let schedule = self
            .0
            .db
            .schedule_call(&rid, "pgshot.schedule_update($1, $2, $3)", &owner, Some(&id.0), Some(&body.0))
            .await?;
        Ok(Found::Schedule(Json(self.typed(&rid, schedule)?)))
    }

    /// Delete a schedule
    ///
    /// With its history; its runs' jobs stay until the job retention.
    #[oai(path = "/v1/schedules/:id", method = "delete", operation_id = "deleteSchedule", tag = "ApiTags::Schedules")]
    async fn delete(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
    ) -> Result<Deleted, LookupErrors> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, &auth).await?;
        self.0.db.schedule_delete(&rid, &owner, &id.0).await?;
        Ok(Deleted::Deleted)
    }

    /// Pause a schedule
    ///
    /// It runs no more at its times until resumed (a trigger still runs it).
    #[oai(
        path = "/v1/schedules/:id/pause",
        method = "post",
        operation_id = "pauseSchedule",
        tag = "ApiTags::Schedules"
    )]
    async fn pause(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
    ) -> Result<Found, LookupErrors> {
        self.one(&auth, "pgshot.schedule_pause($1, $2)", &id.0)
            .await
            .map(|s| Found::Schedule(Json(s)))
            .map_err(Into::into)
    }

    /// Resume a schedule
    ///
    /// From now: the times that passed while it was paused do not run.
    #[oai(
        path = "/v1/schedules/:id/resume",
        method = "post",
        operation_id = "resumeSchedule",
        tag = "ApiTags::Schedules"
    )]
    async fn resume(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
    ) -> Result<Found, LookupErrors> {
        self.one(&auth, "pgshot.schedule_resume($1, $2)", &id.0)
            .await
            .map(|s| Found::Schedule(Json(s)))
            .map_err(Into::into)
    }

    /// Run a schedule now
    ///
    /// One run at once, besides those of its pattern.
    #[oai(
        path = "/v1/schedules/:id/trigger",
        method = "post",
        operation_id = "triggerSchedule",
        tag = "ApiTags::Schedules"
    )]
    async fn trigger(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
    ) -> Result<Found, LookupErrors> {
        self.one(&auth, "pgshot.schedule_trigger($1, $2)", &id.0)
            .await
            .map(|s| Found::Schedule(Json(s)))
            .map_err(Into::into)
    }

    /// A schedule's runs
    ///
    /// Newest first, each with its status, change detection and capture.
    #[oai(
        path = "/v1/schedules/:id/history",
        method = "get",
        operation_id = "getExecutionHistory",
        tag = "ApiTags::Schedules"
    )]
    async fn history(
        &self,
        auth: Auth,
        /// The schedule's id.
        id: Path<String>,
        /// Runs to return, 1 to 100 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i32>>,
    ) -> Result<HistoryFound, LookupErrors> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, &auth).await?;
        let history = self.0.db.schedule_history(&rid, &owner, &id.0, limit.0.unwrap_or(50)).await?;
        Ok(HistoryFound::History(Json(self.typed(&rid, history)?)))
    }
}

impl SchedulesApi {
    async fn one(&self, auth: &Auth, call: &str, id: &str) -> ApiResult<Schedule> {
        let rid = new_job_id();
        let owner = self.0.owner_of(&rid, auth).await?;
        let schedule = self.0.db.schedule_call(&rid, call, &owner, Some(id), None).await?;
        self.typed(&rid, schedule)
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, rid: &str, value: Value) -> ApiResult<T> {
        self.0.typed(rid, value)
    }
}
