//! The queue alone, through pgshot, pgmq and graphile-worker: the same workloads on the same
//! Postgres cluster in one run. pgshot and pgmq are driven through their SQL functions by the same
//! client code; graphile-worker's jobs can only be claimed by its own runner, so a small Node
//! script (bench/graphile/queue.js) runs it with a no-op task.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pgshot_tests::{cluster, connect_url, Client};
use postgres::fallible_iterator::FallibleIterator;

use crate::{percentile, sorted};

/// One queue's figures, for the table and the charts.
pub struct Figures {
    pub name: &'static str,
    pub enqueue_single: f64,
    pub enqueue_bulk: f64,
    /// (workers, jobs per second): for pgshot and pgmq the median of the interleaved rounds
    pub throughput: Vec<(usize, f64)>,
    /// (workers, jobs per second of each round, in order); one round for graphile-worker
    pub rounds: Vec<(usize, Vec<f64>)>,
    /// (arrival rate, p50 ms, p99 ms)
    pub latency: Vec<(f64, f64, f64)>,
    /// The queue table after the 8-worker run: size, live and dead tuples.
    pub table: String,
    /// With one worker, the time per job spent in claim and in complete (SQL queues only).
    pub profile: Option<String>,
}

/// How a queue is used from SQL. Every statement is prepared once per connection.
struct SqlQueue {
    name: &'static str,
    /// Run once in a fresh database.
    install: fn(&str),
    /// One job: `$1` is its URL.
    enqueue: &'static str,
    /// `$1` (int) jobs in one statement.
    enqueue_bulk: &'static str,
    /// Up to 10 jobs for worker `$1`, each as one text token that `complete` takes back.
    claim: Option<&'static str>,
    /// Completes the job of token `$1`.
    complete: &'static str,
    /// The NOTIFY channel a new job wakes, for the latency run.
    channel: Option<&'static str>,
    /// Run before the latency run only (what turns the NOTIFY on, where it is optional).
    notify_setup: &'static str,
    /// The table whose size and dead tuples are reported.
    table: &'static str,
}

const PGSHOT: SqlQueue = SqlQueue {
    name: "pgshot",
    install: |_| {},
    enqueue: "SELECT screenshot_enqueue($1)",
    enqueue_bulk: "SELECT count(*) FROM screenshot_enqueue_bulk((SELECT jsonb_agg(jsonb_build_object('url', \
                   'https://example.com/' || g)) FROM generate_series(1, $1::int) g))",
    claim: Some("SELECT id || ' ' || $1::text || ' ' || attempt FROM screenshot_claim($1::text, 10, '5 minutes')"),
    complete: "SELECT screenshot_complete(split_part($1, ' ', 1), split_part($1, ' ', 2), \
               split_part($1, ' ', 3)::int, '{}', \
               ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x00'::bytea, '{}')::pgshot.output])",
    channel: Some("pgshot_jobs"),
    notify_setup: "",
    table: "pgshot.jobs",
};

/// pgshot with its jobs spread over several owners (`claim_and_complete`'s `owners`): fair shares.
const FAIR: SqlQueue = SqlQueue { name: "pgshot, jobs of several owners", ..PGSHOT };

/// pgmq's completed message is archived (kept, as pgshot keeps a completed job), not deleted.
const PGMQ: SqlQueue = SqlQueue {
    name: "pgmq",
    install: install_pgmq,
    enqueue: "SELECT pgmq.send('bench', jsonb_build_object('url', $1::text))",
    enqueue_bulk: "SELECT count(*) FROM pgmq.send_batch('bench', ARRAY(SELECT jsonb_build_object('url', \
                   'https://example.com/' || g) FROM generate_series(1, $1::int) g))",
    claim: Some("SELECT msg_id::text FROM pgmq.read('bench', 300, 10) WHERE $1::text IS NOT NULL"),
    complete: "SELECT pgmq.archive('bench', $1::text::bigint)",
    channel: Some("pgmq.q_bench.INSERT"),
    // pgmq's NOTIFY is a per-row trigger that it leaves off by default; on, without its throttle.
    notify_setup: "SELECT pgmq.enable_notify_insert('bench', 0)",
    table: "pgmq.q_bench",
};

/// graphile-worker: enqueued through its SQL functions, run by its own runner.
const GRAPHILE: SqlQueue = SqlQueue {
    name: "graphile-worker",
    install: |url| {
        node(url, &["migrate"]);
    },
    enqueue: "SELECT graphile_worker.add_job('noop', json_build_object('url', $1::text))",
    enqueue_bulk: "SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(SELECT json_populate_record(\
                   null::graphile_worker.job_spec, json_build_object('identifier', 'noop', 'payload', \
                   json_build_object('url', 'https://example.com/' || g))) FROM generate_series(1, $1::int) g))",
    claim: None,
    complete: "",
    channel: None,
    notify_setup: "",
    table: "graphile_worker._private_jobs",
};

/// How many times claim+complete runs at each worker count for pgshot and for pgmq, the two
/// queues alternating: one run moves by ±15% on a 2-core machine (steal, checkpoints), so the
/// table gives each rate's median and the verdict the median of the paired ratios (each pgshot
/// run against the pgmq run next to it in time).
pub const ROUNDS: usize = 5;

/// `--only drain`: claim+complete alone, pgshot (one owner and 8 owners) and pgmq in interleaved
/// rounds, printed (for working on the queue's throughput).
pub fn drain_only(scale: usize) {
    // PGSHOT_DRAIN_WORKERS=8 PGSHOT_DRAIN_QUEUE=pgshot|pgmq runs one queue at one count (for a
    // profiler); PGSHOT_DRAIN_CPU=1 also prints the CPU time the whole machine spent on the drain,
    // which follows the throughput ratio and varies less between runs.
    if let (Ok(queue), Ok(workers)) = (std::env::var("PGSHOT_DRAIN_QUEUE"), std::env::var("PGSHOT_DRAIN_WORKERS")) {
        let q = if queue == "pgmq" { &PGMQ } else { &PGSHOT };
        let w: usize = workers.parse().expect("PGSHOT_DRAIN_WORKERS is a number");
        for (w, r) in claim_and_complete(q, scale, &[w], None).throughput {
            println!("drain {w} workers: {} {r:.0} jobs/s", q.name);
        }
        return;
    }
    let [pgshot, pgmq] = interleaved([&PGSHOT, &PGMQ], scale, &[1, 2, 4, 8], None);
    for ((w, mine), (_, theirs)) in pgshot.rounds.iter().zip(&pgmq.rounds) {
        let ratios = paired_ratios(mine, theirs);
        println!(
            "drain {w} workers: pgshot {mine:.0?} jobs/s, pgmq {theirs:.0?} jobs/s, ratios {ratios:.2?}, median {:.2}x",
            median(&ratios)
        );
    }
    for (w, r) in interleaved([&FAIR], scale, &[1, 8], Some(8))[0].rounds.iter() {
        println!("drain {w} workers, 8 owners: pgshot {r:.0?} jobs/s");
    }
}

/// Each pgshot rate over the pgmq rate of the same round.
pub fn paired_ratios(mine: &[f64], theirs: &[f64]) -> Vec<f64> {
    mine.iter().zip(theirs).map(|(a, b)| a / b).collect()
}

/// The runs' p50, as every other median of this benchmark (`percentile`).
pub fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values.to_vec()), 0.5)
}

/// `ROUNDS` runs of claim+complete per worker count for each queue, the queues taking turns (and
/// turns about who goes first, so that neither always runs after the other). Each queue's
/// throughput is the median of its rounds; its table and profile are those of its last run.
fn interleaved<const N: usize>(
    queues: [&SqlQueue; N],
    scale: usize,
    workers: &[usize],
    owners: Option<usize>,
) -> [Drained; N] {
    let mut out: [Drained; N] = std::array::from_fn(|_| Drained::default());
    for &w in workers {
        let mut rates = vec![Vec::new(); N];
        for round in 0..ROUNDS {
            for k in 0..N {
                let i = if round % 2 == 0 { k } else { N - 1 - k };
                let run = claim_and_complete(queues[i], scale, &[w], owners);
                rates[i].push(run.throughput[0].1);
                out[i].table = run.table;
                if run.profile.is_some() {
                    out[i].profile = run.profile;
                }
            }
        }
        for (d, r) in out.iter_mut().zip(rates) {
            d.throughput.push((w, median(&r)));
            d.rounds.push((w, r));
        }
    }
    out
}

pub fn measure_all(scale: usize) -> Vec<Figures> {
    let [pgshot, pgmq] = interleaved([&PGSHOT, &PGMQ], scale, &[1, 2, 4, 8], None);
    vec![measure(&PGSHOT, scale, Some(pgshot)), measure(&PGMQ, scale, Some(pgmq)), measure(&GRAPHILE, scale, None)]
}

fn fresh(q: &SqlQueue) -> (Client, String) {
    let (c, url) = cluster().fresh_local_db(&[]);
    (q.install)(&url);
    (c, url)
}

/// Enqueue rates and latencies; claim+complete from `drained` (the interleaved rounds), or one
/// round of its own.
fn measure(q: &SqlQueue, scale: usize, drained: Option<Drained>) -> Figures {
    eprintln!("queue: {}", q.name);
    // Enqueue, one statement per job.
    let (mut c, _) = fresh(q);
    let n = 5000 / scale;
    let enqueue = c.prepare(q.enqueue).unwrap();
    let t = Instant::now();
    for i in 0..n {
        c.execute(&enqueue, &[&format!("https://example.com/{i}")]).unwrap();
    }
    let enqueue_single = n as f64 / t.elapsed().as_secs_f64();

    // Enqueue, 1000 per statement.
    let (mut c, _) = fresh(q);
    let batches = (20 / scale).max(2);
    let bulk = c.prepare(q.enqueue_bulk).unwrap();
    let t = Instant::now();
    for _ in 0..batches {
        c.execute(&bulk, &[&1000i32]).unwrap();
    }
    let enqueue_bulk = (batches * 1000) as f64 / t.elapsed().as_secs_f64();

    let Drained { throughput, rounds, table, profile } =
        drained.unwrap_or_else(|| claim_and_complete(q, scale, &[1, 2, 4, 8], None));

    // Enqueue-to-claim latency through LISTEN/NOTIFY, at a low and a moderate arrival rate.
    let mut latency = Vec::new();
    for rate in [20.0, 200.0] {
        let jobs = (if rate < 100.0 { 200 } else { 1000 }) / scale;
        let (mut c, url) = fresh(q);
        c.batch_execute(q.notify_setup).unwrap();
        let (p50, p99) = match (q.claim, q.channel) {
            (Some(claim), Some(channel)) => sql_latency(&url, q.enqueue, claim, channel, rate, jobs),
            _ => {
                let v = node(&url, &["latency", &rate.to_string(), &jobs.to_string()]);
                (v["p50"].as_f64().unwrap(), v["p99"].as_f64().unwrap())
            }
        };
        latency.push((rate, p50, p99));
    }
    Figures { name: q.name, enqueue_single, enqueue_bulk, throughput, rounds, latency, table, profile }
}

#[derive(Default)]
struct Drained {
    /// (workers, jobs per second)
    throughput: Vec<(usize, f64)>,
    /// (workers, jobs per second of each round)
    rounds: Vec<(usize, Vec<f64>)>,
    /// The queue table after the last run.
    table: String,
    /// With one worker, the time per job in claim and in complete (SQL queues only).
    profile: Option<String>,
}

/// Claim + complete with each number of `workers`, each over the same number of jobs; with
/// `owners`, pgshot's jobs are spread round-robin over that many owners (roles) first.
fn claim_and_complete(q: &SqlQueue, scale: usize, workers: &[usize], owners: Option<usize>) -> Drained {
    let total = 20_000 / scale;
    let mut drained = Drained::default();
    for &workers in workers {
        let (mut c, url) = fresh(q);
        let bulk = c.prepare(q.enqueue_bulk).unwrap();
        for _ in 0..total / 1000 {
            c.execute(&bulk, &[&1000i32]).unwrap();
        }
        if let Some(owners) = owners {
            c.execute(
                "UPDATE pgshot.jobs SET enqueued_by = 'owner-' || (abs(hashtext(id)) % $1::int)",
                &[&(owners as i32)],
            )
            .unwrap();
        }
        c.batch_execute("VACUUM ANALYZE").unwrap();
        let seconds = match q.claim {
            Some(claim) => {
                let (seconds, in_claim, in_complete) = drain_sql(&url, claim, q.complete, workers);
                if workers == 1 {
                    let per_job = |s: f64| s * 1000.0 / total as f64;
                    drained.profile = Some(format!("{:.3} ms / {:.3} ms", per_job(in_claim), per_job(in_complete)));
                }
                seconds
            }
            None => node(&url, &["drain", &workers.to_string()])["seconds"].as_f64().expect("seconds"),
        };
        drained.throughput.push((workers, total as f64 / seconds));
        drained.rounds.push((workers, vec![total as f64 / seconds]));
        drained.table = table_state(&mut c, q.table);
        // Left behind, this run's dead rows would be vacuumed by autovacuum during a later run
        // (of either queue), a cost that neither queue's run should carry.
        let name: String = c.query_one("SELECT current_database()", &[]).unwrap().get(0);
        drop(c);
        cluster().drop_db(&name);
    }
    drained
}

/// (workers, jobs per second) of each run.
pub type Rates = Vec<(usize, f64)>;

/// What pgshot's guarantees cost the queue: the same claim+complete runs (1 and 8 workers) with
/// every completion notified on `pgshot_job_done` (`pgshot.notify_all_done`, what 0.2.0 did: a
/// transaction that sends a NOTIFY holds a database-wide lock through its commit, so such commits
/// cannot share one WAL flush), and with the jobs spread over `owners` owners, so that every claim
/// shares its slots between them (fair shares).
pub fn variants(scale: usize, owners: usize) -> (Rates, Rates) {
    let notify_all = SqlQueue {
        name: "pgshot, every completion notified",
        install: |url| {
            connect_url(url)
                .batch_execute(
                    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pgshot.notify_all_done = on', \
                     current_database()); END $$",
                )
                .unwrap()
        },
        ..PGSHOT
    };
    let notified = claim_and_complete(&notify_all, scale, &[1, 8], None).throughput;
    // Fair shares have a verdict of their own against pgmq: the median of as many rounds.
    let [shared] = interleaved([&FAIR], scale, &[1, 8], Some(owners));
    let shared = shared.throughput;
    (notified, shared)
}

/// `workers` threads claim and complete until the queue is empty: the seconds it took, and the
/// seconds all threads together spent in claim and in complete.
fn drain_sql(url: &str, claim: &'static str, complete: &'static str, workers: usize) -> (f64, f64, f64) {
    let barrier = Arc::new(Barrier::new(workers + 1));
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (url, barrier) = (url.to_string(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = connect_url(&url);
                let claim = c.prepare(claim).unwrap();
                let complete = c.prepare(complete).unwrap();
                let worker = format!("bench-{w}");
                let (mut in_claim, mut in_complete) = (Duration::ZERO, Duration::ZERO);
                barrier.wait();
                loop {
                    let t = Instant::now();
                    let batch = c.query(&claim, &[&worker]).unwrap();
                    in_claim += t.elapsed();
                    if batch.is_empty() {
                        return (in_claim, in_complete);
                    }
                    let t = Instant::now();
                    for row in batch {
                        c.execute(&complete, &[&row.get::<_, String>(0)]).unwrap();
                    }
                    in_complete += t.elapsed();
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let cpu = std::env::var_os("PGSHOT_DRAIN_CPU").is_some();
    let busy = if cpu { busy_seconds() } else { 0.0 };
    let (mut in_claim, mut in_complete) = (0.0, 0.0);
    for th in threads {
        let (a, b) = th.join().unwrap();
        in_claim += a.as_secs_f64();
        in_complete += b.as_secs_f64();
    }
    if cpu {
        eprintln!("cpu busy {:.1} s over {:.1} s", busy_seconds() - busy, t.elapsed().as_secs_f64());
    }
    (t.elapsed().as_secs_f64(), in_claim, in_complete)
}

/// Jobs arrive at `rate` per second; a claimer woken by NOTIFY claims them. Enqueue-to-claim
/// p50 and p99 in ms, timed by one clock in this process.
fn sql_latency(url: &str, enqueue: &str, claim: &'static str, channel: &str, rate: f64, jobs: usize) -> (f64, f64) {
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let ready = Arc::new(Barrier::new(2));
    let claimer = {
        let (url, ready, channel) = (url.to_string(), ready.clone(), channel.to_string());
        std::thread::spawn(move || {
            let mut c = connect_url(&url);
            c.batch_execute(&format!("LISTEN \"{channel}\"")).unwrap();
            let claim = c.prepare(claim).unwrap();
            ready.wait();
            let mut latencies = Vec::new();
            while latencies.len() < jobs {
                let _ = c.notifications().timeout_iter(Duration::from_millis(200)).next();
                let claimed = c.query(&claim, &[&"latency"]).unwrap().len();
                let at = Instant::now();
                for _ in 0..claimed {
                    let sent = rx.recv().unwrap();
                    latencies.push((at - sent).as_secs_f64() * 1000.0);
                }
            }
            latencies
        })
    };
    ready.wait();
    let mut c = connect_url(url);
    let enqueue = c.prepare(enqueue).unwrap();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for i in 0..jobs {
        let due = start + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        c.execute(&enqueue, &[&format!("https://example.com/{i}")]).unwrap();
        tx.send(sent).unwrap();
    }
    let lat = sorted(claimer.join().unwrap());
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn table_state(c: &mut Client, table: &str) -> String {
    // The workers' statistics reach the collector when their sessions end, shortly after the run.
    std::thread::sleep(Duration::from_millis(1500));
    let rows: i64 = c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0);
    let row = c
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size($1::text::regclass)), n_dead_tup \
             FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
            &[&table],
        )
        .unwrap();
    format!("{}, {rows} rows, {} dead tuples", row.get::<_, String>(0), row.get::<_, i64>(1))
}

/// pgmq's SQL-only install, from the SQL embedded in the `pgmq` crate, and its queue.
fn install_pgmq(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // sqlx wants a URL; the cluster trusts local connections, so the password is never checked.
        let (host, port, db) = parse_kv(url);
        let sqlx_url = format!("postgres://postgres:unused@{host}:{port}/{db}");
        let queue = pgmq::PGMQueueExt::new(sqlx_url, 1).await.expect("connect for pgmq");
        pgmq::install::install_sql_from_embedded(&queue.connection).await.expect("install pgmq");
        queue.connection.close().await;
    });
    let mut c = connect_url(url);
    c.batch_execute("SELECT pgmq.create('bench')").unwrap();
}

fn parse_kv(url: &str) -> (String, String, String) {
    let get = |key: &str| {
        url.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap_or_default().to_string()
    };
    (get("host"), get("port"), get("dbname"))
}

/// Runs bench/graphile/queue.js in a libpq-style URL for `url`; its one JSON line.
fn node(url: &str, args: &[&str]) -> serde_json::Value {
    let (host, port, db) = parse_kv(url);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphile");
    let out = Command::new("node")
        .arg(dir.join("queue.js"))
        .args(args)
        .current_dir(&dir)
        .env("DATABASE_URL", format!("postgres://postgres@{host}:{port}/{db}"))
        .output()
        .expect("run node (make bench installs it and graphile-worker)");
    assert!(
        out.status.success(),
        "node queue.js {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).expect("a JSON line from queue.js");
    serde_json::from_str(line).expect("JSON from queue.js")
}

/// CPU seconds the whole machine spent busy (all cores; user, nice, system, irq and softirq, not
/// steal), from /proc/stat.
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = cpu.iter().enumerate().filter(|(i, _)| ![3, 4].contains(i)).take(5).map(|(_, v)| v).sum();
    busy / 100.0
}
