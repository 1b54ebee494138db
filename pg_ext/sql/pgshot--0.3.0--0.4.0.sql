-- pgshot 0.3.0 -> 0.4.0: what the dashboard needs, each part usable from SQL on its own: attempt
-- history (attempts and lastError in the job JSON), workers and their heartbeats, thumbnails,
-- per-minute activity and per-hour aggregates. Run by ALTER EXTENSION pgshot UPDATE, in one
-- transaction. tests/tests/upgrade.rs compares the result with a fresh install. The functions
-- below are copies of their 0.4.0 definitions in queue.sql.
\echo Use "ALTER EXTENSION pgshot UPDATE" to load this file. \quit

-- Workers, as they report themselves (screenshot_worker_beat, at every maintenance tick): the
-- dashboard's and SQL's view of who is rendering. A row not seen for a day is deleted.
CREATE TABLE pgshot.workers (
    id               text PRIMARY KEY,
    host             text NOT NULL,
    pid              integer,
    version          text NOT NULL,
    concurrency      integer NOT NULL,
    in_flight        integer NOT NULL DEFAULT 0,
    browser_restarts integer NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now(),
    stopped_at       timestamptz,
    CONSTRAINT workers_id_length CHECK (length(id) BETWEEN 1 AND 200),
    CONSTRAINT workers_host_length CHECK (length(host) BETWEEN 1 AND 255),
    CONSTRAINT workers_concurrency_range CHECK (concurrency BETWEEN 1 AND 1000),
    CONSTRAINT workers_in_flight_range CHECK (in_flight BETWEEN 0 AND concurrency),
    CONSTRAINT workers_restarts_nonnegative CHECK (browser_restarts >= 0)
);
COMMENT ON TABLE pgshot.workers IS 'workers and their last heartbeat (screenshot_worker_beat); alive while seen within a minute';

-- One small picture per completed screenshot, made by the worker for the dashboard: never an
-- output of the job (not listed, not counted, not sent anywhere), deleted when the result expires.
CREATE TABLE pgshot.thumbnails (
    job_id       text PRIMARY KEY REFERENCES pgshot.jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    bytes        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT thumbnails_content_type_image CHECK (content_type IN ('image/jpeg', 'image/webp', 'image/png')),
    CONSTRAINT thumbnails_bytes_small CHECK (octet_length(bytes) BETWEEN 1 AND 262144),
    CONSTRAINT thumbnails_dimensions CHECK (width BETWEEN 1 AND 1024 AND height BETWEEN 1 AND 1024)
);
COMMENT ON TABLE pgshot.thumbnails IS 'a small JPEG of each completed screenshot, for the dashboard; not an output';

-- Finished jobs per hour and owner (screenshot_rollup, at every maintenance tick), kept after the
-- jobs themselves are deleted: history without scanning pgshot.jobs.
CREATE TABLE pgshot.hourly (
    hour          timestamptz NOT NULL,
    owner         text NOT NULL,
    completed     bigint NOT NULL,
    failed        bigint NOT NULL,
    cancelled     bigint NOT NULL,
    render_ms_p50 double precision,
    render_ms_p95 double precision,
    error_codes   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (hour, owner),
    CONSTRAINT hourly_on_the_hour CHECK (extract(epoch FROM hour) % 3600 = 0),
    CONSTRAINT hourly_counts_nonnegative CHECK (completed >= 0 AND failed >= 0 AND cancelled >= 0),
    CONSTRAINT hourly_error_codes_object CHECK (jsonb_typeof(error_codes) = 'object')
);
COMMENT ON TABLE pgshot.hourly IS 'finished jobs per hour and owner (API key or role): counts, render time, error codes';

-- Jobs by the time they finished: the last hour's activity and the hourly roll-up read a range
-- of it instead of the whole table. Only finished jobs are in it.
CREATE INDEX jobs_finished ON pgshot.jobs (completed_at) WHERE completed_at IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('pgshot.workers', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.thumbnails', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.hourly', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON pgshot.workers, pgshot.thumbnails, pgshot.hourly TO @extowner@;

-- A job's attempts, oldest first: each failed one from jobs.errors (worker and start are there
-- since 0.4.0), then the latest one from the job's own columns when it did not fail (running,
-- completed or cancelled). Attempts given back by a worker that shut down are not attempts;
-- NULL (left out of the job JSON) before the first attempt.
CREATE FUNCTION pgshot.attempts_json(j pgshot.jobs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg(a.attempt ORDER BY a.n)
    FROM (
        SELECT (e->>'attempt')::integer AS n, jsonb_strip_nulls(jsonb_build_object(
                   'attempt', (e->>'attempt')::integer,
                   'status', 'FAILED',
                   'worker', e->>'worker',
                   'startedAt', pgshot.timestamp_json((e->>'startedAt')::timestamptz),
                   'endedAt', pgshot.timestamp_json((e->>'at')::timestamptz),
                   'errorCode', e->>'code',
                   'errorMessage', e->>'message')) AS attempt
        FROM jsonb_array_elements(j.errors) e
        UNION ALL
        SELECT j.attempt, jsonb_strip_nulls(jsonb_build_object(
                   'attempt', j.attempt,
                   'status', CASE WHEN j.status IN ('PROCESSING', 'QUEUED') THEN 'RUNNING' ELSE j.status END,
                   'worker', j.worker_id,
                   'startedAt', pgshot.timestamp_json(j.started_at),
                   'endedAt', pgshot.timestamp_json(j.completed_at)))
        WHERE j.attempt > 0 AND j.status <> 'QUEUED'
          AND NOT j.errors @> jsonb_build_array(jsonb_build_object('attempt', j.attempt))
    ) a
$$;

-- The last failed attempt's error, also while the job is being retried (status QUEUED).
CREATE FUNCTION pgshot.last_error_json(j pgshot.jobs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_array_length(j.errors) > 0 THEN jsonb_build_object(
        'attempt', (j.errors->-1->>'attempt')::integer,
        'errorCode', j.errors->-1->>'code',
        'errorMessage', j.errors->-1->>'message',
        'at', pgshot.timestamp_json((j.errors->-1->>'at')::timestamptz)) END
$$;


CREATE OR REPLACE FUNCTION pgshot.job_json(j pgshot.jobs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', j.id,
        'status', j.status,
        'url', j.url,
        'resultUrl', CASE WHEN j.status = 'COMPLETED' THEN
            pgshot.result_url(j.id, CASE WHEN j.options ? 'outputs' THEN o.first_id END) END,
        -- In object storage (PGSHOT_STORAGE=s3): the first output's object; pgshot-api turns it
        -- into a presigned storageUrl.
        'storageKey', CASE WHEN j.status = 'COMPLETED' THEN o.first_key END,
        'errorCode', j.error_code,
        'errorMessage', j.error_message,
        'createdAt', pgshot.timestamp_json(j.created_at),
        'startedAt', pgshot.timestamp_json(j.started_at),
        'completedAt', pgshot.timestamp_json(j.completed_at),
        'expiresAt', pgshot.timestamp_json(j.expires_at),
        'metadata', j.metadata,
        'outputs', CASE WHEN j.options ? 'outputs' THEN o.outputs END,
        -- Every attempt with its worker, start, end and error; the last failed one's error also
        -- while the job waits to be retried.
        'attempts', pgshot.attempts_json(j),
        'lastError', pgshot.last_error_json(j),
        'webhook', (
            SELECT jsonb_build_object(
                'status', d.status,
                'attempts', d.attempt,
                'lastStatusCode', d.last_status_code,
                'lastError', d.last_error,
                'deliveredAt', CASE WHEN d.status = 'DELIVERED' THEN pgshot.timestamp_json(d.finished_at) END)
            FROM pgshot.webhook_deliveries d
            WHERE d.job_id = j.id
            ORDER BY d.created_at DESC
            LIMIT 1)))
    FROM (
        SELECT min(output_id) FILTER (WHERE position = 1) AS first_id,
               jsonb_object_agg(output_id, jsonb_build_object(
                   'type', output_type,
                   'contentType', content_type,
                   'size', size,
                   'resultUrl', pgshot.result_url(j.id, output_id),
                   'storageKey', storage_key) || metadata) AS outputs,
               min(storage_key) FILTER (WHERE position = 1) AS first_key
        FROM pgshot.outputs
        WHERE job_id = j.id
    ) o
$$;

CREATE OR REPLACE FUNCTION screenshot_fail(job_id text, worker_id text, attempt integer, error_code text,
                                error_message text, retryable boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
    next_status text;
    message text := left(coalesce(error_message, ''), 2000);
BEGIN
    IF error_code IS NULL OR error_code !~ '^[A-Z][A-Z0-9_]{0,63}$' THEN
        RAISE EXCEPTION 'error_code must be an upper-case code such as RENDER_FAILED'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %L', error_code);
    END IF;
    j := pgshot.lock_attempt(job_id, worker_id, attempt);
    next_status := CASE
        WHEN j.cancel_requested THEN 'CANCELLED'
        WHEN coalesce(retryable, true) AND j.attempt < j.max_attempts THEN 'QUEUED'
        ELSE 'FAILED'
    END;
    UPDATE pgshot.jobs
    SET status = next_status,
        lease_expires_at = NULL,
        run_at = CASE WHEN next_status = 'QUEUED' THEN now() + pgshot.retry_delay(j.attempt) ELSE run_at END,
        completed_at = CASE WHEN next_status = 'QUEUED' THEN NULL ELSE now() END,
        error_code = CASE WHEN next_status = 'FAILED' THEN screenshot_fail.error_code END,
        error_message = CASE WHEN next_status = 'FAILED' THEN message END,
        errors = errors || jsonb_build_object('attempt', j.attempt, 'at', now(),
                                              'code', screenshot_fail.error_code, 'message', message,
                                              'worker', j.worker_id, 'startedAt', j.started_at)
    WHERE id = j.id;
    IF next_status = 'QUEUED' THEN
        PERFORM pg_notify('pgshot_jobs', 'queued');
    END IF;
    RETURN next_status;
END
$$;

CREATE OR REPLACE FUNCTION screenshot_rescue(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    rescued integer;
    requeued integer;
BEGIN
    WITH expired AS (
        SELECT id FROM pgshot.jobs
        WHERE status = 'PROCESSING' AND lease_expires_at < now()
        ORDER BY lease_expires_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE pgshot.jobs j
        SET status = t.next_status,
            lease_expires_at = NULL,
            run_at = CASE WHEN t.next_status = 'QUEUED' THEN now() + pgshot.retry_delay(j.attempt) ELSE j.run_at END,
            completed_at = CASE WHEN t.next_status = 'QUEUED' THEN NULL ELSE now() END,
            error_code = CASE WHEN t.next_status = 'FAILED' THEN 'LEASE_EXPIRED' END,
            error_message = CASE WHEN t.next_status = 'FAILED' THEN t.message END,
            errors = j.errors || jsonb_build_object('attempt', j.attempt, 'at', now(),
                                                    'code', 'LEASE_EXPIRED', 'message', t.message,
                                                    'worker', j.worker_id, 'startedAt', j.started_at)
        FROM expired e,
             LATERAL (SELECT CASE WHEN jj.cancel_requested THEN 'CANCELLED'
                                  WHEN jj.attempt < jj.max_attempts THEN 'QUEUED'
                                  ELSE 'FAILED' END AS next_status,
                             format('worker "%s" stopped heartbeating during attempt %s of %s',
                                    jj.worker_id, jj.attempt, jj.max_attempts) AS message
                      FROM pgshot.jobs jj WHERE jj.id = e.id) t
        WHERE j.id = e.id
        RETURNING t.next_status
    )
    SELECT count(*), count(*) FILTER (WHERE next_status = 'QUEUED') INTO rescued, requeued FROM moved;
    IF requeued > 0 THEN
        PERFORM pg_notify('pgshot_jobs', 'queued');
    END IF;
    RETURN rescued;
END
$$;

CREATE OR REPLACE FUNCTION screenshot_purge(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    purged integer;
    deleted integer := 0;
    retention interval := pgshot.job_retention();
BEGIN
    WITH due AS (
        SELECT id FROM pgshot.jobs
        WHERE status = 'COMPLETED' AND purged_at IS NULL AND expires_at <= now()
        ORDER BY expires_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), emptied AS (
        UPDATE pgshot.outputs o SET bytes = NULL, storage_key = NULL, sha256 = NULL FROM due WHERE o.job_id = due.id
    ), thumbnails_gone AS (
        DELETE FROM pgshot.thumbnails t USING due WHERE t.job_id = due.id
    ), marked AS (
        UPDATE pgshot.jobs j SET purged_at = now() FROM due WHERE j.id = due.id RETURNING 1
    )
    SELECT count(*) INTO purged FROM marked;
    IF retention IS NOT NULL THEN
        -- A result is never deleted before its own expiresAt, whatever the retention.
        WITH old AS (
            SELECT id FROM pgshot.jobs
            WHERE completed_at < now() - retention AND (expires_at IS NULL OR expires_at <= now())
            ORDER BY completed_at
            LIMIT max_jobs
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM pgshot.jobs j USING old WHERE j.id = old.id RETURNING j.bulk_id
        )
        SELECT count(*) INTO deleted FROM gone;
        DELETE FROM pgshot.bulks b
        WHERE b.id IN (SELECT id FROM pgshot.bulks WHERE created_at < now() - retention ORDER BY created_at LIMIT max_jobs)
          AND NOT EXISTS (SELECT 1 FROM pgshot.jobs j WHERE j.bulk_id = b.id);
    END IF;
    RETURN purged + deleted;
END
$$;

-- For workers: what the worker is, at every maintenance tick (and at start). Workers not seen for
-- a day are forgotten here.
CREATE FUNCTION screenshot_worker_beat(worker_id text, host text, concurrency integer, in_flight integer,
                                       browser_restarts integer, version text, pid integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF worker_id IS NULL OR length(worker_id) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'worker_id must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    ELSIF host IS NULL OR length(host) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'host must be 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value';
    ELSIF concurrency IS NULL OR concurrency NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'concurrency must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('got %s', concurrency);
    ELSIF in_flight IS NULL OR in_flight NOT BETWEEN 0 AND concurrency THEN
        RAISE EXCEPTION 'in_flight must be between 0 and concurrency (%)', concurrency
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', in_flight);
    ELSIF browser_restarts IS NULL OR browser_restarts < 0 THEN
        RAISE EXCEPTION 'browser_restarts must be 0 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgshot.workers AS w (id, host, pid, version, concurrency, in_flight, browser_restarts)
    VALUES (worker_id, host, pid, coalesce(version, ''), concurrency, in_flight, browser_restarts)
    ON CONFLICT (id) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
        concurrency = EXCLUDED.concurrency, in_flight = EXCLUDED.in_flight,
        browser_restarts = EXCLUDED.browser_restarts, last_seen = now(), stopped_at = NULL;
    DELETE FROM pgshot.workers WHERE last_seen < now() - interval '1 day';
END
$$;
COMMENT ON FUNCTION screenshot_worker_beat(text, text, integer, integer, integer, text, integer) IS
    'for workers: record this worker and its load (pgshot.workers)';

CREATE FUNCTION screenshot_worker_stop(worker_id text) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgshot.workers SET stopped_at = now(), in_flight = 0, last_seen = now() WHERE id = worker_id
$$;
COMMENT ON FUNCTION screenshot_worker_stop(text) IS 'for workers: record a clean stop';

-- Workers seen in the last day, with whether they are alive (seen within a minute, not stopped)
-- and the jobs the queue says each holds.
CREATE FUNCTION screenshot_workers()
RETURNS TABLE (id text, host text, pid integer, version text, concurrency integer, in_flight integer,
               jobs_held bigint, browser_restarts integer, started_at timestamptz, last_seen timestamptz,
               alive boolean)
LANGUAGE sql STABLE AS $$
    SELECT w.id, w.host, w.pid, w.version, w.concurrency, w.in_flight,
           (SELECT count(*) FROM pgshot.jobs j WHERE j.status = 'PROCESSING' AND j.worker_id = w.id),
           w.browser_restarts, w.started_at, w.last_seen,
           w.stopped_at IS NULL AND w.last_seen > now() - interval '1 minute'
    FROM pgshot.workers w
    ORDER BY w.stopped_at IS NULL DESC, w.last_seen DESC, w.id
$$;
COMMENT ON FUNCTION screenshot_workers() IS 'workers seen in the last day, alive or not';

-- For workers: the thumbnail of the attempt they hold, before they complete it (so that it is
-- there as soon as the job is COMPLETED). 55000 when the attempt is no longer theirs.
CREATE FUNCTION screenshot_thumbnail_put(job_id text, worker_id text, attempt integer, content_type text,
                                         width integer, height integer, bytes bytea)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    IF content_type IS NULL OR content_type NOT IN ('image/jpeg', 'image/webp', 'image/png') THEN
        RAISE EXCEPTION 'content_type must be image/jpeg, image/webp or image/png'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %L', content_type);
    ELSIF width IS NULL OR height IS NULL OR width NOT BETWEEN 1 AND 1024 OR height NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'width and height must be between 1 and 1024' USING ERRCODE = 'invalid_parameter_value';
    ELSIF bytes IS NULL OR octet_length(bytes) NOT BETWEEN 1 AND 262144 THEN
        RAISE EXCEPTION 'bytes must be 1 byte to 256 KiB' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    j := pgshot.lock_attempt(job_id, worker_id, attempt);
    INSERT INTO pgshot.thumbnails AS t (job_id, attempt, content_type, width, height, bytes)
    VALUES (j.id, j.attempt, content_type, width, height, bytes)
    ON CONFLICT ON CONSTRAINT thumbnails_pkey DO UPDATE
    SET attempt = EXCLUDED.attempt, content_type = EXCLUDED.content_type, width = EXCLUDED.width,
        height = EXCLUDED.height, bytes = EXCLUDED.bytes, created_at = now();
END
$$;
COMMENT ON FUNCTION screenshot_thumbnail_put(text, text, integer, text, integer, integer, bytea) IS
    'for workers: store the thumbnail of the attempt they hold (not an output)';

-- A completed job's thumbnail, when it has one and its result has not expired.
CREATE FUNCTION screenshot_thumbnail(id text) RETURNS TABLE (content_type text, bytes bytea)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE jobs.id = screenshot_thumbnail.id;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT t.content_type, t.bytes FROM pgshot.thumbnails t
    WHERE t.job_id = j.id AND t.attempt = j.attempt AND j.status = 'COMPLETED' AND j.purged_at IS NULL;
END
$$;
COMMENT ON FUNCTION screenshot_thumbnail(text) IS
    'a completed job''s thumbnail (no row when it has none or its result expired); P0002 for an unknown id';

-- The checks of the activity functions' arguments.
CREATE FUNCTION pgshot.check_window(since interval, bucket interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF since IS NULL OR since <= interval '0' OR since > interval '31 days' THEN
        RAISE EXCEPTION 'since must be more than 0 and at most 31 days' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('got %s', since);
    ELSIF bucket IS NULL OR bucket < interval '1 second' OR bucket > since THEN
        RAISE EXCEPTION 'bucket must be at least 1 second and at most since (%)', since
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', bucket);
    ELSIF extract(epoch FROM since) / extract(epoch FROM bucket) > 10000 THEN
        RAISE EXCEPTION 'since / bucket must be at most 10000 buckets' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('got %s buckets', ceil(extract(epoch FROM since) / extract(epoch FROM bucket)));
    END IF;
END
$$;

-- Jobs that finished in the last `since`, per `bucket` (oldest first, empty buckets left out):
-- counts per final status, and the render time (claim to completion of the last attempt) of the
-- completed ones. Reads jobs_finished over that range only. `owner` narrows it to one API key or
-- role; members of pgshot_app see their own jobs only.
CREATE FUNCTION screenshot_activity(since interval DEFAULT '1 hour', bucket interval DEFAULT '1 minute',
                                    owner text DEFAULT NULL)
RETURNS TABLE (bucket_start timestamptz, completed bigint, failed bigint, cancelled bigint,
               render_ms_p50 double precision, render_ms_p95 double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM pgshot.check_window(since, bucket);
    RETURN QUERY
    SELECT date_bin(bucket, j.completed_at, timestamptz '2000-01-01 00:00:00+00') AS b,
           count(*) FILTER (WHERE j.status = 'COMPLETED'),
           count(*) FILTER (WHERE j.status = 'FAILED'),
           count(*) FILTER (WHERE j.status = 'CANCELLED'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
               FILTER (WHERE j.status = 'COMPLETED'),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
               FILTER (WHERE j.status = 'COMPLETED')
    FROM pgshot.jobs j
    WHERE j.completed_at IS NOT NULL AND j.completed_at > now() - since
      AND (screenshot_activity.owner IS NULL OR coalesce(j.owner, j.enqueued_by, '') = screenshot_activity.owner)
      AND pgshot.visible(j)
    GROUP BY b
    ORDER BY b;
END
$$;
COMMENT ON FUNCTION screenshot_activity(interval, interval, text) IS
    'jobs finished per bucket over the last `since`: counts by status, render time p50/p95 (ms)';

-- The error codes of the jobs that failed in the last `since`, most frequent first.
CREATE FUNCTION screenshot_error_counts(since interval DEFAULT '1 hour', owner text DEFAULT NULL)
RETURNS TABLE (error_code text, jobs bigint, last_at timestamptz, last_message text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM pgshot.check_window(since, since);
    RETURN QUERY
    SELECT j.error_code, count(*), max(j.completed_at),
           (array_agg(j.error_message ORDER BY j.completed_at DESC))[1]
    FROM pgshot.jobs j
    WHERE j.completed_at IS NOT NULL AND j.completed_at > now() - since AND j.status = 'FAILED'
      AND (screenshot_error_counts.owner IS NULL OR coalesce(j.owner, j.enqueued_by, '') = screenshot_error_counts.owner)
      AND pgshot.visible(j)
    GROUP BY j.error_code
    ORDER BY count(*) DESC, j.error_code;
END
$$;
COMMENT ON FUNCTION screenshot_error_counts(interval, text) IS
    'error codes of the jobs that failed over the last `since`, most frequent first';

-- For workers (maintenance): adds to pgshot.hourly every hour that ended (a minute ago, so that
-- no completion of it is still committing) since the last one there, at most 31 days back.
-- Returns how many rows it wrote.
CREATE FUNCTION screenshot_rollup() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    from_hour timestamptz;
    to_hour timestamptz := date_trunc('hour', now() - interval '1 minute');
    written integer;
BEGIN
    SELECT max(hour) + interval '1 hour' INTO from_hour FROM pgshot.hourly;
    from_hour := greatest(coalesce(from_hour, '-infinity'), to_hour - interval '31 days');
    IF from_hour >= to_hour THEN
        RETURN 0;
    END IF;
    INSERT INTO pgshot.hourly (hour, owner, completed, failed, cancelled, render_ms_p50, render_ms_p95, error_codes)
    SELECT h.hour, h.owner, h.completed, h.failed, h.cancelled, h.p50, h.p95,
           coalesce((SELECT jsonb_object_agg(c.code, c.n)
                     FROM (SELECT j.error_code AS code, count(*) AS n FROM pgshot.jobs j
                           WHERE j.completed_at >= h.hour AND j.completed_at < h.hour + interval '1 hour'
                             AND j.status = 'FAILED' AND coalesce(j.owner, j.enqueued_by, '') = h.owner
                           GROUP BY j.error_code) c), '{}')
    FROM (
        SELECT date_trunc('hour', j.completed_at, 'UTC') AS hour, coalesce(j.owner, j.enqueued_by, '') AS owner,
               count(*) FILTER (WHERE j.status = 'COMPLETED') AS completed,
               count(*) FILTER (WHERE j.status = 'FAILED') AS failed,
               count(*) FILTER (WHERE j.status = 'CANCELLED') AS cancelled,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
                   FILTER (WHERE j.status = 'COMPLETED') AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
                   FILTER (WHERE j.status = 'COMPLETED') AS p95
        FROM pgshot.jobs j
        WHERE j.completed_at >= from_hour AND j.completed_at < to_hour
        GROUP BY 1, 2
    ) h
    ON CONFLICT (hour, owner) DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;
COMMENT ON FUNCTION screenshot_rollup() IS
    'for workers: add the hours that ended to pgshot.hourly; returns the rows written';

-- For pgshot-api's dashboard: a FAILED or CANCELLED job again, as a new job with the same
-- request (URL, options, priority, attempts, webhook) and owner; the owner's limits apply.
CREATE FUNCTION pgshot.job_retry(p_job_id text, p_new_id text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE id = p_job_id;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', p_job_id USING ERRCODE = 'no_data_found';
    ELSIF j.status NOT IN ('FAILED', 'CANCELLED') THEN
        RAISE EXCEPTION 'job "%" is %', p_job_id, j.status
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'only FAILED and CANCELLED jobs are retried';
    END IF;
    RETURN (pgshot.insert_jobs(j.owner, NULL, ARRAY[p_new_id], ARRAY[j.url], ARRAY[j.options], ARRAY[j.priority],
                               ARRAY[NULL::timestamptz], ARRAY[j.max_attempts], ARRAY[NULL::text],
                               ARRAY[j.webhook_url], ARRAY[j.webhook_secret]))[1];
END
$$;
COMMENT ON FUNCTION pgshot.job_retry(text, text) IS
    'a FAILED or CANCELLED job again as the new job p_new_id, same request and owner; 55000 otherwise';

-- Every function of the extension runs as its owner, with a fixed search_path, so that no object
-- a caller creates in a schema of their search_path (a table or operator named like one of ours)
-- is used in its place; pg_temp last, so that a temporary object cannot shadow one either.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::regprocedure
        FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.refclassid = 'pg_catalog.pg_extension'::regclass
          AND d.deptype = 'e' AND e.extname = 'pgshot'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgshot_admin', f);
    END LOOP;
END
$$;


-- The loop above revoked it from PUBLIC: anyone may ask who they are.
GRANT EXECUTE ON FUNCTION pgshot.caller() TO PUBLIC;
GRANT SELECT ON pgshot.workers, pgshot.thumbnails, pgshot.hourly TO pgshot_admin;
-- The dashboard's reads (pgshot-api, dashboard.rs); thumbnails and activity for SQL users too.
GRANT EXECUTE ON FUNCTION
    screenshot_worker_beat(text, text, integer, integer, integer, text, integer), screenshot_worker_stop(text),
    screenshot_thumbnail_put(text, text, integer, text, integer, integer, bytea), screenshot_rollup()
    TO pgshot_worker;
GRANT EXECUTE ON FUNCTION
    screenshot_thumbnail(text), screenshot_activity(interval, interval, text), screenshot_error_counts(interval, text)
    TO pgshot_app, pgshot_api;
GRANT EXECUTE ON FUNCTION screenshot_workers(), pgshot.job_retry(text, text) TO pgshot_api;
GRANT SELECT ON pgshot.thumbnails, pgshot.webhook_deliveries, pgshot.webhook_attempts, pgshot.hourly, pgshot.workers
    TO pgshot_api;
