-- pgshot tables. The user-facing functions live in the extension's schema (public by default);
-- the tables live in their own schema so that they do not crowd the user's.
--
-- State machine (DESIGN §2):
--
--   QUEUED --claim--> PROCESSING --complete--> COMPLETED --expires_at, purge--> bytes gone, status kept
--                     PROCESSING --fail, retryable and attempts left--> QUEUED (run_at = now + backoff)
--                     PROCESSING --fail final, or attempts used up--> FAILED
--                     PROCESSING --lease expired, rescue--> QUEUED or FAILED (LEASE_EXPIRED)
--   QUEUED --cancel--> CANCELLED
--   PROCESSING --cancel--> cancel_requested; CANCELLED at the next heartbeat, fail, complete or rescue
--
-- The attempt number is the fencing token: heartbeat, complete and fail name the worker and the
-- attempt they hold, and act only while both still match.

CREATE SCHEMA pgshot;
COMMENT ON SCHEMA pgshot IS 'pgshot job tables; use the screenshot_* functions rather than writing here';

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

-- REST API keys: only a SHA-256 of each key is kept; the key itself is shown once, at creation.
CREATE TABLE pgshot.api_keys (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    key_hash   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    -- Limits (NULL: none), set with `pgshot-api keys limit`: jobs created per minute (a token
    -- bucket of that size, refilled continuously) and jobs queued or processing at once.
    rate_limit      integer,
    max_in_flight   integer,
    -- The bucket: tokens left at rate_checked_at (NULL: full).
    rate_tokens     double precision,
    rate_checked_at timestamptz,
    CONSTRAINT api_keys_id_shape CHECK (id ~ '^key_[0-9a-z]{12}$'),
    CONSTRAINT api_keys_name_length CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT api_keys_hash_is_sha256 CHECK (octet_length(key_hash) = 32),
    CONSTRAINT api_keys_hash_unique UNIQUE (key_hash),
    CONSTRAINT api_keys_rate_limit_range CHECK (rate_limit BETWEEN 1 AND 1000000),
    CONSTRAINT api_keys_max_in_flight_range CHECK (max_in_flight BETWEEN 1 AND 1000000)
);

COMMENT ON TABLE pgshot.api_keys IS 'pgshot-api keys, stored hashed; jobs.owner names the key that created a job';

-- A bulk request (POST /v1/screenshots/bulk): its jobs point at it with jobs.bulk_id; its status
-- and counts are derived from them, never stored twice.
CREATE TABLE pgshot.bulks (
    id             text PRIMARY KEY,
    owner          text REFERENCES pgshot.api_keys (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    webhook_url    text,
    webhook_secret text,
    CONSTRAINT bulks_id_shape CHECK (id ~ '^[0-9a-z]{10,32}$'),
    CONSTRAINT bulks_secret_needs_webhook CHECK (webhook_secret IS NULL OR webhook_url IS NOT NULL),
    CONSTRAINT bulks_webhook_url_http CHECK (webhook_url ~ '^https?://')
);

COMMENT ON TABLE pgshot.bulks IS 'bulk requests; their jobs carry jobs.bulk_id';

CREATE SEQUENCE pgshot.jobs_enqueue_seq;

CREATE TABLE pgshot.jobs (
    id               text PRIMARY KEY,
    -- The API key that created the job; NULL for jobs enqueued from SQL.
    owner            text REFERENCES pgshot.api_keys (id),
    bulk_id          text REFERENCES pgshot.bulks (id),
    -- The job's place in its bulk request (jobs of one request share created_at).
    bulk_position    integer,
    status           text NOT NULL DEFAULT 'QUEUED',
    url              text NOT NULL,
    -- Canonical render options (pgshot-job's ScreenshotOptions), without the columns below.
    options          jsonb NOT NULL DEFAULT '{}',
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    worker_id        text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    idempotency_key  text,
    webhook_url      text,
    webhook_secret   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    expires_at       timestamptz,
    purged_at        timestamptz,
    error_code       text,
    error_message    text,
    metadata         jsonb,
    -- One entry per failed attempt: {attempt, at, code, message, worker, startedAt} (worker and
    -- startedAt since 0.4.0).
    errors           jsonb NOT NULL DEFAULT '[]',
    -- The database role that enqueued the job (pgshot.caller(), the default set in queue.sql);
    -- a member of the app role sees only its own jobs. NULL for jobs enqueued before 0.2.0.
    enqueued_by      text,
    -- Someone waits for this job (a sync capture, or screenshot_watch): its end is sent on
    -- pgshot_job_done. NULL otherwise, unless pgshot.notify_all_done is on.
    watched          boolean,
    -- Someone is told of this job's end: it is watched, has a webhook_url or belongs to a bulk
    -- (rule jobs_told_iff_listened). The end-of-job trigger's WHEN clause reads this one column
    -- (since 0.7.0): Postgres reads that clause back from its stored text at every complete.
    told             boolean NOT NULL DEFAULT false,
    -- The order jobs were enqueued in (since 0.9.0; NULL in jobs that had finished before): jobs
    -- of one owner with the same priority and run_at, as one bulk request's or one transaction's
    -- are, are claimed first in, first out. Before, the random id broke those ties: a bulk
    -- request's jobs ran in no order, and the claims read their rows all over the table.
    enqueue_seq      bigint DEFAULT nextval('pgshot.jobs_enqueue_seq'),
    -- The schedule whose run this job is (since 1.0.0; pgshot.schedule_runs). Not a foreign key:
    -- a deleted schedule leaves its runs' jobs to the job retention.
    schedule_id      text

    -- The state machine's rules (a PROCESSING job has a lease and a worker, a terminal one a
    -- completed_at, ...) and the shapes of id, url, error_code, options and errors are the one CHECK constraint
    -- jobs_rules, added in queue.sql once its function exists: pgshot.job_row_check(jobs), whose rules
    -- are pgshot_job::broken_rule (job/src/row_rules.rs). A row breaking one is refused with
    -- 23514 and the rule's name (jobs_url_http, jobs_processing_iff_leased, ...). The url rule
    -- keeps a row written any other way from sending a browser to file:, chrome: or javascript:
    -- (the worker re-validates as well).
);

COMMENT ON TABLE pgshot.jobs IS 'screenshot jobs: one row per job, its state, lease and result metadata';

-- The claim's order within one owner (an API key, or for SQL enqueues the role): claiming reads
-- it in order and stops, and a skip scan of its first column lists the owners with queued jobs.
CREATE INDEX jobs_claim_order ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), priority, run_at, enqueue_seq)
    WHERE status = 'QUEUED';
-- Jobs running: per owner, for fair shares and the in-flight limit, and all of them, whose
-- expired leases the rescue finds by reading it whole (it holds only the jobs in flight, a few per
-- worker). One index and not two: a claim writes an entry into every index of the table.
CREATE INDEX jobs_processing ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), lease_expires_at)
    WHERE status = 'PROCESSING';
CREATE INDEX jobs_result_expiry ON pgshot.jobs (expires_at) WHERE status = 'COMPLETED' AND purged_at IS NULL;
-- Idempotency keys are per owner: two API keys, or two SQL roles, may use the same key for
-- different jobs (and a collision names no job of another owner).
CREATE UNIQUE INDEX jobs_idempotency_key ON pgshot.jobs ((coalesce(owner, enqueued_by, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_bulk ON pgshot.jobs (bulk_id, bulk_position) WHERE bulk_id IS NOT NULL;
CREATE INDEX bulks_owner_recent ON pgshot.bulks (owner, created_at DESC, id DESC);
-- An API key's jobs, newest first (GET /v1/screenshots/jobs).
CREATE INDEX jobs_owner_recent ON pgshot.jobs (owner, created_at DESC, id DESC) WHERE owner IS NOT NULL;

CREATE TABLE pgshot.outputs (
    -- The job's. Not a foreign key (since 0.7.0): its check cost every complete a query of
    -- pgshot.jobs, and the only writers are the two completes, which insert the outputs in the
    -- statement that completes the job (no role is granted INSERT). Deleting jobs deletes their
    -- outputs (trigger jobs_deleted, queue.sql).
    job_id       text NOT NULL,
    output_id    text NOT NULL,
    position     integer NOT NULL,
    output_type  text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    -- NULL once the result expired and was purged; the row stays for the job's history.
    bytes        bytea,
    metadata     jsonb NOT NULL DEFAULT '{}',
    -- With PGSHOT_STORAGE=s3://...: the object holding the bytes (bytes is then NULL) and its
    -- SHA-256. NULL in both once purged.
    storage_key  text,
    sha256       bytea,
    -- The positions of a job's outputs are 1, 2, ... in the order the worker gave them: the
    -- completes number them WITH ORDINALITY (a unique index on them was dropped in 0.7.0).
    PRIMARY KEY (job_id, output_id)
    -- Its rules (type, id shape, size, metadata, bytes or storage, sha256) are the one CHECK
    -- constraint outputs_rules, added in queue.sql, as jobs_rules is.
);

COMMENT ON TABLE pgshot.outputs IS 'result bytes of completed jobs, one row per output';

-- Images and PDFs are already compressed: store them out of line without another try at it.
ALTER TABLE pgshot.outputs ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- Objects in the bucket that no output refers to: an attempt's uploads until it completes (due an
-- hour later, in case it never does: a worker killed between upload and complete, a fenced-out
-- or cancelled attempt), and results purged or deleted (due at once). Workers delete them
-- (screenshot_storage_sweep) and then forget them (screenshot_storage_forget).
CREATE TABLE pgshot.storage_garbage (
    key    text PRIMARY KEY,
    job_id text,
    due_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgshot.storage_garbage IS 'bucket objects to delete (PGSHOT_STORAGE=s3): orphaned uploads and purged results';
CREATE INDEX storage_garbage_due ON pgshot.storage_garbage (due_at);

-- Webhook outbox: a delivery is written in the transaction that makes its job COMPLETED or
-- FAILED (or finishes a bulk request), so a finished job never loses its webhook, and workers
-- deliver it at least once, with the same id on every attempt.
CREATE TABLE pgshot.webhook_deliveries (
    id               text PRIMARY KEY,
    event            text NOT NULL,
    job_id           text REFERENCES pgshot.jobs (id) ON DELETE CASCADE,
    bulk_id          text REFERENCES pgshot.bulks (id) ON DELETE CASCADE,
    url              text NOT NULL,
    secret           text,
    -- Exactly the bytes sent (and signed) on every attempt.
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'PENDING',
    attempt          integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    worker_id        text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    last_status_code integer,
    last_error       text,
    CONSTRAINT webhook_deliveries_event_known
        CHECK (event IN ('JOB_COMPLETED', 'JOB_FAILED', 'BULK_COMPLETED', 'SCHEDULE_CAPTURED', 'SCHEDULE_FAILED')),
    CONSTRAINT webhook_deliveries_status_known CHECK (status IN ('PENDING', 'DELIVERING', 'DELIVERED', 'FAILED')),
    CONSTRAINT webhook_deliveries_delivering_iff_leased
        CHECK ((status = 'DELIVERING') = (lease_expires_at IS NOT NULL)),
    CONSTRAINT webhook_deliveries_finished_iff_final
        CHECK ((status IN ('DELIVERED', 'FAILED')) = (finished_at IS NOT NULL)),
    CONSTRAINT webhook_deliveries_one_subject CHECK ((job_id IS NULL) <> (bulk_id IS NULL))
);

CREATE INDEX webhook_deliveries_due ON pgshot.webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_leased ON pgshot.webhook_deliveries (lease_expires_at) WHERE status = 'DELIVERING';
CREATE INDEX webhook_deliveries_job ON pgshot.webhook_deliveries (job_id, created_at) WHERE job_id IS NOT NULL;
CREATE UNIQUE INDEX webhook_deliveries_one_per_bulk ON pgshot.webhook_deliveries (bulk_id) WHERE bulk_id IS NOT NULL;

CREATE TABLE pgshot.webhook_attempts (
    delivery_id text NOT NULL REFERENCES pgshot.webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt),
    CONSTRAINT webhook_attempts_outcome CHECK (status_code IS NOT NULL OR error IS NOT NULL)
);

COMMENT ON TABLE pgshot.webhook_deliveries IS 'webhook outbox: one row per delivery, retried until delivered or given up';
COMMENT ON TABLE pgshot.webhook_attempts IS 'every webhook attempt: status code or error, and duration';

-- Workers, as they report themselves (screenshot_worker_beat, at every maintenance tick): the
-- dashboard's and SQL's view of who is rendering. A row not seen for a day is deleted.
CREATE TABLE pgshot.workers (
    id               text PRIMARY KEY,
    host             text NOT NULL,
    pid              integer,
    version          text NOT NULL,
    concurrency      integer NOT NULL,
    in_flight        integer NOT NULL DEFAULT 0,
    browser_restarts integer NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now(),
    stopped_at       timestamptz,
    CONSTRAINT workers_id_length CHECK (length(id) BETWEEN 1 AND 200),
    CONSTRAINT workers_host_length CHECK (length(host) BETWEEN 1 AND 255),
    CONSTRAINT workers_concurrency_range CHECK (concurrency BETWEEN 1 AND 1000),
    CONSTRAINT workers_in_flight_range CHECK (in_flight BETWEEN 0 AND concurrency),
    CONSTRAINT workers_restarts_nonnegative CHECK (browser_restarts >= 0)
);
COMMENT ON TABLE pgshot.workers IS 'workers and their last heartbeat (screenshot_worker_beat); alive while seen within a minute';

-- One small picture per completed screenshot, made by the worker for the dashboard: never an
-- output of the job (not listed, not counted, not sent anywhere), deleted when the result expires.
CREATE TABLE pgshot.thumbnails (
    job_id       text PRIMARY KEY REFERENCES pgshot.jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    bytes        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT thumbnails_content_type_image CHECK (content_type IN ('image/jpeg', 'image/webp', 'image/png')),
    CONSTRAINT thumbnails_bytes_small CHECK (octet_length(bytes) BETWEEN 1 AND 262144),
    CONSTRAINT thumbnails_dimensions CHECK (width BETWEEN 1 AND 1024 AND height BETWEEN 1 AND 1024)
);
COMMENT ON TABLE pgshot.thumbnails IS 'a small JPEG of each completed screenshot, for the dashboard; not an output';

-- Finished jobs per hour and owner (screenshot_rollup, at every maintenance tick), kept after the
-- jobs themselves are deleted: history without scanning pgshot.jobs.
CREATE TABLE pgshot.hourly (
    hour          timestamptz NOT NULL,
    owner         text NOT NULL,
    completed     bigint NOT NULL,
    failed        bigint NOT NULL,
    cancelled     bigint NOT NULL,
    render_ms_p50 double precision,
    render_ms_p95 double precision,
    error_codes   jsonb NOT NULL DEFAULT '{}',
    -- Bytes of the outputs of the jobs completed that hour (since 1.0.0): GET /v1/usage's
    -- bandwidth, read from here rather than from every job an owner ever had.
    bytes         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, owner),
    CONSTRAINT hourly_on_the_hour CHECK (extract(epoch FROM hour) % 3600 = 0),
    CONSTRAINT hourly_counts_nonnegative CHECK (completed >= 0 AND failed >= 0 AND cancelled >= 0 AND bytes >= 0),
    CONSTRAINT hourly_error_codes_object CHECK (jsonb_typeof(error_codes) = 'object')
);
COMMENT ON TABLE pgshot.hourly IS 'finished jobs per hour and owner (API key or role): counts, render time, error codes';

-- Jobs by the time they finished: the last hour's activity and the hourly roll-up read a range
-- of it instead of the whole table. Only finished jobs are in it.
CREATE INDEX jobs_finished ON pgshot.jobs (completed_at) WHERE completed_at IS NOT NULL;

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


-- pg_dump leaves out extension tables unless they are marked as configuration.
SELECT pg_catalog.pg_extension_config_dump('pgshot.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.bulks', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.jobs', '');
-- A sequence's place is dumped only when it is marked itself.
SELECT pg_catalog.pg_extension_config_dump('pgshot.jobs_enqueue_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.outputs', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.webhook_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.webhook_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.storage_garbage', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.workers', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.thumbnails', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.hourly', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.schedules', '');
SELECT pg_catalog.pg_extension_config_dump('pgshot.schedule_runs', '');

-- A trusted extension's objects belong to the bootstrap superuser: let the database owner who
-- created it use and administer the queue.
GRANT USAGE ON SCHEMA pgshot TO @extowner@;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON pgshot.api_keys, pgshot.bulks, pgshot.jobs, pgshot.outputs, pgshot.webhook_deliveries, pgshot.webhook_attempts
    TO @extowner@;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgshot.workers, pgshot.thumbnails, pgshot.hourly TO @extowner@;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgshot.schedules, pgshot.schedule_runs TO @extowner@;
