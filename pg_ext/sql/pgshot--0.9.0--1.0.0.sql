-- pgshot 0.9.0 -> 1.0.0 (the changes since 0.9.0 gather here until 1.0.0 is released).
-- Security (issue 27):
-- * Every function's search_path is pg_catalog, pgshot, pg_temp: the extension's schema (public
--   by default, writable by the database owner) is no longer on it, so an operator or function a
--   caller creates there is never picked inside a function that runs as the bootstrap superuser.
--   The one body that called a function of that schema names it with its schema.
-- * Roles per database: pgshot_<database>_app, _worker, _api and _admin (pgshot.roles,
--   pgshot.role(kind)) replace the cluster-wide pgshot_app, pgshot_worker, pgshot_api and
--   pgshot_admin, whose grants in this database are revoked. Their members are given this
--   database's roles, so that nothing stops working at the upgrade; the old roles are left for the
--   other databases of the cluster that still use them (drop them once every one is upgraded).
-- * pgshot.visible() shows every job only to members of the api role (so admin, the owner and
--   superusers); any other role sees the jobs it enqueued, not every job.
-- * SQL idempotency keys are per enqueuing role (jobs_idempotency_key), as API keys' are per key.
-- * GET /v1/usage (pgshot.usage) reads the hourly roll-up, which now keeps the bytes of each
--   hour's completed outputs (pgshot.hourly.bytes, filled in here for the hours rolled up before),
--   and the jobs finished since; no longer every job of the owner.
-- * screenshot_purge keeps a job or bulk whose webhook is still to be delivered past the job
--   retention; pgshot.job_retry keeps an SQL job the enqueuing role's; screenshot_watch checks
--   that the job is the caller's before it writes to it.
-- * Webhook bodies carry neither storage keys nor the workers of the attempts (pgshot.tenant_json).
-- Schedules (issue 28):
-- * pgshot.schedules and pgshot.schedule_runs; jobs.schedule_id (a run's job); the workers' tick
--   (screenshot_schedule_tick), the SQL functions screenshot_schedule*, pgshot.schedule_* for
--   pgshot-api, and SCHEDULE_CAPTURED / SCHEDULE_FAILED webhook deliveries.

-- This database's four group roles (queue.sql, "Privileges"): roles are shared by every database
-- of a cluster, so each database where pgshot is installed has roles of its own, named after it
-- (pgshot_<database>_app, ..._worker, ..._api, ..._admin), and grants nothing to another's. Not
-- dumped: a restore runs CREATE EXTENSION, which makes the roles of the database restored into.
CREATE TABLE pgshot.roles (
    kind      text PRIMARY KEY,
    role_name name NOT NULL,
    CONSTRAINT roles_kind_known CHECK (kind IN ('app', 'worker', 'api', 'admin')),
    CONSTRAINT roles_role_name_unique UNIQUE (role_name)
);

COMMENT ON TABLE pgshot.roles IS 'this database''s pgshot group roles by kind (app, worker, api, admin)';

-- The name of this database's group role of a kind (app, worker, api, admin); NULL for another
-- kind. Anyone may ask: GRANT (SELECT pgshot.role('worker')) is how a login role is given one.
CREATE FUNCTION pgshot.role(kind text) RETURNS name
LANGUAGE sql STABLE AS $$
    SELECT r.role_name FROM pgshot.roles r WHERE r.kind = role.kind
$$;

CREATE OR REPLACE FUNCTION pgshot.visible(j pgshot.jobs) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT j.enqueued_by IS NOT DISTINCT FROM pgshot.caller()
        OR pg_catalog.pg_has_role(pgshot.caller()::name, pgshot.role('api'), 'MEMBER')
$$;

CREATE OR REPLACE FUNCTION pgshot.check_lease(lease interval) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF lease IS NULL OR lease < interval '1 second' OR lease > interval '1 hour' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 hour'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = pg_catalog.format('got %s', lease);
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION pgshot.check_claim(worker_id text, max_name text, max_value integer, lease interval)
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

CREATE OR REPLACE FUNCTION pgshot.bulk_cancel(p_bulk_id text) RETURNS jsonb
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

DROP INDEX pgshot.jobs_idempotency_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
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

ALTER TABLE pgshot.hourly ADD COLUMN bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE pgshot.hourly DROP CONSTRAINT hourly_counts_nonnegative;
ALTER TABLE pgshot.hourly ADD CONSTRAINT hourly_counts_nonnegative
    CHECK (completed >= 0 AND failed >= 0 AND cancelled >= 0 AND bytes >= 0);
UPDATE pgshot.hourly h
SET bytes = coalesce((SELECT sum(o.size) FROM pgshot.jobs j JOIN pgshot.outputs o ON o.job_id = j.id
                      WHERE j.completed_at >= h.hour AND j.completed_at < h.hour + interval '1 hour'
                        AND j.status = 'COMPLETED' AND coalesce(j.owner, j.enqueued_by, '') = h.owner), 0);
CREATE OR REPLACE FUNCTION screenshot_rollup() RETURNS integer
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

CREATE OR REPLACE FUNCTION pgshot.usage(p_owner text) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION pgshot.job_retry(p_job_id text, p_new_id text) RETURNS text
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

CREATE OR REPLACE FUNCTION screenshot_watch(id text) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION pgshot.webhook_body(j pgshot.jobs) RETURNS text
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

-- The cluster-wide roles of 0.9.0 lose every grant in this database.
DO $$
DECLARE
    old text;
    f regprocedure;
BEGIN
    FOREACH old IN ARRAY ARRAY['pgshot_app', 'pgshot_worker', 'pgshot_api', 'pgshot_admin'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = old);
        FOR f IN
            SELECT d.objid::regprocedure
            FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
            WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' AND e.extname = 'pgshot'
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %I', f, old);
        END LOOP;
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA pgshot FROM %I', old);
        EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA pgshot FROM %I', old);
    END LOOP;
END
$$;

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

-- Whoever was a member of a 0.9.0 role (a login role, not one of those roles) is a member of
-- this database's role of that kind, with the same ADMIN OPTION.
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT r.kind, u.rolname AS member, am.admin_option
        FROM pgshot.roles r
        JOIN pg_catalog.pg_roles g ON g.rolname = 'pgshot_' || r.kind
        JOIN pg_catalog.pg_auth_members am ON am.roleid = g.oid
        JOIN pg_catalog.pg_roles u ON u.oid = am.member
        WHERE u.rolname NOT IN ('pgshot_app', 'pgshot_worker', 'pgshot_api', 'pgshot_admin')
    LOOP
        EXECUTE pg_catalog.format('GRANT %I TO %I%s', pgshot.role(m.kind), m.member,
                                  CASE WHEN m.admin_option THEN ' WITH ADMIN OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- Schedules (issue 28): recurring captures, as the vendor's /v1/schedules; a due schedule becomes
-- a job (jobs.schedule_id) at the workers' schedule tick, each run a row of pgshot.schedule_runs.
ALTER TABLE pgshot.jobs ADD COLUMN schedule_id text;
ALTER TABLE pgshot.webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_known;
ALTER TABLE pgshot.webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_known
    CHECK (event IN ('JOB_COMPLETED', 'JOB_FAILED', 'BULK_COMPLETED', 'SCHEDULE_CAPTURED', 'SCHEDULE_FAILED'));

-- Schedules (since 1.0.0): recurring captures of one URL. A due schedule becomes an ordinary job
-- (jobs.schedule_id) at a worker's maintenance tick (screenshot_schedule_tick), and each run is a
-- row of pgshot.schedule_runs, its history. The request is kept whole and canonical in `spec`
-- (pgshot.schedule_check), webhook secrets included, which no answer shows.
--
--   ACTIVE --pause / autoPauseAfterFailures--> PAUSED --resume--> ACTIVE
--   ACTIVE --past endsAt, or a pattern that never matches again--> COMPLETED
CREATE TABLE pgshot.schedules (
    id                   text PRIMARY KEY,
    -- The API key that owns it (NULL: made in SQL, owned by enqueued_by, as jobs are).
    owner                text REFERENCES pgshot.api_keys (id),
    enqueued_by          text,
    spec                 jsonb NOT NULL,
    status               text NOT NULL DEFAULT 'ACTIVE',
    paused_reason        text,
    -- The due time of the next run; the tick claims due schedules through schedules_due.
    next_run_at          timestamptz,
    last_run_at          timestamptz,
    execution_count      integer NOT NULL DEFAULT 0,
    success_count        integer NOT NULL DEFAULT 0,
    failure_count        integer NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_id_shape CHECK (id ~ '^[0-9a-z]{16}$'),
    CONSTRAINT schedules_status_known CHECK (status IN ('ACTIVE', 'PAUSED', 'COMPLETED')),
    CONSTRAINT schedules_active_has_next_run CHECK (status <> 'ACTIVE' OR next_run_at IS NOT NULL),
    CONSTRAINT schedules_paused_reason_iff_paused CHECK ((status = 'PAUSED') = (paused_reason IS NOT NULL)),
    CONSTRAINT schedules_spec_object CHECK (jsonb_typeof(spec) = 'object'),
    CONSTRAINT schedules_counts_nonnegative
        CHECK (execution_count >= 0 AND success_count >= 0 AND failure_count >= 0 AND consecutive_failures >= 0)
);
COMMENT ON TABLE pgshot.schedules IS 'recurring captures: a cron pattern in a time zone, the capture options, delivery and change detection';
-- Only active schedules, by due time: a tick reads the due ones and nothing else.
CREATE INDEX schedules_due ON pgshot.schedules (next_run_at) WHERE status = 'ACTIVE';
CREATE INDEX schedules_by_owner ON pgshot.schedules ((coalesce(owner, enqueued_by, '')), created_at);

-- One row per run of a schedule: the job it became, and what came of it.
CREATE TABLE pgshot.schedule_runs (
    id             text PRIMARY KEY,
    schedule_id    text NOT NULL REFERENCES pgshot.schedules (id) ON DELETE CASCADE,
    -- Not a foreign key: the job may be deleted by the job retention before its run's history.
    job_id         text NOT NULL,
    url            text NOT NULL,
    -- The time the pattern named (the time of the trigger for a triggered run).
    due_at         timestamptz NOT NULL,
    triggered      boolean NOT NULL DEFAULT false,
    status         text NOT NULL DEFAULT 'QUEUED',
    -- Change detection (the worker compares the capture with the previous completed run's):
    -- changed is NULL for a first capture, or when the two could not be compared.
    changed        boolean,
    diff_score     double precision,
    error_code     text,
    error_message  text,
    render_time_ms integer,
    file_size      bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    -- created_at + the schedule's retentionDays: the run and its job are deleted then.
    expires_at     timestamptz NOT NULL,
    CONSTRAINT schedule_runs_status_known CHECK (status IN ('QUEUED', 'COMPLETED', 'FAILED', 'CANCELLED')),
    CONSTRAINT schedule_runs_finished_iff_ended CHECK ((status <> 'QUEUED') = (finished_at IS NOT NULL)),
    CONSTRAINT schedule_runs_diff_score_fraction CHECK (diff_score BETWEEN 0 AND 1)
);
COMMENT ON TABLE pgshot.schedule_runs IS 'every run of a schedule: its job, status, change detection and error';
-- A due time runs once, however many workers tick at once (the tick's row locks already see to
-- it; this is the proof in the table).
CREATE UNIQUE INDEX schedule_runs_once_per_due_time ON pgshot.schedule_runs (schedule_id, due_at) WHERE NOT triggered;
CREATE INDEX schedule_runs_history ON pgshot.schedule_runs (schedule_id, created_at);
CREATE UNIQUE INDEX schedule_runs_job ON pgshot.schedule_runs (job_id);
CREATE INDEX schedule_runs_expiry ON pgshot.schedule_runs (expires_at);

SELECT pg_catalog.pg_extension_config_dump('pgshot.schedules', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.schedule_runs', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON pgshot.schedules, pgshot.schedule_runs TO @extowner@;

-- What schedules ask of Rust (pg_ext/src/schedule.rs): a request validated against pgshot-job,
-- the next due time of a pattern in a time zone, and ids as jobs have them.
CREATE FUNCTION pgshot."schedule_check"(
	"spec" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_check_wrapper';
CREATE FUNCTION pgshot."schedule_merge"(
	"stored" jsonb, /* JsonB */
	"changes" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_merge_wrapper';
CREATE FUNCTION pgshot."schedule_next"(
	"pattern" TEXT, /* & str */
	"tz" TEXT, /* & str */
	"after" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS timestamp with time zone /* Option < TimestampWithTimeZone > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_next_wrapper';
CREATE FUNCTION pgshot."new_id"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'new_id_wrapper';

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

GRANT EXECUTE ON FUNCTION pgshot.caller(), pgshot.role(text) TO PUBLIC;

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
-- The extension's owner administers this database's roles and hands them out.
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT role_name FROM pgshot.roles ORDER BY kind LOOP
        EXECUTE 'GRANT ' || pg_catalog.quote_ident(r) || ' TO '
            || pg_catalog.quote_ident((SELECT a.rolname FROM pg_catalog.pg_extension e
                                       JOIN pg_catalog.pg_roles a ON a.oid = e.extowner WHERE e.extname = 'pgshot'))
            || ' WITH ADMIN OPTION';
    END LOOP;
END
$$;
DROP FUNCTION pgshot.create_roles();
DROP FUNCTION pgshot.grant_privileges();
