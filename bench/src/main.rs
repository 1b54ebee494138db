//! `make bench`: the queue alone (SQL API driven directly) and rendering (pgshot end to end
//! against a bare chromiumoxide loop on a warm tab and the naive `chromium --screenshot` per page),
//! all on this machine in one run. Prints a table and rewrites BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pgshot_tests::site::Site;
use pgshot_tests::worker_process::WorkerProcess;
use pgshot_tests::{cluster, connect_url, Client};
use serde_json::{json, Value};

struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn add(&mut self, section: &str, what: &str, value: String) {
        println!("{section:<10} {what:<58} {value}");
        self.rows.push((section.into(), what.into(), value));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let mut report = Report { rows: Vec::new() };
    println!("{:<10} {:<58} value", "section", "measure");
    queue_alone(&mut report, scale);
    rendering(&mut report, scale);
    write_markdown(&report, quick);
}

fn fresh() -> (Client, String) {
    cluster().fresh_local_db(&[])
}

fn queue_alone(report: &mut Report, scale: usize) {
    let s = "queue";
    // Enqueue, one statement per job.
    let (mut c, _) = fresh();
    let n = 5000 / scale;
    let t = Instant::now();
    for i in 0..n {
        c.query_one("SELECT screenshot_enqueue($1)", &[&format!("https://example.com/{i}")]).unwrap();
    }
    report.add(
        s,
        &format!("enqueue, single statements ({n} jobs)"),
        format!("{:.0} jobs/s", n as f64 / t.elapsed().as_secs_f64()),
    );

    // Enqueue, batched.
    let (mut c, _) = fresh();
    let batches = 20 / scale.min(10);
    let t = Instant::now();
    for b in 0..batches {
        let requests: Vec<Value> = (0..1000).map(|i| json!({"url": format!("https://example.com/{b}/{i}")})).collect();
        c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
    }
    let jobs = batches * 1000;
    report.add(
        s,
        &format!("enqueue, bulk of 1000 ({jobs} jobs)"),
        format!("{:.0} jobs/s", jobs as f64 / t.elapsed().as_secs_f64()),
    );

    // Claim + complete with 1, 2, 4, 8 workers.
    for workers in [1, 2, 4, 8] {
        let (mut c, url) = fresh();
        let total = 20_000 / scale;
        for b in 0..total / 1000 {
            let requests: Vec<Value> =
                (0..1000).map(|i| json!({"url": format!("https://example.com/{b}/{i}")})).collect();
            c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
        }
        let barrier = Arc::new(Barrier::new(workers + 1));
        let threads: Vec<_> = (0..workers)
            .map(|w| {
                let url = url.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut c = connect_url(&url);
                    let claim = c.prepare("SELECT id, attempt FROM screenshot_claim($1, 10, '5 minutes')").unwrap();
                    let complete = c
                        .prepare(
                            "SELECT screenshot_complete($1, $2, $3, '{}', \
                             ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x00'::bytea, '{}')::pgshot.output])",
                        )
                        .unwrap();
                    let worker = format!("bench-{w}");
                    barrier.wait();
                    loop {
                        let batch = c.query(&claim, &[&worker]).unwrap();
                        if batch.is_empty() {
                            return;
                        }
                        for row in batch {
                            let (id, attempt): (String, i32) = (row.get(0), row.get(1));
                            c.execute(&complete, &[&id, &worker, &attempt]).unwrap();
                        }
                    }
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for th in threads {
            th.join().unwrap();
        }
        let rate = total as f64 / t.elapsed().as_secs_f64();
        report.add(
            s,
            &format!("claim+complete, {workers} worker(s), {total} jobs, claims of 10"),
            format!("{rate:.0} jobs/s"),
        );
        if workers == 8 {
            c.batch_execute("SELECT pg_stat_force_next_flush()").ok();
            std::thread::sleep(Duration::from_millis(600));
            let row = c
                .query_one(
                    "SELECT pg_size_pretty(pg_total_relation_size('pgshot.jobs')), n_live_tup, n_dead_tup \
                     FROM pg_stat_user_tables WHERE relid = 'pgshot.jobs'::regclass",
                    &[],
                )
                .unwrap();
            report.add(
                s,
                "pgshot.jobs after the 8-worker run (size, live, dead tuples)",
                format!("{}, {}, {}", row.get::<_, String>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)),
            );
        }
    }

    // Enqueue-to-claim latency through LISTEN/NOTIFY, at a low and a moderate arrival rate.
    for rate in [20.0, 200.0] {
        let (_c, url) = fresh();
        let n = (if rate < 100.0 { 200 } else { 1000 }) / scale;
        let listener_url = url.clone();
        let ready = Arc::new(Barrier::new(2));
        let ready2 = ready.clone();
        let claimer = std::thread::spawn(move || {
            let mut l = connect_url(&listener_url);
            l.batch_execute("LISTEN pgshot_jobs").unwrap();
            let mut c = connect_url(&listener_url);
            let claim = c
                .prepare(
                    "SELECT (extract(epoch FROM (clock_timestamp() - created_at)) * 1000)::float8 \
                     FROM screenshot_claim('latency', 100, '5 minutes')",
                )
                .unwrap();
            ready2.wait();
            let mut latencies = Vec::new();
            while latencies.len() < n {
                // A wake-up, then claim everything that is there.
                let mut it = l.notifications();
                let _ = postgres::fallible_iterator::FallibleIterator::next(
                    &mut it.timeout_iter(Duration::from_millis(200)),
                );
                drop(it);
                for row in c.query(&claim, &[]).unwrap() {
                    latencies.push(row.get::<_, f64>(0));
                }
            }
            latencies
        });
        ready.wait();
        let mut c = connect_url(&url);
        let gap = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        for i in 0..n {
            let due = start + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            c.query_one("SELECT screenshot_enqueue($1)", &[&format!("https://example.com/{i}")]).unwrap();
        }
        let lat = sorted(claimer.join().unwrap());
        report.add(
            s,
            &format!("enqueue-to-claim via LISTEN at {rate:.0} jobs/s ({n} jobs): p50 / p99"),
            format!("{:.2} ms / {:.2} ms", percentile(&lat, 0.5), percentile(&lat, 0.99)),
        );
    }
}

fn rendering(report: &mut Report, scale: usize) {
    let s = "render";
    let site = Site::start();
    let page = site.url("/plain");

    // The ceiling: a bare chromiumoxide loop on a warm browser, one reused tab.
    let n = 40 / scale.min(4);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let bare = runtime.block_on(bare_loop(&page, n));
    report.add(
        s,
        &format!("bare chromiumoxide, warm tab, navigate+PNG 1920x1080 ({n} pages): p50"),
        format!("{:.0} ms ({:.0} pages/min)", percentile(&bare, 0.5), 60_000.0 / percentile(&bare, 0.5)),
    );

    // The naive way: a new Chromium per page.
    let m = 6 / scale.min(3);
    let mut cli = Vec::new();
    for i in 0..m {
        let out = std::env::temp_dir().join(format!("pgshot-bench-{i}.png"));
        let t = Instant::now();
        let status = Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args([
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--hide-scrollbars",
                "--window-size=1920,1080",
            ])
            .arg(format!("--user-data-dir={}", std::env::temp_dir().join(format!("pgshot-bench-cli-{i}")).display()))
            .arg(format!("--screenshot={}", out.display()))
            .arg(&page)
            .output()
            .expect("run chromium");
        assert!(status.status.success(), "chromium --screenshot failed");
        cli.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cli = sorted(cli);
    report.add(
        s,
        &format!("chromium --headless --screenshot per page ({m} pages): p50"),
        format!("{:.0} ms ({:.0} pages/min)", percentile(&cli, 0.5), 60_000.0 / percentile(&cli, 0.5)),
    );

    // pgshot end to end: one job at a time (latency), then a batch per concurrency (throughput).
    let (mut c, url) = fresh();
    let env = |conc: u32| {
        vec![("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string()), ("PGSHOT_WORKER_CONCURRENCY", conc.to_string())]
    };
    let worker = WorkerProcess::start(&url, "bench-seq", &env(1));
    let warm = enqueue_and_wait(&mut c, &page);
    assert!(warm.is_some(), "{}", worker.log());
    let mut e2e = Vec::new();
    for _ in 0..n {
        e2e.push(enqueue_and_wait(&mut c, &page).expect("completed"));
    }
    drop(worker);
    let e2e = sorted(e2e);
    let p50 = percentile(&e2e, 0.5);
    report.add(
        s,
        &format!("pgshot enqueue -> COMPLETED, one at a time ({n} jobs): p50 / p95"),
        format!("{p50:.0} ms / {:.0} ms", percentile(&e2e, 0.95)),
    );
    report.add(s, "pgshot p50 / bare warm-tab p50", format!("{:.2}x", p50 / percentile(&bare, 0.5)));
    report.add(s, "naive CLI p50 / pgshot p50", format!("{:.1}x", percentile(&cli, 0.5) / p50));

    for conc in [1u32, 2, 4] {
        let (mut c, url) = fresh();
        let jobs = (60 / scale.min(6)) as i64;
        let worker = WorkerProcess::start(&url, &format!("bench-c{conc}"), &env(conc));
        enqueue_and_wait(&mut c, &page).expect("warm-up");
        let requests: Vec<Value> = (0..jobs).map(|i| json!({"url": format!("{page}?n={i}")})).collect();
        let t = Instant::now();
        c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
        let mut peak_chromium_kb = 0;
        loop {
            let done: i64 = c
                .query_one("SELECT count(*) FROM pgshot.jobs WHERE status IN ('COMPLETED', 'FAILED')", &[])
                .unwrap()
                .get(0);
            peak_chromium_kb = peak_chromium_kb.max(rss_kb(&pgshot_tests::worker_process::descendants(worker.pid())));
            if done > jobs {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let elapsed = t.elapsed().as_secs_f64();
        let lat: Vec<f64> = c
            .query(
                "SELECT (extract(epoch FROM completed_at - created_at) * 1000)::float8 FROM pgshot.jobs \
                 WHERE status = 'COMPLETED' AND url LIKE '%?n=%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, f64>(0))
            .collect();
        let lat = sorted(lat);
        let worker_kb = status_kb(worker.pid(), "VmHWM:");
        report.add(
            s,
            &format!("pgshot, concurrency {conc}, {jobs} jobs at once: throughput"),
            format!("{:.0} screenshots/min", jobs as f64 * 60.0 / elapsed),
        );
        report.add(
            s,
            &format!("pgshot, concurrency {conc}: enqueue -> COMPLETED p50 / p95 (queueing included)"),
            format!("{:.0} ms / {:.0} ms", percentile(&lat, 0.5), percentile(&lat, 0.95)),
        );
        report.add(
            s,
            &format!("pgshot, concurrency {conc}: peak worker RSS / peak Chromium RSS (sum)"),
            format!("{} MiB / {} MiB", worker_kb / 1024, peak_chromium_kb / 1024),
        );
    }
}

/// Enqueues one job and polls until it completes; its enqueue-to-completion time in ms.
fn enqueue_and_wait(c: &mut Client, url: &str) -> Option<f64> {
    let id: String = c.query_one("SELECT screenshot_enqueue($1, '{\"maxAttempts\": 1}')", &[&url]).unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let row = c
            .query_one(
                "SELECT status, (extract(epoch FROM completed_at - created_at) * 1000)::float8 FROM pgshot.jobs WHERE id = $1",
                &[&id],
            )
            .unwrap();
        match row.get::<_, String>(0).as_str() {
            "COMPLETED" => return row.get(1),
            "FAILED" | "CANCELLED" => return None,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

async fn bare_loop(url: &str, n: usize) -> Vec<f64> {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    use chromiumoxide::cdp::browser_protocol::page::{
        CaptureScreenshotFormat, CaptureScreenshotParams, NavigateParams,
    };
    use futures::StreamExt;

    let dir = std::env::temp_dir().join(format!("pgshot-bench-bare-{}", std::process::id()));
    let config = chromiumoxide::BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        .user_data_dir(&dir)
        .viewport(None)
        .no_sandbox()
        .args([
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ])
        .build()
        .unwrap();
    let (mut browser, mut handler) = chromiumoxide::Browser::launch(config).await.unwrap();
    let poll = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(SetDeviceMetricsOverrideParams::new(1920, 1080, 1.0, false)).await.unwrap();
    let mut times = Vec::new();
    for i in 0..=n {
        let t = Instant::now();
        page.execute(NavigateParams::new(format!("{url}?bare={i}"))).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        let shot = page
            .execute(CaptureScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build())
            .await
            .unwrap();
        assert!(!AsRef::<str>::as_ref(&shot.result.data).is_empty());
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let _ = browser.close().await;
    let _ = browser.wait().await;
    poll.abort();
    let _ = std::fs::remove_dir_all(dir);
    sorted(times)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter().map(|p| status_kb(*p, "VmRSS:")).sum()
}

/// What the numbers mean against the targets of issue 6, and where the time goes.
const ANALYSIS: &str = "
## Against the targets

- **Enqueue-to-claim p50 under 5 ms: met** (about 1.5-1.9 ms through LISTEN/NOTIFY, p99 under 10 ms).
- **End-to-end p50 within 15 % of the warm-tab ceiling: missed** (about 4x). Where a job's time goes, from
  `RUST_LOG=pgshot_worker=debug` (the worker logs `render phases`): preparing the tab is now 0 ms for
  default requests (tabs are opened ahead with the default viewport); the page load in the job's fresh
  browser context takes 240-330 ms, against 150 ms for navigate *and* capture in the reused tab; the
  capture takes 130-160 ms, as in the ceiling. The difference is per-job isolation: a new context has no
  connection, no cache and a renderer that has not loaded the site yet, and every connection goes
  through the job's egress proxy. The queue itself (claim, heartbeat, complete with the bytes) costs
  about 15-25 ms per job.
- **At least 8x faster than the naive per-page CLI: missed** (about 1.7x): the CLI's 1 s is mostly
  Chromium's start, and pgshot's 0.6 s is mostly the fresh-context load above.
- **Claim+complete throughput against pgmq and graphile-worker: not measured yet.** pgshot's own figure
  is above; each claim and each complete is its own transaction, with fsync on.
- Dead tuples: each job is updated twice (claim, complete); autovacuum keeps the table near its live size.

Not measured yet (issue 6 stays open for them): the same queue workloads through pgmq and
graphile-worker, a 500-job memory run, and charts.
";

fn write_markdown(report: &Report, quick: bool) {
    let text = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = text("sh", &["-c", "free -g | awk '/Mem:/ {print $2}'"]);
    let pg = text("/usr/lib/postgresql/15/bin/postgres", &["--version"]);
    let chromium = text("/usr/bin/chromium", &["--version"]);
    let cpu = text("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    let mut md = String::from("# pgshot benchmarks\n\n");
    let _ = writeln!(
        md,
        "Produced by `make bench` ({}), all measures in one run on one machine: {cores} cores ({}), {mem} GiB, {pg}, {chromium}. \
         Postgres is a local cluster with default durability (fsync and synchronous_commit on). \
         The queue is driven through the SQL API directly (no renderer); rendering uses a small local page at 1920x1080.\n",
        if quick { "`--quick`: a tenth of the work" } else { "full size" },
        cpu.trim()
    );
    md.push_str("| section | measure | value |\n|---|---|---|\n");
    for (section, what, value) in &report.rows {
        let _ = writeln!(md, "| {section} | {what} | {value} |");
    }
    md.push_str(ANALYSIS);
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md"), md).expect("write BENCHMARKS.md");
    println!("\nwrote BENCHMARKS.md");
}
