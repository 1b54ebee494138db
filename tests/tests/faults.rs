//! Faults on purpose: Postgres stopped and restarted under load, workers killed again and again.
//! Whatever crashes, every accepted job ends COMPLETED (or FAILED with a code), is completed
//! once, and has its webhook delivered with one recorded success.
//!
//! These tests restart the cluster that every test of this binary shares, so they run one at a time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::receiver::Receiver;
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::{processes_named, WorkerProcess};
use pgshot_tests::{as_postgres, cluster, pg_bin, Client};
use serde_json::{json, Value};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn worker_env() -> Vec<(&'static str, String)> {
    vec![
        ("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("PGSHOT_LEASE_SECONDS", "6".into()),
        ("PGSHOT_WORKER_CONCURRENCY", "2".into()),
    ]
}

fn pg_ctl(args: &[&str]) {
    let dir = cluster().dir().to_str().unwrap().to_string();
    let status = as_postgres(&pg_bin("pg_ctl"))
        .env("RUST_LIB_BACKTRACE", "0")
        .args(["-D", &dir, "-l", &format!("{dir}/server.log"), "-w", "-s"])
        .args(args)
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {args:?} failed");
}

/// Polls (reconnecting as needed) until every job is finished and every webhook settled.
fn settle(url: &str, ids: &[String], limit: Duration, logs: impl Fn() -> String) -> Client {
    let deadline = Instant::now() + limit;
    let mut last: String;
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(mut c) => {
                let row = c.query_one(
                    "SELECT count(*) FILTER (WHERE j.status NOT IN ('COMPLETED', 'FAILED')), \
                            count(*) FILTER (WHERE d.status IS DISTINCT FROM 'DELIVERED') \
                     FROM pgshot.jobs j LEFT JOIN pgshot.webhook_deliveries d ON d.job_id = j.id \
                     WHERE j.id = ANY($1)",
                    &[&ids],
                );
                match row {
                    Ok(row) if (row.get::<_, i64>(0), row.get::<_, i64>(1)) == (0, 0) => return c,
                    Ok(row) => {
                        last = format!(
                            "{} jobs unfinished, {} webhooks undelivered",
                            row.get::<_, i64>(0),
                            row.get::<_, i64>(1)
                        )
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(Instant::now() < deadline, "not settled after {limit:?}: {last}\n{}", logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The promises, checked on the database and at the receiver.
fn assert_exactly_once(c: &mut Client, ids: &[String], receiver: &Receiver) {
    let rows = c
        .query(
            "SELECT j.id, j.status, j.error_code, (SELECT count(*) FROM pgshot.outputs o WHERE o.job_id = j.id), \
                    (SELECT count(*) FROM pgshot.webhook_deliveries d WHERE d.job_id = j.id), \
                    (SELECT count(*) FROM pgshot.webhook_attempts a JOIN pgshot.webhook_deliveries d ON d.id = a.delivery_id \
                     WHERE d.job_id = j.id AND a.status_code BETWEEN 200 AND 299) \
             FROM pgshot.jobs j WHERE j.id = ANY($1)",
            &[&ids],
        )
        .unwrap();
    assert_eq!(rows.len(), ids.len(), "no job lost");
    for r in &rows {
        let (id, status, code): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
        assert!(status == "COMPLETED" || code.is_some(), "{id} is {status} without a code");
        if status == "COMPLETED" {
            assert_eq!(r.get::<_, i64>(3), 1, "{id} was completed into one result");
        }
        assert_eq!(r.get::<_, i64>(4), 1, "{id} has one webhook delivery");
        assert_eq!(r.get::<_, i64>(5), 1, "{id}'s webhook has one recorded success");
    }
    // At least once at the receiver, each with the job's own stable id.
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for r in receiver.received() {
        let job = r.json()["jobId"].as_str().unwrap().to_string();
        seen.entry(job).or_default().insert(r.header("webhook-id").unwrap().to_string());
    }
    for id in ids {
        let hooks = seen.get(id).unwrap_or_else(|| panic!("no webhook arrived for {id}"));
        assert_eq!(hooks.len(), 1, "{id}: every attempt carries the same webhook-id");
    }
}

/// How many jobs each scenario runs: the 1,000 and 500.
const RESTART_JOBS: usize = 600;
const KILL_JOBS: usize = 300;

#[test]
fn postgres_restarted_under_load_loses_nothing_and_the_api_answers_503_meanwhile() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::start();
    let receiver = Receiver::start();
    let (_db, url) = cluster()
        .fresh_local_db(&["pgshot.retry_backoff = 0", "pgshot.webhook_retry_schedule = '0,1,1,1,1,1,1,1,1,1'"]);
    let key = create_key(&url, "faults");
    let api = ApiProcess::start(&url, &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let ids: Vec<String> = (0..RESTART_JOBS)
        .map(|i| {
            let (status, body) = post_job(&api, &key, &site.url(&format!("/plain?n={i}")), &receiver.url("/hook"));
            assert_eq!(status, 202, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    let workers: Vec<WorkerProcess> =
        (0..2).map(|i| WorkerProcess::start(&url, &format!("restart-{i}"), &worker_env())).collect();

    // A client keeps using the API all along: every answer is a success or a 503, never a 500
    // and never a hang.
    let stop_client = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, base, key, id, page) =
            (stop_client.clone(), api.base.clone(), key.clone(), ids[0].clone(), site.url("/plain?client"));
        std::thread::spawn(move || {
            let mut answers: HashMap<u16, usize> = HashMap::new();
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                let get = ureq::get(&format!("{base}/v1/screenshots/jobs/{id}"))
                    .set("X-API-Key", &key)
                    .timeout(Duration::from_secs(20))
                    .call();
                let mut calls = vec![get];
                // A new job now and then: enough to exercise enqueue, not enough to slow the run.
                round += 1;
                if round % 10 == 0 {
                    calls.push(
                        ureq::post(&format!("{base}/v1/screenshots/async"))
                            .set("X-API-Key", &key)
                            .timeout(Duration::from_secs(20))
                            .send_json(json!({"url": page, "viewport": {"width": 320, "height": 240}})),
                    );
                }
                for answer in calls {
                    let status = match answer {
                        Ok(r) => r.status(),
                        Err(ureq::Error::Status(s, _)) => s,
                        Err(e) => panic!("the API did not answer: {e}"),
                    };
                    *answers.entry(status).or_default() += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            answers
        })
    };

    // First a restart in one step, as an operator would run it, with about a tenth done.
    wait_until_completed(&url, &ids, RESTART_JOBS as i64 / 10);
    pg_ctl(&["restart", "-m", "fast"]);
    // Then, past the middle, Postgres stays down long enough to look at the API meanwhile.
    wait_until_completed(&url, &ids, RESTART_JOBS as i64 / 2);
    pg_ctl(&["stop", "-m", "fast"]);
    let started = Instant::now();
    let resp = ureq::get(&api.url(&format!("/v1/screenshots/jobs/{}", ids[0])))
        .set("X-API-Key", &key)
        .timeout(Duration::from_secs(20))
        .call();
    let Err(ureq::Error::Status(503, resp)) = resp else { panic!("expected 503 while Postgres is down: {resp:?}") };
    assert!(resp.header("Retry-After").is_some());
    let body: Value = resp.into_json().unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    assert!(started.elapsed() < Duration::from_secs(15), "503 at once, not a hang");
    std::thread::sleep(Duration::from_secs(3));
    pg_ctl(&["start"]);

    let logs = || workers.iter().map(|w| w.log()).collect::<Vec<_>>().join("\n----\n");
    let mut c = settle(&url, &ids, Duration::from_secs(1200), logs);
    stop_client.store(true, Ordering::SeqCst);
    let answers = client.join().expect("the API client");
    assert_exactly_once(&mut c, &ids, &receiver);
    assert!(
        answers.keys().all(|s| [200, 202, 503].contains(s)) && answers.contains_key(&503),
        "a client saw only successes and 503s, and saw the 503s: {answers:?}"
    );
    // The API recovered by itself.
    let (status, _) = post_job(&api, &key, &site.url("/plain"), &receiver.url("/hook"));
    assert_eq!(status, 202);
    assert!(logs().contains("notification connection"), "the LISTEN connection noticed and reconnected");
}

#[test]
fn workers_killed_again_and_again_lose_nothing_and_leave_no_chromium_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::start();
    let receiver = Receiver::start();
    let (mut c, url) = cluster()
        .fresh_local_db(&["pgshot.retry_backoff = 0", "pgshot.webhook_retry_schedule = '0,1,1,1,1,1,1,1,1,1'"]);
    // A short wait in each page, so that a kill often lands mid-render.
    let requests: Vec<Value> = (0..KILL_JOBS)
        .map(|i| {
            json!({"url": site.url(&format!("/slow?ms=150&n={i}")), "webhookUrl": receiver.url("/hook"),
                   "viewport": {"width": 320, "height": 240}, "maxAttempts": 25})
        })
        .collect();
    let ids: Vec<String> = c
        .query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut workers: Vec<WorkerProcess> =
        (0..2).map(|i| WorkerProcess::start(&url, &format!("victim-{i}-0"), &worker_env())).collect();
    let deadline = Instant::now() + Duration::from_secs(1200);
    let mut killed: Vec<u32> = Vec::new();
    // A fixed seed: the same kills, at the same moments, on every run.
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % n
    };
    while unfinished(&mut c, &ids) > 0 {
        assert!(Instant::now() < deadline, "jobs still unfinished after {} kills", killed.len());
        // Every 3 to 8 seconds, a random worker is killed and started again.
        std::thread::sleep(Duration::from_millis(3000 + next(5000)));
        let victim = next(workers.len() as u64) as usize;
        killed.push(workers[victim].pid());
        workers[victim].kill9();
        workers[victim] = WorkerProcess::start(&url, &format!("victim-{victim}-{}", killed.len()), &worker_env());
    }
    let logs = || workers.iter().map(|w| w.log()).collect::<Vec<_>>().join("\n----\n");
    let mut c = settle(&url, &ids, Duration::from_secs(300), logs);
    assert!(killed.len() >= 10, "the workers were killed while there was work: {}", killed.len());
    assert_exactly_once(&mut c, &ids, &receiver);
    // The browsers of killed workers were found and killed by the workers started after them.
    std::thread::sleep(Duration::from_secs(2));
    let left: Vec<u32> = killed.iter().flat_map(|pid| processes_named(&format!("pgshot-chromium-{pid}-"))).collect();
    assert!(left.is_empty(), "Chromium processes of killed workers are still running: {left:?}");
    drop(workers);
}

fn post_job(api: &ApiProcess, key: &str, url: &str, hook: &str) -> (u16, Value) {
    let resp = ureq::post(&api.url("/v1/screenshots/async")).set("X-API-Key", key).send_json(
        json!({"url": url, "webhookUrl": hook, "viewport": {"width": 320, "height": 240}, "maxAttempts": 10}),
    );
    match resp {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

fn unfinished(c: &mut Client, ids: &[String]) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pgshot.jobs WHERE id = ANY($1) AND status NOT IN ('COMPLETED', 'FAILED')",
        &[&ids],
    )
    .unwrap()
    .get(0)
}

fn wait_until_completed(url: &str, ids: &[String], n: i64) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done: i64 = c
            .query_one("SELECT count(*) FROM pgshot.jobs WHERE id = ANY($1) AND status = 'COMPLETED'", &[&ids])
            .unwrap()
            .get(0);
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} completed");
        std::thread::sleep(Duration::from_millis(200));
    }
}
