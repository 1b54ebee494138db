-- pgshot 0.8.0 -> 0.9.0: jobs with the same owner, priority and run_at are claimed in the order
-- they were enqueued. Before, the random job id broke those ties: a bulk request's jobs (which
-- share run_at) ran in no order, and the claims read their rows all over the table.
-- * jobs.enqueue_seq, from the sequence pgshot.jobs_enqueue_seq, numbers every job at enqueue.
--   The jobs not finished at the upgrade are numbered in the order they were created (a bulk
--   request's by position); the finished ones keep NULL, as no claim reads them again.
-- * jobs_claim_order ends with enqueue_seq instead of id, and screenshot_claim reads it so.

CREATE SEQUENCE pgshot.jobs_enqueue_seq;
-- Added without a default and then given one, so that the upgrade does not rewrite the table
-- (a volatile default would fill every row).
ALTER TABLE pgshot.jobs ADD COLUMN enqueue_seq bigint;
ALTER TABLE pgshot.jobs ALTER COLUMN enqueue_seq SET DEFAULT nextval('pgshot.jobs_enqueue_seq');
WITH numbered AS (
    SELECT j.id, row_number() OVER (ORDER BY j.created_at, j.bulk_position, j.id) AS n
    FROM pgshot.jobs j
    WHERE j.completed_at IS NULL
)
UPDATE pgshot.jobs j SET enqueue_seq = numbered.n FROM numbered WHERE j.id = numbered.id;
SELECT pg_catalog.setval('pgshot.jobs_enqueue_seq', coalesce(max(enqueue_seq), 1), max(enqueue_seq) IS NOT NULL)
FROM pgshot.jobs;
SELECT pg_catalog.pg_extension_config_dump('pgshot.jobs_enqueue_seq', '');

DROP INDEX pgshot.jobs_claim_order;
CREATE INDEX jobs_claim_order ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), priority, run_at, enqueue_seq)
    WHERE status = 'QUEUED';

CREATE OR REPLACE FUNCTION screenshot_claim(worker_id text, max_jobs integer DEFAULT 1, lease interval DEFAULT '30 seconds')
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

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION screenshot_claim(text, integer, interval) SECURITY DEFINER '
                   'SET search_path = pg_catalog, %I, pgshot, pg_temp', '@extschema@');
END
$$;
ALTER FUNCTION screenshot_claim(text, integer, interval) SET plan_cache_mode = force_generic_plan;
