//! The worker's side of the SQL queue API: every call goes through a `screenshot_*` function.

use std::sync::Arc;
use std::time::Duration;

use crate::{Database, Failure};
use deadpool_postgres::Pool;
use postgres_types::ToSql;
use serde_json::Value;
use tokio::sync::Notify;

/// Channel the extension notifies when jobs become runnable.
pub const JOBS_CHANNEL: &str = "pgshot_jobs";
/// Channel the extension notifies when webhook deliveries are written.
pub const WEBHOOKS_CHANNEL: &str = "pgshot_webhooks";
/// Key of the advisory lock that makes one worker at a time run rescue and purge.
const MAINTENANCE_LOCK: &str = "pgshot.maintenance";

pub type DbError = tokio_postgres::Error;

#[derive(Debug)]
pub enum QueueError {
    /// The job is no longer held by this worker at this attempt (55000) or is gone (P0002):
    /// abandon the attempt, never retry it.
    LeaseLost(String),
    /// The database could not be reached or the pool is exhausted: try again later.
    Unavailable(String),
    /// Anything else the database refused.
    Refused(String),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::LeaseLost(m) => write!(f, "lease lost: {m}"),
            QueueError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            QueueError::Refused(m) => write!(f, "database refused: {m}"),
        }
    }
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        let message = crate::message(&e);
        match crate::classify(&e) {
            Failure::WrongState | Failure::NotFound => QueueError::LeaseLost(message),
            Failure::Transient => QueueError::Unavailable(message),
            _ => QueueError::Refused(message),
        }
    }
}

impl From<deadpool_postgres::PoolError> for QueueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => QueueError::Unavailable(other.to_string()),
        }
    }
}

/// A job this worker holds: the attempt is its fencing token.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub url: String,
    pub options: Value,
    pub attempt: i32,
}

/// What a schedule's run compares its capture with.
#[derive(Debug, Clone)]
pub struct PreviousCapture {
    pub diff_threshold: f64,
    /// The previous completed run's job; None for a schedule's first capture.
    pub job_id: Option<String>,
    /// Its first image, in Postgres...
    pub bytes: Option<Vec<u8>>,
    /// ...or in object storage.
    pub storage_key: Option<String>,
}

/// A webhook delivery this worker holds at `attempt`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub url: String,
    pub secret: Option<String>,
    pub body: String,
    pub attempt: i32,
}

/// One output handed to `screenshot_complete`, as the composite `pgshot.output`.
#[derive(Debug, Clone, ToSql)]
#[postgres(name = "output")]
pub struct OutputRow {
    pub output_id: String,
    pub output_type: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub metadata: Value,
}

/// One output in object storage, as the composite `pgshot.stored_output`.
#[derive(Debug, Clone, ToSql)]
#[postgres(name = "stored_output")]
pub struct StoredOutputRow {
    pub output_id: String,
    pub output_type: String,
    pub content_type: String,
    pub storage_key: String,
    pub size: i64,
    pub sha256: Vec<u8>,
    pub metadata: Value,
}

/// A completed screenshot's thumbnail, for the dashboard (never an output of the job).
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub bytes: Vec<u8>,
}

/// What a worker reports of itself at every maintenance tick.
#[derive(Debug, Clone)]
pub struct WorkerBeat {
    pub host: String,
    pub version: String,
    pub concurrency: i32,
    pub in_flight: i32,
    pub browser_restarts: i32,
}

#[derive(Clone)]
pub struct Queue {
    pool: Pool,
    worker_id: Arc<str>,
    lease_seconds: f64,
}

impl Queue {
    pub fn new(database: &Database, worker_id: &str, lease: Duration, pool_size: usize) -> Result<Queue, String> {
        let pool = database.pool(pool_size, Duration::from_secs(10))?;
        Ok(Queue { pool, worker_id: worker_id.into(), lease_seconds: lease.as_secs_f64() })
    }

    pub async fn claim(&self, max_jobs: i32) -> Result<Vec<ClaimedJob>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, url, options, attempt \
                 FROM screenshot_claim($1, $2, make_interval(secs => $3))",
                &[&&*self.worker_id, &max_jobs, &self.lease_seconds],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ClaimedJob { id: r.get(0), url: r.get(1), options: r.get(2), attempt: r.get(3) })
            .collect())
    }

    /// Renews the lease; `Ok(false)` means the job was cancelled and is now CANCELLED.
    pub async fn heartbeat(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT screenshot_heartbeat($1, $2, $3, make_interval(secs => $4))",
                &[&job.id, &&*self.worker_id, &job.attempt, &self.lease_seconds],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn complete(&self, job: &ClaimedJob, metadata: &Value, outputs: &[OutputRow]) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT screenshot_complete($1, $2, $3, $4, $5)",
                &[&job.id, &&*self.worker_id, &job.attempt, metadata, &outputs],
            )
            .await?;
        Ok(())
    }

    /// Announces the object keys the attempt is about to upload (they are garbage until
    /// `complete_stored` names them).
    pub async fn store_begin(&self, job: &ClaimedJob, keys: &[String]) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT screenshot_store_begin($1, $2, $3, $4)",
                &[&job.id, &&*self.worker_id, &job.attempt, &keys],
            )
            .await?;
        Ok(())
    }

    pub async fn complete_stored(
        &self,
        job: &ClaimedJob,
        metadata: &Value,
        outputs: &[StoredOutputRow],
    ) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT screenshot_complete_stored($1, $2, $3, $4, $5)",
                &[&job.id, &&*self.worker_id, &job.attempt, metadata, &outputs],
            )
            .await?;
        Ok(())
    }

    /// Object keys due for deletion from the bucket.
    pub async fn storage_sweep(&self, max: i32) -> Result<Vec<String>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT screenshot_storage_sweep($1)", &[&max]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn storage_forget(&self, keys: &[String]) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client.execute("SELECT screenshot_storage_forget($1)", &[&keys]).await?;
        Ok(())
    }

    /// Records a failed attempt; returns the job's new status.
    pub async fn fail(
        &self,
        job: &ClaimedJob,
        code: &str,
        message: &str,
        retryable: bool,
    ) -> Result<String, QueueError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT screenshot_fail($1, $2, $3, $4, $5, $6)",
                &[&job.id, &&*self.worker_id, &job.attempt, &code, &message, &retryable],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Gives a job back untouched (shutdown): it is claimable again at once, the attempt not counted.
    pub async fn release(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client.execute("SELECT screenshot_release($1, $2, $3)", &[&job.id, &&*self.worker_id, &job.attempt]).await?;
        Ok(())
    }

    pub async fn webhook_claim(&self, max: i32) -> Result<Vec<Delivery>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, url, secret, body, attempt FROM screenshot_webhook_claim($1, $2, make_interval(secs => $3))",
                &[&&*self.worker_id, &max, &self.lease_seconds.max(30.0)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Delivery { id: r.get(0), url: r.get(1), secret: r.get(2), body: r.get(3), attempt: r.get(4) })
            .collect())
    }

    /// Records one webhook attempt; returns the delivery's new status.
    pub async fn webhook_record(
        &self,
        d: &Delivery,
        status_code: Option<i32>,
        error: Option<&str>,
        duration_ms: i32,
    ) -> Result<String, QueueError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT screenshot_webhook_record($1, $2, $3, $4, $5, $6)",
                &[&d.id, &&*self.worker_id, &d.attempt, &status_code, &error, &duration_ms],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Stores the thumbnail of the attempt this worker holds (55000, as `LeaseLost`, otherwise).
    pub async fn thumbnail_put(&self, job: &ClaimedJob, thumbnail: &Thumbnail) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT screenshot_thumbnail_put($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &job.id,
                    &&*self.worker_id,
                    &job.attempt,
                    &thumbnail.content_type,
                    &thumbnail.width,
                    &thumbnail.height,
                    &thumbnail.bytes,
                ],
            )
            .await?;
        Ok(())
    }

    /// For a schedule's run this worker holds: the schedule's diff threshold and the previous
    /// run's capture (`None` for any other job).
    pub async fn schedule_previous(&self, job: &ClaimedJob) -> Result<Option<PreviousCapture>, QueueError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT * FROM screenshot_schedule_previous($1, $2, $3)",
                &[&job.id, &&*self.worker_id, &job.attempt],
            )
            .await?;
        Ok(row.map(|r| PreviousCapture {
            diff_threshold: r.get(0),
            job_id: r.get(1),
            bytes: r.get(3),
            storage_key: r.get(4),
        }))
    }

    /// Records this worker and its load in `pgshot.workers`.
    pub async fn beat(&self, beat: &WorkerBeat) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT screenshot_worker_beat($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &&*self.worker_id,
                    &beat.host,
                    &beat.concurrency,
                    &beat.in_flight,
                    &beat.browser_restarts,
                    &beat.version,
                    &(std::process::id() as i32),
                ],
            )
            .await?;
        Ok(())
    }

    /// Records a clean stop: the dashboard shows the worker as stopped, not as lost.
    pub async fn stopped(&self) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client.execute("SELECT screenshot_worker_stop($1)", &[&&*self.worker_id]).await?;
        Ok(())
    }

    /// Rescues expired leases and purges expired results, if no other worker is doing it now.
    /// Returns (rescued, purged), or `None` when another worker holds the maintenance lock.
    pub async fn maintain(&self) -> Result<Option<(i32, i32)>, QueueError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool =
            tx.query_one("SELECT pg_try_advisory_xact_lock(hashtext($1))", &[&MAINTENANCE_LOCK]).await?.get(0);
        if !locked {
            return Ok(None);
        }
        let rescued: i32 = tx.query_one("SELECT screenshot_rescue()", &[]).await?.get(0);
        let purged: i32 = tx.query_one("SELECT screenshot_purge()", &[]).await?.get(0);
        // The hours that ended, into pgshot.hourly (a no-op within an hour already rolled up).
        tx.execute("SELECT screenshot_rollup()", &[]).await?;
        tx.commit().await?;
        Ok(Some((rescued, purged)))
    }

    /// Starts the runs of the schedules that are due (screenshot_schedule_tick): any number of
    /// workers may call it at once, each due time runs once. Returns the runs started.
    pub async fn schedule_tick(&self, max: i32) -> Result<i32, QueueError> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT screenshot_schedule_tick($1)", &[&max]).await?.get(0))
    }
}

/// Wakes each channel's `Notify` on its notifications, and all of them after every
/// (re)connection, when the worker sweeps for work it may have missed.
pub async fn listen(database: Database, channels: Vec<(&'static str, Arc<Notify>)>) {
    let names = channels.iter().map(|(c, _)| *c).collect();
    let wake = |channel: &str, _: &str| {
        if let Some((_, notify)) = channels.iter().find(|(c, _)| *c == channel) {
            notify.notify_one();
        }
    };
    let sweep = || channels.iter().for_each(|(_, notify)| notify.notify_one());
    crate::listen_forever(database, names, wake, sweep).await;
}
