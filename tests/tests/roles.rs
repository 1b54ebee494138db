//! Least privilege: the extension's four group roles of a database (app, worker, api, admin:
//! pgshot_<database>_<kind>), each granted to a login role, can do their part and nothing else; a role with
//! none of them can do nothing; a pgshot_app member sees only the jobs it enqueued. Then a real
//! API, worker and CLI run as those roles, with no other privilege.

use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, run_job, ApiProcess};
use pgshot_tests::receiver::Receiver;
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{cluster, connect_url, sqlstate, Client};
use serde_json::{json, Value};

const DENIED: &str = "42501";
const NO_DATA_FOUND: &str = "P0002";

/// A login role that is a member of the database's group role of `kind` (app, worker, api,
/// admin; none if empty), and the connection string of `db` as it.
fn login(admin: &mut Client, db: &str, name: &str, kind: &str) -> String {
    admin.batch_execute(&format!("CREATE ROLE {name} LOGIN")).unwrap();
    if !kind.is_empty() {
        let group: String = admin.query_one("SELECT pgshot.role($1)::text", &[&kind]).unwrap().get(0);
        admin.batch_execute(&format!("GRANT \"{group}\" TO {name}")).unwrap();
    }
    format!("host=127.0.0.1 port={} user={name} dbname={db}", cluster().port())
}

#[test]
fn each_role_does_its_part_and_nothing_else() {
    let cluster = cluster();
    let (mut su, _) = cluster.fresh_local_db(&[]);
    let db: String = su.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let mut app1 = connect_url(&login(&mut su, &db, "app1", "app"));
    let mut app2 = connect_url(&login(&mut su, &db, "app2", "app"));
    let mut worker = connect_url(&login(&mut su, &db, "worker1", "worker"));
    let mut api = connect_url(&login(&mut su, &db, "api1", "api"));
    let mut admin = connect_url(&login(&mut su, &db, "admin1", "admin"));
    let mut nobody = connect_url(&login(&mut su, &db, "nobody", ""));

    // An application enqueues and reads its own jobs, from SQL, and nothing more.
    let mine: String = app1.query_one("SELECT screenshot_enqueue('https://example.com/1')", &[]).unwrap().get(0);
    let queued: String = app1.query_one("SELECT screenshot_enqueue('https://example.com/2')", &[]).unwrap().get(0);
    let bulk = app1.query("SELECT screenshot_enqueue_bulk('[{\"url\": \"https://example.com/3\"}]')", &[]).unwrap();
    assert_eq!(bulk.len(), 1);
    let job: Value = app1.query_one("SELECT screenshot_job($1)", &[&mine]).unwrap().get(0);
    assert_eq!(job["status"], "QUEUED");
    let by: String = su.query_one("SELECT enqueued_by FROM pgshot.jobs WHERE id = $1", &[&mine]).unwrap().get(0);
    assert_eq!(by, "app1");
    for sql in [
        "SELECT count(*) FROM pgshot.jobs",
        "SELECT * FROM screenshot_claim('app1')",
        "SELECT pgshot.enqueue_owned('key_000000000000', 'https://example.com', '{}')",
        "SELECT * FROM pgshot.api_key_create('mine')",
        "SELECT * FROM screenshot_stats()",
        "INSERT INTO pgshot.jobs (id, url) VALUES ('abcdefghij0123', 'https://example.com')",
        "UPDATE pgshot.jobs SET priority = -100",
    ] {
        assert_eq!(sqlstate(app1.batch_execute(sql)), DENIED, "app1: {sql}");
    }

    // Another application does not see the first one's jobs at all.
    for sql in ["SELECT screenshot_job($1)", "SELECT screenshot_cancel($1)", "SELECT * FROM screenshot_result($1)"] {
        assert_eq!(sqlstate(app2.query(sql, &[&mine])), NO_DATA_FOUND, "app2: {sql}");
    }

    // A worker claims, heartbeats and completes; it cannot enqueue, read jobs or keys.
    let claimed: Vec<String> =
        worker.query("SELECT id FROM screenshot_claim('w1', 10)", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(claimed.len(), 3);
    worker.execute("SELECT screenshot_heartbeat($1, 'w1', 1)", &[&mine]).unwrap();
    worker
        .execute(
            "SELECT screenshot_complete($1, 'w1', 1, '{}', ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x89504e47'::bytea, '{}')::pgshot.output])",
            &[&mine],
        )
        .unwrap();
    worker.execute("SELECT screenshot_release($1, 'w1', 1)", &[&queued]).unwrap();
    worker.query("SELECT screenshot_rescue(), screenshot_purge()", &[]).unwrap();
    worker.query("SELECT * FROM screenshot_webhook_claim('w1')", &[]).unwrap();
    for sql in [
        "SELECT screenshot_enqueue('https://example.com')",
        "SELECT screenshot_job('x')",
        "SELECT count(*) FROM pgshot.api_keys",
        "SELECT count(*) FROM pgshot.jobs",
        "SELECT pgshot.api_key_owner('pgs_x')",
    ] {
        assert_eq!(sqlstate(worker.batch_execute(sql)), DENIED, "worker: {sql}");
    }

    // The application fetches its result and cancels its queued job.
    let bytes: Vec<u8> = app1.query_one("SELECT bytes FROM screenshot_result($1)", &[&mine]).unwrap().get(0);
    assert_eq!(bytes, b"\x89PNG");
    let cancelled: Value = app1.query_one("SELECT screenshot_cancel($1)", &[&queued]).unwrap().get(0);
    assert_eq!(cancelled["status"], "CANCELLED");

    // The API works for API keys; it cannot make keys, read them, or claim.
    let key: String = admin.query_one("SELECT id FROM pgshot.api_key_create('tenant')", &[]).unwrap().get(0);
    let owned: String =
        api.query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com/api', '{}')", &[&key]).unwrap().get(0);
    let listed: i64 = api.query_one("SELECT count(*) FROM pgshot.jobs WHERE owner = $1", &[&key]).unwrap().get(0);
    assert_eq!(listed, 1);
    api.query_one("SELECT screenshot_job($1)", &[&owned]).unwrap();
    for sql in [
        "SELECT count(*) FROM pgshot.api_keys",
        "SELECT * FROM pgshot.api_key_create('x')",
        "SELECT * FROM screenshot_claim('api')",
        "DELETE FROM pgshot.jobs",
    ] {
        assert_eq!(sqlstate(api.batch_execute(sql)), DENIED, "api: {sql}");
    }
    // The admin sees every job, whoever enqueued it.
    admin.query_one("SELECT screenshot_job($1)", &[&mine]).unwrap();
    admin.query_one("SELECT count(*) FROM pgshot.api_keys", &[]).unwrap();

    // A role with no pgshot role can call nothing.
    for sql in [
        "SELECT screenshot_enqueue('https://example.com')",
        "SELECT screenshot_job('x')",
        "SELECT * FROM screenshot_claim('x')",
        "SELECT * FROM screenshot_stats()",
        "SELECT count(*) FROM pgshot.jobs",
    ] {
        assert_eq!(sqlstate(nobody.batch_execute(sql)), DENIED, "nobody: {sql}");
    }
    for role in ["app1", "app2", "worker1", "api1", "admin1", "nobody"] {
        su.batch_execute(&format!("REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}"))
            .unwrap_or_else(|e| panic!("drop {role}: {e}"));
    }
}

#[test]
fn the_api_worker_and_cli_need_no_more_than_their_roles() {
    let cluster = cluster();
    let (mut su, _) = cluster.fresh_local_db(&[]);
    let db: String = su.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let admin_url = login(&mut su, &db, "cli_admin", "admin");
    let api_url = login(&mut su, &db, "api_login", "api");
    let worker_url = login(&mut su, &db, "worker_login", "worker");
    for role in ["cli_admin", "api_login", "worker_login"] {
        let superuser: bool =
            su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role]).unwrap().get(0);
        assert!(!superuser);
    }
    let site = Site::start();
    let receiver = Receiver::start();
    let key = create_key(&admin_url, "roles");
    let api = ApiProcess::start(&api_url, &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let worker = WorkerProcess::start(&worker_url, "roles-worker", &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let body = json!({"url": site.url("/plain"), "webhookUrl": receiver.url("/hook")});
    let job = run_job(&api, &key, body, Duration::from_secs(60), || worker.log());
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", worker.log());
    let id = job["id"].as_str().unwrap().to_string();
    let listed: Value =
        ureq::get(&api.url("/v1/screenshots/jobs")).set("X-API-Key", &key).call().unwrap().into_json().unwrap();
    assert!(listed.to_string().contains(&id), "{listed}");
    let result =
        ureq::get(&api.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", &key).call().unwrap();
    assert_eq!(result.status(), 200);
    assert!(ureq::get(&api.url("/metrics")).call().unwrap().into_string().unwrap().contains("pgshot_jobs"));
    // The webhook was claimed and recorded by the worker's role.
    let got = receiver.wait_for(1, Duration::from_secs(30));
    assert!(!got.is_empty(), "no delivery\n{}", worker.log());
    assert_eq!(got[0].json()["data"]["jobId"], id.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    while su
        .query_opt("SELECT 1 FROM pgshot.webhook_deliveries WHERE job_id = $1 AND status = 'DELIVERED'", &[&id])
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the delivery was not recorded\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    for log in [worker.log(), api.log()] {
        assert!(!log.contains("permission denied"), "{log}");
    }
}
