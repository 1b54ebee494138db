//! `ALTER EXTENSION pgshot UPDATE` from the released version (pg_ext/sql/released/, installed by
//! scripts/setup.sh; 0.9.0 -> 1.0.0 is the one supported path) keeps every job, result and key,
//! leaves every job claimable, and ends in the
//! same schema as a fresh install of the current version.

use std::collections::BTreeSet;

use pgshot_tests::{cluster, Client};
use serde_json::{json, Value};

const WEBHOOK: &str = "https://hooks.example.com/pgshot";

/// The versions whose install scripts are kept, oldest first.
fn released_versions() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pg_ext/sql/released");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|f| {
            let name = f.ok()?.file_name().into_string().ok()?;
            Some(name.strip_prefix("pgshot--")?.strip_suffix(".sql")?.to_string())
        })
        .collect();
    versions.sort();
    assert!(!versions.is_empty(), "no released install script in {}", dir.display());
    versions
}

fn claim_one(c: &mut Client, worker: &str) -> (String, i32) {
    let row = c.query_one("SELECT id, attempt FROM screenshot_claim($1, 1)", &[&worker]).unwrap();
    (row.get(0), row.get(1))
}

fn complete(c: &mut Client, id: &str, worker: &str, attempt: i32, bytes: &[u8]) {
    c.execute(
        "SELECT screenshot_complete($1, $2, $3, '{\"format\": \"PNG\"}', \
         ARRAY[ROW('screenshot', 'screenshot', 'image/png', $4::bytea, '{\"width\": 800}')::pgshot.output])",
        &[&id, &worker, &attempt, &bytes],
    )
    .unwrap();
}

fn enqueue(c: &mut Client, owner: &str, options: Value) -> String {
    c.query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com/page', $2)", &[&owner, &options]).unwrap().get(0)
}

struct Filled {
    key: String,
    key_id: String,
    completed: String,
    processing: String,
    cancelling: String,
    retrying: String,
    queued: Vec<String>,
}

/// Jobs in every state and shape the queue has: completed (with a webhook delivery), completed and
/// purged, failed, retrying, cancelled, processing, processing with a cancel requested, queued
/// from SQL and from a bulk request, and an API key.
fn fill(c: &mut Client) -> Filled {
    let row = c.query_one("SELECT id, key FROM pgshot.api_key_create('upgrade')", &[]).unwrap();
    let (key_id, key): (String, String) = (row.get(0), row.get(1));

    let completed = enqueue(c, &key_id, json!({"webhookUrl": WEBHOOK, "webhookSecret": "0123456789abcdef0123"}));
    let (id, attempt) = claim_one(c, "w-old");
    assert_eq!(id, completed);
    complete(c, &id, "w-old", attempt, b"\x89PNG completed");

    let purged = enqueue(c, &key_id, json!({}));
    claim_one(c, "w-old");
    complete(c, &purged, "w-old", 1, b"\x89PNG purged");
    c.execute("UPDATE pgshot.jobs SET expires_at = now() - interval '1 second' WHERE id = $1", &[&purged]).unwrap();
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 1);

    let failed = enqueue(c, &key_id, json!({"webhookUrl": WEBHOOK}));
    claim_one(c, "w-old");
    c.execute("SELECT screenshot_fail($1, 'w-old', 1, 'NAVIGATION_FAILED', 'no such host', false)", &[&failed])
        .unwrap();

    let retrying = enqueue(c, &key_id, json!({}));
    claim_one(c, "w-old");
    c.execute("SELECT screenshot_fail($1, 'w-old', 1, 'TIMEOUT', 'slow', true)", &[&retrying]).unwrap();

    let cancelled = enqueue(c, &key_id, json!({}));
    c.execute("SELECT screenshot_cancel($1)", &[&cancelled]).unwrap();

    let processing = enqueue(c, &key_id, json!({"fullPage": true}));
    claim_one(c, "w-old");
    let cancelling = enqueue(c, &key_id, json!({}));
    claim_one(c, "w-old");
    c.execute("SELECT screenshot_cancel($1)", &[&cancelling]).unwrap();

    let mut queued: Vec<String> = vec![c
        .query_one("SELECT screenshot_enqueue('https://example.com/sql', '{\"format\": \"jpeg\"}')", &[])
        .unwrap()
        .get(0)];
    let bulk: String = c
        .query_one(
            "SELECT pgshot.enqueue_bulk_owned($1, '[{\"url\": \"https://example.com/a\"}, {\"url\": \"https://example.com/b\"}]', 10, $2, NULL)",
            &[&key_id, &WEBHOOK],
        )
        .unwrap()
        .get(0);
    for r in c.query("SELECT id FROM pgshot.jobs WHERE bulk_id = $1", &[&bulk]).unwrap() {
        queued.push(r.get(0));
    }
    queued.sort();
    let states: Vec<String> =
        c.query("SELECT DISTINCT status FROM pgshot.jobs ORDER BY 1", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(states, ["CANCELLED", "COMPLETED", "FAILED", "PROCESSING", "QUEUED"]);
    Filled { key, key_id, completed, processing, cancelling, retrying, queued }
}

/// Every row of every table, and every job as the SQL API shows it.
fn snapshot(c: &mut Client) -> Value {
    let q = |c: &mut Client, sql: &str| -> Value {
        c.query_one(sql, &[]).unwrap().get::<_, Option<Value>>(0).unwrap_or(Value::Null)
    };
    json!({
        "jobs": q(c, "SELECT jsonb_agg(to_jsonb(j) ORDER BY id) FROM pgshot.jobs j"),
        "api": q(c, "SELECT jsonb_agg(screenshot_job(id) ORDER BY id) FROM pgshot.jobs"),
        "outputs": q(c, "SELECT jsonb_agg(to_jsonb(o) - 'bytes' || jsonb_build_object('md5', md5(bytes)) ORDER BY job_id, output_id) FROM pgshot.outputs o"),
        "keys": q(c, "SELECT jsonb_agg(to_jsonb(k) ORDER BY id) FROM pgshot.api_keys k"),
        "bulks": q(c, "SELECT jsonb_agg(to_jsonb(b) ORDER BY id) FROM pgshot.bulks b"),
        "deliveries": q(c, "SELECT jsonb_agg(to_jsonb(d) ORDER BY id) FROM pgshot.webhook_deliveries d"),
    })
}

/// Fields of the job JSON that later versions derive from what every job already had (0.4.0:
/// the attempt history from `errors`, `attempt`, `worker_id` and the timestamps): they appear on
/// old jobs, as they would on a fresh install.
const DERIVED_JOB_FIELDS: [&str; 2] = ["attempts", "lastError"];

/// 0.7.0's `jobs.told`, derived from what every job had: its end is told to someone.
fn told(job: &serde_json::Map<String, Value>) -> Value {
    let set = |k: &str| job.get(k).is_some_and(|v| !v.is_null());
    Value::Bool(job.get("watched") == Some(&Value::Bool(true)) || set("webhook_url") || set("bulk_id"))
}

/// `after` without the keys of row objects that `before`'s rows lack, once checked to be NULL (or
/// derived: in the job JSON one of the derived fields, in the jobs `told` and the number of a job
/// not yet finished).
fn without_new_columns(mut after: Value, before: &Value) -> Value {
    for (table, rows) in after.as_object_mut().unwrap() {
        let (Some(rows), Some(old_rows)) = (rows.as_array_mut(), before[table].as_array()) else { continue };
        for (row, old) in rows.iter_mut().zip(old_rows) {
            let (Some(row), Some(old)) = (row.as_object_mut(), old.as_object()) else { continue };
            row.retain(|k, v| {
                let kept = old.contains_key(k);
                let derived = (table == "api" && DERIVED_JOB_FIELDS.contains(&k.as_str()))
                    || (table == "jobs" && k == "told" && *v == told(old))
                    // 0.9.0 numbers the jobs not yet finished, which a claim may still read.
                    || (table == "jobs" && k == "enqueue_seq" && v.is_i64() && old["completed_at"].is_null());
                assert!(kept || v.is_null() || derived, "{table}.{k} is {v} in a row from before the update");
                kept
            });
        }
    }
    after
}

/// The extension's schema as the catalogs describe it: functions (body, settings, security),
/// columns, constraints, indexes, triggers, comments, privileges and dumped tables.
fn schema(c: &mut Client) -> BTreeSet<String> {
    let queries = [
        "SELECT format('function %s -> %s %s strict=%s secdef=%s vol=%s par=%s config=%s acl=%s src=%s comment=%s', \
                p.oid::regprocedure, pg_get_function_result(p.oid), l.lanname, p.proisstrict, p.prosecdef, \
                p.provolatile, p.proparallel, p.proconfig, p.proacl, md5(p.prosrc), obj_description(p.oid, 'pg_proc')) \
         FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_language l ON l.oid = p.prolang \
         WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgshot') AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'",
        "SELECT format('column %s.%s %s notnull=%s default=%s storage=%s', a.attrelid::regclass, a.attname, \
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attstorage) \
         FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
         WHERE r.relnamespace = 'pgshot'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) \
         FROM pg_constraint WHERE connamespace = 'pgshot'::regnamespace",
        "SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid \
         WHERE r.relnamespace = 'pgshot'::regnamespace",
        "SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid \
         WHERE r.relnamespace = 'pgshot'::regnamespace AND NOT t.tgisinternal",
        "SELECT format('relation %s kind=%s acl=%s comment=%s', oid::regclass, relkind, relacl, obj_description(oid, 'pg_class')) \
         FROM pg_class WHERE relnamespace = 'pgshot'::regnamespace",
        "SELECT format('type %s', t.oid::regtype) FROM pg_type t WHERE t.typnamespace = 'pgshot'::regnamespace",
        "SELECT format('schema acl=%s comment=%s', nspacl, obj_description(oid, 'pg_namespace')) FROM pg_namespace WHERE nspname = 'pgshot'",
        "SELECT format('dumped %s', unnest(extconfig)::regclass) FROM pg_extension WHERE extname = 'pgshot'",
    ];
    // Each database has roles of its own (pgshot_<database>_<kind>): privileges are compared by
    // the kind of role they are granted to.
    let roles: Vec<(String, String)> = c
        .query("SELECT role_name::text, kind FROM pgshot.roles ORDER BY length(role_name) DESC", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(roles.len(), 4, "{roles:?}");
    let mut out = BTreeSet::new();
    for sql in queries {
        for row in c.query(sql, &[]).unwrap() {
            let mut line = row.get::<_, String>(0);
            for (name, kind) in &roles {
                line = line.replace(name.as_str(), &format!("<{kind} role>"));
            }
            out.insert(line);
        }
    }
    out
}

#[test]
fn updating_from_every_released_version_keeps_every_job_and_ends_where_a_fresh_install_starts() {
    let cluster = cluster();
    let current: String = cluster
        .connect(&cluster.fresh_db())
        .query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'pgshot'", &[])
        .unwrap()
        .get(0);
    let fresh = schema(&mut cluster.connect(&cluster.fresh_db()));
    assert!(fresh.iter().any(|s| s.contains("jobs_rules")), "the current version is the one built");

    for version in released_versions() {
        assert_ne!(version, current, "a released script must be older than the current version");
        let name = format!("upgrade_{}_{}", std::process::id(), version.replace('.', "_"));
        cluster.connect("postgres").batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut c = cluster.connect(&name);
        c.batch_execute(&format!("CREATE EXTENSION pgshot VERSION '{version}'")).unwrap_or_else(|e| {
            panic!("CREATE EXTENSION pgshot VERSION '{version}': {e} (scripts/setup.sh installs pg_ext/sql/released/)")
        });
        let filled = fill(&mut c);
        let before = snapshot(&mut c);
        // 0.9.0's roles were the cluster's (pgshot_app, ...): a login role given one keeps its
        // part through the update, in this database's role of that kind.
        let app_login = format!("{name}_app");
        c.batch_execute(&format!("CREATE ROLE {app_login} LOGIN; GRANT pgshot_app TO {app_login}")).unwrap();

        c.batch_execute("ALTER EXTENSION pgshot UPDATE").unwrap_or_else(|e| panic!("update from {version}: {e}"));
        let row = c
            .query_one(
                "SELECT pg_has_role($1::text::name, pgshot.role('app'), 'MEMBER'), \
                        has_function_privilege('pgshot_app', 'screenshot_enqueue(text, jsonb)', 'EXECUTE')",
                &[&app_login],
            )
            .unwrap();
        let (member, old_role_keeps): (bool, bool) = (row.get(0), row.get(1));
        assert!(member, "{app_login} is not a member of this database's app role after the update");
        assert!(!old_role_keeps, "the cluster-wide pgshot_app still has privileges in this database");
        let installed: String =
            c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pgshot'", &[]).unwrap().get(0);
        assert_eq!(installed, current);

        // Nothing changed in any row, nor in what the SQL API shows (columns a version adds are
        // NULL in the rows it found).
        assert_eq!(without_new_columns(snapshot(&mut c), &before), before, "rows changed updating from {version}");
        // The schema is the one a fresh install makes, object by object.
        let upgraded = schema(&mut c);
        let missing: Vec<_> = fresh.difference(&upgraded).collect();
        let extra: Vec<_> = upgraded.difference(&fresh).collect();
        assert!(missing.is_empty() && extra.is_empty(), "from {version}\nmissing: {missing:#?}\nextra: {extra:#?}");

        // The key still authenticates and the result is still served.
        let owner: Option<String> = c.query_one("SELECT pgshot.api_key_owner($1)", &[&filled.key]).unwrap().get(0);
        assert_eq!(owner.as_deref(), Some(filled.key_id.as_str()));
        let bytes: Vec<u8> =
            c.query_one("SELECT bytes FROM screenshot_result($1)", &[&filled.completed]).unwrap().get(0);
        assert_eq!(bytes, b"\x89PNG completed");

        // Every queued job is claimable, the held ones keep their leases, the retrying one runs
        // again, and a cancel requested before the update takes effect after it.
        let claimed: Vec<String> = c
            .query("SELECT id FROM screenshot_claim('w-new', 10) ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(claimed, filled.queued);
        for id in &claimed {
            complete(&mut c, id, "w-new", 1, b"\x89PNG after");
        }
        complete(&mut c, &filled.processing, "w-old", 1, b"\x89PNG held");
        let status: Value = c.query_one("SELECT screenshot_job($1)", &[&filled.processing]).unwrap().get(0);
        assert_eq!(status["status"], "COMPLETED");
        let renewed: bool =
            c.query_one("SELECT screenshot_heartbeat($1, 'w-old', 1)", &[&filled.cancelling]).unwrap().get(0);
        assert!(!renewed, "the heartbeat reports the cancel");
        let status: Value = c.query_one("SELECT screenshot_job($1)", &[&filled.cancelling]).unwrap().get(0);
        assert_eq!(status["status"], "CANCELLED");
        c.execute("UPDATE pgshot.jobs SET run_at = now() WHERE id = $1", &[&filled.retrying]).unwrap();
        let (id, attempt) = claim_one(&mut c, "w-new");
        assert_eq!((id, attempt), (filled.retrying.clone(), 2));

        drop(c);
        let mut postgres = cluster.connect("postgres");
        postgres.batch_execute(&format!("DROP DATABASE {name}")).unwrap();
        postgres.batch_execute(&format!("DROP ROLE {app_login}")).unwrap();
    }
}
