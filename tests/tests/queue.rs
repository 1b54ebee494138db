//! The SQL queue API against a real Postgres cluster with the extension installed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pgshot_tests::{cluster, connect_url, db_message, sqlstate, Client, SSRF_CORPUS};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::{json, Value};

const INVALID_PARAMETER_VALUE: &str = "22023";
const NO_DATA_FOUND: &str = "P0002";
const WRONG_STATE: &str = "55000";
const UNIQUE_VIOLATION: &str = "23505";
const RESULT_EXPIRED: &str = "PS410";

fn db() -> Client {
    let c = cluster();
    c.connect(&c.fresh_db())
}

fn enqueue(c: &mut Client, url: &str, options: Value) -> String {
    c.query_one("SELECT screenshot_enqueue($1, $2)", &[&url, &options]).unwrap().get(0)
}

fn job(c: &mut Client, id: &str) -> Value {
    c.query_one("SELECT screenshot_job($1)", &[&id]).unwrap().get(0)
}

fn claim(c: &mut Client, worker: &str, n: i32, lease: &str) -> Vec<(String, i32)> {
    c.query("SELECT id, attempt FROM screenshot_claim($1, $2, $3::text::interval)", &[&worker, &n, &lease])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

const COMPLETE: &str = "SELECT screenshot_complete($1, $2, $3, $4, \
     ARRAY[ROW('screenshot', 'screenshot', 'image/png', $5::bytea, '{}')::pgshot.output])";

fn complete(c: &mut Client, id: &str, worker: &str, attempt: i32, bytes: &[u8]) -> Result<u64, postgres::Error> {
    let meta = json!({"width": 1920, "height": 1080, "format": "PNG", "size": bytes.len()});
    c.execute(COMPLETE, &[&id, &worker, &attempt, &meta, &bytes])
}

fn fail(
    c: &mut Client,
    id: &str,
    worker: &str,
    attempt: i32,
    code: &str,
    retryable: bool,
) -> Result<String, postgres::Error> {
    c.query_one("SELECT screenshot_fail($1, $2, $3, $4, 'it broke', $5)", &[&id, &worker, &attempt, &code, &retryable])
        .map(|r| r.get(0))
}

fn count_jobs(c: &mut Client) -> i64 {
    c.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0)
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn enqueue_claim_complete_round_trip_matches_the_job_contract() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com", json!({"fullPage": true, "format": "jpg"}));
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");

    let queued = job(&mut c, &id);
    assert_eq!(keys(&queued), ["createdAt", "id", "status", "url"]);
    let same_statement: Value =
        c.query_one("SELECT screenshot_job(screenshot_enqueue('https://example.com/2'))", &[]).unwrap().get(0);
    assert_eq!(same_statement["status"], "QUEUED", "a job is visible to the statement that created it");
    assert_eq!(queued["status"], "QUEUED");
    assert_eq!(queued["url"], "https://example.com");
    let created = queued["createdAt"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T', "{created}");

    let row =
        c.query_one("SELECT id, url, options, attempt, max_attempts FROM screenshot_claim('w1', 1)", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), id);
    assert_eq!(row.get::<_, Value>(2), json!({"fullPage": true, "format": "jpeg"}));
    assert_eq!((row.get::<_, i32>(3), row.get::<_, i32>(4)), (1, 3));
    let processing = job(&mut c, &id);
    assert_eq!(processing["status"], "PROCESSING");
    assert_eq!(keys(&processing), ["attempts", "createdAt", "id", "startedAt", "status", "url"]);
    assert_eq!(
        processing["attempts"],
        json!([{"attempt": 1, "status": "RUNNING", "worker": "w1", "startedAt": processing["startedAt"]}])
    );

    let png = b"\x89PNG\r\n\x1a\nfake";
    complete(&mut c, &id, "w1", 1, png).unwrap();
    let done = job(&mut c, &id);
    assert_eq!(
        keys(&done),
        [
            "attempts",
            "completedAt",
            "createdAt",
            "expiresAt",
            "id",
            "metadata",
            "resultUrl",
            "startedAt",
            "status",
            "url"
        ]
    );
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["resultUrl"], format!("/v1/screenshots/jobs/{id}/result"));
    assert_eq!(done["metadata"], json!({"width": 1920, "height": 1080, "format": "PNG", "size": png.len()}));
    let ttl: f64 = c
        .query_one(
            "SELECT extract(epoch FROM expires_at - completed_at)::float8 FROM pgshot.jobs WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(ttl, 7.0 * 24.0 * 3600.0, "results are kept 7 days by default");

    let result =
        c.query_one("SELECT output, output_type, content_type, bytes FROM screenshot_result($1)", &[&id]).unwrap();
    assert_eq!(result.get::<_, String>(0), "screenshot");
    assert_eq!(result.get::<_, String>(2), "image/png");
    assert_eq!(result.get::<_, Vec<u8>>(3), png);

    c.batch_execute("SET pgshot.public_url = 'https://shots.example.com/'").unwrap();
    assert_eq!(job(&mut c, &id)["resultUrl"], format!("https://shots.example.com/v1/screenshots/jobs/{id}/result"));

    assert_eq!(sqlstate(c.query_one("SELECT screenshot_job('nosuchjob0000000')", &[])), NO_DATA_FOUND);
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_result('nosuchjob0000000')", &[])), NO_DATA_FOUND);
}

#[test]
fn multi_output_jobs_list_their_outputs_and_serve_each() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com", json!({"outputs": [{"type": "screenshot"}, {"type": "markdown"}]}));
    let (_, attempt) = claim(&mut c, "w1", 1, "30 seconds")[0].clone();
    c.execute(
        "SELECT screenshot_complete($1, 'w1', $2, '{\"format\": \"MULTI\"}', ARRAY[
             ROW('screenshot', 'screenshot', 'image/png', '\\x89504e47'::bytea, '{\"width\": 800}')::pgshot.output,
             ROW('markdown', 'markdown', 'text/markdown', convert_to('# Title', 'UTF8'), '{}')::pgshot.output])",
        &[&id, &attempt],
    )
    .unwrap();
    let done = job(&mut c, &id);
    assert_eq!(done["resultUrl"], format!("/v1/screenshots/jobs/{id}/result/screenshot"));
    assert_eq!(
        done["outputs"],
        json!({
            "screenshot": {"type": "screenshot", "contentType": "image/png", "size": 4, "width": 800,
                           "resultUrl": format!("/v1/screenshots/jobs/{id}/result/screenshot")},
            "markdown": {"type": "markdown", "contentType": "text/markdown", "size": 7,
                         "resultUrl": format!("/v1/screenshots/jobs/{id}/result/markdown")}
        })
    );
    let md: Vec<u8> = c.query_one("SELECT bytes FROM screenshot_result($1, 'markdown')", &[&id]).unwrap().get(0);
    assert_eq!(md, b"# Title");
    let first: String = c.query_one("SELECT output FROM screenshot_result($1)", &[&id]).unwrap().get(0);
    assert_eq!(first, "screenshot");
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_result($1, 'pdf')", &[&id])), NO_DATA_FOUND);
}

#[test]
fn enqueue_is_transactional_and_notifies_once_at_commit() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut listener = cl.connect(&name);
    listener.batch_execute("LISTEN pgshot_jobs").unwrap();
    let mut c = cl.connect(&name);

    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT screenshot_enqueue('https://example.com')", &[]).unwrap();
    tx.rollback().unwrap();
    assert_eq!(count_jobs(&mut c), 0, "a rolled-back enqueue leaves no job");
    let heard = drain(&mut listener, Duration::from_millis(500));
    assert!(heard.is_empty(), "a rolled-back enqueue wakes no worker: {heard:?}");

    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT screenshot_enqueue('https://a.example')", &[]).unwrap();
    tx.query(
        "SELECT * FROM screenshot_enqueue_bulk('[{\"url\": \"https://b.example\"}, {\"url\": \"https://c.example\"}]')",
        &[],
    )
    .unwrap();
    let heard = drain(&mut listener, Duration::from_millis(300));
    assert!(heard.is_empty(), "nothing is heard before commit: {heard:?}");
    tx.commit().unwrap();
    let heard = drain(&mut listener, Duration::from_secs(2));
    assert_eq!(heard, [("pgshot_jobs".to_string(), "queued".to_string())], "one notification per commit");
    assert_eq!(count_jobs(&mut c), 3);
}

/// Notifications heard within `window` (at least one is waited for up to the window).
fn drain(listener: &mut Client, window: Duration) -> Vec<(String, String)> {
    let mut heard = Vec::new();
    let deadline = Instant::now() + window;
    let mut notifications = listener.notifications();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match notifications.timeout_iter(left).next() {
            Ok(Some(n)) => heard.push((n.channel().to_string(), n.payload().to_string())),
            Ok(None) => break,
            Err(e) => panic!("listener failed: {e}"),
        }
    }
    heard
}

#[test]
fn eight_concurrent_claimers_take_every_job_exactly_once() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    let mut all = HashSet::new();
    for batch in 0..5 {
        let requests: Vec<Value> =
            (0..1000).map(|i| json!({"url": format!("https://example.com/{batch}/{i}")})).collect();
        for row in c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap() {
            all.insert(row.get::<_, String>(0));
        }
    }
    assert_eq!(all.len(), 5000);

    let url = cl.url(&name);
    let claimers: Vec<_> = (0..8)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect_url(&url);
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let batch = claim(&mut c, &worker, 7, "5 minutes");
                    if batch.is_empty() {
                        return mine;
                    }
                    for (id, attempt) in batch {
                        complete(&mut c, &id, &worker, attempt, b"png").unwrap();
                        mine.push(id);
                    }
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut per_worker = Vec::new();
    for t in claimers {
        let mine = t.join().unwrap();
        per_worker.push(mine.len());
        claimed.extend(mine);
    }
    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), 5000, "no job claimed twice");
    assert_eq!(unique, all, "no job lost");
    assert!(per_worker.iter().filter(|&&n| n > 0).count() > 1, "claims were shared: {per_worker:?}");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'COMPLETED' AND attempt = 1), count(*) FROM pgshot.jobs",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (5000, 5000));
}

#[test]
fn an_expired_lease_is_rescued_and_the_old_worker_is_fenced_out() {
    let mut c = db();
    c.batch_execute("SET pgshot.retry_backoff = 0").unwrap();
    let id = enqueue(&mut c, "https://example.com", json!({}));
    assert_eq!(claim(&mut c, "old", 1, "1 second"), [(id.clone(), 1)]);
    assert_eq!(c.query_one("SELECT screenshot_rescue()", &[]).unwrap().get::<_, i32>(0), 0, "lease still valid");
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(c.query_one("SELECT screenshot_rescue()", &[]).unwrap().get::<_, i32>(0), 1);
    assert_eq!(job(&mut c, &id)["status"], "QUEUED");
    assert_eq!(claim(&mut c, "new", 1, "30 seconds"), [(id.clone(), 2)]);

    assert_eq!(sqlstate(complete(&mut c, &id, "old", 1, b"stale")), WRONG_STATE);
    assert_eq!(sqlstate(c.query_one("SELECT screenshot_heartbeat($1, 'old', 1)", &[&id])), WRONG_STATE);
    assert_eq!(sqlstate(fail(&mut c, &id, "old", 1, "RENDER_FAILED", true)), WRONG_STATE);
    // The attempt alone fences too: the same worker name with a stale attempt is refused.
    assert_eq!(sqlstate(complete(&mut c, &id, "new", 1, b"stale")), WRONG_STATE);

    assert!(c.query_one("SELECT screenshot_heartbeat($1, 'new', 2)", &[&id]).unwrap().get::<_, bool>(0));
    complete(&mut c, &id, "new", 2, b"fresh").unwrap();
    assert_eq!(sqlstate(complete(&mut c, &id, "new", 2, b"again")), WRONG_STATE, "completed exactly once");
    let bytes: Vec<u8> = c.query_one("SELECT bytes FROM screenshot_result($1)", &[&id]).unwrap().get(0);
    assert_eq!(bytes, b"fresh");
    let errors: Value = c.query_one("SELECT errors FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(errors[0]["code"], "LEASE_EXPIRED");
    assert_eq!(errors[0]["attempt"], 1);
}

#[test]
fn retries_back_off_and_end_failed_after_max_attempts() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com", json!({"maxAttempts": 3}));

    assert_eq!(claim(&mut c, "w", 1, "30 seconds"), [(id.clone(), 1)]);
    assert_eq!(fail(&mut c, &id, "w", 1, "TIMEOUT", true).unwrap(), "QUEUED");
    let wait: f64 = c
        .query_one(
            "SELECT extract(epoch FROM run_at - (errors->0->>'at')::timestamptz)::float8 FROM pgshot.jobs WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!((1.6..=2.4).contains(&wait), "first retry waits 2 s ± 20 %, got {wait}");
    assert!(claim(&mut c, "w", 1, "30 seconds").is_empty(), "not claimable during its backoff");
    let q = job(&mut c, &id);
    assert_eq!(q["status"], "QUEUED");
    assert!(q.get("errorCode").is_none(), "a job being retried shows no error yet: {q}");

    c.execute("UPDATE pgshot.jobs SET run_at = now() WHERE id = $1", &[&id]).unwrap();
    c.batch_execute("SET pgshot.retry_backoff = 0").unwrap();
    assert_eq!(claim(&mut c, "w", 1, "30 seconds"), [(id.clone(), 2)]);
    assert_eq!(fail(&mut c, &id, "w", 2, "BROWSER_CRASHED", true).unwrap(), "QUEUED");
    assert_eq!(claim(&mut c, "w", 1, "30 seconds"), [(id.clone(), 3)]);
    assert_eq!(fail(&mut c, &id, "w", 3, "TIMEOUT", true).unwrap(), "FAILED");
    assert!(claim(&mut c, "w", 1, "30 seconds").is_empty());

    let failed = job(&mut c, &id);
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["errorCode"], "TIMEOUT");
    assert_eq!(failed["errorMessage"], "it broke");
    assert!(failed.get("completedAt").is_some() && failed.get("resultUrl").is_none(), "{failed}");
    let attempts: i32 =
        c.query_one("SELECT jsonb_array_length(errors) FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(attempts, 3);
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_result($1)", &[&id])), WRONG_STATE);

    // A final error fails at once, whatever attempts are left.
    let once = enqueue(&mut c, "https://example.com/blocked", json!({"maxAttempts": 5}));
    claim(&mut c, "w", 1, "30 seconds");
    assert_eq!(fail(&mut c, &once, "w", 1, "BLOCKED_URL", false).unwrap(), "FAILED");

    // A lease lost on the last attempt fails the job with LEASE_EXPIRED.
    let lost = enqueue(&mut c, "https://example.com/lost", json!({"maxAttempts": 1}));
    claim(&mut c, "w", 1, "1 second");
    c.execute("UPDATE pgshot.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", &[&lost]).unwrap();
    assert_eq!(c.query_one("SELECT screenshot_rescue()", &[]).unwrap().get::<_, i32>(0), 1);
    assert_eq!(job(&mut c, &lost)["errorCode"], "LEASE_EXPIRED");
}

#[test]
fn claim_order_follows_priority_then_run_at() {
    let mut c = db();
    let later = enqueue(&mut c, "https://example.com/later", json!({"runAt": "2999-01-01T00:00:00Z"}));
    let low = enqueue(&mut c, "https://example.com/low", json!({"priority": 10}));
    let first = enqueue(&mut c, "https://example.com/first", json!({}));
    let urgent = enqueue(&mut c, "https://example.com/urgent", json!({"priority": -10}));
    let second = enqueue(&mut c, "https://example.com/second", json!({}));
    let order: Vec<String> = claim(&mut c, "w", 10, "30 seconds").into_iter().map(|(id, _)| id).collect();
    assert_eq!(order, [urgent, first, second, low]);
    assert_eq!(job(&mut c, &later)["status"], "QUEUED", "a job is not claimed before its runAt");
    // The claim query reads one owner's part of the partial index in claim order: no sort, no
    // scan of finished jobs.
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: String = c
        .query(
            "EXPLAIN SELECT id FROM pgshot.jobs WHERE status = 'QUEUED' \
                AND coalesce(owner, enqueued_by, '') = 'someone' AND run_at <= now() \
                ORDER BY priority, run_at, enqueue_seq LIMIT 10 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("jobs_claim_order") && !plan.contains("Sort"), "{plan}");
}

/// Jobs of one owner with the same priority and run_at (one bulk request's, or those enqueued in
/// one transaction) are claimed in the order they were enqueued, not in the order of their random
/// ids; priority still comes first.
#[test]
fn jobs_enqueued_together_are_claimed_in_the_order_they_were_enqueued() {
    let mut c = db();
    let claim_all = |c: &mut Client, n: usize| -> Vec<String> {
        let mut order = Vec::new();
        while order.len() < n {
            let batch = claim(c, "w", 7, "30 seconds");
            assert!(!batch.is_empty(), "{} of {n} claimed", order.len());
            order.extend(batch.into_iter().map(|(id, _)| id));
        }
        order
    };

    // One bulk request from SQL: its jobs share run_at.
    let bulk: Vec<String> = c
        .query(
            "SELECT screenshot_enqueue_bulk((SELECT jsonb_agg(jsonb_build_object('url', \
                 'https://example.com/' || g) ORDER BY g) FROM generate_series(1, 30) g))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut by_id = bulk.clone();
    by_id.sort();
    assert_ne!(by_id, bulk, "the ids are not in enqueue order, or the test could not tell");
    assert_eq!(claim_all(&mut c, 30), bulk);

    // Single enqueues in one transaction (one now()), then a more urgent job enqueued last.
    let mut t = c.transaction().unwrap();
    let mut together: Vec<String> = (0..20)
        .map(|i| t.query_one("SELECT screenshot_enqueue($1)", &[&format!("https://example.com/t{i}")]).unwrap().get(0))
        .collect();
    let urgent: String = t
        .query_one("SELECT screenshot_enqueue('https://example.com/urgent', '{\"priority\": -1}')", &[])
        .unwrap()
        .get(0);
    t.commit().unwrap();
    together.insert(0, urgent);
    assert_eq!(claim_all(&mut c, 21), together);

    // An API key's bulk request, by position.
    let key = api_key(&mut c, "fifo");
    let bulk_id: String = c
        .query_one(
            "SELECT pgshot.enqueue_bulk_owned($1, (SELECT jsonb_agg(jsonb_build_object('url', \
                 'https://example.com/b' || g) ORDER BY g) FROM generate_series(1, 12) g), 100, NULL, NULL)",
            &[&key],
        )
        .unwrap()
        .get(0);
    let by_position: Vec<String> = c
        .query("SELECT id FROM pgshot.jobs WHERE bulk_id = $1 ORDER BY bulk_position", &[&bulk_id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(by_position.len(), 12);
    assert_eq!(claim_all(&mut c, 12), by_position);
}

#[test]
fn only_watched_jobs_are_notified_when_they_end() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    let mut listener = cl.connect(&name);
    listener.batch_execute("LISTEN pgshot_job_done").unwrap();

    let quiet = enqueue(&mut c, "https://example.com/quiet", json!({}));
    let watched = enqueue(&mut c, "https://example.com/watched", json!({}));
    let seen: Value = c.query_one("SELECT screenshot_watch($1)", &[&watched]).unwrap().get(0);
    assert_eq!(seen["status"], "QUEUED", "watch answers the job as screenshot_job does");
    claim(&mut c, "w", 2, "30 seconds");
    complete(&mut c, &quiet, "w", 1, b"png").unwrap();
    complete(&mut c, &watched, "w", 1, b"png").unwrap();
    // Watching a job that has already ended notifies it at once.
    c.query_one("SELECT screenshot_watch($1)", &[&quiet]).unwrap();
    assert_eq!(sqlstate(c.query_one("SELECT screenshot_watch('nosuchjob0000000')", &[])), NO_DATA_FOUND);

    let heard: Vec<Value> = drain(&mut listener, Duration::from_secs(2))
        .into_iter()
        .map(|(_, payload)| serde_json::from_str(&payload).unwrap())
        .collect();
    assert_eq!(
        heard,
        [json!({"id": watched, "status": "COMPLETED"}), json!({"id": quiet, "status": "COMPLETED"})],
        "the unwatched job was silent until it was watched"
    );
}

#[test]
fn cancel_handles_queued_processing_and_terminal_jobs() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    let mut listener = cl.connect(&name);
    listener.batch_execute("LISTEN pgshot_job_done").unwrap();
    // Every finished job is notified in this session, watched or not.
    c.batch_execute("SET pgshot.notify_all_done = on").unwrap();

    let queued = enqueue(&mut c, "https://example.com/q", json!({}));
    let cancelled: Value = c.query_one("SELECT screenshot_cancel($1)", &[&queued]).unwrap().get(0);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(claim(&mut c, "w", 5, "30 seconds").is_empty(), "a cancelled job is never claimed");

    let running = enqueue(&mut c, "https://example.com/p", json!({}));
    claim(&mut c, "w", 1, "30 seconds");
    let flagged: Value = c.query_one("SELECT screenshot_cancel($1)", &[&running]).unwrap().get(0);
    assert_eq!(flagged["status"], "PROCESSING", "the worker stops it at its next heartbeat");
    let keep_going: bool = c.query_one("SELECT screenshot_heartbeat($1, 'w', 1)", &[&running]).unwrap().get(0);
    assert!(!keep_going);
    assert_eq!(job(&mut c, &running)["status"], "CANCELLED");
    assert_eq!(sqlstate(complete(&mut c, &running, "w", 1, b"late")), WRONG_STATE);

    let failing = enqueue(&mut c, "https://example.com/f", json!({}));
    claim(&mut c, "w", 1, "30 seconds");
    c.query_one("SELECT screenshot_cancel($1)", &[&failing]).unwrap();
    assert_eq!(fail(&mut c, &failing, "w", 1, "TIMEOUT", true).unwrap(), "CANCELLED", "no retry after cancel");

    // The render finishes before any heartbeat saw the cancel: the cancel wins, cleanly (no
    // constraint error), and no output is kept.
    let raced = enqueue(&mut c, "https://example.com/raced", json!({}));
    claim(&mut c, "w", 1, "30 seconds");
    c.query_one("SELECT screenshot_cancel($1)", &[&raced]).unwrap();
    complete(&mut c, &raced, "w", 1, b"png").unwrap();
    assert_eq!(job(&mut c, &raced)["status"], "CANCELLED");
    let kept: i64 = c.query_one("SELECT count(*) FROM pgshot.outputs WHERE job_id = $1", &[&raced]).unwrap().get(0);
    assert_eq!(kept, 0, "a cancelled job keeps no output");
    assert_eq!(sqlstate(complete(&mut c, &raced, "w", 1, b"again")), WRONG_STATE);

    let finished = enqueue(&mut c, "https://example.com/done", json!({}));
    claim(&mut c, "w", 1, "30 seconds");
    complete(&mut c, &finished, "w", 1, b"png").unwrap();
    for terminal in [&finished, &queued, &running, &raced] {
        assert_eq!(sqlstate(c.query_one("SELECT screenshot_cancel($1)", &[terminal])), WRONG_STATE);
    }
    assert_eq!(sqlstate(c.query_one("SELECT screenshot_cancel('nosuchjob0000000')", &[])), NO_DATA_FOUND);

    let heard: Vec<Value> = drain(&mut listener, Duration::from_secs(2))
        .into_iter()
        .map(|(_, payload)| serde_json::from_str(&payload).unwrap())
        .collect();
    assert_eq!(
        heard,
        [
            json!({"id": queued, "status": "CANCELLED"}),
            json!({"id": running, "status": "CANCELLED"}),
            json!({"id": failing, "status": "CANCELLED"}),
            json!({"id": raced, "status": "CANCELLED"}),
            json!({"id": finished, "status": "COMPLETED"}),
        ],
        "one notification per terminal transition"
    );
}

#[test]
fn finished_jobs_past_the_job_retention_are_deleted_with_their_outputs_and_deliveries() {
    let mut c = db();
    let ids: Vec<String> = (0..5).map(|i| enqueue(&mut c, &format!("https://example.com/{i}"), json!({}))).collect();
    c.execute(
        "UPDATE pgshot.jobs SET webhook_url = 'https://hooks.example.com/x', told = true WHERE id = $1",
        &[&ids[0]],
    )
    .unwrap();
    let claimed = claim(&mut c, "w", 4, "30 seconds");
    for (id, attempt) in &claimed[..3] {
        complete(&mut c, id, "w", *attempt, b"png").unwrap();
    }
    // ids[0..3] completed, one of them still 4 claimed, ids[4] queued; make them 40 days old,
    // and the third a result that is old but has not expired yet.
    let (still_processing, _) = &claimed[3];
    c.execute("UPDATE pgshot.jobs SET created_at = now() - interval '41 days' WHERE true", &[]).unwrap();
    c.execute(
        "UPDATE pgshot.jobs SET completed_at = now() - interval '40 days', expires_at = now() - interval '33 days'          WHERE status = 'COMPLETED'",
        &[],
    )
    .unwrap();
    let unexpired = &claimed[2].0;
    c.execute("UPDATE pgshot.jobs SET expires_at = now() + interval '1 day' WHERE id = $1", &[unexpired]).unwrap();
    let deliveries: i64 = c.query_one("SELECT count(*) FROM pgshot.webhook_deliveries", &[]).unwrap().get(0);
    assert_eq!(deliveries, 1, "the completed job with a webhook has its delivery");

    // 0 keeps every job forever: only the expired bytes go.
    c.batch_execute("SET pgshot.job_retention = 0").unwrap();
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 2);
    assert_eq!(count_jobs(&mut c), 5);

    // The default, 30 days: the two expired completed jobs go, with their outputs and delivery
    // (delivered: one still pending keeps its job, see privileges.rs); the unexpired result, the
    // held job and the queued one stay.
    c.batch_execute("UPDATE pgshot.webhook_deliveries SET status = 'DELIVERED', finished_at = now()").unwrap();
    c.batch_execute("RESET pgshot.job_retention").unwrap();
    let shown: String = c.query_one("SHOW pgshot.job_retention", &[]).unwrap().get(0);
    assert_eq!(shown, "30d");
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 2);
    let left: HashSet<String> = c.query("SELECT id FROM pgshot.jobs", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, HashSet::from([unexpired.clone(), still_processing.clone(), ids[4].clone()]));
    let orphans: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pgshot.outputs WHERE job_id NOT IN (SELECT id FROM pgshot.jobs)) \
                  + (SELECT count(*) FROM pgshot.webhook_deliveries)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "outputs and deliveries went with their jobs");
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 0);
    assert_eq!(sqlstate(c.query("SELECT screenshot_job($1)", &[&ids[0]])), NO_DATA_FOUND);
    // outputs.job_id is not a foreign key: deleting a job by hand, or truncating the table,
    // takes the outputs too.
    c.execute("DELETE FROM pgshot.jobs WHERE id = $1", &[unexpired]).unwrap();
    let outputs = |c: &mut Client| -> i64 { c.query_one("SELECT count(*) FROM pgshot.outputs", &[]).unwrap().get(0) };
    assert_eq!(outputs(&mut c), 0, "deleted with its job");
    let (id, attempt) = claim(&mut c, "w", 1, "30 seconds").remove(0);
    complete(&mut c, &id, "w", attempt, b"png").unwrap();
    assert_eq!(outputs(&mut c), 1);
    c.batch_execute("TRUNCATE pgshot.jobs CASCADE").unwrap();
    assert_eq!(outputs(&mut c), 0, "truncated with the jobs");

    // The setting is checked when it is set, with its name in the error.
    let (state, message) = db_message(c.batch_execute("SET pgshot.job_retention = '-1'"));
    assert_eq!(state, "22023");
    assert!(message.contains("pgshot.job_retention"), "{message}");
}

#[test]
fn a_bulk_request_whose_jobs_were_all_deleted_goes_too() {
    let mut c = db();
    let key: String = c.query_one("SELECT id FROM pgshot.api_key_create('retention')", &[]).unwrap().get(0);
    let bulk: String = c
        .query_one(
            "SELECT pgshot.enqueue_bulk_owned($1, '[{\"url\": \"https://example.com/a\"}]', 10, NULL, NULL)",
            &[&key],
        )
        .unwrap()
        .get(0);
    let (id, attempt) = claim(&mut c, "w", 1, "30 seconds").remove(0);
    complete(&mut c, &id, "w", attempt, b"png").unwrap();
    c.execute(
        "UPDATE pgshot.jobs SET completed_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'",
        &[],
    )
    .unwrap();
    c.execute("UPDATE pgshot.bulks SET created_at = now() - interval '3 hours'", &[]).unwrap();
    c.batch_execute("SET pgshot.job_retention = '1h'").unwrap();
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 2, "purged, then deleted");
    let bulks: i64 = c.query_one("SELECT count(*) FROM pgshot.bulks WHERE id = $1", &[&bulk]).unwrap().get(0);
    assert_eq!(bulks, 0);
}

#[test]
fn a_row_written_past_the_functions_cannot_send_the_browser_off_the_web() {
    let mut c = db();
    for url in ["file:///proc/self/environ", "chrome://settings", "javascript:alert(1)", "HTTP://example.com"] {
        let (state, message) =
            db_message(c.execute("INSERT INTO pgshot.jobs (id, url) VALUES ('abcdefghij0123', $1)", &[&url]));
        assert_eq!(state, "23514", "{url}");
        assert!(message.contains("jobs_url_http"), "{url}: {message}");
    }
    let (state, message) = db_message(c.execute(
        "INSERT INTO pgshot.jobs (id, url, webhook_url) VALUES ('abcdefghij0123', 'https://example.com', 'file:///x')",
        &[],
    ));
    assert_eq!((state.as_str(), message.contains("jobs_webhook_url_http")), ("23514", true), "{message}");
}

/// The state machine's rules hold for rows written by hand as well: each broken rule is refused
/// with 23514 and its name (jobs_rules, job/src/row_rules.rs), and nothing is written.
#[test]
fn a_row_written_by_hand_that_breaks_a_rule_is_refused_naming_the_rule() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com/rules", json!({}));
    let cases = [
        ("status = 'PROCESSING'", "jobs_processing_iff_leased"),
        ("status = 'PROCESSING', lease_expires_at = now()", "jobs_processing_has_worker"),
        ("status = 'RUNNING'", "jobs_status_known"),
        ("status = 'COMPLETED', completed_at = now()", "jobs_completed_expires"),
        ("status = 'FAILED', completed_at = now()", "jobs_failed_iff_error"),
        ("status = 'FAILED', completed_at = now(), error_code = 'lower'", "jobs_error_code_shape"),
        ("completed_at = now()", "jobs_terminal_iff_completed_at"),
        ("attempt = 4, started_at = now()", "jobs_attempt_within_max"),
        ("attempt = 1", "jobs_started_iff_attempted"),
        ("priority = 101", "jobs_priority_range"),
        ("max_attempts = 0, attempt = 0", "jobs_max_attempts_range"),
        ("cancel_requested = true", "jobs_cancel_requested_only_processing"),
        ("expires_at = now()", "jobs_expires_only_completed"),
        ("purged_at = now()", "jobs_purged_only_completed"),
        ("webhook_secret = 's'", "jobs_secret_needs_webhook"),
        ("bulk_position = 1", "jobs_bulk_position_iff_bulk"),
        ("id = 'UPPER-case-id'", "jobs_id_shape"),
        ("options = '[]'", "jobs_options_object"),
        ("errors = '{}'", "jobs_errors_array"),
        ("webhook_url = 'https://hooks.example.com/x'", "jobs_told_iff_listened"),
        ("watched = true", "jobs_told_iff_listened"),
        ("told = true", "jobs_told_iff_listened"),
    ];
    for (set, rule) in cases {
        let (state, message) = db_message(c.execute(&format!("UPDATE pgshot.jobs SET {set} WHERE id = $1"), &[&id]));
        assert_eq!(state, "23514", "{set}: {message}");
        assert!(message.contains(&format!("\"{rule}\"")), "{set}: {message}");
    }
    assert_eq!(job(&mut c, &id)["status"], "QUEUED", "nothing was written");
    let outputs = [
        ("'shot', 'gif', 1, '\\x00', NULL, '{}'", "outputs_type_known"),
        ("'a b', 'pdf', 1, '\\x00', NULL, '{}'", "outputs_id_shape"),
        ("'shot', 'pdf', 2, '\\x00', NULL, '{}'", "outputs_size_matches_bytes"),
        ("'shot', 'pdf', 1, '\\x00', NULL, '[]'", "outputs_metadata_object"),
        ("'shot', 'pdf', 1, '\\x00', 'k', '{}'", "outputs_bytes_or_stored"),
        ("'shot', 'pdf', 1, NULL, '\\x0102', '{}'", "outputs_sha256_shape"),
    ];
    for (values, rule) in outputs {
        let (state, message) = db_message(c.execute(
            &format!(
                "INSERT INTO pgshot.outputs (job_id, output_id, output_type, size, bytes, {}, metadata, position, \
                 content_type) VALUES ($1, {values}, 1, 'application/pdf')",
                if rule == "outputs_sha256_shape" { "sha256" } else { "storage_key" }
            ),
            &[&id],
        ));
        assert_eq!(state, "23514", "{values}: {message}");
        assert!(message.contains(&format!("\"{rule}\"")), "{values}: {message}");
    }
    // The enqueue path itself still writes rows that keep every rule, through to the end.
    let (held, attempt) = claim(&mut c, "w", 1, "30 seconds")[0].clone();
    assert_eq!(held, id);
    c.execute("SELECT screenshot_fail($1, 'w', $2, 'TIMEOUT', 'slow', false)", &[&id, &attempt]).unwrap();
    assert_eq!(job(&mut c, &id)["status"], "FAILED");
}

#[test]
fn every_function_of_the_extension_runs_with_a_fixed_search_path() {
    let mut c = db();
    let rows = c
        .query(
            "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid \
             WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgshot') \
               AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'",
            &[],
        )
        .unwrap();
    assert!(rows.len() > 30, "the extension's functions: {}", rows.len());
    // Functions that run no SQL (Rust reading its arguments or a setting) need neither.
    let no_sql = [
        "pgshot.job_row_check(",
        "pgshot.output_row_check(",
        "pgshot.result_retention()",
        "pgshot.job_retention()",
        "pgshot.notify_all_done()",
        "pgshot.retry_delay(",
        "pgshot.webhook_retry_delay(",
        // and the checks of a claim's and a complete's arguments, which read only those
        "pgshot.check_claim(",
        "pgshot.check_lease(",
        "pgshot.check_outputs(",
        "pgshot.check_stored_outputs(",
    ];
    let mut exempt = 0;
    for row in rows {
        let (name, config): (String, Option<Vec<String>>) = (row.get(0), row.get(1));
        if no_sql.iter().any(|n| name.starts_with(n)) {
            assert_eq!(config, None, "{name}");
            exempt += 1;
            continue;
        }
        let config = config.unwrap_or_default();
        assert_eq!(config.first().map(String::as_str), Some("search_path=pg_catalog, pgshot, pg_temp"), "{name}");
        // The queue's hot path also plans once per session; nothing else is set.
        assert!(config[1..].iter().all(|c| c == "plan_cache_mode=force_generic_plan"), "{name}: {config:?}");
    }
    assert_eq!(exempt, no_sql.len());
    // A table of the caller's named like one of ours is not what the functions read.
    c.batch_execute("CREATE TABLE public.jobs (id text); CREATE SCHEMA evil; SET search_path = evil, public").unwrap();
    c.batch_execute("CREATE TABLE evil.api_keys (id text, key_hash bytea, revoked_at timestamptz)").unwrap();
    let id = enqueue(&mut c, "https://example.com/", json!({}));
    assert_eq!(job(&mut c, &id)["status"], "QUEUED");
}

#[test]
fn purge_after_expiry_removes_the_bytes_and_keeps_the_status() {
    let mut c = db();
    let old = enqueue(&mut c, "https://example.com/old", json!({}));
    let fresh = enqueue(&mut c, "https://example.com/fresh", json!({}));
    for (id, attempt) in claim(&mut c, "w", 2, "30 seconds") {
        complete(&mut c, &id, "w", attempt, b"png bytes").unwrap();
    }
    c.execute(
        "UPDATE pgshot.jobs SET completed_at = now() - interval '8 days', expires_at = now() - interval '1 day' WHERE id = $1",
        &[&old],
    )
    .unwrap();
    assert_eq!(
        sqlstate(c.query("SELECT * FROM screenshot_result($1)", &[&old])),
        RESULT_EXPIRED,
        "expired before purge"
    );
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 1);
    assert_eq!(c.query_one("SELECT screenshot_purge()", &[]).unwrap().get::<_, i32>(0), 0, "purged once");

    let row = c
        .query_one("SELECT bool_and(bytes IS NULL), sum(size)::int8 FROM pgshot.outputs WHERE job_id = $1", &[&old])
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i64>(1)), (true, 9), "bytes gone, size kept");
    let purged = job(&mut c, &old);
    assert_eq!(purged["status"], "COMPLETED");
    assert!(purged.get("expiresAt").is_some());
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_result($1)", &[&old])), RESULT_EXPIRED);
    let kept: Vec<u8> = c.query_one("SELECT bytes FROM screenshot_result($1)", &[&fresh]).unwrap().get(0);
    assert_eq!(kept, b"png bytes");

    c.batch_execute("SET pgshot.result_retention = '2h'").unwrap();
    let short = enqueue(&mut c, "https://example.com/short", json!({}));
    let (_, attempt) = claim(&mut c, "w", 1, "30 seconds")[0].clone();
    complete(&mut c, &short, "w", attempt, b"x").unwrap();
    let ttl: f64 = c
        .query_one(
            "SELECT extract(epoch FROM expires_at - completed_at)::float8 FROM pgshot.jobs WHERE id = $1",
            &[&short],
        )
        .unwrap()
        .get(0);
    assert_eq!(ttl, 7200.0, "pgshot.result_retention sets expiresAt");
    assert_eq!(sqlstate(c.batch_execute("SET pgshot.result_retention = 'forever'")), "22023");
}

#[test]
fn every_invalid_option_raises_22023_naming_the_field_and_writes_nothing() {
    let mut c = db();
    let cases = [
        ("https://example.com", json!({"viewport": {"width": 5000}}), "viewport.width"),
        ("https://example.com", json!({"viewport": {"height": 99}}), "viewport.height"),
        ("https://example.com", json!({"viewport": {"deviceScaleFactor": 0.5}}), "viewport.deviceScaleFactor"),
        ("https://example.com", json!({"format": "gif"}), "format"),
        ("https://example.com", json!({"quality": 101}), "quality"),
        ("https://example.com", json!({"fullPage": "yes"}), "fullPage"),
        ("https://example.com", json!({"maxHeight": 40000}), "maxHeight"),
        ("https://example.com", json!({"delay": -1}), "delay"),
        ("https://example.com", json!({"waitFor": ""}), "waitFor"),
        ("https://example.com", json!({"waitUntil": "never"}), "waitUntil"),
        ("https://example.com", json!({"timeout": 120000}), "timeout"),
        ("https://example.com", json!({"darkMode": 1}), "darkMode"),
        ("https://example.com", json!({"customCss": "x".repeat(10_001)}), "customCss"),
        ("https://example.com", json!({"hideSelectors": vec!["a"; 51]}), "hideSelectors"),
        ("https://example.com", json!({"selector": "x".repeat(501)}), "selector"),
        ("https://example.com", json!({"device": "Galaxy Fold 9"}), "device"),
        ("https://example.com", json!({"blockAds": "please"}), "blockAds"),
        ("https://example.com", json!({"blockLevel": "everything"}), "blockLevel"),
        (
            "https://example.com",
            json!({"session": {"headers": [{"name": "X-A", "value": "1\r\n2"}]}}),
            "session.headers[0].value",
        ),
        // A cookie's value may be left out (the SDKs send "" by default); its name may not.
        ("https://example.com", json!({"session": {"cookies": [{"value": "a"}]}}), "session.cookies[0]"),
        ("https://example.com", json!({"actions": [{"type": "teleport"}]}), "actions[0].type"),
        ("https://example.com", json!({"outputs": [{"type": "video"}]}), "outputs[0].type"),
        ("https://example.com", json!({"outputs": [{"type": "html"}, {"type": "html"}]}), "outputs[1].id"),
        ("https://example.com", json!({"responseType": "XML"}), "responseType"),
        ("https://example.com", json!({"webhookUrl": "file:///etc/passwd"}), "webhookUrl"),
        ("https://example.com", json!({"webhookUrl": "http://169.254.169.254/"}), "webhookUrl"),
        (
            "https://example.com",
            json!({"webhookUrl": "https://h.example", "webhookSecret": "s".repeat(256)}),
            "webhookSecret",
        ),
        ("https://example.com", json!({"priority": 1000}), "priority"),
        ("https://example.com", json!({"maxAttempts": 26}), "maxAttempts"),
        ("https://example.com", json!({"runAt": "soon"}), "runAt"),
        ("https://example.com", json!({"unknownThing": true}), "unknownThing"),
        ("https://example.com", json!("not an object"), "options"),
        ("ftp://example.com/", json!({}), "url"),
        ("file:///etc/passwd", json!({}), "url"),
        ("javascript:alert(1)", json!({}), "url"),
        ("not a url", json!({}), "url"),
        ("http://127.0.0.1/", json!({}), "url"),
        ("http://2130706433/", json!({}), "url"),
        ("http://0177.0.0.1/", json!({}), "url"),
        ("http://0x7f000001/", json!({}), "url"),
        ("http://[::ffff:127.0.0.1]/", json!({}), "url"),
        ("http://10.0.0.1/", json!({}), "url"),
        ("http://169.254.169.254/latest/meta-data", json!({}), "url"),
        ("http://localhost:3000/", json!({}), "url"),
    ];
    for (url, options, field) in cases {
        let (code, message) = db_message(c.query_one("SELECT screenshot_enqueue($1, $2)", &[&url, &options]));
        assert_eq!(code, INVALID_PARAMETER_VALUE, "{url} {options}: {message}");
        assert!(
            message.starts_with(field) || message.contains(&format!(" {field}")),
            "{options}: {message:?} names {field}"
        );
    }
    let (code, message) = db_message(c.query_one("SELECT screenshot_enqueue(NULL)", &[]));
    assert_eq!((code.as_str(), message.as_str()), (INVALID_PARAMETER_VALUE, "url must not be null"));
    let bad_bulk = json!([{"url": "https://a.example"}, {"url": "https://b.example", "quality": 0}]);
    let (code, message) = db_message(c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&bad_bulk]));
    assert_eq!(
        (code.as_str(), message.as_str()),
        (INVALID_PARAMETER_VALUE, "requests[1].quality must be between 1 and 100")
    );
    assert_eq!(count_jobs(&mut c), 0, "nothing was written");

    // Worker-side arguments are checked too.
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_claim('w', 0)", &[])), INVALID_PARAMETER_VALUE);
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_claim('', 1)", &[])), INVALID_PARAMETER_VALUE);
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_claim('w', 1, '0 seconds')", &[])), INVALID_PARAMETER_VALUE);
    let id = enqueue(&mut c, "https://example.com", json!({}));
    claim(&mut c, "w", 1, "30 seconds");
    assert_eq!(
        sqlstate(c.execute("SELECT screenshot_complete($1, 'w', 1, '{}', ARRAY[]::pgshot.output[])", &[&id])),
        INVALID_PARAMETER_VALUE
    );
    let refused = [
        (
            "screenshot_complete($1, 'w', 1, '{}', ARRAY[ROW('a', 'html', 'text/html', 'x'::bytea, NULL),
                                                   ROW('a', 'html', 'text/html', 'y'::bytea, NULL)]::pgshot.output[])",
            "outputs[2] is incomplete or repeats output_id \"a\"",
        ),
        (
            "screenshot_complete($1, 'w', 1, '{}', ARRAY[ROW('a', 'html', 'text/html', NULL, NULL)]::pgshot.output[])",
            "outputs[1] is incomplete or repeats output_id \"a\"",
        ),
        (
            "screenshot_complete($1, 'w', 1, '{}', ARRAY[NULL]::pgshot.output[])",
            "outputs[1] is incomplete or repeats output_id \"<NULL>\"",
        ),
        (
            "screenshot_complete($1, 'w', 1, '[]', ARRAY[ROW('a', 'html', 'text/html', 'x'::bytea, NULL)]::pgshot.output[])",
            "metadata must be a JSON object",
        ),
        ("screenshot_complete($1, 'w', 1, '{}', NULL)", "outputs must not be empty"),
        (
            "screenshot_complete_stored($1, 'w', 1, '{}', ARRAY[ROW('a', 'html', 'text/html', 'k', -1, '\\x00'::bytea, NULL)]::pgshot.stored_output[])",
            "outputs[1] is incomplete or repeats output_id \"a\"",
        ),
        (
            "screenshot_complete_stored($1, 'w', 1, '{}', ARRAY[ROW('a', 'html', 'text/html', 'k', 1, NULL, NULL)]::pgshot.stored_output[])",
            "outputs[1] is incomplete or repeats output_id \"a\"",
        ),
        ("screenshot_complete_stored($1, 'w', 1, '{}', ARRAY[]::pgshot.stored_output[])", "outputs must not be empty"),
    ];
    for (call, expected) in refused {
        let (state, message) = db_message(c.execute(&format!("SELECT {call}"), &[&id]));
        assert_eq!((state.as_str(), message.as_str()), (INVALID_PARAMETER_VALUE, expected), "{call}");
    }
    assert_eq!(sqlstate(fail(&mut c, &id, "w", 1, "lower case", true)), INVALID_PARAMETER_VALUE);
    assert_eq!(job(&mut c, &id)["status"], "PROCESSING", "a refused completion changes nothing");
    assert_eq!(sqlstate(c.query_one("SELECT screenshot_heartbeat('nosuchjob0000000', 'w', 1)", &[])), NO_DATA_FOUND);
}

#[test]
fn idempotency_key_returns_the_same_job_and_refuses_a_different_request() {
    let mut c = db();
    let a = enqueue(&mut c, "https://example.com", json!({"idempotencyKey": "order-1", "fullPage": true}));
    let again = enqueue(&mut c, "https://example.com", json!({"idempotencyKey": "order-1", "fullPage": true}));
    assert_eq!(a, again);
    let (code, _) = db_message(c.query_one(
        "SELECT screenshot_enqueue('https://example.com', '{\"idempotencyKey\": \"order-1\", \"fullPage\": false}')",
        &[],
    ));
    assert_eq!(code, UNIQUE_VIOLATION);
    let bulk: Vec<String> = c
        .query(
            "SELECT * FROM screenshot_enqueue_bulk($1)",
            &[&json!([{"url": "https://example.com", "idempotencyKey": "order-1", "fullPage": true},
                      {"url": "https://example.com/2", "idempotencyKey": "order-2"}])],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bulk[0], a);
    assert_ne!(bulk[1], a);
    assert_eq!(count_jobs(&mut c), 2);
}

#[test]
fn private_networks_need_a_superuser_setting() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    assert_eq!(
        sqlstate(c.query_one("SELECT screenshot_enqueue('http://127.0.0.1:8080/')", &[])),
        INVALID_PARAMETER_VALUE
    );
    c.batch_execute("SET pgshot.allow_private_networks = on").unwrap();
    enqueue(&mut c, "http://127.0.0.1:8080/", json!({"webhookUrl": "http://127.0.0.1:9000/hook"}));

    // An application role (this database's app role) may enqueue, and nothing more.
    c.batch_execute("CREATE ROLE mallory LOGIN").unwrap();
    let app: String = c.query_one("SELECT pgshot.role('app')::text", &[]).unwrap().get(0);
    c.batch_execute(&format!("GRANT \"{app}\" TO mallory")).unwrap();
    let mallory = format!("host=127.0.0.1 port={} user=mallory dbname={name}", cl.port());
    // Before the library is loaded the setting is a placeholder: Postgres accepts the SET but drops
    // the value when pgshot registers the setting as superuser-only.
    let mut m = connect_url(&mallory);
    m.batch_execute("SET pgshot.allow_private_networks = on").unwrap();
    assert_eq!(sqlstate(m.query_one("SELECT screenshot_enqueue('http://10.0.0.1/')", &[])), INVALID_PARAMETER_VALUE);
    let mut m = connect_url(&mallory);
    enqueue(&mut m, "https://example.com", json!({}));
    assert_eq!(sqlstate(m.batch_execute("SET pgshot.allow_private_networks = on")), "42501");
    assert_eq!(sqlstate(m.query_one("SELECT screenshot_enqueue('http://10.0.0.1/')", &[])), INVALID_PARAMETER_VALUE);
    enqueue(&mut m, "https://example.com", json!({}));
}

#[test]
fn a_database_owner_who_is_not_superuser_can_create_the_extension() {
    let cl = cluster();
    let mut admin = cl.connect("postgres");
    admin.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    admin.batch_execute("CREATE DATABASE alices OWNER alice").unwrap();
    let mut alice = connect_url(&format!("host=127.0.0.1 port={} user=alice dbname=alices", cl.port()));
    alice.batch_execute("CREATE EXTENSION pgshot").unwrap();
    let id = enqueue(&mut alice, "https://example.com", json!({}));
    assert_eq!(claim(&mut alice, "w", 1, "30 seconds"), [(id.clone(), 1)]);
    complete(&mut alice, &id, "w", 1, b"png").unwrap();
    assert_eq!(job(&mut alice, &id)["status"], "COMPLETED");
    c_purge_and_stats(&mut alice);
}

fn c_purge_and_stats(c: &mut Client) {
    c.query_one("SELECT screenshot_purge()", &[]).unwrap();
    c.query_one("SELECT screenshot_rescue()", &[]).unwrap();
    let row = c.query_one("SELECT completed, queued FROM screenshot_stats()", &[]).unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 0));
}

#[test]
fn stats_count_jobs_per_status() {
    let mut c = db();
    for i in 0..4 {
        enqueue(&mut c, &format!("https://example.com/{i}"), json!({}));
    }
    enqueue(&mut c, "https://example.com/later", json!({"runAt": "2999-01-01T00:00:00Z"}));
    let (id, attempt) = claim(&mut c, "w", 1, "30 seconds")[0].clone();
    complete(&mut c, &id, "w", attempt, b"png").unwrap();
    claim(&mut c, "w", 1, "30 seconds");
    let row = c
        .query_one("SELECT queued, ready, processing, completed, failed, cancelled, oldest_queued_age IS NOT NULL, expired_leases FROM screenshot_stats()", &[])
        .unwrap();
    let counts: Vec<i64> = [0, 1, 2, 3, 4, 5, 7].iter().map(|&i| row.get(i)).collect();
    assert_eq!(counts, [3, 2, 1, 1, 0, 0, 0]);
    assert!(row.get::<_, bool>(6));
}

#[test]
fn release_gives_a_job_back_without_counting_the_attempt() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com", json!({"maxAttempts": 1}));
    assert_eq!(claim(&mut c, "leaving", 1, "30 seconds"), [(id.clone(), 1)]);
    let status: String = c.query_one("SELECT screenshot_release($1, 'leaving', 1)", &[&id]).unwrap().get(0);
    assert_eq!(status, "QUEUED");
    let queued = job(&mut c, &id);
    assert_eq!(keys(&queued), ["createdAt", "id", "status", "url"], "as if never claimed");
    assert_eq!(claim(&mut c, "staying", 1, "30 seconds"), [(id.clone(), 1)], "its one attempt is still there");
    assert_eq!(sqlstate(c.query_one("SELECT screenshot_release($1, 'leaving', 1)", &[&id])), WRONG_STATE);
    complete(&mut c, &id, "staying", 1, b"png").unwrap();

    let cancelled = enqueue(&mut c, "https://example.com/2", json!({}));
    claim(&mut c, "leaving", 1, "30 seconds");
    c.query_one("SELECT screenshot_cancel($1)", &[&cancelled]).unwrap();
    let status: String = c.query_one("SELECT screenshot_release($1, 'leaving', 1)", &[&cancelled]).unwrap().get(0);
    assert_eq!(status, "CANCELLED");
}

#[test]
fn api_keys_are_stored_hashed_and_own_their_jobs() {
    let mut c = db();
    let row = c.query_one("SELECT id, key FROM pgshot.api_key_create('ci')", &[]).unwrap();
    let (key_id, key): (String, String) = (row.get(0), row.get(1));
    assert!(key.starts_with("pgs_") && key.len() == 68, "{key}");
    let stored: i64 = c
        .query_one("SELECT count(*) FROM pgshot.api_keys WHERE key_hash = sha256(convert_to($1, 'UTF8'))", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let leaked: i64 = c
        .query_one("SELECT count(*) FROM pgshot.api_keys WHERE position($1 in row(api_keys.*)::text) > 0", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "the key itself is not stored");
    let owner: Option<String> = c.query_one("SELECT pgshot.api_key_owner($1)", &[&key]).unwrap().get(0);
    assert_eq!(owner.as_deref(), Some(key_id.as_str()));
    let nobody: Option<String> = c.query_one("SELECT pgshot.api_key_owner('pgs_wrong')", &[]).unwrap().get(0);
    assert_eq!(nobody, None);

    let other: String = c.query_one("SELECT id FROM pgshot.api_key_create('other')", &[]).unwrap().get(0);
    let opts = json!({"idempotencyKey": "same"});
    let mine: String =
        c.query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com', $2)", &[&key_id, &opts]).unwrap().get(0);
    let theirs: String =
        c.query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com', $2)", &[&other, &opts]).unwrap().get(0);
    assert_ne!(mine, theirs, "idempotency keys are per owner");
    let again: String =
        c.query_one("SELECT pgshot.enqueue_owned($1, 'https://example.com', $2)", &[&key_id, &opts]).unwrap().get(0);
    assert_eq!(again, mine);
    let owners: Vec<String> =
        c.query("SELECT owner FROM pgshot.jobs ORDER BY owner", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(owners.len(), 2);

    c.execute("SELECT pgshot.api_key_revoke($1)", &[&key_id]).unwrap();
    let revoked: Option<String> = c.query_one("SELECT pgshot.api_key_owner($1)", &[&key]).unwrap().get(0);
    assert_eq!(revoked, None, "a revoked key owns nothing any more");
    assert_eq!(sqlstate(c.execute("SELECT pgshot.api_key_revoke('key_000000000000')", &[])), NO_DATA_FOUND);
    assert_eq!(sqlstate(c.query("SELECT * FROM pgshot.api_key_create('')", &[])), INVALID_PARAMETER_VALUE);
}

#[test]
fn every_ssrf_spelling_is_refused_at_enqueue_as_a_page_and_as_a_webhook() {
    let mut c = db();
    for url in SSRF_CORPUS {
        let (state, message) = db_message(c.query_one("SELECT screenshot_enqueue($1)", &[url]));
        assert_eq!(state, INVALID_PARAMETER_VALUE, "{url}");
        assert!(message.starts_with("url "), "{url}: the field is named: {message}");
        let (state, message) = db_message(
            c.query_one("SELECT screenshot_enqueue('https://example.com', $1)", &[&json!({"webhookUrl": url})]),
        );
        assert_eq!(state, INVALID_PARAMETER_VALUE, "{url}");
        assert!(message.starts_with("webhookUrl "), "{url}: the field is named: {message}");
        // One bad request in a bulk writes none of the good ones.
        let bulk = json!([{"url": "https://example.com/ok"}, {"url": url}]);
        let (state, message) = db_message(c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&bulk]));
        assert_eq!(state, INVALID_PARAMETER_VALUE, "{url}");
        assert!(message.contains("url"), "{url}: {message}");
    }
    assert_eq!(count_jobs(&mut c), 0, "nothing half-written");
    // Non-public literal addresses say what they are.
    let err = c.query_one("SELECT screenshot_enqueue('http://[::ffff:169.254.169.254]/')", &[]).unwrap_err();
    let detail = err.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_string();
    assert!(detail.contains("link-local"), "{detail}");
}

/// configuration_limit_exceeded, with DETAIL "retry after N s".
const LIMITED: &str = "53400";

fn api_key(c: &mut Client, name: &str) -> String {
    c.query_one("SELECT id FROM pgshot.api_key_create($1)", &[&name]).unwrap().get(0)
}

fn enqueue_as(c: &mut Client, owner: &str, url: &str, options: Value) -> Result<String, postgres::Error> {
    c.query_one("SELECT pgshot.enqueue_owned($1, $2, $3)", &[&owner, &url, &options]).map(|r| r.get(0))
}

fn owner_of(c: &mut Client, id: &str) -> String {
    c.query_one("SELECT coalesce(owner, enqueued_by) FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0)
}

#[test]
fn a_key_with_a_backlog_does_not_hold_back_another_keys_first_jobs() {
    let mut c = db();
    let a = api_key(&mut c, "backlog");
    let b = api_key(&mut c, "newcomer");
    // A's 2000 jobs come first, and ask for the highest priority there is.
    c.execute(
        "SELECT pgshot.enqueue_owned($1, 'https://example.com/a/' || g, '{\"priority\": -100}') \
         FROM generate_series(1, 2000) g",
        &[&a],
    )
    .unwrap();
    let b_jobs: Vec<String> = (0..5)
        .map(|i| enqueue_as(&mut c, &b, &format!("https://example.com/b/{i}"), json!({"priority": 100})).unwrap())
        .collect();
    // Four worker slots: each takes one job, and takes the next when it finishes one.
    let mut running: Vec<(String, i32)> = Vec::new();
    let mut order = Vec::new();
    for n in 0..12 {
        if running.len() == 4 {
            let (id, attempt) = running.remove(0);
            complete(&mut c, &id, "w", attempt, b"png").unwrap();
        }
        let got = claim(&mut c, "w", 1, "5 minutes");
        assert_eq!(got.len(), 1, "claim {n} found a job");
        order.push(owner_of(&mut c, &got[0].0));
        running.extend(got);
    }
    let b_claims: Vec<usize> = order.iter().enumerate().filter(|(_, o)| **o == b).map(|(i, _)| i).collect();
    assert_eq!(b_claims.len(), 5, "all of B's jobs were claimed within 12 claims: {order:?}");
    assert!(b_claims[0] <= 1, "B's first job is the first or second claim: {order:?}");
    // A still gets its share meanwhile: the slots alternate.
    assert!(order[..10].iter().filter(|o| **o == a).count() >= 5, "{order:?}");
    let claimed_b: i64 = c
        .query_one("SELECT count(*) FROM pgshot.jobs WHERE id = ANY($1) AND status <> 'QUEUED'", &[&b_jobs])
        .unwrap()
        .get(0);
    assert_eq!(claimed_b, 5);

    // One claim of many jobs shares its slots too, by how many each owner already runs.
    let mut d = db();
    let x = api_key(&mut d, "x");
    let y = api_key(&mut d, "y");
    for i in 0..20 {
        enqueue_as(&mut d, &x, &format!("https://example.com/x/{i}"), json!({})).unwrap();
    }
    for i in 0..20 {
        enqueue_as(&mut d, &y, &format!("https://example.com/y/{i}"), json!({})).unwrap();
    }
    let first = claim(&mut d, "w", 6, "5 minutes");
    let owners: Vec<String> = first.iter().map(|(id, _)| owner_of(&mut d, id)).collect();
    assert_eq!(owners.iter().filter(|o| **o == x).count(), 3, "{owners:?}");
    let second = claim(&mut d, "w", 3, "5 minutes");
    let owners: Vec<String> = second.iter().map(|(id, _)| owner_of(&mut d, id)).collect();
    assert_eq!(owners.len(), 3);
    // Within an owner, priority and then age still decide.
    let within: Vec<String> = d
        .query("SELECT url FROM pgshot.jobs WHERE owner = $1 AND status = 'PROCESSING' ORDER BY started_at, url", &[&x])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(within.iter().all(|u| u.starts_with("https://example.com/x/")), "{within:?}");
}

#[test]
fn a_share_whose_jobs_another_claimer_holds_goes_to_the_other_owners() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    let x = api_key(&mut c, "x");
    let y = api_key(&mut c, "y");
    let x_jobs: Vec<String> =
        (0..4).map(|i| enqueue_as(&mut c, &x, &format!("https://example.com/x/{i}"), json!({})).unwrap()).collect();
    for i in 0..10 {
        enqueue_as(&mut c, &y, &format!("https://example.com/y/{i}"), json!({})).unwrap();
    }
    // z's one job is not due: z is offered a share, which comes back empty.
    let z = api_key(&mut c, "z");
    let later = enqueue_as(&mut c, &z, "https://example.com/z", json!({"runAt": "2999-01-01T00:00:00Z"})).unwrap();
    // Another session holds three of x's four jobs, as a claimer does until it commits.
    let mut other = cl.connect(&name);
    let mut held = other.transaction().unwrap();
    held.execute("SELECT 1 FROM pgshot.jobs WHERE id = ANY($1) FOR UPDATE", &[&x_jobs[..3].to_vec()]).unwrap();
    // Nobody runs anything: x, y and z are offered 2 each. One of x's is free, none of z's is due,
    // and y makes up the rest.
    let got = claim(&mut c, "w", 6, "5 minutes");
    let owners: Vec<String> = got.iter().map(|(id, _)| owner_of(&mut c, id)).collect();
    assert_eq!(got.len(), 6, "the claim is made up to what was asked: {owners:?}");
    assert_eq!(owners.iter().filter(|o| **o == x).count(), 1, "{owners:?}");
    assert!(got.iter().any(|(id, _)| *id == x_jobs[3]), "x's free job is claimed: {got:?}");
    // Nothing is claimed twice, and the held jobs are skipped, not waited for, and still queued.
    let mut ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    held.rollback().unwrap();
    let queued: i64 = c
        .query_one(
            "SELECT count(*) FROM pgshot.jobs WHERE id = ANY($1) AND status = 'QUEUED'",
            &[&x_jobs[..3].to_vec()],
        )
        .unwrap()
        .get(0);
    assert_eq!(queued, 3);
    assert_eq!(job(&mut c, &later)["status"], "QUEUED");
    // Once free, they are claimed again, shared with y's rest: x runs one, y five, so x's three
    // come first.
    let next = claim(&mut c, "w", 4, "5 minutes");
    let owners: Vec<String> = next.iter().map(|(id, _)| owner_of(&mut c, id)).collect();
    assert_eq!(owners.iter().filter(|o| **o == x).count(), 3, "{owners:?}");
    assert_eq!(owners.len(), 4);
}

#[test]
fn claimers_of_many_owners_take_every_job_exactly_once() {
    let cl = cluster();
    let name = cl.fresh_db();
    let mut c = cl.connect(&name);
    for half in 0..2 {
        let requests: Vec<Value> =
            (0..750).map(|i| json!({"url": format!("https://example.com/{half}/{i}")})).collect();
        c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
    }
    // Five owners, unevenly: owner-0 has most of the jobs.
    c.execute("UPDATE pgshot.jobs SET enqueued_by = 'owner-' || (abs(hashtext(id)) % 9 / 2)", &[]).unwrap();
    let url = cl.url(&name);
    let claimers: Vec<_> = (0..6)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect_url(&url);
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                let mut empty = 0;
                // A claim can come back empty while the last jobs are locked by other claimers.
                while empty < 3 {
                    let batch = claim(&mut c, &worker, 5, "5 minutes");
                    if batch.is_empty() {
                        empty += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    for (id, attempt) in batch {
                        complete(&mut c, &id, &worker, attempt, b"png").unwrap();
                        mine.push(id);
                    }
                }
                mine
            })
        })
        .collect();
    let mut claimed: Vec<String> = claimers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let n = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!((n, claimed.len()), (1500, 1500), "every job once");
    let left: i64 = c.query_one("SELECT count(*) FROM pgshot.jobs WHERE status <> 'COMPLETED'", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}

#[test]
fn key_limits_refuse_with_53400_and_retry_after_and_write_nothing() {
    let mut c = db();
    let key = api_key(&mut c, "limited");
    c.execute("SELECT pgshot.api_key_set_limits($1, 3, NULL)", &[&key]).unwrap();
    for i in 0..3 {
        enqueue_as(&mut c, &key, &format!("https://example.com/{i}"), json!({"idempotencyKey": format!("k{i}")}))
            .unwrap();
    }
    let before = count_jobs(&mut c);
    let refused = enqueue_as(&mut c, &key, "https://example.com/4", json!({})).unwrap_err();
    assert_eq!(refused.code().map(|s| s.code()), Some(LIMITED));
    let db_error = refused.as_db_error().unwrap();
    assert!(db_error.message().contains("3 jobs per minute"), "{}", db_error.message());
    // The bucket refills 3 tokens a minute: the next one is 20 s away (less what has passed).
    let wait: u32 =
        db_error.detail().unwrap().strip_prefix("retry after ").unwrap().strip_suffix(" s").unwrap().parse().unwrap();
    assert!((19..=20).contains(&wait), "{:?}", db_error.detail());
    assert_eq!(count_jobs(&mut c), before, "a refused request writes nothing");
    // A request answered from its idempotency key creates nothing and takes nothing.
    enqueue_as(&mut c, &key, "https://example.com/0", json!({"idempotencyKey": "k0"})).unwrap();
    // More jobs at once than the key may ever create in a minute: a client mistake, said so.
    let bulk = c
        .query_one(
            "SELECT pgshot.enqueue_bulk_owned($1, $2, 100, NULL, NULL)",
            &[&key, &json!([{"url": "https://a.example"}, {"url": "https://b.example"}, {"url": "https://c.example"}, {"url": "https://d.example"}])],
        )
        .unwrap_err();
    assert_eq!(sqlstate(Err::<(), _>(bulk)), INVALID_PARAMETER_VALUE);
    // A minute later the bucket is full again.
    c.execute(
        "UPDATE pgshot.api_keys SET rate_checked_at = rate_checked_at - interval '1 minute' WHERE id = $1",
        &[&key],
    )
    .unwrap();
    let secret: String = c.query_one("SELECT key FROM pgshot.api_key_create('limits')", &[]).unwrap().get(0);
    let limits = |c: &mut Client, secret: &str| -> Option<(Option<i32>, i32, i32)> {
        c.query_opt("SELECT rate_limit, remaining, reset_seconds FROM pgshot.api_key_limits($1)", &[&secret])
            .unwrap()
            .map(|r| (r.get(0), r.get::<_, Option<i32>>(1).unwrap_or(-1), r.get::<_, Option<i32>>(2).unwrap_or(-1)))
    };
    assert_eq!(limits(&mut c, "pgs_unknown"), None, "an unknown key has no row");
    assert_eq!(limits(&mut c, &secret), Some((None, -1, -1)), "a key without a rate limit");
    let limited_id: String = c
        .query_one("SELECT id FROM pgshot.api_keys WHERE key_hash = sha256(convert_to($1, 'UTF8'))", &[&secret])
        .unwrap()
        .get(0);
    c.execute("SELECT pgshot.api_key_set_limits($1, 10, NULL)", &[&limited_id]).unwrap();
    assert_eq!(limits(&mut c, &secret), Some((Some(10), 10, 0)), "a new limit starts with a full bucket");
    enqueue_as(&mut c, &limited_id, "https://example.com/one", json!({})).unwrap();
    enqueue_as(&mut c, &limited_id, "https://example.com/two", json!({})).unwrap();
    // Two tokens taken; each comes back in 6 s.
    assert_eq!(limits(&mut c, &secret), Some((Some(10), 8, 12)));
    enqueue_as(&mut c, &key, "https://example.com/after-a-minute", json!({})).unwrap();

    // In flight: queued or processing.
    let busy = api_key(&mut c, "busy");
    c.execute("SELECT pgshot.api_key_set_limits($1, NULL, 2)", &[&busy]).unwrap();
    let first = enqueue_as(&mut c, &busy, "https://example.com/busy/1", json!({})).unwrap();
    enqueue_as(&mut c, &busy, "https://example.com/busy/2", json!({})).unwrap();
    let third = enqueue_as(&mut c, &busy, "https://example.com/busy/3", json!({})).unwrap_err();
    assert_eq!(third.code().map(|s| s.code()), Some(LIMITED));
    assert!(third.as_db_error().unwrap().message().contains("2 jobs queued or processing"));
    c.query_one("SELECT screenshot_cancel($1)", &[&first]).unwrap();
    enqueue_as(&mut c, &busy, "https://example.com/busy/3", json!({})).unwrap();
    // Jobs enqueued from SQL without a key have no limit.
    for i in 0..5 {
        enqueue(&mut c, &format!("https://example.com/sql/{i}"), json!({}));
    }
    // Limits are checked when they are set.
    for (rate, in_flight, field) in [(Some(0), None, "rate_limit"), (None, Some(-1), "max_in_flight")] {
        let (code, message) =
            db_message(c.query_one("SELECT pgshot.api_key_set_limits($1, $2, $3)", &[&busy, &rate, &in_flight]));
        assert_eq!(code, INVALID_PARAMETER_VALUE);
        assert!(message.starts_with(field), "{message}");
    }
    let e = c.query_one("SELECT pgshot.api_key_set_limits('key_nosuchkey000', 1, 1)", &[]).unwrap_err();
    assert_eq!(e.code().map(|s| s.code()), Some(NO_DATA_FOUND));
}

#[test]
fn attempts_show_each_worker_and_the_last_error_while_a_job_is_retried() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com/attempts", json!({"maxAttempts": 3}));
    assert_eq!(job(&mut c, &id).get("attempts"), None, "no attempt yet");
    let (_, attempt) = claim(&mut c, "w-one", 1, "30 seconds")[0].clone();
    assert_eq!(fail(&mut c, &id, "w-one", attempt, "TIMEOUT", true).unwrap(), "QUEUED");
    let j = job(&mut c, &id);
    assert_eq!(j["status"], "QUEUED");
    assert!(j.get("errorCode").is_none(), "errorCode waits for the job to fail: {j}");
    assert_eq!(j["lastError"]["attempt"], 1);
    assert_eq!(j["lastError"]["errorCode"], "TIMEOUT");
    assert_eq!(j["lastError"]["errorMessage"], "it broke");
    let first = &j["attempts"][0];
    assert_eq!(first["status"], "FAILED");
    assert_eq!(first["worker"], "w-one");
    assert_eq!(first["errorCode"], "TIMEOUT");
    assert!(first["startedAt"].as_str().unwrap() <= first["endedAt"].as_str().unwrap(), "{j}");
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1, "{j}");

    // The retry, on another worker: running, then completed; the first attempt stays.
    c.execute("UPDATE pgshot.jobs SET run_at = now() WHERE id = $1", &[&id]).unwrap();
    let (_, attempt) = claim(&mut c, "w-two", 1, "30 seconds")[0].clone();
    let j = job(&mut c, &id);
    assert_eq!(j["attempts"][1]["status"], "RUNNING");
    assert_eq!(j["attempts"][1]["worker"], "w-two");
    assert!(j["attempts"][1].get("endedAt").is_none(), "{j}");
    complete(&mut c, &id, "w-two", attempt, b"png").unwrap();
    let j = job(&mut c, &id);
    assert_eq!(j["attempts"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["attempts"][1]["status"], "COMPLETED");
    assert_eq!(j["attempts"][1]["endedAt"], j["completedAt"]);
    assert_eq!(j["attempts"][0]["worker"], "w-one");
    assert_eq!(j["lastError"]["attempt"], 1, "the last failed attempt, after a success too");

    // An expired lease is an attempt of its worker too.
    let id = enqueue(&mut c, "https://example.com/lease", json!({"maxAttempts": 1}));
    claim(&mut c, "w-gone", 1, "1 second");
    c.execute("UPDATE pgshot.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", &[&id]).unwrap();
    c.query_one("SELECT screenshot_rescue()", &[]).unwrap();
    let j = job(&mut c, &id);
    assert_eq!(j["status"], "FAILED");
    assert_eq!(j["attempts"], json!([j["attempts"][0].clone()]), "{j}");
    assert_eq!(j["attempts"][0]["worker"], "w-gone");
    assert_eq!(j["attempts"][0]["errorCode"], "LEASE_EXPIRED");
}

fn beat(c: &mut Client, worker: &str, concurrency: i32, in_flight: i32) -> Result<u64, postgres::Error> {
    c.execute(
        "SELECT screenshot_worker_beat($1, 'host-a', $2, $3, 1, '0.4.0', 4242)",
        &[&worker, &concurrency, &in_flight],
    )
}

#[test]
fn workers_report_themselves_and_a_bad_report_names_its_argument() {
    let mut c = db();
    beat(&mut c, "w-1", 4, 2).unwrap();
    beat(&mut c, "w-2", 2, 0).unwrap();
    enqueue(&mut c, "https://example.com/held", json!({}));
    claim(&mut c, "w-1", 1, "30 seconds");
    let rows = c
        .query(
            "SELECT id, host, concurrency, in_flight, jobs_held, browser_restarts, alive FROM screenshot_workers()",
            &[],
        )
        .unwrap();
    let w1 = rows.iter().find(|r| r.get::<_, String>(0) == "w-1").expect("w-1 is listed");
    assert_eq!(w1.get::<_, String>(1), "host-a");
    assert_eq!((w1.get::<_, i32>(2), w1.get::<_, i32>(3)), (4, 2));
    assert_eq!(w1.get::<_, i64>(4), 1, "the job it holds, from the queue");
    assert_eq!(w1.get::<_, i32>(5), 1);
    assert!(w1.get::<_, bool>(6));
    assert_eq!(rows.len(), 2);

    for (concurrency, in_flight, field) in [(0, 0, "concurrency"), (2, 3, "in_flight"), (2, -1, "in_flight")] {
        let (state, message) = db_message(beat(&mut c, "w-1", concurrency, in_flight));
        assert_eq!(state, INVALID_PARAMETER_VALUE, "{message}");
        assert!(message.starts_with(field), "{field}: {message}");
    }
    let (state, message) = db_message(c.execute("SELECT screenshot_worker_beat('', 'h', 1, 0, 0, 'v')", &[]));
    assert_eq!(state, INVALID_PARAMETER_VALUE);
    assert!(message.starts_with("worker_id"), "{message}");
    let refused: (i32, i32) = {
        let r = c.query_one("SELECT concurrency, in_flight FROM pgshot.workers WHERE id = 'w-1'", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(refused, (4, 2), "a refused report changed nothing");

    c.execute("SELECT screenshot_worker_stop('w-2')", &[]).unwrap();
    c.execute("UPDATE pgshot.workers SET last_seen = now() - interval '2 minutes' WHERE id = 'w-1'", &[]).unwrap();
    let alive: Vec<bool> =
        c.query("SELECT alive FROM screenshot_workers()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(alive, [false, false], "one stopped, one silent for two minutes");
    beat(&mut c, "w-1", 4, 0).unwrap();
    let alive: bool = c.query_one("SELECT alive FROM screenshot_workers() WHERE id = 'w-1'", &[]).unwrap().get(0);
    assert!(alive, "a beat brings it back");
    // A day of silence and it is forgotten, at the next beat of any worker.
    c.execute("UPDATE pgshot.workers SET last_seen = now() - interval '25 hours' WHERE id = 'w-2'", &[]).unwrap();
    beat(&mut c, "w-1", 4, 0).unwrap();
    assert_eq!(c.query("SELECT 1 FROM pgshot.workers WHERE id = 'w-2'", &[]).unwrap().len(), 0);
}

const THUMB: &str = "SELECT screenshot_thumbnail_put($1, $2, $3, $4, 4, 3, $5)";

#[test]
fn a_thumbnail_belongs_to_the_attempt_held_and_goes_with_the_result() {
    let mut c = db();
    let id = enqueue(&mut c, "https://example.com/thumb", json!({}));
    let (_, attempt) = claim(&mut c, "w", 1, "30 seconds")[0].clone();
    let jpeg: &[u8] = b"\xff\xd8\xff thumbnail";
    assert_eq!(sqlstate(c.execute(THUMB, &[&id, &"w", &(attempt + 1), &"image/jpeg", &jpeg])), WRONG_STATE);
    assert_eq!(sqlstate(c.execute(THUMB, &[&id, &"other", &attempt, &"image/jpeg", &jpeg])), WRONG_STATE);
    let (state, message) = db_message(c.execute(THUMB, &[&id, &"w", &attempt, &"text/html", &jpeg]));
    assert_eq!(state, INVALID_PARAMETER_VALUE);
    assert!(message.starts_with("content_type"), "{message}");
    let big = vec![0u8; 300_000];
    let (state, message) = db_message(c.execute(THUMB, &[&id, &"w", &attempt, &"image/jpeg", &big]));
    assert_eq!(state, INVALID_PARAMETER_VALUE);
    assert!(message.starts_with("bytes"), "{message}");
    c.execute(THUMB, &[&id, &"w", &attempt, &"image/jpeg", &jpeg]).unwrap();
    let thumbnail = |c: &mut Client| -> Vec<Vec<u8>> {
        c.query("SELECT bytes FROM screenshot_thumbnail($1)", &[&id]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    assert!(thumbnail(&mut c).is_empty(), "not before the job is completed");
    complete(&mut c, &id, "w", attempt, b"png").unwrap();
    assert_eq!(thumbnail(&mut c), [jpeg.to_vec()]);
    let j = job(&mut c, &id);
    assert_eq!(j.get("outputs"), None, "never an output: {j}");
    assert_eq!(sqlstate(c.query("SELECT * FROM screenshot_thumbnail('nosuchjob00000')", &[])), NO_DATA_FOUND);

    c.execute("UPDATE pgshot.jobs SET expires_at = now() - interval '1 second' WHERE id = $1", &[&id]).unwrap();
    c.query_one("SELECT screenshot_purge()", &[]).unwrap();
    assert!(thumbnail(&mut c).is_empty());
    assert_eq!(
        c.query("SELECT 1 FROM pgshot.thumbnails WHERE job_id = $1", &[&id]).unwrap().len(),
        0,
        "deleted with the result"
    );
}

#[test]
fn activity_and_hourly_aggregates_count_what_finished_in_their_range() {
    let mut c = db();
    let mut ids = Vec::new();
    for (i, outcome) in ["COMPLETED", "COMPLETED", "FAILED"].iter().enumerate() {
        let id = enqueue(&mut c, &format!("https://example.com/{i}"), json!({}));
        let (_, attempt) = claim(&mut c, "w", 1, "30 seconds")[0].clone();
        if *outcome == "COMPLETED" {
            complete(&mut c, &id, "w", attempt, b"png").unwrap();
        } else {
            fail(&mut c, &id, "w", attempt, "DNS_FAILED", false).unwrap();
        }
        ids.push(id);
    }
    enqueue(&mut c, "https://example.com/still-queued", json!({}));
    let sums = |c: &mut Client, since: &str| -> (i64, i64, i64, bool) {
        let r = c
            .query_one(
                "SELECT coalesce(sum(completed), 0)::bigint, coalesce(sum(failed), 0)::bigint, \
                        coalesce(sum(cancelled), 0)::bigint, bool_and(render_ms_p50 IS NOT NULL) \
                 FROM screenshot_activity($1::text::interval, '1 minute')",
                &[&since],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get::<_, Option<bool>>(3).unwrap_or(false))
    };
    assert_eq!(sums(&mut c, "1 hour"), (2, 1, 0, true));
    let errors: Vec<(String, i64)> = c
        .query("SELECT error_code, jobs FROM screenshot_error_counts()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(errors, [("DNS_FAILED".to_string(), 1)]);
    for (since, bucket, field) in [
        ("0 seconds", "1 minute", "since"),
        ("1 hour", "1 millisecond", "bucket"),
        ("1 hour", "2 hours", "bucket"),
        ("31 days", "1 second", "since / bucket"),
    ] {
        let (state, message) = db_message(
            c.query("SELECT * FROM screenshot_activity($1::text::interval, $2::text::interval)", &[&since, &bucket]),
        );
        assert_eq!(state, INVALID_PARAMETER_VALUE, "{since} {bucket}");
        assert!(message.starts_with(field), "{field}: {message}");
    }

    // Two hours later, those jobs are out of the last hour and in pgshot.hourly, once.
    c.execute(
        "UPDATE pgshot.jobs SET started_at = started_at - interval '2 hours', completed_at = completed_at - interval '2 hours', \
         expires_at = expires_at - interval '2 hours' WHERE id = ANY($1)",
        &[&ids],
    )
    .unwrap();
    assert_eq!(sums(&mut c, "1 hour"), (0, 0, 0, false));
    let written: i32 = c.query_one("SELECT screenshot_rollup()", &[]).unwrap().get(0);
    assert!(written >= 1, "{written}");
    let hour: Value = c
        .query_one(
            "SELECT to_jsonb(h) - 'hour' - 'render_ms_p50' - 'render_ms_p95' FROM pgshot.hourly h \
             WHERE hour = date_trunc('hour', now() - interval '2 hours', 'UTC') AND completed + failed > 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        hour,
        // bytes: the two completed jobs' outputs, 3 bytes each (since 1.0.0).
        json!({"owner": "postgres", "completed": 2, "failed": 1, "cancelled": 0, "error_codes": {"DNS_FAILED": 1}, "bytes": 6})
    );
    let again: i32 = c.query_one("SELECT screenshot_rollup()", &[]).unwrap().get(0);
    assert_eq!(again, 0, "an hour is rolled up once");
}

#[test]
fn a_failed_or_cancelled_job_is_retried_as_a_new_job_with_the_same_request() {
    let mut c = db();
    let options =
        json!({"fullPage": true, "priority": 5, "maxAttempts": 2, "webhookUrl": "https://hooks.example.com/x"});
    let id = enqueue(&mut c, "https://example.com/again", options);
    assert_eq!(sqlstate(c.query_one("SELECT pgshot.job_retry($1, 'newjob00000000aa')", &[&id])), WRONG_STATE);
    c.query_one("SELECT screenshot_cancel($1)", &[&id]).unwrap();
    let new: String = c.query_one("SELECT pgshot.job_retry($1, 'newjob00000000aa')", &[&id]).unwrap().get(0);
    assert_eq!(new, "newjob00000000aa");
    let same: bool = c
        .query_one(
            "SELECT (a.url, a.options, a.priority, a.max_attempts, a.webhook_url) \
                    IS NOT DISTINCT FROM (b.url, b.options, b.priority, b.max_attempts, b.webhook_url) \
                    AND b.status = 'QUEUED' AND b.attempt = 0 \
             FROM pgshot.jobs a, pgshot.jobs b WHERE a.id = $1 AND b.id = $2",
            &[&id, &new],
        )
        .unwrap()
        .get(0);
    assert!(same);
    assert_eq!(
        sqlstate(c.query_one("SELECT pgshot.job_retry('nosuchjob0000000', 'newjob00000000ab')", &[])),
        NO_DATA_FOUND
    );
}
