//! Schedules: recurring captures turned into jobs by real workers at each due time, with change
//! detection, through SQL and REST, and the vendor SDKs' schedule calls unchanged.

use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::receiver::Receiver;
use pgshot_tests::site::{closed_port, Site};
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{cluster, connect_url, db_message, sqlstate, Client};
use serde_json::{json, Value};

fn private() -> Vec<(&'static str, String)> {
    vec![("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]
}

fn create(c: &mut Client, spec: Value) -> Value {
    c.query_one("SELECT screenshot_schedule_create($1)", &[&spec]).unwrap().get(0)
}

fn history(c: &mut Client, id: &str) -> Value {
    c.query_one("SELECT screenshot_schedule_history($1, 100)", &[&id]).unwrap().get(0)
}

/// Waits until `id` has `n` runs that ended, and returns its history.
fn wait_runs_ended(c: &mut Client, id: &str, n: usize, limit: Duration, logs: &dyn Fn() -> String) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let h = history(c, id);
        let ended = h["executions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| ["COMPLETED", "FAILED", "CANCELLED"].iter().any(|s| e["status"] == *s))
            .count();
        if ended >= n {
            return h;
        }
        assert!(Instant::now() < deadline, "{h}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_due_schedule_runs_once_however_many_tick_and_a_missed_one_once_when_they_return() {
    let (mut c, url) = cluster().fresh_local_db(&[]);
    let ids: Vec<String> = (0..40)
        .map(|i| {
            let s =
                create(&mut c, json!({"name": format!("s{i}"), "url": "https://example.com", "schedule": "* * * * *"}));
            s["id"].as_str().unwrap().to_string()
        })
        .collect();
    // Every worker was down for ten minutes: ten due times passed.
    c.execute("UPDATE pgshot.schedules SET next_run_at = date_trunc('minute', now()) - interval '10 minutes'", &[])
        .unwrap();
    let tickers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect_url(&url);
                (0..15)
                    .map(|_| c.query_one("SELECT screenshot_schedule_tick(7)", &[]).unwrap().get::<_, i32>(0))
                    .sum::<i32>()
            })
        })
        .collect();
    let started: i32 = tickers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(started, 40, "one run per schedule, not one per ticker nor per missed time");
    let per_schedule: Vec<(String, i64, i64)> = c
        .query(
            "SELECT s.id, count(r.id), count(j.id) FROM pgshot.schedules s
             LEFT JOIN pgshot.schedule_runs r ON r.schedule_id = s.id
             LEFT JOIN pgshot.jobs j ON j.id = r.job_id AND j.schedule_id = s.id
             GROUP BY s.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(per_schedule.len(), ids.len());
    assert!(per_schedule.iter().all(|(_, runs, jobs)| (*runs, *jobs) == (1, 1)), "{per_schedule:?}");
    // The next run is the next due time from now, within the minute; another tick starts nothing.
    let next_ok: bool = c
        .query_one(
            "SELECT bool_and(next_run_at > now() AND next_run_at <= now() + interval '1 minute' AND execution_count = 1)
             FROM pgshot.schedules",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next_ok);
    assert_eq!(c.query_one("SELECT screenshot_schedule_tick(100)", &[]).unwrap().get::<_, i32>(0), 0);
    // The tick reads the due schedules through their index, not the table.
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: String = c
        .query(
            "EXPLAIN SELECT * FROM pgshot.schedules WHERE status = 'ACTIVE' AND next_run_at <= now() ORDER BY next_run_at LIMIT 100",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("schedules_due"), "{plan}");
    c.batch_execute("RESET enable_seqscan").unwrap();

    // Retention: a run past its retentionDays goes at the next tick, with its job once it ended.
    let (run, job): (String, String) = c
        .query_one("SELECT id, job_id FROM pgshot.schedule_runs ORDER BY id LIMIT 1", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    c.query_one("SELECT screenshot_cancel($1)", &[&job]).unwrap();
    c.execute("UPDATE pgshot.schedule_runs SET expires_at = now() - interval '1 second' WHERE id = $1", &[&run])
        .unwrap();
    c.query_one("SELECT screenshot_schedule_tick(100)", &[]).unwrap();
    let left: (i64, i64) = c
        .query_one(
            "SELECT (SELECT count(*) FROM pgshot.schedule_runs WHERE id = $1), (SELECT count(*) FROM pgshot.jobs WHERE id = $2)",
            &[&run, &job],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(left, (0, 0));
    let others: i64 = c.query_one("SELECT count(*) FROM pgshot.schedule_runs", &[]).unwrap().get(0);
    assert_eq!(others, 39, "the other runs are kept");
}

#[test]
fn bad_schedules_name_their_field_and_leave_nothing_and_time_zones_window_and_owners_hold() {
    let (mut c, _url) = cluster().fresh_local_db(&[]);
    let base = json!({"name": "n", "url": "https://example.com", "schedule": "0 9 * * *"});
    let bad = [
        (json!({"schedule": "every day"}), "schedule"),
        (json!({"schedule": "*/5 * * * * * *"}), "schedule"),
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
        (json!({"diffThreshold": 1.5}), "diffThreshold"),
        (json!({"autoPauseAfterFailures": 101}), "autoPauseAfterFailures"),
        (json!({"retentionDays": 0}), "retentionDays"),
        (json!({"destinations": [{"type": "email", "to": ["ops@example.com"]}]}), "email"),
        (json!({"options": {"viewport": {"width": 99999}}}), "options.viewport.width"),
        (json!({"url": "javascript:alert(1)"}), "url"),
    ];
    for (change, field) in bad {
        let mut spec = base.clone();
        spec.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let result = c.query_one("SELECT screenshot_schedule_create($1)", &[&spec]);
        let (state, message) = db_message(result);
        assert_eq!(state, "22023", "{spec}: {message}");
        assert!(message.contains(field), "{spec}: {message}");
    }
    let none: i64 = c.query_one("SELECT count(*) FROM pgshot.schedules", &[]).unwrap().get(0);
    assert_eq!(none, 0, "a refused schedule writes nothing");

    // 9:00 in New York is 14:00 UTC the day before the clocks change (2030-03-10) and 13:00 after.
    let before = create(
        &mut c,
        json!({"name": "ny", "url": "https://example.com", "schedule": "0 9 * * *",
                                         "timezone": "America/New_York", "startsAt": "2030-03-08T15:00:00Z"}),
    );
    assert_eq!(before["nextExecutionAt"], "2030-03-09T14:00:00Z", "{before}");
    let after = create(
        &mut c,
        json!({"name": "ny", "url": "https://example.com", "schedule": "0 9 * * *",
                                        "timezone": "America/New_York", "startsAt": "2030-03-09T15:00:00Z"}),
    );
    assert_eq!(after["nextExecutionAt"], "2030-03-10T13:00:00Z", "{after}");
    // 2:30 does not happen that night: the run is at the first minute after the gap, 3:00 EDT.
    let gap = create(
        &mut c,
        json!({"name": "gap", "url": "https://example.com", "schedule": "30 2 * * *",
                                      "timezone": "America/New_York", "startsAt": "2030-03-10T05:00:00Z"}),
    );
    assert_eq!(gap["nextExecutionAt"], "2030-03-10T07:00:00Z", "{gap}");

    // endsAt: a window with no due time in it is COMPLETED at once; one that ends before the next
    // due time completes at the run that was due.
    let over = create(
        &mut c,
        json!({"name": "o", "url": "https://example.com", "schedule": "@hourly",
                                       "startsAt": "2030-01-01T00:10:00Z", "endsAt": "2030-01-01T00:50:00Z"}),
    );
    assert_eq!((over["status"].as_str(), over.get("nextExecutionAt")), (Some("COMPLETED"), None), "{over}");
    let ending = create(&mut c, json!({"name": "e", "url": "https://example.com", "schedule": "@hourly"}));
    let id = ending["id"].as_str().unwrap();
    c.execute(
        "UPDATE pgshot.schedules SET next_run_at = now() - interval '1 second',
                spec = spec || jsonb_build_object('endsAt', pgshot.timestamp_json(now() + interval '1 minute'))
         WHERE id = $1",
        &[&id],
    )
    .unwrap();
    assert_eq!(c.query_one("SELECT screenshot_schedule_tick(10)", &[]).unwrap().get::<_, i32>(0), 1);
    let done: Value = c.query_one("SELECT screenshot_schedule($1)", &[&id]).unwrap().get(0);
    assert_eq!((done["status"].as_str(), done["executionCount"].as_i64()), (Some("COMPLETED"), Some(1)), "{done}");

    // Roles: another app role's schedule does not exist for this one, in every operation.
    // Roles are the cluster's: named after this test's database.
    let db: String = c.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    let (a, b) = (format!("{db}_a"), format!("{db}_b"));
    let app: String = c.query_one("SELECT pgshot.role('app')::text", &[]).unwrap().get(0);
    c.batch_execute(&format!("CREATE ROLE {a}; CREATE ROLE {b}; GRANT \"{app}\" TO {a}, {b}")).unwrap();
    c.batch_execute(&format!("SET ROLE {a}")).unwrap();
    let mine = create(&mut c, json!({"name": "a's", "url": "https://example.com", "schedule": "@daily"}));
    let mine = mine["id"].as_str().unwrap().to_string();
    c.batch_execute(&format!("RESET ROLE; SET ROLE {b}")).unwrap();
    for call in [
        "SELECT screenshot_schedule($1)",
        "SELECT screenshot_schedule_pause($1)",
        "SELECT screenshot_schedule_trigger($1)",
        "SELECT screenshot_schedule_history($1)",
        "SELECT screenshot_schedule_delete($1)::text",
    ] {
        assert_eq!(sqlstate(c.query_one(call, &[&mine])), "P0002", "{call}");
    }
    let listed: Value = c.query_one("SELECT screenshot_schedules()", &[]).unwrap().get(0);
    assert_eq!(listed["total"], 0, "{listed}");
    c.batch_execute(&format!("RESET ROLE; SET ROLE {a}")).unwrap();
    let listed: Value = c.query_one("SELECT screenshot_schedules()", &[]).unwrap().get(0);
    assert_eq!(listed["total"], 1, "{listed}");
    c.batch_execute("RESET ROLE").unwrap();
}

#[test]
fn a_schedule_every_minute_runs_once_a_minute_with_two_workers() {
    let site = Site::start();
    let (mut c, url) = cluster().fresh_local_db(&[]);
    let s = create(
        &mut c,
        json!({"name": "minutely", "url": site.url("/plain"), "schedule": "* * * * *",
                                    "options": {"viewport": {"width": 400, "height": 300}}}),
    );
    let id = s["id"].as_str().unwrap().to_string();
    // Both tick five times a second: their ticks meet at every due time.
    let env = [private(), vec![("PGSHOT_SCHEDULE_INTERVAL_MS", "200".into())]].concat();
    let a = WorkerProcess::start(&url, "sched-a", &env);
    let b = WorkerProcess::start(&url, "sched-b", &env);
    let logs = || format!("{}\n{}", a.log(), b.log());
    let h = wait_runs_ended(&mut c, &id, 2, Duration::from_secs(150), &logs);
    let runs: Vec<(String, String, bool)> = c
        .query(
            "SELECT pgshot.timestamp_json(r.due_at), j.status, r.triggered FROM pgshot.schedule_runs r
             JOIN pgshot.jobs j ON j.id = r.job_id WHERE r.schedule_id = $1 ORDER BY r.due_at",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(runs.len() >= 2, "{runs:?}");
    let minutes: Vec<&str> = runs.iter().map(|(due, _, _)| due.as_str()).collect();
    let mut distinct = minutes.clone();
    distinct.dedup();
    assert_eq!(distinct, minutes, "one run per due time: {runs:?}\n{h}");
    assert!(minutes.iter().all(|m| m.ends_with(":00Z")), "on the minute: {minutes:?}");
    let first = minutes[0];
    let second = minutes[1];
    let gap: f64 = c
        .query_one(
            "SELECT extract(epoch FROM $2::text::timestamptz - $1::text::timestamptz)::float8",
            &[&first, &second],
        )
        .unwrap()
        .get(0);
    assert_eq!(gap, 60.0, "{runs:?}");
    assert!(runs.iter().take(2).all(|(_, status, triggered)| status == "COMPLETED" && !triggered), "{runs:?}");
    let schedule: Value = c.query_one("SELECT screenshot_schedule($1)", &[&id]).unwrap().get(0);
    assert!(schedule["successCount"].as_i64().unwrap() >= 2, "{schedule}");
}

#[test]
fn a_failing_schedule_alerts_and_pauses_itself_after_its_failures() {
    let receiver = Receiver::start();
    let (mut c, url) = cluster().fresh_local_db(&["pgshot.retry_backoff = 0"]);
    let s = create(
        &mut c,
        json!({"name": "down", "url": format!("http://127.0.0.1:{}/", closed_port()), "schedule": "@yearly",
               "options": {"maxAttempts": 1}, "autoPauseAfterFailures": 2, "alertOnFailure": true,
               "webhookUrl": receiver.url("/failed"), "webhookSecret": "whsec_c2NoZWR1bGUtZmFpbHVyZXMtc2VjcmV0"}),
    );
    let id = s["id"].as_str().unwrap().to_string();
    let worker = WorkerProcess::start(&url, "sched-failing", &private());
    let logs = || worker.log();
    for n in 1..=2 {
        let triggered: Value = c.query_one("SELECT screenshot_schedule_trigger($1)", &[&id]).unwrap().get(0);
        assert_eq!(triggered["executionCount"], n);
        wait_runs_ended(&mut c, &id, n as usize, Duration::from_secs(60), &logs);
    }
    let paused: Value = c.query_one("SELECT screenshot_schedule($1)", &[&id]).unwrap().get(0);
    assert_eq!(paused["status"], "PAUSED", "{paused}");
    assert_eq!((paused["failureCount"].as_i64(), paused["consecutiveFailures"].as_i64()), (Some(2), Some(2)));
    let reason = paused["pausedReason"].as_str().unwrap();
    assert!(reason.contains("2 failed runs") && reason.contains("URL_UNREACHABLE"), "{reason}");
    let h = history(&mut c, &id);
    assert!(
        h["executions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "FAILED" && e["errorCode"] == "URL_UNREACHABLE"),
        "{h}"
    );
    let alerts = receiver.wait_for(2, Duration::from_secs(30));
    for alert in &alerts {
        let body = alert.json();
        assert_eq!((body["event"].as_str(), body["scheduleId"].as_str()), (Some("SCHEDULE_FAILED"), Some(id.as_str())));
        assert_eq!(body["data"]["errorCode"], "URL_UNREACHABLE", "{body}");
        assert!(alert.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
    }
    // Resuming starts over: the failures in a row are forgotten.
    let resumed: Value = c.query_one("SELECT screenshot_schedule_resume($1)", &[&id]).unwrap().get(0);
    assert_eq!((resumed["status"].as_str(), resumed["consecutiveFailures"].as_i64()), (Some("ACTIVE"), Some(0)));
    assert!(resumed.get("pausedReason").is_none(), "{resumed}");
}

struct Rest {
    api: ApiProcess,
    key: String,
}

impl Rest {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.key, method, path, body)
    }

    fn call_as(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = ureq::request(method, &self.api.url(path)).set("X-API-Key", key);
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    fn wait_executions(&self, id: &str, n: usize, logs: &dyn Fn() -> String) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, h) = self.call("GET", &format!("/v1/schedules/{id}/history"), None);
            assert_eq!(status, 200, "{h}");
            let ended = h["executions"].as_array().unwrap().iter().filter(|e| e["status"] == "COMPLETED").count();
            if ended >= n {
                return h;
            }
            assert!(Instant::now() < deadline, "{h}\n{}", logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the vendor's Python SDK (allscreenshots_sdk 2.0.0, pydantic strict models) demands of a
/// ScheduleResponse: each required field present with its strict type, each optional one of its
/// type when present; `options` an object of objects.
fn assert_python_schedule_response(s: &Value) {
    let is = |k: &str, t: fn(&Value) -> bool| assert!(s.get(k).is_some_and(t), "{k} in {s}");
    let may = |k: &str, t: fn(&Value) -> bool| assert!(s.get(k).is_none_or(|v| v.is_null() || t(v)), "{k} in {s}");
    for k in ["createdAt", "id", "name", "schedule", "scheduleDescription", "status", "timezone", "updatedAt", "url"] {
        is(k, Value::is_string);
    }
    for k in ["alertOnFailure", "onlyOnChange"] {
        is(k, Value::is_boolean);
    }
    for k in ["consecutiveFailures", "executionCount", "failureCount", "retentionDays", "successCount"] {
        is(k, Value::is_i64);
    }
    may("autoPauseAfterFailures", Value::is_i64);
    may("diffThreshold", Value::is_number);
    for k in ["endsAt", "startsAt", "lastExecutedAt", "nextExecutionAt", "webhookUrl"] {
        may(k, Value::is_string);
    }
    may("destinations", |v| {
        v.as_array().is_some_and(|d| d.iter().all(|d| d["type"].is_string() && d["url"].is_string()))
    });
    may("options", |v| v.as_object().is_some_and(|o| o.values().all(Value::is_object)));
}

/// ScheduleHistoryResponse and its ScheduleExecutionResponse, as the same SDK reads them.
fn assert_python_history_response(h: &Value) {
    assert!(h["scheduleId"].is_string() && h["totalExecutions"].is_i64(), "{h}");
    for e in h["executions"].as_array().expect("executions") {
        assert!(e["executedAt"].is_string() && e["id"].is_string() && e["status"].is_string(), "{e}");
        let may = |k: &str, t: fn(&Value) -> bool| assert!(e.get(k).is_none_or(|v| v.is_null() || t(v)), "{k} in {e}");
        may("changed", Value::is_boolean);
        may("diffScore", Value::is_number);
        for k in ["errorCode", "errorMessage", "expiresAt", "resultUrl", "runId", "storageUrl", "url"] {
            may(k, Value::is_string);
        }
        may("fileSize", Value::is_i64);
        may("renderTimeMs", Value::is_i64);
        may("outputs", |v| v.as_object().is_some_and(|o| o.values().all(Value::is_object)));
        may("deliveries", |v| v.as_array().is_some_and(|d| d.iter().all(Value::is_object)));
    }
}

#[test]
fn the_vendor_sdks_schedule_calls_work_unchanged() {
    let site = Site::start();
    let (_c, url) = cluster().fresh_local_db(&[]);
    let key = create_key(&url, "sdk-schedules");
    let other = create_key(&url, "someone-else");
    let rest = Rest { api: ApiProcess::start(&url, &private()), key };
    let worker = WorkerProcess::start(&url, "sched-sdk", &private());
    let logs = || format!("{}\n{}", worker.log(), rest.api.log());

    // The Python SDK's body for CreateScheduleRequest(name=..., url=..., schedule="0 9 * * *",
    // timezone="America/New_York", options=ScheduleScreenshotOptions(full_page=True,
    // viewport=ViewportConfig(width=800, height=600))).to_dict(): pydantic sends every default.
    let python = json!({
        "alertOnFailure": false, "name": "Homepage monitor", "onlyOnChange": false,
        "options": {"blockAds": true, "blockCookieBanners": true, "blockLevel": "none", "blockPopups": true,
                    "darkMode": false, "delay": 0, "format": "png", "freezeFixed": true, "fullPage": true,
                    "fullPageMode": "stitch", "maxSections": 50, "quality": 80, "scrollInterval": 150,
                    "stealthMode": false, "timeout": 30000, "viewport": {"width": 800, "height": 600},
                    "waitUntil": "domcontentloaded"},
        "retentionDays": 30, "schedule": "0 9 * * *", "timezone": "America/New_York", "url": site.url("/plain")
    });
    // The TypeScript SDK's documented CreateScheduleRequest (sdk/src/models/schedule.ts).
    let typescript = json!({"name": "Daily homepage capture", "url": site.url("/box"), "schedule": "0 9 * * *",
                            "timezone": "America/New_York", "options": {"device": "Desktop HD", "fullPage": true}});
    let mut created = Vec::new();
    for body in [python, typescript] {
        let (status, s) = rest.call("POST", "/v1/schedules", Some(body.clone()));
        assert_eq!(status, 201, "{s}");
        assert_python_schedule_response(&s);
        assert_eq!((s["status"].as_str(), s["timezone"].as_str()), (Some("ACTIVE"), Some("America/New_York")));
        assert_eq!(s["scheduleDescription"], "At 09:00.");
        assert_eq!(s["captureOptions"]["fullPage"], true, "{s}");
        created.push(s["id"].as_str().unwrap().to_string());
    }
    let id = created[0].clone();
    let (status, listed) = rest.call("GET", "/v1/schedules", None);
    assert_eq!((status, listed["total"].as_i64()), (200, Some(2)), "{listed}");
    listed["schedules"].as_array().unwrap().iter().for_each(assert_python_schedule_response);

    // UpdateScheduleRequest(name=..., schedule="@daily", ends_at=None set explicitly).to_dict().
    let (status, updated) = rest.call(
        "PUT",
        &format!("/v1/schedules/{id}"),
        Some(json!({"name": "Renamed", "schedule": "@daily", "endsAt": null})),
    );
    assert_eq!(status, 200, "{updated}");
    assert_python_schedule_response(&updated);
    assert_eq!((updated["name"].as_str(), updated["schedule"].as_str()), (Some("Renamed"), Some("@daily")));
    assert_eq!(updated["captureOptions"]["viewport"]["width"], 800, "the options are kept: {updated}");
    for (op, status_after) in [("pause", "PAUSED"), ("resume", "ACTIVE")] {
        let (status, s) = rest.call("POST", &format!("/v1/schedules/{id}/{op}"), None);
        assert_eq!((status, s["status"].as_str()), (200, Some(status_after)), "{s}");
        assert_python_schedule_response(&s);
    }
    let (status, triggered) = rest.call("POST", &format!("/v1/schedules/{id}/trigger"), None);
    assert_eq!((status, triggered["executionCount"].as_i64()), (200, Some(1)), "{triggered}");
    let h = rest.wait_executions(&id, 1, &logs);
    assert_python_history_response(&h);
    let run = &h["executions"][0];
    assert_eq!((run["status"].as_str(), run["triggered"].as_bool()), (Some("COMPLETED"), Some(true)), "{run}");
    let result = ureq::get(run["resultUrl"].as_str().unwrap()).set("X-API-Key", &rest.key).call().unwrap();
    assert_eq!(result.header("Content-Type"), Some("image/png"));
    let (status, limited) = rest.call("GET", &format!("/v1/schedules/{id}/history?limit=1"), None);
    assert_eq!((status, limited["executions"].as_array().map(Vec::len)), (200, Some(1)), "{limited}");

    // The official Rust SDK, unchanged: every schedule call.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use allscreenshots_sdk::{AllscreenshotsClient, CreateScheduleRequest, UpdateScheduleRequest};
        let client = AllscreenshotsClient::builder().api_key(&rest.key).base_url(&rest.api.base).build().unwrap();
        let made = client
            .create_schedule(
                &CreateScheduleRequest::new("Rust", site.url("/plain"), "0 9 * * 1-5").with_timezone("Europe/Paris"),
            )
            .await
            .unwrap();
        assert_eq!(made.status, "ACTIVE");
        assert_eq!(client.get_schedule(&made.id).await.unwrap().name, "Rust");
        assert_eq!(client.list_schedules().await.unwrap().total, 3);
        let renamed = client
            .update_schedule(
                &made.id,
                &UpdateScheduleRequest { name: Some("Rust, renamed".into()), ..Default::default() },
            )
            .await
            .unwrap();
        assert_eq!(renamed.name, "Rust, renamed");
        assert_eq!(client.pause_schedule(&made.id).await.unwrap().status, "PAUSED");
        assert_eq!(client.resume_schedule(&made.id).await.unwrap().status, "ACTIVE");
        assert_eq!(client.trigger_schedule(&made.id).await.unwrap().execution_count, Some(1));
        let history = client.get_schedule_history(&made.id, Some(10)).await.unwrap();
        assert_eq!((history.schedule_id.as_str(), history.total_executions), (made.id.as_str(), 1));
        client.delete_schedule(&made.id).await.unwrap();
        assert!(client.get_schedule(&made.id).await.is_err());
    });

    // Another key's schedule is not found, whatever is asked of it.
    for (method, path, body) in [
        ("GET", format!("/v1/schedules/{id}"), None),
        ("PUT", format!("/v1/schedules/{id}"), Some(json!({"name": "mine now"}))),
        ("POST", format!("/v1/schedules/{id}/pause"), None),
        ("POST", format!("/v1/schedules/{id}/trigger"), None),
        ("GET", format!("/v1/schedules/{id}/history"), None),
        ("DELETE", format!("/v1/schedules/{id}"), None),
    ] {
        let (status, e) = rest.call_as(&other, method, &path, body);
        assert_eq!((status, e["error"]["code"].as_str()), (404, Some("NOT_FOUND")), "{method} {path}: {e}");
    }
    let (_, theirs) = rest.call_as(&other, "GET", "/v1/schedules", None);
    assert_eq!(theirs["total"], 0, "{theirs}");

    // Bad input: 400 naming the field, and nothing written.
    for (body, field) in [
        (json!({"name": "x", "url": site.url("/plain"), "schedule": "61 * * * *"}), "schedule"),
        (
            json!({"name": "x", "url": site.url("/plain"), "schedule": "@daily", "timezone": "Atlantis/Capital"}),
            "timezone",
        ),
        (json!({"name": "x", "url": site.url("/plain"), "schedule": "@daily", "diffThreshold": -0.1}), "diffThreshold"),
        (json!({"url": site.url("/plain"), "schedule": "@daily"}), "name"),
        (json!({"name": "x", "url": site.url("/plain"), "schedule": "@daily", "every": "day"}), "every"),
    ] {
        let (status, e) = rest.call("POST", "/v1/schedules", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
    }
    let (status, e) = rest.call("PUT", &format!("/v1/schedules/{id}"), Some(json!({"retentionDays": 400})));
    assert_eq!((status, e["error"]["details"]["field"].as_str()), (400, Some("retentionDays")), "{e}");
    let (_, listed) = rest.call("GET", "/v1/schedules", None);
    assert_eq!(listed["total"], 2, "{listed}");
    let (_, kept) = rest.call("GET", &format!("/v1/schedules/{id}"), None);
    assert_eq!(kept["retentionDays"], 30, "a refused update changes nothing: {kept}");

    let (status, gone) = rest.call("DELETE", &format!("/v1/schedules/{}", created[1]), None);
    assert_eq!(status, 204, "{gone}");
    let (status, _) = rest.call("GET", &format!("/v1/schedules/{}", created[1]), None);
    assert_eq!(status, 404);
}

#[test]
fn only_on_change_delivers_a_changed_page_with_its_fraction_and_diff_image() {
    let site = Site::start();
    let receiver = Receiver::start();
    let (_c, url) = cluster().fresh_local_db(&["pgshot.webhook_retry_schedule = '0,1,1'"]);
    let rest = Rest { api: ApiProcess::start(&url, &private()), key: create_key(&url, "changes") };
    let worker = WorkerProcess::start(&url, "sched-changes", &private());
    let logs = || format!("{}\n{}", worker.log(), rest.api.log());
    let dir = std::env::temp_dir().join(format!("pgshot-changes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("page.html");
    let content = |text: &str, box_height: u32| {
        format!("<h1 style=\"font:32px sans-serif\">{text}</h1><div style=\"width:300px;height:{box_height}px;background:#2040a0\"></div>")
    };
    std::fs::write(&file, content("Prices", 40)).unwrap();
    let page = site.url(&format!("/from-file?file={}", file.display()));
    let (status, s) = rest.call(
        "POST",
        "/v1/schedules",
        Some(json!({"name": "watch", "url": page, "schedule": "0 0 1 1 *", "onlyOnChange": true, "diffThreshold": 0.01,
                    "options": {"viewport": {"width": 400, "height": 300}},
                    "webhookUrl": receiver.url("/changed"), "webhookSecret": "whsec_b25seS1vbi1jaGFuZ2Utc2VjcmV0LXRlc3Q="})),
    );
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let run = |n: usize| {
        let (status, _) = rest.call("POST", &format!("/v1/schedules/{id}/trigger"), None);
        assert_eq!(status, 200);
        let h = rest.wait_executions(&id, n, &logs);
        h["executions"][0].clone()
    };

    // The first capture has nothing to compare with: delivered.
    let first = run(1);
    assert!(first.get("changed").is_none() && first.get("diffScore").is_none(), "{first}");
    assert_eq!(receiver.wait_for(1, Duration::from_secs(30)).len(), 1);
    // The same page again: unchanged, scored 0, not delivered.
    let same = run(2);
    assert_eq!((same["changed"].as_bool(), same["diffScore"].as_f64()), (Some(false), Some(0.0)), "{same}");
    // The page changed: the fraction, the diff image, and a delivery.
    std::fs::write(&file, content("Prices went up", 160)).unwrap();
    let changed = run(3);
    assert_eq!(changed["changed"], true, "{changed}");
    let score = changed["diffScore"].as_f64().unwrap();
    // The box grew by 300 x 120 of 400 x 300 pixels (30%), and the heading's longer text too.
    assert!((0.3..0.6).contains(&score), "{changed}");
    let diff = ureq::get(changed["diffUrl"].as_str().unwrap()).set("X-API-Key", &rest.key).call().unwrap();
    assert_eq!(diff.header("Content-Type"), Some("image/png"));
    let mut png = Vec::new();
    std::io::Read::read_to_end(&mut diff.into_reader(), &mut png).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let info = decoder.read_info().unwrap();
    assert_eq!((info.info().width, info.info().height), (400, 300));

    let delivered = receiver.wait_for(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let delivered_now = receiver.received();
    assert_eq!(
        delivered_now.len(),
        2,
        "the unchanged run is not delivered: {:?}",
        delivered_now.iter().map(|r| r.json()).collect::<Vec<_>>()
    );
    let bodies: Vec<Value> = delivered.iter().map(|r| r.json()).collect();
    assert!(bodies.iter().all(|b| b["event"] == "SCHEDULE_CAPTURED" && b["scheduleId"] == id.as_str()), "{bodies:?}");
    assert_eq!(bodies[0]["captureId"], first["id"], "{bodies:?}");
    assert_eq!(bodies[1]["captureId"], changed["id"], "{bodies:?}");
    assert_eq!(bodies[1]["data"]["changed"], true);
    assert_eq!(bodies[1]["data"]["diffScore"].as_f64(), Some(score));
    assert!(bodies.iter().all(|b| b["data"].get("storageKey").is_none()), "{bodies:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
