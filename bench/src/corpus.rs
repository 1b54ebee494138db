//! The real-page corpus: saved pages of real sites (`../shared/corpus/dev` by default), served on
//! 127.0.0.1 as they are, read at run time and never copied. Most of them load scripts, styles and
//! images from hosts that cannot be reached from here, as a slow or broken third party would.
//!
//! Each page is rendered through pgshot (screenshot + markdown at 1280x800, enqueue to COMPLETED)
//! and through puppeteer-core with a fresh incognito context opened ahead (domcontentloaded, a PNG
//! of the viewport and the body's HTML), one page at a time for both, in the same run. A second
//! pgshot pass queues every page at once at the worker's default concurrency, as a user would,
//! and counts failures and browser deaths.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgshot_tests::cluster;
use pgshot_tests::site::read_request;
use pgshot_tests::worker_process::WorkerProcess;
use serde_json::{json, Value};

use crate::puppeteer::{self, Mode};
use crate::{percentile, sorted, worker_env, Report};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

/// The corpus to use: `--corpus DIR`, or the shared dev corpus beside the repository if it exists.
pub fn dir_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--corpus") {
        return Some(PathBuf::from(args.get(i + 1).expect("--corpus takes a directory")));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dev");
    default.is_dir().then_some(default)
}

/// Serves the `.html` files of `dir` on 127.0.0.1 (anything else is a 404, as the pages' own
/// third-party resources are unreachable anyway). Returns the base URL.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the corpus server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || answer(stream, &dir));
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn answer(mut stream: TcpStream, dir: &Path) {
    let Some((target, _)) = read_request(&stream) else { return };
    let path = target.split('?').next().unwrap_or("/");
    let name = path.trim_start_matches('/');
    let file = (!name.contains('/') && !name.contains("..") && name.ends_with(".html"))
        .then(|| std::fs::read(dir.join(name)).ok())
        .flatten();
    let (status, body) = match file {
        Some(bytes) => ("200 OK", bytes),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// Whether a PNG is a single colour (a blank capture).
pub fn is_blank(png_bytes: &[u8]) -> bool {
    let mut decoder = png::Decoder::new(png_bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let Ok(mut reader) = decoder.read_info() else { return false };
    let mut buf = vec![0; reader.output_buffer_size()];
    let Ok(info) = reader.next_frame(&mut buf) else { return false };
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    pixels.chunks(channels).all(|p| p == &pixels[..channels])
}

struct PgshotShot {
    result: Result<(f64, f64, bool), String>,
}

/// One page through pgshot, enqueue to a finished job: (renderTimeMs, enqueue to COMPLETED, blank).
fn pgshot_one(c: &mut pgshot_tests::Client, url: &str) -> PgshotShot {
    let options = options();
    let id: String = c.query_one("SELECT screenshot_enqueue($1, $2)", &[&url, &options]).unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = c
            .query_one(
                "SELECT status, (extract(epoch FROM completed_at - created_at) * 1000)::float8, \
                 (metadata->>'renderTimeMs')::float8, error_code, error_message FROM pgshot.jobs WHERE id = $1",
                &[&id],
            )
            .unwrap();
        match row.get::<_, String>(0).as_str() {
            "COMPLETED" => {
                let png: Vec<u8> =
                    c.query_one("SELECT bytes FROM screenshot_result($1, 'screenshot')", &[&id]).unwrap().get(0);
                return PgshotShot { result: Ok((row.get(2), row.get(1), is_blank(&png))) };
            }
            "FAILED" | "CANCELLED" => {
                let code: Option<String> = row.get(3);
                let message: Option<String> = row.get(4);
                return PgshotShot {
                    result: Err(format!("{} {}", code.unwrap_or_default(), message.unwrap_or_default())),
                };
            }
            _ if Instant::now() > deadline => return PgshotShot { result: Err("not finished in 120 s".into()) },
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn options() -> Value {
    json!({"viewport": {"width": WIDTH, "height": HEIGHT}, "maxAttempts": 1,
           "outputs": [{"type": "screenshot"}, {"type": "markdown"}]})
}

/// Browser deaths and replacements in a worker's log.
fn deaths(log: &str) -> usize {
    log.matches("chromium is gone").count() + log.matches("chromium started").count().saturating_sub(1)
}

/// Runs the corpus section and returns the per-page table (markdown) for BENCHMARKS.md.
pub fn run(report: &mut Report, dir: &Path) -> String {
    let s = "corpus";
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the corpus directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".html"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no .html pages in {}", dir.display());
    let base = serve(dir.to_path_buf());
    let urls: Vec<String> = names.iter().map(|n| format!("{base}/{n}")).collect();

    // puppeteer-core, one page at a time, a fresh context opened ahead of each.
    let out = std::env::temp_dir().join(format!("pgshot-bench-corpus-{}", std::process::id()));
    let pp = puppeteer::shots(Mode::Ahead, WIDTH, HEIGHT, 1, &urls, &out);

    // pgshot, one page at a time, on a warm worker with one render slot.
    let (mut c, db) = cluster().fresh_local_db(&[]);
    let worker = WorkerProcess::start(&db, "bench-corpus-seq", &worker_env(1));
    let _ = pgshot_one(&mut c, &urls[0]);
    let pg: Vec<PgshotShot> = urls.iter().map(|u| pgshot_one(&mut c, u)).collect();
    let sequential_deaths = deaths(&worker.log());
    drop(worker);

    // pgshot as a user runs it: every page queued at once, default concurrency.
    let (mut c, db) = cluster().fresh_local_db(&[]);
    let worker = WorkerProcess::start(&db, "bench-corpus-all", &worker_env(2));
    let requests: Vec<Value> = urls
        .iter()
        .map(|u| {
            let mut o = options();
            o["url"] = json!(u);
            o
        })
        .collect();
    let t = Instant::now();
    c.query("SELECT * FROM screenshot_enqueue_bulk($1)", &[&Value::Array(requests)]).unwrap();
    crate::wait_all(&mut c, urls.len() as i64, || {});
    let queued_elapsed = t.elapsed().as_secs_f64();
    let queued_failed: Vec<(String, String)> = c
        .query(
            "SELECT url, error_code || ' ' || error_message FROM pgshot.jobs WHERE status = 'FAILED' ORDER BY url",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let queued_deaths = deaths(&worker.log());
    drop(worker);
    let _ = std::fs::remove_dir_all(&out);

    // Per page, and in total.
    let mut table = String::from(
        "| page | pgshot render (renderTimeMs) | pgshot enqueue to COMPLETED | puppeteer-core, context ahead | render / puppeteer | blank (pgshot / puppeteer) |\n|---|---|---|---|---|---|\n",
    );
    let (mut pg_render, mut pg_e2e, mut pp_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pg_failed, mut pp_failed, mut pg_blank, mut pp_blank, mut blank_only_pgshot) = (0, 0, 0, 0, 0);
    let mut missed = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let pp_shot = pp.iter().find(|p| p.url == urls[i]);
        let pp_result = match pp_shot.map(|p| &p.result) {
            Some(Ok((ms, png))) => Ok((*ms, std::fs::read(png).map(|b| is_blank(&b)).unwrap_or(false))),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no result".to_string()),
        };
        let cell = |r: &Result<(f64, bool), String>| match r {
            Ok((ms, _)) => format!("{ms:.0} ms"),
            Err(e) => format!("failed: {}", e.chars().take(80).collect::<String>()),
        };
        let (pg_cells, ratio, pg_is_blank) = match &pg[i].result {
            Ok((render, e2e, blank)) => {
                pg_render.push(*render);
                pg_e2e.push(*e2e);
                let ratio = pp_result.as_ref().map_or("-".to_string(), |(ms, _)| format!("{:.2}x", render / ms));
                (format!("{render:.0} ms | {e2e:.0} ms"), ratio, Some(*blank))
            }
            Err(e) => {
                pg_failed += 1;
                (format!("failed: {} | -", e.chars().take(80).collect::<String>()), "-".into(), None)
            }
        };
        match &pp_result {
            Ok((ms, blank)) => {
                pp_ms.push(*ms);
                if *blank {
                    pp_blank += 1;
                }
                if pg[i].result.is_err() {
                    missed.push(name.clone());
                }
                if pg_is_blank == Some(true) && !*blank {
                    blank_only_pgshot += 1;
                }
            }
            Err(_) => pp_failed += 1,
        }
        if pg_is_blank == Some(true) {
            pg_blank += 1;
        }
        let yes = |b: bool| if b { "blank" } else { "-" };
        let blanks = format!("{} / {}", pg_is_blank.map_or("?", yes), pp_result.as_ref().map_or("?", |(_, b)| yes(*b)));
        let _ = writeln!(table, "| {name} | {pg_cells} | {} | {ratio} | {blanks} |", cell(&pp_result));
    }
    let n = names.len();
    let (pg_render, pg_e2e, pp_ms) = (sorted(pg_render), sorted(pg_e2e), sorted(pp_ms));
    let p = |v: &[f64], q: f64| percentile(v, q);
    report.add(
        s,
        &format!("{n} real pages, one at a time: pgshot completed / failed"),
        format!("{} / {pg_failed}", n - pg_failed),
    );
    report.add(s, "puppeteer-core (context ahead) completed / failed", format!("{} / {pp_failed}", n - pp_failed));
    report.add(
        s,
        "pgshot render time (renderTimeMs) p50 / p95",
        format!("{:.0} ms / {:.0} ms", p(&pg_render, 0.5), p(&pg_render, 0.95)),
    );
    report.add(
        s,
        "pgshot enqueue -> COMPLETED p50 / p95",
        format!("{:.0} ms / {:.0} ms", p(&pg_e2e, 0.5), p(&pg_e2e, 0.95)),
    );
    report.add(
        s,
        "puppeteer-core, fresh context opened ahead, p50 / p95",
        format!("{:.0} ms / {:.0} ms", p(&pp_ms, 0.5), p(&pp_ms, 0.95)),
    );
    let (r50, r95) = (p(&pg_render, 0.5) / p(&pp_ms, 0.5), p(&pg_render, 0.95) / p(&pp_ms, 0.95));
    let (e50, e95) = (p(&pg_e2e, 0.5) / p(&pp_ms, 0.5), p(&pg_e2e, 0.95) / p(&pp_ms, 0.95));
    report.add(
        s,
        "pgshot render / puppeteer, p50 / p95",
        format!("{r50:.2}x / {e50:.2}x end to end; {r95:.2}x / {e95:.2}x at p95"),
    );
    report.add(
        s,
        "blank screenshots: pgshot / puppeteer / blank only in pgshot",
        format!("{pg_blank} / {pp_blank} / {blank_only_pgshot}"),
    );
    report.add(s, "browser deaths or replacements, one at a time", sequential_deaths.to_string());
    report.add(
        s,
        &format!("all {n} queued at once, concurrency 2: failed, browser deaths, throughput"),
        format!(
            "{} failed, {queued_deaths} deaths, {:.0} pages/min",
            queued_failed.len(),
            n as f64 * 60.0 / queued_elapsed
        ),
    );
    for (url, error) in &queued_failed {
        report.add(s, &format!("failed when queued: {}", url.rsplit('/').next().unwrap_or(url)), error.clone());
    }
    report.verdict(
        "Every corpus page puppeteer-core renders completes in pgshot",
        missed.is_empty() && queued_failed.is_empty(),
        if missed.is_empty() && queued_failed.is_empty() {
            format!("{} of {n} in both passes", n - pp_failed)
        } else {
            format!("failed one at a time: {missed:?}; failed queued: {}", queued_failed.len())
        },
    );
    report.verdict(
        "No browser deaths on the corpus",
        sequential_deaths + queued_deaths == 0,
        format!("{sequential_deaths} one at a time, {queued_deaths} queued"),
    );
    report.verdict(
        "No blank screenshot where puppeteer-core's is not blank",
        blank_only_pgshot == 0,
        format!("{blank_only_pgshot} pages"),
    );
    report.verdict(
        "Corpus render time within 1.1x of puppeteer-core (context ahead), p50 and p95",
        r50 <= 1.1 && r95 <= 1.1,
        format!("{r50:.2}x at p50, {r95:.2}x at p95"),
    );
    report.verdict(
        "Corpus enqueue to COMPLETED within 1.1x of puppeteer-core (context ahead), p50 and p95",
        e50 <= 1.1 && e95 <= 1.1,
        format!("{e50:.2}x at p50, {e95:.2}x at p95"),
    );
    table
}
