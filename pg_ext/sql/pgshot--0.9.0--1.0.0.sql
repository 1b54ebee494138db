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
        %1$s.screenshot_activity(interval, interval, text), %1$s.screenshot_error_counts(interval, text)
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
        %1$s.screenshot_thumbnail_put(text, text, integer, text, integer, integer, bytea), %1$s.screenshot_rollup()
        TO %2$s', ext, worker);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        pgshot.api_key_owner(text), pgshot.enqueue_owned(text, text, jsonb),
        pgshot.enqueue_bulk_owned(text, jsonb, integer, text, text),
        pgshot.job_json(pgshot.jobs), pgshot.bulk_json(pgshot.bulks, boolean), pgshot.bulk_cancel(text),
        pgshot.timestamp_json(timestamptz), pgshot.api_key_limits(text), pgshot.usage(text),
        %1$s.screenshot_workers(), pgshot.job_retry(text, text)
        TO %2$s', ext, api);
    -- The dashboard's reads (pgshot-api, dashboard.rs).
    EXECUTE format('GRANT SELECT ON pgshot.jobs, pgshot.bulks, pgshot.outputs, pgshot.thumbnails,
        pgshot.webhook_deliveries, pgshot.webhook_attempts, pgshot.hourly, pgshot.workers TO %s', api);
    EXECUTE format('GRANT SELECT ON pgshot.api_keys, pgshot.bulks, pgshot.jobs, pgshot.outputs,
        pgshot.webhook_deliveries, pgshot.webhook_attempts, pgshot.storage_garbage, pgshot.workers,
        pgshot.thumbnails, pgshot.hourly, pgshot.roles TO %s', admin);
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
