//! The dashboard in a real Chromium (the worker's, driven through chromiumoxide), against a real
//! API, worker and Postgres: a key logs in and sees its jobs with their thumbnails and errors,
//! watches a job appear and complete without reloading, cancels a queued job from its page, and
//! never sees another key's jobs; the operator token opens the queue and workers view. A page
//! with a hostile title is shown as text.
//!
//! With PGSHOT_DASHBOARD_SCREENSHOTS=<dir> (`make dashboard-screenshots`), pgshot itself then
//! screenshots each view into that directory, for the README.

use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::Page;
use futures::StreamExt;
use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::cluster;
use pgshot_tests::receiver::Receiver;
use pgshot_tests::site::{closed_port, Site};
use pgshot_tests::worker_process::WorkerProcess;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "operator-token-for-the-dashboard-test-0123456789";

fn post(api: &ApiProcess, key: &str, body: Value) -> Value {
    match ureq::post(&api.url("/v1/screenshots/async")).set("X-API-Key", key).send_json(body.clone()) {
        Ok(resp) => resp.into_json().unwrap(),
        Err(ureq::Error::Status(code, resp)) => panic!("create {body}: {code} {}", resp.into_string().unwrap()),
        Err(e) => panic!("create {body}: {e}"),
    }
}

fn get_job(api: &ApiProcess, key: &str, id: &str) -> Value {
    ureq::get(&api.url(&format!("/v1/screenshots/jobs/{id}")))
        .set("X-API-Key", key)
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

/// Polls the job until it is no longer QUEUED or PROCESSING.
fn finished(api: &ApiProcess, key: &str, id: &str, logs: &dyn Fn() -> String) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = get_job(api, key, id);
        if !matches!(job["status"].as_str(), Some("QUEUED" | "PROCESSING")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn eval(page: &Page, js: &str) -> Value {
    match tokio::time::timeout(Duration::from_secs(10), page.evaluate(js)).await {
        Ok(Ok(result)) => result.into_value::<Value>().unwrap_or(Value::Null),
        Ok(Err(e)) => panic!("evaluate {js}: {e}"),
        Err(_) => panic!("evaluate {js}: timed out"),
    }
}

/// Waits until the expression `js` is true in the page, and says what the page showed if not.
async fn until(page: &Page, what: &str, js: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if eval(page, js).await == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let text = eval(page, "document.body.innerText").await;
            panic!(
                "{what}: `{js}` stayed false for {limit:?}; the page shows:\n{}",
                text.as_str().unwrap_or("").replace('\n', " | ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn login(page: &Page, token: &str) {
    until(page, "the login form", "!!document.querySelector('#login-token')", Duration::from_secs(10)).await;
    eval(
        page,
        &format!(
            "document.querySelector('#login-token').value = {}; document.querySelector('#login-submit').click(); true",
            json!(token)
        ),
    )
    .await;
    until(page, "logged in", "!document.querySelector('#nav').hidden", Duration::from_secs(10)).await;
}

async fn launch_browser() -> (Browser, tokio::task::JoinHandle<()>, tempdir::Dir) {
    let profile = tempdir::Dir::new("pgshot-dashboard-test");
    let config = BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        .user_data_dir(profile.path())
        // The test's own browser, on its own pages, as root on CI: the worker's renders keep
        // their sandbox (render.rs tests that).
        .no_sandbox()
        .window_size(1280, 900)
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-dev-shm-usage",
        ])
        .build()
        .expect("a browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
    // The handler is polled on its own task for as long as the browser lives, through errors.
    let driver = tokio::spawn(async move { while let Some(_event) = handler.next().await {} });
    (browser, driver, profile)
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), pgshot_job_suffix()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    fn pgshot_job_suffix() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_its_jobs_live_and_the_operator_sees_the_queue() {
    // The synchronous postgres client runs its own runtime: off this one's threads.
    let url = tokio::task::block_in_place(|| cluster().fresh_local_db(&["pgshot.webhook_retry_schedule = '0,1,1'"]).1);
    let site = Site::start();
    let key = create_key(&url, "dashboard");
    let other_key = create_key(&url, "someone else");
    let private = ("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string());
    let api = ApiProcess::start(&url, &[private.clone(), ("PGSHOT_ADMIN_TOKEN", ADMIN_TOKEN.to_string())]);
    let worker = WorkerProcess::start(
        &url,
        "dashboard-worker",
        &[private.clone(), ("PGSHOT_MAINTENANCE_INTERVAL_SECONDS", "1".to_string())],
    );
    let logs = || format!("worker:\n{}\napi:\n{}", worker.log(), api.log());

    // A completed job, a failed one, one with a hostile title, and another key's job.
    // Its webhook is refused once, then accepted: two attempts on the job's page.
    let receiver = Receiver::start();
    receiver.answer(&[503]);
    let plain = post(&api, &key, json!({"url": site.url("/plain"), "webhookUrl": receiver.url("/hook")}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unreachable = format!("http://127.0.0.1:{}/gone", closed_port());
    let failing = post(&api, &key, json!({"url": unreachable, "maxAttempts": 1}))["id"].as_str().unwrap().to_string();
    let hostile = post(&api, &key, json!({"url": site.url("/hostile/title")}))["id"].as_str().unwrap().to_string();
    let theirs = post(&api, &other_key, json!({"url": site.url("/plain?someone-elses-job")}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let plain_job = finished(&api, &key, &plain, &logs);
    assert_eq!(plain_job["status"], "COMPLETED", "{plain_job}\n{}", logs());
    let failed_job = finished(&api, &key, &failing, &logs);
    assert_eq!(failed_job["status"], "FAILED", "{failed_job}");
    let error_code = failed_job["errorCode"].as_str().unwrap().to_string();
    assert_eq!(finished(&api, &key, &hostile, &logs)["status"], "COMPLETED");
    assert_eq!(finished(&api, &other_key, &theirs, &logs)["status"], "COMPLETED");

    // The attempt history in the REST job: who ran it, and the failed attempt's error.
    let attempts = plain_job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{plain_job}");
    assert_eq!(attempts[0]["status"], "COMPLETED");
    // Which worker (its host and process) ran it is the operator's business, not the key's.
    assert!(attempts[0].get("worker").is_none(), "{plain_job}");
    assert!(attempts[0]["startedAt"].is_string() && attempts[0]["endedAt"].is_string(), "{plain_job}");
    assert_eq!(failed_job["attempts"][0]["errorCode"], error_code.as_str(), "{failed_job}");
    assert_eq!(failed_job["lastError"]["errorCode"], error_code.as_str(), "{failed_job}");

    let (mut browser, driver, _profile) = launch_browser().await;
    // A link carrying someone else's key does not log this tab in: it asks, and stores nothing.
    let page = browser
        .new_page(format!("{}#token={other_key}&/jobs", api.url("/dashboard")))
        .await
        .expect("open the dashboard");
    until(
        &page,
        "the link's login is only proposed",
        "!!document.querySelector('#fragment-login-confirm')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        eval(
            &page,
            "[sessionStorage.getItem('pgshot.dashboard.token'), document.querySelector('#nav').hidden, location.hash]"
        )
        .await,
        json!([null, true, ""]),
        "a #token= link logged the tab in"
    );
    eval(&page, "document.querySelector('#fragment-login-cancel').click(); true").await;
    login(&page, &key).await;

    // The jobs, newest first, with the completed job's thumbnail loaded.
    until(
        &page,
        "the jobs list",
        &format!("!!document.querySelector('.job-row[data-id=\"{plain}\"]')"),
        Duration::from_secs(10),
    )
    .await;
    until(
        &page,
        "the thumbnail",
        &format!("(document.querySelector('.job-row[data-id=\"{plain}\"] .thumb img') || {{}}).naturalWidth > 0"),
        Duration::from_secs(10),
    )
    .await;
    let shown: Vec<String> =
        serde_json::from_value(eval(&page, "[...document.querySelectorAll('.job-row')].map(r => r.dataset.id)").await)
            .unwrap();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(!shown.contains(&theirs));

    // The hostile title is text: no image, no script ran.
    until(
        &page,
        "the hostile title as text",
        &format!(
            "(document.querySelector('.job-row[data-id=\"{hostile}\"] .title') || {{}}).textContent \
             === '<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>'"
        ),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        eval(
            &page,
            "window.__pwned === undefined && document.querySelectorAll('img[src=\"x\"], main script').length === 0"
        )
        .await,
        true
    );

    // Filter FAILED: only the failed job, with its error code.
    eval(&page, "const s = document.querySelector('#status-filter'); s.value = 'FAILED'; s.dispatchEvent(new Event('change')); true").await;
    until(
        &page,
        "the FAILED filter",
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('.job-row')]; \
               return rows.length === 1 && rows[0].dataset.id === '{failing}' \
                 && rows[0].querySelector('.error-code').textContent === '{error_code}'; }})()"
        ),
        Duration::from_secs(10),
    )
    .await;

    // Search by a part of the URL.
    eval(&page, "location.hash = '#/jobs'; true").await;
    until(&page, "every status", "document.querySelectorAll('.job-row').length === 3", Duration::from_secs(10)).await;
    eval(
        &page,
        "const q = document.querySelector('#url-search'); q.value = 'HOSTILE/TI'; \
         q.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'})); true",
    )
    .await;
    until(
        &page,
        "the URL search",
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('.job-row')]; \
               return rows.length === 1 && rows[0].dataset.id === '{hostile}'; }})()"
        ),
        Duration::from_secs(10),
    )
    .await;

    // Retry the failed job from its page: a new job with the same request.
    eval(&page, &format!("location.hash = '#/job/{failing}'; true")).await;
    until(&page, "the failed job's page", "!!document.querySelector('#retry-button')", Duration::from_secs(10)).await;
    assert_eq!(
        eval(&page, "document.querySelector('#timeline .attempt .error-code').textContent").await,
        error_code.as_str()
    );
    eval(&page, "document.querySelector('#retry-button').click(); true").await;
    until(
        &page,
        "the retried job's page",
        &format!(
            "!!document.querySelector('#job-view') && document.querySelector('#job-view').dataset.id !== '{failing}'"
        ),
        Duration::from_secs(10),
    )
    .await;
    let again = eval(&page, "document.querySelector('#job-view').dataset.id").await;
    let again = finished(&api, &key, again.as_str().unwrap(), &logs);
    assert_eq!((again["url"].as_str(), again["status"].as_str()), (Some(unreachable.as_str()), Some("FAILED")));

    // Live: a job created elsewhere appears and completes without a reload.
    eval(&page, "location.hash = '#/jobs'; window.__notReloaded = true; true").await;
    until(&page, "every status again", "document.querySelectorAll('.job-row').length === 4", Duration::from_secs(10))
        .await;
    let live = post(&api, &key, json!({"url": site.url("/plain?live")}))["id"].as_str().unwrap().to_string();
    until(
        &page,
        "the new job, completed, without reloading",
        &format!(
            "window.__notReloaded === true && \
             (document.querySelector('.job-row[data-id=\"{live}\"]') || {{dataset: {{}}}}).dataset.status === 'COMPLETED'"
        ),
        Duration::from_secs(20),
    )
    .await;

    // Cancel a queued job from its page; the database has it CANCELLED.
    let run_at = "2099-01-01T00:00:00Z";
    let later =
        post(&api, &key, json!({"url": site.url("/plain?later"), "runAt": run_at}))["id"].as_str().unwrap().to_string();
    eval(&page, &format!("location.hash = '#/job/{later}'; true")).await;
    until(&page, "the job page", "!!document.querySelector('#cancel-button')", Duration::from_secs(10)).await;
    eval(&page, "document.querySelector('#cancel-button').click(); true").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: String = tokio::task::block_in_place(|| {
            let mut c = pgshot_tests::connect_url(&url);
            c.query_one("SELECT status FROM pgshot.jobs WHERE id = $1", &[&later]).unwrap().get(0)
        });
        if status == "CANCELLED" {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after the click");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until(
        &page,
        "the cancelled job's page",
        "document.querySelector('#job-view').dataset.status === 'CANCELLED'",
        Duration::from_secs(10),
    )
    .await;

    // The completed job's page: the screenshot, the attempt (without the worker that ran it: the
    // operator's business) and both webhook attempts.
    receiver.wait_for(2, Duration::from_secs(60));
    eval(&page, &format!("location.hash = '#/job/{plain}'; true")).await;
    until(
        &page,
        "the completed job's page",
        "(document.querySelector('.output-image') || {}).naturalWidth > 0 \
         && document.querySelector('#timeline .attempt').textContent.includes('Attempt 1 COMPLETED')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        eval(&page, "document.querySelector('#timeline').textContent.includes('dashboard-worker')").await,
        json!(false),
        "a key's view names the worker"
    );
    until(
        &page,
        "both webhook attempts",
        "(() => { const t = (document.querySelector('#deliveries') || {}).textContent || ''; \
           return t.includes('HTTP 503') && t.includes('HTTP 200') && t.includes('DELIVERED'); })()",
        Duration::from_secs(40),
    )
    .await;

    // Capture from the form: the job's page opens and shows the screenshot once it is done.
    eval(&page, "location.hash = '#/capture'; true").await;
    until(&page, "the capture form", "!!document.querySelector('#capture-url')", Duration::from_secs(10)).await;
    eval(
        &page,
        &format!(
            "document.querySelector('#capture-url').value = {}; document.querySelector('#capture-dark').checked = true; \
             document.querySelector('#capture-submit').click(); true",
            json!(site.url("/plain?captured"))
        ),
    )
    .await;
    until(
        &page,
        "the captured job's screenshot",
        "!!document.querySelector('#job-view') && document.querySelector('#job-view').dataset.status === 'COMPLETED' \
         && (document.querySelector('.output-image') || {}).naturalWidth === 1280",
        Duration::from_secs(30),
    )
    .await;
    let captured = eval(&page, "document.querySelector('#job-view').dataset.id").await;
    let captured = get_job(&api, &key, captured.as_str().unwrap());
    assert_eq!(captured["url"], site.url("/plain?captured"));
    assert_eq!(captured["metadata"]["width"], 1280, "{captured}");

    // Schedules: the key's schedule with its last capture; "Run now" starts a run, whose capture
    // and difference from the previous one the schedule's page shows; pause and resume.
    let made: Value = ureq::post(&api.url("/v1/schedules"))
        .set("X-API-Key", &key)
        .send_json(json!({"name": "dashboard watch", "url": site.url("/plain?scheduled"), "schedule": "0 0 1 1 *",
                          "options": {"viewport": {"width": 640, "height": 400}}}))
        .unwrap()
        .into_json()
        .unwrap();
    let sched = made["id"].as_str().unwrap().to_string();
    eval(&page, "location.hash = '#/schedules'; true").await;
    until(
        &page,
        "the schedule's row",
        &format!("!!document.querySelector('.schedule-row[data-id=\"{sched}\"]')"),
        Duration::from_secs(10),
    )
    .await;
    eval(
        &page,
        &format!("document.querySelector('.schedule-row[data-id=\"{sched}\"] .schedule-trigger').click(); true"),
    )
    .await;
    until(
        &page,
        "the first run's capture in the list",
        &format!("(document.querySelector('.schedule-row[data-id=\"{sched}\"] .thumb img') || {{}}).naturalWidth > 0"),
        Duration::from_secs(40),
    )
    .await;
    eval(&page, &format!("location.hash = '#/schedule/{sched}'; true")).await;
    until(
        &page,
        "the schedule's page",
        "!!document.querySelector('#schedule-view .schedule-trigger')",
        Duration::from_secs(10),
    )
    .await;
    eval(&page, "document.querySelector('#schedule-view .schedule-trigger').click(); true").await;
    until(
        &page,
        "the second run, unchanged, with its difference image",
        "document.querySelectorAll('.run-row[data-status=\"COMPLETED\"]').length === 2          && document.querySelector('.run-row').dataset.changed === 'false'          && (document.querySelector('.run-row .thumb.diff img') || {}).naturalWidth === 640",
        Duration::from_secs(40),
    )
    .await;
    eval(&page, "document.querySelector('#schedule-view .schedule-pause').click(); true").await;
    until(
        &page,
        "the paused schedule",
        "!!document.querySelector('#schedule-view .schedule-resume')",
        Duration::from_secs(10),
    )
    .await;
    let paused: String = tokio::task::block_in_place(|| {
        pgshot_tests::connect_url(&url)
            .query_one("SELECT status FROM pgshot.schedules WHERE id = $1", &[&sched])
            .unwrap()
            .get(0)
    });
    assert_eq!(paused, "PAUSED");

    // Another key's job does not exist for this key, in the page's API either; the queue view
    // is the operator's.
    let probe = format!(
        "fetch('/dashboard/api/jobs/{theirs}', {{headers: {{Authorization: 'Bearer ' + sessionStorage.getItem('pgshot.dashboard.token')}}}}).then(r => r.status)"
    );
    assert_eq!(eval(&page, &probe).await, 404);
    let queue_probe = "fetch('/dashboard/api/queue', {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('pgshot.dashboard.token')}}).then(async r => [r.status, (await r.json()).errorCode])";
    assert_eq!(eval(&page, queue_probe).await, json!([403, "FORBIDDEN"]));
    let everything = eval(&page, "document.body.innerText").await;
    assert!(!everything.as_str().unwrap().contains("someone-elses-job"), "{everything}");

    // The operator: every owner's jobs, the queue and the workers.
    eval(&page, "document.querySelector('#logout').click(); true").await;
    login(&page, ADMIN_TOKEN).await;
    eval(&page, "location.hash = '#/jobs'; true").await;
    until(
        &page,
        "another key's job, for the operator",
        &format!("!!document.querySelector('.job-row[data-id=\"{theirs}\"]')"),
        Duration::from_secs(10),
    )
    .await;
    eval(&page, "location.hash = '#/queue'; true").await;
    until(
        &page,
        "the workers",
        "[...document.querySelectorAll('.worker-row')].some(r => r.dataset.alive === 'true' && r.textContent.includes('dashboard-worker'))",
        Duration::from_secs(15),
    )
    .await;
    // Completed: the key's five jobs and its schedule's two runs.
    until(
        &page,
        "the last hour",
        "document.querySelector('#stat-completed b').textContent === '7' && document.querySelector('#stat-failed b').textContent === '2' \
         && document.querySelectorAll('#activity-chart rect').length > 0 && document.querySelector('#error-codes') !== null",
        Duration::from_secs(10),
    )
    .await;

    if let Ok(dir) = std::env::var("PGSHOT_DASHBOARD_SCREENSHOTS") {
        // Under the other key, so that the views' own URLs (with the key in their fragment)
        // are not among the jobs they show.
        tokio::task::block_in_place(|| {
            screenshots_by_pgshot(&api, &other_key, &key, &plain, std::path::Path::new(&dir), &logs)
        });
    }

    let _ = browser.close().await;
    let _ = browser.wait().await;
    driver.abort();
}

/// pgshot screenshots its own dashboard: each view is a job of the worker under test.
/// `by` enqueues the screenshots of what `viewer` sees.
fn screenshots_by_pgshot(
    api: &ApiProcess,
    by: &str,
    viewer: &str,
    job: &str,
    dir: &std::path::Path,
    logs: &dyn Fn() -> String,
) {
    std::fs::create_dir_all(dir).unwrap();
    // A few pages with more to see in a thumbnail than the tests' plain ones.
    let site = Site::start();
    for path in ["/article", "/fixed", "/gallery", "/red-page"] {
        let id = post(api, viewer, json!({"url": site.url(path), "fullPage": path == "/article"}))["id"]
            .as_str()
            .unwrap()
            .to_string();
        finished(api, viewer, &id, logs);
    }
    let views = [
        ("jobs", viewer, "/jobs".to_string()),
        ("job", viewer, format!("/job/{job}")),
        ("queue", ADMIN_TOKEN, "/queue".to_string()),
        ("capture", viewer, "/capture".to_string()),
        ("schedules", viewer, "/schedules".to_string()),
    ];
    for (name, token, view) in views {
        let target = format!("{}#token={token}&{view}", api.url("/dashboard"));
        // A job's page whole: its webhook deliveries and request are below the fold.
        // The link's key is only proposed: the capture confirms it, as its maker would.
        let body = json!({"url": target, "viewport": {"width": 1280, "height": 860}, "delay": 2500, "fullPage": name == "job",
                          "actions": [{"type": "click", "selector": "#fragment-login-confirm", "timeout": 10000}]});
        let id = post(api, by, body)["id"].as_str().unwrap().to_string();
        let done = finished(api, by, &id, logs);
        assert_eq!(done["status"], "COMPLETED", "{done}");
        let png =
            ureq::get(&api.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", by).call().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut png.into_reader(), &mut bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}
