-- pgshot 0.4.0 -> 0.5.0: the rules of pgshot.jobs as one CHECK constraint, jobs_rules, which calls
-- pgshot.job_row_check (pg_ext/src/job_rules.rs; the rules are job/src/row_rules.rs), instead of
-- 21 constraints of their own, and an output's 6 as outputs_rules (pgshot.output_row_check);
-- shorter WHEN clauses for the two triggers that fire when a job ends; the functions that run no
-- SQL without SECURITY DEFINER and search_path; screenshot_complete in one statement; and the
-- claim's list of owners read from the live end of jobs_claim_order; and one index for the jobs in
-- flight instead of two. Postgres 15 reads every CHECK expression and
-- WHEN clause back from its stored text at every write: this was most of what a claim and a
-- complete cost. The rules and their names are unchanged (a row breaking one is refused with
-- 23514 and its name).

CREATE  FUNCTION pgshot."job_row_check"(
	"id" TEXT, /* Option < & str > */
	"bulk_id" TEXT, /* Option < & str > */
	"bulk_position" INT, /* Option < i32 > */
	"status" TEXT, /* Option < & str > */
	"url" TEXT, /* Option < & str > */
	"priority" INT, /* Option < i32 > */
	"attempt" INT, /* Option < i32 > */
	"max_attempts" INT, /* Option < i32 > */
	"worker_id" TEXT, /* Option < & str > */
	"lease_expires_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"cancel_requested" bool, /* Option < bool > */
	"webhook_url" TEXT, /* Option < & str > */
	"webhook_secret" TEXT, /* Option < & str > */
	"started_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"completed_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"purged_at" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"error_code" TEXT, /* Option < & str > */
	"options_type" TEXT, /* Option < & str > */
	"errors_type" TEXT /* Option < & str > */
) RETURNS bool /* bool */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_row_check_wrapper';

CREATE  FUNCTION pgshot."output_row_check"(
	"output_id" TEXT, /* Option < & str > */
	"output_type" TEXT, /* Option < & str > */
	"size" bigint, /* Option < i64 > */
	"bytes_length" INT, /* Option < i32 > */
	"storage_key" TEXT, /* Option < & str > */
	"sha256_length" INT, /* Option < i32 > */
	"metadata_type" TEXT /* Option < & str > */
) RETURNS bool /* bool */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'output_row_check_wrapper';

-- Like every function of the extension (queue.sql): not for PUBLIC.
REVOKE ALL ON FUNCTION pgshot.job_row_check(text, text, integer, text, text, integer, integer, integer, text,
    timestamptz, boolean, text, text, timestamptz, timestamptz, timestamptz, timestamptz, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.job_row_check(text, text, integer, text, text, integer, integer, integer, text,
    timestamptz, boolean, text, text, timestamptz, timestamptz, timestamptz, timestamptz, text, text, text) TO pgshot_admin;
REVOKE ALL ON FUNCTION pgshot.output_row_check(text, text, bigint, integer, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.output_row_check(text, text, bigint, integer, text, integer, text) TO pgshot_admin;

-- The functions that run no SQL need neither the owner's rights nor a search_path (queue.sql).
ALTER FUNCTION pgshot.result_retention() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.job_retention() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.notify_all_done() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.retry_delay(integer) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.webhook_retry_delay(integer) SECURITY INVOKER RESET ALL;

-- Every existing row is checked against the rules once, by ADD CONSTRAINT.
ALTER TABLE pgshot.jobs
    DROP CONSTRAINT jobs_id_shape,
    DROP CONSTRAINT jobs_bulk_position_iff_bulk,
    DROP CONSTRAINT jobs_status_known,
    DROP CONSTRAINT jobs_terminal_iff_completed_at,
    DROP CONSTRAINT jobs_processing_iff_leased,
    DROP CONSTRAINT jobs_processing_has_worker,
    DROP CONSTRAINT jobs_attempt_within_max,
    DROP CONSTRAINT jobs_max_attempts_range,
    DROP CONSTRAINT jobs_priority_range,
    DROP CONSTRAINT jobs_started_iff_attempted,
    DROP CONSTRAINT jobs_failed_iff_error,
    DROP CONSTRAINT jobs_error_code_shape,
    DROP CONSTRAINT jobs_expires_only_completed,
    DROP CONSTRAINT jobs_completed_expires,
    DROP CONSTRAINT jobs_purged_only_completed,
    DROP CONSTRAINT jobs_cancel_requested_only_processing,
    DROP CONSTRAINT jobs_secret_needs_webhook,
    DROP CONSTRAINT jobs_url_http,
    DROP CONSTRAINT jobs_webhook_url_http,
    DROP CONSTRAINT jobs_options_object,
    DROP CONSTRAINT jobs_errors_array,
    ADD CONSTRAINT jobs_rules CHECK (pgshot.job_row_check(
        id, bulk_id, bulk_position, status, url, priority, attempt, max_attempts, worker_id, lease_expires_at,
        cancel_requested, webhook_url, webhook_secret, started_at, completed_at, expires_at, purged_at, error_code,
        jsonb_typeof(options), jsonb_typeof(errors)));

ALTER TABLE pgshot.outputs
    DROP CONSTRAINT outputs_type_known,
    DROP CONSTRAINT outputs_id_shape,
    DROP CONSTRAINT outputs_size_matches_bytes,
    DROP CONSTRAINT outputs_metadata_object,
    DROP CONSTRAINT outputs_bytes_or_stored,
    DROP CONSTRAINT outputs_sha256_shape,
    ADD CONSTRAINT outputs_rules CHECK (pgshot.output_row_check(
        output_id, output_type, size, octet_length(bytes), storage_key, octet_length(sha256), jsonb_typeof(metadata)));

DROP TRIGGER jobs_notify_done ON pgshot.jobs;
CREATE TRIGGER jobs_notify_done AFTER UPDATE OF status ON pgshot.jobs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL AND (NEW.watched OR pgshot.notify_all_done()))
    EXECUTE FUNCTION pgshot.notify_done();

DROP TRIGGER jobs_enqueue_webhooks ON pgshot.jobs;
CREATE TRIGGER jobs_enqueue_webhooks AFTER UPDATE OF status ON pgshot.jobs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL
          AND (NEW.webhook_url IS NOT NULL OR NEW.bulk_id IS NOT NULL))
    EXECUTE FUNCTION pgshot.enqueue_webhooks();

-- A complete in one statement in the usual case (the job held and not cancelled).
CREATE OR REPLACE FUNCTION screenshot_complete(job_id text, worker_id text, attempt integer, metadata jsonb,
                                    outputs pgshot.output[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    item pgshot.output;
    seen text[] := ARRAY[]::text[];
BEGIN
    IF coalesce(cardinality(outputs), 0) = 0 THEN
        RAISE EXCEPTION 'outputs must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF metadata IS NOT NULL AND jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One output is the usual case: checked element by element in PL/pgSQL (no query to plan).
    FOR i IN 1 .. cardinality(outputs) LOOP
        item := outputs[i];
        IF item.output_id IS NULL OR item.output_type IS NULL OR item.content_type IS NULL OR item.bytes IS NULL
           OR item.output_id = ANY (seen) THEN
            RAISE EXCEPTION 'outputs[%] is incomplete or repeats output_id "%"', i, item.output_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'each output needs a unique output_id, an output_type, a content_type and bytes';
        END IF;
        seen := seen || item.output_id;
    END LOOP;

    -- The usual case in one statement: the job held and not cancelled becomes COMPLETED and its
    -- outputs are stored (finish_held's UPDATE, with the INSERT reading what it returned).
    WITH done AS (
        UPDATE pgshot.jobs j
        SET status = 'COMPLETED',
            completed_at = now(),
            expires_at = now() + pgshot.result_retention(),
            lease_expires_at = NULL,
            metadata = screenshot_complete.metadata
        WHERE j.id = screenshot_complete.job_id AND j.status = 'PROCESSING'
          AND j.worker_id = screenshot_complete.worker_id AND j.attempt = screenshot_complete.attempt
          AND NOT j.cancel_requested
        RETURNING j.id
    )
    INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, size, bytes, metadata)
    SELECT done.id, o.output_id, o.ord, o.output_type, o.content_type, octet_length(o.bytes), o.bytes,
           coalesce(o.metadata, '{}')
    FROM done, unnest(outputs) WITH ORDINALITY AS o(output_id, output_type, content_type, bytes, metadata, ord);
    IF FOUND THEN
        RETURN;
    END IF;
    -- Not held, or cancelled: finish_held raises 55000 or P0002, or settles the cancel (false).
    IF NOT pgshot.finish_held(job_id, worker_id, attempt, metadata) THEN
        RETURN;
    END IF;
    INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, size, bytes, metadata)
    SELECT screenshot_complete.job_id, o.output_id, o.ord, o.output_type, o.content_type, octet_length(o.bytes),
           o.bytes, coalesce(o.metadata, '{}')
    FROM unnest(outputs) WITH ORDINALITY AS o(output_id, output_type, content_type, bytes, metadata, ord);
END
$$;
DO $$
BEGIN
    -- CREATE OR REPLACE reset what queue.sql gives every function, and the hot path's plan mode.
    EXECUTE format('ALTER FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) '
                   'SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', '@extschema@');
END
$$;
ALTER FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) SET plan_cache_mode = force_generic_plan;

-- The list of owners read from the end of jobs_claim_order.
CREATE OR REPLACE FUNCTION pgshot.claim_shares(n integer) RETURNS TABLE (tenant text, jobs integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    tenants text[];
BEGIN
    -- The owners with queued jobs, by a skip scan of jobs_claim_order: one index descent each,
    -- from the end. Each owner's last entry is its newest job, live; its first ones are the jobs
    -- just claimed, whose entries stay in the index until vacuum, and which the claim itself
    -- reads past anyway (read from the start, the list of owners cost a second such walk).
    WITH RECURSIVE t(tenant) AS (
        (SELECT coalesce(j.owner, j.enqueued_by, '') FROM pgshot.jobs j
         WHERE j.status = 'QUEUED'
         ORDER BY coalesce(j.owner, j.enqueued_by, '') DESC LIMIT 1)
        UNION ALL
        SELECT (SELECT coalesce(j.owner, j.enqueued_by, '') FROM pgshot.jobs j
                WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') < t.tenant
                ORDER BY coalesce(j.owner, j.enqueued_by, '') DESC LIMIT 1)
        FROM t WHERE t.tenant IS NOT NULL
    )
    SELECT array_agg(t.tenant) INTO tenants FROM t WHERE t.tenant IS NOT NULL;
    IF cardinality(tenants) = 1 THEN
        RETURN QUERY SELECT tenants[1], n;
        RETURN;
    END IF;
    RETURN QUERY
    WITH load AS (
        SELECT x.tenant, due.jobs, due.head,
               (SELECT count(*) FROM pgshot.jobs p
                WHERE p.status = 'PROCESSING' AND coalesce(p.owner, p.enqueued_by, '') = x.tenant) AS running
        FROM unnest(tenants) AS x(tenant)
        CROSS JOIN LATERAL (
            SELECT count(*) AS jobs, min(q.run_at) AS head
            FROM (SELECT j.run_at FROM pgshot.jobs j
                  WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') = x.tenant
                    AND j.run_at <= now()
                  ORDER BY j.priority, j.run_at, j.id
                  LIMIT n) q
        ) due
        WHERE due.jobs > 0
    ), slots AS (
        SELECT l.tenant
        FROM load l CROSS JOIN LATERAL generate_series(1, l.jobs) AS s(k)
        ORDER BY l.running + s.k, l.head, l.tenant
        LIMIT n
    )
    -- Every owner with due jobs, those with slots first: the claim gives a share that came back
    -- short (its jobs locked by other claimers) to the owners after it.
    SELECT l.tenant, (SELECT count(*) FROM slots s WHERE s.tenant = l.tenant)::integer
    FROM load l
    ORDER BY 2 DESC, l.running, l.head, l.tenant;
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION pgshot.claim_shares(integer) '
                   'SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', '@extschema@');
END
$$;
ALTER FUNCTION pgshot.claim_shares(integer) SET plan_cache_mode = force_generic_plan;

-- One index for the jobs in flight instead of two: a claim writes an entry into every index.
DROP INDEX pgshot.jobs_in_flight;
DROP INDEX pgshot.jobs_lease_expiry;
CREATE INDEX jobs_processing ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), lease_expires_at)
    WHERE status = 'PROCESSING';
