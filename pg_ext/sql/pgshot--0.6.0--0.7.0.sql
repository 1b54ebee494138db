-- pgshot 0.6.0 -> 0.7.0, for the queue's throughput; nothing a caller sees changes.
-- * pgshot.jobs.told: the job's end is told to someone (watched, a webhook_url or a bulk_id; rule
--   jobs_told_iff_listened). jobs_ended's WHEN clause reads it (and pgshot.notify_all_done)
--   instead of calling pgshot.job_end_is_told with the whole row: Postgres reads the clause back
--   from its stored text at every complete.
-- * pgshot.outputs.job_id is no longer a foreign key: its check queried pgshot.jobs at every
--   complete. The completes are the only writers (no role is granted INSERT); deleting or
--   truncating jobs deletes their outputs (triggers jobs_deleted and jobs_truncated).
-- * outputs_position_unique is dropped: the completes number a job's outputs WITH ORDINALITY.
-- * pgshot.check_claim and pgshot.check_lease, which read only their arguments, run without
--   SECURITY DEFINER and their own settings, as the rule functions do (every claim calls both),
--   and return true; the claims call them in an expression, and claim_shares returns one owner's
--   share without a query.
-- * Both completes check their arguments with one call to Rust (pgshot.check_outputs,
--   pgshot.check_stored_outputs) instead of a PL/pgSQL loop, whose expressions were compiled
--   again in every transaction. The errors are the same.
-- The library keeps 0.6.0's job_end_is_told (by its C name) for a server that runs it before
-- ALTER EXTENSION pgshot UPDATE.

ALTER TABLE pgshot.jobs ADD COLUMN told boolean NOT NULL DEFAULT false;
-- Every row, finished or not, so that the rule holds for each (a failed job may be retried).
UPDATE pgshot.jobs SET told = true WHERE watched OR webhook_url IS NOT NULL OR bulk_id IS NOT NULL;

ALTER TABLE pgshot.outputs DROP CONSTRAINT outputs_job_id_fkey;
ALTER TABLE pgshot.outputs DROP CONSTRAINT outputs_position_unique;

CREATE OR REPLACE FUNCTION pgshot.insert_jobs(
    p_owner text, p_bulk_id text, p_ids text[], p_urls text[], p_options jsonb[], p_priorities integer[], p_run_ats timestamptz[],
    p_max_attempts integer[], p_keys text[], p_webhook_urls text[], p_webhook_secrets text[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    clash record;
    result text[];
    inserted bigint;
BEGIN
    INSERT INTO pgshot.jobs (owner, bulk_id, bulk_position, id, url, options, priority, run_at, max_attempts,
                             idempotency_key, webhook_url, webhook_secret, told)
    SELECT p_owner, p_bulk_id, CASE WHEN p_bulk_id IS NOT NULL THEN r.ord END, r.id, r.url, r.options, r.priority, coalesce(r.run_at, now()), r.max_attempts, r.key,
           r.webhook_url, r.webhook_secret, r.webhook_url IS NOT NULL OR p_bulk_id IS NOT NULL
    FROM unnest(p_ids, p_urls, p_options, p_priorities, p_run_ats, p_max_attempts, p_keys,
                p_webhook_urls, p_webhook_secrets)
         WITH ORDINALITY AS r(id, url, options, priority, run_at, max_attempts, key, webhook_url,
                              webhook_secret, ord)
    ORDER BY r.ord
    ON CONFLICT ((coalesce(owner, '')), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    -- After the insert, so that a request answered from its idempotency key takes nothing.
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF p_owner IS NOT NULL AND inserted > 0 THEN
        PERFORM pgshot.take_quota(p_owner, inserted);
    END IF;

    IF cardinality(array_remove(p_keys, NULL)) = 0 THEN
        RETURN p_ids;
    END IF;

    SELECT r.key, j.id AS existing INTO clash
    FROM unnest(p_ids, p_urls, p_options, p_priorities, p_max_attempts, p_keys, p_webhook_urls,
                p_webhook_secrets)
         AS r(id, url, options, priority, max_attempts, key, webhook_url, webhook_secret)
    JOIN pgshot.jobs j ON j.idempotency_key = r.key AND j.owner IS NOT DISTINCT FROM p_owner
    WHERE j.id <> r.id
      AND (j.url, j.options, j.priority, j.max_attempts, j.webhook_url, j.webhook_secret)
          IS DISTINCT FROM (r.url, r.options, r.priority, r.max_attempts, r.webhook_url, r.webhook_secret)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'idempotency key "%" was already used for a different request', clash.key
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('job %s was created with this key', clash.existing),
                  HINT = 'send exactly the same request again, or use a new key';
    END IF;

    SELECT array_agg(coalesce(j.id, r.id) ORDER BY r.ord) INTO result
    FROM unnest(p_ids, p_keys) WITH ORDINALITY AS r(id, key, ord)
    LEFT JOIN pgshot.jobs j
           ON r.key IS NOT NULL AND j.idempotency_key = r.key AND j.owner IS NOT DISTINCT FROM p_owner;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION screenshot_watch(id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    UPDATE pgshot.jobs SET watched = true, told = true WHERE jobs.id = screenshot_watch.id RETURNING * INTO j;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', screenshot_watch.id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN
        PERFORM pg_notify('pgshot_job_done', json_build_object('id', j.id, 'status', j.status)::text);
    END IF;
    RETURN pgshot.job_json(j);
END
$$;

CREATE OR REPLACE FUNCTION pgshot.job_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    b pgshot.bulks;
    written boolean := false;
BEGIN
    -- The WHEN clause looks at the new row only: a job ends when completed_at becomes set.
    IF OLD.completed_at IS NOT NULL OR NEW.completed_at IS NULL THEN
        RETURN NULL;
    END IF;
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

DROP TRIGGER jobs_ended ON pgshot.jobs;
DROP FUNCTION pgshot.job_end_is_told(pgshot.jobs);

-- One trigger for the end of a job, on `UPDATE OF completed_at`: a claim (or a heartbeat) does
-- not set that column, so Postgres skips the trigger for it without reading its WHEN clause. The
-- job ends when completed_at becomes set (jobs_rules: it is set exactly when the status is
-- terminal; job_ended checks that it was not set before). Postgres reads the WHEN clause back
-- from its stored text at every UPDATE that sets the column, so it is as short as can be: the
-- job's told column (someone waits for it, a webhook or a bulk's) or pgshot.notify_all_done,
-- read in the session that ends the job.
CREATE TRIGGER jobs_ended AFTER UPDATE OF completed_at ON pgshot.jobs
    FOR EACH ROW
    WHEN (NEW.told OR pgshot.notify_all_done())
    EXECUTE FUNCTION pgshot.job_ended();

-- Deleting jobs deletes their outputs (outputs.job_id is not a foreign key, schema.sql): once per
-- statement, from the deleted rows. Their stored objects become garbage through
-- outputs_discard_stored_on_delete.
CREATE FUNCTION pgshot.delete_outputs_of_deleted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pgshot.outputs o USING deleted WHERE o.job_id = deleted.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_deleted AFTER DELETE ON pgshot.jobs
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION pgshot.delete_outputs_of_deleted_jobs();

CREATE FUNCTION pgshot.truncate_outputs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE pgshot.outputs;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_truncated AFTER TRUNCATE ON pgshot.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgshot.truncate_outputs();

-- CREATE OR REPLACE keeps a function's owner and grants but resets SECURITY DEFINER and its
-- settings: every function written here gets them again (queue.sql's privileges loop).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'pgshot.insert_jobs(text, text, text[], text[], jsonb[], integer[], timestamptz[], integer[], text[], text[], text[])',
        'screenshot_watch(text)', 'pgshot.job_ended()', 'pgshot.delete_outputs_of_deleted_jobs()',
        'pgshot.truncate_outputs()']::regprocedure[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgshot.delete_outputs_of_deleted_jobs(), pgshot.truncate_outputs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.delete_outputs_of_deleted_jobs(), pgshot.truncate_outputs() TO pgshot_admin;

-- The checks of a claim's arguments return true (they returned nothing), so that a claim calls
-- them in an expression and not with PERFORM, which runs as a query.
DROP FUNCTION pgshot.check_claim(text, text, integer, interval);
DROP FUNCTION pgshot.check_lease(interval);
-- True, or 22023. The checks return true rather than nothing so that a claim can call them in an
-- expression (a variable's initial value) and not with PERFORM, which runs as a query.
CREATE FUNCTION pgshot.check_lease(lease interval) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF lease IS NULL OR lease < interval '1 second' OR lease > interval '1 hour' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 hour'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', lease);
    END IF;
    RETURN true;
END
$$;

-- The arguments every claim takes: a worker name, how many to claim (named `max_name` in errors)
-- and a lease. True, or 22023.
CREATE FUNCTION pgshot.check_claim(worker_id text, max_name text, max_value integer, lease interval)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF coalesce(trim(worker_id), '') = '' THEN
        RAISE EXCEPTION 'worker_id must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_value IS NULL OR max_value NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION '% must be between 1 and 1000', max_name
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', max_value);
    END IF;
    RETURN pgshot.check_lease(lease);
END
$$;

CREATE OR REPLACE FUNCTION screenshot_claim(worker_id text, max_jobs integer DEFAULT 1, lease interval DEFAULT '30 seconds')
RETURNS TABLE (id text, url text, options jsonb, attempt integer, max_attempts integer,
               lease_expires_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    checked boolean := pgshot.check_claim(screenshot_claim.worker_id, 'max_jobs', max_jobs, lease);
    share record;
    wanted integer;
    got integer;
    short integer := 0;
BEGIN
    FOR share IN SELECT s.tenant, s.jobs FROM pgshot.claim_shares(max_jobs) s LOOP
        wanted := share.jobs + short;
        CONTINUE WHEN wanted = 0;
        RETURN QUERY
        WITH picked AS (
            SELECT j.id
            FROM pgshot.jobs j
            WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') = share.tenant
              AND j.run_at <= now()
            ORDER BY j.priority, j.run_at, j.id
            LIMIT wanted
            FOR UPDATE SKIP LOCKED
        )
        UPDATE pgshot.jobs j
        SET status = 'PROCESSING',
            attempt = j.attempt + 1,
            worker_id = screenshot_claim.worker_id,
            lease_expires_at = now() + screenshot_claim.lease,
            started_at = now()
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.id, j.url, j.options, j.attempt, j.max_attempts, j.lease_expires_at, j.created_at;
        GET DIAGNOSTICS got = ROW_COUNT;
        short := wanted - got;
    END LOOP;
END
$$;

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
        -- Not RETURN QUERY, which would run a query for it.
        tenant := tenants[1];
        jobs := n;
        RETURN NEXT;
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

CREATE OR REPLACE FUNCTION screenshot_webhook_claim(worker_id text, max_deliveries integer DEFAULT 10,
                                         lease interval DEFAULT '60 seconds')
RETURNS TABLE (id text, url text, secret text, body text, attempt integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    checked boolean := pgshot.check_claim(screenshot_webhook_claim.worker_id, 'max_deliveries', max_deliveries, lease);
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT d.id
        FROM pgshot.webhook_deliveries d
        WHERE (d.status = 'PENDING' AND d.next_attempt_at <= now())
           OR (d.status = 'DELIVERING' AND d.lease_expires_at < now())
        ORDER BY d.next_attempt_at
        LIMIT screenshot_webhook_claim.max_deliveries
        FOR UPDATE SKIP LOCKED
    )
    UPDATE pgshot.webhook_deliveries d
    SET status = 'DELIVERING',
        attempt = d.attempt + 1,
        worker_id = screenshot_webhook_claim.worker_id,
        lease_expires_at = now() + screenshot_webhook_claim.lease
    FROM picked
    WHERE d.id = picked.id
    RETURNING d.id, d.url, d.secret, d.body, d.attempt;
END
$$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'screenshot_claim(text, integer, interval)', 'pgshot.claim_shares(integer)',
        'screenshot_webhook_claim(text, integer, interval)']::regprocedure[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
    END LOOP;
END
$$;
ALTER FUNCTION screenshot_claim(text, integer, interval) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.claim_shares(integer) SET plan_cache_mode = force_generic_plan;
REVOKE ALL ON FUNCTION pgshot.check_claim(text, text, integer, interval), pgshot.check_lease(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.check_claim(text, text, integer, interval), pgshot.check_lease(interval) TO pgshot_admin;
ALTER FUNCTION pgshot.check_claim(text, text, integer, interval) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.check_lease(interval) SECURITY INVOKER RESET ALL;

-- The checks of a complete's arguments, one call (pg_ext/src/complete_args.rs): 22023 unless the
-- outputs are a non-empty list of complete outputs with distinct ids and the metadata
-- (jsonb_typeof) is an object or NULL.
CREATE FUNCTION pgshot.check_outputs(outputs pgshot.output[], metadata_type text) RETURNS boolean
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_outputs_wrapper';

-- As pgshot.check_outputs; returns the outputs' storage keys.
CREATE FUNCTION pgshot.check_stored_outputs(outputs pgshot.stored_output[], metadata_type text) RETURNS text[]
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_stored_outputs_wrapper';

CREATE OR REPLACE FUNCTION screenshot_complete(job_id text, worker_id text, attempt integer, metadata jsonb,
                                    outputs pgshot.output[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    -- One expression (not a PERFORM, which runs as a query): PL/pgSQL compiles each of a
    -- function's expressions again in every transaction, and a complete is usually one of its own.
    checked boolean := pgshot.check_outputs(outputs, jsonb_typeof(metadata));
BEGIN

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
    keys text[] := pgshot.check_stored_outputs(outputs, jsonb_typeof(metadata));
BEGIN

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

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'screenshot_complete(text, text, integer, jsonb, pgshot.output[])',
        'screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[])']::regprocedure[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan', f);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgshot.check_outputs(pgshot.output[], text),
                       pgshot.check_stored_outputs(pgshot.stored_output[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgshot.check_outputs(pgshot.output[], text),
                          pgshot.check_stored_outputs(pgshot.stored_output[], text) TO pgshot_admin;
ALTER FUNCTION pgshot.check_outputs(pgshot.output[], text) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.check_stored_outputs(pgshot.stored_output[], text) SECURITY INVOKER RESET ALL;
