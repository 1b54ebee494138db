//! The scheduler's tick (screenshot_schedule_tick) among 10,000 schedules: its time with a
//! hundred due and with none, and the plan of its read, which must touch the due rows only.

use std::time::Instant;

use pgshot_tests::cluster;

use crate::{percentile, sorted, Report};

pub fn run(report: &mut Report, scale: usize) {
    let s = "schedules";
    let total = 10_000 / scale as i64;
    let due = 100 / scale as i64;
    let (mut c, _url) = cluster().fresh_local_db(&[]);
    c.execute(
        "SELECT screenshot_schedule_create(jsonb_build_object('name', 's' || i, 'url', 'https://example.com/' || i,
                'schedule', (i % 60) || ' * * * *', 'timezone', 'Europe/Paris'))
         FROM generate_series(1, $1::bigint) i",
        &[&total],
    )
    .unwrap();
    c.batch_execute("ANALYZE pgshot.schedules").unwrap();
    let make_due = |c: &mut pgshot_tests::Client| {
        c.execute(
            "UPDATE pgshot.schedules SET next_run_at = now() - interval '1 second'
             WHERE id IN (SELECT id FROM pgshot.schedules ORDER BY id LIMIT $1)",
            &[&due],
        )
        .unwrap();
    };
    let rounds = 20;
    let mut busy = Vec::new();
    let mut started = 0;
    for _ in 0..rounds {
        make_due(&mut c);
        let t = Instant::now();
        started += c.query_one("SELECT screenshot_schedule_tick(100)", &[]).unwrap().get::<_, i32>(0);
        busy.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut idle = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        c.query_one("SELECT screenshot_schedule_tick(100)", &[]).unwrap();
        idle.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (busy, idle) = (sorted(busy), sorted(idle));
    report.add(
        s,
        &format!("tick with {due} of {total} schedules due (each a run and its job): p50 / p95"),
        format!(
            "{:.1} ms / {:.1} ms ({:.2} ms per run; {started} runs in {rounds} ticks)",
            percentile(&busy, 0.5),
            percentile(&busy, 0.95),
            percentile(&busy, 0.5) / due as f64
        ),
    );
    report.add(
        s,
        &format!("tick with none of {total} due: p50 / p95"),
        format!("{:.3} ms / {:.3} ms", percentile(&idle, 0.5), percentile(&idle, 0.95)),
    );
    // The tick's read, as it runs it, with the rows each node touched.
    make_due(&mut c);
    let plan: Vec<String> = c
        .query(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF)
             SELECT * FROM pgshot.schedules WHERE status = 'ACTIVE' AND next_run_at <= now()
             ORDER BY next_run_at LIMIT 100 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).trim().to_string())
        .collect();
    let scan = plan.iter().find(|l| l.contains("Scan")).cloned().unwrap_or_default();
    let rows: Option<i64> = scan
        .split("rows=")
        .nth(1)
        .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    let buffers = plan.iter().find(|l| l.starts_with("Buffers")).cloned().unwrap_or_default();
    report.add(s, &format!("the tick's read with {due} due: its scan, {buffers}"), scan.clone());
    report.verdict(
        &format!("The tick reads only the due rows, through the index schedules_due ({due} of {total})"),
        scan.contains("schedules_due") && rows == Some(due),
        format!("{scan}; {} ms per tick with none due", format_args!("{:.3}", percentile(&idle, 0.5))),
    );
}
