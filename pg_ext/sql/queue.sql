-- The queue's state machine and SQL API. Every transition is one function here; the worker and
-- the API call these and never write the tables themselves. See the diagram in schema.sql.
--
-- Errors: 22023 bad argument, P0002 unknown job or output, 55000 wrong state or lost lease,
-- 23505 idempotency key reused for another request, PS410 result expired.

-- Notifications: 'pgshot_jobs' (payload 'queued') wakes workers, once per statement that makes
-- jobs runnable; 'pgshot_job_done' carries {"id", "status"} of each watched job (a sync capture's,
-- or one passed to screenshot_watch; every job when pgshot.notify_all_done is on) that reached a
-- terminal state. Both are delivered at commit, and not at all on rollback. Only watched jobs are
-- notified because a transaction that sends a NOTIFY holds a database-wide lock through its
-- commit: a NOTIFY at every completion makes workers' commits wait for one another.

-- The state machine's rules, and an output's, as one CHECK constraint each (schema.sql,
-- job/src/row_rules.rs): Postgres reads every CHECK expression of a table back from its stored
-- text at every write, so one call costs a claim or a complete far less than 21 and 6 expressions
-- did; each takes the whole row, the shortest such text.
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_rules CHECK (pgshot.job_row_check(jobs));
ALTER TABLE pgshot.outputs ADD CONSTRAINT outputs_rules CHECK (pgshot.output_row_check(outputs));

-- The name of this database's group role of a kind (app, worker, api, admin); NULL for another
-- kind. Anyone may ask: GRANT (SELECT pgshot.role('worker')) is how a login role is given one.
CREATE FUNCTION pgshot.role(kind text) RETURNS name
LANGUAGE sql STABLE AS $$
    SELECT r.role_name FROM pgshot.roles r WHERE r.kind = role.kind
$$;

CREATE FUNCTION pgshot.notify_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgshot_jobs', 'queued');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_enqueued AFTER INSERT ON pgshot.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgshot.notify_enqueued();

-- Inserts validated requests (screenshot_enqueue and screenshot_enqueue_bulk validate them in
-- Rust) in one statement and returns their ids in order. A request with an idempotency key that
-- is already taken returns the existing job if the request is the same, and raises 23505 if not.
CREATE FUNCTION pgshot.insert_jobs(
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
    ON CONFLICT ((coalesce(owner, enqueued_by, '')), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
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
    JOIN pgshot.jobs j ON j.idempotency_key = r.key
                               AND coalesce(j.owner, j.enqueued_by, '') = coalesce(p_owner, pgshot.caller(), '')
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
           ON r.key IS NOT NULL AND j.idempotency_key = r.key
                               AND coalesce(j.owner, j.enqueued_by, '') = coalesce(p_owner, pgshot.caller(), '');
    RETURN result;
END
$$;

CREATE FUNCTION pgshot.timestamp_json(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- Where a job's result is downloaded: absolute under pgshot.public_url when it is set.
CREATE FUNCTION pgshot.result_url(job_id text, output_id text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(rtrim(nullif(current_setting('pgshot.public_url', true), ''), '/'), '')
        || '/v1/screenshots/jobs/' || job_id || '/result'
        || coalesce('/' || output_id, '')
$$;

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

-- The job as GET /v1/screenshots/jobs/{id} returns it (seed/async-jobs.md): camelCase, absent
-- values left out. Multi-output jobs list their outputs and point resultUrl at the first one.
CREATE FUNCTION pgshot.job_json(j pgshot.jobs) RETURNS jsonb
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

-- Whether the calling role may see job j: a role sees the jobs it enqueued; members of this
-- database's api role (so its admin role, the database owner and superusers too) see every job.
-- Every other role, an app role member or one that reached a function some other way (its own
-- SECURITY DEFINER wrapper, SET ROLE), sees its own jobs only: to it another's job does not exist.
CREATE FUNCTION pgshot.visible(j pgshot.jobs) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT j.enqueued_by IS NOT DISTINCT FROM pgshot.caller()
        OR pg_catalog.pg_has_role(pgshot.caller()::name, pgshot.role('api'), 'MEMBER')
$$;

-- VOLATILE, not STABLE: a STABLE function sees the snapshot of the statement that calls it, so
-- SELECT screenshot_job(screenshot_enqueue(...)) would not find the job it just created.
CREATE FUNCTION screenshot_job(id text) RETURNS jsonb
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

-- Locks a job for a worker's transition and checks the worker still holds the attempt it names:
-- the fencing that keeps a worker whose lease was taken over from touching the newer attempt.
CREATE FUNCTION pgshot.lock_attempt(p_job_id text, p_worker_id text, p_attempt integer)
RETURNS pgshot.jobs LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    SELECT * INTO j FROM pgshot.jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job "%" does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.status <> 'PROCESSING' OR j.worker_id IS DISTINCT FROM p_worker_id OR j.attempt <> p_attempt THEN
        RAISE EXCEPTION 'job "%" is not held by worker "%" at attempt %', p_job_id, p_worker_id, p_attempt
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('the job is %s, attempt %s, last claimed by worker "%s"',
                                  j.status, j.attempt, j.worker_id),
                  HINT = 'the lease was lost: abandon this attempt and do not retry it';
    END IF;
    RETURN j;
END
$$;

-- True, or 22023. The checks return true rather than nothing so that a claim can call them in an
-- expression (a variable's initial value) and not with PERFORM, which runs as a query.
CREATE FUNCTION pgshot.check_lease(lease interval) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF lease IS NULL OR lease < interval '1 second' OR lease > interval '1 hour' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 hour'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = pg_catalog.format('got %s', lease);
    END IF;
    RETURN true;
END
$$;

-- The arguments every claim takes: a worker name, how many to claim (named `max_name` in errors)
-- and a lease. True, or 22023.
CREATE FUNCTION pgshot.check_claim(worker_id text, max_name text, max_value integer, lease interval)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF coalesce(pg_catalog.btrim(worker_id), '') = '' THEN
        RAISE EXCEPTION 'worker_id must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_value IS NULL OR max_value NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION '% must be between 1 and 1000', max_name
            USING ERRCODE = 'invalid_parameter_value', DETAIL = pg_catalog.format('got %s', max_value);
    END IF;
    RETURN pgshot.check_lease(lease);
END
$$;

-- Claims up to max_jobs runnable jobs for worker_id, giving each a lease. Jobs locked by another
-- claimer are skipped, never waited for.
--
-- Fair shares between owners (an API key; for SQL enqueues the role): with one owner queued, all
-- max_jobs are its own. With several, each slot goes to the owner that would then have the fewest
-- jobs running, so a key with a backlog (or with priority -100) cannot hold back another key's
-- first job for more than about one job per worker slot. Ties are drawn at random at each claim
-- (since 0.8.0; before, the owner whose next job had waited longest won). Priority, then run_at,
-- then the order of enqueue (jobs.enqueue_seq, since 0.9.0) order jobs within an owner only.
--
-- One statement claims every owner's share (since 0.8.0; before, one UPDATE per owner). A share
-- that comes back short (its jobs locked by other claimers, fewer than its share, or not due yet)
-- is made up by a second pass that offers the rest to the owners in the same order.
CREATE FUNCTION screenshot_claim(worker_id text, max_jobs integer DEFAULT 1, lease interval DEFAULT '30 seconds')
RETURNS TABLE (id text, url text, options jsonb, attempt integer, max_attempts integer,
               lease_expires_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    checked boolean := pgshot.check_claim(screenshot_claim.worker_id, 'max_jobs', max_jobs, lease);
    -- The owners to claim from, in order, and how many jobs each is offered.
    tenants text[];
    shares integer[];
    wanted integer := max_jobs;
    got integer;
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
    IF tenants IS NULL THEN
        RETURN;
    ELSIF cardinality(tenants) = 1 THEN
        shares := ARRAY[max_jobs];
    ELSE
        -- Every owner with queued jobs, those with slots first, so that the second pass offers
        -- the rest to them in the same order. `slots` is materialized: read once per owner, it
        -- would otherwise be sorted again for each.
        WITH load AS (
            -- Ties are drawn at random, again at each claim. Shares are not capped by how many
            -- jobs each owner has due (finding out cost an index scan per owner): a share that
            -- comes back short is offered to the others.
            SELECT x.tenant, random() AS tie,
                   (SELECT count(*) FROM pgshot.jobs p
                    WHERE p.status = 'PROCESSING' AND coalesce(p.owner, p.enqueued_by, '') = x.tenant) AS running
            FROM unnest(tenants) AS x(tenant)
        ), slots AS MATERIALIZED (
            SELECT l.tenant
            FROM load l CROSS JOIN LATERAL generate_series(1, max_jobs) AS s(k)
            ORDER BY l.running + s.k, l.tie
            LIMIT max_jobs
        ), share AS (
            SELECT l.tenant, l.running, l.tie,
                   (SELECT count(*) FROM slots s WHERE s.tenant = l.tenant)::integer AS jobs
            FROM load l
        )
        SELECT array_agg(s.tenant ORDER BY s.jobs DESC, s.running, s.tie),
               array_agg(s.jobs ORDER BY s.jobs DESC, s.running, s.tie)
        INTO tenants, shares
        FROM share s;
    END IF;
    FOR pass IN 1 .. 2 LOOP
        -- The laterals run in the owners' order and lock only the rows they return; the outer
        -- LIMIT stops the second pass at what is still wanted.
        RETURN QUERY
        WITH picked AS (
            SELECT p.id
            FROM unnest(tenants, shares) AS s(tenant, jobs)
            CROSS JOIN LATERAL (
                SELECT j.id
                FROM pgshot.jobs j
                WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') = s.tenant
                  AND j.run_at <= now()
                ORDER BY j.priority, j.run_at, j.enqueue_seq
                LIMIT s.jobs
                FOR UPDATE SKIP LOCKED
            ) p
            LIMIT wanted
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
        wanted := wanted - got;
        -- One owner's jobs are all offered in the first pass; in the second, each owner is
        -- offered all that is still wanted.
        EXIT WHEN wanted = 0 OR cardinality(tenants) = 1;
        shares := array_fill(wanted, ARRAY[cardinality(tenants)]);
    END LOOP;
END
$$;
COMMENT ON FUNCTION screenshot_claim(text, integer, interval) IS
    'for workers: claim up to max_jobs runnable jobs with a lease; the attempt is the fencing token';

-- Extends the lease of a job the worker holds. Returns false when the job was cancelled meanwhile:
-- it is now CANCELLED and the worker should stop rendering it.
CREATE FUNCTION screenshot_heartbeat(job_id text, worker_id text, attempt integer, lease interval DEFAULT '30 seconds')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    PERFORM pgshot.check_lease(lease);
    j := pgshot.lock_attempt(job_id, worker_id, attempt);
    IF j.cancel_requested THEN
        UPDATE pgshot.jobs
        SET status = 'CANCELLED', completed_at = now(), lease_expires_at = NULL
        WHERE id = j.id;
        RETURN false;
    END IF;
    UPDATE pgshot.jobs SET lease_expires_at = now() + lease WHERE id = j.id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION screenshot_heartbeat(text, text, integer, interval) IS
    'for workers: extend the lease; false means the job was cancelled; 55000 if the lease was lost';

CREATE TYPE pgshot.output AS (
    output_id    text,
    output_type  text,
    content_type text,
    bytes        bytea,
    metadata     jsonb
);
COMMENT ON TYPE pgshot.output IS 'one result handed to screenshot_complete';

-- The checks of a complete's arguments, one call (pg_ext/src/complete_args.rs): 22023 unless the
-- outputs are a non-empty list of complete outputs with distinct ids and the metadata
-- (jsonb_typeof) is an object or NULL.
CREATE FUNCTION pgshot.check_outputs(outputs pgshot.output[], metadata_type text) RETURNS boolean
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_outputs_wrapper';

-- What a complete does when its UPDATE (screenshot_complete, screenshot_complete_stored: the job
-- held at this attempt and no cancel came) found no row. Under READ COMMITTED that UPDATE checks
-- its conditions again on the row's latest version after any concurrent writer, so the miss means
-- the lease is lost (lock_attempt raises 55000, or P0002 for an unknown job) or a cancel was
-- requested while the page rendered: the cancel wins, as it does at a heartbeat or a fail, and the
-- job becomes CANCELLED without its outputs.
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

-- Completes a job the worker holds with its outputs (at least one) and metadata, in one
-- transaction: the job is COMPLETED exactly once, whatever happened to earlier attempts, or
-- CANCELLED when a cancel was requested while it rendered.
CREATE FUNCTION screenshot_complete(job_id text, worker_id text, attempt integer, metadata jsonb,
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
COMMENT ON FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) IS
    'for workers: store the outputs and mark the job COMPLETED; 55000 if the lease was lost';

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

-- As pgshot.check_outputs; returns the outputs' storage keys.
CREATE FUNCTION pgshot.check_stored_outputs(outputs pgshot.stored_output[], metadata_type text) RETURNS text[]
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_stored_outputs_wrapper';

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

-- Records a failed attempt. The job goes back to QUEUED after a backoff when the failure is
-- retryable and attempts are left, and to FAILED otherwise; a job whose cancellation was
-- requested becomes CANCELLED. Returns the job's new status.
CREATE FUNCTION screenshot_fail(job_id text, worker_id text, attempt integer, error_code text,
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
COMMENT ON FUNCTION screenshot_fail(text, text, integer, text, text, boolean) IS
    'for workers: record a failed attempt; returns QUEUED (retry), FAILED or CANCELLED';

-- Gives a held job back untouched, for a worker that shuts down before it could render it: the job
-- is claimable again at once and the attempt does not count. Fencing still holds, since the next
-- claim is by another worker id.
CREATE FUNCTION screenshot_release(job_id text, worker_id text, attempt integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
    next_status text;
BEGIN
    j := pgshot.lock_attempt(job_id, worker_id, attempt);
    next_status := CASE WHEN j.cancel_requested THEN 'CANCELLED' ELSE 'QUEUED' END;
    UPDATE pgshot.jobs
    SET status = next_status,
        lease_expires_at = NULL,
        completed_at = CASE WHEN next_status = 'CANCELLED' THEN now() END,
        attempt = CASE WHEN next_status = 'QUEUED' THEN j.attempt - 1 ELSE j.attempt END,
        started_at = CASE WHEN next_status = 'QUEUED' AND j.attempt = 1 THEN NULL ELSE started_at END,
        run_at = CASE WHEN next_status = 'QUEUED' THEN now() ELSE run_at END
    WHERE id = j.id;
    IF next_status = 'QUEUED' THEN
        PERFORM pg_notify('pgshot_jobs', 'queued');
    END IF;
    RETURN next_status;
END
$$;
COMMENT ON FUNCTION screenshot_release(text, text, integer) IS
    'for workers: give a held job back without counting the attempt (shutdown); returns QUEUED or CANCELLED';

-- Takes back jobs whose worker stopped heartbeating: each goes back to QUEUED after a backoff,
-- or to FAILED with LEASE_EXPIRED when it has used all its attempts. Returns how many.
CREATE FUNCTION screenshot_rescue(max_jobs integer DEFAULT 1000) RETURNS integer
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
COMMENT ON FUNCTION screenshot_rescue(integer) IS
    'for workers: requeue or fail jobs whose lease expired; returns how many';

-- Cancels a job: a QUEUED job becomes CANCELLED at once; a PROCESSING job is flagged and becomes
-- CANCELLED when its worker next heartbeats (or fails, or loses its lease). Returns the job JSON.
CREATE FUNCTION screenshot_cancel(id text) RETURNS jsonb
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
CREATE FUNCTION screenshot_result(id text, output_id text DEFAULT NULL)
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

-- Deletes the result bytes of jobs whose expiresAt has passed (the jobs keep their status and
-- metadata), then, past pgshot.job_retention, finished jobs themselves (their outputs, webhook
-- deliveries and attempts go with them) and bulk requests left without jobs. At most max_jobs of
-- each per call. Returns how many jobs were purged or deleted.
CREATE FUNCTION screenshot_purge(max_jobs integer DEFAULT 1000) RETURNS integer
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
        -- A result is never deleted before its own expiresAt, whatever the retention; nor a job
        -- (or bulk) whose webhook is still to be delivered: a retention shorter than the retry
        -- schedule (about 33 hours) would delete the delivery with it.
        WITH old AS (
            SELECT id FROM pgshot.jobs
            WHERE completed_at < now() - retention AND (expires_at IS NULL OR expires_at <= now())
              AND NOT EXISTS (SELECT 1 FROM pgshot.webhook_deliveries d
                              WHERE d.job_id = jobs.id AND d.status IN ('PENDING', 'DELIVERING'))
            ORDER BY completed_at
            LIMIT max_jobs
            FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM pgshot.jobs j USING old WHERE j.id = old.id RETURNING j.bulk_id
        )
        SELECT count(*) INTO deleted FROM gone;
        DELETE FROM pgshot.bulks b
        WHERE b.id IN (SELECT id FROM pgshot.bulks WHERE created_at < now() - retention ORDER BY created_at LIMIT max_jobs)
          AND NOT EXISTS (SELECT 1 FROM pgshot.jobs j WHERE j.bulk_id = b.id)
          AND NOT EXISTS (SELECT 1 FROM pgshot.webhook_deliveries d
                          WHERE d.bulk_id = b.id AND d.status IN ('PENDING', 'DELIVERING'));
    END IF;
    RETURN purged + deleted;
END
$$;
COMMENT ON FUNCTION screenshot_purge(integer) IS
    'for workers: delete result bytes past expiresAt, and finished jobs past pgshot.job_retention; returns how many jobs';

-- Queue depth at a glance, for dashboards and /metrics.
CREATE FUNCTION screenshot_stats()
RETURNS TABLE (queued bigint, ready bigint, processing bigint, completed bigint, failed bigint,
               cancelled bigint, oldest_queued_age interval, expired_leases bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*) FILTER (WHERE status = 'QUEUED'),
           count(*) FILTER (WHERE status = 'QUEUED' AND run_at <= now()),
           count(*) FILTER (WHERE status = 'PROCESSING'),
           count(*) FILTER (WHERE status = 'COMPLETED'),
           count(*) FILTER (WHERE status = 'FAILED'),
           count(*) FILTER (WHERE status = 'CANCELLED'),
           now() - min(created_at) FILTER (WHERE status = 'QUEUED'),
           count(*) FILTER (WHERE status = 'PROCESSING' AND lease_expires_at < now())
    FROM pgshot.jobs
$$;
COMMENT ON FUNCTION screenshot_stats() IS
    'jobs per status, runnable jobs, age of the oldest queued job, leases past expiry';

-- API keys. pgshot-api creates them with `pgshot-api keys create`; the key is returned once and
-- only its SHA-256 is stored.
CREATE FUNCTION pgshot.api_key_create(name text) RETURNS TABLE (id text, key text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    -- gen_random_uuid() draws from the server's strong random source: 2 × 122 random bits.
    new_key text := 'pgs_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
    new_id text := 'key_' || left(md5(gen_random_uuid()::text), 12);
BEGIN
    IF coalesce(length(trim(api_key_create.name)), 0) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgshot.api_keys (id, name, key_hash)
    VALUES (new_id, trim(api_key_create.name), sha256(convert_to(new_key, 'UTF8')));
    RETURN QUERY SELECT new_id, new_key;
END
$$;
COMMENT ON FUNCTION pgshot.api_key_create(text) IS 'a new API key; the key is returned here only';

CREATE FUNCTION pgshot.api_key_owner(key text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT id FROM pgshot.api_keys
    WHERE key_hash = sha256(convert_to(key, 'UTF8')) AND revoked_at IS NULL
$$;
COMMENT ON FUNCTION pgshot.api_key_owner(text) IS 'the id of a live API key, or NULL';

CREATE FUNCTION pgshot.api_key_revoke(key_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgshot.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API key "%" does not exist', key_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

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
-- earlier months (up to 12) and in total, and its limits. Finished jobs are counted from the
-- hourly roll-up (pgshot.hourly, one row per owner and hour), and only the jobs that finished
-- since its last hour are read (jobs_finished); queued and processing ones from their partial
-- indexes. So a call costs the same for an owner of ten jobs or of ten million (before 1.0.0 it
-- read every job the owner had, and every output of each).
CREATE FUNCTION pgshot.usage(p_owner text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH finished AS (
        SELECT h.hour AS at, h.completed, h.failed, h.cancelled, h.bytes
        FROM pgshot.hourly h WHERE h.owner = p_owner
        UNION ALL
        SELECT j.completed_at, (j.status = 'COMPLETED')::integer, (j.status = 'FAILED')::integer,
               (j.status = 'CANCELLED')::integer,
               CASE WHEN j.status = 'COMPLETED'
                    THEN (SELECT coalesce(sum(o.size), 0) FROM pgshot.outputs o WHERE o.job_id = j.id) ELSE 0 END
        FROM pgshot.jobs j
        -- A range of jobs_finished from the roll-up's last hour (an index condition: a subquery,
        -- not a join); the owner as the roll-up names it, which no index of finished jobs has, so
        -- that the planner does not read every job of the owner instead (jobs_owner_recent).
        WHERE j.completed_at >= (SELECT coalesce(max(h.hour) + interval '1 hour', '-infinity') FROM pgshot.hourly h)
          AND coalesce(j.owner, j.enqueued_by, '') = p_owner
    ), months AS (
        SELECT date_trunc('month', at) AS start, sum(completed) AS shots, sum(bytes) AS bytes
        FROM finished GROUP BY 1 HAVING sum(completed) > 0
    ), ended AS (
        SELECT coalesce(sum(completed), 0) AS completed, coalesce(sum(failed), 0) AS failed,
               coalesce(sum(cancelled), 0) AS cancelled
        FROM finished
    ), waiting AS (
        SELECT (SELECT count(*) FROM pgshot.jobs j
                WHERE j.status = 'QUEUED' AND coalesce(j.owner, j.enqueued_by, '') = p_owner AND j.owner = p_owner) AS queued,
               (SELECT count(*) FROM pgshot.jobs j
                WHERE j.status = 'PROCESSING' AND coalesce(j.owner, j.enqueued_by, '') = p_owner AND j.owner = p_owner) AS processing
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
            'QUEUED', w.queued,
            'PROCESSING', w.processing,
            'COMPLETED', e.completed,
            'FAILED', e.failed,
            'CANCELLED', e.cancelled),
        'limits', (SELECT jsonb_build_object(
            'ratePerMinute', k.rate_limit,
            'remaining', CASE WHEN k.rate_limit IS NOT NULL THEN floor(pgshot.rate_tokens(k))::integer END,
            'resetSeconds', CASE WHEN k.rate_limit IS NOT NULL
                                 THEN ceil((k.rate_limit - pgshot.rate_tokens(k)) * 60.0 / k.rate_limit)::integer END,
            'maxInFlight', k.max_in_flight,
            'inFlight', w.queued + w.processing)
            FROM pgshot.api_keys k WHERE k.id = p_owner))
    FROM this_month tm LEFT JOIN months cur ON cur.start = tm.start, ended e, waiting w
$$;
COMMENT ON FUNCTION pgshot.usage(text) IS 'GET /v1/usage for an API key';

-- Asks for a job's end to be sent on pgshot_job_done: LISTEN first, then watch. A job that has
-- already finished is notified at once (at commit). Returns the job as screenshot_job does.
CREATE FUNCTION screenshot_watch(id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    j pgshot.jobs;
BEGIN
    -- Visible first: another role's job is not written to (watched, told), only refused.
    SELECT * INTO j FROM pgshot.jobs WHERE jobs.id = screenshot_watch.id;
    IF NOT FOUND OR NOT pgshot.visible(j) THEN
        RAISE EXCEPTION 'job "%" does not exist', screenshot_watch.id USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE pgshot.jobs SET watched = true, told = true WHERE jobs.id = j.id RETURNING * INTO j;
    IF j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN
        PERFORM pg_notify('pgshot_job_done', json_build_object('id', j.id, 'status', j.status)::text);
    END IF;
    RETURN pgshot.job_json(j);
END
$$;
COMMENT ON FUNCTION screenshot_watch(text) IS
    'send this job''s end on pgshot_job_done (at once if it has ended); returns the job';

-- A bulk request as the API returns it: counts, progress and a status derived from its jobs
-- (QUEUED until one starts, PROCESSING until all are finished, then COMPLETED, or FAILED or
-- CANCELLED when none completed). With jobs, each job's summary.
CREATE FUNCTION pgshot.bulk_json(b pgshot.bulks, with_jobs boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', b.id,
        'status', CASE
            WHEN c.finished < c.total THEN CASE WHEN c.queued = c.total THEN 'QUEUED' ELSE 'PROCESSING' END
            WHEN c.completed > 0 THEN 'COMPLETED'
            WHEN c.failed > 0 THEN 'FAILED'
            ELSE 'CANCELLED' END,
        'totalJobs', c.total,
        'completedJobs', c.completed,
        'failedJobs', c.failed,
        'progress', CASE WHEN c.total = 0 THEN 100 ELSE (100 * c.finished / c.total) END,
        'createdAt', pgshot.timestamp_json(b.created_at),
        'completedAt', CASE WHEN c.finished = c.total THEN pgshot.timestamp_json(c.last_completed) END,
        'jobs', CASE WHEN with_jobs THEN c.jobs END))
    FROM (
        SELECT count(*)::int AS total,
               (count(*) FILTER (WHERE status = 'COMPLETED'))::int AS completed,
               (count(*) FILTER (WHERE status = 'FAILED'))::int AS failed,
               (count(*) FILTER (WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')))::int AS finished,
               (count(*) FILTER (WHERE status = 'QUEUED'))::int AS queued,
               max(completed_at) AS last_completed,
               coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'id', j.id, 'url', j.url, 'status', j.status,
                   'resultUrl', CASE WHEN j.status = 'COMPLETED' THEN pgshot.result_url(j.id) END,
                   'format', j.metadata->>'format',
                   'width', j.metadata->'width',
                   'height', j.metadata->'height',
                   'fileSize', j.metadata->'size',
                   'renderTimeMs', j.metadata->'renderTimeMs',
                   'errorCode', j.error_code,
                   'errorMessage', j.error_message,
                   'createdAt', pgshot.timestamp_json(j.created_at),
                   'completedAt', pgshot.timestamp_json(j.completed_at)))
                   ORDER BY j.bulk_position), '[]') AS jobs
        FROM pgshot.jobs j
        WHERE j.bulk_id = b.id
    ) c
$$;

-- Cancels every unfinished job of a bulk request (processing ones stop at their next
-- heartbeat) and returns the bulk summary.
CREATE FUNCTION pgshot.bulk_cancel(p_bulk_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b pgshot.bulks;
BEGIN
    SELECT * INTO b FROM pgshot.bulks WHERE id = p_bulk_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'bulk job "%" does not exist', p_bulk_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM @extschema@.screenshot_cancel(j.id)
    FROM pgshot.jobs j
    WHERE j.bulk_id = p_bulk_id AND j.status IN ('QUEUED', 'PROCESSING') AND NOT j.cancel_requested;
    RETURN pgshot.bulk_json(b, false);
END
$$;

-- Webhooks (DESIGN §6). The outbox row is written by a trigger in the transaction that makes
-- the job COMPLETED or FAILED, and the body is fixed then: every attempt sends the same bytes,
-- under the same webhook-id, so receivers can de-duplicate.

-- A job's JSON as a tenant (a webhook's receiver, an API key) is shown it: without the storage
-- keys of its outputs (the bucket's layout; an API key gets presigned storageUrls instead) and
-- without the workers that ran its attempts (their host names and process ids are the
-- operator's business).
CREATE FUNCTION pgshot.tenant_json(doc jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (doc - 'storageKey')
        || CASE WHEN jsonb_typeof(doc->'outputs') = 'array' THEN jsonb_build_object('outputs',
               (SELECT coalesce(jsonb_agg(o.v - 'storageKey' ORDER BY o.n), '[]')
                FROM jsonb_array_elements(doc->'outputs') WITH ORDINALITY AS o(v, n))) ELSE '{}' END
        || CASE WHEN jsonb_typeof(doc->'attempts') = 'array' THEN jsonb_build_object('attempts',
               (SELECT coalesce(jsonb_agg(a.v - 'worker' ORDER BY a.n), '[]')
                FROM jsonb_array_elements(doc->'attempts') WITH ORDINALITY AS a(v, n))) ELSE '{}' END
        || CASE WHEN jsonb_typeof(doc->'lastError') = 'object'
                THEN jsonb_build_object('lastError', (doc->'lastError') - 'worker') ELSE '{}' END
$$;

CREATE FUNCTION pgshot.webhook_body(j pgshot.jobs) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'event', CASE j.status WHEN 'COMPLETED' THEN 'JOB_COMPLETED' ELSE 'JOB_FAILED' END,
        'timestamp', pgshot.timestamp_json(now()),
        'jobId', j.id,
        'status', j.status,
        'data', pgshot.tenant_json(pgshot.job_json(j) - 'webhook') || jsonb_strip_nulls(jsonb_build_object(
            'jobId', j.id,
            'format', j.metadata->>'format',
            'width', j.metadata->'width',
            'height', j.metadata->'height',
            'fileSize', j.metadata->'size',
            'renderTimeMs', j.metadata->'renderTimeMs')))::text
$$;

-- What happens when a job ends (COMPLETED, FAILED or CANCELLED): its webhook's outbox row, its
-- bulk's BULK_COMPLETED row once the bulk's last job ended, its schedule's run
-- (pgshot.schedule_run_ended), and the `pgshot_job_done` notification of a watched job.
CREATE FUNCTION pgshot.job_ended() RETURNS trigger
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
    IF NEW.schedule_id IS NOT NULL THEN
        written := pgshot.schedule_run_ended(NEW) OR written;
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

-- Claims due deliveries (and ones whose worker's lease expired) for worker_id, with a lease.
CREATE FUNCTION screenshot_webhook_claim(worker_id text, max_deliveries integer DEFAULT 10,
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
COMMENT ON FUNCTION screenshot_webhook_claim(text, integer, interval) IS
    'for workers: claim due webhook deliveries with a lease';

-- Records one attempt: 2xx delivers, 410 gives up, anything else (3xx included: redirects are
-- not followed) retries on pgshot.webhook_retry_schedule until it runs out. Returns the new status.
CREATE FUNCTION screenshot_webhook_record(delivery_id text, worker_id text, attempt integer,
                                          status_code integer, error text, duration_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d pgshot.webhook_deliveries;
    delay interval;
    next_status text;
BEGIN
    IF status_code IS NULL AND error IS NULL THEN
        RAISE EXCEPTION 'status_code or error is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO d FROM pgshot.webhook_deliveries WHERE id = delivery_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery "%" does not exist', delivery_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.status <> 'DELIVERING' OR d.worker_id IS DISTINCT FROM screenshot_webhook_record.worker_id
       OR d.attempt <> screenshot_webhook_record.attempt THEN
        RAISE EXCEPTION 'webhook delivery "%" is not held by worker "%" at attempt %', delivery_id,
                        screenshot_webhook_record.worker_id, screenshot_webhook_record.attempt
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('the delivery is %s, attempt %s', d.status, d.attempt);
    END IF;
    INSERT INTO pgshot.webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
    VALUES (d.id, d.attempt, status_code, left(error, 2000), greatest(coalesce(duration_ms, 0), 0));
    IF status_code BETWEEN 200 AND 299 THEN
        next_status := 'DELIVERED';
    ELSIF status_code = 410 THEN
        next_status := 'FAILED';
    ELSE
        delay := pgshot.webhook_retry_delay(d.attempt);
        next_status := CASE WHEN delay IS NULL THEN 'FAILED' ELSE 'PENDING' END;
    END IF;
    UPDATE pgshot.webhook_deliveries
    SET status = next_status,
        lease_expires_at = NULL,
        next_attempt_at = CASE WHEN next_status = 'PENDING' THEN now() + delay ELSE next_attempt_at END,
        finished_at = CASE WHEN next_status = 'PENDING' THEN NULL ELSE now() END,
        last_status_code = status_code,
        last_error = left(error, 2000)
    WHERE id = d.id;
    RETURN next_status;
END
$$;
COMMENT ON FUNCTION screenshot_webhook_record(text, text, integer, integer, text, integer) IS
    'for workers: record a webhook attempt; returns DELIVERED, PENDING (retry) or FAILED';

ALTER TABLE pgshot.jobs ALTER COLUMN enqueued_by SET DEFAULT pgshot.caller();

-- Privileges (README "Running in production"). Four group roles of this database, created at
-- install (pgshot.create_roles) and kept if the extension is dropped; grant them to login roles:
--   app     enqueue, and read, cancel and fetch the results of its own jobs, from SQL
--   worker  claim, heartbeat, complete, fail, release, rescue, purge, deliver webhooks
--   api     what pgshot-api does: jobs on behalf of API keys, reading the tables it lists
--   admin   all of the above and API keys (`pgshot-api keys`), every table
-- They are named pgshot_<database>_<kind> (pgshot.role(kind) says the name): roles are shared by
-- the whole cluster, so one database's roles, and its owner's ADMIN OPTION, must not be the ones
-- another database's functions are granted to.
-- Every function runs as its owner (SECURITY DEFINER) with a fixed search_path, so that callers
-- need no privilege on the tables; EXECUTE is revoked from PUBLIC and granted to these roles.
CREATE FUNCTION pgshot.create_roles() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pgshot, pg_temp AS $$
DECLARE
    db_oid oid := (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    db text := current_database();
    base text;
    marker text;
    kind text;
    r name;
    existing oid;
    note text;
BEGIN
    -- pgshot_ and _worker leave 49 bytes of the 63 a name may have.
    base := CASE WHEN octet_length(db) <= 40 THEN db ELSE left(db, 8) || '_' || db_oid::text END;
    marker := 'pgshot role of database ' || db_oid::text;
    FOREACH kind IN ARRAY ARRAY['app', 'worker', 'api', 'admin'] LOOP
        r := 'pgshot_' || base || '_' || kind;
        existing := NULL;
        SELECT a.oid, shobj_description(a.oid, 'pg_authid') INTO existing, note
        FROM pg_roles a WHERE a.rolname = r;
        IF existing IS NULL THEN
            EXECUTE 'CREATE ROLE ' || quote_ident(r) || ' NOLOGIN';
        ELSIF note IS DISTINCT FROM marker AND NOT coalesce(note LIKE 'pgshot role of database %' AND NOT EXISTS (
                SELECT FROM pg_database d WHERE d.oid::text = substr(note, 25)), false) THEN
            -- A role of that name that pgshot did not make for this database (another database's,
            -- whose name starts alike, or anyone's): taking it would hand its members this one.
            RAISE EXCEPTION 'role "%" exists and is not pgshot''s % role of database "%"', r, kind, db
                USING ERRCODE = 'duplicate_object',
                      DETAIL = coalesce('its comment says: ' || note, 'it has no comment'),
                      HINT = 'drop or rename that role, then create the extension again';
        END IF;
        -- A database of this name that was dropped left its roles behind: they are this one's now.
        EXECUTE 'COMMENT ON ROLE ' || quote_ident(r) || ' IS ' || quote_literal(marker);
        INSERT INTO pgshot.roles (kind, role_name) VALUES (kind, r);
    END LOOP;
END
$$;
SELECT pgshot.create_roles();

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
-- role; members of the app role see their own jobs only.
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
    INSERT INTO pgshot.hourly (hour, owner, completed, failed, cancelled, render_ms_p50, render_ms_p95, error_codes, bytes)
    SELECT h.hour, h.owner, h.completed, h.failed, h.cancelled, h.p50, h.p95,
           coalesce((SELECT jsonb_object_agg(c.code, c.n)
                     FROM (SELECT j.error_code AS code, count(*) AS n FROM pgshot.jobs j
                           WHERE j.completed_at >= h.hour AND j.completed_at < h.hour + interval '1 hour'
                             AND j.status = 'FAILED' AND coalesce(j.owner, j.enqueued_by, '') = h.owner
                           GROUP BY j.error_code) c), '{}'),
           h.bytes
    FROM (
        SELECT date_trunc('hour', j.completed_at, 'UTC') AS hour, coalesce(j.owner, j.enqueued_by, '') AS owner,
               count(*) FILTER (WHERE j.status = 'COMPLETED') AS completed,
               count(*) FILTER (WHERE j.status = 'FAILED') AS failed,
               count(*) FILTER (WHERE j.status = 'CANCELLED') AS cancelled,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
                   FILTER (WHERE j.status = 'COMPLETED') AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at) * 1000)
                   FILTER (WHERE j.status = 'COMPLETED') AS p95,
               coalesce(sum((SELECT sum(o.size) FROM pgshot.outputs o WHERE o.job_id = j.id))
                   FILTER (WHERE j.status = 'COMPLETED'), 0)::bigint AS bytes
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
    PERFORM pgshot.insert_jobs(j.owner, NULL, ARRAY[p_new_id], ARRAY[j.url], ARRAY[j.options], ARRAY[j.priority],
                               ARRAY[NULL::timestamptz], ARRAY[j.max_attempts], ARRAY[NULL::text],
                               ARRAY[j.webhook_url], ARRAY[j.webhook_secret]);
    -- An SQL job stays the role's that enqueued it, not the retrying API's (whose login would
    -- otherwise own it, and the role would no longer see it).
    IF j.owner IS NULL THEN
        UPDATE pgshot.jobs SET enqueued_by = j.enqueued_by WHERE id = p_new_id;
    END IF;
    RETURN p_new_id;
END
$$;
COMMENT ON FUNCTION pgshot.job_retry(text, text) IS
    'a FAILED or CANCELLED job again as the new job p_new_id, same request and owner; 55000 otherwise';

-- Schedules (schema.sql): every operation takes the API key that owns the schedule (p_owner, from
-- pgshot-api) or NULL, for SQL: then the calling role's own schedules, as pgshot.visible() scopes
-- jobs. Another owner's schedule does not exist (P0002). Bad input is 22023 naming the field, from
-- pgshot.schedule_check (Rust: the pgshot-job definition the API validates with too).
ALTER TABLE pgshot.schedules ALTER COLUMN enqueued_by SET DEFAULT pgshot.caller();

CREATE FUNCTION pgshot.schedule_visible(s pgshot.schedules, p_owner text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_owner IS NOT NULL THEN s.owner IS NOT DISTINCT FROM p_owner
                ELSE s.owner IS NULL AND (s.enqueued_by IS NOT DISTINCT FROM pgshot.caller()
                     OR pg_catalog.pg_has_role(pgshot.caller()::name, pgshot.role('api'), 'MEMBER')) END
$$;

-- The schedule, locked for a change; P0002 when it is not the caller's.
CREATE FUNCTION pgshot.schedule_lock(p_owner text, p_id text) RETURNS pgshot.schedules
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules;
BEGIN
    SELECT * INTO s FROM pgshot.schedules WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT pgshot.schedule_visible(s, p_owner) THEN
        RAISE EXCEPTION 'schedule "%" does not exist', p_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN s;
END
$$;

-- The first due time of a schedule from `after` on: within startsAt and endsAt, or NULL.
CREATE FUNCTION pgshot.schedule_first_due(spec jsonb, after timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN n.at <= coalesce((spec->>'endsAt')::timestamptz, n.at) THEN n.at END
    FROM (SELECT pgshot.schedule_next(spec->>'schedule', spec->>'timezone',
                 greatest(after, (spec->>'startsAt')::timestamptz - interval '1 microsecond')) AS at) n
$$;

-- The schedule as the vendor's ScheduleResponse has it, and more: captureOptions (the options:
-- the vendor's SDK types `options` as an object of objects, which a capture's options are not),
-- pausedReason. Secrets are never shown.
CREATE FUNCTION pgshot.schedule_json(s pgshot.schedules) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls((s.spec - 'webhookSecret' - 'options' - 'destinations') || jsonb_build_object(
        'id', s.id,
        'status', s.status,
        'pausedReason', s.paused_reason,
        'captureOptions', s.spec->'options',
        'destinations', (SELECT coalesce(jsonb_agg(d.v - 'secret' ORDER BY d.n), '[]')
                         FROM jsonb_array_elements(s.spec->'destinations') WITH ORDINALITY AS d(v, n)),
        'nextExecutionAt', CASE WHEN s.status = 'ACTIVE' THEN pgshot.timestamp_json(s.next_run_at) END,
        'lastExecutedAt', pgshot.timestamp_json(s.last_run_at),
        'executionCount', s.execution_count,
        'successCount', s.success_count,
        'failureCount', s.failure_count,
        'consecutiveFailures', s.consecutive_failures,
        'createdAt', pgshot.timestamp_json(s.created_at),
        'updatedAt', pgshot.timestamp_json(s.updated_at)))
$$;

-- A run as the vendor's ScheduleExecutionResponse: status is the job's while it is not over.
CREATE FUNCTION pgshot.schedule_run_json(r pgshot.schedule_runs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', r.id,
        'runId', r.job_id,
        'jobId', r.job_id,
        'url', r.url,
        'executedAt', pgshot.timestamp_json(r.created_at),
        'dueAt', pgshot.timestamp_json(r.due_at),
        'triggered', r.triggered,
        'status', CASE WHEN r.status = 'QUEUED' THEN coalesce(j.status, r.status) ELSE r.status END,
        'changed', r.changed,
        'diffScore', r.diff_score,
        'resultUrl', CASE WHEN j.status = 'COMPLETED' AND j.purged_at IS NULL THEN
            pgshot.result_url(j.id, CASE WHEN j.options ? 'outputs' THEN o.first_id END) END,
        'diffUrl', CASE WHEN o.has_diff AND j.purged_at IS NULL THEN pgshot.result_url(j.id, 'diff') END,
        'storageKey', CASE WHEN j.purged_at IS NULL THEN o.first_key END,
        'fileSize', r.file_size,
        'renderTimeMs', r.render_time_ms,
        'errorCode', r.error_code,
        'errorMessage', r.error_message,
        'expiresAt', pgshot.timestamp_json(r.expires_at),
        'completedAt', pgshot.timestamp_json(r.finished_at)))
    FROM (SELECT 1) one
    LEFT JOIN pgshot.jobs j ON j.id = r.job_id
    LEFT JOIN LATERAL (
        SELECT min(output_id) FILTER (WHERE position = 1) AS first_id,
               min(storage_key) FILTER (WHERE position = 1) AS first_key,
               bool_or(output_id = 'diff') AS has_diff
        FROM pgshot.outputs WHERE job_id = r.job_id) o ON true
$$;

-- A run of schedule s now: its job (owned as the schedule is, told so that its end reaches
-- pgshot.schedule_run_ended) and its history row. NULL when the due time already ran.
CREATE FUNCTION pgshot.schedule_run(s pgshot.schedules, p_due_at timestamptz, p_triggered boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    job_id text := pgshot.new_id();
    opts jsonb := s.spec->'options';
BEGIN
    INSERT INTO pgshot.schedule_runs (id, schedule_id, job_id, url, due_at, triggered, expires_at)
    VALUES (pgshot.new_id(), s.id, job_id, s.spec->>'url', p_due_at, p_triggered,
            now() + make_interval(days => (s.spec->>'retentionDays')::integer))
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Not through insert_jobs: a schedule's runs do not take from its key's jobs per minute (the
    -- pattern runs at most once a minute), so that no run is lost to a rate limit.
    INSERT INTO pgshot.jobs (owner, enqueued_by, id, url, options, priority, max_attempts, schedule_id, told)
    VALUES (s.owner, s.enqueued_by, job_id, s.spec->>'url', opts - 'priority' - 'maxAttempts',
            coalesce((opts->>'priority')::integer, 0), coalesce((opts->>'maxAttempts')::integer, 3), s.id, true);
    RETURN job_id;
END
$$;

-- For workers, at every maintenance tick: turns every due schedule (at most max_schedules) into a
-- job, once per due time whichever workers tick at once (a due schedule is locked, skipped by
-- the others, and no longer due when they see it again). A run missed while no worker ran happens
-- once when one returns, not once per missed time: the next due time is counted from now. Also
-- deletes the runs past their retention, with their jobs. Returns the runs it started.
CREATE FUNCTION screenshot_schedule_tick(max_schedules integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules;
    next_due timestamptz;
    started integer := 0;
BEGIN
    IF max_schedules IS NULL OR max_schedules NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'max_schedules must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR s IN
        SELECT * FROM pgshot.schedules
        WHERE status = 'ACTIVE' AND next_run_at <= now()
        ORDER BY next_run_at
        LIMIT max_schedules
        FOR UPDATE SKIP LOCKED
    LOOP
        IF s.owner IS NOT NULL AND EXISTS (SELECT 1 FROM pgshot.api_keys k WHERE k.id = s.owner AND k.revoked_at IS NOT NULL) THEN
            UPDATE pgshot.schedules SET status = 'PAUSED', paused_reason = 'its API key was revoked' WHERE id = s.id;
            CONTINUE;
        END IF;
        IF pgshot.schedule_run(s, s.next_run_at, false) IS NOT NULL THEN
            started := started + 1;
        END IF;
        next_due := pgshot.schedule_first_due(s.spec, greatest(now(), s.next_run_at));
        UPDATE pgshot.schedules
        SET next_run_at = next_due,
            status = CASE WHEN next_due IS NULL THEN 'COMPLETED' ELSE status END,
            last_run_at = now(),
            execution_count = execution_count + 1
        WHERE id = s.id;
    END LOOP;
    WITH expired AS (
        SELECT id FROM pgshot.schedule_runs WHERE expires_at < now() ORDER BY expires_at LIMIT 1000
    ), gone AS (
        DELETE FROM pgshot.schedule_runs r USING expired WHERE r.id = expired.id RETURNING r.job_id
    )
    DELETE FROM pgshot.jobs j USING gone WHERE j.id = gone.job_id AND j.completed_at IS NOT NULL;
    RETURN started;
END
$$;
COMMENT ON FUNCTION screenshot_schedule_tick(integer) IS
    'for workers: start the runs of due schedules (once per due time across workers) and delete expired runs';

-- A schedule's run ended (pgshot.job_ended, for a job with a schedule_id): the run's row, the
-- schedule's counters, the auto-pause, and the deliveries (SCHEDULE_CAPTURED unless onlyOnChange
-- and nothing changed; SCHEDULE_FAILED with alertOnFailure). Returns whether it wrote one.
CREATE FUNCTION pgshot.schedule_run_ended(j pgshot.jobs) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules;
    r pgshot.schedule_runs;
    ok boolean := j.status = 'COMPLETED';
    failed boolean := j.status = 'FAILED';
    diff jsonb := j.metadata->'scheduleDiff';
    pause_after integer;
    target jsonb;
    written boolean := false;
BEGIN
    SELECT * INTO s FROM pgshot.schedules WHERE id = j.schedule_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE pgshot.schedule_runs SET
        status = j.status,
        finished_at = now(),
        changed = CASE WHEN ok THEN (diff->>'changed')::boolean END,
        diff_score = CASE WHEN ok THEN (diff->>'score')::double precision END,
        error_code = j.error_code,
        error_message = j.error_message,
        render_time_ms = (j.metadata->>'renderTimeMs')::integer,
        file_size = (SELECT sum(o.size) FROM pgshot.outputs o WHERE o.job_id = j.id AND o.output_id <> 'diff')
    WHERE schedule_runs.job_id = j.id
    RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    pause_after := (s.spec->>'autoPauseAfterFailures')::integer;
    UPDATE pgshot.schedules SET
        success_count = success_count + ok::integer,
        failure_count = failure_count + failed::integer,
        consecutive_failures = CASE WHEN ok THEN 0 WHEN failed THEN consecutive_failures + 1 ELSE consecutive_failures END
    WHERE id = s.id
    RETURNING * INTO s;
    IF failed AND s.status = 'ACTIVE' AND s.consecutive_failures >= pause_after THEN
        UPDATE pgshot.schedules SET
            status = 'PAUSED',
            paused_reason = format('paused after %s failed runs in a row; the last: %s', s.consecutive_failures,
                                   coalesce(j.error_code, 'FAILED'))
        WHERE id = s.id;
    END IF;
    -- The capture is kept as long as the schedule keeps its history, whatever the result retention.
    IF ok THEN
        UPDATE pgshot.jobs SET expires_at = r.expires_at WHERE id = j.id;
    END IF;
    IF ok OR (failed AND (s.spec->>'alertOnFailure')::boolean) THEN
        FOR target IN
            SELECT jsonb_build_object('url', s.spec->>'webhookUrl', 'secret', s.spec->>'webhookSecret')
            WHERE s.spec->>'webhookUrl' IS NOT NULL
            UNION ALL
            SELECT d FROM jsonb_array_elements(s.spec->'destinations') d
        LOOP
            CONTINUE WHEN ok AND coalesce((target->>'onlyOnChange')::boolean, (s.spec->>'onlyOnChange')::boolean)
                         AND r.changed IS NOT DISTINCT FROM false;
            INSERT INTO pgshot.webhook_deliveries (id, event, job_id, url, secret, body, next_attempt_at)
            VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''),
                    CASE WHEN ok THEN 'SCHEDULE_CAPTURED' ELSE 'SCHEDULE_FAILED' END,
                    j.id, target->>'url', target->>'secret',
                    jsonb_build_object(
                        'event', CASE WHEN ok THEN 'SCHEDULE_CAPTURED' ELSE 'SCHEDULE_FAILED' END,
                        'timestamp', pgshot.timestamp_json(now()),
                        'scheduleId', s.id,
                        'captureId', r.id,
                        'data', pgshot.tenant_json(pgshot.schedule_run_json(r))
                                || jsonb_build_object('scheduleName', s.spec->>'name'))::text,
                    now() + coalesce(pgshot.webhook_retry_delay(0), interval '0'));
            written := true;
        END LOOP;
    END IF;
    RETURN written;
END
$$;

CREATE FUNCTION pgshot.schedule_create(p_owner text, spec jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    canonical jsonb := pgshot.schedule_check(spec);
    first_due timestamptz := pgshot.schedule_first_due(canonical, now());
    s pgshot.schedules;
BEGIN
    INSERT INTO pgshot.schedules (id, owner, spec, status, next_run_at)
    VALUES (pgshot.new_id(), p_owner, canonical, CASE WHEN first_due IS NULL THEN 'COMPLETED' ELSE 'ACTIVE' END, first_due)
    RETURNING * INTO s;
    RETURN pgshot.schedule_json(s);
END
$$;

-- An update: the fields given replace the schedule's (null clears one, or gives back its
-- default); the whole is validated again. A change of pattern, zone or window moves the next run.
CREATE FUNCTION pgshot.schedule_update(p_owner text, p_id text, changes jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules := pgshot.schedule_lock(p_owner, p_id);
    canonical jsonb;
    next_due timestamptz;
BEGIN
    canonical := pgshot.schedule_merge(s.spec, changes);
    next_due := CASE WHEN s.status = 'PAUSED' THEN s.next_run_at ELSE pgshot.schedule_first_due(canonical, now()) END;
    UPDATE pgshot.schedules SET
        spec = canonical,
        next_run_at = next_due,
        status = CASE WHEN status = 'PAUSED' THEN status WHEN next_due IS NULL THEN 'COMPLETED' ELSE 'ACTIVE' END,
        updated_at = now()
    WHERE id = s.id
    RETURNING * INTO s;
    RETURN pgshot.schedule_json(s);
END
$$;

CREATE FUNCTION pgshot.schedule_pause(p_owner text, p_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules := pgshot.schedule_lock(p_owner, p_id);
BEGIN
    IF s.status = 'COMPLETED' THEN
        RAISE EXCEPTION 'schedule "%" is COMPLETED', p_id USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'move its endsAt to resume it';
    END IF;
    UPDATE pgshot.schedules SET status = 'PAUSED', paused_reason = coalesce(paused_reason, 'paused by request'),
                                updated_at = now()
    WHERE id = s.id RETURNING * INTO s;
    RETURN pgshot.schedule_json(s);
END
$$;

-- Resuming starts from now: the times that passed while paused do not run.
CREATE FUNCTION pgshot.schedule_resume(p_owner text, p_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules := pgshot.schedule_lock(p_owner, p_id);
    next_due timestamptz;
BEGIN
    IF s.status = 'PAUSED' THEN
        next_due := pgshot.schedule_first_due(s.spec, now());
        UPDATE pgshot.schedules SET status = CASE WHEN next_due IS NULL THEN 'COMPLETED' ELSE 'ACTIVE' END,
                                    paused_reason = NULL, consecutive_failures = 0, next_run_at = next_due,
                                    updated_at = now()
        WHERE id = s.id RETURNING * INTO s;
    END IF;
    RETURN pgshot.schedule_json(s);
END
$$;

-- One run now, besides the pattern's (whatever the schedule's status).
CREATE FUNCTION pgshot.schedule_trigger(p_owner text, p_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s pgshot.schedules := pgshot.schedule_lock(p_owner, p_id);
BEGIN
    PERFORM pgshot.schedule_run(s, now(), true);
    UPDATE pgshot.schedules SET last_run_at = now(), execution_count = execution_count + 1
    WHERE id = s.id RETURNING * INTO s;
    RETURN pgshot.schedule_json(s);
END
$$;

-- Deletes the schedule and its history; its runs' jobs stay until the job retention.
CREATE FUNCTION pgshot.schedule_delete(p_owner text, p_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgshot.schedule_lock(p_owner, p_id);
    DELETE FROM pgshot.schedules WHERE id = p_id;
END
$$;

CREATE FUNCTION pgshot.schedule_get(p_owner text, p_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s pgshot.schedules;
BEGIN
    SELECT * INTO s FROM pgshot.schedules WHERE id = p_id;
    IF NOT FOUND OR NOT pgshot.schedule_visible(s, p_owner) THEN
        RAISE EXCEPTION 'schedule "%" does not exist', p_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN pgshot.schedule_json(s);
END
$$;

-- The caller's schedules, newest first, as the vendor's ScheduleListResponse.
CREATE FUNCTION pgshot.schedule_list(p_owner text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('schedules', coalesce(jsonb_agg(pgshot.schedule_json(s) ORDER BY s.created_at DESC, s.id), '[]'),
                              'total', count(*))
    FROM pgshot.schedules s
    WHERE coalesce(s.owner, s.enqueued_by, '') = coalesce(p_owner, pgshot.caller())
$$;

-- A schedule's runs, newest first (at most max_runs), as the vendor's ScheduleHistoryResponse.
CREATE FUNCTION pgshot.schedule_history(p_owner text, p_id text, max_runs integer DEFAULT 50) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s pgshot.schedules;
    runs jsonb;
BEGIN
    IF max_runs IS NULL OR max_runs NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM pgshot.schedules WHERE id = p_id;
    IF NOT FOUND OR NOT pgshot.schedule_visible(s, p_owner) THEN
        RAISE EXCEPTION 'schedule "%" does not exist', p_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT coalesce(jsonb_agg(pgshot.schedule_run_json(r) ORDER BY r.created_at DESC, r.id), '[]') INTO runs
    FROM (SELECT * FROM pgshot.schedule_runs WHERE schedule_id = s.id
          ORDER BY created_at DESC, id LIMIT max_runs) r;
    RETURN jsonb_build_object('scheduleId', s.id, 'executions', runs,
                              'totalExecutions', (SELECT count(*) FROM pgshot.schedule_runs WHERE schedule_id = s.id));
END
$$;

-- For workers: what a schedule's run compares its capture with (worker/src/change.rs): the
-- schedule's diffThreshold and the first output of its latest completed run before this one,
-- while that result is kept (bytes, or its object with PGSHOT_STORAGE). No row for a job that is
-- not a schedule's run, or not held by this worker at this attempt; NULL bytes and key for a
-- schedule's first capture.
CREATE FUNCTION screenshot_schedule_previous(job_id text, worker_id text, attempt integer)
RETURNS TABLE (diff_threshold double precision, previous_job_id text, content_type text, bytes bytea, storage_key text)
LANGUAGE sql STABLE AS $$
    SELECT (s.spec->>'diffThreshold')::double precision, pj.id, o.content_type, o.bytes, o.storage_key
    FROM pgshot.jobs j
    JOIN pgshot.schedules s ON s.id = j.schedule_id
    LEFT JOIN LATERAL (
        SELECT r.job_id FROM pgshot.schedule_runs r
        WHERE r.schedule_id = s.id AND r.status = 'COMPLETED' AND r.job_id <> j.id
        ORDER BY r.created_at DESC
        LIMIT 1) prev ON true
    LEFT JOIN pgshot.jobs pj ON pj.id = prev.job_id AND pj.purged_at IS NULL
    LEFT JOIN pgshot.outputs o ON o.job_id = pj.id AND o.position = 1 AND o.content_type LIKE 'image/%'
    WHERE j.id = screenshot_schedule_previous.job_id
      AND j.worker_id = screenshot_schedule_previous.worker_id
      AND j.attempt = screenshot_schedule_previous.attempt
$$;

-- The SQL face of schedules: the calling role's own.
CREATE FUNCTION screenshot_schedule_create(spec jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_create(NULL, spec) $$;
COMMENT ON FUNCTION screenshot_schedule_create(jsonb) IS
    'create a schedule (the vendor''s CreateScheduleRequest as JSON); 22023 naming the field';
CREATE FUNCTION screenshot_schedule(id text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_get(NULL, id) $$;
CREATE FUNCTION screenshot_schedules() RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_list(NULL) $$;
CREATE FUNCTION screenshot_schedule_update(id text, changes jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_update(NULL, id, changes) $$;
CREATE FUNCTION screenshot_schedule_pause(id text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_pause(NULL, id) $$;
CREATE FUNCTION screenshot_schedule_resume(id text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_resume(NULL, id) $$;
CREATE FUNCTION screenshot_schedule_trigger(id text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_trigger(NULL, id) $$;
CREATE FUNCTION screenshot_schedule_delete(id text) RETURNS void
LANGUAGE sql AS $$ SELECT pgshot.schedule_delete(NULL, id) $$;
CREATE FUNCTION screenshot_schedule_history(id text, max_runs integer DEFAULT 50) RETURNS jsonb
LANGUAGE sql AS $$ SELECT pgshot.schedule_history(NULL, id, max_runs) $$;

-- Every function of the extension runs as its owner, with a fixed search_path, so that no object
-- a caller creates in a schema of their search_path (a table or operator named like one of ours)
-- is used in its place. Only schemas that no one but a superuser can create in: not the
-- extension's schema (public, by default, where the database owner creates what they like), whose
-- functions the bodies name with @extschema@. pg_temp last, so that a temporary object cannot
-- shadow one either. An operator in public taking numeric and integer would otherwise be picked
-- for `extract(...) > 10000` in a function that runs as the bootstrap superuser.
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
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pgshot, pg_temp', f);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', f, pgshot.role('admin'));
    END LOOP;
END
$$;

-- Except the functions that run no SQL: they read only their arguments or a setting, so neither
-- the owner's rights nor a search_path changes what they do, and both cost a claim or a complete
-- (they run at every write of a job: the rules, and the settings its UPDATEs read) a save and
-- restore of the settings at each call.
ALTER FUNCTION pgshot.job_row_check(pgshot.jobs) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.output_row_check(pgshot.outputs) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.result_retention() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.job_retention() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.notify_all_done() SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.retry_delay(integer) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.webhook_retry_delay(integer) SECURITY INVOKER RESET ALL;
-- And the checks of a claim's and a complete's arguments (since 0.7.0): they read only
-- their arguments and raise 22023. Called from a claim they run with its owner and search_path;
-- only the admin role may call them directly, as itself (they name pg_catalog's functions, so that
-- a caller's search_path changes nothing in them either).
ALTER FUNCTION pgshot.check_claim(text, text, integer, interval) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.check_lease(interval) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.check_outputs(pgshot.output[], text) SECURITY INVOKER RESET ALL;
ALTER FUNCTION pgshot.check_stored_outputs(pgshot.stored_output[], text) SECURITY INVOKER RESET ALL;

-- The queue's hot path plans its statements once per session: with a custom plan (the default
-- for the first executions of a statement with parameters) every claim and complete would plan
-- its queries again, about a fifth of their time. Their generic plans use the same indexes.
ALTER FUNCTION screenshot_claim(text, integer, interval) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_complete(text, text, integer, jsonb, pgshot.output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION screenshot_heartbeat(text, text, integer, interval) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.lock_attempt(text, text, integer) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgshot.complete_missed(text, text, integer) SET plan_cache_mode = force_generic_plan;

-- Who am I, and what are this database's roles called: anyone may ask (caller() is also the
-- default of jobs.enqueued_by).
GRANT EXECUTE ON FUNCTION pgshot.caller(), pgshot.role(text) TO PUBLIC;

-- Each role's part, granted to this database's roles (pgshot.roles), run once at install and by
-- the upgrade that made the roles per database. Its own search_path: it runs while the install
-- script's is the extension's schema.
CREATE FUNCTION pgshot.grant_privileges() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pgshot, pg_temp AS $$
DECLARE
    app text := quote_ident(pgshot.role('app'));
    worker text := quote_ident(pgshot.role('worker'));
    api text := quote_ident(pgshot.role('api'));
    admin text := quote_ident(pgshot.role('admin'));
    ext text := quote_ident('@extschema@');
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA pgshot TO %s, %s, %s, %s', app, worker, api, admin);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        %1$s.screenshot_enqueue(text, jsonb), %1$s.screenshot_enqueue_bulk(jsonb),
        %1$s.screenshot_job(text), %1$s.screenshot_cancel(text), %1$s.screenshot_result(text, text),
        %1$s.screenshot_watch(text), %1$s.screenshot_thumbnail(text),
        %1$s.screenshot_activity(interval, interval, text), %1$s.screenshot_error_counts(interval, text),
        %1$s.screenshot_schedule_create(jsonb), %1$s.screenshot_schedule(text), %1$s.screenshot_schedules(),
        %1$s.screenshot_schedule_update(text, jsonb), %1$s.screenshot_schedule_pause(text),
        %1$s.screenshot_schedule_resume(text), %1$s.screenshot_schedule_trigger(text),
        %1$s.screenshot_schedule_delete(text), %1$s.screenshot_schedule_history(text, integer)
        TO %2$s, %3$s', ext, app, api);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        %1$s.screenshot_claim(text, integer, interval), %1$s.screenshot_heartbeat(text, text, integer, interval),
        %1$s.screenshot_complete(text, text, integer, jsonb, pgshot.output[]),
        %1$s.screenshot_fail(text, text, integer, text, text, boolean), %1$s.screenshot_release(text, text, integer),
        %1$s.screenshot_rescue(integer), %1$s.screenshot_purge(integer),
        %1$s.screenshot_webhook_claim(text, integer, interval),
        %1$s.screenshot_webhook_record(text, text, integer, integer, text, integer),
        %1$s.screenshot_store_begin(text, text, integer, text[]),
        %1$s.screenshot_complete_stored(text, text, integer, jsonb, pgshot.stored_output[]),
        %1$s.screenshot_storage_sweep(integer), %1$s.screenshot_storage_forget(text[]),
        %1$s.screenshot_worker_beat(text, text, integer, integer, integer, text, integer),
        %1$s.screenshot_worker_stop(text),
        %1$s.screenshot_thumbnail_put(text, text, integer, text, integer, integer, bytea), %1$s.screenshot_rollup(),
        %1$s.screenshot_schedule_tick(integer), %1$s.screenshot_schedule_previous(text, text, integer)
        TO %2$s', ext, worker);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        pgshot.api_key_owner(text), pgshot.enqueue_owned(text, text, jsonb),
        pgshot.enqueue_bulk_owned(text, jsonb, integer, text, text),
        pgshot.job_json(pgshot.jobs), pgshot.bulk_json(pgshot.bulks, boolean), pgshot.bulk_cancel(text),
        pgshot.timestamp_json(timestamptz), pgshot.api_key_limits(text), pgshot.usage(text),
        %1$s.screenshot_workers(), pgshot.job_retry(text, text),
        pgshot.schedule_create(text, jsonb), pgshot.schedule_get(text, text), pgshot.schedule_list(text),
        pgshot.schedule_update(text, text, jsonb), pgshot.schedule_pause(text, text),
        pgshot.schedule_resume(text, text), pgshot.schedule_trigger(text, text), pgshot.schedule_delete(text, text),
        pgshot.schedule_history(text, text, integer)
        TO %2$s', ext, api);
    -- The dashboard's reads (pgshot-api, dashboard.rs).
    EXECUTE format('GRANT SELECT ON pgshot.jobs, pgshot.bulks, pgshot.outputs, pgshot.thumbnails,
        pgshot.webhook_deliveries, pgshot.webhook_attempts, pgshot.hourly, pgshot.workers,
        pgshot.schedules, pgshot.schedule_runs TO %s', api);
    EXECUTE format('GRANT SELECT ON pgshot.api_keys, pgshot.bulks, pgshot.jobs, pgshot.outputs,
        pgshot.webhook_deliveries, pgshot.webhook_attempts, pgshot.storage_garbage, pgshot.workers,
        pgshot.thumbnails, pgshot.hourly, pgshot.roles, pgshot.schedules, pgshot.schedule_runs TO %s', admin);
    EXECUTE format('GRANT %s, %s, %s TO %s', app, worker, api, admin);
END
$$;
SELECT pgshot.grant_privileges();
-- The database owner who created the extension administers it and hands its four roles out
-- (this database's only: ADMIN OPTION on another database's roles would administer that one).
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT role_name FROM pgshot.roles ORDER BY kind LOOP
        EXECUTE 'GRANT ' || pg_catalog.quote_ident(r) || ' TO @extowner@ WITH ADMIN OPTION';
    END LOOP;
END
$$;
-- Set-up only: nobody calls them again (the roles exist, the grants are made).
DROP FUNCTION pgshot.create_roles();
DROP FUNCTION pgshot.grant_privileges();
