//! Results in S3-compatible object storage (PGSHOT_STORAGE=s3://...), against moto's S3 server
//! started by the test: a real worker uploads, real APIs serve (streamed and by redirect), purge
//! deletes objects, and the faults (the bucket down during a complete, a worker gone between its
//! upload and its complete) lose nothing and leave nothing behind.

use std::time::{Duration, Instant};

use pgshot_storage::{Keys, ObjectStore};
use pgshot_tests::api_process::{create_key, run_job, ApiProcess};
use pgshot_tests::s3::{self, S3Server, SlowProxy};
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{as_postgres, cluster, pg_bin, Client};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUCKET: &str = "pgshot-results";

fn store(server: &S3Server, prefix: &str) -> ObjectStore {
    let keys = Keys { access_key: s3::ACCESS_KEY.into(), secret_key: s3::SECRET_KEY.into(), session_token: None };
    ObjectStore::new(Some(&server.endpoint()), s3::REGION, BUCKET, prefix, keys).expect("a store")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn get(store: &ObjectStore, key: &str) -> Result<Vec<u8>, String> {
    runtime().block_on(store.get(key))
}

fn worker_env(server: &S3Server, prefix: &str) -> Vec<(&'static str, String)> {
    let mut env = server.env(BUCKET, prefix);
    env.push(("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into()));
    env.push(("PGSHOT_MAINTENANCE_INTERVAL_SECONDS", "1".into()));
    env
}

fn wait_for(what: &str, limit: Duration, logs: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (output_id, storage_key, sha256, size) of a job's outputs, checking no bytes are in Postgres.
fn stored_outputs(db: &mut Client, id: &str) -> Vec<(String, String, Vec<u8>, i64)> {
    db.query(
        "SELECT output_id, storage_key, sha256, size, bytes IS NULL FROM pgshot.outputs WHERE job_id = $1 ORDER BY position",
        &[&id],
    )
    .unwrap()
    .iter()
    .map(|r| {
        assert!(r.get::<_, bool>(4), "no bytes in Postgres");
        (r.get(0), r.get(1), r.get(2), r.get(3))
    })
    .collect()
}

fn job_row(db: &mut Client, id: &str) -> (String, i32, Value) {
    let r = db.query_one("SELECT status, attempt, errors FROM pgshot.jobs WHERE id = $1", &[&id]).unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn results_live_in_the_bucket_are_served_streamed_and_by_redirect_and_purged_with_their_objects() {
    let server = S3Server::start();
    let bucket = store(&server, "");
    runtime().block_on(bucket.create_bucket()).unwrap();
    let site = Site::start();
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "s3");
    let worker = WorkerProcess::start(&url, "s3-worker", &worker_env(&server, "results"));
    let mut api_env = server.env(BUCKET, "results");
    api_env.push(("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into()));
    let proxy = ApiProcess::start(&url, &api_env);
    api_env.push(("PGSHOT_STORAGE_SERVE", "redirect".into()));
    let redirect = ApiProcess::start(&url, &api_env);

    let body = json!({"url": site.url("/plain"), "outputs": [{"type": "screenshot"}, {"type": "markdown"}]});
    let job = run_job(&proxy, &key, body, Duration::from_secs(60), || worker.log());
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", worker.log());
    let id = job["id"].as_str().unwrap().to_string();

    // Postgres keeps the keys, sizes and checksums; the bucket the bytes.
    let outputs = stored_outputs(&mut db, &id);
    assert_eq!(outputs.len(), 2);
    for (output, storage_key, sha256, size) in &outputs {
        assert_eq!(storage_key, &format!("results/{id}/1/{output}"));
        let object = get(&bucket, storage_key).unwrap();
        assert_eq!(object.len() as i64, *size);
        assert_eq!(Sha256::digest(&object).to_vec(), *sha256, "{output}: the checksum is the object's");
    }
    let png = get(&bucket, &outputs[0].1).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");

    // Streamed through the API, with the key.
    let download = |api: &ApiProcess, path: &str| -> Vec<u8> {
        let mut bytes = Vec::new();
        let resp = ureq::get(&api.url(path)).set("X-API-Key", &key).call().unwrap();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes).unwrap();
        bytes
    };
    assert_eq!(download(&proxy, &format!("/v1/screenshots/jobs/{id}/result")), png);
    let markdown = get(&bucket, &outputs[1].1).unwrap();
    assert_eq!(download(&proxy, &format!("/v1/screenshots/jobs/{id}/result/markdown")), markdown);

    // By redirect: 307 to a presigned URL, which needs no API key; a client that follows gets the
    // bytes. Only for `Authorization: Bearer`, which clients drop on a redirect to another host;
    // X-API-Key, which they send again (curl does), is streamed rather than handed to the bucket.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let bearer = format!("Bearer {key}");
    let resp = agent
        .get(&redirect.url(&format!("/v1/screenshots/jobs/{id}/result")))
        .set("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 307);
    let location = resp.header("Location").unwrap().to_string();
    assert!(location.starts_with(&server.endpoint()) && location.contains("X-Amz-Signature="), "{location}");
    let followed = ureq::get(&location).call().unwrap();
    assert_eq!(followed.header("Content-Type"), Some("image/png"));
    let resp =
        agent.get(&redirect.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", &key).call().unwrap();
    assert_eq!(resp.status(), 200, "an X-API-Key request is not sent to the bucket's host");
    assert_eq!(download(&redirect, &format!("/v1/screenshots/jobs/{id}/result")), png, "streamed");
    // A text output from the bucket is a download, with its own content type: never a page on
    // the bucket's origin.
    let resp = agent
        .get(&redirect.url(&format!("/v1/screenshots/jobs/{id}/result/markdown")))
        .set("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 307);
    let followed = ureq::get(resp.header("Location").unwrap()).call().unwrap();
    assert_eq!(followed.header("Content-Disposition"), Some("attachment"));
    assert!(
        followed.header("Content-Type").unwrap().starts_with("text/markdown"),
        "{:?}",
        followed.header("Content-Type")
    );
    // Without the key, the API still refuses.
    let refused = agent.get(&redirect.url(&format!("/v1/screenshots/jobs/{id}/result"))).call();
    assert!(matches!(refused, Err(ureq::Error::Status(401, _))));

    // storageUrl: the object, presigned, for the job and for each output.
    let polled: Value = ureq::get(&proxy.url(&format!("/v1/screenshots/jobs/{id}")))
        .set("X-API-Key", &key)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let storage_url = polled["storageUrl"].as_str().expect("storageUrl is filled");
    let mut fetched = Vec::new();
    std::io::Read::read_to_end(&mut ureq::get(storage_url).call().unwrap().into_reader(), &mut fetched).unwrap();
    assert_eq!(fetched, png);
    assert!(
        polled["outputs"]["markdown"]["storageUrl"].as_str().is_some_and(|u| u.contains("/1/markdown")),
        "{polled}"
    );
    assert!(polled.get("storageKey").is_none(), "the key itself stays inside: {polled}");

    // pg_dump carries the keys, not the bytes.
    let dump = as_postgres(&pg_bin("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &cluster().port().to_string(), "-U", "postgres", "-a"])
        .arg(url.split_whitespace().find_map(|kv| kv.strip_prefix("dbname=")).unwrap())
        .output()
        .expect("run pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&outputs[0].1), "the dump has the key");
    let png_hex: String = png[png.len() / 2..png.len() / 2 + 32].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.contains(&png_hex), "the dump has none of the image's bytes");
    assert!(
        dump.len() < png.len() + markdown.len(),
        "a dump of {} bytes for {} bytes of results",
        dump.len(),
        png.len()
    );

    // Expired: purge clears the keys, and a worker deletes the objects.
    db.execute("UPDATE pgshot.jobs SET expires_at = now() - interval '1 second' WHERE id = $1", &[&id]).unwrap();
    wait_for(
        "the purged objects deleted",
        Duration::from_secs(30),
        || worker.log(),
        || outputs.iter().all(|(_, k, _, _)| get(&bucket, k).is_err_and(|e| e.contains("404"))),
    );
    wait_for(
        "the deletions recorded",
        Duration::from_secs(10),
        || worker.log(),
        || db.query_one("SELECT count(*) FROM pgshot.storage_garbage", &[]).unwrap().get::<_, i64>(0) == 0,
    );
    let purged = ureq::get(&proxy.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", &key).call();
    assert!(matches!(purged, Err(ureq::Error::Status(410, _))), "an expired result is gone: {purged:?}");
}

#[test]
fn the_bucket_down_during_a_complete_fails_the_attempt_and_the_retry_completes_it() {
    let mut server = S3Server::start();
    let site = Site::start();
    let (mut db, url) = cluster().fresh_local_db(&["pgshot.retry_backoff = '2s'"]);
    server.stop();
    let worker = WorkerProcess::start(&url, "s3-down", &worker_env(&server, ""));
    let id: String =
        db.query_one("SELECT screenshot_enqueue($1, '{\"maxAttempts\": 5}')", &[&site.url("/plain")]).unwrap().get(0);
    wait_for(
        "the first attempt failed",
        Duration::from_secs(60),
        || worker.log(),
        || job_row(&mut db, &id).2.as_array().is_some_and(|e| !e.is_empty()),
    );
    let (status, attempt, errors) = job_row(&mut db, &id);
    assert_eq!((status.as_str(), attempt), ("QUEUED", 1), "retried, not failed: {errors}");
    assert_eq!(errors[0]["code"], "INTERNAL_ERROR");
    assert!(errors[0]["message"].as_str().unwrap().contains("object storage"), "{errors}");
    // What reached the job (and so its webhook and the tenant) names no presigned URL: its
    // signature would be a credential for the object for minutes.
    for leak in ["X-Amz-", "http://", "Signature"] {
        assert!(!errors.to_string().contains(leak), "{leak} in {errors}");
        assert!(!worker.log().contains("X-Amz-Signature"), "the worker logged a presigned URL");
    }
    // The attempt named its key before uploading: it is garbage, due within the hour.
    let announced: Vec<String> = db
        .query(
            "SELECT key FROM pgshot.storage_garbage WHERE job_id = $1 AND due_at > now() + interval '50 minutes'",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(announced, [format!("{id}/1/screenshot")]);

    server.resume();
    let bucket = store(&server, "");
    runtime().block_on(bucket.create_bucket()).unwrap();
    wait_for(
        "the retry completed",
        Duration::from_secs(60),
        || worker.log(),
        || job_row(&mut db, &id).0 == "COMPLETED",
    );
    let outputs = stored_outputs(&mut db, &id);
    let (_, attempt, _) = job_row(&mut db, &id);
    assert!(attempt >= 2, "a later attempt completed it");
    assert_eq!(outputs[0].1, format!("{id}/{attempt}/screenshot"));
    assert!(get(&bucket, &outputs[0].1).unwrap().starts_with(b"\x89PNG"), "nothing lost");
}

#[test]
fn a_worker_gone_between_upload_and_complete_leaves_no_object_behind() {
    let server = S3Server::start();
    let bucket = store(&server, "");
    runtime().block_on(bucket.create_bucket()).unwrap();
    let site = Site::start();
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let id: String = db.query_one("SELECT screenshot_enqueue($1)", &[&site.url("/plain")]).unwrap().get(0);

    // A worker takes the job, names its object, uploads it, and dies before its complete (the
    // steps pgshot-worker takes, run here so that the death falls exactly between them).
    let claimed = db.query("SELECT id FROM screenshot_claim('ghost', 1, '3 seconds')", &[]).unwrap();
    assert_eq!(claimed.len(), 1);
    let orphan = bucket.key(&id, 1, "screenshot");
    db.execute("SELECT screenshot_store_begin($1, 'ghost', 1, $2)", &[&id, &vec![orphan.clone()]]).unwrap();
    let uploaded = runtime().block_on(bucket.put(&orphan, b"\x89PNG half a result".to_vec(), "image/png")).unwrap();
    assert_eq!(get(&bucket, &orphan).unwrap().len() as i64, uploaded.size);

    // Its lease expires; a real worker rescues the job and completes it as attempt 2.
    let worker = WorkerProcess::start(&url, "s3-rescuer", &worker_env(&server, ""));
    wait_for(
        "the job completed by the rescuer",
        Duration::from_secs(60),
        || worker.log(),
        || job_row(&mut db, &id).0 == "COMPLETED",
    );
    let outputs = stored_outputs(&mut db, &id);
    assert_eq!(outputs[0].1, format!("{id}/2/screenshot"));
    // The ghost coming back is fenced out, and its object is not the result.
    let late = db.execute(
        "SELECT screenshot_complete_stored($1, 'ghost', 1, '{}', ARRAY[ROW('screenshot', 'screenshot', 'image/png', $2, $3, $4, '{}')::pgshot.stored_output])",
        &[&id, &orphan, &uploaded.size, &uploaded.sha256],
    );
    assert_eq!(late.unwrap_err().code().map(|c| c.code().to_string()), Some("55000".into()));

    // An hour later (moved forward here), a worker's sweep deletes the orphan and only it.
    let due = db.execute("UPDATE pgshot.storage_garbage SET due_at = now() WHERE key = $1", &[&orphan]).unwrap();
    assert_eq!(due, 1, "the orphan was on the garbage list");
    wait_for(
        "the orphan deleted",
        Duration::from_secs(30),
        || worker.log(),
        || get(&bucket, &orphan).is_err_and(|e| e.contains("404")),
    );
    assert!(get(&bucket, &outputs[0].1).unwrap().starts_with(b"\x89PNG"), "the result stays");
    wait_for(
        "the deletion recorded",
        Duration::from_secs(10),
        || worker.log(),
        || db.query_one("SELECT count(*) FROM pgshot.storage_garbage", &[]).unwrap().get::<_, i64>(0) == 0,
    );
}

#[test]
fn uploads_slower_than_a_lease_keep_it_and_the_job_completes_on_its_first_attempt() {
    let server = S3Server::start();
    let bucket = store(&server, "");
    runtime().block_on(bucket.create_bucket()).unwrap();
    // Each chunk the worker sends the bucket waits 4 s: an upload takes several seconds, more
    // than the 3-second lease, which is renewed every second only if the worker keeps at it after
    // the render.
    let slow = SlowProxy::start(server.port(), Duration::from_millis(4000));
    let site = Site::start();
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let mut env = worker_env(&server, "");
    for (k, v) in env.iter_mut() {
        if *k == "AWS_ENDPOINT_URL" {
            *v = slow.endpoint();
        }
    }
    env.push(("PGSHOT_LEASE_SECONDS", "3".into()));
    let worker = WorkerProcess::start(&url, "s3-slow", &env);
    let id: String = db
        .query_one(
            "SELECT screenshot_enqueue($1, '{\"maxAttempts\": 2, \"outputs\": [{\"type\": \"screenshot\"}, {\"type\": \"html\"}]}')",
            &[&site.url("/plain")],
        )
        .unwrap()
        .get(0);
    wait_for(
        "the job finished",
        Duration::from_secs(90),
        || worker.log(),
        || matches!(job_row(&mut db, &id).0.as_str(), "COMPLETED" | "FAILED"),
    );
    let (status, attempt, errors) = job_row(&mut db, &id);
    assert_eq!((status.as_str(), attempt), ("COMPLETED", 1), "{errors}\n{}", worker.log());
    let outputs = stored_outputs(&mut db, &id);
    assert_eq!(outputs.len(), 2);
    assert!(get(&bucket, &outputs[0].1).unwrap().starts_with(b"\x89PNG"));
}
