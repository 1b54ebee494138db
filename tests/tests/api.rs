//! pgshot-api against a real Postgres (and a real worker where a job must complete).

use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, keys_command, ApiProcess};
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{cluster, Client, SSRF_CORPUS};
use serde_json::{json, Value};

struct Setup {
    db: Client,
    url: String,
    api: ApiProcess,
    key: String,
}

fn setup() -> Setup {
    let (db, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "tests");
    let api = ApiProcess::start(&url, &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    Setup { db, url, api, key }
}

/// (status, JSON body, Retry-After) of a call; any status is returned, none panics.
fn call(req: ureq::Request, body: Option<Value>) -> (u16, Value, Option<String>) {
    let (status, body, [.., retry_after]) = call_limited(req, body);
    (status, body, retry_after.map(|s| s.to_string()))
}

fn authed(s: &Setup, method: &str, path: &str) -> ureq::Request {
    ureq::request(method, &s.api.url(path)).set("X-API-Key", &s.key)
}

/// The error body of the allscreenshots contract, with the flat `message`, `errorCode` and
/// `validationErrors` that the official TypeScript SDK reads (src/errors/index.ts, parseApiError).
fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
    assert_eq!((&body["message"], &body["errorCode"]), (&body["error"]["message"], &body["error"]["code"]), "{body}");
    match body["error"]["details"]["field"].as_str() {
        Some(field) => assert_eq!(body["validationErrors"], json!({field: body["message"]}), "{body}"),
        None => assert!(body.get("validationErrors").is_none(), "{body}"),
    }
}

fn wait_completed(s: &Setup, id: &str, worker: &WorkerProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job, _) = call(authed(s, "GET", &format!("/v1/screenshots/jobs/{id}")), None);
        assert_eq!(status, 200, "{job}");
        match job["status"].as_str() {
            Some("COMPLETED") => return job,
            Some("FAILED" | "CANCELLED") => panic!("{job}\n{}", worker.log()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "{job}\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A result is the page's content served from the API's origin: never sniffed, never run as a
/// page of that origin.
fn assert_result_headers(resp: &ureq::Response) {
    assert_eq!(resp.header("X-Content-Type-Options"), Some("nosniff"));
    let csp = resp.header("Content-Security-Policy").unwrap_or_default();
    assert!(csp.contains("sandbox") && csp.contains("default-src 'none'"), "{csp}");
}

#[test]
fn the_api_finishes_on_sigterm() {
    let mut s = setup();
    let status = s.api.terminate(Duration::from_secs(10)).expect("pgshot-api exits on SIGTERM");
    assert!(status.success(), "{status}\n{}", s.api.log());
    assert!(s.api.log().contains("shutting down"), "{}", s.api.log());
}

#[test]
fn async_create_poll_and_download_results() {
    let site = Site::start();
    let s = setup();
    let (status, created, _) = call(
        authed(&s, "POST", "/v1/screenshots/async"),
        Some(json!({"url": site.url("/plain"), "viewport": {"width": 640, "height": 480}})),
    );
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "QUEUED");
    assert_eq!(created["statusUrl"], s.api.url(&format!("/v1/screenshots/jobs/{id}")));
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let (status, body, _) = call(authed(&s, "GET", &format!("/v1/screenshots/jobs/{id}/result")), None);
    assert_error(status, &body, 409, "INVALID_STATE");

    let base64 = call(
        authed(&s, "POST", "/v1/screenshots/async"),
        Some(json!({"url": site.url("/plain"), "responseType": "base64", "viewport": {"width": 300, "height": 200}})),
    )
    .1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let multi = call(
        authed(&s, "POST", "/v1/screenshots/async"),
        Some(json!({"url": site.url("/plain"), "outputs": [{"type": "screenshot"}, {"type": "markdown"}]})),
    )
    .1["id"]
        .as_str()
        .unwrap()
        .to_string();

    let worker = WorkerProcess::start(&s.url, "api-worker", &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let job = wait_completed(&s, &id, &worker);
    assert_eq!(job["resultUrl"], s.api.url(&format!("/v1/screenshots/jobs/{id}/result")));
    assert_eq!(job["metadata"]["width"], 640);
    let resp = authed(&s, "GET", &format!("/v1/screenshots/jobs/{id}/result")).call().unwrap();
    assert_eq!(resp.content_type(), "image/png");
    assert_result_headers(&resp);
    let mut png = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    wait_completed(&s, &base64, &worker);
    let (status, result, _) = call(authed(&s, "GET", &format!("/v1/screenshots/jobs/{base64}/result")), None);
    assert_eq!(status, 200, "{result}");
    assert_eq!((result["encoding"].as_str(), result["contentType"].as_str()), (Some("base64"), Some("image/png")));
    assert_eq!((result["width"].as_i64(), result["height"].as_i64()), (Some(300), Some(200)));
    assert!(result["data"].as_str().unwrap().starts_with("iVBORw0KGgo"), "base64 of a PNG");

    let job = wait_completed(&s, &multi, &worker);
    assert_eq!(job["resultUrl"], s.api.url(&format!("/v1/screenshots/jobs/{multi}/result/screenshot")));
    assert_eq!(job["outputs"]["markdown"]["type"], "markdown");
    let md = authed(&s, "GET", &format!("/v1/screenshots/jobs/{multi}/result/markdown")).call().unwrap();
    assert!(md.content_type().starts_with("text/markdown"));
    assert_result_headers(&md);
    assert!(md.into_string().unwrap().contains("# Hello pgshot"));
    let (status, body, _) = call(authed(&s, "GET", &format!("/v1/screenshots/jobs/{multi}/result/pdf")), None);
    assert_error(status, &body, 404, "NOT_FOUND");

    let mut db = s.db;
    db.execute("UPDATE pgshot.jobs SET expires_at = now() - interval '1 second' WHERE id = $1", &[&id]).unwrap();
    let (status, body, _) =
        call(ureq::get(&s.api.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", &s.key), None);
    assert_error(status, &body, 410, "RESULT_EXPIRED");
}

#[test]
fn every_client_mistake_gets_its_status_and_error_body_and_never_a_500() {
    let s = setup();
    let url = "http://127.0.0.1:9/never-rendered";
    let post = |key: Option<&str>, body: Value| {
        let mut req = ureq::post(&s.api.url("/v1/screenshots/async"));
        if let Some(k) = key {
            req = req.set("X-API-Key", k);
        }
        call(req, Some(body))
    };

    let (st, body, _) = post(None, json!({"url": url}));
    assert_error(st, &body, 401, "UNAUTHORIZED");
    let (st, body, _) = post(Some("pgs_not_a_key"), json!({"url": url}));
    assert_error(st, &body, 401, "UNAUTHORIZED");
    let (st, body, _) = call(
        ureq::post(&s.api.url("/v1/screenshots/async")).set("Authorization", &format!("Bearer {}", s.key)),
        Some(json!({"url": url})),
    );
    assert_eq!(st, 202, "Bearer is an alias of X-API-Key: {body}");

    let resp = ureq::post(&s.api.url("/v1/screenshots/async"))
        .set("X-API-Key", &s.key)
        .set("Content-Type", "application/json")
        .send_string("{not json");
    let (st, body, _) = call_result(resp);
    assert_error(st, &body, 400, "INVALID_JSON");

    for (body, code, field) in [
        (json!({"url": url, "bogus": 1}), "INVALID_OPTION", "bogus"),
        (json!({"url": url, "viewport": {"width": 5000}}), "INVALID_OPTION", "viewport.width"),
        (json!({"url": url, "format": "gif"}), "INVALID_OPTION", "format"),
        (json!({"url": "ftp://example.com"}), "INVALID_URL", "url"),
        (json!({"fullPage": true}), "INVALID_URL", "url"),
        (json!({"url": 42}), "INVALID_URL", "url"),
    ] {
        let (st, resp, _) = post(Some(&s.key), body.clone());
        assert_error(st, &resp, 400, code);
        assert_eq!(resp["error"]["details"]["field"], field, "{body} -> {resp}");
    }
    let huge = json!({"url": url, "customCss": "x".repeat(2 << 20)});
    let (st, body, _) = post(Some(&s.key), huge);
    assert_error(st, &body, 413, "PAYLOAD_TOO_LARGE");
    let (st, body, _) = post(Some(&s.key), json!(["not", "an", "object"]));
    assert_error(st, &body, 400, "INVALID_REQUEST");

    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs/nosuchjob0000000"), None);
    assert_error(st, &body, 404, "NOT_FOUND");
    let (st, body, _) = call(authed(&s, "POST", "/v1/screenshots/jobs/nosuchjob0000000/cancel"), None);
    assert_error(st, &body, 404, "NOT_FOUND");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?limit=0"), None);
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?status=DONE"), None);
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?cursor=nosuchjob0000000"), None);
    assert_error(st, &body, 400, "INVALID_CURSOR");
    // Found by schemathesis: a NUL byte is not text Postgres can take, and it is the client's.
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?cursor=%00x"), None);
    assert_error(st, &body, 400, "INVALID_CURSOR");
    // A cursor is a position: a well-formed one that names no job still pages (found by schemathesis).
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?cursor=1-aaaaaaaaaaaaaaaa"), None);
    assert_eq!((st, body), (200, json!([])), "nothing was created before 1970");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/jobs/a%00b"), None);
    assert_error(st, &body, 400, "INVALID_REQUEST");
    let (_, first_page, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?cursor="), None);
    assert!(first_page.is_array(), "an empty cursor is the first page");
    let resp = ureq::request("TRACE", &s.api.url("/v1/screenshots/jobs")).set("X-API-Key", &s.key).call();
    let Err(ureq::Error::Status(405, resp)) = resp else { panic!("TRACE should be 405") };
    assert_eq!(resp.header("Allow"), Some("GET"));

    // Cancel: a queued job cancels, a finished one is a conflict.
    let id = post(Some(&s.key), json!({"url": url})).1["id"].as_str().unwrap().to_string();
    let (st, job, _) = call(authed(&s, "POST", &format!("/v1/screenshots/jobs/{id}/cancel")), None);
    assert_eq!((st, job["status"].as_str()), (200, Some("CANCELLED")), "{job}");
    let (st, body, _) = call(authed(&s, "POST", &format!("/v1/screenshots/jobs/{id}/cancel")), None);
    assert_error(st, &body, 409, "INVALID_STATE");
    let (st, body, _) = call(authed(&s, "GET", &format!("/v1/screenshots/jobs/{id}/result")), None);
    assert_error(st, &body, 409, "INVALID_STATE");

    assert!(!s.api.log().contains("ERROR"), "a client mistake was logged as a server error:\n{}", s.api.log());
}

/// Like [`call`], with the value of one response header.
fn call_with_header(req: ureq::Request, header: &str) -> (u16, Value, Option<String>) {
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let value = resp.header(header).map(str::to_string);
    (status, resp.into_json().unwrap(), value)
}

fn call_result(result: Result<ureq::Response, ureq::Error>) -> (u16, Value, Option<String>) {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), None)
}

#[test]
fn keys_isolate_jobs_revocation_locks_out_and_idempotency_returns_the_same_job() {
    let s = setup();
    let other = create_key(&s.url, "other");
    let url = "http://127.0.0.1:9/x";
    let mine = call(authed(&s, "POST", "/v1/screenshots/async"), Some(json!({"url": url}))).1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body, _) =
        call(ureq::get(&s.api.url(&format!("/v1/screenshots/jobs/{mine}"))).set("X-API-Key", &other), None);
    assert_error(st, &body, 404, "NOT_FOUND");
    let (st, body, _) =
        call(ureq::post(&s.api.url(&format!("/v1/screenshots/jobs/{mine}/cancel"))).set("X-API-Key", &other), None);
    assert_error(st, &body, 404, "NOT_FOUND");
    let (_, list, _) = call(ureq::get(&s.api.url("/v1/screenshots/jobs")).set("X-API-Key", &other), None);
    assert_eq!(list, json!([]), "another key's jobs are not listed");

    let first = call(
        authed(&s, "POST", "/v1/screenshots/async").set("Idempotency-Key", "order-7"),
        Some(json!({"url": url, "fullPage": true})),
    );
    let again = call(
        authed(&s, "POST", "/v1/screenshots/async").set("Idempotency-Key", "order-7"),
        Some(json!({"url": url, "fullPage": true})),
    );
    assert_eq!((first.0, again.0), (202, 202));
    assert_eq!(first.1["id"], again.1["id"], "the same key and body return the same job");
    let (st, body, _) = call(
        authed(&s, "POST", "/v1/screenshots/async").set("Idempotency-Key", "order-7"),
        Some(json!({"url": url, "fullPage": false})),
    );
    assert_error(st, &body, 409, "IDEMPOTENCY_CONFLICT");
    let theirs = call(
        ureq::post(&s.api.url("/v1/screenshots/async")).set("X-API-Key", &other).set("Idempotency-Key", "order-7"),
        Some(json!({"url": url, "fullPage": false})),
    );
    assert_eq!(theirs.0, 202, "idempotency keys are per API key: {}", theirs.1);

    // Pagination, newest first, with a status filter.
    for i in 0..4 {
        call(authed(&s, "POST", "/v1/screenshots/async"), Some(json!({"url": format!("{url}/{i}")})));
    }
    let (_, page1, cursor) = call_with_header(authed(&s, "GET", "/v1/screenshots/jobs?limit=4"), "X-Next-Cursor");
    let cursor = cursor.expect("more pages");
    let (_, page2, last) =
        call_with_header(authed(&s, "GET", &format!("/v1/screenshots/jobs?limit=4&cursor={cursor}")), "X-Next-Cursor");
    let ids: Vec<&Value> =
        page1.as_array().unwrap().iter().chain(page2.as_array().unwrap()).map(|j| &j["id"]).collect();
    assert_eq!(ids.len(), 6, "{page1} {page2}");
    assert_eq!(last, None, "the last page has no cursor");
    assert_eq!(page1[0]["url"], format!("{url}/3"), "newest first");
    let (_, cancelled, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?status=CANCELLED"), None);
    assert_eq!(cancelled, json!([]));
    let (_, queued, _) = call(authed(&s, "GET", "/v1/screenshots/jobs?status=QUEUED&limit=100"), None);
    assert_eq!(queued.as_array().unwrap().len(), 6);

    let listed = keys_command(&s.url, &["list"]);
    assert!(listed.contains("tests") && listed.contains("other"), "{listed}");
    let other_id = listed.lines().find(|l| l.contains("\tother\t")).unwrap().split('\t').next().unwrap().to_string();
    keys_command(&s.url, &["revoke", &other_id]);
    let (st, body, _) = call(ureq::get(&s.api.url("/v1/screenshots/jobs")).set("X-API-Key", &other), None);
    assert_error(st, &body, 401, "UNAUTHORIZED");
}

#[test]
fn serves_its_committed_spec_health_readiness_and_metrics() {
    let s = setup();
    let served: Value = ureq::get(&s.api.url("/openapi.json")).call().unwrap().into_json().unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed, "the served spec is the committed one");
    assert_eq!(ureq::get(&s.api.url("/healthz")).call().unwrap().status(), 200);
    assert_eq!(ureq::get(&s.api.url("/readyz")).call().unwrap().status(), 200);
    let docs = ureq::get(&s.api.url("/docs")).call().unwrap().into_string().unwrap();
    assert!(docs.contains("swagger"), "an interactive API page");
    call(authed(&s, "POST", "/v1/screenshots/async"), Some(json!({"url": "http://127.0.0.1:9/"})));
    let metrics = ureq::get(&s.api.url("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("pgshot_jobs_created_total 1"), "{metrics}");
    assert!(metrics.contains("pgshot_jobs{status=\"QUEUED\"} 1"), "{metrics}");
    assert!(metrics.contains("pgshot_jobs{status=\"PROCESSING\"} 0"), "{metrics}");
    assert!(metrics.contains("pgshot_job_rows "), "{metrics}");
    assert!(metrics.contains("pgshot_http_responses_total{class=\"2xx\"}"), "{metrics}");
    // Finished jobs only grow: they are not counted on every scrape (no full scan of the table).
    assert!(!metrics.contains("COMPLETED"), "{metrics}");

    // PGSHOT_METRICS_TOKEN puts the metrics behind a bearer token.
    let token = "metrics-token-0123456789";
    let guarded = ApiProcess::start(&s.url, &[("PGSHOT_METRICS_TOKEN", token.into())]);
    let (status, body, _) = call(ureq::get(&guarded.url("/metrics")), None);
    assert_eq!(status, 401, "{body}");
    let (status, _, _) =
        call(ureq::get(&guarded.url("/metrics")).set("Authorization", "Bearer wrong-token-0123456789"), None);
    assert_eq!(status, 401);
    let metrics = ureq::get(&guarded.url("/metrics")).set("Authorization", &format!("Bearer {token}")).call().unwrap();
    assert!(metrics.into_string().unwrap().contains("pgshot_jobs{status=\"QUEUED\"} 1"));
}

#[test]
fn bulk_requests_are_validated_whole_and_scoped_to_their_key() {
    let s = setup();
    let url = "http://127.0.0.1:9/bulk";
    let urls: Vec<Value> = (0..101).map(|i| json!({"url": format!("{url}/{i}")})).collect();
    let (st, body, _) = call(authed(&s, "POST", "/v1/screenshots/bulk"), Some(json!({"urls": urls})));
    assert_eq!(st, 422, "{body}\nkey {:?}\n{}", s.key, s.api.log());
    assert_error(st, &body, 422, "BULK_TOO_LARGE");
    let (st, body, _) = call(
        authed(&s, "POST", "/v1/screenshots/bulk"),
        Some(json!({"urls": [{"url": url}, {"url": url, "options": {"viewport": {"width": 5000}}}]})),
    );
    assert_error(st, &body, 400, "INVALID_OPTION");
    assert_eq!(body["error"]["details"]["field"], "urls[1].viewport.width", "{body}");
    let (st, body, _) =
        call(authed(&s, "POST", "/v1/screenshots/bulk"), Some(json!({"urls": [{"url": url, "colour": 1}]})));
    assert_error(st, &body, 400, "INVALID_OPTION");
    assert_eq!(body["error"]["details"]["field"], "urls[0].colour");
    let (st, body, _) = call(authed(&s, "POST", "/v1/screenshots/bulk"), Some(json!({"urls": []})));
    assert_error(st, &body, 400, "INVALID_OPTION");
    let mut s = s;
    let db = &mut s.db;
    let jobs: i64 = db.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0);
    assert_eq!(jobs, 0, "a refused bulk request enqueues nothing");

    let (st, bulk, _) = call(
        ureq::post(&s.api.url("/v1/screenshots/bulk")).set("X-API-Key", &s.key),
        Some(json!({"urls": [{"url": url}, {"url": format!("{url}/2")}], "defaults": {"fullPage": true}})),
    );
    assert_eq!(st, 202, "{bulk}");
    assert_eq!((bulk["totalJobs"].as_i64(), bulk["progress"].as_i64()), (Some(2), Some(0)));
    let id = bulk["id"].as_str().unwrap();
    let options: Value = db
        .query_one("SELECT options FROM pgshot.jobs WHERE bulk_id = $1 ORDER BY created_at LIMIT 1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(options, json!({"fullPage": true}), "defaults reach every job");
    let other = create_key(&s.url, "other");
    let (st, body, _) =
        call(ureq::get(&s.api.url(&format!("/v1/screenshots/bulk/{id}"))).set("X-API-Key", &other), None);
    assert_error(st, &body, 404, "NOT_FOUND");
    let (st, cancelled, _) = call(authed(&s, "POST", &format!("/v1/screenshots/bulk/{id}/cancel")), None);
    assert_eq!((st, cancelled["status"].as_str()), (200, Some("CANCELLED")), "{cancelled}");
}

/// What the official Python SDK (allscreenshots_sdk 2.0.0) sends: its ScreenshotRequest and
/// BulkRequest models serialise every default (models/screenshot_request.py, bulk_defaults.py).
#[test]
fn the_sdks_request_bodies_are_accepted_and_bulks_page_with_a_cursor() {
    let s = setup();
    let url = "http://127.0.0.1:9/sdk";
    let python_request = json!({"blockAds": true, "blockCookieBanners": true, "blockLevel": "none",
        "blockPopups": true, "darkMode": false, "delay": 0, "format": "png", "freezeFixed": true,
        "fullPage": false, "fullPageMode": "stitch", "maxSections": 50, "quality": 80,
        "responseType": "BINARY", "scrollInterval": 150, "stealthMode": false, "timeout": 30000,
        "url": url, "waitUntil": "domcontentloaded"});
    let (st, created, _) = call(authed(&s, "POST", "/v1/screenshots/async"), Some(python_request));
    assert_eq!(st, 202, "{created}");
    let python_defaults = json!({"blockAds": true, "blockCookieBanners": true, "blockLevel": "none",
        "blockPopups": true, "darkMode": false, "delay": 0, "format": "png", "fullPage": false,
        "quality": 80, "stealthMode": false, "timeout": 30000, "waitUntil": "domcontentloaded",
        "outputs": [{"mainContentOnly": true, "type": "markdown"}, {"format": "A4", "landscape": false,
                     "printBackground": true, "type": "pdf"}]});
    let mut bulk_ids = Vec::new();
    for i in 0..3 {
        let (st, bulk, _) = call(
            authed(&s, "POST", "/v1/screenshots/bulk"),
            Some(json!({"urls": [{"url": format!("{url}/{i}")}], "defaults": python_defaults})),
        );
        assert_eq!(st, 202, "{bulk}");
        bulk_ids.push(bulk["id"].as_str().unwrap().to_string());
    }
    // The SDK sends null for an optional field set to None: read as not set.
    let (st, bulk, _) = call(
        authed(&s, "POST", "/v1/screenshots/bulk"),
        Some(json!({"urls": [{"url": url, "options": null}], "defaults": null, "webhookUrl": null})),
    );
    assert_eq!(st, 202, "{bulk}");
    bulk_ids.push(bulk["id"].as_str().unwrap().to_string());

    // Listing bulks pages with X-Next-Cursor, as listing jobs does.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let resp = authed(&s, "GET", &format!("/v1/screenshots/bulk?limit=3&cursor={cursor}")).call().unwrap();
        let next = resp.header("X-Next-Cursor").map(str::to_string);
        let page: Vec<Value> = resp.into_json().unwrap();
        assert!(page.len() <= 3 && page.iter().all(|b| b.get("jobs").is_none()), "{page:?}");
        seen.extend(page.iter().map(|b| b["id"].as_str().unwrap().to_string()));
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    bulk_ids.reverse();
    assert_eq!(seen, bulk_ids, "every bulk once, newest first");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/bulk?cursor=1-aaaaaaaaaaaaaaaa"), None);
    assert_eq!((st, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
    let (st, body, _) = call(authed(&s, "GET", "/v1/screenshots/bulk?cursor=nope"), None);
    assert_error(st, &body, 400, "INVALID_CURSOR");

    // What a bulk cannot carry, refused with the field named and nothing enqueued.
    let mut s = s;
    let before: i64 = s.db.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0);
    let refusals = [
        (
            json!({"urls": [{"url": url}], "webhookUrl": "https://hooks.example.com/x", "webhookSecret": "  "}),
            "webhookSecret",
        ),
        (json!({"urls": [{"url": url}], "webhookSecret": "s3cret"}), "webhookSecret"),
        (
            json!({"urls": [{"url": url}, {"url": url}], "defaults": {"idempotencyKey": "one"}}),
            "urls[1].idempotencyKey",
        ),
        (json!({"urls": [{"url": url, "options": {"fullPageMode": "tiles"}}]}), "urls[0].fullPageMode"),
    ];
    for (body, field) in refusals {
        let (st, answer, _) = call(authed(&s, "POST", "/v1/screenshots/bulk"), Some(body.clone()));
        assert_error(st, &answer, 400, "INVALID_OPTION");
        assert_eq!(answer["error"]["details"]["field"], field, "{body}: {answer}");
    }
    let after: i64 = s.db.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0);
    assert_eq!(after, before);
}

#[test]
fn sync_captures_wait_for_the_worker_and_answer_per_response_type() {
    let site = Site::start();
    let s = setup();
    let worker = WorkerProcess::start(&s.url, "sync-worker", &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let resp = authed(&s, "POST", "/v1/screenshots")
        .send_json(json!({"url": site.url("/plain"), "viewport": {"width": 400, "height": 300}}))
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.log()));
    assert_eq!(resp.content_type(), "image/png");
    let mut png = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let (st, body, _) = call(
        authed(&s, "POST", "/v1/screenshots"),
        Some(json!({"url": site.url("/plain"), "responseType": "BASE64", "format": "jpeg"})),
    );
    assert_eq!((st, body["contentType"].as_str()), (200, Some("image/jpeg")), "{body}");
    let (st, job, _) =
        call(authed(&s, "POST", "/v1/screenshots"), Some(json!({"url": site.url("/plain"), "responseType": "url"})));
    assert_eq!((st, job["status"].as_str()), (200, Some("COMPLETED")), "{job}");
    assert!(job["resultUrl"].as_str().unwrap().starts_with(&s.api.base));

    let (st, body, _) = call(
        authed(&s, "POST", "/v1/screenshots"),
        Some(json!({"url": format!("http://127.0.0.1:{}/", pgshot_tests::site::closed_port()), "maxAttempts": 1})),
    );
    assert_error(st, &body, 422, "URL_UNREACHABLE");
    assert!(body["error"]["details"]["jobId"].is_string(), "{body}");
}

#[test]
fn sync_captures_without_a_worker_are_bounded_and_limited() {
    let (_db, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "lonely");
    let api = ApiProcess::start(
        &url,
        &[
            ("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into()),
            ("PGSHOT_MAX_SYNC_WAITING", "1".into()),
            ("PGSHOT_SYNC_WAIT_SECONDS", "1".into()),
            ("PGSHOT_SYNC_MAX_WAIT_SECONDS", "3".into()),
        ],
    );
    let post = |key: String, base: String| {
        std::thread::spawn(move || {
            let started = Instant::now();
            // A minute's page timeout, cut to the API's three-second limit.
            let answer = call(
                ureq::post(&format!("{base}/v1/screenshots")).set("X-API-Key", &key),
                Some(json!({"url": "http://127.0.0.1:9/", "timeout": 60000})),
            );
            assert!(started.elapsed() < Duration::from_secs(30), "PGSHOT_SYNC_MAX_WAIT_SECONDS bounds the wait");
            answer
        })
    };
    let first = post(key.clone(), api.base.clone());
    std::thread::sleep(Duration::from_millis(500));
    let (st, body, retry) = call(
        ureq::post(&api.url("/v1/screenshots")).set("X-API-Key", &key),
        Some(json!({"url": "http://127.0.0.1:9/"})),
    );
    assert_error(st, &body, 429, "TOO_MANY_REQUESTS");
    assert_eq!(retry.as_deref(), Some("1"));
    let (st, body, retry) = first.join().unwrap();
    assert_error(st, &body, 503, "NOT_FINISHED");
    assert!(retry.is_some(), "503 carries Retry-After");
    let status_url = body["error"]["details"]["statusUrl"].as_str().unwrap();
    let (st, job, _) = call(ureq::get(status_url).set("X-API-Key", &key), None);
    assert_eq!((st, job["status"].as_str()), (200, Some("QUEUED")), "the job goes on: {job}");
}

#[test]
fn the_request_body_limit_is_a_setting() {
    let (mut db, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "bodies");
    let api = ApiProcess::start(
        &url,
        &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into()), ("PGSHOT_MAX_BODY_BYTES", "4096".into())],
    );
    let post = |path: &str, body: Value| call(ureq::post(&api.url(path)).set("X-API-Key", &key), Some(body));
    let page = "http://127.0.0.1:9/";
    let fits = json!({"url": page, "customCss": "x".repeat(3500)});
    let (st, body, _) = post("/v1/screenshots/async", fits);
    assert_eq!(st, 202, "{body}");
    let over = json!({"url": page, "customCss": "x".repeat(4200)});
    let (st, body, _) = post("/v1/screenshots/async", over);
    assert_error(st, &body, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(body["error"]["message"], "the request body is larger than 4096 bytes", "{body}");
    let bulk = json!({"urls": (0..40).map(|i| json!({"url": format!("{page}?page={i}&padding={}", "x".repeat(100))})).collect::<Vec<_>>()});
    let (st, body, _) = post("/v1/screenshots/bulk", bulk);
    assert_error(st, &body, 413, "PAYLOAD_TOO_LARGE");
    let jobs: i64 = db.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0);
    assert_eq!(jobs, 1, "only the body under the limit made a job");
}

#[test]
fn every_ssrf_spelling_is_refused_over_rest_for_pages_webhooks_and_bulks() {
    // The API's default policy and a database without private networks.
    let name = cluster().fresh_db();
    let url = cluster().url(&name);
    let mut db = cluster().connect(&name);
    let key = create_key(&url, "ssrf");
    let api = ApiProcess::start(&url, &[]);
    let post = |path: &str, body: Value| call(ureq::post(&api.url(path)).set("X-API-Key", &key), Some(body));
    for target in SSRF_CORPUS {
        let is_web = target.starts_with("http");
        let code = if is_web { "BLOCKED_URL" } else { "INVALID_URL" };
        let (st, body, _) = post("/v1/screenshots/async", json!({"url": target}));
        assert_error(st, &body, 400, code);
        assert_eq!(body["error"]["details"]["field"], "url", "{target}: {body}");
        let (st, body, _) = post("/v1/screenshots/async", json!({"url": "https://example.com", "webhookUrl": target}));
        assert_error(st, &body, 400, code);
        assert_eq!(body["error"]["details"]["field"], "webhookUrl", "{target}: {body}");
        let (st, body, _) = post("/v1/screenshots", json!({"url": target}));
        assert_error(st, &body, 400, code);
        let (st, body, _) =
            post("/v1/screenshots/bulk", json!({"urls": [{"url": "https://example.com"}, {"url": target}]}));
        assert_error(st, &body, 400, code);
        assert_eq!(body["error"]["details"]["field"], "urls[1].url", "{target}: {body}");
        let (st, body, _) =
            post("/v1/screenshots/bulk", json!({"urls": [{"url": "https://example.com"}], "webhookUrl": target}));
        assert_error(st, &body, 400, code);
    }
    let jobs: i64 = db.query_one("SELECT count(*) FROM pgshot.jobs", &[]).unwrap().get(0);
    let bulks: i64 = db.query_one("SELECT count(*) FROM pgshot.bulks", &[]).unwrap().get(0);
    assert_eq!((jobs, bulks), (0, 0), "nothing half-written");
    assert!(!api.log().contains("ERROR"), "a refused URL was logged as a server error:\n{}", api.log());
}

#[test]
fn a_client_still_sending_an_oversized_body_receives_its_413() {
    // The API answers once it has read 1 MiB; closing then, with the rest unread, would reset the
    // connection under a client that is still sending (one in fifteen saw a broken pipe).
    let s = setup();
    let huge = json!({"url": "http://127.0.0.1:9/", "customCss": "x".repeat(2 << 20)});
    let mut broken = Vec::new();
    for _ in 0..100 {
        match authed(&s, "POST", "/v1/screenshots/async").send_json(huge.clone()) {
            Err(ureq::Error::Status(st, resp)) => {
                let body: Value = resp.into_json().unwrap();
                assert_error(st, &body, 413, "PAYLOAD_TOO_LARGE");
            }
            Err(e) => broken.push(e.to_string()),
            Ok(resp) => panic!("an oversized body was accepted: {}", resp.status()),
        }
    }
    assert!(broken.is_empty(), "{} of 100 got no answer: {:?}", broken.len(), broken.first());
}

/// (status, body, X-RateLimit-Limit, -Remaining, -Reset, Retry-After) of a call.
fn call_limited(req: ureq::Request, body: Option<Value>) -> (u16, Value, [Option<i64>; 4]) {
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let n = |h: &str| resp.header(h).map(|v| v.parse::<i64>().unwrap_or_else(|_| panic!("{h}: {v}")));
    let headers = [n("X-RateLimit-Limit"), n("X-RateLimit-Remaining"), n("X-RateLimit-Reset"), n("Retry-After")];
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

#[test]
fn key_limits_answer_429_with_retry_after_and_rate_limit_headers_and_usage_counts() {
    let s = setup();
    let key = keys_command(&s.url, &["create", "--name", "limited", "--rate", "3", "--max-in-flight", "100"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let listed = keys_command(&s.url, &["list"]);
    assert!(
        listed.lines().any(|l| l.contains("limited") && l.contains("rate 3/min") && l.contains("in flight 100")),
        "{listed}"
    );
    let with = |method: &str, path: &str| ureq::request(method, &s.api.url(path)).set("X-API-Key", &key);
    let page = json!({"url": "http://127.0.0.1:9/x"});

    for remaining in [2, 1, 0] {
        let (st, body, [limit, left, reset, _]) =
            call_limited(with("POST", "/v1/screenshots/async"), Some(page.clone()));
        assert_eq!(st, 202, "{body}");
        assert_eq!((limit, left), (Some(3), Some(remaining)));
        assert!(reset.is_some_and(|r| (1..=60).contains(&r)), "{reset:?}");
    }
    let (st, body, [limit, left, _, retry]) = call_limited(with("POST", "/v1/screenshots/async"), Some(page.clone()));
    assert_error(st, &body, 429, "RATE_LIMITED");
    assert!(body["message"].as_str().unwrap().contains("3 jobs per minute"), "{body}");
    assert_eq!((limit, left), (Some(3), Some(0)));
    assert!(retry.is_some_and(|r| (15..=20).contains(&r)), "Retry-After {retry:?}");
    // A bulk and a sync capture are held to the same limit; reading is not limited, and says where
    // the key stands.
    let (st, body, _) = call_limited(with("POST", "/v1/screenshots/bulk"), Some(json!({"urls": [page.clone()]})));
    assert_error(st, &body, 429, "RATE_LIMITED");
    let (st, body, _) = call_limited(with("POST", "/v1/screenshots"), Some(page.clone()));
    assert_error(st, &body, 429, "RATE_LIMITED");
    let (st, body, [limit, left, ..]) = call_limited(with("GET", "/v1/screenshots/jobs"), None);
    assert_eq!((st, limit, left), (200, Some(3), Some(0)), "{body}");
    assert_eq!(body.as_array().unwrap().len(), 3, "the refused requests created nothing");

    let (st, usage, _) = call_limited(with("GET", "/v1/usage"), None);
    assert_eq!(st, 200, "{usage}");
    assert_eq!(usage["jobs"]["QUEUED"], 3, "{usage}");
    assert_eq!(usage["limits"]["ratePerMinute"], 3, "{usage}");
    assert_eq!(usage["limits"]["maxInFlight"], 100, "{usage}");
    assert_eq!(usage["limits"]["inFlight"], 3, "{usage}");
    assert_eq!(usage["limits"]["remaining"], 0, "{usage}");
    assert_eq!(usage["tier"], "self-hosted");
    assert_eq!(usage["currentPeriod"]["screenshotsCount"], 0, "{usage}");
    let start = usage["currentPeriod"]["periodStart"].as_str().unwrap();
    assert!(start.contains("-01T"), "this month's first day: {usage}");

    // A key without limits gets no X-RateLimit headers; an unknown key gets 401 and none either.
    let (st, _, [limit, ..]) = call_limited(authed(&s, "POST", "/v1/screenshots/async"), Some(page.clone()));
    assert_eq!((st, limit), (202, None));
    let (st, body, [limit, ..]) =
        call_limited(ureq::get(&s.api.url("/v1/usage")).set("X-API-Key", "pgs_not_a_key"), None);
    assert_error(st, &body, 401, "UNAUTHORIZED");
    assert_eq!(limit, None);
    let (st, usage, _) = call_limited(authed(&s, "GET", "/v1/usage"), None);
    assert_eq!(st, 200);
    assert_eq!(usage["limits"], json!({"inFlight": 1}), "no limits, one job queued");

    // Limits are changed with `keys limit`; a key's jobs in flight are capped.
    let id = listed.lines().find(|l| l.contains("limited")).unwrap().split('\t').next().unwrap().to_string();
    keys_command(&s.url, &["limit", &id, "--max-in-flight", "3"]);
    let (st, body, [limit, _, _, retry]) = call_limited(with("POST", "/v1/screenshots/async"), Some(page.clone()));
    assert_error(st, &body, 429, "RATE_LIMITED");
    assert!(body["message"].as_str().unwrap().contains("3 jobs queued or processing"), "{body}");
    assert_eq!((limit, retry), (None, Some(1)), "no rate limit any more; in flight, retry in a second");
    let first = body_id(&call_limited(with("GET", "/v1/screenshots/jobs"), None).1);
    call_limited(with("POST", &format!("/v1/screenshots/jobs/{first}/cancel")), None);
    let (st, body, _) = call_limited(with("POST", "/v1/screenshots/async"), Some(page));
    assert_eq!(st, 202, "a cancelled job frees its slot: {body}");
}

fn body_id(list: &Value) -> String {
    list[0]["id"].as_str().expect("a job in the list").to_string()
}
