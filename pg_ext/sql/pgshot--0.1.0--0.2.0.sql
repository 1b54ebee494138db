-- pgshot 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pgshot UPDATE, in one transaction: it applies
-- whole or not at all. tests/tests/upgrade.rs installs 0.1.0 (pg_ext/sql/released/), fills it with
-- jobs in every state, runs this, and compares the result with a fresh 0.2.0 install. The
-- functions below are copies of their 0.2.0 definitions in queue.sql.
\echo Use "ALTER EXTENSION pgshot UPDATE" to load this file. \quit

-- URLs a browser or the webhook client may be sent to: http(s) only, whoever writes the row.
-- Every row 0.1.0 wrote went through the same check at enqueue.
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_url_http CHECK (url ~ '^https?://');
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_webhook_url_http CHECK (webhook_url ~ '^https?://');
ALTER TABLE pgshot.bulks ADD CONSTRAINT bulks_webhook_url_http CHECK (webhook_url ~ '^https?://');
-- Who enqueued a job; NULL for the jobs of 0.1.0, which only roles outside pgshot_app then see.
ALTER TABLE pgshot.jobs ADD COLUMN enqueued_by text;

-- pgshot.job_retention and pgshot.caller() (pg_ext/src/settings.rs, pg_ext/src/caller.rs).
CREATE FUNCTION pgshot."job_retention"() RETURNS interval
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'job_retention_wrapper';
CREATE FUNCTION pgshot."caller"() RETURNS TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'caller_wrapper';

-- Deletes the result bytes of jobs whose expiresAt has passed (the jobs keep their status and
-- metadata), then, past pgshot.job_retention, finished jobs themselves (their outputs, webhook
-- deliveries and attempts go with them) and bulk requests left without jobs. At most max_jobs of
-- each per call. Returns how many jobs were purged or deleted.
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
        UPDATE pgshot.outputs o SET bytes = NULL FROM due WHERE o.job_id = due.id
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
COMMENT ON FUNCTION screenshot_purge(integer) IS
    'for workers: delete result bytes past expiresAt, and finished jobs past pgshot.job_retention; returns how many jobs';

-- Whether the calling role may see job j: members of pgshot_app see the jobs they enqueued, and
-- no other; every other role that may call the function (pgshot_api, pgshot_admin, the database
-- owner, superusers) sees every job. To the others, a job that is not theirs does not exist.
CREATE FUNCTION pgshot.visible(j pgshot.jobs) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT j.enqueued_by IS NOT DISTINCT FROM pgshot.caller()
        OR NOT pg_catalog.pg_has_role(pgshot.caller()::name, 'pgshot_app', 'MEMBER')
        OR pg_catalog.pg_has_role(pgshot.caller()::name, 'pgshot_admin', 'MEMBER')
$$;

-- VOLATILE, not STABLE: a STABLE function sees the snapshot of the statement that calls it, so
-- SELECT screenshot_job(screenshot_enqueue(...)) would not find the job it just created.
CREATE OR REPLACE FUNCTION screenshot_job(id text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE jobs.id = screenshot_job.id;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN pgshot.job_json(j);
END
$$;
COMMENT ON FUNCTION screenshot_job(text) IS
    'the job as GET /v1/screenshots/jobs/{id} returns it; raises P0002 for an unknown id';

-- Cancels a job: a QUEUED job becomes CANCELLED at once; a PROCESSING job is flagged and becomes
-- CANCELLED when its worker next heartbeats (or fails, or loses its lease). Returns the job JSON.
CREATE OR REPLACE FUNCTION screenshot_cancel(id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE jobs.id = screenshot_cancel.id FOR UPDATE;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status = 'QUEUED' THEN
        UPDATE pgshot.jobs SET status = 'CANCELLED', completed_at = now()
        WHERE jobs.id = j.id RETURNING * INTO j;
    ELSIF j.status = 'PROCESSING' THEN
        UPDATE pgshot.jobs SET cancel_requested = true WHERE jobs.id = j.id RETURNING * INTO j;
    ELSE
        RAISE EXCEPTION 'job "%" is already %', id, j.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'only QUEUED and PROCESSING jobs can be cancelled';
    END IF;
    RETURN pgshot.job_json(j);
END
$$;
COMMENT ON FUNCTION screenshot_cancel(text) IS
    'cancel a queued job, or ask the worker of a processing one to stop; 55000 if already finished';

-- A completed job's result: its first output, or the output named. P0002 for an unknown job or
-- output, 55000 while the job is not COMPLETED, PS410 once the result expired.
CREATE OR REPLACE FUNCTION screenshot_result(id text, output_id text DEFAULT NULL)
RETURNS TABLE (output text, output_type text, content_type text, bytes bytea)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE jobs.id = screenshot_result.id;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', screenshot_result.id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status IN ('QUEUED', 'PROCESSING') THEN
        RAISE EXCEPTION 'job "%" has no result yet', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('the job is %s', j.status),
                  HINT = 'wait until the job is COMPLETED';
    ELSIF j.status <> 'COMPLETED' THEN
        RAISE EXCEPTION 'job "%" has no result', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('the job is %s', j.status);
    END IF;
    IF j.expires_at <= now() OR j.purged_at IS NOT NULL THEN
        RAISE EXCEPTION 'result of job "%" has expired', j.id
            USING ERRCODE = 'PS410',
                  DETAIL = format('results are kept until expiresAt, %s', pgshot.timestamp_json(j.expires_at));
    END IF;
    RETURN QUERY
    SELECT o.output_id, o.output_type, o.content_type, o.bytes
    FROM pgshot.outputs o
    WHERE o.job_id = j.id
      AND (screenshot_result.output_id IS NULL OR o.output_id = screenshot_result.output_id)
    ORDER BY o.position
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job "%" has no output "%"', j.id, screenshot_result.output_id
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce((SELECT 'its outputs are ' || string_agg(o.output_id, ', ' ORDER BY o.position)
                                   FROM pgshot.outputs o WHERE o.job_id = j.id), 'it has no outputs');
    END IF;
END
$$;
COMMENT ON FUNCTION screenshot_result(text, text) IS
    'a completed job''s result bytes, first output or the one named; PS410 once expired';

ALTER TABLE pgshot.jobs ALTER COLUMN enqueued_by SET DEFAULT pgshot.caller();

-- Privileges (README "Running in production"). Four group roles, created once per cluster and
-- kept if the extension is dropped; grant them to login roles:
--   pgshot_app     enqueue, and read, cancel and fetch the results of its own jobs, from SQL
--   pgshot_worker  claim, heartbeat, complete, fail, release, rescue, purge, deliver webhooks
--   pgshot_api     what pgshot-api does: jobs on behalf of API keys, reading the tables it lists
--   pgshot_admin   all of the above and API keys (`pgshot-api keys`), every table
-- Every function runs as its owner (SECURITY DEFINER) with a fixed search_path, so that callers
-- need no privilege on the tables; EXECUTE is revoked from PUBLIC and granted to these roles.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgshot_app', 'pgshot_worker', 'pgshot_api', 'pgshot_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

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

-- Who am I: anyone may ask (it is also the default of jobs.enqueued_by).
GRANT EXECUTE ON FUNCTION pgshot.caller() TO PUBLIC;
GRANT USAGE ON SCHEMA pgshot TO pgshot_app, pgshot_worker, pgshot_api, pgshot_admin;
GRANT EXECUTE ON FUNCTION
    screenshot_enqueue(text, jsonb), screenshot_enqueue_bulk(jsonb),
    screenshot_job(text), screenshot_cancel(text), screenshot_result(text, text)
    TO pgshot_app, pgshot_api;
GRANT EXECUTE ON FUNCTION
    screenshot_claim(text, integer, interval), screenshot_heartbeat(text, text, integer, interval),
    screenshot_complete(text, text, integer, jsonb, pgshot.output[]),
    screenshot_fail(text, text, integer, text, text, boolean), screenshot_release(text, text, integer),
    screenshot_rescue(integer), screenshot_purge(integer),
    screenshot_webhook_claim(text, integer, interval),
    screenshot_webhook_record(text, text, integer, integer, text, integer)
    TO pgshot_worker;
GRANT EXECUTE ON FUNCTION
    pgshot.api_key_owner(text), pgshot.enqueue_owned(text, text, jsonb),
    pgshot.enqueue_bulk_owned(text, jsonb, integer, text, text),
    pgshot.job_json(pgshot.jobs), pgshot.bulk_json(pgshot.bulks, boolean), pgshot.bulk_cancel(text),
    pgshot.timestamp_json(timestamptz)
    TO pgshot_api;
GRANT SELECT ON pgshot.jobs, pgshot.bulks, pgshot.outputs TO pgshot_api;
GRANT SELECT ON pgshot.api_keys, pgshot.bulks, pgshot.jobs, pgshot.outputs, pgshot.webhook_deliveries,
    pgshot.webhook_attempts TO pgshot_admin;
GRANT pgshot_app, pgshot_worker, pgshot_api TO pgshot_admin;
-- The database owner who created the extension administers it and hands the roles out.
GRANT pgshot_admin TO @extowner@ WITH ADMIN OPTION;
