-- pgshot 0.5.0 -> 0.6.0, for the queue's throughput; nothing a caller sees changes.
-- * jobs_rules and outputs_rules take the whole row, CHECK (pgshot.job_row_check(jobs)): Postgres
--   reads a CHECK expression back from its stored text at every write, and twenty (and seven)
--   column arguments were several times the text of one whole-row argument.
-- * One trigger for the end of a job (jobs_ended, AFTER UPDATE OF completed_at) instead of
--   jobs_notify_done and jobs_enqueue_webhooks: a claim skips it, and a complete reads one short
--   WHEN clause (pgshot.job_end_is_told with the row) instead of two long ones.
-- * Both completes are one statement; pgshot.complete_missed is the path for a lost lease or a
--   cancel (pgshot.finish_held is gone).
-- The library keeps 0.5.0's job_row_check and output_row_check (by their C names) for a server
-- that runs it before ALTER EXTENSION pgshot UPDATE.

ALTER TABLE pgshot.jobs DROP CONSTRAINT jobs_rules;
ALTER TABLE pgshot.outputs DROP CONSTRAINT outputs_rules;
DROP FUNCTION pgshot.job_row_check(text, text, integer, text, text, integer, integer, integer, text, timestamptz,
                                   boolean, text, text, timestamptz, timestamptz, timestamptz, timestamptz, text,
                                   text, text);
DROP FUNCTION pgshot.output_row_check(text, text, bigint, integer, text, integer, text);
-- (pg_ext/src/job_rules.rs)
CREATE  FUNCTION pgshot."job_row_check"(
	"row" pgshot.jobs /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_row_check_whole_wrapper';
CREATE  FUNCTION pgshot."output_row_check"(
	"row" pgshot.outputs /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'output_row_check_whole_wrapper';
CREATE  FUNCTION pgshot."job_end_is_told"(
	"row" pgshot.jobs /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
) RETURNS bool /* bool */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_end_is_told_wrapper';
REVOKE ALL ON FUNCTION pgshot.job_row_check(pgshot.jobs), pgshot.output_row_check(pgshot.outputs),
    pgshot.job_end_is_told(pgshot.jobs) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.job_row_check(pgshot.jobs), pgshot.output_row_check(pgshot.outputs),
    pgshot.job_end_is_told(pgshot.jobs) TO pgshot_admin;
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_rules CHECK (pgshot.job_row_check(jobs));
ALTER TABLE pgshot.outputs ADD CONSTRAINT outputs_rules CHECK (pgshot.output_row_check(outputs));

DROP TRIGGER jobs_notify_done ON pgshot.jobs;
DROP TRIGGER jobs_enqueue_webhooks ON pgshot.jobs;
DROP FUNCTION pgshot.notify_done();
DROP FUNCTION pgshot.enqueue_webhooks();

CREATE FUNCTION pgshot.job_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    b pgshot.bulks;
    written boolean := false;
BEGIN
    IF NEW.webhook_url IS NOT NULL AND NEW.status IN ('COMPLETED', 'FAILED') THEN
        INSERT INTO pgshot.webhook_deliveries (id, event, job_id, url, secret, body, next_attempt_at)
        VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''),
                CASE NEW.status WHEN 'COMPLETED' THEN 'JOB_COMPLETED' ELSE 'JOB_FAILED' END,
                NEW.id, NEW.webhook_url, NEW.webhook_secret, pgshot.webhook_body(NEW),
                now() + coalesce(pgshot.webhook_retry_delay(0), interval '0'));
        written := true;
    END IF;
    IF NEW.bulk_id IS NOT NULL THEN
        -- The lock serialises the last jobs of a bulk finishing at once: whichever commits last
        -- sees all of them finished, and writes the one BULK_COMPLETED delivery.
        SELECT * INTO b FROM pgshot.bulks WHERE id = NEW.bulk_id FOR UPDATE;
        IF b.webhook_url IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pgshot.jobs
            WHERE bulk_id = b.id AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')
        ) THEN
            INSERT INTO pgshot.webhook_deliveries (id, event, bulk_id, url, secret, body, next_attempt_at)
            SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), 'BULK_COMPLETED', b.id,
                   b.webhook_url, b.webhook_secret,
                   jsonb_build_object('event', 'BULK_COMPLETED',
                                      'timestamp', pgshot.timestamp_json(now()),
                                      'bulkId', b.id,
                                      'status', bulk.doc->>'status',
                                      'data', bulk.doc)::text,
                   now() + coalesce(pgshot.webhook_retry_delay(0), interval '0')
            FROM (SELECT pgshot.bulk_json(b, true) AS doc) bulk
            ON CONFLICT DO NOTHING;
            written := written OR FOUND;
        END IF;
    END IF;
    IF written THEN
        PERFORM pg_notify('pgshot_webhooks', 'pending');
    END IF;
    IF NEW.watched OR pgshot.notify_all_done() THEN
        PERFORM pg_notify('pgshot_job_done', json_build_object('id', NEW.id, 'status', NEW.status)::text);
    END IF;
    RETURN NULL;
END
$$;

-- One trigger for the end of a job, on `UPDATE OF completed_at`: a claim (or a heartbeat) does
-- not set that column, so Postgres skips the trigger for it without reading its WHEN clause, and
-- a complete reads one clause, not two. The job ends when completed_at becomes set (jobs_rules:
-- it is set exactly when the status is terminal) and someone is to be told
-- (pgshot.job_end_is_told, pg_ext/src/job_rules.rs); the clause is read back from its stored text
-- at every UPDATE that sets the column, hence one call with the whole row.
CREATE TRIGGER jobs_ended AFTER UPDATE OF completed_at ON pgshot.jobs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND pgshot.job_end_is_told(NEW))
    EXECUTE FUNCTION pgshot.job_ended();

CREATE FUNCTION pgshot.complete_missed(p_job_id text, p_worker_id text, p_attempt integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    j := pgshot.lock_attempt(p_job_id, p_worker_id, p_attempt);
    IF NOT j.cancel_requested THEN
        -- lock_attempt found the job held and not cancelled, which the UPDATE that missed rules out.
        RAISE EXCEPTION 'job "%" is held at attempt % but could not be completed', j.id, j.attempt
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE pgshot.jobs
    SET status = 'CANCELLED', completed_at = now(), lease_expires_at = NULL
    WHERE id = j.id;
END
$$;

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

    -- The job held at this attempt and not cancelled becomes COMPLETED, and its outputs are
    -- stored, in one statement (the INSERT reads what the UPDATE returned).
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
    IF NOT FOUND THEN
        PERFORM pgshot.complete_missed(job_id, worker_id, attempt);
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION screenshot_complete_stored(job_id text, worker_id text, attempt integer, metadata jsonb,
                                           outputs pgshot.stored_output[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    item pgshot.stored_output;
    seen text[] := ARRAY[]::text[];
    keys text[] := ARRAY[]::text[];
BEGIN
    IF coalesce(cardinality(outputs), 0) = 0 THEN
        RAISE EXCEPTION 'outputs must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF metadata IS NOT NULL AND jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. cardinality(outputs) LOOP
        item := outputs[i];
        IF item.output_id IS NULL OR item.output_type IS NULL OR item.content_type IS NULL
           OR item.storage_key IS NULL OR item.size IS NULL OR item.size < 0 OR item.sha256 IS NULL
           OR item.output_id = ANY (seen) THEN
            RAISE EXCEPTION 'outputs[%] is incomplete or repeats output_id "%"', i, item.output_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'each output needs a unique output_id, an output_type, a content_type, a storage_key, a size and a sha256';
        END IF;
        seen := seen || item.output_id;
        keys := keys || item.storage_key;
    END LOOP;

    -- As in screenshot_complete, with the key, size and SHA-256 in place of the bytes.
    WITH done AS (
        UPDATE pgshot.jobs j
        SET status = 'COMPLETED',
            completed_at = now(),
            expires_at = now() + pgshot.result_retention(),
            lease_expires_at = NULL,
            metadata = screenshot_complete_stored.metadata
        WHERE j.id = screenshot_complete_stored.job_id AND j.status = 'PROCESSING'
          AND j.worker_id = screenshot_complete_stored.worker_id AND j.attempt = screenshot_complete_stored.attempt
          AND NOT j.cancel_requested
        RETURNING j.id
    )
    INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, size, storage_key,
                                sha256, metadata)
    SELECT done.id, o.output_id, o.ord, o.output_type, o.content_type, o.size, o.storage_key, o.sha256,
           coalesce(o.metadata, '{}')
    FROM done, unnest(outputs) WITH ORDINALITY AS o(output_id, output_type, content_type, storage_key, size, sha256,
                                                    metadata, ord);
    IF FOUND THEN
        DELETE FROM pgshot.storage_garbage WHERE key = ANY (keys);
        RETURN;
    END IF;
    PERFORM pgshot.complete_missed(job_id, worker_id, attempt);
    -- Cancelled: the uploads are not kept, and are deleted now rather than in an hour.
    INSERT INTO pgshot.storage_garbage (key, job_id, due_at)
    SELECT k, screenshot_complete_stored.job_id, now() FROM unnest(keys) AS k
    ON CONFLICT (key) DO UPDATE SET due_at = now();
END
$$;
DROP FUNCTION pgshot.finish_held(text, text, integer, jsonb);

-- CREATE OR REPLACE keeps a function's owner and grants but resets SECURITY DEFINER and its
-- settings: every function written here gets them again (queue.sql's privileges loop), in the
-- order a fresh install gives them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'pgshot.job_ended()', 'pgshot.complete_missed(text, text, integer)',
        'screenshot_complete(text, text, integer, jsonb, pgshot.output[])',
        'screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[])']::regprocedure[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgshot.job_ended(), pgshot.complete_missed(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.job_ended(), pgshot.complete_missed(text, text, integer) TO pgshot_admin;
ALTER FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.complete_missed(text, text, integer) SET plan_cache_mode = force_generic_plan;
