//! What one API key may hold of the API at once, attacked (issue 27, items 7 and 9): it cannot
//! take every sync-capture slot, nor open event streams without end; a revoked key's streams end;
//! a key's streams share one check of its jobs; and GET /v1/usage reads the hourly roll-up, not
//! every job the key ever had; failed dashboard logins are throttled, a short operator token is
//! refused, and /readyz tells nobody why the database is unavailable (item 15).

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::cluster;
use serde_json::{json, Value};

fn owner_of(db: &mut pgshot_tests::Client, key: &str) -> String {
    db.query_one("SELECT pgshot.api_key_owner($1)", &[&key]).unwrap().get(0)
}

#[test]
fn one_key_cannot_take_every_sync_capture_slot() {
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let (a, b) = (create_key(&url, "sync-a"), create_key(&url, "sync-b"));
    // No worker: a sync capture waits for its job until the API gives up (3 s here).
    let api = ApiProcess::start(
        &url,
        &[
            ("PGSHOT_MAX_SYNC_WAITING_PER_KEY", "1".into()),
            ("PGSHOT_MAX_SYNC_WAITING", "10".into()),
            ("PGSHOT_SYNC_MAX_WAIT_SECONDS", "3".into()),
        ],
    );
    let capture = |key: &str| {
        let (url, key) = (api.url("/v1/screenshots"), key.to_string());
        std::thread::spawn(move || {
            match ureq::post(&url).set("X-API-Key", &key).send_json(json!({"url": "https://example.com"})) {
                Ok(r) => (r.status(), String::new()),
                Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
                Err(e) => panic!("{e}"),
            }
        })
    };
    let first = capture(&a);
    // The first one is waiting once its job exists.
    let owner_a = owner_of(&mut db, &a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.query_one("SELECT count(*) FROM pgshot.jobs WHERE owner = $1", &[&owner_a]).unwrap().get::<_, i64>(0) == 0
    {
        assert!(Instant::now() < deadline, "the first capture made no job\n{}", api.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (second, third) = (capture(&a), capture(&b));
    let (status, body) = second.join().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("this API key has 1 sync captures waiting"), "{body}");
    // Another key still gets a slot: it waits, and is answered as the first one is, not 429.
    let (status, body) = third.join().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(first.join().unwrap().0, 503);
    // The slot was given back: the key may wait again.
    let (status, body) = capture(&a).join().unwrap();
    assert_eq!(status, 503, "{body}");
}

/// An event stream of the dashboard; a background thread reads its lines and says when it ended.
struct Stream {
    ended: std::sync::mpsc::Receiver<()>,
}

fn open_stream(api: &ApiProcess, token: &str) -> Result<Stream, (u16, String)> {
    let response = ureq::get(&api.url("/dashboard/api/events")).set("Authorization", &format!("Bearer {token}")).call();
    match response {
        Ok(r) => {
            let (tx, ended) = std::sync::mpsc::channel();
            let reader = BufReader::new(r.into_reader());
            std::thread::spawn(move || {
                for line in reader.lines() {
                    if line.is_err() {
                        break;
                    }
                }
                let _ = tx.send(());
            });
            Ok(Stream { ended })
        }
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
        Err(e) => panic!("{e}"),
    }
}

fn metric(api: &ApiProcess, name: &str) -> f64 {
    let text = ureq::get(&api.url("/metrics")).call().unwrap().into_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn event_streams_are_capped_shared_and_end_with_their_key() {
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let (a, b) = (create_key(&url, "streams-a"), create_key(&url, "streams-b"));
    let api = ApiProcess::start(
        &url,
        &[("PGSHOT_MAX_EVENT_STREAMS_PER_KEY", "3".into()), ("PGSHOT_MAX_EVENT_STREAMS", "4".into())],
    );
    let streams: Vec<Stream> = (0..3).map(|_| open_stream(&api, &a).unwrap()).collect();
    let (status, body) = open_stream(&api, &a).err().expect("a fourth stream of one key is refused");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("3 event streams"), "{body}");
    let other = open_stream(&api, &b).expect("another key opens one");
    let (status, body) = open_stream(&api, &b).err().expect("the API's fifth stream is refused");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("the API has 4"), "{body}");
    assert_eq!(metric(&api, "pgshot_dashboard_event_streams"), 4.0);

    // Four streams of two keys, for six seconds (three ticks): one check per key and tick, not
    // one per stream (that would be about twelve).
    let before = metric(&api, "pgshot_dashboard_stream_checks_total");
    std::thread::sleep(Duration::from_secs(6));
    let checks = metric(&api, "pgshot_dashboard_stream_checks_total") - before;
    assert!((4.0..=9.0).contains(&checks), "{checks} checks in 6 s for 2 keys with 4 streams");

    // Revoked, the key's streams end within a tick or two; the other key's stays.
    pgshot_tests::api_process::keys_command(&url, &["revoke", &owner_of(&mut db, &a)]);
    for s in &streams {
        s.ended.recv_timeout(Duration::from_secs(10)).expect("a revoked key's stream is still open");
    }
    assert!(other.ended.recv_timeout(Duration::from_secs(3)).is_err(), "the other key's stream ended");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&api, "pgshot_dashboard_event_streams") != 1.0 {
        assert!(Instant::now() < deadline, "the ended streams still hold their slots");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Their slots are free again.
    open_stream(&api, &b).expect("a slot given back");
}

#[test]
fn usage_is_read_from_the_hourly_roll_up_not_from_every_job() {
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "usage");
    let owner = owner_of(&mut db, &key);
    // 3,000 completed jobs of 100 bytes each, finished two hours ago and rolled up; 2 more
    // finished a minute ago (not rolled up yet), and one failed.
    db.batch_execute(&format!(
        "INSERT INTO pgshot.jobs (id, owner, url, status, attempt, started_at, completed_at, expires_at, metadata) \
         SELECT 'usage' || lpad(i::text, 9, '0'), '{owner}', 'https://example.com/' || i, 'COMPLETED', 1, \
                now() - interval '2 hours 1 minute', now() - interval '2 hours', now() + interval '1 day', '{{}}' \
         FROM generate_series(1, 3000) i; \
         INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, bytes, size, metadata) \
         SELECT id, 'screenshot', 1, 'screenshot', 'image/png', decode(repeat('00', 100), 'hex'), 100, '{{}}' FROM pgshot.jobs WHERE owner = '{owner}'"
    ))
    .unwrap_or_else(|e| panic!("{:?}", e.as_db_error()));
    let rolled: i32 = db.query_one("SELECT screenshot_rollup()", &[]).unwrap().get(0);
    assert!(rolled >= 1);
    db.batch_execute(&format!(
        "INSERT INTO pgshot.jobs (id, owner, url, status, attempt, started_at, completed_at, expires_at, metadata) \
         SELECT 'recent' || lpad(i::text, 8, '0'), '{owner}', 'https://example.com/r' || i, 'COMPLETED', 1, \
                now() - interval '2 minutes', now() - interval '1 minute', now() + interval '1 day', '{{}}' \
         FROM generate_series(1, 2) i; \
         INSERT INTO pgshot.outputs (job_id, output_id, position, output_type, content_type, bytes, size, metadata) \
         SELECT id, 'screenshot', 1, 'screenshot', 'image/png', decode(repeat('00', 1000), 'hex'), 1000, '{{}}' FROM pgshot.jobs WHERE id LIKE 'recent%'; \
         INSERT INTO pgshot.jobs (id, owner, url, status, attempt, started_at, completed_at, error_code, error_message) \
         VALUES ('failedusage01', '{owner}', 'https://example.com/f', 'FAILED', 1, now() - interval '2 minutes', now() - interval '1 minute', 'TIMEOUT', 'slow')"
    ))
    .unwrap_or_else(|e| panic!("{:?}", e.as_db_error()));

    // As autovacuum would have by now: the plan is chosen from the table's statistics.
    db.batch_execute("ANALYZE pgshot.jobs").unwrap();
    // Rows of pgshot.jobs read by this session and not yet flushed to the statistics (in
    // Postgres 15 that may include earlier transactions': the difference is the call's).
    const READ: &str = "SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::bigint \
                        FROM pg_stat_xact_user_tables WHERE relid = 'pgshot.jobs'::regclass";
    let mut tx = db.transaction().unwrap();
    let before: i64 = tx.query_one(READ, &[]).unwrap().get(0);
    let usage: Value = tx.query_one("SELECT pgshot.usage($1)", &[&owner]).unwrap().get(0);
    let jobs_read = tx.query_one(READ, &[]).unwrap().get::<_, i64>(0) - before;
    tx.commit().unwrap();
    assert!(jobs_read < 50, "GET /v1/usage read {jobs_read} rows of pgshot.jobs for an owner of 3,003 jobs");
    assert_eq!(usage["jobs"]["COMPLETED"], 3002, "{usage}");
    assert_eq!(usage["jobs"]["FAILED"], 1, "{usage}");
    assert_eq!(usage["totals"]["screenshotsCount"], 3002, "{usage}");
    assert_eq!(usage["totals"]["bandwidthBytes"], 3000 * 100 + 2 * 1000, "{usage}");

    // The same through the API.
    let api = ApiProcess::start(&url, &[]);
    let body: Value = ureq::get(&api.url("/v1/usage")).set("X-API-Key", &key).call().unwrap().into_json().unwrap();
    assert_eq!(body["totals"]["screenshotsCount"], 3002, "{body}");
}

#[test]
fn failed_dashboard_logins_are_throttled_and_readiness_says_nothing_of_the_database() {
    let cl = cluster();
    let db = cl.fresh_db();
    let url = cl.url(&db);
    let key = create_key(&url, "logins");
    let api = ApiProcess::start(&url, &[("PGSHOT_ADMIN_TOKEN", "an-operator-token-long-enough-0123".into())]);
    let session = |token: &str| match ureq::get(&api.url("/dashboard/api/session"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => (r.status(), None),
        Err(ureq::Error::Status(code, r)) => (code, r.header("Retry-After").map(str::to_string)),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(session(&key).0, 200);
    for i in 0..10 {
        assert_eq!(session(&format!("an-operator-token-guess-{i:04}")).0, 401);
    }
    // Throttled now, the right token too: guessing cannot go on at the network's speed.
    let (status, retry_after) = session(&key);
    assert_eq!(status, 429);
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // Unready, the API says so without the reason (a database or host name, a role) to anyone.
    assert_eq!(ureq::get(&api.url("/readyz")).call().unwrap().status(), 200);
    cl.drop_db(&db);
    match ureq::get(&api.url("/readyz")).call() {
        Err(ureq::Error::Status(503, r)) => {
            let body = r.into_string().unwrap();
            assert_eq!(body, "not ready: the database is unavailable");
            assert!(!body.contains(&db));
        }
        other => panic!("{other:?}"),
    }
    assert!(api.log().contains(&db), "the reason is in the API's log, for the operator");
}

#[test]
fn an_operator_or_metrics_token_too_short_to_be_safe_is_refused_at_start() {
    let (_db, url) = cluster().fresh_local_db(&[]);
    for (name, value) in [("PGSHOT_ADMIN_TOKEN", "admin"), ("PGSHOT_METRICS_TOKEN", "0123456789abcdefghijklm")] {
        let out = std::process::Command::new(pgshot_tests::worker_process::binary("pgshot-api"))
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("PGSHOT_LISTEN", "127.0.0.1:0")
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value} was accepted");
        assert!(stderr.contains(name) && stderr.contains("at least 24 characters"), "{stderr}");
    }
}
