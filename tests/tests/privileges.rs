//! Who can do what in a database, attacked: each test performs one attack of the security review
//! (issue 27) and passes only when it fails. A database owner who plants operators in public gains
//! nothing from the extension's functions (they run as the bootstrap superuser); two databases of
//! one cluster share no role; a role outside the app role sees no one else's jobs; one role's
//! idempotency key is not another's.

use pgshot_tests::{cluster, connect_url, sqlstate, Client};
use serde_json::Value;

const DENIED: &str = "42501";
const NO_DATA_FOUND: &str = "P0002";

/// A new login role owning a new database (not cloned from the tests' template), in which it
/// creates the extension itself, as a database owner who is not a superuser can (it is trusted).
/// Returns the superuser's connection to it and the owner's.
fn owned_database(tag: &str) -> (Client, Client, String, String) {
    let cl = cluster();
    let owner = format!("owner_{tag}_{}", std::process::id());
    let db = format!("db_{tag}_{}", std::process::id());
    let mut postgres = cl.connect("postgres");
    postgres.batch_execute(&format!("CREATE ROLE {owner} LOGIN")).unwrap();
    postgres.batch_execute(&format!("CREATE DATABASE {db} OWNER {owner}")).unwrap();
    let mut mine = connect_url(&format!("host=127.0.0.1 port={} user={owner} dbname={db}", cl.port()));
    mine.batch_execute("CREATE EXTENSION pgshot").unwrap();
    (cl.connect(&db), mine, owner, db)
}

fn login(su: &mut Client, name: &str, kind: Option<&str>) {
    su.batch_execute(&format!("CREATE ROLE {name} LOGIN")).unwrap();
    if let Some(kind) = kind {
        let role: String = su.query_one("SELECT pgshot.role($1)::text", &[&kind]).unwrap().get(0);
        su.batch_execute(&format!("GRANT \"{role}\" TO {name}")).unwrap();
    }
}

fn connect_as(user: &str, db: &str) -> Client {
    connect_url(&format!("host=127.0.0.1 port={} user={user} dbname={db}", cluster().port()))
}

fn is_superuser(su: &mut Client, role: &str) -> bool {
    su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role]).unwrap().get(0)
}

/// Types that mixed-type expressions combine, and the binary operators they are combined with.
const TRAP_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "interval",
    "timestamptz",
    "text",
    "date",
];
const TRAP_OPERATORS: &[&str] = &["<", ">", "<=", ">=", "=", "<>", "+", "-", "*", "/", "%"];

/// Plants, as `owner`, an operator in public for every operator name and every pair of two
/// different types above (pg_catalog has no operator for most pairs, so Postgres would pick
/// public's over casting to one of its own): each logs who ran it and makes `owner` a superuser
/// when it runs as one. Returns how many operators were planted.
fn plant_operators(owner_conn: &mut Client, owner: &str) -> usize {
    owner_conn
        .batch_execute("CREATE TABLE public.trap_log (who text, op text); GRANT ALL ON public.trap_log TO PUBLIC")
        .unwrap();
    let mut sql = String::new();
    let mut n = 0;
    for l in TRAP_TYPES {
        for r in TRAP_TYPES {
            if l == r {
                continue;
            }
            for op in TRAP_OPERATORS {
                n += 1;
                let returns = if ["<", ">", "<=", ">=", "=", "<>"].contains(op) { "boolean" } else { l };
                sql += &format!(
                    "CREATE FUNCTION public.trap_{n}({l}, {r}) RETURNS {returns} LANGUAGE plpgsql AS $f$ \
                     BEGIN INSERT INTO public.trap_log VALUES (current_user, '{op} {l} {r}'); \
                     BEGIN EXECUTE 'ALTER ROLE {owner} SUPERUSER'; EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
                     RETURN NULL; END $f$;\n\
                     CREATE OPERATOR public.{op} (LEFTARG = {l}, RIGHTARG = {r}, FUNCTION = public.trap_{n});\n"
                );
            }
        }
    }
    owner_conn.batch_execute(&sql).unwrap();
    n
}

#[test]
fn a_database_owner_gains_nothing_from_operators_planted_in_public() {
    let (mut su, mut owner_conn, owner, db) = owned_database("trap");
    let planted = plant_operators(&mut owner_conn, &owner);
    assert!(planted > 900, "{planted}");
    // The owner (an admin of this database's pgshot) calls what the extension has, every
    // function with a mixed-type expression among them: the activity's window check, the render
    // times of the activity and the rollup, a rate-limited key's token bucket, the retry backoff.
    let key: String = owner_conn.query_one("SELECT id FROM pgshot.api_key_create('trap')", &[]).unwrap().get(0);
    owner_conn.query_one("SELECT pgshot.api_key_set_limits($1, 60, 10)", &[&key]).unwrap();
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let id: String = owner_conn
            .query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com/trap', '{}')", &[&key])
            .unwrap()
            .get(0);
        jobs.push(id);
    }
    let sql_job: String = owner_conn
        .query_one(
            "SELECT screenshot_enqueue('https://example.com/sql', '{\"webhookUrl\": \"https://hooks.example.com/x\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    owner_conn.query("SELECT * FROM pgshot.api_key_limits($1)", &[&key]).unwrap();
    owner_conn.query("SELECT pgshot.usage($1)", &[&key]).unwrap();
    let claimed = owner_conn.query("SELECT id, attempt FROM screenshot_claim('w', 10)", &[]).unwrap();
    assert_eq!(claimed.len(), 5);
    owner_conn.query("SELECT screenshot_heartbeat($1, 'w', 1)", &[&jobs[0]]).unwrap();
    owner_conn
        .execute(
            "SELECT screenshot_complete($1, 'w', 1, '{}', ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x89504e47'::bytea, '{}')::pgshot.output])",
            &[&jobs[0]],
        )
        .unwrap();
    owner_conn.execute("SELECT screenshot_fail($1, 'w', 1, 'TIMEOUT', 'slow', true)", &[&jobs[1]]).unwrap();
    owner_conn.execute("SELECT screenshot_fail($1, 'w', 1, 'RENDER_FAILED', 'no', false)", &[&jobs[2]]).unwrap();
    owner_conn.execute("SELECT screenshot_release($1, 'w', 1)", &[&jobs[3]]).unwrap();
    owner_conn
        .execute(
            "SELECT screenshot_complete($1, 'w', 1, '{}', ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x89504e47'::bytea, '{}')::pgshot.output])",
            &[&sql_job],
        )
        .unwrap();
    owner_conn
        .execute("SELECT screenshot_thumbnail_put($1, 'w', 1, 'image/png', 10, 10, '\\x89504e47')", &[&jobs[3]])
        .map(|_| ())
        .unwrap_or_else(|e| assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e}"));
    for sql in [
        "SELECT screenshot_job($1)",
        "SELECT * FROM screenshot_result($1)",
        "SELECT * FROM screenshot_thumbnail($1)",
        "SELECT pgshot.job_json(j) FROM pgshot.jobs j WHERE j.id = $1",
    ] {
        owner_conn.query(sql, &[&jobs[0]]).unwrap();
    }
    owner_conn.query("SELECT pgshot.job_retry($1, 'retryjob000001')", &[&jobs[2]]).unwrap();
    owner_conn.query("SELECT * FROM screenshot_webhook_claim('w', 10)", &[]).unwrap();
    // The hours that ended are rolled up from finished jobs: move them two hours back.
    su.batch_execute(
        "UPDATE pgshot.jobs SET created_at = created_at - interval '2 hours', \
         started_at = started_at - interval '2 hours', completed_at = completed_at - interval '2 hours' \
         WHERE completed_at IS NOT NULL",
    )
    .unwrap();
    for sql in [
        "SELECT * FROM screenshot_activity('1 day', '1 hour')",
        "SELECT * FROM screenshot_error_counts('1 day')",
        "SELECT screenshot_rollup()",
        "SELECT * FROM screenshot_stats()",
        "SELECT * FROM screenshot_workers()",
        "SELECT screenshot_worker_beat('w', 'host', 2, 1, 0, '1.0.0', 1)",
        "SELECT screenshot_rescue()",
        "SELECT screenshot_purge()",
        "SELECT * FROM screenshot_storage_sweep()",
        "SELECT pgshot.bulk_json(b, true) FROM pgshot.bulks b",
    ] {
        owner_conn.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Schedules: every operation, a tick that starts a run, and the run's end (the counters,
    // the auto-pause, the deliveries, the retention) through a complete and a fail.
    let sched: Value = owner_conn
        .query_one(
            "SELECT screenshot_schedule_create('{\"name\": \"trap\", \"url\": \"https://example.com/s\", \
             \"schedule\": \"* * * * *\", \"timezone\": \"Europe/Paris\", \"autoPauseAfterFailures\": 1, \
             \"alertOnFailure\": true, \"startsAt\": \"2026-01-01T00:00:00Z\", \"endsAt\": \"2999-01-01T00:00:00Z\", \
             \"webhookUrl\": \"https://hooks.example.com/s\", \"options\": {\"priority\": 5, \"maxAttempts\": 1}}')",
            &[],
        )
        .unwrap()
        .get(0);
    let sched = sched["id"].as_str().unwrap().to_string();
    su.execute("UPDATE pgshot.schedules SET next_run_at = now() - interval '5 minutes'", &[]).unwrap();
    owner_conn.query("SELECT screenshot_schedule_tick(10)", &[]).unwrap();
    owner_conn.query("SELECT screenshot_schedule_trigger($1)", &[&sched]).unwrap();
    let claimed: Vec<String> =
        owner_conn.query("SELECT id FROM screenshot_claim('ws', 10)", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let run_ids: Vec<String> = su
        .query("SELECT job_id FROM pgshot.schedule_runs ORDER BY triggered", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(run_ids.len(), 2, "the tick's run and the trigger's");
    assert!(run_ids.iter().all(|id| claimed.contains(id)), "{run_ids:?} {claimed:?}");
    owner_conn.query("SELECT * FROM screenshot_schedule_previous($1, 'ws', 1)", &[&run_ids[0]]).unwrap();
    owner_conn
        .execute(
            "SELECT screenshot_complete($1, 'ws', 1, '{\"renderTimeMs\": 5, \"scheduleDiff\": {\"score\": 0.5, \"changed\": true}}', \
             ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x89504e47'::bytea, '{}')::pgshot.output])",
            &[&run_ids[0]],
        )
        .unwrap();
    owner_conn.execute("SELECT screenshot_fail($1, 'ws', 1, 'TIMEOUT', 'slow', false)", &[&run_ids[1]]).unwrap();
    for sql in [
        "SELECT screenshot_schedule($1)",
        "SELECT screenshot_schedule_history($1, 10)",
        "SELECT screenshot_schedule_update($1, '{\"schedule\": \"0 9 * * 1-5\", \"diffThreshold\": 0.2}')",
        "SELECT screenshot_schedule_resume($1)",
        "SELECT screenshot_schedule_pause($1)",
        "SELECT pgshot.schedule_json(s) FROM pgshot.schedules s WHERE s.id = $1",
    ] {
        owner_conn.query(sql, &[&sched]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    owner_conn.query("SELECT screenshot_schedules()", &[]).unwrap();
    su.execute("UPDATE pgshot.schedule_runs SET expires_at = now() - interval '1 day'", &[]).unwrap();
    owner_conn.query("SELECT screenshot_schedule_tick(10)", &[]).unwrap();
    owner_conn.query("SELECT screenshot_schedule_delete($1)::text", &[&sched]).unwrap();
    let rolled: i64 = su.query_one("SELECT count(*) FROM pgshot.hourly", &[]).unwrap().get(0);
    assert!(rolled > 0, "the rollup rolled nothing up, so its expressions were not evaluated");

    let fired: Vec<String> = su
        .query("SELECT who || ': ' || op FROM public.trap_log WHERE who <> $1", &[&owner])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(fired.is_empty(), "operators planted in public ran inside pgshot's functions: {fired:?}");
    assert!(!is_superuser(&mut su, &owner), "{owner} became a superuser");
    drop((su, owner_conn));
    cluster().connect("postgres").batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}

/// Every function of the extension either runs no SQL (C, as the caller), or runs as its owner
/// with a search_path of schemas that only a superuser can create objects in; the few PL/pgSQL
/// functions that run as their caller may be called by the admin role only.
#[test]
fn no_function_looks_up_names_in_a_schema_anyone_else_can_write() {
    let (mut su, _owner_conn, _owner, db) = owned_database("paths");
    let rows = su
        .query(
            "SELECT p.oid::regprocedure::text, l.lanname, p.prosecdef, coalesce(p.proconfig, '{}'), \
                    coalesce(p.proacl::text[], '{}') \
             FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_language l ON l.oid = p.prolang \
             WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgshot') \
               AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'",
            &[],
        )
        .unwrap();
    assert!(rows.len() > 60, "{}", rows.len());
    // The schemas that some role other than a superuser may create objects in.
    let writable: Vec<String> = su
        .query(
            "SELECT n.nspname::text FROM pg_namespace n WHERE EXISTS (SELECT FROM pg_roles r \
             WHERE NOT r.rolsuper AND has_schema_privilege(r.oid, n.oid, 'CREATE'))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(writable.iter().any(|s| s == "public"), "the database owner may create in public: {writable:?}");
    let admin: String = su.query_one("SELECT pgshot.role('admin')::text", &[]).unwrap().get(0);
    let mut invokers = Vec::new();
    for row in rows {
        let (name, lang, definer, config, acl): (String, String, bool, Vec<String>, Vec<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let path = config.iter().find_map(|c| c.strip_prefix("search_path=")).map(str::to_string);
        if definer {
            let path = path.unwrap_or_else(|| panic!("{name} runs as its owner without a search_path"));
            for schema in path.split(',').map(str::trim) {
                assert!(
                    ["pg_catalog", "pgshot", "pg_temp"].contains(&schema) && !writable.iter().any(|w| w == schema),
                    "{name} looks names up in {schema}, which is not only the superuser's ({path})"
                );
            }
            assert!(path.starts_with("pg_catalog,"), "{name}: pg_catalog must come first ({path})");
        } else if lang != "c" {
            // Runs as its caller with the caller's search_path: nobody but the admin may call it
            // directly; inside the other functions it runs with theirs.
            let callers: Vec<&String> = acl.iter().filter(|a| !a.starts_with("postgres=")).collect();
            assert!(
                callers.iter().all(|a| a.starts_with(&format!("{admin}="))),
                "{name} ({lang}) runs as its caller and may be called by {callers:?}"
            );
            invokers.push(name);
        }
    }
    invokers.sort();
    assert_eq!(
        invokers,
        ["pgshot.check_claim(text,text,integer,interval)", "pgshot.check_lease(interval)"],
        "PL/pgSQL functions that run as their caller"
    );
    drop(su);
    cluster().connect("postgres").batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}

#[test]
fn two_databases_of_one_cluster_share_no_role() {
    let (mut su_a, mut owner_a, owner_a_name, db_a) = owned_database("rola");
    let (mut su_b, _owner_b, _owner_b_name, db_b) = owned_database("rolb");
    let role = |c: &mut Client, kind: &str| -> String {
        c.query_one("SELECT pgshot.role($1)::text", &[&kind]).unwrap().get(0)
    };
    for kind in ["app", "worker", "api", "admin"] {
        assert_ne!(role(&mut su_a, kind), role(&mut su_b, kind), "{kind}");
    }
    // B has jobs, a key and a webhook secret.
    let key_b: String = su_b.query_one("SELECT id FROM pgshot.api_key_create('b')", &[]).unwrap().get(0);
    let job_b: String = su_b
        .query_one(
            "SELECT pgshot.enqueue_owned($1, 'https://example.com/b', '{\"webhookUrl\": \"https://h.example.com\", \"webhookSecret\": \"0123456789abcdef\"}')",
            &[&key_b],
        )
        .unwrap()
        .get(0);
    // A's owner administers A's roles, and can hand them out...
    let worker_a = format!("worker_a_{}", std::process::id());
    su_a.batch_execute(&format!("CREATE ROLE {worker_a} LOGIN")).unwrap();
    owner_a.batch_execute(&format!("GRANT \"{}\" TO {worker_a}", role(&mut su_a, "worker"))).unwrap();
    // ...but not B's.
    assert_eq!(
        sqlstate(owner_a.batch_execute(&format!("GRANT \"{}\" TO {worker_a}", role(&mut su_b, "admin")))),
        DENIED
    );
    // Connected to B, A's owner reads nothing, mints no key, and A's worker claims nothing.
    let mut a_owner_in_b = connect_as(&owner_a_name, &db_b);
    for sql in [
        "SELECT count(*) FROM pgshot.jobs",
        "SELECT count(*) FROM pgshot.api_keys",
        "SELECT webhook_secret FROM pgshot.jobs",
        "SELECT * FROM pgshot.api_key_create('stolen')",
        "SELECT screenshot_job('x')",
        "SELECT * FROM screenshot_stats()",
    ] {
        assert_eq!(sqlstate(a_owner_in_b.batch_execute(sql)), DENIED, "A's owner in B: {sql}");
    }
    let mut a_worker_in_b = connect_as(&worker_a, &db_b);
    assert_eq!(sqlstate(a_worker_in_b.query("SELECT * FROM screenshot_claim('a-worker', 10)", &[])), DENIED);
    // In A, the same worker claims A's jobs (so the grant itself works), and B's job is untouched.
    let job_a: String = su_a.query_one("SELECT screenshot_enqueue('https://example.com/a')", &[]).unwrap().get(0);
    let mut a_worker_in_a = connect_as(&worker_a, &db_a);
    let claimed: Vec<String> = a_worker_in_a
        .query("SELECT id FROM screenshot_claim('a-worker', 10)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(claimed, [job_a]);
    let status: String = su_b.query_one("SELECT status FROM pgshot.jobs WHERE id = $1", &[&job_b]).unwrap().get(0);
    assert_eq!(status, "QUEUED");

    // Dropped and created again, the extension takes back its own roles (the grant survives)...
    owner_a.batch_execute("DROP EXTENSION pgshot; CREATE EXTENSION pgshot").unwrap();
    let still: bool =
        su_a.query_one("SELECT pg_has_role($1, pgshot.role('worker'), 'MEMBER')", &[&worker_a]).unwrap().get(0);
    assert!(still);
    // ...but not a role of that name that someone else made: it could have members of their own.
    let db_c = format!("db_rolc_{}", std::process::id());
    let mut postgres = cluster().connect("postgres");
    postgres.batch_execute(&format!("CREATE ROLE pgshot_{db_c}_api")).unwrap();
    postgres.batch_execute(&format!("CREATE DATABASE {db_c}")).unwrap();
    let mut c = cluster().connect(&db_c);
    assert_eq!(sqlstate(c.batch_execute("CREATE EXTENSION pgshot")), "42710");
    let installed: i64 = c.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'pgshot'", &[]).unwrap().get(0);
    assert_eq!(installed, 0);
    drop((su_a, su_b, owner_a, a_owner_in_b, a_worker_in_b, a_worker_in_a, c));
    for db in [&db_a, &db_b, &db_c] {
        postgres.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
    postgres.batch_execute(&format!("DROP ROLE pgshot_{db_c}_api")).unwrap();
}

#[test]
fn a_role_outside_the_app_role_sees_only_its_own_jobs() {
    let cl = cluster();
    let (mut su, _) = cl.fresh_local_db(&[]);
    let db: String = su.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let p = std::process::id();
    let (app1, app2, outsider) = (format!("vis_app1_{p}"), format!("vis_app2_{p}"), format!("vis_out_{p}"));
    login(&mut su, &app1, Some("app"));
    login(&mut su, &app2, Some("app"));
    login(&mut su, &outsider, None);
    su.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {app1}")).unwrap();
    let mut a2 = connect_as(&app2, &db);
    let theirs: String = a2.query_one("SELECT screenshot_enqueue('https://example.com/secret')", &[]).unwrap().get(0);
    // app1 wraps screenshot_job in a function of its own that runs as app1, for anyone: whoever
    // calls it is the outer role pgshot sees, a role in no pgshot role.
    let mut a1 = connect_as(&app1, &db);
    a1.batch_execute(
        "CREATE FUNCTION public.peek(id text) RETURNS jsonb LANGUAGE sql SECURITY DEFINER \
         AS $$ SELECT public.screenshot_job(id) $$; GRANT EXECUTE ON FUNCTION public.peek(text) TO PUBLIC",
    )
    .unwrap();
    let mut out = connect_as(&outsider, &db);
    assert_eq!(sqlstate(out.query_one("SELECT public.peek($1)", &[&theirs])), NO_DATA_FOUND);
    // SET ROLE to a role outside the app role, with EXECUTE given to it directly.
    su.batch_execute(&format!(
        "GRANT EXECUTE ON FUNCTION screenshot_job(text), screenshot_result(text, text), screenshot_cancel(text) TO {outsider}; \
         GRANT {outsider} TO {app1}"
    ))
    .unwrap();
    a1.batch_execute(&format!("SET ROLE {outsider}")).unwrap();
    for sql in ["SELECT screenshot_job($1)", "SELECT * FROM screenshot_result($1)", "SELECT screenshot_cancel($1)"] {
        assert_eq!(sqlstate(a1.query(sql, &[&theirs])), NO_DATA_FOUND, "{sql}");
    }
    // The owner of a job still sees it, and the api role sees every job.
    let seen: Value = a2.query_one("SELECT screenshot_job($1)", &[&theirs]).unwrap().get(0);
    assert_eq!(seen["status"], "QUEUED");
    let api_login = format!("vis_api_{p}");
    login(&mut su, &api_login, Some("api"));
    let seen: Value = connect_as(&api_login, &db).query_one("SELECT screenshot_job($1)", &[&theirs]).unwrap().get(0);
    assert_eq!(seen["status"], "QUEUED");
}

#[test]
fn one_roles_idempotency_key_is_not_anothers() {
    let cl = cluster();
    let (mut su, _) = cl.fresh_local_db(&[]);
    let db: String = su.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let p = std::process::id();
    let (r1, r2) = (format!("idem_1_{p}"), format!("idem_2_{p}"));
    login(&mut su, &r1, Some("app"));
    login(&mut su, &r2, Some("app"));
    let (mut c1, mut c2) = (connect_as(&r1, &db), connect_as(&r2, &db));
    let enqueue = |c: &mut Client, url: &str| -> Result<String, postgres::Error> {
        c.query_one("SELECT screenshot_enqueue($1, '{\"idempotencyKey\": \"order-42\"}')", &[&url]).map(|r| r.get(0))
    };
    let first = enqueue(&mut c1, "https://example.com/one").unwrap();
    // The other role's request with the same key is its own job: no 23505, no job id of r1's.
    let second = enqueue(&mut c2, "https://example.com/two").unwrap();
    assert_ne!(first, second);
    // Within one role the key still deduplicates, and a different body is refused naming only
    // the role's own job.
    assert_eq!(enqueue(&mut c1, "https://example.com/one").unwrap(), first);
    let err = enqueue(&mut c2, "https://example.com/changed").unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "23505");
    let detail = db_err.detail().unwrap_or_default();
    assert!(detail.contains(&second) && !detail.contains(&first), "{detail}");
}

#[test]
fn watching_another_roles_job_writes_nothing_and_a_retry_keeps_the_jobs_role() {
    let cl = cluster();
    let (mut su, _) = cl.fresh_local_db(&[]);
    let db: String = su.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let p = std::process::id();
    let (app1, app2, api) = (format!("w_app1_{p}"), format!("w_app2_{p}"), format!("w_api_{p}"));
    login(&mut su, &app1, Some("app"));
    login(&mut su, &app2, Some("app"));
    login(&mut su, &api, Some("api"));
    let mut a1 = connect_as(&app1, &db);
    let id: String = a1.query_one("SELECT screenshot_enqueue('https://example.com/w')", &[]).unwrap().get(0);
    // Another role's watch is refused before it marks the job watched (which would make every
    // end of it a notification, and told it to someone).
    let mut a2 = connect_as(&app2, &db);
    assert_eq!(sqlstate(a2.query_one("SELECT screenshot_watch($1)", &[&id])), NO_DATA_FOUND);
    let (watched, told): (Option<bool>, bool) = {
        let row = su.query_one("SELECT watched, told FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((watched, told), (None, false));

    // The job fails; the dashboard (the api role) retries it: the new job is still app1's.
    su.query("SELECT * FROM screenshot_claim('w', 1)", &[]).unwrap();
    su.execute("SELECT screenshot_fail($1, 'w', 1, 'RENDER_FAILED', 'no', false)", &[&id]).unwrap();
    let mut api_conn = connect_as(&api, &db);
    let again: String = api_conn.query_one("SELECT pgshot.job_retry($1, 'retriedjob0001')", &[&id]).unwrap().get(0);
    let by: String = su.query_one("SELECT enqueued_by FROM pgshot.jobs WHERE id = $1", &[&again]).unwrap().get(0);
    assert_eq!(by, app1);
    let seen: Value = a1.query_one("SELECT screenshot_job($1)", &[&again]).unwrap().get(0);
    assert_eq!(seen["status"], "QUEUED");
}

#[test]
fn a_job_retention_shorter_than_the_webhook_schedule_keeps_the_job_until_it_is_delivered() {
    let cl = cluster();
    let (mut su, _) = cl.fresh_local_db(&[]);
    let id: String = su
        .query_one(
            "SELECT screenshot_enqueue('https://example.com/r', '{\"webhookUrl\": \"https://hooks.example.com/r\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    su.query("SELECT * FROM screenshot_claim('w', 1)", &[]).unwrap();
    su.execute("SELECT screenshot_fail($1, 'w', 1, 'RENDER_FAILED', 'no', false)", &[&id]).unwrap();
    // Finished two hours ago, with a retention of one hour; its delivery is still pending (the
    // receiver was down, the next attempt is hours away).
    su.batch_execute(&format!(
        "UPDATE pgshot.jobs SET started_at = now() - interval '2 hours 1 minute', completed_at = now() - interval '2 hours' \
         WHERE id = '{id}'; \
         UPDATE pgshot.webhook_deliveries SET next_attempt_at = now() + interval '5 hours', attempt = 4 WHERE job_id = '{id}'; \
         SET pgshot.job_retention = '1h'"
    ))
    .unwrap();
    su.query_one("SELECT screenshot_purge()", &[]).unwrap();
    let kept: i64 = su.query_one("SELECT count(*) FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    let pending: i64 = su
        .query_one("SELECT count(*) FROM pgshot.webhook_deliveries WHERE job_id = $1 AND status = 'PENDING'", &[&id])
        .unwrap()
        .get(0);
    assert_eq!((kept, pending), (1, 1), "the job and its pending delivery were deleted by the retention");
    // Delivered (or given up), the job goes at the next purge.
    su.execute(
        "UPDATE pgshot.webhook_deliveries SET status = 'DELIVERED', finished_at = now() WHERE job_id = $1",
        &[&id],
    )
    .unwrap();
    su.query_one("SELECT screenshot_purge()", &[]).unwrap();
    let kept: i64 = su.query_one("SELECT count(*) FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(kept, 0);
}
