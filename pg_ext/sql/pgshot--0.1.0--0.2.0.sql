-- pgshot 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pgshot UPDATE, in one transaction: it applies
-- whole or not at all. tests/tests/upgrade.rs installs 0.1.0 (pg_ext/sql/released/), fills it with
-- jobs in every state, runs this, and compares the result with a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION pgshot UPDATE" to load this file. \quit

-- URLs a browser or the webhook client may be sent to: http(s) only, whoever writes the row.
-- Every row 0.1.0 wrote went through the same check at enqueue.
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_url_http CHECK (url ~ '^https?://');
ALTER TABLE pgshot.jobs ADD CONSTRAINT jobs_webhook_url_http CHECK (webhook_url ~ '^https?://');
ALTER TABLE pgshot.bulks ADD CONSTRAINT bulks_webhook_url_http CHECK (webhook_url ~ '^https?://');

-- pgshot.job_retention (pg_ext/src/settings.rs).
CREATE FUNCTION pgshot."job_retention"() RETURNS interval
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'job_retention_wrapper';

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

-- Every function of the extension runs with a fixed search_path, so that no object a user creates
-- in a schema of their search_path (a table or operator named like one of ours) is used in its
-- place. pg_temp last: a temporary object cannot shadow one either.
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
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pgshot, pg_temp', f, '@extschema@');
    END LOOP;
END
$$;
