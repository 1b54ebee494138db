//! `make bench`: the queue alone (pgshot, pgmq and graphile-worker on the same Postgres) and
//! rendering (pgshot end to end against a bare chromiumoxide loop on a warm tab and the naive
//! `chromium --screenshot` per page), all on this machine in one run. Prints a table, draws
//! bench/charts/*.png and rewrites BENCHMARKS.md.

mod charts;
mod corpus;
mod puppeteer;
mod queues;
mod schedules;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pgshot_tests::site::Site;
use pgshot_tests::worker_process::{descendants, WorkerProcess};
use pgshot_tests::{cluster, Client};
use serde_json::{json, Value};

struct Report {
    rows: Vec<(String, String, String)>,
    verdicts: Vec<String>,
}

impl Report {
    fn add(&mut self, section: &str, what: &str, value: String) {
        println!("{section:<10} {what:<66} {value}");
        self.rows.push((section.into(), what.into(), value));
    }

    fn verdict(&mut self, target: &str, met: bool, measured: String) {
        let line = format!("- **{target}: {}** ({measured})", if met { "met" } else { "missed" });
        println!("{line}");
        self.verdicts.push(line);
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `pgshot-bench [--quick] [--corpus DIR] [--only queue|render|memory|schedules|corpus|drain]`. `--only` runs one
/// section and prints it without rewriting BENCHMARKS.md or the charts (for working on it); `drain`
/// is claim+complete alone, pgshot against pgmq.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only =
        args.iter().position(|a| a == "--only").map(|i| args.get(i + 1).expect("--only takes a section").clone());
    if only.as_deref() == Some("drain") {
        queues::drain_only(if quick { 10 } else { 1 });
        return;
    }
    let runs = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let scale = if quick { 10 } else { 1 };
    let mut report = Report { rows: Vec::new(), verdicts: Vec::new() };
    println!("{:<10} {:<66} value", "section", "measure");
    let queues = if runs("queue") { queue_alone(&mut report, scale) } else { Vec::new() };
    let latencies = if runs("render") { rendering(&mut report, scale) } else { Vec::new() };
    if runs("memory") {
        memory_run(&mut report, scale);
    }
    if runs("schedules") {
        schedules::run(&mut report, scale);
    }
    let corpus_table = match corpus::dir_from_args() {
        Some(dir) if runs("corpus") => Some((dir.clone(), corpus::run(&mut report, &dir))),
        None if runs("corpus") => {
            println!("corpus     no corpus: pass --corpus DIR (default ../shared/corpus/dev, not found)");
            None
        }
        _ => None,
    };
    if only.is_some() {
        if let Some((_, table)) = &corpus_table {
            println!("\n{table}");
        }
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts");
    std::fs::create_dir_all(&dir).expect("create bench/charts");
    charts::throughput(&dir.join("throughput.png"), &queues).expect("draw the throughput chart");
    charts::latency(&dir.join("latency.png"), &latencies).expect("draw the latency chart");
    write_markdown(&report, quick, corpus_table.as_ref());
}

fn queue_alone(report: &mut Report, scale: usize) -> Vec<queues::Figures> {
    let s = "queue";
    let figures = queues::measure_all(scale);
    let pgshot = &figures[0];
    for q in &figures {
        let n = q.name;
        report.add(s, &format!("{n}: enqueue, one statement per job"), format!("{:.0} jobs/s", q.enqueue_single));
        report.add(s, &format!("{n}: enqueue, 1000 jobs per statement"), format!("{:.0} jobs/s", q.enqueue_bulk));
        for ((workers, rate), (_, rounds)) in q.throughput.iter().zip(&q.rounds) {
            let value = if rounds.len() > 1 {
                let each: Vec<String> = rounds.iter().map(|r| format!("{r:.0}")).collect();
                format!("{rate:.0} jobs/s (median of {})", each.join(", "))
            } else {
                format!("{rate:.0} jobs/s")
            };
            report.add(s, &format!("{n}: claim+complete, {workers} worker(s), {} jobs", 20_000 / scale), value);
        }
        for (rate, p50, p99) in &q.latency {
            report.add(
                s,
                &format!("{n}: enqueue-to-claim at {rate:.0} jobs/s, p50 / p99"),
                format!("{p50:.2} ms / {p99:.2} ms"),
            );
        }
        report.add(s, &format!("{n}: queue table after the 8-worker run"), q.table.clone());
        if let Some(profile) = &q.profile {
            report.add(s, &format!("{n}: time per job in claim / in complete (1 worker)"), profile.clone());
        }
    }
    for q in &figures[1..] {
        let ratios: Vec<String> = pgshot
            .throughput
            .iter()
            .zip(&q.throughput)
            .map(|((w, mine), (_, theirs))| format!("{w}: {:.2}", mine / theirs))
            .collect();
        report.add(s, &format!("pgshot / {} claim+complete throughput, by workers", q.name), ratios.join(", "));
        if q.rounds.iter().all(|(_, r)| r.len() > 1) {
            for ((w, mine), (_, theirs)) in pgshot.rounds.iter().zip(&q.rounds) {
                let each: Vec<String> = queues::paired_ratios(mine, theirs).iter().map(|r| format!("{r:.2}")).collect();
                report.add(
                    s,
                    &format!("pgshot / {} claim+complete, {w} worker(s), each round", q.name),
                    each.join(", "),
                );
            }
        }
        report.add(
            s,
            &format!("pgshot / {} enqueue rate, single / bulk", q.name),
            format!("{:.2} / {:.2}", pgshot.enqueue_single / q.enqueue_single, pgshot.enqueue_bulk / q.enqueue_bulk),
        );
    }
    // What notifying every completion, and sharing claims between owners, cost.
    let owners = 8;
    let (notified, shared) = queues::variants(scale, owners);
    let rate_at = |w: usize| pgshot.throughput.iter().find(|t| t.0 == w).map_or(f64::NAN, |t| t.1);
    let described = |runs: &[(usize, f64)]| {
        runs.iter().map(|(w, r)| format!("{w}: {r:.0} jobs/s ({:.2}x pgshot)", r / rate_at(*w))).collect::<Vec<_>>()
    };
    report.add(
        s,
        "pgshot with every completion notified (pgshot.notify_all_done), by workers",
        described(&notified).join(", "),
    );
    report.add(
        s,
        &format!("pgshot with the jobs of {owners} owners (fair shares), by workers"),
        described(&shared).join(", "),
    );
    let worst_p50 = pgshot.latency.iter().map(|l| l.1).fold(0.0, f64::max);
    report.verdict("Enqueue-to-claim p50 under 2.5 ms", worst_p50 < 2.5, format!("p50 at most {worst_p50:.2} ms"));
    let fair8 = shared.iter().find(|t| t.0 == 8).map_or(f64::NAN, |t| t.1);
    if let Some(pgmq) = figures.iter().find(|q| q.name == "pgmq") {
        let pgmq8 = pgmq.throughput.iter().find(|t| t.0 == 8).map_or(f64::NAN, |t| t.1);
        report.verdict(
            &format!("Claim+complete with the jobs of {owners} owners, 8 workers, at least 0.9x pgmq's"),
            fair8 >= 0.9 * pgmq8,
            format!("{:.2}x ({fair8:.0} against {pgmq8:.0} jobs/s)", fair8 / pgmq8),
        );
        // The median of the paired ratios: each pgshot run against the pgmq run beside it.
        let ratios: Vec<(usize, f64)> = pgshot
            .rounds
            .iter()
            .zip(&pgmq.rounds)
            .map(|((w, mine), (_, theirs))| (*w, queues::median(&queues::paired_ratios(mine, theirs))))
            .collect();
        let short: Vec<String> = ratios
            .iter()
            .filter(|(w, r)| *r < if *w == 8 { 1.0 } else { 0.9 })
            .map(|(w, r)| format!("{w} workers: {r:.2}x"))
            .collect();
        report.verdict(
            &format!(
                "Claim+complete at least pgmq's at 8 workers and at least 0.9x at every count (median of {} rounds)",
                queues::ROUNDS
            ),
            short.is_empty(),
            if short.is_empty() {
                ratios.iter().map(|(w, r)| format!("{w}: {r:.2}x")).collect::<Vec<_>>().join(", ")
            } else {
                format!("short at {}", short.join(", "))
            },
        );
    }
    // pgmq has its own verdict above (1.0x at 8 workers, 0.9x elsewhere).
    for q in figures[1..].iter().filter(|q| q.name != "pgmq") {
        let behind: Vec<String> = pgshot
            .throughput
            .iter()
            .zip(&q.throughput)
            .filter(|((_, mine), (_, theirs))| mine < theirs)
            .map(|((w, mine), (_, theirs))| format!("{w} workers: {:.2}x", mine / theirs))
            .collect();
        let measured = if behind.is_empty() {
            "at every worker count".to_string()
        } else {
            format!("behind at {}", behind.join(", "))
        };
        report.verdict(&format!("Claim+complete throughput at least {}'s", q.name), behind.is_empty(), measured);
    }
    figures
}

/// One page of the rendering benchmark: a name and a path on the test site.
const PAGES: [(&str, &str); 3] = [("small", "/plain"), ("tall", "/tall"), ("images", "/gallery")];

fn worker_env(concurrency: u32) -> Vec<(&'static str, String)> {
    vec![
        ("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".to_string()),
        ("PGSHOT_WORKER_CONCURRENCY", concurrency.to_string()),
        ("RUST_LOG", "info,pgshot_worker::render=debug,pgshot_worker::jobs=debug,chromiumoxide=error".to_string()),
    ]
}

/// Returns the small page's latencies (ms) per way of rendering, for the chart.
fn rendering(report: &mut Report, scale: usize) -> Vec<(&'static str, Vec<f64>)> {
    let s = "render";
    let site = Site::start();
    let n = 40 / scale.min(4);
    let m = 6 / scale.min(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut chart = Vec::new();
    for (name, path) in PAGES {
        let page = site.url(path);
        // The ceiling: a bare chromiumoxide loop on a warm browser, one reused tab.
        let bare = runtime.block_on(bare_loop(&page, n));
        // puppeteer-core on the same page: a warm tab, a fresh context opened ahead (the isolation
        // pgshot promises), and one created on the clock.
        let out = std::env::temp_dir().join(format!("pgshot-bench-pp-{}", std::process::id()));
        let mut ahead_cycles = Vec::new();
        let mut pp: Vec<(puppeteer::Mode, Vec<f64>)> = Vec::new();
        for mode in [puppeteer::Mode::Warm, puppeteer::Mode::Ahead, puppeteer::Mode::Clock] {
            let shots = puppeteer::shots(mode, 1920, 1080, n, std::slice::from_ref(&page), &out);
            if mode == puppeteer::Mode::Ahead {
                ahead_cycles = sorted(shots.iter().map(|s| s.cycle).collect());
            }
            let times = shots.iter().map(|s| s.result.as_ref().map(|r| r.0).expect("puppeteer rendered the page"));
            pp.push((mode, sorted(times.collect())));
        }
        let _ = std::fs::remove_dir_all(&out);
        let ahead50 = percentile(&pp[1].1, 0.5);
        let cycle50 = percentile(&ahead_cycles, 0.5);
        // pgshot with its tab ready: each job enqueued once the worker is idle (the last job's
        // context disposed, the next tab opened), the conditions of puppeteer-core's shot above,
        // whose loop opens and closes its contexts between shots, off the clock.
        let (mut c, url) = cluster().fresh_local_db(&[]);
        let worker = WorkerProcess::start(&url, &format!("bench-{name}-ready"), &worker_env(1));
        assert!(enqueue_and_wait(&mut c, &page).is_some(), "warm-up failed:\n{}", worker.log());
        let ready: Vec<f64> = (0..n)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(500));
                enqueue_and_wait(&mut c, &page).expect("completed")
            })
            .collect();
        let ready = sorted(ready);
        let ready_phases = phase_medians(&worker.log());
        drop(worker);
        let ready50 = percentile(&ready, 0.5);
        // The naive way: a new Chromium per page.
        let cli = cli_loop(&page, m);
        // pgshot end to end, one job at a time, on a warm worker.
        let (mut c, url) = cluster().fresh_local_db(&[]);
        let worker = WorkerProcess::start(&url, &format!("bench-{name}"), &worker_env(1));
        assert!(enqueue_and_wait(&mut c, &page).is_some(), "warm-up failed:\n{}", worker.log());
        let e2e = sorted((0..n).map(|_| enqueue_and_wait(&mut c, &page).expect("completed")).collect());
        let phases = phase_medians(&worker.log());
        drop(worker);
        let (p50, bare50, cli50) = (percentile(&e2e, 0.5), percentile(&bare, 0.5), percentile(&cli, 0.5));
        report.add(
            s,
            &format!("{name} page: bare chromiumoxide, warm reused tab ({n} pages), p50"),
            format!("{bare50:.0} ms"),
        );
        report.add(
            s,
            &format!("{name} page: chromium --headless --screenshot per page ({m} pages), p50"),
            format!("{cli50:.0} ms"),
        );
        report.add(
            s,
            &format!("{name} page: pgshot enqueue -> COMPLETED, one at a time ({n} jobs), p50 / p95"),
            format!("{p50:.0} ms / {:.0} ms", percentile(&e2e, 0.95)),
        );
        report.add(
            s,
            &format!("{name} page: pgshot's phases, p50: tab / prepare / load / outputs (render total) / complete"),
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} ({:.0}) / {:.0} ms; outside the worker's job {:.0} ms",
                phases[0],
                phases[1],
                phases[2],
                phases[3],
                phases[4],
                phases[5],
                p50 - phases[4] - phases[5]
            ),
        );
        for (mode, times) in &pp {
            report.add(
                s,
                &format!("{name} page: {} ({n} pages), p50 / p95", mode.describe()),
                format!("{:.0} ms / {:.0} ms", percentile(times, 0.5), percentile(times, 0.95)),
            );
        }
        report.add(s, &format!("{name} page: pgshot p50 / bare p50"), format!("{:.2}x", p50 / bare50));
        report.add(
            s,
            &format!("{name} page: pgshot with its tab ready (each job enqueued once the worker is idle), p50 / p95"),
            format!("{ready50:.0} ms / {:.0} ms", percentile(&ready, 0.95)),
        );
        report.add(
            s,
            &format!("{name} page: pgshot's phases with its tab ready, p50: load / outputs (render total)"),
            format!("{:.0} / {:.0} ({:.0}) ms", ready_phases[2], ready_phases[3], ready_phases[4]),
        );
        report.add(
            s,
            &format!("{name} page: puppeteer-core, context ahead, whole cycle (shot, close it, open the next), p50"),
            format!("{cycle50:.0} ms"),
        );
        report.add(
            s,
            &format!(
                "{name} page: pgshot / puppeteer-core: tab ready, render; end to end | back to back / whole cycle"
            ),
            format!("{:.2}x; {:.2}x | {:.2}x", ready_phases[4] / ahead50, ready50 / ahead50, p50 / cycle50),
        );
        report.verdict(
            &format!("{name} page: render time and end-to-end p50 within 1.1x of puppeteer-core with a context ahead"),
            ready_phases[4] <= ahead50 * 1.1 && ready50 <= ahead50 * 1.1,
            format!(
                "tab ready: render {:.0} ms, end to end {ready50:.0} ms, puppeteer-core {ahead50:.0} ms; back to back \
                 {p50:.0} ms against puppeteer-core's whole cycle {cycle50:.0} ms",
                ready_phases[4]
            ),
        );
        report.add(s, &format!("{name} page: CLI p50 / pgshot p50"), format!("{:.2}x", cli50 / p50));
        if name == "small" {
            report.verdict(
                "End-to-end p50 within 15 % of the warm reused tab",
                p50 <= bare50 * 1.15,
                format!("small page {p50:.0} ms against {bare50:.0} ms, {:.2}x", p50 / bare50),
            );
            report.verdict(
                "At least 8x faster than the per-page CLI",
                cli50 >= p50 * 8.0,
                format!("small page {cli50:.0} ms against {p50:.0} ms, {:.2}x", cli50 / p50),
            );
            chart = vec![
                ("pgshot end to end", e2e.clone()),
                ("bare warm tab", bare.clone()),
                ("chromium CLI", cli.clone()),
            ];
        }
    }

    // Throughput and latency under load, at concurrency 1, 2 and 4.
    let page = site.url("/plain");
    for conc in [1u32, 2, 4] {
        let (mut c, url) = cluster().fresh_local_db(&[]);
        let jobs = (60 / scale.min(6)) as i64;
        let worker = WorkerProcess::start(&url, &format!("bench-c{conc}"), &worker_env(conc));
        enqueue_and_wait(&mut c, &page).expect("warm-up");
        let requests: Vec<Value> = (0..jobs).map(|i| json!({"url": format!("{page}?n={i}")})).collect();
        let t = Instant::now();
        c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
        wait_all(&mut c, jobs + 1, || {});
        let elapsed = t.elapsed().as_secs_f64();
        let lat = sorted(
            c.query(
                "SELECT (extract(epoch FROM completed_at - created_at) * 1000)::float8 FROM pgshot.jobs \
                 WHERE status = 'COMPLETED' AND url LIKE '%?n=%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, f64>(0))
            .collect(),
        );
        drop(worker);
        report.add(
            s,
            &format!("pgshot, concurrency {conc}, {jobs} small pages at once: throughput"),
            format!("{:.0} screenshots/min", jobs as f64 * 60.0 / elapsed),
        );
        report.add(
            s,
            &format!("pgshot, concurrency {conc}: enqueue -> COMPLETED p50 / p95 (queueing included)"),
            format!("{:.0} ms / {:.0} ms", percentile(&lat, 0.5), percentile(&lat, 0.95)),
        );
    }
    chart
}

/// 500 jobs over the three pages at concurrency 2: throughput, and the worker's and Chromium's
/// memory sampled all along.
fn memory_run(report: &mut Report, scale: usize) {
    let s = "memory";
    let site = Site::start();
    let jobs = 500 / scale as i64;
    let (mut c, url) = cluster().fresh_local_db(&[]);
    let worker = WorkerProcess::start(&url, "bench-memory", &worker_env(2));
    enqueue_and_wait(&mut c, &site.url("/plain")).expect("warm-up");
    let start_kb = status_kb(worker.pid(), "VmRSS:");
    let requests: Vec<Value> =
        (0..jobs).map(|i| json!({"url": site.url(&format!("{}?n={i}", PAGES[i as usize % 3].1))})).collect();
    let t = Instant::now();
    c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
    let mut peak_chromium_kb = 0;
    let mut peak_worker_kb = 0;
    wait_all(&mut c, jobs + 1, || {
        peak_chromium_kb = peak_chromium_kb.max(rss_kb(&descendants(worker.pid())));
        peak_worker_kb = peak_worker_kb.max(status_kb(worker.pid(), "VmRSS:"));
    });
    let elapsed = t.elapsed().as_secs_f64();
    let end_kb = status_kb(worker.pid(), "VmRSS:");
    let failed: i64 = c.query_one("SELECT count(*) FROM pgshot.jobs WHERE status = 'FAILED'", &[]).unwrap().get(0);
    report.add(
        s,
        &format!("{jobs} jobs (small, tall, images), concurrency 2: throughput, failed"),
        format!("{:.0} screenshots/min, {failed} failed", jobs as f64 * 60.0 / elapsed),
    );
    report.add(
        s,
        "worker RSS: after warm-up / peak / at the end",
        format!("{} / {} / {} MiB", start_kb / 1024, peak_worker_kb / 1024, end_kb / 1024),
    );
    report.add(s, "Chromium RSS (all its processes), peak", format!("{} MiB", peak_chromium_kb / 1024));
}

/// Polls until `n` jobs are finished, calling `sample` every 100 ms.
fn wait_all(c: &mut Client, n: i64, mut sample: impl FnMut()) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let done: i64 = c
            .query_one("SELECT count(*) FROM pgshot.jobs WHERE status IN ('COMPLETED', 'FAILED')", &[])
            .unwrap()
            .get(0);
        sample();
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} jobs finished in an hour");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Medians of the worker's `render phases` debug lines (tab, prepare, load and outputs) and of its
/// `job phases` lines (the whole render, tab included, and the complete), in ms.
fn phase_medians(log: &str) -> [f64; 6] {
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let mut phases = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let keys = ["tab_ms", "prepare_ms", "load_ms", "outputs_ms", "render_ms", "complete_ms"];
    for line in log.lines().filter(|l| l.contains("render phases") || l.contains("job phases")) {
        for (i, key) in keys.iter().enumerate() {
            if let Some(v) = field(line, key) {
                phases[i].push(v);
            }
        }
    }
    phases.map(|v| percentile(&sorted(v), 0.5))
}

fn cli_loop(page: &str, m: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..m {
        let out = std::env::temp_dir().join(format!("pgshot-bench-{i}.png"));
        let profile = std::env::temp_dir().join(format!("pgshot-bench-cli-{}-{i}", std::process::id()));
        let t = Instant::now();
        let status = Command::new("/usr/bin/chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
            .args(["--hide-scrollbars", "--window-size=1920,1080"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", out.display()))
            .arg(page)
            .output()
            .expect("run chromium");
        assert!(status.status.success(), "chromium --screenshot failed");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = std::fs::remove_dir_all(profile);
        let _ = std::fs::remove_file(out);
    }
    sorted(times)
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

/// Why the missed targets are missed, from the profile rows of the table.
const ANALYSIS: &str = "
## Where the time goes

**Rendering.** The `phases` rows come from the worker's own debug log
(`RUST_LOG=pgshot_worker::render=debug,pgshot_worker::jobs=debug`): *prepare* is the tab's set-up for
the job's options (0 ms for default requests: tabs are opened ahead, each in its own browser context,
with the default viewport), *load* is the navigation in the job's fresh context through its egress
proxy up to DOMContentLoaded, *outputs* the capture and encoding; *render total* adds taking the tab;
*complete* is the transaction that stores the result; *outside the worker's job* is the NOTIFY
wake-up, the claim and this benchmark's 2 ms polling.

Isolation has a price, and the rows show where it is paid. puppeteer-core's *context ahead* shot is
measured with its context and page already open and nothing else running: its loop closes the
context and opens the next one between shots, off the clock (the *whole cycle* row puts them back).
pgshot is measured two ways. *With its tab ready* (each job enqueued once the worker is idle: the
last job's context disposed and the next tab opened) is the same condition as that shot. *Back to
back* (the next job enqueued the moment the last one completed, the `enqueue -> COMPLETED, one at a
time` rows) is the condition of the whole cycle: the disposal of the last context and the opening of
the next tab (a new renderer process and a dozen DevTools calls) run on the same two cores, and on
Chromium's one browser thread, while the next page loads and is captured; it is compared with
puppeteer-core's whole cycle.

The bare chromiumoxide loop reuses one tab in one context: its connection, cache and renderer are
warm, and nothing is isolated between pages. The CLI pays a whole Chromium start per page.

**Real pages.** Most corpus pages load scripts, styles and images from hosts that cannot be reached
from this machine. Two things made them slow or failed before this run's worker: chromiumoxide
answers a `Page.navigate` only at the page's *load* event, so `domcontentloaded` waited for every
unreachable image (the worker now starts the navigation from the blank tab and follows its events);
and the system resolver drops some of a burst of identical queries, so each page's dozens of
requests to one host cost 5 s resolver timeouts (the egress proxies now share one lookup per name in
flight, kept 30 s). puppeteer-core, which resolves through Chromium itself, still meets those
timeouts on some pages: its p95 on the corpus is mostly them, and pgshot's ratio at p95 reflects that
difference in DNS, not in rendering. On pages without them, compare the per-page rows.

**Queue.** The `time per job in claim / in complete` rows split one worker's time between the two
calls. pgshot's complete is one transaction that moves the job to COMPLETED with its state and
attempt checked, inserts its output row (the bytes), and writes the webhook outbox row when there
is a webhook; pgmq's archive moves one row between two tables; graphile-worker deletes the row.
Since 0.3.0 a completion notifies `pgshot_job_done` only for a job someone waits on (a sync
capture, or `screenshot_watch`): a transaction that sends a NOTIFY holds a database-wide lock
through its commit, so completions that all notified could not share a WAL flush. The
`every completion notified` row is the same run with `pgshot.notify_all_done` on (what 0.2.0 did),
and shows what that lock costs at one and at eight workers. The `jobs of 8 owners` row spreads the
same jobs over eight owners: every claim then lists the owners (a skip scan) and shares its slots
between them by how many jobs each already runs; that is the price of fair shares. Since 0.8.0 one
statement claims every owner's share (one UPDATE per owner before) and the shares no longer look
up each owner's next due job: with 8 owners, 1.03 M → 0.69 M backend instructions per job in the
measure below (one owner: 0.56 M). Since 0.9.0 jobs with the same priority and run_at (the
benchmark enqueues them in bulk requests of 1,000) are claimed in the order they were enqueued,
not of their random ids: the claims read the rows in the order they were written, and a page is
no longer pruned again at every claim that visits it.

Where the rest went, by instruction counts (callgrind on the backend of one client that claims 10
and completes each, the shape of this benchmark, over 1,000 jobs): 1.68 M instructions per job
with extension 0.4.0, 0.85 M with 0.5.0, 0.73 M with 0.6.0 (pgmq: 0.66 M in the same measure); over
5,000 jobs, 0.68 M with 0.6.0 and 0.57 M with 0.7.0 (pgmq: 0.57 M).
Postgres 15 reads every CHECK expression and trigger WHEN clause of a table back from its stored
text, and compiles it, at every UPDATE statement, whichever columns change: `pgshot.jobs` had 21
constraints (the state machine's invariants) and the output row 6, together most of those
instructions. 0.5.0 keeps every rule and its name but checks each table's with one call to Rust
(`jobs_rules`, `outputs_rules`; job/src/row_rules.rs), shortens the WHEN clauses, runs the
functions that run no SQL without the settings' save and restore, completes in one statement, has
one index for the jobs in flight instead of two, and lists the owners with queued jobs from the live
end of `jobs_claim_order` (from its start, every claim walked the entries of the jobs just claimed a
second time). 0.6.0 passes those calls the whole row (one Var, where 20 and 7 column arguments
were most of the text read back), and has one end-of-job trigger, on `UPDATE OF completed_at`, that
a claim skips and whose WHEN clause is one Rust call. 0.7.0 gives that clause one column to read
(`jobs.told`: someone is told of the job's end), drops the output row's foreign key (its check was a
query of `pgshot.jobs` at every complete; only the completes write outputs, in the statement that
completes the job) and its unique index on positions (the completes number outputs in order),
caches where the rules' columns are in the row, and checks a complete's outputs with one call to
Rust: PL/pgSQL compiles each expression of a function again in every transaction, and the loop that
checked them was a dozen. Planning the queue functions' statements again
at every call was another fifth of claim+complete before 0.3.0 fixed their plans (`plan_cache_mode =
force_generic_plan` on the hot functions). What remains is work pgmq does not do: two non-HOT
updates of a wide row that keeps its history (with an entry in the primary key and in the partial
indexes each state has), an output row, and the rules. At 8 workers on 2 cores the instructions
matter less than the WAL: sampled during the drain, both queues' backends spend about 80% of their
time waiting for a WAL flush (`LWLock:WALWrite` and `IO:WALSync`; each complete is a commit), and
pgshot writes 1,160 bytes of WAL per job to pgmq's 696 (`pg_waldump --stats` over a 5,000-job
drain: six index entries per job to pgmq's four, and two row versions to one). Before 0.9.0 it
wrote 1,220, with 1.63 prune records per job against pgmq's 0.07: the claims took a bulk request's
jobs in the order of their random ids, so they visited its pages at random, and each visit found a
full page with one more dead row version to prune. 0.9.0 claims them in the order they were written
(0.26 prune records per job). The same change made to the installed 0.8.0 script, in 4 alternated
8-worker drains with and without it (`PGSHOT_DRAIN_QUEUE=pgshot|pgmq PGSHOT_DRAIN_WORKERS=8
pgshot-bench --only drain`): pgshot 7068 against 6847 jobs/s (+3.2%), the ratio to pgmq 1.01
against 0.99 (medians). Without `jobs_result_expiry` (the purge's index, one of the two extra
entries) 0.8.0 drained 2.4% faster in the same way (7065 against 6902 jobs/s); it stays, as the
purge would otherwise walk every finished job in completion order. `fillfactor = 80` on `jobs` did
not move the ratio (median 0.96 over 6 paired runs, at 0.8.0).

**How the queue is measured.** One claim+complete run moves by ±15% between identical runs on this
2-core machine (steal, checkpoints), so pgshot and pgmq run 5 times each at every worker count, taking
turns (and turns about which goes first). The table gives each rate's median and the runs; the
verdict takes the median of the 5 paired ratios, each pgshot run against the pgmq run beside it in
time. The fair-shares row is the median of as many runs. Each run has a database of its own,
dropped when the run ends (since 0.8.0): left behind, its dead rows were vacuumed by autovacuum
during later runs of either queue, which cost both (the last `--only drain` before the change:
pgshot 6415 and pgmq 6718 jobs/s at 8 workers, 0.95x; the first after: 6830 and 6914, 0.98x).

**Bloat.** Each pgshot job is updated twice (claim, complete) and kept; pgmq archives (insert +
delete) and graphile-worker deletes, so their queue tables end empty with as many dead tuples as
jobs, until autovacuum runs.

**Schedules.** Every worker calls `screenshot_schedule_tick` once a second. Its read is the partial
index `schedules_due` (active schedules by due time), so a tick with nothing due costs one index
probe whatever the number of schedules, and a busy tick reads the due rows and no others (the
`schedules` rows above: the scan's `actual rows` is the number due). Most of a busy tick's time is
the runs themselves: one `schedule_runs` row and one job each, inserted one by one in the tick's
transaction (the job's NOTIFY is sent once, at commit).
";

fn write_markdown(report: &Report, quick: bool, corpus: Option<&(PathBuf, String)>) {
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
    let node = text("node", &["--version"]);
    let cpu = text("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    let mut md = String::from("# pgshot benchmarks\n\n");
    let _ = writeln!(
        md,
        "Produced by `make bench`{}, all measures in one run on one machine: {cores} cores ({}), {mem} GiB, \
         {pg}, {chromium}, Node.js {node} for graphile-worker 0.16.6, pgmq 1.11 (SQL-only, from the pgmq crate 0.33.7). \
         Postgres is one local cluster with default durability (fsync and synchronous_commit on); each queue and \
         each measure gets a fresh database in it. The queue is driven with no-op jobs (pgshot and pgmq through \
         their SQL functions by the same client code, graphile-worker by its own runner); rendering uses pages \
         served on 127.0.0.1 at 1920x1080, viewport captures.\n",
        if quick { " --quick (a tenth of the work: `target/release/pgshot-bench --quick`)" } else { " (full size)" },
        cpu.trim()
    );
    md.push_str("| section | measure | value |\n|---|---|---|\n");
    for (section, what, value) in &report.rows {
        let _ = writeln!(md, "| {section} | {what} | {value} |");
    }
    md.push_str("\n## Charts\n\n![claim+complete throughput against workers](bench/charts/throughput.png)\n\n");
    md.push_str("![latency distribution, small page](bench/charts/latency.png)\n\n## Against the targets\n\n");
    for v in &report.verdicts {
        let _ = writeln!(md, "{v}");
    }
    md.push_str(ANALYSIS);
    if let Some((dir, table)) = corpus {
        let _ = writeln!(
            md,
            "\n## The real-page corpus, page by page\n\n{} pages from `{}` (saved pages of real sites, served on \
             127.0.0.1; their third-party hosts are unreachable here), 1280x800, one page at a time: pgshot with a \
             screenshot and a markdown output, puppeteer-core with a fresh incognito context opened ahead \
             (domcontentloaded, a PNG and the body's HTML).\n",
            table.lines().count().saturating_sub(2),
            dir.file_name().map_or(dir.display().to_string(), |d| format!("../shared/corpus/{}", d.to_string_lossy())),
        );
        md.push_str(table);
    }
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md"), md).expect("write BENCHMARKS.md");
    println!("\nwrote BENCHMARKS.md");
}
