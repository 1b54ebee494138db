//! Every query pgshot-api runs, each through the extension's functions (reads may look at the
//! tables to scope a job to its API key).

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use pgshot_db::Database;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

pub struct Db {
    pool: Pool,
    database: Database,
}

/// A completed job's result, with what the result endpoints need to answer.
pub struct ResultRow {
    pub content_type: String,
    /// NULL for a result in object storage: `storage_key` names its object.
    pub bytes: Option<Vec<u8>>,
    pub storage_key: Option<String>,
    pub response_type: Option<String>,
    pub url: String,
    pub metadata: Option<Value>,
    pub output_metadata: Option<Value>,
}

pub struct QueueStats {
    pub queued: i64,
    pub processing: i64,
    pub oldest_queued_seconds: f64,
    pub job_rows_estimate: i64,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub rate_limit: Option<i32>,
    pub max_in_flight: Option<i32>,
}

impl Db {
    /// `public_url` makes the extension's `resultUrl` values absolute.
    pub fn new(database: &Database, public_url: &str, pool_size: usize) -> Result<Db, String> {
        let database = database
            .clone()
            .application_name("pgshot-api")
            .session_setting("pgshot.public_url", &public_url.replace(' ', "%20"));
        Ok(Db { pool: database.pool(pool_size, Duration::from_secs(5))?, database })
    }

    async fn client(&self, rid: &str) -> ApiResult<Object> {
        self.pool.get().await.map_err(|e| ApiError::from_pool(rid, &e))
    }

    /// The API key's id, or `None` for an unknown or revoked key.
    pub async fn owner(&self, rid: &str, key: &str) -> ApiResult<Option<String>> {
        let c = self.client(rid).await?;
        let row =
            c.query_one("SELECT pgshot.api_key_owner($1)", &[&key]).await.map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// Enqueues for `owner` and returns the new job's JSON. A `watched` job's end is notified on
    /// `pgshot_job_done` (for a request that waits for it); others finish without a NOTIFY.
    pub async fn enqueue(&self, rid: &str, owner: &str, url: &str, options: &Value, watched: bool) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_one(
                "WITH created AS (SELECT pgshot.enqueue_owned($1, $2, $3) AS id) \
                 SELECT CASE WHEN $4 THEN screenshot_watch(created.id) ELSE screenshot_job(created.id) END \
                 FROM created",
                &[&owner, &url, options, &watched],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// Enqueues a bulk request (flat `{url, ...options}` items) and returns the bulk with its jobs.
    pub async fn enqueue_bulk(
        &self,
        rid: &str,
        owner: &str,
        requests: &Value,
        max: i32,
        webhook_url: Option<&str>,
        webhook_secret: Option<&str>,
    ) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        // Two statements: the second one's snapshot sees the bulk row the first one inserted.
        let id: String = c
            .query_one(
                "SELECT pgshot.enqueue_bulk_owned($1, $2, $3, $4, $5)",
                &[&owner, requests, &max, &webhook_url, &webhook_secret],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?
            .get(0);
        self.bulk(rid, owner, &id).await
    }

    pub async fn bulk(&self, rid: &str, owner: &str, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT pgshot.bulk_json(b, true) FROM pgshot.bulks b WHERE b.id = $1 AND b.owner = $2",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| bulk_not_found(rid, id))
    }

    /// A page of the owner's bulks, newest first, after the position `cursor`, with the cursor
    /// of each bulk's own position.
    pub async fn bulks(
        &self,
        rid: &str,
        owner: &str,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> ApiResult<Vec<(Value, Cursor)>> {
        let c = self.client(rid).await?;
        let (micros, id) = cursor.map(|c| (c.micros, c.id.as_str())).unzip();
        let rows = c
            .query(
                "SELECT pgshot.bulk_json(b, false), (extract(epoch FROM b.created_at) * 1000000)::bigint, b.id \
                 FROM pgshot.bulks b \
                 WHERE b.owner = $1 \
                   AND ($2::bigint IS NULL OR (b.created_at, b.id) < \
                        (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::text)) \
                 ORDER BY b.created_at DESC, b.id DESC LIMIT $4",
                &[&owner, &micros, &id, &limit],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), Cursor { micros: r.get(1), id: r.get(2) })).collect())
    }

    pub async fn cancel_bulk(&self, rid: &str, owner: &str, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT pgshot.bulk_cancel(b.id) FROM pgshot.bulks b WHERE b.id = $1 AND b.owner = $2",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| bulk_not_found(rid, id))
    }

    /// The owner's job (`None`: any job, for the dashboard's operator).
    pub async fn job(&self, rid: &str, owner: Option<&str>, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT pgshot.job_json(j) FROM pgshot.jobs j WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| not_found(rid, id))
    }

    pub async fn cancel(&self, rid: &str, owner: Option<&str>, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT screenshot_cancel(j.id) FROM pgshot.jobs j WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| not_found(rid, id))
    }

    /// A result of the owner's job (`None`: of any job, for the dashboard's operator).
    pub async fn result(&self, rid: &str, owner: Option<&str>, id: &str, output: Option<&str>) -> ApiResult<ResultRow> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT r.content_type, r.bytes, j.options->>'responseType', j.url, j.metadata, o.metadata, \
                        o.storage_key \
                 FROM pgshot.jobs j \
                 CROSS JOIN LATERAL screenshot_result(j.id, $3) r \
                 LEFT JOIN pgshot.outputs o ON o.job_id = j.id AND o.output_id = r.output \
                 WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)",
                &[&id, &owner, &output],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        let row = row.ok_or_else(|| not_found(rid, id))?;
        Ok(ResultRow {
            content_type: row.get(0),
            bytes: row.get(1),
            response_type: row.get(2),
            url: row.get(3),
            metadata: row.get(4),
            output_metadata: row.get(5),
            storage_key: row.get(6),
        })
    }

    /// A page of the owner's jobs, newest first, after the position `cursor`, with the cursor
    /// of each job's own position.
    pub async fn list(
        &self,
        rid: &str,
        owner: &str,
        status: Option<&str>,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> ApiResult<Vec<(Value, Cursor)>> {
        let c = self.client(rid).await?;
        let (micros, id) = cursor.map(|c| (c.micros, c.id.as_str())).unzip();
        let rows = c
            .query(
                "SELECT pgshot.job_json(j), (extract(epoch FROM j.created_at) * 1000000)::bigint, j.id \
                 FROM pgshot.jobs j \
                 WHERE j.owner = $1 AND ($2::text IS NULL OR j.status = $2) \
                   AND ($3::bigint IS NULL OR (j.created_at, j.id) < \
                        (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::text)) \
                 ORDER BY j.created_at DESC, j.id DESC LIMIT $5",
                &[&owner, &status, &micros, &id, &limit],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), Cursor { micros: r.get(1), id: r.get(2) })).collect())
    }

    /// Reachable, with the extension installed at the version this binary speaks.
    pub async fn ready(&self) -> Result<(), String> {
        let c = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pgshot_db::connect_error(&e),
            other => other.to_string(),
        })?;
        pgshot_db::check_extension(&c).await
    }

    /// The same check on a connection of its own, for startup and the CLI.
    pub async fn check(&self) -> Result<(), String> {
        self.database.check_extension().await
    }

    /// (status, jobs) pairs and the age of the oldest queued job, for /metrics.
    /// What /metrics shows, at a cost bounded by the queue, not by the table: queued and
    /// processing jobs are counted through their partial indexes (`jobs_claim_order`,
    /// `jobs_processing`), and finished ones, which only grow, come from the planner's estimate.
    pub async fn stats(&self) -> Result<QueueStats, String> {
        let c = self.pool.get().await.map_err(|e| e.to_string())?;
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM pgshot.jobs WHERE status = 'QUEUED'), \
                        (SELECT count(*) FROM pgshot.jobs WHERE status = 'PROCESSING'), \
                        coalesce(extract(epoch FROM now() - \
                            (SELECT min(created_at) FROM pgshot.jobs WHERE status = 'QUEUED')), 0)::float8, \
                        (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'pgshot.jobs'::regclass)",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(QueueStats {
            queued: r.get(0),
            processing: r.get(1),
            oldest_queued_seconds: r.get(2),
            job_rows_estimate: r.get(3),
        })
    }

    /// GET /v1/usage for `owner`.
    pub async fn usage(&self, rid: &str, owner: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c.query_one("SELECT pgshot.usage($1)", &[&owner]).await.map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// The X-RateLimit-* values (limit, remaining, seconds to reset) of a live key with a rate
    /// limit; `None` for any other key, or when the database cannot say.
    pub async fn rate_limit(&self, key: &str) -> Option<(i32, i32, i32)> {
        let c = self.pool.get().await.ok()?;
        let row = c
            .query_opt("SELECT rate_limit, remaining, reset_seconds FROM pgshot.api_key_limits($1)", &[&key])
            .await
            .map_err(|e| tracing::warn!(error = %e, "rate limit headers unavailable"))
            .ok()??;
        Some((row.get::<_, Option<i32>>(0)?, row.get(1), row.get(2)))
    }

    /// A new key with its limits (None: no limit), in one transaction.
    pub async fn create_key(
        &self,
        name: &str,
        rate: Option<i32>,
        max_in_flight: Option<i32>,
    ) -> Result<(String, String), String> {
        let mut c = self.pool.get().await.map_err(|e| e.to_string())?;
        let tx = c.transaction().await.map_err(db_text)?;
        let row = tx.query_one("SELECT id, key FROM pgshot.api_key_create($1)", &[&name]).await.map_err(db_text)?;
        let id: String = row.get(0);
        tx.execute("SELECT pgshot.api_key_set_limits($1, $2, $3)", &[&id, &rate, &max_in_flight])
            .await
            .map_err(db_text)?;
        tx.commit().await.map_err(db_text)?;
        Ok((id, row.get(1)))
    }

    pub async fn set_key_limits(&self, id: &str, rate: Option<i32>, max_in_flight: Option<i32>) -> Result<(), String> {
        let c = self.pool.get().await.map_err(|e| e.to_string())?;
        c.execute("SELECT pgshot.api_key_set_limits($1, $2, $3)", &[&id, &rate, &max_in_flight])
            .await
            .map_err(db_text)?;
        Ok(())
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, String> {
        let c = self.pool.get().await.map_err(|e| e.to_string())?;
        let rows = c
            .query(
                "SELECT id, name, pgshot.timestamp_json(created_at), pgshot.timestamp_json(revoked_at), \
                        rate_limit, max_in_flight \
                 FROM pgshot.api_keys ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(db_text)?;
        Ok(rows
            .iter()
            .map(|r| KeyRow {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                revoked_at: r.get(3),
                rate_limit: r.get(4),
                max_in_flight: r.get(5),
            })
            .collect())
    }

    pub async fn revoke_key(&self, id: &str) -> Result<(), String> {
        let c = self.pool.get().await.map_err(|e| e.to_string())?;
        c.execute("SELECT pgshot.api_key_revoke($1)", &[&id]).await.map_err(db_text)?;
        Ok(())
    }
}

/// What the dashboard reads (dashboard.rs). `owner` scopes every query to one API key's jobs;
/// `None` is the operator (PGSHOT_ADMIN_TOKEN), who sees every owner.
impl Db {
    /// A page of jobs, newest first: each job's JSON, its owner, whether it has a thumbnail,
    /// and its cursor. `search` matches a part of the URL, in any case.
    pub async fn dashboard_jobs(
        &self,
        rid: &str,
        owner: Option<&str>,
        status: Option<&str>,
        search: Option<&str>,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> ApiResult<Vec<(Value, Option<String>, bool, Cursor)>> {
        let c = self.client(rid).await?;
        let (micros, id) = cursor.map(|c| (c.micros, c.id.as_str())).unzip();
        let rows = c
            .query(
                "SELECT pgshot.job_json(j), j.owner, \
                        j.status = 'COMPLETED' AND j.purged_at IS NULL AND EXISTS ( \
                            SELECT 1 FROM pgshot.thumbnails t WHERE t.job_id = j.id AND t.attempt = j.attempt), \
                        (extract(epoch FROM j.created_at) * 1000000)::bigint, j.id \
                 FROM pgshot.jobs j \
                 WHERE ($1::text IS NULL OR j.owner = $1) AND ($2::text IS NULL OR j.status = $2) \
                   AND ($3::text IS NULL OR strpos(lower(j.url), lower($3)) > 0) \
                   AND ($4::bigint IS NULL OR (j.created_at, j.id) < \
                        (timestamptz 'epoch' + $4::bigint * interval '1 microsecond', $5::text)) \
                 ORDER BY j.created_at DESC, j.id DESC LIMIT $6",
                &[&owner, &status, &search, &micros, &id, &limit],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), Cursor { micros: r.get(3), id: r.get(4) })).collect())
    }

    /// A job with what its page shows besides its JSON: its owner, its request as stored (the
    /// options and the columns taken out of them; the caller masks secrets), and its webhook
    /// deliveries with every attempt.
    pub async fn dashboard_job(&self, rid: &str, owner: Option<&str>, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "SELECT jsonb_build_object( \
                    'job', pgshot.job_json(j), \
                    'owner', j.owner, \
                    'enqueuedBy', j.enqueued_by, \
                    'request', j.options || jsonb_strip_nulls(jsonb_build_object( \
                        'priority', j.priority, 'maxAttempts', j.max_attempts, 'webhookUrl', j.webhook_url, \
                        'webhookSecret', j.webhook_secret, 'idempotencyKey', j.idempotency_key, \
                        'runAt', pgshot.timestamp_json(j.run_at))), \
                    'deliveries', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                            'id', d.id, 'event', d.event, 'url', d.url, 'status', d.status, \
                            'createdAt', pgshot.timestamp_json(d.created_at), \
                            'finishedAt', pgshot.timestamp_json(d.finished_at), \
                            'attempts', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                                    'attempt', a.attempt, 'at', pgshot.timestamp_json(a.at), \
                                    'statusCode', a.status_code, 'error', a.error, 'durationMs', a.duration_ms) \
                                    ORDER BY a.attempt), '[]') \
                                FROM pgshot.webhook_attempts a WHERE a.delivery_id = d.id)) \
                            ORDER BY d.created_at), '[]') \
                        FROM pgshot.webhook_deliveries d WHERE d.job_id = j.id)) \
                 FROM pgshot.jobs j WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| not_found(rid, id))
    }

    /// A completed job's thumbnail: (content type, bytes), or `None` when it has none.
    pub async fn thumbnail(&self, rid: &str, owner: Option<&str>, id: &str) -> ApiResult<Option<(String, Vec<u8>)>> {
        let c = self.client(rid).await?;
        let rows = c
            .query(
                "SELECT t.content_type, t.bytes FROM pgshot.jobs j CROSS JOIN LATERAL screenshot_thumbnail(j.id) t \
                 WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)",
                &[&id, &owner],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// A FAILED or CANCELLED job again, as the new job `new_id`; returns the new job's JSON.
    pub async fn retry(&self, rid: &str, owner: Option<&str>, id: &str, new_id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt(
                "WITH again AS ( \
                    SELECT pgshot.job_retry(j.id, $3) AS id FROM pgshot.jobs j \
                    WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2)) \
                 SELECT screenshot_job(again.id) FROM again",
                &[&id, &owner, &new_id],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| not_found(rid, id))
    }

    /// The operator's queue view: live counts, the last hour per minute and its error codes,
    /// the workers, and the last day per hour (pgshot.hourly).
    pub async fn queue_view(&self, rid: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_one(
                "SELECT jsonb_build_object( \
                    'queued', (SELECT count(*) FROM pgshot.jobs WHERE status = 'QUEUED'), \
                    'processing', (SELECT count(*) FROM pgshot.jobs WHERE status = 'PROCESSING'), \
                    'oldestQueuedSeconds', coalesce((SELECT extract(epoch FROM now() - min(created_at)) \
                        FROM pgshot.jobs WHERE status = 'QUEUED'), 0), \
                    'lastHour', (SELECT jsonb_build_object( \
                        'completed', coalesce(sum(a.completed), 0), 'failed', coalesce(sum(a.failed), 0), \
                        'cancelled', coalesce(sum(a.cancelled), 0)) FROM screenshot_activity() a), \
                    'activity', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                        'at', pgshot.timestamp_json(a.bucket_start), 'completed', a.completed, 'failed', a.failed, \
                        'cancelled', a.cancelled, 'renderMsP50', round(a.render_ms_p50), \
                        'renderMsP95', round(a.render_ms_p95)) ORDER BY a.bucket_start), '[]') \
                        FROM screenshot_activity() a), \
                    'errors', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                        'errorCode', e.error_code, 'jobs', e.jobs, 'lastAt', pgshot.timestamp_json(e.last_at), \
                        'lastMessage', e.last_message)), '[]') FROM screenshot_error_counts() e), \
                    'workers', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                        'id', w.id, 'host', w.host, 'pid', w.pid, 'version', w.version, \
                        'concurrency', w.concurrency, 'inFlight', w.in_flight, 'jobsHeld', w.jobs_held, \
                        'browserRestarts', w.browser_restarts, 'startedAt', pgshot.timestamp_json(w.started_at), \
                        'lastSeen', pgshot.timestamp_json(w.last_seen), \
                        'lastSeenSeconds', round(extract(epoch FROM now() - w.last_seen)), 'alive', w.alive)), '[]') \
                        FROM screenshot_workers() w), \
                    'hourly', (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                        'hour', pgshot.timestamp_json(h.hour), 'completed', h.completed, 'failed', h.failed, \
                        'cancelled', h.cancelled) ORDER BY h.hour), '[]') \
                        FROM (SELECT hour, sum(completed) AS completed, sum(failed) AS failed, \
                                     sum(cancelled) AS cancelled \
                              FROM pgshot.hourly WHERE hour > now() - interval '24 hours' GROUP BY hour) h))",
                &[],
            )
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// Something that changes whenever a job the viewer sees changes state: for an owner, their
    /// latest 200 jobs' ids, states and attempts; for the operator, the live counts and the last
    /// claim and completion.
    pub async fn fingerprint(&self, rid: &str, owner: Option<&str>) -> ApiResult<String> {
        let c = self.client(rid).await?;
        let row = match owner {
            Some(owner) => {
                c.query_one(
                    "SELECT coalesce(md5(string_agg(id || ':' || status || ':' || attempt || ':' || cancel_requested, ',')), '') \
                     FROM (SELECT id, status, attempt, cancel_requested FROM pgshot.jobs WHERE owner = $1 \
                           ORDER BY created_at DESC, id DESC LIMIT 200) recent",
                    &[&owner],
                )
                .await
            }
            None => {
                c.query_one(
                    "SELECT concat_ws(':', (SELECT count(*) FROM pgshot.jobs WHERE status = 'QUEUED'), \
                        (SELECT count(*) FROM pgshot.jobs WHERE status = 'PROCESSING'), \
                        (SELECT max(started_at) FROM pgshot.jobs WHERE status = 'PROCESSING'), \
                        (SELECT max(completed_at) FROM pgshot.jobs WHERE completed_at IS NOT NULL))",
                    &[],
                )
                .await
            }
        }
        .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// One of the extension's schedule operations (`call`, such as `pgshot.schedule_get($1, $2)`),
    /// with its parameters in order: the owner, then the schedule's id and the request, when given.
    pub async fn schedule_call(
        &self,
        rid: &str,
        call: &str,
        owner: &str,
        id: Option<&str>,
        body: Option<&Value>,
    ) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&owner];
        if let Some(id) = &id {
            params.push(id);
        }
        if let Some(body) = &body {
            params.push(body);
        }
        let row = c.query_one(&format!("SELECT {call}"), &params).await.map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }

    /// The owner's schedule's stored request, for validating an update against it.
    pub async fn schedule_spec(&self, rid: &str, owner: &str, id: &str) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_opt("SELECT spec FROM pgshot.schedules WHERE id = $1 AND owner = $2", &[&id, &owner])
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        row.map(|r| r.get(0)).ok_or_else(|| ApiError::not_found(rid, format!("schedule \"{id}\" does not exist")))
    }

    pub async fn schedule_delete(&self, rid: &str, owner: &str, id: &str) -> ApiResult<()> {
        let c = self.client(rid).await?;
        c.execute("SELECT pgshot.schedule_delete($1, $2)", &[&owner, &id])
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(())
    }

    pub async fn schedule_history(&self, rid: &str, owner: &str, id: &str, limit: i32) -> ApiResult<Value> {
        let c = self.client(rid).await?;
        let row = c
            .query_one("SELECT pgshot.schedule_history($1, $2, $3)", &[&owner, &id, &limit])
            .await
            .map_err(|e| ApiError::from_db(rid, &e))?;
        Ok(row.get(0))
    }
}

fn not_found(rid: &str, id: &str) -> ApiError {
    ApiError::not_found(rid, format!("job \"{id}\" does not exist"))
}

fn bulk_not_found(rid: &str, id: &str) -> ApiError {
    ApiError::not_found(rid, format!("bulk job \"{id}\" does not exist"))
}

fn db_text(e: tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// A position in a job list: the creation time in microseconds since the epoch, and the job id
/// that breaks ties. Any well-formed cursor is a valid position, whether or not its job still
/// exists (expired and purged jobs do not break paging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub micros: i64,
    pub id: String,
}

impl Cursor {
    pub fn parse(raw: &str) -> Option<Cursor> {
        let (micros, id) = raw.split_once('-')?;
        let valid_micros = !micros.is_empty() && micros.len() <= 16 && micros.bytes().all(|b| b.is_ascii_digit());
        let valid_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        if !(valid_micros && valid_id) {
            return None;
        }
        Some(Cursor { micros: micros.parse().ok()?, id: id.to_string() })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.micros, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_round_trips_and_refuses_what_is_not_one() {
        let c = Cursor { micros: 1_764_500_000_123_456, id: "abcdefgh01234567".into() };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in [
            "",
            "-",
            "12-",
            "-abcdefgh01234567",
            "x1-abcdefgh01234567",
            "1-ABCDEFGH01234567",
            "1-short",
            "12345678901234567-abcdefgh01234567",
            "1-abcdefgh01234567-",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
