//! Webhooks: written in the job's own transaction, delivered by real workers to a receiver the test
//! serves on 127.0.0.1, signed, retried, never lost.

use std::time::{Duration, Instant};

use base64::Engine;
use pgshot_tests::receiver::{Received, Receiver};
use pgshot_tests::site::{closed_port, Site};
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{cluster, Client};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Db {
    client: Client,
    url: String,
}

/// A database whose jobs may point at 127.0.0.1 and whose webhooks retry after a second.
fn db() -> Db {
    let (client, url) =
        cluster().fresh_local_db(&["pgshot.retry_backoff = 0", "pgshot.webhook_retry_schedule = '0,1,1,1,1,1'"]);
    Db { client, url }
}

fn private() -> Vec<(&'static str, String)> {
    vec![("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]
}

fn enqueue(c: &mut Client, url: &str, options: Value) -> String {
    c.query_one("SELECT screenshot_enqueue($1, $2)", &[&url, &options]).unwrap().get(0)
}

/// HMAC-SHA256 written out from its definition (RFC 2104), independent of the worker's `hmac`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).chain(message.iter().copied()).collect();
    let inner_hash = Sha256::digest(&inner);
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).chain(inner_hash.iter().copied()).collect();
    Sha256::digest(&outer).to_vec()
}

fn assert_signed(r: &Received, secret: &str) {
    let hex: String = hmac_sha256(secret.as_bytes(), &r.body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.header("X-Webhook-Signature"), Some(format!("sha256={hex}").as_str()));
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let key = secret
        .strip_prefix("whsec_")
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &signed)));
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
    let age = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
        - ts.parse::<i64>().unwrap();
    assert!((-5..120).contains(&age), "webhook-timestamp is the time of the attempt");
}

fn wait_delivery(c: &mut Client, job: &str, status: &str, worker: &WorkerProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job_json: Value = c.query_one("SELECT screenshot_job($1)", &[&job]).unwrap().get(0);
        if job_json["webhook"]["status"] == status {
            return job_json;
        }
        assert!(Instant::now() < deadline, "{job_json}\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failing_receiver_gets_the_same_signed_delivery_again_and_both_handler_styles_work() {
    let site = Site::start();
    let receiver = Receiver::start();
    receiver.answer(&[500]);
    let mut db = db();
    let c = &mut db.client;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let id = enqueue(c, &site.url("/plain"), json!({"webhookUrl": receiver.url("/hook"), "webhookSecret": secret}));
    // Proxies in the environment are not used for deliveries (through one, the address policy
    // would judge the proxy instead of the receiver): this one is not even listening.
    let proxy = format!("http://127.0.0.1:{}", closed_port());
    let mut env = private();
    for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        env.push((name, proxy.clone()));
    }
    env.extend([("NO_PROXY", String::new()), ("no_proxy", String::new())]);
    let worker = WorkerProcess::start(&db.url, "hooks", &env);

    let job = wait_delivery(c, &id, "DELIVERED", &worker);
    assert_eq!(job["webhook"]["attempts"], 2, "{job}");
    assert!(!job.to_string().contains(secret), "the secret is never returned");
    assert_eq!(job["webhook"]["lastStatusCode"], 200);
    let got = receiver.received();
    assert_eq!(got.len(), 2, "delivered twice: once failed, once accepted");
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"), "the id is stable across retries");
    assert_eq!(got[0].body, got[1].body, "the same bytes every time");
    for r in &got {
        assert_signed(r, secret);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    assert!(!String::from_utf8_lossy(&got[1].body).contains(secret), "nor sent");
    let body = got[1].json();
    // Style 1: `body.status` and `body.data.resultUrl`.
    assert_eq!((body["event"].as_str(), body["status"].as_str()), (Some("JOB_COMPLETED"), Some("COMPLETED")));
    assert_eq!(body["data"]["resultUrl"], format!("/v1/screenshots/jobs/{id}/result"));
    // Style 2: `body.data.{jobId, status, resultUrl, errorMessage}`.
    assert_eq!(
        (body["data"]["jobId"].as_str(), body["data"]["status"].as_str()),
        (Some(id.as_str()), Some("COMPLETED"))
    );
    assert_eq!(body["jobId"], id.as_str());
    assert!(body["data"]["fileSize"].as_i64().unwrap() > 0 && body["data"]["width"] == 1920, "{body}");
    let attempts: Vec<(i32, Option<i32>)> = c
        .query("SELECT a.attempt, a.status_code FROM pgshot.webhook_attempts a JOIN pgshot.webhook_deliveries d ON d.id = a.delivery_id WHERE d.job_id = $1 ORDER BY 1", &[&id])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(200))], "each attempt is recorded");

    // A failed job is announced too, unsigned when there is no secret.
    let failed = enqueue(
        c,
        &format!("http://127.0.0.1:{}/", pgshot_tests::site::closed_port()),
        json!({"webhookUrl": receiver.url("/failed"), "maxAttempts": 1}),
    );
    wait_delivery(c, &failed, "DELIVERED", &worker);
    let r = receiver.received().into_iter().find(|r| r.path == "/failed").unwrap();
    assert!(r.header("webhook-signature").is_none() && r.header("X-Webhook-Signature").is_none());
    let body = r.json();
    assert_eq!(
        (body["event"].as_str(), body["data"]["errorCode"].as_str()),
        (Some("JOB_FAILED"), Some("URL_UNREACHABLE"))
    );
    assert!(body["data"]["errorMessage"].is_string());
    // Neither body names a storage key or the worker (host and pid) that ran an attempt.
    for r in receiver.received() {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(!text.contains("storageKey") && !text.contains("\"worker\""), "{text}");
        assert!(r.json()["data"]["attempts"].as_array().is_some_and(|a| !a.is_empty()), "{text}");
    }
}

#[test]
fn gone_stops_retries_redirects_are_not_followed_and_private_receivers_are_refused() {
    let site = Site::start();
    let receiver = Receiver::start();
    let mut db = db();
    let c = &mut db.client;
    receiver.answer(&[410]);
    let gone = enqueue(c, &site.url("/plain"), json!({"webhookUrl": receiver.url("/gone")}));
    let worker = WorkerProcess::start(&db.url, "hooks-410", &private());
    let job = wait_delivery(c, &gone, "FAILED", &worker);
    assert_eq!(job["webhook"]["attempts"], 1, "410 stops at once: {job}");
    drop(worker);

    receiver.answer(&[302, 302, 302, 302, 302, 302]);
    let moved = enqueue(c, &site.url("/plain"), json!({"webhookUrl": receiver.url("/moving")}));
    let worker = WorkerProcess::start(&db.url, "hooks-302", &private());
    let job = wait_delivery(c, &moved, "FAILED", &worker);
    assert_eq!(job["webhook"]["lastStatusCode"], 302, "{job}");
    assert_eq!(job["webhook"]["attempts"], 6, "a redirect is a failed attempt, retried on the schedule");
    assert!(receiver.received().iter().all(|r| r.path != "/moved"), "the redirect was never followed");
    drop(worker);

    // The database lets a job name a private receiver; a worker with the default policy refuses
    // to connect to it, on every attempt.
    let before = receiver.received().len();
    let private_hook = enqueue(c, &site.url("/plain"), json!({"webhookUrl": receiver.url("/private")}));
    let allow_page = vec![("PGSHOT_ALLOW_DESTINATIONS", format!("127.0.0.1:{}", site.port()))];
    let worker = WorkerProcess::start(&db.url, "hooks-strict", &allow_page);
    let job = wait_delivery(c, &private_hook, "FAILED", &worker);
    assert!(job["webhook"]["lastError"].as_str().unwrap().contains("non-public"), "{job}");
    assert_eq!(receiver.received().len(), before, "nothing reached the private receiver");

    // And with the default database setting the URL is refused at enqueue.
    let cl = cluster();
    let name = cl.fresh_db();
    let mut strict = cl.connect(&name);
    let err = strict
        .query_one(
            "SELECT screenshot_enqueue('https://example.com', $1)",
            &[&json!({"webhookUrl": receiver.url("/x")})],
        )
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22023");
}

#[test]
fn a_delivery_survives_a_killed_worker_and_a_receiver_that_was_down() {
    let site = Site::start();
    let port = pgshot_tests::site::closed_port();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let mut db = db();
    let c = &mut db.client;
    // Enough attempts that the delivery is still pending when the receiver comes back.
    let name: String = c.query_one("SELECT current_database()", &[]).unwrap().get(0);
    let schedule = vec!["1"; 30].join(",");
    c.batch_execute(&format!("ALTER DATABASE {name} SET pgshot.webhook_retry_schedule = '{schedule}'")).unwrap();
    let id = enqueue(c, &site.url("/plain"), json!({"webhookUrl": hook}));
    let mut first = WorkerProcess::start(&db.url, "hooks-doomed", &private());
    // Rendered and completed, while every delivery attempt finds nobody listening.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = c.query_one("SELECT screenshot_job($1)", &[&id]).unwrap().get(0);
        if job["webhook"]["attempts"].as_i64().unwrap_or(0) >= 2 {
            assert_eq!(job["status"], "COMPLETED");
            // Between attempts, or in one (claimed): not delivered, not given up.
            let status = job["webhook"]["status"].as_str().unwrap();
            assert!(status == "PENDING" || status == "DELIVERING", "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "{job}\n{}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill9();

    let receiver = Receiver::start_on(port);
    let second = WorkerProcess::start(&db.url, "hooks-heir", &private());
    wait_delivery(c, &id, "DELIVERED", &second);
    std::thread::sleep(Duration::from_secs(2));
    let got = receiver.received();
    assert_eq!(got.len(), 1, "delivered once after it came back");
    assert_eq!(got[0].json()["jobId"], id.as_str());
    let rendered: i32 = c.query_one("SELECT attempt FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(rendered, 1, "a receiver that is down never causes a re-render");
    let successes: i64 = c
        .query_one(
            "SELECT count(*) FROM pgshot.webhook_attempts a JOIN pgshot.webhook_deliveries d ON d.id = a.delivery_id \
             WHERE d.job_id = $1 AND a.status_code BETWEEN 200 AND 299",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(successes, 1, "one success recorded");
}

#[test]
fn a_bulk_request_announces_itself_once_when_all_its_jobs_are_done() {
    let site = Site::start();
    let receiver = Receiver::start();
    let mut db = db();
    let c = &mut db.client;
    let key: String = c.query_one("SELECT id FROM pgshot.api_key_create('bulk')", &[]).unwrap().get(0);
    let requests = json!([{"url": site.url("/plain")}, {"url": site.url("/box")}, {"url": site.url("/tall")}]);
    let bulk: String = c
        .query_one(
            "SELECT pgshot.enqueue_bulk_owned($1, $2, 100, $3, 'bulk-secret-0123456789')",
            &[&key, &requests, &receiver.url("/bulk")],
        )
        .unwrap()
        .get(0);
    let mut env = private();
    env.push(("PGSHOT_WORKER_CONCURRENCY", "3".into()));
    let worker = WorkerProcess::start(&db.url, "hooks-bulk", &env);
    let got = receiver.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "{}", worker.log());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.received().len(), 1, "exactly one BULK_COMPLETED");
    let body = got[0].json();
    assert_eq!((body["event"].as_str(), body["bulkId"].as_str()), (Some("BULK_COMPLETED"), Some(bulk.as_str())));
    assert_eq!((body["data"]["completedJobs"].as_i64(), body["data"]["progress"].as_i64()), (Some(3), Some(100)));
    assert_signed(&got[0], "bulk-secret-0123456789");
}
