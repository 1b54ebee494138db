-- pgshot 0.2.0 -> 0.3.0. Run by ALTER EXTENSION pgshot UPDATE, in one transaction: it applies
-- whole or not at all. tests/tests/upgrade.rs installs every released version
-- (pg_ext/sql/released/), fills it with jobs in every state, updates, and compares the result
-- with a fresh install. The functions below are copies of their 0.3.0 definitions in queue.sql.
\echo Use "ALTER EXTENSION pgshot UPDATE" to load this file. \quit

-- Per-key limits (pgshot-api keys limit); NULL everywhere: existing keys have none.
ALTER TABLE pgshot.api_keys
    ADD COLUMN rate_limit integer,
    ADD COLUMN max_in_flight integer,
    ADD COLUMN rate_tokens double precision,
    ADD COLUMN rate_checked_at timestamptz,
    ADD CONSTRAINT api_keys_rate_limit_range CHECK (rate_limit BETWEEN 1 AND 1000000),
    ADD CONSTRAINT api_keys_max_in_flight_range CHECK (max_in_flight BETWEEN 1 AND 1000000);
-- Jobs someone waits for; NULL for every existing job (a sync capture waiting across the update
-- still re-reads its job now and then).
ALTER TABLE pgshot.jobs ADD COLUMN watched boolean;

-- Results in object storage: an output keeps its object's key and SHA-256 instead of its bytes.
ALTER TABLE pgshot.outputs
    ADD COLUMN storage_key text,
    ADD COLUMN sha256 bytea,
    ADD CONSTRAINT outputs_bytes_or_stored CHECK (bytes IS NULL OR storage_key IS NULL),
    ADD CONSTRAINT outputs_sha256_shape CHECK (octet_length(sha256) = 32);
CREATE TABLE pgshot.storage_garbage (
    key    text PRIMARY KEY,
    job_id text,
    due_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgshot.storage_garbage IS 'bucket objects to delete (PGSHOT_STORAGE=s3): orphaned uploads and purged results';
CREATE INDEX storage_garbage_due ON pgshot.storage_garbage (due_at);
SELECT pg_catalog.pg_extension_config_dump('pgshot.storage_garbage', '');

-- The claim order per owner, for fair shares.
DROP INDEX pgshot.jobs_claim_order;
CREATE INDEX jobs_claim_order ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), priority, run_at, id)
    WHERE status = 'QUEUED';
CREATE INDEX jobs_in_flight ON pgshot.jobs ((coalesce(owner, enqueued_by, ''))) WHERE status = 'PROCESSING';

-- pgshot.notify_all_done (pg_ext/src/settings.rs).
CREATE FUNCTION pgshot."notify_all_done"() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'notify_all_done_wrapper';

-- Only watched jobs are notified; the webhook trigger runs only for jobs that may have one.
DROP TRIGGER jobs_notify_done ON pgshot.jobs;
CREATE TRIGGER jobs_notify_done AFTER UPDATE OF status ON pgshot.jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND OLD.status IS DISTINCT FROM NEW.status
          AND (NEW.watched OR pgshot.notify_all_done()))
    EXECUTE FUNCTION pgshot.notify_done();
DROP TRIGGER jobs_enqueue_webhooks ON pgshot.jobs;
CREATE TRIGGER jobs_enqueue_webhooks AFTER UPDATE OF status ON pgshot.jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND OLD.status IS DISTINCT FROM NEW.status
          AND (NEW.webhook_url IS NOT NULL OR NEW.bulk_id IS NOT NULL))
    EXECUTE FUNCTION pgshot.enqueue_webhooks();

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
                             idempotency_key, webhook_url, webhook_secret)
    SELECT p_owner, p_bulk_id, CASE WHEN p_bulk_id IS NOT NULL THEN r.ord END, r.id, r.url, r.options, r.priority, coalesce(r.run_at, now()), r.max_attempts, r.key,
           r.webhook_url, r.webhook_secret
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

-- How the next n claims are shared between owners (an API key; for SQL enqueues the role): with
-- one owner queued, all n are its own. With several, each slot goes to the owner that would then
-- have the fewest jobs running, so a key with a backlog (or with priority -100) cannot hold back
-- another key's first job for more than about one job per worker slot. Ties go to the owner whose
-- next job has waited longest. Priority orders jobs within an owner only.
CREATE FUNCTION pgshot.claim_shares(n integer) RETURNS TABLE (tenant text, jobs integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    tenants text[];
BEGIN
    -- The owners with queued jobs, by a skip scan of jobs_claim_order: one index descent each.
    WITH RECURSIVE t(tenant) AS (
        (SELECT coalesce(j.owner, j.enqueued_by, '') FROM pgshot.jobs j
         WHERE j.status = 'QUEUED'
         ORDER BY coalesce(j.owner, j.enqueued_by, '') LIMIT 1)
        UNION ALL
        SELECT (SELECT coalesce(j.owner, j.enqueued_by, '') FROM pgshot.jobs j
                WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') > t.tenant
                ORDER BY coalesce(j.owner, j.enqueued_by, '') LIMIT 1)
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

-- Claims up to max_jobs runnable jobs for worker_id, shared between owners by claim_shares and
-- highest priority (lowest number) first within an owner, giving each a lease. Jobs locked by
-- another claimer are skipped, never waited for.
CREATE OR REPLACE FUNCTION screenshot_claim(worker_id text, max_jobs integer DEFAULT 1, lease interval DEFAULT '30 seconds')
RETURNS TABLE (id text, url text, options jsonb, attempt integer, max_attempts integer,
               lease_expires_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    share record;
    wanted integer;
    got integer;
    short integer := 0;
BEGIN
    PERFORM pgshot.check_claim(screenshot_claim.worker_id, 'max_jobs', max_jobs, lease);
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
COMMENT ON FUNCTION screenshot_claim(text, integer, interval) IS
    'for workers: claim up to max_jobs runnable jobs with a lease; the attempt is the fencing token';

-- The transition both completes share: COMPLETED with its metadata and expiry, in one statement
-- when the worker holds the job at this attempt and no cancel came (under READ COMMITTED the
-- conditions are checked again on the row's latest version after any concurrent writer, so a miss
-- means the lease is lost or a cancel was requested). Otherwise raises 55000 (lease lost) or
-- P0002, or settles a cancel that arrived while the page rendered, which wins as it does at a
-- heartbeat or a fail, and returns false: the outputs are not kept.
CREATE FUNCTION pgshot.finish_held(p_job_id text, p_worker_id text, p_attempt integer, p_metadata jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    UPDATE pgshot.jobs
    SET status = 'COMPLETED',
        completed_at = now(),
        expires_at = now() + pgshot.result_retention(),
        lease_expires_at = NULL,
        metadata = p_metadata
    WHERE id = p_job_id AND status = 'PROCESSING' AND worker_id = p_worker_id AND attempt = p_attempt
      AND NOT cancel_requested;
    IF FOUND THEN
        RETURN true;
    END IF;
    j := pgshot.lock_attempt(p_job_id, p_worker_id, p_attempt);
    IF NOT j.cancel_requested THEN
        -- lock_attempt found the job held and not cancelled, which the UPDATE that missed rules out.
        RAISE EXCEPTION 'job "%" is held at attempt % but could not be completed', j.id, j.attempt
            USING ERRCODE = 'internal_error';
    END IF;
    UPDATE pgshot.jobs
    SET status = 'CANCELLED', completed_at = now(), lease_expires_at = NULL
    WHERE id = j.id;
    RETURN false;
END
$$;

-- Completes a job the worker holds with its outputs (at least one) and metadata, in one
-- transaction: the job is COMPLETED exactly once, whatever happened to earlier attempts, or
-- CANCELLED when a cancel was requested while it rendered.
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

    IF NOT pgshot.finish_held(job_id, worker_id, attempt, metadata) THEN
        RETURN;
    END IF;
    INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, size, bytes, metadata)
    SELECT screenshot_complete.job_id, o.output_id, o.ord, o.output_type, o.content_type, octet_length(o.bytes),
           o.bytes, coalesce(o.metadata, '{}')
    FROM unnest(outputs) WITH ORDINALITY AS o(output_id, output_type, content_type, bytes, metadata, ord);
END
$$;

-- Results in object storage (PGSHOT_STORAGE=s3://...). A worker names the keys of an attempt's
-- outputs before it uploads them (screenshot_store_begin, which records them as garbage due in an
-- hour), uploads, and completes with the keys (screenshot_complete_stored, which takes them off
-- the garbage list). Whatever happens in between (the worker killed, the lease lost, the job
-- cancelled, the bucket down), no object is left behind for longer than that hour.

CREATE TYPE pgshot.stored_output AS (
    output_id    text,
    output_type  text,
    content_type text,
    storage_key  text,
    size         bigint,
    sha256       bytea,
    metadata     jsonb
);
COMMENT ON TYPE pgshot.stored_output IS 'one result in object storage, handed to screenshot_complete_stored';

CREATE FUNCTION screenshot_store_begin(job_id text, worker_id text, attempt integer, keys text[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(keys), 0) = 0 OR array_position(keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'keys must be a non-empty array of object keys' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgshot.lock_attempt(job_id, worker_id, attempt);
    INSERT INTO pgshot.storage_garbage (key, job_id, due_at)
    SELECT k, screenshot_store_begin.job_id, now() + interval '1 hour' FROM unnest(keys) AS k
    ON CONFLICT (key) DO UPDATE SET due_at = EXCLUDED.due_at;
END
$$;
COMMENT ON FUNCTION screenshot_store_begin(text, text, integer, text[]) IS
    'for workers: announce the object keys an attempt is about to upload; 55000 if the lease was lost';

-- screenshot_complete for outputs in object storage: the same transition, the rows keep the key,
-- size and SHA-256 instead of the bytes.
CREATE FUNCTION screenshot_complete_stored(job_id text, worker_id text, attempt integer, metadata jsonb,
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

    IF NOT pgshot.finish_held(job_id, worker_id, attempt, metadata) THEN
        -- Cancelled: the uploads are not kept, and are deleted now rather than in an hour.
        INSERT INTO pgshot.storage_garbage (key, job_id, due_at)
        SELECT k, screenshot_complete_stored.job_id, now() FROM unnest(keys) AS k
        ON CONFLICT (key) DO UPDATE SET due_at = now();
        RETURN;
    END IF;
    INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, size, storage_key,
                                sha256, metadata)
    SELECT screenshot_complete_stored.job_id, o.output_id, o.ord, o.output_type, o.content_type, o.size,
           o.storage_key, o.sha256, coalesce(o.metadata, '{}')
    FROM unnest(outputs) WITH ORDINALITY AS o(output_id, output_type, content_type, storage_key, size, sha256,
                                              metadata, ord);
    DELETE FROM pgshot.storage_garbage WHERE key = ANY (keys);
END
$$;
COMMENT ON FUNCTION screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]) IS
    'for workers: mark the job COMPLETED with outputs uploaded to object storage; 55000 if the lease was lost';

-- An output's object becomes garbage when its key is cleared (purge) or its row deleted (the job
-- deleted past pgshot.job_retention).
CREATE FUNCTION pgshot.discard_stored_output() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pgshot.storage_garbage (key, job_id, due_at) VALUES (OLD.storage_key, OLD.job_id, now())
    ON CONFLICT (key) DO UPDATE SET due_at = now();
    RETURN NULL;
END
$$;

CREATE TRIGGER outputs_discard_stored_on_update AFTER UPDATE OF storage_key ON pgshot.outputs
    FOR EACH ROW WHEN (OLD.storage_key IS NOT NULL AND NEW.storage_key IS DISTINCT FROM OLD.storage_key)
    EXECUTE FUNCTION pgshot.discard_stored_output();
CREATE TRIGGER outputs_discard_stored_on_delete AFTER DELETE ON pgshot.outputs
    FOR EACH ROW WHEN (OLD.storage_key IS NOT NULL)
    EXECUTE FUNCTION pgshot.discard_stored_output();

-- Up to max_keys objects due for deletion, each given ten minutes to a worker (a worker that dies
-- meanwhile leaves them to the next sweep). Delete them from the bucket, then forget them.
CREATE FUNCTION screenshot_storage_sweep(max_keys integer DEFAULT 100) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    IF max_keys IS NULL OR max_keys NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_keys must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT g.key FROM pgshot.storage_garbage g
        WHERE g.due_at <= now()
        ORDER BY g.due_at
        LIMIT max_keys
        FOR UPDATE SKIP LOCKED
    )
    UPDATE pgshot.storage_garbage g SET due_at = now() + interval '10 minutes'
    FROM due WHERE g.key = due.key
    RETURNING g.key;
END
$$;
COMMENT ON FUNCTION screenshot_storage_sweep(integer) IS
    'for workers: object keys to delete from the bucket now; call screenshot_storage_forget once deleted';

CREATE FUNCTION screenshot_storage_forget(keys text[]) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM pgshot.storage_garbage WHERE key = ANY (keys) RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION screenshot_storage_forget(text[]) IS
    'for workers: the objects were deleted from the bucket';

-- The job as GET /v1/screenshots/jobs/{id} returns it (seed/async-jobs.md): camelCase, absent
-- values left out. Multi-output jobs list their outputs and point resultUrl at the first one.
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

-- Per-key limits (pgshot.api_keys.rate_limit and max_in_flight), enforced where jobs are
-- inserted, so that every way of enqueueing under a key obeys them. Beyond a limit: SQLSTATE
-- 53400 (configuration_limit_exceeded) with DETAIL 'retry after N s'; pgshot-api answers 429 with
-- Retry-After: N. Not a code of our own: the Rust enqueue functions pass only known codes on.

-- The key's tokens now: the bucket refills rate_limit tokens a minute, up to rate_limit.
CREATE FUNCTION pgshot.rate_tokens(k pgshot.api_keys) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT least(k.rate_limit::double precision,
                 coalesce(k.rate_tokens, k.rate_limit)
                 + coalesce(extract(epoch FROM now() - k.rate_checked_at), 0) * k.rate_limit / 60.0)
$$;

-- Jobs of an owner queued or processing, counted up to cap.
CREATE FUNCTION pgshot.in_flight(p_owner text, cap bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM (SELECT 1 FROM pgshot.jobs
                                  WHERE status = 'QUEUED' AND coalesce(owner, enqueued_by, '') = p_owner
                                  LIMIT cap) q)
         + (SELECT count(*) FROM (SELECT 1 FROM pgshot.jobs
                                  WHERE status = 'PROCESSING' AND coalesce(owner, enqueued_by, '') = p_owner
                                  LIMIT cap) p)
$$;

-- Takes n jobs from the key's limits, or raises 53400. Called after its jobs were inserted, in
-- the same transaction: a refusal leaves nothing behind.
CREATE FUNCTION pgshot.take_quota(p_owner text, n bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k pgshot.api_keys;
    tokens double precision;
    running bigint;
BEGIN
    SELECT * INTO k FROM pgshot.api_keys WHERE id = p_owner;
    IF k.rate_limit IS NULL AND k.max_in_flight IS NULL THEN
        RETURN;
    END IF;
    -- One enqueue of a limited key at a time, so that two cannot both take the last token or slot.
    SELECT * INTO k FROM pgshot.api_keys WHERE id = p_owner FOR UPDATE;
    IF k.rate_limit IS NOT NULL AND n > k.rate_limit THEN
        RAISE EXCEPTION '% jobs at once exceed the rate limit of API key "%" (% jobs per minute)',
                        n, p_owner, k.rate_limit
            USING ERRCODE = 'invalid_parameter_value', HINT = 'send fewer URLs per request';
    END IF;
    IF k.max_in_flight IS NOT NULL THEN
        running := pgshot.in_flight(p_owner, k.max_in_flight + 1);
        IF running > k.max_in_flight THEN
            RAISE EXCEPTION 'API key "%" may have % jobs queued or processing at once', p_owner, k.max_in_flight
                USING ERRCODE = 'configuration_limit_exceeded', DETAIL = 'retry after 1 s',
                      HINT = 'wait for a job to finish, or cancel one';
        END IF;
    END IF;
    IF k.rate_limit IS NOT NULL THEN
        tokens := pgshot.rate_tokens(k);
        IF tokens < n THEN
            RAISE EXCEPTION 'API key "%" may create % jobs per minute', p_owner, k.rate_limit
                USING ERRCODE = 'configuration_limit_exceeded',
                      DETAIL = format('retry after %s s', ceil((n - tokens) * 60.0 / k.rate_limit)::integer),
                      HINT = 'wait, or spread the requests out';
        END IF;
        UPDATE pgshot.api_keys SET rate_tokens = tokens - n, rate_checked_at = now() WHERE id = p_owner;
    END IF;
END
$$;

-- A live key's limits and where it stands: what pgshot-api sends as X-RateLimit-Limit,
-- -Remaining and -Reset (seconds until the bucket is full again). No row for an unknown key.
CREATE FUNCTION pgshot.api_key_limits(key text)
RETURNS TABLE (key_id text, rate_limit integer, remaining integer, reset_seconds integer)
LANGUAGE sql STABLE AS $$
    SELECT k.id, k.rate_limit,
           floor(pgshot.rate_tokens(k))::integer,
           ceil((k.rate_limit - pgshot.rate_tokens(k)) * 60.0 / k.rate_limit)::integer
    FROM pgshot.api_keys k
    WHERE k.key_hash = sha256(convert_to(key, 'UTF8')) AND k.revoked_at IS NULL
$$;
COMMENT ON FUNCTION pgshot.api_key_limits(text) IS
    'a live key''s rate limit (jobs per minute), tokens left and seconds until the bucket is full';

-- Sets a key's limits; NULL removes one. The bucket starts full.
CREATE FUNCTION pgshot.api_key_set_limits(key_id text, rate_limit integer, max_in_flight integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF rate_limit IS NOT NULL AND rate_limit NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'rate_limit must be between 1 and 1000000 jobs per minute'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', rate_limit);
    END IF;
    IF max_in_flight IS NOT NULL AND max_in_flight NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'max_in_flight must be between 1 and 1000000 jobs'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('got %s', max_in_flight);
    END IF;
    UPDATE pgshot.api_keys k
    SET rate_limit = api_key_set_limits.rate_limit, max_in_flight = api_key_set_limits.max_in_flight,
        rate_tokens = NULL, rate_checked_at = NULL
    WHERE k.id = key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API key "%" does not exist', key_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
COMMENT ON FUNCTION pgshot.api_key_set_limits(text, integer, integer) IS
    'set an API key''s jobs per minute and jobs in flight (NULL: no limit)';

-- GET /v1/usage: an owner's jobs by status, screenshots completed and bytes kept this month, in
-- earlier months (up to 12) and in total, and its limits.
CREATE FUNCTION pgshot.usage(p_owner text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH mine AS (
        SELECT j.id, j.status, j.completed_at,
               (SELECT coalesce(sum(o.size), 0) FROM pgshot.outputs o WHERE o.job_id = j.id) AS bytes
        FROM pgshot.jobs j WHERE j.owner = p_owner
    ), months AS (
        SELECT date_trunc('month', completed_at) AS start, count(*) AS shots, sum(bytes) AS bytes
        FROM mine WHERE status = 'COMPLETED' GROUP BY 1
    ), this_month AS (
        SELECT date_trunc('month', now()) AS start
    )
    SELECT jsonb_build_object(
        'tier', 'self-hosted',
        'currentPeriod', jsonb_build_object(
            'periodStart', pgshot.timestamp_json(tm.start),
            'periodEnd', pgshot.timestamp_json(tm.start + interval '1 month'),
            'screenshotsCount', coalesce(cur.shots, 0),
            'bandwidthBytes', coalesce(cur.bytes, 0),
            'bandwidthFormatted', pg_size_pretty(coalesce(cur.bytes, 0)::bigint)),
        'history', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'periodStart', pgshot.timestamp_json(m.start),
                       'periodEnd', pgshot.timestamp_json(m.start + interval '1 month'),
                       'screenshotsCount', m.shots,
                       'bandwidthBytes', m.bytes,
                       'bandwidthFormatted', pg_size_pretty(m.bytes::bigint)) ORDER BY m.start DESC)
            FROM (SELECT * FROM months WHERE start < tm.start ORDER BY start DESC LIMIT 12) m), '[]'),
        'totals', jsonb_build_object(
            'screenshotsCount', (SELECT coalesce(sum(shots), 0) FROM months),
            'bandwidthBytes', (SELECT coalesce(sum(bytes), 0) FROM months),
            'bandwidthFormatted', pg_size_pretty((SELECT coalesce(sum(bytes), 0) FROM months)::bigint)),
        'jobs', jsonb_build_object(
            'QUEUED', (SELECT count(*) FROM mine WHERE status = 'QUEUED'),
            'PROCESSING', (SELECT count(*) FROM mine WHERE status = 'PROCESSING'),
            'COMPLETED', (SELECT count(*) FROM mine WHERE status = 'COMPLETED'),
            'FAILED', (SELECT count(*) FROM mine WHERE status = 'FAILED'),
            'CANCELLED', (SELECT count(*) FROM mine WHERE status = 'CANCELLED')),
        'limits', (SELECT jsonb_build_object(
            'ratePerMinute', k.rate_limit,
            'remaining', CASE WHEN k.rate_limit IS NOT NULL THEN floor(pgshot.rate_tokens(k))::integer END,
            'resetSeconds', CASE WHEN k.rate_limit IS NOT NULL
                                 THEN ceil((k.rate_limit - pgshot.rate_tokens(k)) * 60.0 / k.rate_limit)::integer END,
            'maxInFlight', k.max_in_flight,
            'inFlight', (SELECT count(*) FROM mine WHERE status IN ('QUEUED', 'PROCESSING')))
            FROM pgshot.api_keys k WHERE k.id = p_owner))
    FROM this_month tm LEFT JOIN months cur ON cur.start = tm.start
$$;
COMMENT ON FUNCTION pgshot.usage(text) IS 'GET /v1/usage for an API key';

-- Asks for a job's end to be sent on pgshot_job_done: LISTEN first, then watch. A job that has
-- already finished is notified at once (at commit). Returns the job as screenshot_job does.
CREATE FUNCTION screenshot_watch(id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    UPDATE pgshot.jobs SET watched = true WHERE jobs.id = screenshot_watch.id RETURNING * INTO j;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', screenshot_watch.id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN
        PERFORM pg_notify('pgshot_job_done', json_build_object('id', j.id, 'status', j.status)::text);
    END IF;
    RETURN pgshot.job_json(j);
END
$$;
COMMENT ON FUNCTION screenshot_watch(text) IS
    'send this job''s end on pgshot_job_done (at once if it has ended); returns the job';

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

-- The queue's hot path plans its statements once per session: with a custom plan (the default
-- for the first executions of a statement with parameters) every claim and complete would plan
-- its queries again, about a fifth of their time. Their generic plans use the same indexes.
ALTER FUNCTION screenshot_claim(text, integer, interval) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.claim_shares(integer) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_heartbeat(text, text, integer, interval) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.lock_attempt(text, text, integer) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.finish_held(text, text, integer, jsonb) SET plan_cache_mode = force_generic_plan;

-- The loop above revoked it from PUBLIC: anyone may ask who they are.
GRANT EXECUTE ON FUNCTION pgshot.caller() TO PUBLIC;
GRANT EXECUTE ON FUNCTION screenshot_watch(text) TO pgshot_app, pgshot_api;
GRANT EXECUTE ON FUNCTION pgshot.api_key_limits(text), pgshot.usage(text) TO pgshot_api;
GRANT EXECUTE ON FUNCTION
    screenshot_store_begin(text, text, integer, text[]),
    screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]),
    screenshot_storage_sweep(integer), screenshot_storage_forget(text[])
    TO pgshot_worker;
GRANT SELECT ON pgshot.storage_garbage TO pgshot_admin;
